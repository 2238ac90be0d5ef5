"""Measuring a stitched network on the test split: one JSON-serialisable StitchResult."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from plato.data.datasets import Dataset
from plato.data.loader import make_loader
from plato.similarity.cka import linear_cka
from plato.stitch.stitched import StitchedModel

CKA_EXAMPLES = 1024  # linear CKA uses the first this-many test images (an n x n Gram matrix)


@dataclass
class StitchResult:
    sender: str
    receiver: str
    sender_point: str
    receiver_point: str
    stitch: str
    objective: str
    dataset: str
    stitched_accuracy: float  # fractions in [0, 1], on the test split
    sender_accuracy: float
    receiver_accuracy: float
    normalized_accuracy: float  # stitched / receiver
    stitched_loss: float  # test cross-entropy of the stitched network
    stitch_loss: float  # the objective's final training loss
    activation_mse: float  # stitched activation vs the receiver's own, at the receiver point
    activation_cka: float  # linear CKA of the same two, on the first CKA_EXAMPLES test images
    stitch_parameters: int
    epochs: int
    seconds: float
    seed: int = 0
    sender_point_index: int = -1
    receiver_point_index: int = -1

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in asdict(self).items()}


@torch.no_grad()
def measure_stitched(model: StitchedModel, dataset: Dataset, batch_size: int = 512,
                     device: torch.device | str = "cpu") -> dict[str, float]:
    """Accuracy, loss, activation MSE and CKA of a stitched network on the test split."""
    model.eval()
    loader = make_loader(dataset, "test", batch_size, device=device)
    correct, loss_sum, sq_sum, elements = 0, 0.0, 0.0, 0
    cka_out, cka_ref, kept = [], [], 0
    for x, y in loader:
        out = model.stitch(model.sender_activation(x))
        ref = model.receiver_activation(x)
        logits = model.receiver_suffix(out)
        correct += int((logits.argmax(1) == y).sum())
        loss_sum += float(torch.nn.functional.cross_entropy(logits.float(), y, reduction="sum"))
        sq_sum += float(((out.double() - ref.double()) ** 2).sum())
        elements += out.numel()
        if kept < CKA_EXAMPLES:
            take = min(CKA_EXAMPLES - kept, len(x))
            cka_out.append(out[:take].flatten(1).cpu())  # (B, C*H*W)
            cka_ref.append(ref[:take].flatten(1).cpu())
            kept += take
    n = loader.num_examples
    return {
        "accuracy": correct / n,
        "loss": loss_sum / n,
        "activation_mse": sq_sum / elements,
        "activation_cka": linear_cka(torch.cat(cka_out), torch.cat(cka_ref)),
    }
