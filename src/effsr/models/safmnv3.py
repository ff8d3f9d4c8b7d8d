"""SAFMNv3 (``SAFMN_NTIRE25``, NTIRE 2025 ESR team 19): spatially-adaptive feature modulation with variance.

Paper (base model): L. Sun, J. Dong, J. Tang, J. Pan, "Spatially-Adaptive Feature Modulation for Efficient Image
Super-Resolution", ICCV 2023, arXiv:2302.13800; the NTIRE 2025 entry is described in B. Ren et al., "The Tenth NTIRE
2025 Efficient Super-Resolution Challenge Report", CVPRW 2025 (team 19). The team's NTIRE 2025 README states 0.145 M
parameters, 9.52 G FLOPs and 76.69 M activations (RTX 3090); the official code measures 144,672 parameters and
9.4151 G with fvcore (``shared/official/README.md``: the stated FLOPs match neither counter).
Official code and weights: ``Amazingren/NTIRE2025_ESR`` @ b69fb668c0362deb696eecbfdebfaa5c2fcdfcb4,
``models/team19_SAFMNv3.py``, ``model_zoo/team19_safmnv3.pth``. Licence: MIT (the repository's root ``LICENSE``; the
model file states none). Written from the official file read as facts and ``shared/official/README.md`` (no official
code copied); each behaviour marked below as an official quirk is one of its "Traps".

Unlike SAFMN++ (``safmnpp.py``) the modulation block has two 3x3 projections (``conv1`` to the 12 modulated
channels, ``conv2`` to the rest), adds the *unbiased* per-channel variance of the modulated part over the whole map to
the pooled branch before a 1x1 ``conv3``, and the channel mixer is two 1x1 convs. Official quirk: the
adaptive max-pool to ``(h // 8, w // 8)`` gives overlapping, unequal windows when h or w is not a multiple of 8 and
fails below 8 pixels; the modulation map goes back by a bilinear resize to (h, w) (align_corners False); every conv is
bias-free; GELU is the exact erf form. Input 0..1, no mean shift; the output adds a bilinear x4 upscale of the input.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import ModelSpec, StateDict, count_numbered, model_zoo_record, register_model, upsampler_scale
from .safmnpp import SAFMNPP, AttBlock

# Official file: SimpleSAFM(dim, split_dim=12) in every block; the modulation pools to (h // 8, w // 8).
_SPLIT_CHANNELS = 12
_POOL_DIVISOR = 8


class SimpleSAFMv3(nn.Module):
    """``x0 = conv1(x)`` (12 ch), ``x1 = conv2(x)`` (the rest); ``m = conv3(dw(maxpool_{h/8}(x0)) + var_hw(x0))``,
    resized back and GELU'd, gates ``x0``; then ``out(GELU(cat[x1, m * x0]))``. All convs bias-free."""

    def __init__(self, num_features: int, split_channels: int = _SPLIT_CHANNELS) -> None:
        super().__init__()
        if not 0 < split_channels < num_features:
            raise ValueError(f"split_channels must be in 1..{num_features - 1}, got {split_channels}")
        self.conv1 = nn.Conv2d(num_features, split_channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(num_features, num_features - split_channels, 3, padding=1, bias=False)
        self.conv3 = nn.Conv2d(split_channels, split_channels, 1, bias=False)
        self.dwconv = nn.Conv2d(split_channels, split_channels, 3, padding=1, groups=split_channels, bias=False)
        self.out = nn.Conv2d(num_features, num_features, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x0 = self.conv1(x)
        x1 = self.conv2(x)
        pooled = self.dwconv(F.adaptive_max_pool2d(x0, (h // _POOL_DIVISOR, w // _POOL_DIVISOR)))
        # torch.var is unbiased by default: the official call, over the whole map.
        m = self.conv3(pooled + torch.var(x0, dim=(-2, -1), keepdim=True))
        m = F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)
        return self.out(F.gelu(torch.cat([x1, F.gelu(m) * x0], dim=1)))


class FFNv3(nn.Module):
    """Channel mixer: 1x1 expand by ``ffn_scale``, GELU, 1x1 back; bias-free."""

    def __init__(self, num_features: int, ffn_scale: float) -> None:
        super().__init__()
        hidden = int(num_features * ffn_scale)
        self.conv1 = nn.Conv2d(num_features, hidden, 1, bias=False)
        self.conv2 = nn.Conv2d(hidden, num_features, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.gelu(self.conv1(x)))


class AttBlockV3(AttBlock):
    """``x + FFN(SimpleSAFM(x))`` with SAFMNv3's two halves (SAFMN++'s block otherwise)."""

    safm = SimpleSAFMv3
    ffn = FFNv3


class SAFMNv3(SAFMNPP):
    """SAFMNv3: SAFMN++'s network (``safmnpp.py``: to_feat 3x3, ``num_blocks`` blocks, 3x3 conv + PixelShuffle, +
    bilinear upscaled input) with SAFMNv3's blocks. Input and output are float RGB in [0,1]. No clamping.

    Size facts as SAFMN++'s: the adaptive max-pool to (h // 8, w // 8) fails below 8 pixels
    (``min_size`` 8) and sits on an 8-pixel grid (``stride_period`` 8); the per-channel variance over the whole map
    makes every output depend on the whole input (no receptive radius).
    """

    block = AttBlockV3

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 3,
        out_channels: int = 3,
        num_features: int = 40,
        num_blocks: int = 6,
        ffn_scale: float = 1.5,
    ) -> None:
        super().__init__(scale=scale, in_channels=in_channels, out_channels=out_channels, num_features=num_features,
                         num_blocks=num_blocks, ffn_scale=ffn_scale)
        # Each tile estimates the whole-map variance from its own pixels; below 96 LR pixels the estimate is too poor
        # (Set14 with 16-pixel overlaps, tiled vs whole: 64-pixel tiles 42.8 dB on barbara, 80 px 45.1 dB, 96 px
        # >= 47.7 dB on every image; measured with tests/test_infer.py's Set14 tiling test).
        self.tiling = dataclasses.replace(self.tiling, min_tile=96)


def safmnv3(
    *,
    scale: int = 4,
    in_channels: int = 3,
    out_channels: int = 3,
    num_features: int = 40,
    num_blocks: int = 6,
    ffn_scale: float = 1.5,
) -> SAFMNv3:
    """Build a SAFMNv3 (defaults: the NTIRE 2025 team 19 model, dim 40, 6 blocks, FFN x1.5, x4)."""
    return SAFMNv3(scale=scale, in_channels=in_channels, out_channels=out_channels, num_features=num_features,
                   num_blocks=num_blocks, ffn_scale=ffn_scale)


def detect_safmnv3(state_dict: StateDict) -> dict[str, Any] | None:
    """Constructor kwargs from the key names and shapes of a bare SAFMNv3 state_dict, or None."""
    needed = ("to_feat.weight", "feats.0.conv1.conv1.weight", "feats.0.conv1.conv3.weight",
              "feats.0.conv2.conv1.weight", "to_img.0.weight")
    if not all(k in state_dict for k in needed):
        return None
    num_features, in_channels = (int(n) for n in state_dict["to_feat.weight"].shape[:2])
    num_blocks = count_numbered(state_dict, "feats.", 0)
    hidden = int(state_dict["feats.0.conv2.conv1.weight"].shape[0])
    ffn_scale = hidden / num_features
    scale = upsampler_scale(int(state_dict["to_img.0.weight"].shape[0]), in_channels)
    if num_blocks is None or scale is None or int(num_features * ffn_scale) != hidden:
        return None
    return {"scale": scale, "in_channels": in_channels, "out_channels": in_channels, "num_features": num_features,
            "num_blocks": num_blocks, "ffn_scale": ffn_scale}


_REPO = "Amazingren/NTIRE2025_ESR"
_COMMIT = "b69fb668c0362deb696eecbfdebfaa5c2fcdfcb4"

SAFMNV3_NTIRE2025 = model_zoo_record(
    _REPO,
    _COMMIT,
    "team19_safmnv3.pth",
    name="safmnv3_ntire2025",
    model="safmnv3",
    sha256="07ca690f7935b97978a36bbb2e82aa821ffea7d38555eeb8468ee9e1425bd4dd",
    wrapper_key=None,  # bare state_dict
    kwargs={"scale": 4, "in_channels": 3, "out_channels": 3, "num_features": 40, "num_blocks": 6, "ffn_scale": 1.5},
    params=144_672,
    licence="MIT",
    scale=4,
    description="SAFMNv3 (NTIRE 2025 ESR, team 19), dim 40, 6 blocks; Set5 x4 RGB PSNR 30.12 dB",
)

register_model(
    ModelSpec(
        name="safmnv3",
        builder=safmnv3,
        weights=(SAFMNV3_NTIRE2025,),
        detect=detect_safmnv3,
        description="SAFMNv3: feature modulation with a variance term, [0,1], bilinear image skip",
        weight_determined=("scale", "in_channels", "out_channels", "num_features", "num_blocks", "ffn_scale"),
    )
)
