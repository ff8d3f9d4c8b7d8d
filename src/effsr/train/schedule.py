"""Learning-rate schedules as pure functions of the iteration (nothing to save but the iteration itself).

``multistep`` multiplies the base rate by ``gamma`` at each milestone (PyTorch/BasicSR ``MultiStepLR``);
``cosine`` anneals from the base rate to ``eta_min`` over the stage (``CosineAnnealingLR``); ``constant`` keeps it.
An optional linear warm-up scales the first ``warmup_iters`` iterations.
"""

from __future__ import annotations

import bisect
import math

from .recipe import Stage

__all__ = ["lr_at"]


def lr_at(stage: Stage, it: int) -> float:
    """The rate used by the optimizer step of iteration ``it`` (0-based) of ``stage``."""
    if stage.schedule == "multistep":
        rate = stage.lr * stage.gamma ** bisect.bisect_right(stage.milestones, it)
    elif stage.schedule == "cosine":
        rate = stage.eta_min + (stage.lr - stage.eta_min) * 0.5 * (1.0 + math.cos(math.pi * it / stage.iters))
    else:
        rate = stage.lr
    if stage.warmup_iters and it < stage.warmup_iters:
        rate *= (it + 1) / stage.warmup_iters
    return rate
