"""The published formulas of the constrained closed forms, written directly on the data (not
from Plato's streamed statistics), for the tests to compare with."""

import numpy as np
import torch


def pinv_affine(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Least squares with bias by the pseudo-inverse (Csiszarik et al. 2021): [X 1]^+ Y,
    applied to X."""
    xs, ys = x.double().numpy(), y.double().numpy()
    design = np.hstack([xs, np.ones((len(xs), 1))])
    return torch.from_numpy(design @ (np.linalg.pinv(design) @ ys))


def padded_procrustes(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Orthogonal least squares by SVD with scaling and translation, the narrower side padded
    with zeros (Schoenemann 1966; Gower 1975; padding as Maiorca et al. 2023): U V^T of the
    centred X^T Y, scale tr(S) / ||X_c||^2, applied to X."""
    xs, ys = x.double().numpy(), y.double().numpy()
    xc, yc = xs - xs.mean(0), ys - ys.mean(0)
    u, sv, vh = np.linalg.svd(xc.T @ yc, full_matrices=False)
    scale = sv.sum() / (xc ** 2).sum()
    return torch.from_numpy(scale * xc @ (u @ vh) + ys.mean(0))


def maiorca_translation(x: torch.Tensor, y: torch.Tensor, translator: str) -> torch.Tensor:
    """Latent space translation (Maiorca et al. 2023) as published: zero-pad the narrower
    space to the wider's width, standard-scale each side with its own anchor statistics,
    estimate R (linear: least squares; orthogonal: Procrustes, U V^T of X^T Y), translate,
    drop the padding, undo the receiver's scaling. Applied to the anchors x."""
    xs, ys = x.double().numpy(), y.double().numpy()
    xz = (xs - xs.mean(0)) / xs.std(0)
    yz = (ys - ys.mean(0)) / ys.std(0)
    width = max(xz.shape[1], yz.shape[1])
    xp = np.pad(xz, ((0, 0), (0, width - xz.shape[1])))
    yp = np.pad(yz, ((0, 0), (0, width - yz.shape[1])))
    if translator == "orthogonal":
        u, _, vh = np.linalg.svd(xp.T @ yp)
        r = u @ vh
    else:
        r = np.linalg.lstsq(xp, yp, rcond=None)[0]
    out = (xp @ r)[:, :ys.shape[1]]
    return torch.from_numpy(out * ys.std(0) + ys.mean(0))
