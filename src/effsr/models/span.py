"""SPAN: Swift Parameter-free Attention Network (NTIRE 2024 ESR overall winner, team 38), deploy form.

Paper: C. Wan, H. Yu, Z. Li, Y. Chen, Y. Zou, Y. Liu, X. Yin, K. Zuo, "Swift Parameter-free Attention Network for
Efficient Super-Resolution", CVPR Workshops (NTIRE) 2024, arXiv:2311.12770.
Factsheet: NTIRE 2024 ESR team 38 entry ``SPAN30`` with 28 channels (``team38_span_ch28_slim.pth``); 150,688
parameters, 9.83 G FLOPs (fvcore, LR 256x256) as measured in ``shared/specs/SPAN.md`` section 4.
Official code and weights: ``Amazingren/NTIRE2024_ESR`` @ 6404fa48dde4a4adbf241a51debdc661aef20449,
``models/team38_SPAN.py``, ``model_zoo/team38_span_ch28_slim.pth``. Licence: MIT.
Written from ``shared/specs/SPAN.md`` (no official code copied).

Only the merged (deploy) form exists in the official class: every ``Conv3XC`` holds a single 3x3 ``eval_conv``.
Unlike the official constructor, nothing here calls ``.cuda()`` or runs a dummy forward (specs/README.md section 5).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..tiling import TilingSpec
from ..weights import WeightsRecord
from ._registry import ModelSpec, read_common, register_model
from .blocks import PixelShuffleUpsampler, register_mean

# specs/SPAN.md section 1: img_range 255; inside, x' = (x - mean) * 255 and the output is used as is.
_IMG_RANGE = 255.0


class Conv3XC(nn.Module):
    """The deploy form of SPAN's re-parameterised conv: one 3x3 conv with bias, zero padding 1 (key ``eval_conv``).

    ``kernel_size`` serves the SPAN descendants that keep the ``eval_conv`` key for other odd sizes (ESPAN's 9x9
    ``Conv9XC``); the padding keeps the spatial size.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.eval_conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.eval_conv(x)


class SPAB(nn.Module):
    """Swift parameter-free attention block (specs/SPAN.md section 3).

    Returns ``(out, a1)`` where ``a1 = SiLU(c1_r(x))``. The official block returns a tensor named like the
    pre-activation c1_r output, but an in-place SiLU has overwritten it, so the value is the activated one
    (specs/README.md section 5); ``a1`` reproduces that value without in-place tricks.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.c1_r = Conv3XC(num_features, num_features)
        self.c2_r = Conv3XC(num_features, num_features)
        self.c3_r = Conv3XC(num_features, num_features)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a1 = F.silu(self.c1_r(x))
        o3 = self.c3_r(F.silu(self.c2_r(a1)))
        # Parameter-free attention: sigmoid centred at 0 (specs/SPAN.md section 2, c3_r row).
        att = torch.sigmoid(o3) - 0.5
        return (o3 + x) * att, a1


class SPAN(nn.Module):
    """SPAN (SPAN30 deploy form): conv_1, ``num_blocks`` chained SPABs, conv_2, a 1x1 fusion of four feature
    maps (conv_1 output, conv_2 output, block 1 output, SiLU(c1_r) of the last block), conv + PixelShuffle.

    Input [0,1] RGB; the mean shift and x255 happen inside and the output is *not* rescaled or shifted back
    (specs/README.md section 5): the trained network emits [0,1] values directly. No clamping.

    Defaults: the NTIRE 2024 ``span_ch28_slim`` model (28 channels, 6 blocks, x4).
    """

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 3,
        out_channels: int = 3,
        num_features: int = 28,
        num_blocks: int = 6,
    ) -> None:
        super().__init__()
        if num_blocks < 1:
            raise ValueError("SPAN needs at least one block")
        self.scale = int(scale)
        # Only zero-padded convolutions: any input size works. Purely local: conv_1, three 3x3 convs per block,
        # conv_2 and the upsampler's conv, all 3x3 at LR resolution (21 for the 6 blocks of specs/SPAN.md section 3),
        # so tiles are exact once their seam band covers that radius.
        self.tiling = TilingSpec(scale=self.scale, receptive_radius=3 * num_blocks + 3, exact=True)
        self.num_blocks = num_blocks
        # The DIV2K mean, a non-persistent buffer: no state_dict entry, moved with the model.
        register_mean(self, "rgb_mean")
        self.conv_1 = Conv3XC(in_channels, num_features)
        # Attributes block_1..block_N, matching the official keys ``block_<i>.*`` (specs/README.md section 5).
        for i in range(1, num_blocks + 1):
            setattr(self, f"block_{i}", SPAB(num_features))
        self.conv_cat = nn.Conv2d(num_features * 4, num_features, 1, bias=True)
        self.conv_2 = Conv3XC(num_features, num_features)
        self.upsampler = PixelShuffleUpsampler(num_features, out_channels, self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.rgb_mean
        x = (x - mean) * _IMG_RANGE
        out_feature = self.conv_1(x)
        out = out_feature
        out_b1 = out_feature
        a1_last = out_feature
        for i in range(1, self.num_blocks + 1):
            out, a1_last = getattr(self, f"block_{i}")(out)
            if i == 1:
                out_b1 = out
        out_final = self.conv_2(out)
        # Concatenation order (specs/SPAN.md section 3): [F0, conv_2(F_N), F_1, SiLU(block_N.c1_r(F_{N-1}))].
        fused = self.conv_cat(torch.cat([out_feature, out_final, out_b1, a1_last], dim=1))
        return self.upsampler(fused)


def detect_span(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any] | None:
    """Constructor kwargs from the key names and shapes of a bare SPAN (deploy form) state_dict, or None."""
    needed = ("conv_1.eval_conv.weight", "block_1.c1_r.eval_conv.weight", "conv_cat.weight",
              "conv_2.eval_conv.weight", "upsampler.0.weight")
    if not all(k in state_dict for k in needed):
        return None
    kwargs = read_common(state_dict, stem="conv_1.eval_conv.weight", blocks="block_", upsampler="upsampler.0.weight")
    if kwargs is None or state_dict["conv_cat.weight"].shape[1] != 4 * kwargs["num_features"]:
        return None
    return kwargs


_REPO = "Amazingren/NTIRE2024_ESR"
_COMMIT = "6404fa48dde4a4adbf241a51debdc661aef20449"

SPAN_NTIRE2024 = WeightsRecord(
    name="span_ch28_ntire2024",
    model="span",
    file="team38_span_ch28_slim.pth",
    url=f"https://github.com/{_REPO}/raw/{_COMMIT}/model_zoo/team38_span_ch28_slim.pth",
    sha256="6c80f05048313289c6526e5fc9726688d7bb3dfdd6ae3c8b1e7dd09f601e5971",
    wrapper_key=None,  # bare state_dict; all 44 keys match strictly (specs/SPAN.md section 1)
    kwargs={"scale": 4, "in_channels": 3, "out_channels": 3, "num_features": 28, "num_blocks": 6},
    params=150_688,
    source=f"{_REPO} @ {_COMMIT[:8]}, model_zoo/team38_span_ch28_slim.pth",
    licence="MIT",
    scale=4,
    description="SPAN 28 ch (NTIRE 2024 ESR winner, team 38), deploy form; Set5 x4 RGB PSNR 29.84 dB",
)

register_model(
    ModelSpec(
        name="span",
        builder=SPAN,
        weights=(SPAN_NTIRE2024,),
        detect=detect_span,
        description="Swift Parameter-free Attention Network (deploy form), mean shift and x255 inside",
        weight_determined=("scale", "in_channels", "out_channels", "num_features", "num_blocks"),
    )
)
