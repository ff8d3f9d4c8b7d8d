"""DSCF (DSCLoRA, NTIRE 2025 ESR team 23, 1st overall) and DSCF_Fused (NTIRE 2026 ESR team 15): SPAN descendants.

Challenge reports: B. Ren et al., "The Tenth NTIRE 2025 Efficient Super-Resolution Challenge Report", CVPRW 2025
(team 23); "The Eleventh NTIRE 2026 Efficient Super-Resolution Challenge Report", CVPRW 2026 (team 15).
Team statement for DSCF (``Yaozzz666/DSCF-SR`` @ dfa5803d, ``results.txt``, as recorded in
``shared/official/README.md``): 0.131 M parameters, 8.54 G FLOPs, 38.93 M activations, 22 convs, valid PSNR 26.92 dB.
DSCF_Fused (NTIRE 2026 ``results.json``): 125,992 parameters, 8.2198 G FLOPs, valid / test PSNR 26.9213 / 26.9856.
Official code and weights:
``Amazingren/NTIRE2025_ESR`` @ b69fb668c0362deb696eecbfdebfaa5c2fcdfcb4, ``models/team23_DSCF.py``,
``model_zoo/team23_DSCF.pth``;
``Amazingren/NTIRE2026_ESR`` @ 4592ce6db68b395699f13e7e2a4e3baf317ef1c6, ``models/team15_DSCF_Fused.py``,
``model_zoo/team15_DSCF_Fused.pth``. Licence: MIT (both repositories' root ``LICENSE``; the model files state none).
Written from the official files read as facts and ``shared/official/README.md`` (no official code copied); the
each behaviour marked below as an official quirk is one of its "Traps".

**DSCF** is SPAN's deploy network at 26 channels (``span.py``): same six SPABs, the same four-way ``conv_cat`` over
``[conv_1 out, conv_2(block 6), block 1, SiLU(block_6.c1_r(.))]`` (the in-place SiLU), the
same ``(x - mean) * 255`` input with no add-back. The checkpoint holds merged weights. Its training form is
ConvLoRA: chosen convolutions get a low-rank update ``W + (B @ A).view(W.shape) * alpha / r`` (the file's
``Lora_Conv2d``, where ``A`` is ``[r*k, Cin*k]`` and ``B`` is ``[Cout*k, r*k]``); ``DSCF(lora=True)`` builds it with
the ranks of the file's layered ``lora_config`` (commented out in the official class, the only ranks the file gives)
and :meth:`DSCF.reparameterize` merges the updates into plain convs, the shipped form.

**DSCF_Fused** is not DSCF re-packaged: block 1's ``c1_r`` applied after ``conv_1`` is replaced by one
5x5 ``conv_fused`` on the normalised input, and ``conv_cat``'s slice for ``conv_2``'s output after ``conv_2`` by one
bias-free 3x3 ``conv2_fused`` on block 6's output; ``conv_cat_other`` (78 -> 26) fuses the other three maps,
``[conv_1 out, block 1, SiLU(block_6.c1_r(.))]``.

Nothing here calls ``.cuda()`` or runs the official constructors' dummy forwards; the official DSCF loads
with ``strict=False`` but every key matches, and effsr loads strictly.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..tiling import TilingSpec
from ._registry import ModelSpec, StateDict, count_numbered, model_zoo_record, register_model, upsampler_scale
from .blocks import DIV2K_RGB_MEAN, PixelShuffleUpsampler, rgb_mean_tensor
from .span import SPAB, SPAN, Conv3XC, detect_span

# official quirk: DSCF and DSCF_Fused compute (x - mean) * 255 and never add the mean back.
_IMG_RANGE = 255.0

# ConvLoRA ranks and alphas of the official DSCF file's layered ``lora_config`` (commented out in ``DSCF.__init__``):
# (r, alpha) per convolution; ``block_*`` stands for every SPAB's c1_r, c2_r and c3_r.
LORA_TAIL = (8, 16)  # conv_2.eval_conv and upsampler.0 ("high-frequency reconstruction layers")
LORA_BLOCKS = (2, 4)  # block_1 .. block_6, c1_r / c2_r / c3_r eval_conv


class LoRAConv2d(nn.Conv2d):
    """A convolution with a trainable low-rank update (the training form of a DSCLoRA conv).

    ``weight`` and ``bias`` are the pre-trained conv (``weight`` frozen, as in the official ``Lora_Conv2d``);
    ``lora_A`` [r*k, Cin*k] starts Kaiming-uniform and ``lora_B`` [Cout*k, r*k] at zero, so a fresh update is a no-op.
    The forward uses ``weight + (lora_B @ lora_A).view(weight.shape) * alpha / r``; nothing is merged inside it
    (:meth:`merged_weight` gives the deploy weight, :meth:`DSCF.reparameterize` swaps in a plain conv).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, rank: int, alpha: float,
                 bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)
        if rank < 1:
            raise ValueError("a LoRA rank must be >= 1")
        self.rank = rank
        self.scaling = alpha / rank
        k = kernel_size
        self.lora_A = nn.Parameter(torch.empty(rank * k, in_channels * k))
        self.lora_B = nn.Parameter(torch.zeros(out_channels * k, rank * k))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.weight.requires_grad_(False)

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B @ self.lora_A).view(self.weight.shape) * self.scaling

    def merged_weight(self) -> torch.Tensor:
        return self.weight + self.delta_weight()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.merged_weight(), self.bias, self.stride, self.padding)

    @classmethod
    def wrap(cls, conv: nn.Conv2d, rank: int, alpha: float) -> LoRAConv2d:
        """A LoRA conv whose frozen part is a copy of ``conv`` (the update starts at zero)."""
        lora = cls(conv.in_channels, conv.out_channels, conv.kernel_size[0], rank=rank, alpha=alpha,
                   bias=conv.bias is not None)
        with torch.no_grad():
            lora.weight.copy_(conv.weight)
            if conv.bias is not None:
                lora.bias.copy_(conv.bias)
        return lora

    @torch.no_grad()
    def merged(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` with the merged weight (the deploy form of this layer)."""
        conv = nn.utils.skip_init(nn.Conv2d, self.in_channels, self.out_channels, self.kernel_size,
                                  padding=self.padding, bias=self.bias is not None,
                                  device=self.weight.device, dtype=self.weight.dtype)
        conv.weight.copy_(self.merged_weight())
        if self.bias is not None:
            conv.bias.copy_(self.bias)
        return conv


class DSCF(SPAN):
    """DSCF: SPAN's deploy network (26 channels, 6 SPABs by default), optionally in its ConvLoRA training form.

    Input [0,1] RGB; ``(x - mean) * 255`` inside, output used as is (an official quirk). No clamping.
    """

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 3,
        out_channels: int = 3,
        num_features: int = 26,
        num_blocks: int = 6,
        lora: bool = False,
    ) -> None:
        super().__init__(scale=scale, in_channels=in_channels, out_channels=out_channels,
                         num_features=num_features, num_blocks=num_blocks)
        self.lora = lora
        if lora:
            for parent, name, (rank, alpha) in self._lora_targets():
                setattr(parent, name, LoRAConv2d.wrap(getattr(parent, name), rank, alpha))

    def _lora_targets(self) -> list[tuple[nn.Module, str, tuple[int, int]]]:
        targets: list[tuple[nn.Module, str, tuple[int, int]]] = [
            (self.conv_2, "eval_conv", LORA_TAIL),
            (self.upsampler, "0", LORA_TAIL),
        ]
        for i in range(1, self.num_blocks + 1):
            block = getattr(self, f"block_{i}")
            targets += [(getattr(block, c), "eval_conv", LORA_BLOCKS) for c in ("c1_r", "c2_r", "c3_r")]
        return targets

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Merge every ConvLoRA update into a plain conv, in place (idempotent): the shipped deploy form."""
        for parent, name, _ in self._lora_targets():
            layer = getattr(parent, name)
            if isinstance(layer, LoRAConv2d):
                setattr(parent, name, layer.merged())
        self.lora = False


class SPABFused(nn.Module):
    """DSCF_Fused's first block: a SPAB whose ``c1_r`` (after ``conv_1``) became the 5x5 ``conv_fused`` outside it.

    Takes the block input ``x`` (the ``conv_1`` output, for the residual) and ``c1`` (``conv_fused`` of the
    normalised image) and returns ``(c3 + x) * (sigmoid(c3) - 0.5)`` with ``c3 = c3_r(SiLU(c2_r(SiLU(c1))))``.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.c2_r = Conv3XC(num_features, num_features)
        self.c3_r = Conv3XC(num_features, num_features)

    def forward(self, x: torch.Tensor, c1: torch.Tensor) -> torch.Tensor:
        o3 = self.c3_r(F.silu(self.c2_r(F.silu(c1))))
        return (o3 + x) * (torch.sigmoid(o3) - 0.5)


class DSCFFused(nn.Module):
    """DSCF_Fused: ``conv_1`` and a 5x5 ``conv_fused`` on the normalised input, block 1 (:class:`SPABFused`), five
    SPABs, then ``conv_cat_other(cat[conv_1 out, block 1, SiLU(block_N.c1_r(.))]) + conv2_fused(block N)`` and the
    upsampler.

    Input [0,1] RGB; ``(x - mean) * 255`` inside, output used as is (an official quirk). No clamping.
    """

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 3,
        out_channels: int = 3,
        num_features: int = 26,
        num_blocks: int = 6,
    ) -> None:
        super().__init__()
        if num_blocks < 2:
            raise ValueError("DSCF_Fused needs at least two blocks (a fused first block and a SPAB)")
        self.scale = int(scale)
        # Only zero-padded convolutions, no stride: any input size works. The longest path is conv_fused (5x5, radius
        # 2), block 1's two 3x3 convs, the other SPABs' three each, conv2_fused and the upsampler's 3x3:
        # 2 + 2 + 3 (num_blocks - 1) + 1 + 1 LR pixels (21 for the published 6 blocks).
        self.tiling = TilingSpec(scale=self.scale, receptive_radius=3 * num_blocks + 3, exact=True)
        self.num_blocks = num_blocks
        # Plain tensor attribute, not a buffer: the official state_dict has no mean.
        self.rgb_mean = rgb_mean_tensor(DIV2K_RGB_MEAN)
        self.conv_1 = Conv3XC(in_channels, num_features)
        self.conv_fused = nn.Conv2d(in_channels, num_features, 5, padding=2, bias=True)
        self.block_1 = SPABFused(num_features)
        for i in range(2, num_blocks + 1):
            setattr(self, f"block_{i}", SPAB(num_features))
        self.conv_cat_other = nn.Conv2d(num_features * 3, num_features, 1, bias=True)
        self.conv2_fused = nn.Conv2d(num_features, num_features, 3, padding=1, bias=False)
        self.upsampler = PixelShuffleUpsampler(num_features, out_channels, self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.rgb_mean.to(device=x.device, dtype=x.dtype)
        x = (x - mean) * _IMG_RANGE
        out_feature = self.conv_1(x)
        out_b1 = self.block_1(out_feature, self.conv_fused(x))
        out = out_b1
        a1_last = out_b1
        for i in range(2, self.num_blocks + 1):
            out, a1_last = getattr(self, f"block_{i}")(out)
        other = self.conv_cat_other(torch.cat([out_feature, out_b1, a1_last], dim=1))
        return self.upsampler(other + self.conv2_fused(out))


def dscf(
    *,
    scale: int = 4,
    in_channels: int = 3,
    out_channels: int = 3,
    num_features: int = 26,
    num_blocks: int = 6,
    lora: bool = False,
) -> DSCF:
    """Build a DSCF (defaults: the NTIRE 2025 team 23 model, 26 channels, 6 blocks, x4); ``lora=True``: ConvLoRA."""
    return DSCF(scale=scale, in_channels=in_channels, out_channels=out_channels, num_features=num_features,
                num_blocks=num_blocks, lora=lora)


def dscf_fused(
    *,
    scale: int = 4,
    in_channels: int = 3,
    out_channels: int = 3,
    num_features: int = 26,
    num_blocks: int = 6,
) -> DSCFFused:
    """Build a DSCF_Fused (defaults: the NTIRE 2026 team 15 model, 26 channels, 6 blocks, x4)."""
    return DSCFFused(scale=scale, in_channels=in_channels, out_channels=out_channels, num_features=num_features,
                     num_blocks=num_blocks)


def detect_dscf(state_dict: StateDict) -> dict[str, Any] | None:
    """Constructor kwargs of a DSCF *training-form* (ConvLoRA) state_dict, or None.

    A merged DSCF file has SPAN's deploy layout, which :func:`effsr.models.span.detect_span` reads; the published
    one is told apart by its content (the record's ``state_dict_sha256``), not here.
    """
    if "conv_2.eval_conv.lora_A" not in state_dict:
        return None
    plain = {k: v for k, v in state_dict.items() if not k.endswith((".lora_A", ".lora_B"))}
    kwargs = detect_span(plain)
    return None if kwargs is None else {**kwargs, "lora": True}


def detect_dscf_fused(state_dict: StateDict) -> dict[str, Any] | None:
    """Constructor kwargs from the key names and shapes of a bare DSCF_Fused state_dict, or None."""
    needed = ("conv_1.eval_conv.weight", "conv_fused.weight", "block_1.c2_r.eval_conv.weight",
              "conv_cat_other.weight", "conv2_fused.weight", "upsampler.0.weight")
    if not all(k in state_dict for k in needed):
        return None
    num_features, in_channels = state_dict["conv_1.eval_conv.weight"].shape[:2]
    num_blocks = count_numbered(state_dict, "block_")
    scale = upsampler_scale(int(state_dict["upsampler.0.weight"].shape[0]), int(in_channels))
    if num_blocks is None or scale is None:
        return None
    # out_channels is taken equal to in_channels (RGB), as the official constructor's use.
    return {"scale": scale, "in_channels": int(in_channels), "out_channels": int(in_channels),
            "num_features": int(num_features), "num_blocks": num_blocks}


_REPO_2025 = "Amazingren/NTIRE2025_ESR"
_COMMIT_2025 = "b69fb668c0362deb696eecbfdebfaa5c2fcdfcb4"
_REPO_2026 = "Amazingren/NTIRE2026_ESR"
_COMMIT_2026 = "4592ce6db68b395699f13e7e2a4e3baf317ef1c6"

DSCF_NTIRE2025 = model_zoo_record(
    _REPO_2025,
    _COMMIT_2025,
    "team23_DSCF.pth",
    name="dscf_ntire2025",
    model="dscf",
    sha256="239e76bc4e4e738491c3963805c0a79f524400acf5fbde34b2cb1a855dd62cb1",
    wrapper_key=None,  # bare state_dict, merged (deploy) form; the harness loads strict=False but all 44 keys match
    kwargs={"scale": 4, "in_channels": 3, "out_channels": 3, "num_features": 26, "num_blocks": 6},
    params=130_828,
    licence="MIT",
    scale=4,
    description="DSCF / DSCLoRA (NTIRE 2025 ESR 1st overall, team 23): SPAN 26 ch with merged ConvLoRA; "
    "Set5 x4 RGB PSNR 29.85 dB",
    # SPAN's deploy layout: detection knows this file by its content (weights.state_dict_sha256).
    state_dict_sha256="3e2f2de29eff3547065b8a837026d752307a363a479265a38164de8ff7e449a6",
)

DSCF_FUSED_NTIRE2026 = model_zoo_record(
    _REPO_2026,
    _COMMIT_2026,
    "team15_DSCF_Fused.pth",
    name="dscf_fused_ntire2026",
    model="dscf_fused",
    sha256="2d6157faa97494dc4970016720b75b06db584e1386c54bcaa2e45feb41e9a189",
    wrapper_key=None,  # bare state_dict, loaded strictly by the harness
    kwargs={"scale": 4, "in_channels": 3, "out_channels": 3, "num_features": 26, "num_blocks": 6},
    params=125_992,
    licence="MIT",
    scale=4,
    description="DSCF_Fused (NTIRE 2026 ESR, team 15): DSCF's layout with two conv pairs as single convs; "
    "Set5 x4 RGB PSNR 29.85 dB",
)

register_model(
    ModelSpec(
        name="dscf",
        builder=dscf,
        weights=(DSCF_NTIRE2025,),
        detect=detect_dscf,
        description="DSCF / DSCLoRA: SPAN deploy network trained with ConvLoRA, mean shift and x255 inside",
        weight_determined=("scale", "in_channels", "out_channels", "num_features", "num_blocks", "lora"),
    )
)

register_model(
    ModelSpec(
        name="dscf_fused",
        builder=dscf_fused,
        weights=(DSCF_FUSED_NTIRE2026,),
        detect=detect_dscf_fused,
        description="DSCF_Fused: DSCF with a 5x5 fused stem branch and a fused tail conv, mean shift and x255 inside",
        weight_determined=("scale", "in_channels", "out_channels", "num_features", "num_blocks"),
    )
)
