"""Linear CKA (Kornblith et al. 2019) on whole activation matrices, in float64."""

from __future__ import annotations

import torch


def _centred_gram(x: torch.Tensor) -> torch.Tensor:
    x = x.reshape(len(x), -1).double()  # (n, ...) -> (n, d): one row per example
    x = x - x.mean(dim=0, keepdim=True)
    return x @ x.T  # (n, n)


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA between two representations of the same n examples (biased HSIC).

    1 means identical up to rotation and isotropic scaling. NaN when either side is constant.
    """
    if len(x) != len(y):
        raise ValueError(f"CKA needs the same examples on both sides: {len(x)} vs {len(y)}")
    k, l_ = _centred_gram(x), _centred_gram(y)
    hsic_xy = (k * l_).sum()
    norm = torch.sqrt((k * k).sum() * (l_ * l_).sum())
    return float(hsic_xy / norm) if norm > 0 else float("nan")
