"""What every backend is checked against: the tolerances, the example input, the model's input channels.

The fast engine verifies its deploy graph against the eager forward at preparation, the ONNX export verifies the
file in onnxruntime, and the benchmark compares every backend's output, all on :func:`example_image`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# The float32 contract: every backend equals the eager forward within 5e-4 in [0,1] units (1/8 of an 8-bit level).
FP32_TOLERANCE = 5e-4
# Lower precisions: bound on the max abs error against the float32 eager forward, in [0,1] units. Measured on Set5
# and Set14 crops over the whole zoo with the CPU kernels (worst: bfloat16 4.1e-2 = 10 levels of 8 bits, SPAN;
# float16 6.8e-3 = 1.7 levels, MSN; docs/deploy.md), with ~1.5x margin; tests/test_engine.py checks them.
LOW_PRECISION_TOLERANCE = {torch.bfloat16: 6e-2, torch.float16: 1e-2}


def example_image(channels: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A deterministic image-like input in [0,1]: random values on an 8x coarser grid, bilinearly enlarged.

    Not white noise on purpose: some zoo models (SAFMN++'s modulation, MSN's LayerNorm) amplify pixel-level noise
    far outside the [0,1] range (activations of 1e15 on torch.rand), where any float reordering shows up as a
    large absolute error although the relative error stays ~1e-7. Natural images stay well inside.
    """
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, channels, max(2, height // 8), max(2, width // 8), generator=g)
    return F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False).clamp_(0, 1)


def input_channels(model: nn.Module) -> int:
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            return int(mod.in_channels)
    return 3
