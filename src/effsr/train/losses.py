"""Pixel losses used by the seed recipes: L1, MSE (L2) and Charbonnier.

All return the mean over every element (BasicSR's ``reduction='mean'``, ``loss_weight`` 1), so a loss computed on
a rank's shard averaged over equal shards equals the loss of the whole batch: DDP's gradient averaging then gives
the single-process gradient.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["LOSSES", "charbonnier_loss", "get_loss"]

# BasicSR's CharbonnierLoss default eps (basicsr/losses/basic_loss.py): sqrt((x - y)^2 + eps).
CHARBONNIER_EPS = 1e-12

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def charbonnier_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = CHARBONNIER_EPS) -> torch.Tensor:
    """mean(sqrt((pred - target)^2 + eps)): a smooth L1."""
    return torch.sqrt((pred - target).pow(2) + eps).mean()


LOSSES: dict[str, LossFn] = {
    "l1": F.l1_loss,
    "mse": F.mse_loss,
    "l2": F.mse_loss,  # the factsheets' name for MSE
    "charbonnier": charbonnier_loss,
}


def get_loss(name: str) -> LossFn:
    """A loss function by name (``l1``, ``mse``/``l2``, ``charbonnier``)."""
    try:
        return LOSSES[name.lower()]
    except KeyError:
        close = difflib.get_close_matches(name.lower(), LOSSES, n=2)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise ValueError(f"unknown loss '{name}'{hint} (known: {', '.join(LOSSES)})") from None
