"""DISP (NTIRE 2026 ESR, team 18): a SPAN-style residual network without attention, deploy form.

Challenge report: B. Ren et al., "The Eleventh NTIRE 2026 Efficient Super-Resolution Challenge Report", CVPRW 2026
(team 18). Stated figures (NTIRE 2026 ``results.json``, as recorded in ``shared/official/README.md``): 163,792
parameters, 10.6934 G FLOPs, 40.89 M activations, 19 convs; DIV2K_LSDIR valid / test PSNR 26.9017 / 27.0157 dB.
Official code and weights: ``Amazingren/NTIRE2026_ESR`` @ 4592ce6db68b395699f13e7e2a4e3baf317ef1c6,
``models/team18_DISP.py``, ``model_zoo/team18_DISP.pth``. Licence: MIT (the repository's root ``LICENSE``; the model
file states none). Written from the official file read as facts and ``shared/official/README.md`` (no official code
copied); each behaviour marked below as an official quirk is one of its "Traps".

Official quirk: the class ignores its ``num_block`` argument (always 4 blocks) and gives each block one extra
conv: a REECB is conv-SiLU-conv-SiLU-conv-SiLU-conv, then ``SiLU(c3) + x`` (the extra conv sits in the ModuleList
``_extern_conv_block``). Then a 1x1 ``conv_2``, the stem output added, and a 3x3 conv + PixelShuffle(4). No attention,
no normalisation: input 0..1 as is. The harness's 20 warm-up forwards change no state and are not reproduced.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..tiling import TilingSpec
from ._registry import ModelSpec, StateDict, count_numbered, model_zoo_record, register_model, upsampler_scale
from .blocks import PixelShuffleUpsampler
from .span import Conv3XC


class REECB(nn.Module):
    """DISP's block: ``c1_r``, ``c2_r``, ``extra_convs`` more 3x3 convs, ``c3_r``, SiLU after each, + input."""

    def __init__(self, num_features: int, extra_convs: int = 1) -> None:
        super().__init__()
        # Declared first, as in the official block (the key prefix is ``_extern_conv_block.<i>``).
        self._extern_conv_block = nn.ModuleList(Conv3XC(num_features, num_features) for _ in range(extra_convs))
        self.c1_r = Conv3XC(num_features, num_features)
        self.c2_r = Conv3XC(num_features, num_features)
        self.c3_r = Conv3XC(num_features, num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.silu(self.c2_r(F.silu(self.c1_r(x))))
        for conv in self._extern_conv_block:
            out = F.silu(conv(out))
        return F.silu(self.c3_r(out)) + x


class DISP(nn.Module):
    """DISP: 3x3 stem, ``num_blocks`` REECBs, 1x1 ``conv_2`` + stem, 3x3 conv + PixelShuffle.

    Input and output are float RGB in [0,1]; no mean shift, no clamping.
    """

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 3,
        out_channels: int = 3,
        num_features: int = 32,
        num_blocks: int = 4,
        extra_convs: int = 1,
    ) -> None:
        super().__init__()
        self.scale = int(scale)
        # Only zero-padded convolutions, no stride: any input size works. Stem 3x3, blocks of 3 + extra_convs 3x3
        # convs, the upsampler's 3x3: 1 + 4 x 4 + 1 = 18 LR pixels for the published model.
        self.tiling = TilingSpec(scale=self.scale, receptive_radius=2 + (3 + extra_convs) * num_blocks, exact=True)
        self.conv_1 = Conv3XC(in_channels, num_features)
        self.blocks = nn.Sequential(*(REECB(num_features, extra_convs) for _ in range(num_blocks)))
        self.conv_2 = nn.Conv2d(num_features, num_features, 1)
        self.upsampler = PixelShuffleUpsampler(num_features, out_channels, self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_feature = self.conv_1(x)
        return self.upsampler(self.conv_2(self.blocks(out_feature)) + out_feature)


def disp(
    *,
    scale: int = 4,
    in_channels: int = 3,
    out_channels: int = 3,
    num_features: int = 32,
    num_blocks: int = 4,
    extra_convs: int = 1,
) -> DISP:
    """Build a DISP (defaults: the NTIRE 2026 team 18 model ``DISP()``, 32 channels, 4 blocks of 4 convs, x4)."""
    return DISP(scale=scale, in_channels=in_channels, out_channels=out_channels, num_features=num_features,
                num_blocks=num_blocks, extra_convs=extra_convs)


def detect_disp(state_dict: StateDict) -> dict[str, Any] | None:
    """Constructor kwargs from the key names and shapes of a bare DISP state_dict, or None."""
    needed = ("conv_1.eval_conv.weight", "blocks.0.c1_r.eval_conv.weight", "blocks.0.c3_r.eval_conv.weight",
              "conv_2.weight", "upsampler.0.weight")
    if not all(k in state_dict for k in needed):
        return None
    num_features, in_channels = (int(n) for n in state_dict["conv_1.eval_conv.weight"].shape[:2])
    num_blocks = count_numbered(state_dict, "blocks.", 0)
    extra = count_numbered(state_dict, "blocks.0._extern_conv_block.", 0) or 0
    # out_channels is taken equal to in_channels (the official class forces it).
    scale = upsampler_scale(int(state_dict["upsampler.0.weight"].shape[0]), in_channels)
    if num_blocks is None or scale is None:
        return None
    return {"scale": scale, "in_channels": in_channels, "out_channels": in_channels, "num_features": num_features,
            "num_blocks": num_blocks, "extra_convs": extra}


_REPO = "Amazingren/NTIRE2026_ESR"
_COMMIT = "4592ce6db68b395699f13e7e2a4e3baf317ef1c6"

DISP_NTIRE2026 = model_zoo_record(
    _REPO,
    _COMMIT,
    "team18_DISP.pth",
    name="disp_ntire2026",
    model="disp",
    sha256="b53944ab3a6ab63d5004f5dd0fae3d76cc7d308f2145942d0e41211aaf9225bf",
    wrapper_key=None,  # bare state_dict, loaded strictly by the harness
    kwargs={"scale": 4, "in_channels": 3, "out_channels": 3, "num_features": 32, "num_blocks": 4, "extra_convs": 1},
    params=163_792,
    licence="MIT",
    scale=4,
    description="DISP (NTIRE 2026 ESR, team 18): 4 residual blocks of 4 convs, no attention; Set5 x4 RGB PSNR 30.04 dB",
)

register_model(
    ModelSpec(
        name="disp",
        builder=disp,
        weights=(DISP_NTIRE2026,),
        detect=detect_disp,
        description="DISP: plain residual SiLU blocks (no attention), no mean shift",
        weight_determined=("scale", "in_channels", "out_channels", "num_features", "num_blocks", "extra_convs"),
    )
)
