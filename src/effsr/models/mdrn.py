"""MDRN: Multi-level Dispersion Residual Network, and MDRN-S, its 28-channel NTIRE 2023 ESR challenge model.

Paper: Y. Mao, N. Zhang, Q. Wang, B. Bai, W. Bai, H. Fang, P. Liu, M. Li, S. Yan, "Multi-level Dispersion Residual
Network for Efficient Image Super-Resolution", CVPR Workshops (NTIRE) 2023, pp. 1660-1669.
Factsheet (NTIRE 2023 ESR, team TelunXupt): MDRN-S, 8 blocks, 28 channels, 95,396 parameters, 5.58 G FLOPs (the 2023
conv-hook counter, LR 256x256).
Official code and weights: ``bbbolt/MDRN`` @ a919ff291f96bb7ab6267da52a8a8db4354fc653, ``basicsr/archs/mdrn_arch.py``,
``pretrain_models/mdrn-s.pth`` (MDRN-S) and ``pretrain_models/mdrn_x{4,3,2}.pth`` (full MDRN, 56 channels).
Licence: MIT. Written from ``shared/specs/MDRN.md`` (no official code copied).

Two registry names share the :class:`MDRN` class: ``mdrn_s`` (28 channels, the challenge model; the official class
default of 56 channels must *not* be used for ``mdrn-s.pth``, specs/README.md section 5) and ``mdrn`` (56 channels, the
paper's model, x4/x3/x2 weights). Input and output are RGB in [0,1]; the DIV2K mean is subtracted at the input and
added back after the pixel shuffle. No clamping.
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
from .blocks import EADB, BSConvU, UpsampleOneStep, register_mean

# specs/MDRN.md section 1: the challenge model's width (MDRN-S); the full MDRN uses 56.
_MDRN_S_FEATURES = 28
_MDRN_FEATURES = 56


class MDRN(nn.Module):
    """MDRN: ``fea_conv``, ``num_blocks`` EADBs (``B1``..``BN``), concatenation -> ``c1`` -> GELU -> ``c2`` + long
    skip, 3x3 conv + PixelShuffle, mean added back (specs/MDRN.md section 3).

    Input and output are float RGB in [0,1]; the mean shift is internal. No clamping.

    Defaults: the full MDRN of the paper (56 channels, 8 blocks, x4); ``mdrn_s`` builds the 28-channel challenge model.
    """

    def __init__(self, *, scale: int = 4, num_features: int = _MDRN_FEATURES, num_blocks: int = 8) -> None:
        super().__init__()
        self.scale = int(scale)
        # The stride-2 ESA branch, its pools and reflect pads underflow below 15x15 (../shared/specs/README.md
        # section 5); MDSA's stride-2 BSConvU then stride-3 pools and local variance repeat every 6 LR pixels.
        self.tiling = TilingSpec(scale=self.scale, min_size=15, stride_period=6)
        self.num_blocks = num_blocks
        # The DIV2K mean, a non-persistent buffer: no state_dict entry, moved with the model.
        register_mean(self)
        # 'same' as in the official code (fvcore skips it; the profiler reproduces that, specs/MDRN.md section 5).
        self.fea_conv = nn.Conv2d(3, num_features, 3, padding="same")
        # Attributes B1..BN, not a ModuleList: the official keys read ``B<i>.*`` (specs/README.md section 5).
        for i in range(1, num_blocks + 1):
            setattr(self, f"B{i}", EADB(num_features))
        self.c1 = nn.Conv2d(num_features * num_blocks, num_features, 1)
        self.c2 = BSConvU(num_features, num_features, 3)
        self.upsampler = UpsampleOneStep(num_features, 3, self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.mean
        out_fea = self.fea_conv(x - mean)
        outs = []
        out = out_fea
        for i in range(1, self.num_blocks + 1):
            out = getattr(self, f"B{i}")(out)
            outs.append(out)
        out = self.c2(F.gelu(self.c1(torch.cat(outs, dim=1)))) + out_fea
        return self.upsampler(out) + mean


def mdrn_s(*, scale: int = 4, num_features: int = _MDRN_S_FEATURES, num_blocks: int = 8) -> MDRN:
    """Build MDRN-S, the NTIRE 2023 ESR challenge model (defaults: 28 channels, 8 blocks, x4)."""
    return MDRN(scale=scale, num_features=num_features, num_blocks=num_blocks)


def _detect_any_mdrn(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any] | None:
    """Constructor kwargs of any MDRN-family state_dict (any width), or None when the keys are not MDRN's."""
    needed = ("fea_conv.weight", "B1.c1_r.dw.weight", "B1.esa.body.0.conv2_3.dw.weight", "B1.cca.body.3.weight",
              "c1.weight", "c2.dw.weight", "upsampler.upsampleOneStep.0.weight")
    # MSN shares most key names but has separable dw1/dw2 convs and an ESA LayerNorm.
    if not all(k in state_dict for k in needed) or "B1.esa.body.0.ln.weight" in state_dict:
        return None
    kwargs = read_common(state_dict, stem="fea_conv.weight", blocks="B", upsampler="upsampler.upsampleOneStep.0.weight")
    if kwargs is None or kwargs["in_channels"] != 3:  # the mean shift is RGB
        return None
    # MDRN concatenates the block outputs (c1 is N*C -> C); MSN sums them (C -> C).
    if state_dict["c1.weight"].shape[1] != kwargs["num_blocks"] * kwargs["num_features"]:
        return None
    return {k: kwargs[k] for k in ("scale", "num_features", "num_blocks")}


def detect_mdrn_s(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any] | None:
    """Kwargs for a 28-channel MDRN state_dict (``mdrn_s``), or None."""
    kwargs = _detect_any_mdrn(state_dict)
    return kwargs if kwargs is not None and kwargs["num_features"] == _MDRN_S_FEATURES else None


def detect_mdrn(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any] | None:
    """Kwargs for an MDRN state_dict of any width other than 28 (28 channels is ``mdrn_s``), or None."""
    kwargs = _detect_any_mdrn(state_dict)
    return kwargs if kwargs is not None and kwargs["num_features"] != _MDRN_S_FEATURES else None


_REPO = "bbbolt/MDRN"
_COMMIT = "a919ff291f96bb7ab6267da52a8a8db4354fc653"


def _record(
    name: str, model: str, file: str, sha256: str, wrapper_key: str | None, kwargs: dict[str, int], params: int,
    description: str,
) -> WeightsRecord:
    return WeightsRecord(
        name=name,
        model=model,
        file=file,
        url=f"https://github.com/{_REPO}/raw/{_COMMIT}/pretrain_models/{file}",
        sha256=sha256,
        wrapper_key=wrapper_key,
        kwargs=kwargs,
        params=params,
        source=f"{_REPO} @ {_COMMIT[:8]}, pretrain_models/{file}",
        licence="MIT",
        scale=kwargs["scale"],
        description=description,
    )


MDRN_S_NTIRE2023 = _record(
    "mdrn_s_ntire2023", "mdrn_s", "mdrn-s.pth",
    "45f284838a431164375cb11f6f5d7a6e02a5015bcefa21b82f1a5bba34ccb9a9",
    None,  # bare state_dict (specs/README.md section 5)
    {"scale": 4, "num_features": 28, "num_blocks": 8},
    95_396,
    "MDRN-S, NTIRE 2023 ESR challenge model (team TelunXupt), 28 ch, 8 blocks; Set5 x4 RGB PSNR 30.15 dB",
)
# The full MDRN checkpoints wrap the evaluated EMA weights under 'params_ema' ('params' holds different weights).
# Parameter counts: x4 from specs/MDRN.md section 5; x3 and x2 computed from the built model and equal to the
# number of elements in the files (tests/models/test_mdrn_msn.py checks both).
MDRN_X4 = _record(
    "mdrn_x4", "mdrn", "mdrn_x4.pth", "c9ad9752bd01feca8b9e3a703cfc2a211ee5eb39d1d67b402d65acf98998f137",
    "params_ema", {"scale": 4, "num_features": 56, "num_blocks": 8}, 321_904,
    "MDRN (CVPRW 2023 paper model), 56 ch, 8 blocks, x4; Set5 x4 RGB PSNR 30.42 dB; a distillation teacher",
)
MDRN_X3 = _record(
    "mdrn_x3", "mdrn", "mdrn_x3.pth", "5b782ea1c3e25ac0aebc8b5eb533bdcc682fb54c11d7ae2e112535db6818d25d",
    "params_ema", {"scale": 3, "num_features": 56, "num_blocks": 8}, 311_299,
    "MDRN (CVPRW 2023 paper model), 56 ch, 8 blocks, x3",
)
MDRN_X2 = _record(
    "mdrn_x2", "mdrn", "mdrn_x2.pth", "a4c9729d0003fb428ebef1902c411f1d43d14e4d96b800ae8f03a92424dba8e7",
    "params_ema", {"scale": 2, "num_features": 56, "num_blocks": 8}, 303_724,
    "MDRN (CVPRW 2023 paper model), 56 ch, 8 blocks, x2",
)

_WEIGHT_DETERMINED = ("scale", "num_features", "num_blocks")

register_model(
    ModelSpec(
        name="mdrn_s",
        builder=mdrn_s,
        weights=(MDRN_S_NTIRE2023,),
        detect=detect_mdrn_s,
        description="MDRN-S, the 28-channel NTIRE 2023 ESR challenge model (mean shift inside)",
        weight_determined=_WEIGHT_DETERMINED,
    )
)
register_model(
    ModelSpec(
        name="mdrn",
        builder=MDRN,
        weights=(MDRN_X4, MDRN_X3, MDRN_X2),
        detect=detect_mdrn,
        description="MDRN, Multi-level Dispersion Residual Network (56 channels; x4, x3, x2 weights)",
        weight_determined=_WEIGHT_DETERMINED,
    )
)
