"""IFADNet: Intermittent Feature Aggregation with Distillation for efficient x4 SR (NTIRE 2024 ESR, team 33, ECNU_MViC).

Paper: "NTIRE 2024 Challenge on Efficient Super-Resolution: Methods and Results" (CVPRW 2024), team ECNU_MViC.
Factsheet: 0.163 M parameters, 9.78 G FLOPs (fvcore), trained with knowledge distillation from SAFMN-L
(training-only; see ``shared/specs/SAFMN-L.md``).
Official code: ``Amazingren/NTIRE2024_ESR`` @ 6404fa48dde4a4adbf241a51debdc661aef20449,
``models/team33_IFADNet.py``; weights ``model_zoo/team33_IFADNet.pth`` (MIT licence).
Written from ``shared/specs/IFADNet.md``.

IFADNet differs from LSANet in three places (specs/IFADNet.md section 3): ``c1_r`` is a RepBlock too, there is no
``c5`` before the ESA, and no ``c2`` BSConvU after the fusion. The shipped weights are the merged (deploy) form:
build with ``deploy=True`` (what the weights record does); ``deploy=False`` gives the multi-branch training form.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..tiling import TilingSpec
from ..weights import WeightsRecord
from ._registry import ModelSpec, StateDict, read_common, register_model
from .blocks import ESA, RepBlock, UpsampleOneStep, register_mean

# ESA width of every attention block (specs/IFADNet.md section 2: esa.conv1 36 -> 16).
ESA_CHANNELS = 16


class RepRFMB(nn.Module):
    """One IFADNet block (specs/IFADNet.md section 3).

    ``r = GELU(c4(GELU(c2_r(GELU(c1_r(x))))))`` with three RepBlocks: separable (BSConvU) in odd blocks
    (``use_attention=False``, output ``r + x``), full 3x3 in even blocks (output ``ESA(r) + x``, no ``c5``).
    """

    def __init__(self, num_features: int, *, use_attention: bool, deploy: bool = False) -> None:
        super().__init__()
        self.use_attention = use_attention
        separable = not use_attention
        self.c1_r = RepBlock(num_features, num_features, separable=separable, deploy=deploy)
        self.c2_r = RepBlock(num_features, num_features, separable=separable, deploy=deploy)
        self.c4 = RepBlock(num_features, num_features, separable=separable, deploy=deploy)
        if use_attention:
            self.esa = ESA(ESA_CHANNELS, num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = F.gelu(self.c1_r(x))
        r = F.gelu(self.c2_r(r))
        r = F.gelu(self.c4(r))
        if self.use_attention:
            r = self.esa(r)
        return r + x


class IFADNet(nn.Module):
    """IFADNet (specs/IFADNet.md section 3).

    ``x - mean -> fea_conv -> B1..B{num_blocks} -> GELU(c1(cat)) + F0 -> upsampler -> + mean``.
    Input and output are float RGB in [0, 1]; no clamping inside.

    Defaults: the NTIRE 2024 configuration, randomly initialised in training form unless ``deploy=True``.
    """

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 3,
        out_channels: int = 3,
        num_features: int = 36,
        num_blocks: int = 6,
        deploy: bool = False,
    ) -> None:
        super().__init__()
        if in_channels != 3 or out_channels != 3:
            raise ValueError("IFADNet's mean shift is defined for RGB: in_channels and out_channels must be 3")
        self.scale = int(scale)
        # The ESA's stride-2 valid conv followed by a 7x7 max-pool needs LR >= 15x15 (../shared/specs/README.md
        # section 5); the stride-2 conv then stride-3 max-pool repeat every 6 LR pixels.
        self.tiling = TilingSpec(scale=self.scale, min_size=15, stride_period=6)
        self.num_blocks = num_blocks
        self.deploy = deploy
        # The DIV2K mean, a non-persistent buffer: no state_dict entry, moved with the model.
        register_mean(self)
        # padding='same' as in the official code: fvcore skips such convs, which the factsheet FLOPs reflect.
        self.fea_conv = nn.Conv2d(in_channels, num_features, 3, padding="same")
        self.block_names = tuple(f"B{i}" for i in range(1, num_blocks + 1))
        for i, name in enumerate(self.block_names, start=1):
            # Odd blocks separable (BSConvU), even blocks 3x3 RepBlocks with ESA (specs/IFADNet.md section 1).
            setattr(self, name, RepRFMB(num_features, use_attention=i % 2 == 0, deploy=deploy))
        self.c1 = nn.Conv2d(num_features * num_blocks, num_features, 1)
        self.upsampler = UpsampleOneStep(num_features, out_channels, self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.mean
        out_fea = self.fea_conv(x - mean)
        feats = []
        h = out_fea
        for name in self.block_names:
            h = getattr(self, name)(h)
            feats.append(h)
        t = F.gelu(self.c1(torch.cat(feats, dim=1))) + out_fea
        return self.upsampler(t) + mean

    def reparameterize(self) -> None:
        """Merge every RepBlock into its deploy form, in place (idempotent)."""
        for module in list(self.modules()):
            if isinstance(module, RepBlock):
                module.reparameterize()
        self.deploy = True


def detect_ifadnet(state_dict: StateDict) -> dict[str, Any] | None:
    """Constructor kwargs from the keys/shapes of an IFADNet state_dict (either form), or None.

    IFADNet is recognised by ``c1_r`` being a RepBlock (``B1.c1_r.rbr_reparam.pw``) and the absence of a final
    ``c2``; the form by the presence of multi-branch keys (``rbr_3x3_branch``) in the even blocks.
    """
    needed = ("fea_conv.weight", "B1.c1_r.rbr_reparam.pw.weight", "c1.weight", "upsampler.upsampleOneStep.0.weight")
    if not all(k in state_dict for k in needed) or "c2.pw.weight" in state_dict:
        return None
    kwargs = read_common(state_dict, stem="fea_conv.weight", blocks="B", upsampler="upsampler.upsampleOneStep.0.weight")
    if kwargs is None:
        return None
    return {**kwargs, "deploy": not any(".rbr_3x3_branch." in k for k in state_dict)}


IFADNET_NTIRE2024 = WeightsRecord(
    name="ifadnet_ntire2024",
    model="ifadnet",
    file="team33_IFADNet.pth",
    url=(
        "https://github.com/Amazingren/NTIRE2024_ESR/raw/6404fa48dde4a4adbf241a51debdc661aef20449/"
        "model_zoo/team33_IFADNet.pth"
    ),
    sha256="fd653ab692a479f81893fcf6324edb228ab7dc313a5146ba6886999a024ea3cb",
    # The file also holds 'params' (different, non-EMA weights); 'params_ema' is the evaluated one
    # (specs/README.md section 5).
    wrapper_key="params_ema",
    kwargs={"scale": 4, "num_features": 36, "num_blocks": 6, "deploy": True},
    params=162_972,
    source="Amazingren/NTIRE2024_ESR @ 6404fa48, model_zoo/team33_IFADNet.pth",
    licence="MIT",
    scale=4,
    description="IFADNet x4, NTIRE 2024 ESR team 33 (ECNU_MViC), merged (deploy) form; Set5 RGB PSNR 30.03 dB",
)

register_model(
    ModelSpec(
        name="ifadnet",
        builder=IFADNet,
        weights=(IFADNET_NTIRE2024,),
        detect=detect_ifadnet,
        description="IFADNet (NTIRE 2024 ESR team 33): re-parameterizable blocks with edge branches + RLFN-style ESA",
        # deploy and num_blocks are fixed by the file's keys too: a conflicting request raises early.
        weight_determined=("scale", "num_features", "num_blocks", "deploy"),
    )
)
