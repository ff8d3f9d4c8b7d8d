"""SAFMN++: a lighter Spatially-Adaptive Feature Modulation Network (NTIRE 2024 ESR, team 23), reference entry.

Paper (base model): L. Sun, J. Dong, J. Tang, J. Pan, "Spatially-Adaptive Feature Modulation for Efficient Image
Super-Resolution", ICCV 2023, arXiv:2302.13800. SAFMN++ is the team 23 entry described in the NTIRE 2024 ESR
challenge report (arXiv:2404.10343).
Factsheet figures as measured in ``shared/specs/SAFMNPP.md`` section 4: 211,572 parameters, 13.86 G FLOPs
(fvcore, LR 256x256).
Official code and weights: ``Amazingren/NTIRE2024_ESR`` @ 6404fa48dde4a4adbf241a51debdc661aef20449,
``models/team23_safmnpp.py``, ``model_zoo/team23_safmnpp.pth`` (wrapper ``params_ema``). Licence: MIT.
Written from ``shared/specs/SAFMNPP.md`` (no official code copied).

Input [0,1], no mean shift, no biases anywhere, no LayerNorm; an image-level bilinear x``scale`` skip is added
to the PixelShuffle output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..tiling import TilingSpec
from ..weights import WeightsRecord
from ._registry import ModelSpec, read_common, register_model

# specs/SAFMNPP.md section 3: the modulation branch pools to (h // 8, w // 8).
_POOL_DIVISOR = 8
# specs/SAFMNPP.md section 2: the modulated chunk is a third of the channels (12 of 36).
_CHUNK_RATIO = 3


class SimpleSAFM(nn.Module):
    """Simplified spatially-adaptive feature modulation (specs/SAFMNPP.md section 3).

    proj 3x3 -> split [chunk, rest]; chunk: adaptive max-pool to (h//8, w//8) -> depth-wise 3x3 -> bilinear back
    -> GELU -> gate the chunk; then GELU(cat[rest, gated]) -> 1x1 ``out``.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features
        self.chunk = num_features // _CHUNK_RATIO
        self.proj = nn.Conv2d(num_features, num_features, 3, padding=1, bias=False)
        self.dwconv = nn.Conv2d(self.chunk, self.chunk, 3, padding=1, groups=self.chunk, bias=False)
        self.out = nn.Conv2d(num_features, num_features, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x0, x1 = self.proj(x).split([self.chunk, self.num_features - self.chunk], dim=1)
        x2 = F.adaptive_max_pool2d(x0, (h // _POOL_DIVISOR, w // _POOL_DIVISOR))
        x2 = F.interpolate(self.dwconv(x2), size=(h, w), mode="bilinear", align_corners=False)
        x2 = F.gelu(x2) * x0
        # Order matters for the 1x1 ``out`` weights: the untouched channels first (specs/SAFMNPP.md section 3).
        return self.out(F.gelu(torch.cat([x1, x2], dim=1)))


class CCM(nn.Module):
    """Convolutional channel mixer: 3x3 expand by ``ffn_scale``, GELU, 1x1 back; no bias."""

    def __init__(self, num_features: int, ffn_scale: float) -> None:
        super().__init__()
        hidden = int(num_features * ffn_scale)
        self.conv1 = nn.Conv2d(num_features, hidden, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(hidden, num_features, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.gelu(self.conv1(x)))


class AttBlock(nn.Module):
    """``z + CCM(SimpleSAFM(z))``: one residual around both halves, no normalisation (specs/SAFMNPP.md section 3)."""

    # The two halves (SAFMNv3 in safmnv3.py swaps in its own; the keys stay ``conv1.*`` / ``conv2.*``).
    safm: ClassVar[type[nn.Module]] = SimpleSAFM
    ffn: ClassVar[type[nn.Module]] = CCM

    def __init__(self, num_features: int, ffn_scale: float) -> None:
        super().__init__()
        self.conv1 = self.safm(num_features)
        self.conv2 = self.ffn(num_features, ffn_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x)) + x


class SAFMNPP(nn.Module):
    """SAFMN++: to_feat 3x3, ``num_blocks`` AttBlocks, 3x3 conv + PixelShuffle, + bilinear upscaled input.

    Input and output are float RGB in [0,1]. No clamping.

    Defaults: the NTIRE 2024 team 23 model (36 channels, 6 blocks, FFN x1.5, x4).
    """

    # The block type (SAFMNv3 swaps in its own).
    block: ClassVar[type[nn.Module]] = AttBlock

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 3,
        out_channels: int = 3,
        num_features: int = 36,
        num_blocks: int = 6,
        ffn_scale: float = 1.5,
    ) -> None:
        super().__init__()
        if out_channels != in_channels:
            raise ValueError(f"{type(self).__name__} adds the upscaled input to its output: in_channels must equal "
                             "out_channels")
        self.scale = int(scale)
        # The h//8 x w//8 adaptive pool needs at least 8x8 (specs/SAFMNPP.md section 1) and works on an 8-pixel grid.
        self.tiling = TilingSpec(scale=self.scale, min_size=8, stride_period=8)
        self.to_feat = nn.Conv2d(in_channels, num_features, 3, padding=1, bias=False)
        self.feats = nn.Sequential(*[self.block(num_features, ffn_scale) for _ in range(num_blocks)])
        self.to_img = nn.Sequential(
            nn.Conv2d(num_features, out_channels * self.scale * self.scale, 3, padding=1, bias=False),
            nn.PixelShuffle(self.scale),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Image-level skip: bilinear by the scale factor, half-pixel centres (specs/SAFMNPP.md section 3).
        res = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return self.to_img(self.feats(self.to_feat(x))) + res


def detect_safmnpp(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any] | None:
    """Constructor kwargs from the key names and shapes of a bare SAFMN++ state_dict, or None."""
    needed = ("to_feat.weight", "feats.0.conv1.proj.weight", "feats.0.conv1.dwconv.weight",
              "feats.0.conv2.conv1.weight", "to_img.0.weight")
    if not all(k in state_dict for k in needed):
        return None
    # out_channels equal to in_channels is what the image-level skip requires.
    kwargs = read_common(state_dict, stem="to_feat.weight", blocks="feats.", upsampler="to_img.0.weight",
                         first_block=0)
    if kwargs is None:
        return None
    hidden = int(state_dict["feats.0.conv2.conv1.weight"].shape[0])
    ffn_scale = hidden / kwargs["num_features"]
    if int(kwargs["num_features"] * ffn_scale) != hidden:
        return None
    return {**kwargs, "ffn_scale": ffn_scale}


_REPO = "Amazingren/NTIRE2024_ESR"
_COMMIT = "6404fa48dde4a4adbf241a51debdc661aef20449"

SAFMNPP_NTIRE2024 = WeightsRecord(
    name="safmnpp_ntire2024",
    model="safmnpp",
    file="team23_safmnpp.pth",
    url=f"https://github.com/{_REPO}/raw/{_COMMIT}/model_zoo/team23_safmnpp.pth",
    sha256="03bf96b5a50f43123d22c3a257341d536118250f7157f12d2832915be4f52685",
    # The file also holds ``params`` (non-EMA) weights; ``params_ema`` is the evaluated one (specs/README.md section 5).
    wrapper_key="params_ema",
    kwargs={"scale": 4, "in_channels": 3, "out_channels": 3, "num_features": 36, "num_blocks": 6, "ffn_scale": 1.5},
    params=211_572,
    source=f"{_REPO} @ {_COMMIT[:8]}, model_zoo/team23_safmnpp.pth",
    licence="MIT",
    scale=4,
    description="SAFMN++ (NTIRE 2024 ESR, team 23), 36 ch, 6 blocks; Set5 x4 RGB PSNR 30.11 dB",
)

register_model(
    ModelSpec(
        name="safmnpp",
        builder=SAFMNPP,
        weights=(SAFMNPP_NTIRE2024,),
        detect=detect_safmnpp,
        description="SAFMN++: simplified spatially-adaptive feature modulation, [0,1], bilinear image skip",
        weight_determined=("scale", "in_channels", "out_channels", "num_features", "num_blocks", "ffn_scale"),
    )
)
