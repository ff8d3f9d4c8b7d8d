"""SAFMN-L: the large Spatially-Adaptive Feature Modulation Network, the distillation teacher of LSANet and IFADNet.

Paper: L. Sun, J. Dong, J. Tang, J. Pan, "Spatially-Adaptive Feature Modulation for Efficient Image
Super-Resolution", ICCV 2023, arXiv:2302.13800. The LSANet and IFADNet factsheets (``shared/factsheets/LSANet.txt``,
``IFADNet.txt``) name "the large version of SAFMN" as their teacher.
Official code: ``sunny2109/SAFMN`` @ 68c2182e, ``basicsr/archs/safmn_arch.py``; the x4 "L" configuration of
``options/train/SAFMN/train_L_DF2K_X4.yml``: ``SAFMN(dim=128, n_blocks=16, ffn_scale=2.0, upscaling_factor=4)``,
5,600,816 parameters, 365.13 G fvcore MACs at LR 256x256. Licence: Apache-2.0 (the repository's ``LICENSE/LICENSE``).
Written from ``shared/specs/SAFMN-L.md`` (no official code copied).

Weights: ``SAFMN_L_DF2K_x4.pth`` (about 45 MB) is published on the Hugging Face hub (``Meloo/SAFMN``) and the
authors' Google-Drive / Baidu links, outside what this project's machines can reach, so the zoo holds no copy and
``safmn_l`` has no entry in the registry's ``weights``. :data:`SAFMN_L_DF2K_X4` records where the file is published
and its sha256; it sits in the model spec's ``extra["published_weights"]``, which the training loop reads to say what
to pass (``teacher_weights: FILE``) and to find the file offline in ``$EFFSR_WEIGHTS_DIR`` or the cache. It is never
downloaded automatically.

Input [0,1], no mean shift, no clamp.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..tiling import TilingSpec
from ..weights import WeightsRecord
from ._registry import ModelSpec, register_model
from .blocks import ChannelsFirstLayerNorm

# specs/SAFMN-L.md section 3: four levels; level i > 0 works at (h // 2^i, w // 2^i).
_LEVELS = 4
# specs/SAFMN-L.md section 3: channel LayerNorm eps 1e-6.
_LN_EPS = 1e-6


class SAFM(nn.Module):
    """Spatially-adaptive feature modulation (specs/SAFMN-L.md section 3).

    Split into ``_LEVELS`` equal chunks; chunk 0 gets a depth-wise 3x3 at full resolution, chunk i an adaptive
    max-pool to (h // 2^i, w // 2^i), a depth-wise 3x3 and a nearest resize back; ``aggr`` 1x1 over the concatenation,
    GELU, and the result gates the block input.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__()
        if num_features % _LEVELS:
            raise ValueError(f"num_features {num_features} must be a multiple of {_LEVELS}")
        chunk = num_features // _LEVELS
        self.mfr = nn.ModuleList(nn.Conv2d(chunk, chunk, 3, padding=1, groups=chunk) for _ in range(_LEVELS))
        self.aggr = nn.Conv2d(num_features, num_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        chunks = x.chunk(_LEVELS, dim=1)
        out = [self.mfr[0](chunks[0])]
        for i in range(1, _LEVELS):
            s = F.adaptive_max_pool2d(chunks[i], (h // 2**i, w // 2**i))
            out.append(F.interpolate(self.mfr[i](s), size=(h, w), mode="nearest"))
        return F.gelu(self.aggr(torch.cat(out, dim=1))) * x


class CCM(nn.Module):
    """Convolutional channel mixer: 3x3 expand by ``ffn_scale`` (bias), GELU, 1x1 back (bias). Keys ``ccm.0``/``2``."""

    def __init__(self, num_features: int, ffn_scale: float) -> None:
        super().__init__()
        hidden = int(num_features * ffn_scale)
        self.ccm = nn.Sequential(
            nn.Conv2d(num_features, hidden, 3, padding=1), nn.GELU(), nn.Conv2d(hidden, num_features, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ccm(x)


class AttBlock(nn.Module):
    """``x = SAFM(LN1(x)) + x; x = CCM(LN2(x)) + x`` (specs/SAFMN-L.md section 3)."""

    def __init__(self, num_features: int, ffn_scale: float) -> None:
        super().__init__()
        self.norm1 = ChannelsFirstLayerNorm(num_features, eps=_LN_EPS)
        self.norm2 = ChannelsFirstLayerNorm(num_features, eps=_LN_EPS)
        self.safm = SAFM(num_features)
        self.ccm = CCM(num_features, ffn_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.safm(self.norm1(x)) + x
        return self.ccm(self.norm2(x)) + x


class SAFMNL(nn.Module):
    """SAFMN: ``to_feat`` 3x3, ``num_blocks`` AttBlocks with a global skip, 3x3 conv + PixelShuffle.

    Input and output are float RGB in [0,1]. No clamping.
    """

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 3,
        out_channels: int = 3,
        num_features: int = 128,
        num_blocks: int = 16,
        ffn_scale: float = 2.0,
    ) -> None:
        super().__init__()
        self.scale = int(scale)
        # specs/SAFMN-L.md section 1: the level-3 pool to (h // 8, w // 8) needs at least 8x8; the adaptive
        # max-pools to h // 2, h // 4, h // 8 work on an 8-pixel grid.
        self.tiling = TilingSpec(scale=self.scale, min_size=8, stride_period=8)
        self.to_feat = nn.Conv2d(in_channels, num_features, 3, padding=1)
        self.feats = nn.Sequential(*[AttBlock(num_features, ffn_scale) for _ in range(num_blocks)])
        self.to_img = nn.Sequential(
            nn.Conv2d(num_features, out_channels * self.scale * self.scale, 3, padding=1), nn.PixelShuffle(self.scale)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = self.to_feat(x)
        return self.to_img(self.feats(x0) + x0)


def safmn_l(
    *,
    scale: int = 4,
    in_channels: int = 3,
    out_channels: int = 3,
    num_features: int = 128,
    num_blocks: int = 16,
    ffn_scale: float = 2.0,
) -> SAFMNL:
    """Build a SAFMN (defaults: the x4 "L" configuration, 128 channels, 16 blocks, FFN x2)."""
    return SAFMNL(
        scale=scale,
        in_channels=in_channels,
        out_channels=out_channels,
        num_features=num_features,
        num_blocks=num_blocks,
        ffn_scale=ffn_scale,
    )


def detect_safmn_l(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any] | None:
    """Constructor kwargs from the key names and shapes of a bare SAFMN state_dict, or None."""
    needed = ("to_feat.weight", "feats.0.safm.aggr.weight", "feats.0.ccm.ccm.0.weight", "to_img.0.weight")
    if not all(k in state_dict for k in needed):
        return None
    num_features, in_channels = (int(v) for v in state_dict["to_feat.weight"].shape[:2])
    blocks = {int(m.group(1)) for k in state_dict if (m := re.match(r"feats\.(\d+)\.", k))}
    num_blocks = max(blocks) + 1
    if blocks != set(range(num_blocks)):
        return None
    hidden = int(state_dict["feats.0.ccm.ccm.0.weight"].shape[0])
    ffn_scale = hidden / num_features
    up = int(state_dict["to_img.0.weight"].shape[0])
    # out_channels * scale^2 = up: the usual 3 output channels first, else as many as the input.
    for out_channels in dict.fromkeys((3, in_channels)):
        scale = round((up / out_channels) ** 0.5)
        if scale >= 1 and out_channels * scale * scale == up:
            break
    else:
        return None
    return {
        "scale": scale,
        "in_channels": in_channels,
        "out_channels": out_channels,
        "num_features": num_features,
        "num_blocks": num_blocks,
        "ffn_scale": ffn_scale,
    }


# Where the x4 SAFMN-L weights are published (specs/SAFMN-L.md section 1). The hub address is the model repository's
# "main" revision: no commit of it is known here, so the sha256 is what pins the file.
SAFMN_L_DF2K_X4 = WeightsRecord(
    name="safmn_l_df2k_x4",
    model="safmn_l",
    file="SAFMN_L_DF2K_x4.pth",
    url="https://huggingface.co/Meloo/SAFMN/resolve/main/SAFMN_L_DF2K_x4.pth",
    sha256="51732de198284e2baea8b9598438ec1411af3b98fae12a6b6c87d7ebec07219d",
    # BasicSR's default param_key_g; the authors' inference scripts load ['params'] (specs/SAFMN-L.md section 1).
    wrapper_key="params",
    kwargs={"scale": 4, "in_channels": 3, "out_channels": 3, "num_features": 128, "num_blocks": 16, "ffn_scale": 2.0},
    params=5_600_816,
    source="Hugging Face Meloo/SAFMN, SAFMN_L_DF2K_x4.pth (also the Google-Drive / Baidu links of sunny2109/SAFMN)",
    licence="Apache-2.0",
    scale=4,
    description="SAFMN-L x4 trained on DF2K; DIV2K-val100 x4 RGB PSNR 29.40 dB (the authors' training log)",
)

register_model(
    ModelSpec(
        name="safmn_l",
        builder=safmn_l,
        weights=(),  # not mirrored here: see the module docstring
        detect=detect_safmn_l,
        description="SAFMN-L (ICCV 2023), 128 ch, 16 blocks: the LSANet / IFADNet distillation teacher",
        weight_determined=("scale", "in_channels", "out_channels", "num_features", "num_blocks", "ffn_scale"),
        extra={"published_weights": (SAFMN_L_DF2K_X4,)},
    )
)
