"""What a layer knows: reconstruct the input from a cut point (invert), saliency through
stitched networks (saliency). Whether a stitch speaks the receiver's language is measured
for every stitch (plato.stitch.distance)."""
