"""The single inference contract: ``upscale(model, lr)``.

Takes a plain ``nn.Module`` whose boundary is float RGB in [0,1] (NCHW) and returns its float output
(unclamped). Inputs smaller than the model's minimum size (``model.min_size``) are padded by edge
replication, upscaled and cropped back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def model_scale(model: nn.Module) -> int:
    return int(getattr(model, "scale", 4))


@torch.inference_mode()
def upscale(model: nn.Module, lr: torch.Tensor) -> torch.Tensor:
    """Whole-image forward with padding to the model's minimum input size."""
    if lr.dim() != 4 or lr.shape[1] != 3:
        raise ValueError(f"expected an Nx3xHxW tensor, got {tuple(lr.shape)}")
    min_size = int(getattr(model, "min_size", 1))
    h, w = lr.shape[-2:]
    ph, pw = max(0, min_size - h), max(0, min_size - w)
    x = F.pad(lr, (0, pw, 0, ph), mode="replicate") if (ph or pw) else lr
    sr = model(x)
    s = model_scale(model)
    return sr[..., : h * s, : w * s]
