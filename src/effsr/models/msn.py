"""MSN: the NTIRE 2024 ESR entry of team 28 (DASE-IDEALab), an MDRN derivative with separable BSConvs ("MDAB" blocks).

Paper: none of its own; described in B. Ren, Y. Li, N. Mehta, R. Timofte et al., "The Ninth NTIRE 2024 Efficient
Super-Resolution Challenge Report", CVPR Workshops (NTIRE) 2024, arXiv:2404.10343 (team DASE-IDEALab).
Factsheet (NTIRE 2024 ESR, team 28): 87,612 parameters.
Official code and weights: ``Amazingren/NTIRE2024_ESR`` @ 6404fa48dde4a4adbf241a51debdc661aef20449,
``models/team28_MSN.py``, ``model_zoo/team28_MSN.pth``. Licence: MIT.
Written from ``shared/specs/MSN.md`` (no official code copied).

Differences from MDRN (``mdrn.py``, specs/MSN.md; specs/README.md section 5): every BSConvU is separable (3x1 then
1x3 depth-wise, both reflect), and a strided one applies its stride in *both* halves, so the ESA works at 1/4
resolution; the ESA starts with a channels-first LayerNorm and gates the normalised tensor; the block outputs are
summed, not concatenated, so ``c1`` is C -> C. Input and output are RGB in [0,1] with the DIV2K mean shift inside; no
clamping.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..tiling import TilingSpec
from ..weights import WeightsRecord
from ._registry import ModelSpec, read_common, register_model
from .blocks import EADB, ChannelsFirstLayerNorm, UpsampleOneStep, register_mean

# specs/MSN.md section 2: the ESA's LayerNorm eps (its width num_features // 4 and the CCA's num_features // 16 are
# MDRN's, blocks.ESA_RATIO and blocks.CCA_REDUCTION).
_LN_EPS = 1e-6


class SeparableBSConvU(nn.Module):
    """BSConvU with a separable depth-wise half: ``pw`` 1x1 (no bias) -> ``dw1`` kx1 -> ``dw2`` 1xk.

    Both depth-wise convs are reflect-padded and, when strided, *both* take the stride (specs/README.md section 5),
    so ``stride=2`` down-samples by 4 in each dimension.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *, stride: int = 1) -> None:
        super().__init__()
        p = (kernel_size - 1) // 2
        self.pw = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.dw1 = nn.Conv2d(
            out_channels, out_channels, (kernel_size, 1), stride=stride, padding=(p, 0),
            groups=out_channels, padding_mode="reflect",
        )
        self.dw2 = nn.Conv2d(
            out_channels, out_channels, (1, kernel_size), stride=stride, padding=(0, p),
            groups=out_channels, padding_mode="reflect",
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dw2(self.dw1(self.pw(x)))


class MSN(nn.Module):
    """MSN: ``fea_conv``, ``num_blocks`` blocks (``B1``..``BN``), their outputs *summed* left to right -> ``c1`` ->
    GELU -> ``c2`` + long skip, 3x3 conv + PixelShuffle, mean added back (specs/MSN.md section 3).

    Input and output are float RGB in [0,1]; the mean shift is internal. No clamping.

    Defaults: the NTIRE 2024 team 28 model (28 channels, 8 blocks, x4).
    """

    def __init__(self, *, scale: int = 4, num_features: int = 28, num_blocks: int = 8) -> None:
        super().__init__()
        self.scale = int(scale)
        # The ESA down-samples by 4 before pooling: below 29x29 a reflect pad underflows (../shared/specs/README.md
        # section 5). Stride 2 in both separable halves (1/4 resolution), then stride 3: a period of 12 LR pixels.
        self.tiling = TilingSpec(scale=self.scale, min_size=29, stride_period=12)
        self.num_blocks = num_blocks
        # The DIV2K mean, a non-persistent buffer: no state_dict entry, moved with the model.
        register_mean(self)
        # 'same' as in the official code (fvcore skips it; the profiler reproduces that, specs/MSN.md section 5).
        self.fea_conv = nn.Conv2d(3, num_features, 3, padding="same")
        for i in range(1, num_blocks + 1):
            # MSN's block ("MDAB"; "EADB" in the official code): MDRN's wiring with separable BSConvUs and the
            # LayerNorm ESA (specs/MSN.md section 3).
            norm = partial(ChannelsFirstLayerNorm, eps=_LN_EPS)
            setattr(self, f"B{i}", EADB(num_features, conv=SeparableBSConvU, norm=norm))
        self.c1 = nn.Conv2d(num_features, num_features, 1)
        self.c2 = SeparableBSConvU(num_features, num_features, 3)
        self.upsampler = UpsampleOneStep(num_features, 3, self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.mean
        out_fea = self.fea_conv(x - mean)
        out = self.B1(out_fea)
        total = out
        for i in range(2, self.num_blocks + 1):
            out = getattr(self, f"B{i}")(out)
            total = total + out  # (((F1 + F2) + F3) + ...): the official left-to-right order
        out = self.c2(F.gelu(self.c1(total))) + out_fea
        return self.upsampler(out) + mean


def detect_msn(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any] | None:
    """Constructor kwargs from the key names and shapes of a bare MSN state_dict, or None."""
    needed = ("fea_conv.weight", "B1.c1_r.dw1.weight", "B1.esa.body.0.ln.weight", "B1.cca.body.3.weight",
              "c1.weight", "c2.dw2.weight", "upsampler.upsampleOneStep.0.weight")
    if not all(k in state_dict for k in needed):
        return None
    kwargs = read_common(state_dict, stem="fea_conv.weight", blocks="B", upsampler="upsampler.upsampleOneStep.0.weight")
    if kwargs is None or kwargs["in_channels"] != 3:  # the mean shift is RGB
        return None
    return {k: kwargs[k] for k in ("scale", "num_features", "num_blocks")}


_REPO = "Amazingren/NTIRE2024_ESR"
_COMMIT = "6404fa48dde4a4adbf241a51debdc661aef20449"

MSN_NTIRE2024 = WeightsRecord(
    name="msn_ntire2024",
    model="msn",
    file="team28_MSN.pth",
    url=f"https://github.com/{_REPO}/raw/{_COMMIT}/model_zoo/team28_MSN.pth",
    sha256="5cbe6074c9c041f9894fa697f179c4deea4e91f0d0e06106c20ba24bcaeb6609",
    wrapper_key="params_ema",  # the evaluated EMA weights; 'params' differs (specs/README.md section 5)
    kwargs={"scale": 4, "num_features": 28, "num_blocks": 8},
    params=87_612,
    source=f"{_REPO} @ {_COMMIT[:8]}, model_zoo/team28_MSN.pth",
    licence="MIT",
    scale=4,
    description="MSN, NTIRE 2024 ESR team 28 (DASE-IDEALab), 28 ch, 8 blocks; Set5 x4 RGB PSNR 30.02 dB",
)

register_model(
    ModelSpec(
        name="msn",
        builder=MSN,
        weights=(MSN_NTIRE2024,),
        detect=detect_msn,
        description="MSN (NTIRE 2024 team 28): MDRN derivative with separable BSConvs and a LayerNorm ESA",
        weight_determined=("scale", "num_features", "num_blocks"),
    )
)
