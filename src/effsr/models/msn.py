"""MSN: the NTIRE 2024 ESR entry of team 28 (DASE-IDEALab), an MDRN derivative with separable BSConvs ("MDAB" blocks).

Paper: none of its own; described in B. Ren, Y. Li, N. Mehta, R. Timofte et al., "The Ninth NTIRE 2024 Efficient
Super-Resolution Challenge Report", CVPR Workshops (NTIRE) 2024, arXiv:2404.10343 (team DASE-IDEALab).
Factsheet (NTIRE 2024 ESR, team 28): 87,612 parameters.
Official code and weights: ``Amazingren/NTIRE2024_ESR`` @ 6404fa48dde4a4adbf241a51debdc661aef20449,
``models/team28_MSN.py``, ``model_zoo/team28_MSN.pth``. Licence: MIT.
Written from ``shared/specs/MSN.md`` (no official code copied).

Differences from MDRN (``mdrn.py``, specs/MSN.md): every BSConvU is separable (3x1 then 1x3 depth-wise, both reflect),
and a strided one applies its stride in *both* halves, so the ESA works at 1/4 resolution (pitfall 8); the ESA starts
with a channels-first LayerNorm and gates the normalised tensor (pitfall 9); the block outputs are summed, not
concatenated, so ``c1`` is C -> C. Input and output are RGB in [0,1] with the DIV2K mean shift inside; no clamping.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..weights import WeightsRecord
from ._registry import ModelSpec, register_model
from .blocks import ECCA, ChannelsFirstLayerNorm, UpsampleOneStep, local_variance, rgb_mean_tensor

# specs/MSN.md section 2: ESA width num_features // 4, CCA MLP width num_features // 16, LayerNorm eps 1e-6.
_ESA_RATIO = 4
_CCA_REDUCTION = 16
_LN_EPS = 1e-6


class SeparableBSConvU(nn.Module):
    """BSConvU with a separable depth-wise half: ``pw`` 1x1 (no bias) -> ``dw1`` kx1 -> ``dw2`` 1xk.

    Both depth-wise convs are reflect-padded and, when strided, *both* take the stride (specs/README.md pitfall 8),
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


class MSNAttention(nn.Module):
    """MSN's multi-level spatial attention (``MDSA`` in the official code; specs/MSN.md section 3).

    LayerNorm first; the mask multiplies the *normalised* tensor (the residual around it adds the raw input).
    Pools k3 s3 p1, k5 s3 p0, k7 s3 p1 (pitfall 10), 7x7 stride-3 unbiased local variance on the k7 branch.
    """

    def __init__(self, num_features: int, esa_channels: int) -> None:
        super().__init__()
        f = esa_channels
        self.ln = ChannelsFirstLayerNorm(num_features, eps=_LN_EPS)
        self.conv1 = nn.Conv2d(num_features, f, 1)
        self.conv_f = nn.Conv2d(f, f, 1)
        self.conv2_0 = SeparableBSConvU(f, f, 3, stride=2)
        self.conv2_1 = SeparableBSConvU(f, f, 3, stride=2)
        self.conv2_2 = SeparableBSConvU(f, f, 3, stride=2)
        self.conv2_3 = SeparableBSConvU(f, f, 3, stride=2)
        self.conv_max_0 = SeparableBSConvU(f, f, 3)
        self.conv_max_1 = SeparableBSConvU(f, f, 3)
        self.conv_max_2 = SeparableBSConvU(f, f, 3)
        self.conv3_0 = SeparableBSConvU(f, f, 3)
        self.conv3_1 = SeparableBSConvU(f, f, 3)
        self.conv3_2 = SeparableBSConvU(f, f, 3)
        self.conv4 = nn.Conv2d(f, num_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        xn = self.ln(x)
        c1_ = self.conv1(xn)
        p0 = F.max_pool2d(self.conv2_0(c1_), kernel_size=3, stride=3, padding=1)
        p1 = F.max_pool2d(self.conv2_1(c1_), kernel_size=5, stride=3, padding=0)
        p2 = F.max_pool2d(self.conv2_2(c1_), kernel_size=7, stride=3, padding=1)
        v3 = local_variance(self.conv2_3(c1_), kernel_size=7, stride=3, padding=1)
        a0 = self.conv3_0(F.gelu(self.conv_max_0(p0)))
        a1 = self.conv3_1(F.gelu(self.conv_max_1(p1)))
        a2 = self.conv3_2(F.gelu(self.conv_max_2(p2 + v3)))
        u0 = F.interpolate(a0, size=size, mode="bilinear", align_corners=False)
        u1 = F.interpolate(a1, size=size, mode="bilinear", align_corners=False)
        u2 = F.interpolate(a2, size=size, mode="bilinear", align_corners=False)
        m = torch.sigmoid(self.conv4(((u0 + u1) + u2) + self.conv_f(c1_)))
        return xn * m


class MSNAttentionResidual(nn.Module):
    """``esa``: the attention nested as ``body.0`` (pitfall 4), plus the raw input."""

    def __init__(self, num_features: int, esa_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(MSNAttention(num_features, esa_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


class MDAB(nn.Module):
    """MSN's block (``EADB`` in the official code): MDRN's distillation wiring with separable BSConvUs."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        c, d = num_features, num_features // 2
        self.c1_d = nn.Conv2d(c, d, 1)
        self.c1_r = SeparableBSConvU(c, c, 3)
        self.c2_d = nn.Conv2d(c, d, 1)
        self.c2_r = SeparableBSConvU(c, c, 3)
        self.c3_d = nn.Conv2d(c, d, 1)
        self.c3_r = SeparableBSConvU(c, c, 3)
        self.c4 = SeparableBSConvU(c, d, 3)
        self.c5 = nn.Conv2d(4 * d, c, 1)
        self.esa = MSNAttentionResidual(c, c // _ESA_RATIO)
        self.cca = ECCA(c, _CCA_REDUCTION)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d1 = F.gelu(self.c1_d(x))
        r1 = F.gelu(self.c1_r(x) + x)
        d2 = F.gelu(self.c2_d(r1))
        r2 = F.gelu(self.c2_r(r1) + r1)
        d3 = F.gelu(self.c3_d(r2))
        r3 = F.gelu(self.c3_r(r2) + r2)
        r4 = F.gelu(self.c4(r3))
        out = self.c5(torch.cat([d1, d2, d3, r4], dim=1))
        out = self.cca(self.esa(out))
        return out + x


class MSN(nn.Module):
    """MSN: ``fea_conv``, ``num_blocks`` blocks (``B1``..``BN``), their outputs *summed* left to right -> ``c1`` ->
    GELU -> ``c2`` + long skip, 3x3 conv + PixelShuffle, mean added back (specs/MSN.md section 3).

    Input and output are float RGB in [0,1]; the mean shift is internal. No clamping.
    """

    # specs/README.md pitfall 17: the ESA down-samples by 4 before pooling; below 29x29 a reflect pad underflows.
    min_size: int = 29
    # Tiling (effsr.infer): stride 2 in both separable halves (1/4 resolution), then stride 3: period 12.
    tile_multiple: int = 12

    def __init__(self, *, scale: int = 4, num_features: int = 28, num_blocks: int = 8) -> None:
        super().__init__()
        self.scale = int(scale)
        self.num_blocks = num_blocks
        # Plain tensor, not a buffer (pitfall 5); moved to the input's device in forward.
        self.mean = rgb_mean_tensor()
        # 'same' as in the official code (fvcore skips it; the profiler reproduces that, specs/MSN.md section 5).
        self.fea_conv = nn.Conv2d(3, num_features, 3, padding="same")
        for i in range(1, num_blocks + 1):
            setattr(self, f"B{i}", MDAB(num_features))
        self.c1 = nn.Conv2d(num_features, num_features, 1)
        self.c2 = SeparableBSConvU(num_features, num_features, 3)
        self.upsampler = UpsampleOneStep(num_features, 3, self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.mean.to(device=x.device, dtype=x.dtype)
        out_fea = self.fea_conv(x - mean)
        out = self.B1(out_fea)
        total = out
        for i in range(2, self.num_blocks + 1):
            out = getattr(self, f"B{i}")(out)
            total = total + out  # (((F1 + F2) + F3) + ...): the official left-to-right order
        out = self.c2(F.gelu(self.c1(total))) + out_fea
        return self.upsampler(out) + mean


def msn(*, scale: int = 4, num_features: int = 28, num_blocks: int = 8) -> MSN:
    """Build MSN (defaults: the NTIRE 2024 team 28 model, 28 channels, 8 blocks, x4)."""
    return MSN(scale=scale, num_features=num_features, num_blocks=num_blocks)


def detect_msn(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any] | None:
    """Constructor kwargs from the key names and shapes of a bare MSN state_dict, or None."""
    needed = ("fea_conv.weight", "B1.c1_r.dw1.weight", "B1.esa.body.0.ln.weight", "B1.cca.body.3.weight",
              "c1.weight", "c2.dw2.weight", "upsampler.upsampleOneStep.0.weight")
    if not all(k in state_dict for k in needed):
        return None
    num_features, in_channels = state_dict["fea_conv.weight"].shape[:2]
    if in_channels != 3:  # the mean shift is RGB
        return None
    blocks = {int(m.group(1)) for k in state_dict if (m := re.match(r"B(\d+)\.", k))}
    num_blocks = max(blocks)
    if blocks != set(range(1, num_blocks + 1)):
        return None
    up = int(state_dict["upsampler.upsampleOneStep.0.weight"].shape[0])
    scale = round((up / 3) ** 0.5)
    if 3 * scale * scale != up:
        return None
    return {"scale": scale, "num_features": int(num_features), "num_blocks": num_blocks}


_REPO = "Amazingren/NTIRE2024_ESR"
_COMMIT = "6404fa48dde4a4adbf241a51debdc661aef20449"

MSN_NTIRE2024 = WeightsRecord(
    name="msn_ntire2024",
    model="msn",
    file="team28_MSN.pth",
    url=f"https://github.com/{_REPO}/raw/{_COMMIT}/model_zoo/team28_MSN.pth",
    sha256="5cbe6074c9c041f9894fa697f179c4deea4e91f0d0e06106c20ba24bcaeb6609",
    wrapper_key="params_ema",  # the evaluated EMA weights; 'params' differs (specs/README.md pitfall 1)
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
        builder=msn,
        weights=(MSN_NTIRE2024,),
        detect=detect_msn,
        description="MSN (NTIRE 2024 team 28): MDRN derivative with separable BSConvs and a LayerNorm ESA",
        weight_determined=("scale", "num_features", "num_blocks"),
    )
)
