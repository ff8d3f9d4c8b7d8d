"""ESPAN (NTIRE 2025 ESR, team 36): a SPAN descendant with a 9x9 stem and a two-conv sixth block, deploy form.

Challenge report: B. Ren et al., "The Tenth NTIRE 2025 Efficient Super-Resolution Challenge Report", CVPRW 2025
(team 36). No stated parameter or FLOP figures were found (``shared/official/README.md``); measured with the official
code: 192,272 parameters, 12.5556 G fvcore FLOPs at LR 256x256.
Official code and weights: ``Amazingren/NTIRE2025_ESR`` @ b69fb668c0362deb696eecbfdebfaa5c2fcdfcb4,
``models/team36_espan.py``, ``model_zoo/team36_espan.pth``. Licence: MIT (the repository's root ``LICENSE``; the
model file states none). Written from the official file read as facts and ``shared/official/README.md`` (no official
code copied); each behaviour marked below as an official quirk is one of its "Traps".

The organisers build ``ESPAN(..., teacher_feature_channels=32, teacher_extra_depth=1, use_fast_op=False)`` (model_id
36). The network that runs is the file's "teacher" path: a 9x9 ``conv_1``, five SPABs
(SPAN's block, ``span.py``), a two-conv ``teacher_block_seq`` (``c2_r(SiLU(c1_r(x)))`` with the same parameter-free
attention), ``tea_conv_2``, the 1x1 ``tea_conv_cat`` over ``[conv_1 out, tea_conv_2(b6), b1, b6]`` and
``tea_upsampler`` (its 3x3 under ``tea_upsampler.0.eval_conv``). Input 0..1, no mean shift. ``use_fast_op=True``
(model_id 361) swaps in a CUDA jiterator kernel with the same formula ``(out + x) * (sigmoid(out) - 0.5)``; this file
is that formula in PyTorch. Nothing here runs the official constructor's CUDA dummy forward.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..tiling import TilingSpec
from ._registry import ModelSpec, StateDict, count_numbered, model_zoo_record, register_model, upsampler_scale
from .span import SPAB, Conv3XC

# The stem's kernel (official file: ``Conv9XC``, a 9x9 conv with padding 4 under ``conv_1.eval_conv``).
_STEM_KERNEL = 9


class SPABShort(nn.Module):
    """ESPAN's ``teacher_block_seq``: ``o2 = c2_r(SiLU(c1_r(x)))``, then SPAN's parameter-free attention on ``o2``,
    ``(o2 + x) * (sigmoid(o2) - 0.5)`` (the formula of the file's jiterator kernel)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.c1_r = Conv3XC(num_features, num_features)
        self.c2_r = Conv3XC(num_features, num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o2 = self.c2_r(F.silu(self.c1_r(x)))
        return (o2 + x) * (torch.sigmoid(o2) - 0.5)


class ESPAN(nn.Module):
    """ESPAN's evaluated (teacher) path: 9x9 stem, ``num_blocks`` SPABs, a two-conv block, fusion, upsampler.

    Input and output are float RGB in [0,1]; no mean shift, no clamping.
    """

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 3,
        out_channels: int = 3,
        num_features: int = 32,
        num_blocks: int = 5,
    ) -> None:
        super().__init__()
        if num_blocks < 1:
            raise ValueError("ESPAN needs at least one block")
        self.scale = int(scale)
        # Only zero-padded convolutions, no stride: any input size works. 9x9 stem (radius 4), the SPABs' three 3x3
        # convs each, the two-conv block, tea_conv_2 and the upsampler's 3x3: 4 + 3 num_blocks + 2 + 1 + 1 LR pixels
        # (23 for the published 5 blocks).
        self.tiling = TilingSpec(scale=self.scale, receptive_radius=3 * num_blocks + 8, exact=True)
        self.num_blocks = num_blocks
        self.conv_1 = Conv3XC(in_channels, num_features, kernel_size=_STEM_KERNEL)
        for i in range(1, num_blocks + 1):
            setattr(self, f"block_{i}", SPAB(num_features))
        self.teacher_block_seq = SPABShort(num_features)
        self.tea_conv_cat = nn.Conv2d(num_features * 4, num_features, 1, bias=True)
        self.tea_conv_2 = Conv3XC(num_features, num_features)
        self.tea_upsampler = nn.Sequential(
            Conv3XC(num_features, out_channels * self.scale * self.scale), nn.PixelShuffle(self.scale)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_feature = self.conv_1(x)
        out = out_feature
        out_b1 = out_feature
        for i in range(1, self.num_blocks + 1):
            out, _ = getattr(self, f"block_{i}")(out)
            if i == 1:
                out_b1 = out
        out_b6 = self.teacher_block_seq(out)
        fused = self.tea_conv_cat(torch.cat([out_feature, self.tea_conv_2(out_b6), out_b1, out_b6], dim=1))
        return self.tea_upsampler(fused)


def espan(
    *, scale: int = 4, in_channels: int = 3, out_channels: int = 3, num_features: int = 32, num_blocks: int = 5
) -> ESPAN:
    """Build an ESPAN (defaults: the NTIRE 2025 team 36 model as the organisers run it, 32 channels, x4)."""
    return ESPAN(scale=scale, in_channels=in_channels, out_channels=out_channels, num_features=num_features,
                 num_blocks=num_blocks)


def detect_espan(state_dict: StateDict) -> dict[str, Any] | None:
    """Constructor kwargs from the key names and shapes of a bare ESPAN state_dict, or None."""
    needed = ("conv_1.eval_conv.weight", "block_1.c1_r.eval_conv.weight", "teacher_block_seq.c2_r.eval_conv.weight",
              "tea_conv_cat.weight", "tea_conv_2.eval_conv.weight", "tea_upsampler.0.eval_conv.weight")
    if not all(k in state_dict for k in needed):
        return None
    num_features, in_channels = (int(n) for n in state_dict["conv_1.eval_conv.weight"].shape[:2])
    num_blocks = count_numbered(state_dict, "block_")
    # out_channels is taken equal to in_channels (RGB), as the official constructor's use.
    scale = upsampler_scale(int(state_dict["tea_upsampler.0.eval_conv.weight"].shape[0]), in_channels)
    if num_blocks is None or scale is None:
        return None
    return {"scale": scale, "in_channels": in_channels, "out_channels": in_channels, "num_features": num_features,
            "num_blocks": num_blocks}


_REPO = "Amazingren/NTIRE2025_ESR"
_COMMIT = "b69fb668c0362deb696eecbfdebfaa5c2fcdfcb4"

ESPAN_NTIRE2025 = model_zoo_record(
    _REPO,
    _COMMIT,
    "team36_espan.pth",
    name="espan_ntire2025",
    model="espan",
    sha256="f54d2668aef25cd490ff0ced3c47ba2978fa7cb341264a5339b239ef602ea59c",
    wrapper_key=None,  # bare state_dict of the teacher path the harness runs
    kwargs={"scale": 4, "in_channels": 3, "out_channels": 3, "num_features": 32, "num_blocks": 5},
    params=192_272,
    licence="MIT",
    scale=4,
    description="ESPAN (NTIRE 2025 ESR, team 36): SPAN with a 9x9 stem, 32 ch; Set5 x4 RGB PSNR 30.04 dB",
)

register_model(
    ModelSpec(
        name="espan",
        builder=espan,
        weights=(ESPAN_NTIRE2025,),
        detect=detect_espan,
        description="ESPAN: SPAN descendant with a 9x9 stem and a two-conv sixth block, no mean shift",
        weight_determined=("scale", "in_channels", "out_channels", "num_features", "num_blocks"),
    )
)
