"""Training tasks: what one step computes, as a dict of losses (timm ``task/`` style, DESIGN.md habit 8).

A task holds the trained ``model`` (the loop may replace it by its DDP wrapper) and returns
``{"loss": total, <term>: value, ...}``; the loop only moves data, calls ``backward`` on ``"loss"`` and steps.

``DistillTask`` adds a weighted loss towards a frozen teacher's output. The teacher is any zoo model: it is put
in eval mode, its parameters never require grad, it runs under ``torch.no_grad`` and it is deliberately not an
attribute the loop wraps in DDP (it has no gradients to synchronise).
"""

from __future__ import annotations

import torch
from torch import nn

from .losses import LossFn

__all__ = ["DistillTask", "SRTask"]


class SRTask:
    """Plain supervised SR: ``loss = pixel_weight * pixel_loss(model(lr), hr)``."""

    def __init__(self, model: nn.Module, pixel_loss: LossFn, pixel_weight: float = 1.0) -> None:
        self.model = model
        self.pixel_loss = pixel_loss
        self.pixel_weight = pixel_weight

    def train(self, mode: bool = True) -> SRTask:
        self.model.train(mode)
        return self

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        sr = self.model(batch["lr"])
        pixel = self.pixel_loss(sr.float(), batch["hr"])
        return {"loss": self.pixel_weight * pixel, "pixel": pixel.detach()}


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode and no gradients, in place."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


class DistillTask(SRTask):
    """``loss = pixel_weight * pixel_loss(sr, hr) + distill_weight * distill_loss(sr, teacher(lr))``."""

    def __init__(
        self,
        model: nn.Module,
        teacher: nn.Module,
        pixel_loss: LossFn,
        distill_loss: LossFn,
        *,
        pixel_weight: float = 1.0,
        distill_weight: float = 1.0,
    ) -> None:
        super().__init__(model, pixel_loss, pixel_weight)
        student = getattr(model, "module", model)  # through a DDP wrapper
        if getattr(teacher, "scale", None) != getattr(student, "scale", None):
            raise ValueError(f"teacher scale {getattr(teacher, 'scale', None)} != student scale {student.scale}")
        self.teacher = freeze(teacher)
        self.distill_loss = distill_loss
        self.distill_weight = distill_weight

    def train(self, mode: bool = True) -> DistillTask:
        self.model.train(mode)
        self.teacher.eval()  # the teacher stays in eval mode whatever the student does
        return self

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        lr = batch["lr"]
        with torch.no_grad():
            target = self.teacher(lr).float()
        sr = self.model(lr).float()
        pixel = self.pixel_loss(sr, batch["hr"])
        distill = self.distill_loss(sr, target)
        total = self.pixel_weight * pixel + self.distill_weight * distill
        return {"loss": total, "pixel": pixel.detach(), "distill": distill.detach()}
