"""RLFN: Residual Local Feature Network (``RLFN_Prune``), the NTIRE 2022 ESR winner and NTIRE 2024 ESR baseline.

Paper: F. Kong, M. Li, S. Liu, D. Liu, J. He, Y. Bai, F. Chen, L. Fu, "Residual Local Feature Network for Efficient
Super-Resolution", CVPR Workshops (NTIRE) 2022, arXiv:2205.07514.
Factsheet (NTIRE 2024 ESR, team 00 baseline): 0.317 M parameters, 19.67 G FLOPs (fvcore, LR 256x256).
Official code and weights: ``Amazingren/NTIRE2024_ESR`` @ 6404fa48dde4a4adbf241a51debdc661aef20449,
``models/team00_RLFN.py``, ``model_zoo/team00_rlfn.pth``. Licence: MIT.
Written from ``shared/specs/RLFN.md`` (no official code copied).

The network works on pixel values in 0..255 (the official harness feeds ``data_range=255``) and has no mean
shift (specs/RLFN.md section 1; specs/README.md section 5). effsr's boundary is [0,1], so ``forward`` multiplies
the input by 255 and divides the output by 255; ``u8 / 255 * 255`` is exact in float32 for every uint8 value, so the
network sees the same integers as in the official harness.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..tiling import TilingSpec
from ..weights import WeightsRecord
from ._registry import ModelSpec, read_common, register_model
from .blocks import ESA, PixelShuffleUpsampler

# specs/RLFN.md section 2, specs/README.md section 5: LeakyReLU slope 0.05 (RLFN only).
_LRELU_SLOPE = 0.05
# The network's own input range (specs/RLFN.md section 1: data_range = 255).
_PIXEL_RANGE = 255.0


class RLFB(nn.Module):
    """Residual local feature block (specs/RLFN.md section 3).

    Three 3x3 convs (num_features -> mid -> mid -> num_features, LeakyReLU 0.05 after each), the residual
    added *before* ``c5`` (1x1) and the ESA; no residual after the ESA.
    """

    def __init__(self, num_features: int, mid_channels: int, esa_channels: int) -> None:
        super().__init__()
        self.c1_r = nn.Conv2d(num_features, mid_channels, 3, padding=1)
        self.c2_r = nn.Conv2d(mid_channels, mid_channels, 3, padding=1)
        self.c3_r = nn.Conv2d(mid_channels, num_features, 3, padding=1)
        self.c5 = nn.Conv2d(num_features, num_features, 1)
        self.esa = ESA(esa_channels, num_features)
        # A module (not F.leaky_relu), in place as in the official code: the NTIRE 2023 conv-hook counter
        # hooks LeakyReLU modules, and fvcore lists the operator as aten::leaky_relu_ (complexity.json).
        self.act = nn.LeakyReLU(_LRELU_SLOPE, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.c1_r(x))
        out = self.act(self.c2_r(out))
        out = self.act(self.c3_r(out))
        return self.esa(self.c5(out + x))


class RLFN(nn.Module):
    """RLFN_Prune: conv_1, ``num_blocks`` sequential RLFBs, conv_2 + long skip, conv + PixelShuffle.

    Input and output are float RGB in [0,1]; the 0..255 scaling is internal. No clamping.

    Defaults: the NTIRE 2024 baseline ``RLFN_Prune`` (46/48/16 channels, 4 blocks, x4).
    """

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 3,
        out_channels: int = 3,
        num_features: int = 46,
        mid_channels: int = 48,
        esa_channels: int = 16,
        num_blocks: int = 4,
    ) -> None:
        super().__init__()
        self.scale = int(scale)
        # Below 15x15 the ESA's stride-2 conv and 7x7 max-pool underflow (../shared/specs/README.md section 5);
        # its stride-2 conv then stride-3 max-pool repeat every 6 LR pixels.
        self.tiling = TilingSpec(scale=self.scale, min_size=15, stride_period=6)
        self.num_blocks = num_blocks
        self.conv_1 = nn.Conv2d(in_channels, num_features, 3, padding=1)
        # Attributes block_1..block_N, not a ModuleList: the official keys read ``block_<i>.*``
        # (specs/README.md section 5).
        for i in range(1, num_blocks + 1):
            setattr(self, f"block_{i}", RLFB(num_features, mid_channels, esa_channels))
        self.conv_2 = nn.Conv2d(num_features, num_features, 3, padding=1)
        self.upsampler = PixelShuffleUpsampler(num_features, out_channels, self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * _PIXEL_RANGE
        out_feature = self.conv_1(x)
        out = out_feature
        for i in range(1, self.num_blocks + 1):
            out = getattr(self, f"block_{i}")(out)
        out = self.conv_2(out) + out_feature
        return self.upsampler(out) / _PIXEL_RANGE


def detect_rlfn(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any] | None:
    """Constructor kwargs from the key names and shapes of a bare RLFN state_dict, or None."""
    needed = ("conv_1.weight", "block_1.c1_r.weight", "block_1.c5.weight", "block_1.esa.conv_f.weight",
              "conv_2.weight", "upsampler.0.weight")
    if not all(k in state_dict for k in needed) or "block_1.c1_r.eval_conv.weight" in state_dict:
        return None
    kwargs = read_common(state_dict, stem="conv_1.weight", blocks="block_", upsampler="upsampler.0.weight")
    if kwargs is None:
        return None
    return {**kwargs, "mid_channels": int(state_dict["block_1.c1_r.weight"].shape[0]),
            "esa_channels": int(state_dict["block_1.esa.conv1.weight"].shape[0])}


_REPO = "Amazingren/NTIRE2024_ESR"
_COMMIT = "6404fa48dde4a4adbf241a51debdc661aef20449"

RLFN_NTIRE2024 = WeightsRecord(
    name="rlfn_ntire2024",
    model="rlfn",
    file="team00_rlfn.pth",
    url=f"https://github.com/{_REPO}/raw/{_COMMIT}/model_zoo/team00_rlfn.pth",
    sha256="3c9be7b9d7a4bece9b68c83a56a1ffb38010f76413d5f215be6b4be842e18fb2",
    wrapper_key=None,  # bare state_dict (specs/README.md section 5)
    kwargs={
        "scale": 4,
        "in_channels": 3,
        "out_channels": 3,
        "num_features": 46,
        "mid_channels": 48,
        "esa_channels": 16,
        "num_blocks": 4,
    },
    params=317_218,
    source=f"{_REPO} @ {_COMMIT[:8]}, model_zoo/team00_rlfn.pth",
    licence="MIT",
    scale=4,
    description="RLFN_Prune, NTIRE 2022 ESR winner and NTIRE 2024 ESR baseline (team 00); Set5 x4 RGB PSNR 30.21 dB",
)

register_model(
    ModelSpec(
        name="rlfn",
        builder=RLFN,
        weights=(RLFN_NTIRE2024,),
        detect=detect_rlfn,
        description="Residual Local Feature Network (RLFN_Prune), 0..255 inside, no mean shift",
        weight_determined=("scale", "in_channels", "out_channels", "num_features", "mid_channels",
                           "esa_channels", "num_blocks"),
    )
)
