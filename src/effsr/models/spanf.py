"""The SPAN-F family: SPANF (NTIRE 2025 ESR team 24), PDS (NTIRE 2026 team 01), PKDSR (NTIRE 2026 team 16) and
SPANV2 (NTIRE 2026 team 22, 1st overall).

Challenge reports: B. Ren et al., "The Tenth NTIRE 2025 Efficient Super-Resolution Challenge Report", CVPRW 2025
(team 24, XiaomiMM, 2nd overall); "The Eleventh NTIRE 2026 Efficient Super-Resolution Challenge Report", CVPRW 2026
(teams 01, 16, 22). Stated figures (``shared/official/README.md``, NTIRE 2026 ``results.json``): PDS 141,748
parameters / 9.2537 G FLOPs; PKDSR 143,928 / 9.3963 G; SPANV2 139,104 parameters, and 9.11 G FLOPs / 22 convs by
team 22's own count (``INSTALL_team22_xiaomiMM.md``; the organisers' 1.59 G is an artefact of tracing its CUDA op,
which fvcore cannot see into). None found for SPANF.
Official code and weights:
``Amazingren/NTIRE2025_ESR`` @ b69fb668c0362deb696eecbfdebfaa5c2fcdfcb4, ``models/team24_SPANF.py``,
``model_zoo/team24_spanf.pth``;
``Amazingren/NTIRE2026_ESR`` @ 4592ce6db68b395699f13e7e2a4e3baf317ef1c6, ``models/team01_PDS.py`` /
``model_zoo/team01_PDS.pth``, ``models/team16_PKDSR.py`` / ``model_zoo/team16_PKDSR.pth`` (wrapper ``params_ema``),
``models/team22_SPANV2_ESR.py`` / ``model_zoo/team22_spanv2_c2.pth``. Licence: MIT (both repositories' root
``LICENSE``; the model files state none).
Written from the official files read as facts and ``shared/official/README.md`` (no official code copied); the
each behaviour marked below as an official quirk is one of its "Traps".

The layout (an official quirk): the 0..1 input, with no mean shift, feeds both ``conv_near``, a bias-free grouped
3x3 conv 3 -> 48 (groups 3; in SPANF's and PDS's files exactly the nearest-neighbour copy, in PKDSR's and SPANV2's
learned), and ``block_1`` (3 -> C, no attention), followed by four attention blocks. The tail reads
``cat[conv_near(x), block_5, block_1]`` -> 1x1 to ``tail_channels`` -> 3x3 to 48 -> PixelShuffle(4): SPANF keeps the
width (32), PKDSR prunes it to 24 and PDS to 20 (under the keys ``conv_cat_1`` / ``conv_2_1``). There is no separate
upsampler; SPANF's unused ``NearestNeighborUpsampler`` class is dead code.

SPANV2 changes the block: ReLU activations, bias-free convs under ``c{1,2,3}.conv``, and its attention is
``(x + f3) * guidance_map_conv(f3)``, a 1x1 conv with bias and *no* sigmoid; block 1 returns ``ReLU(c3)``. Its tail
is ``cat[conv_near(x), block_5]`` (80 ch) -> depth-wise 3x3 -> point-wise 1x1 to 48 (both bias-free) ->
PixelShuffle(4). The organisers ran the attention through a CUDA extension (``span_attention_op/``);
:func:`span_attention` is its formula in PyTorch.

Nothing here calls ``.cuda()`` or runs the official constructors' dummy forwards; PDS's keyword defaults
are its published configuration.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..tiling import TilingSpec
from ._registry import ModelSpec, StateDict, count_numbered, model_zoo_record, register_model, upsampler_scale
from .span import SPAB, Conv3XC


def nearest_copy_weight(in_channels: int, scale: int) -> torch.Tensor:
    """``conv_near``'s weight [in * s^2, 1, 3, 3] that copies each pixel into its s x s output block (centre tap 1).

    Followed by PixelShuffle(s) it is the nearest-neighbour upscale; SPANF's and PDS's checkpoints hold exactly this
    (an official quirk), and it is the initial value of a new model.
    """
    w = torch.zeros(in_channels * scale * scale, 1, 3, 3)
    w[:, 0, 1, 1] = 1.0
    return w


class SPABStem(nn.Module):
    """The SPAN-F family's first block: three 3x3 convs ``in -> C -> C -> C`` with SiLU between, no attention."""

    def __init__(self, in_channels: int, num_features: int) -> None:
        super().__init__()
        self.c1_r = Conv3XC(in_channels, num_features)
        self.c2_r = Conv3XC(num_features, num_features)
        self.c3_r = Conv3XC(num_features, num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c3_r(F.silu(self.c2_r(F.silu(self.c1_r(x)))))


class SPANF(nn.Module):
    """SPAN-F: ``conv_near`` shortcut, a no-attention stem block and SPABs, ``cat`` -> 1x1 -> 3x3 -> PixelShuffle.

    ``tail_channels`` is the 1x1 fusion's width (SPANF: the feature width). Input and output are float RGB in [0,1];
    no mean shift, no clamping.
    """

    # (1x1 fusion, final 3x3) attribute names: the official keys (PDS renames them).
    tail_names: ClassVar[tuple[str, str]] = ("conv_cat", "conv_2")

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 3,
        num_features: int = 32,
        num_blocks: int = 5,
        tail_channels: int | None = None,
    ) -> None:
        super().__init__()
        if num_blocks < 2:
            raise ValueError("the SPAN-F layout needs at least two blocks (the stem and one SPAB)")
        self.scale = int(scale)
        # Only zero-padded convolutions, no stride: any input size works. The blocks' three 3x3 convs each and the
        # final 3x3 (conv_near's 3x3 runs beside them): 3 num_blocks + 1 LR pixels (16 for 5 blocks).
        self.tiling = TilingSpec(scale=self.scale, receptive_radius=3 * num_blocks + 1, exact=True)
        self.num_blocks = num_blocks
        tail = num_features if tail_channels is None else int(tail_channels)
        up = in_channels * self.scale * self.scale
        self.conv_near = nn.Conv2d(in_channels, up, 3, padding=1, groups=in_channels, bias=False)
        with torch.no_grad():
            self.conv_near.weight.copy_(nearest_copy_weight(in_channels, self.scale))
        self.block_1 = SPABStem(in_channels, num_features)
        for i in range(2, num_blocks + 1):
            setattr(self, f"block_{i}", SPAB(num_features))
        cat_name, out_name = self.tail_names
        setattr(self, cat_name, nn.Conv2d(up + 2 * num_features, tail, 1, bias=True))
        setattr(self, out_name, Conv3XC(tail, up))
        self.depth_to_space = nn.PixelShuffle(self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        near = self.conv_near(x)
        out_b1 = self.block_1(x)
        out = out_b1
        for i in range(2, self.num_blocks + 1):
            out, _ = getattr(self, f"block_{i}")(out)
        cat_name, out_name = self.tail_names
        fused = getattr(self, cat_name)(torch.cat([near, out, out_b1], dim=1))
        return self.depth_to_space(getattr(self, out_name)(fused))


class PKDSR(SPANF):
    """PKDSR (``SPANFPrunedKD``): SPAN-F with the 1x1 fusion pruned to ``tail_channels`` (24), distilled."""

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 3,
        num_features: int = 32,
        num_blocks: int = 5,
        tail_channels: int = 24,
    ) -> None:
        super().__init__(scale=scale, in_channels=in_channels, num_features=num_features, num_blocks=num_blocks,
                         tail_channels=tail_channels)


class PDS(SPANF):
    """PDS: SPAN-F with a 20-channel fusion (the official ``ditill_upsample``) under ``conv_cat_1`` / ``conv_2_1``."""

    tail_names: ClassVar[tuple[str, str]] = ("conv_cat_1", "conv_2_1")

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 3,
        num_features: int = 32,
        num_blocks: int = 5,
        tail_channels: int = 20,
    ) -> None:
        super().__init__(scale=scale, in_channels=in_channels, num_features=num_features, num_blocks=num_blocks,
                         tail_channels=tail_channels)


# ------------------------------------------------------------------------------------------------------------ SPANV2


def span_attention(x: torch.Tensor, f3: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """SPANV2's attention ``(x + f3) * (W f3 + b)`` per pixel: the formula of team 22's CUDA op ``span_attention``.

    ``weight`` is the [C, C, 1, 1] guidance conv, ``bias`` [C]. The extension (``span_attention_op/`` of the 2026
    repository) computes the same per pixel for 32 channels, batch 1, float32
    (``span_attention_forward_cuda_opt2_fp32``: the mat-vec summed bias first, then in groups of four, built with
    ``-use_fast_math``), so its output differs from this one by float rounding only. The organisers' ranking ran the
    extension; the golden values here and team 22's own statistics use this formula.
    """
    if x.shape != f3.shape or weight.shape[:2] != (x.shape[1], x.shape[1]) or bias.shape != (x.shape[1],):
        raise ValueError(
            f"span_attention: x {tuple(x.shape)} and f3 {tuple(f3.shape)} must match, weight must be [C, C, 1, 1] "
            f"and bias [C] for C = {x.shape[1]} (got {tuple(weight.shape)}, {tuple(bias.shape)})"
        )
    return (x + f3) * F.conv2d(f3, weight, bias)


class ConvV2(nn.Module):
    """SPANV2's plain 3x3 conv under the key ``conv`` (bias-free in the published model)."""

    def __init__(self, in_channels: int, out_channels: int, *, bias: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class SPABV2(nn.Module):
    """SPANV2's block: ``f3 = c3(ReLU(c2(ReLU(c1(x)))))``, then ``(x + f3) * guidance_map_conv(f3)`` when the block
    keeps its width, else ``ReLU(f3)`` (block 1, 3 -> C).

    The attention is :func:`span_attention`'s formula with ``guidance_map_conv`` called as a module, as on the
    official pure-PyTorch path, so that the NTIRE counters see its 1x1 conv (22 convs, not the CUDA path's 18). The
    ReLU is one module called two or three times, as in the official block (the 2023 conv-hook counter counts ReLU
    module outputs).
    """

    def __init__(self, in_channels: int, out_channels: int, *, bias: bool) -> None:
        super().__init__()
        self.has_attention = in_channels == out_channels
        self.c1 = ConvV2(in_channels, out_channels, bias=bias)
        self.c2 = ConvV2(out_channels, out_channels, bias=bias)
        self.c3 = ConvV2(out_channels, out_channels, bias=bias)
        self.act = nn.ReLU(inplace=True)
        if self.has_attention:
            self.guidance_map_conv = nn.Conv2d(out_channels, out_channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f3 = self.c3(self.act(self.c2(self.act(self.c1(x)))))
        if not self.has_attention:
            return self.act(f3)
        return (x + f3) * self.guidance_map_conv(f3)


class SPANV2(nn.Module):
    """SPANV2 (``SPANV2_ESR``): ``conv_near`` shortcut, a stem block and guided SPABV2 blocks, then
    ``cat[conv_near(x), block_N]`` -> depth-wise 3x3 -> point-wise 1x1 -> PixelShuffle.

    Input and output are float RGB in [0,1]; no mean shift, no clamping.
    """

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 3,
        num_features: int = 32,
        num_blocks: int = 5,
        bias: bool = False,
    ) -> None:
        super().__init__()
        if num_blocks < 2:
            raise ValueError("SPANV2 needs at least two blocks (the stem and one guided block)")
        self.scale = int(scale)
        # Only zero-padded convolutions, no stride: any input size works. The blocks' three 3x3 convs each and the
        # depth-wise 3x3: 3 num_blocks + 1 LR pixels (16 for 5 blocks).
        self.tiling = TilingSpec(scale=self.scale, receptive_radius=3 * num_blocks + 1, exact=True)
        self.num_blocks = num_blocks
        up = in_channels * self.scale * self.scale
        self.block_1 = SPABV2(in_channels, num_features, bias=bias)
        for i in range(2, num_blocks + 1):
            setattr(self, f"block_{i}", SPABV2(num_features, num_features, bias=bias))
        self.conv_near = nn.Conv2d(in_channels, up, 3, padding=1, groups=in_channels, bias=False)
        with torch.no_grad():
            self.conv_near.weight.copy_(nearest_copy_weight(in_channels, self.scale))
        cat = up + num_features
        self.depthwise_conv = nn.Conv2d(cat, cat, 3, padding=1, groups=cat, bias=bias)
        self.pointwise_conv = nn.Conv2d(cat, up, 1, bias=bias)
        self.depth_to_space = nn.PixelShuffle(self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        near = self.conv_near(x)
        out = x
        for i in range(1, self.num_blocks + 1):
            out = getattr(self, f"block_{i}")(out)
        fused = self.pointwise_conv(self.depthwise_conv(torch.cat([near, out], dim=1)))
        return self.depth_to_space(fused)


# --------------------------------------------------------------------------------------------------------- builders


def spanf(*, scale: int = 4, in_channels: int = 3, num_features: int = 32, num_blocks: int = 5) -> SPANF:
    """Build a SPAN-F (defaults: the NTIRE 2025 team 24 model, 32 channels, 5 blocks, x4)."""
    return SPANF(scale=scale, in_channels=in_channels, num_features=num_features, num_blocks=num_blocks)


def pkdsr(
    *, scale: int = 4, in_channels: int = 3, num_features: int = 32, num_blocks: int = 5, tail_channels: int = 24
) -> PKDSR:
    """Build a PKDSR (defaults: the NTIRE 2026 team 16 model, 32 channels, 24-channel tail, x4)."""
    return PKDSR(scale=scale, in_channels=in_channels, num_features=num_features, num_blocks=num_blocks,
                 tail_channels=tail_channels)


def pds(
    *, scale: int = 4, in_channels: int = 3, num_features: int = 32, num_blocks: int = 5, tail_channels: int = 20
) -> PDS:
    """Build a PDS (defaults: the NTIRE 2026 team 01 model, ``PDS()``: 32 channels, 20-channel tail, x4)."""
    return PDS(scale=scale, in_channels=in_channels, num_features=num_features, num_blocks=num_blocks,
               tail_channels=tail_channels)


def spanv2(
    *, scale: int = 4, in_channels: int = 3, num_features: int = 32, num_blocks: int = 5, bias: bool = False
) -> SPANV2:
    """Build a SPANV2 (defaults: the NTIRE 2026 team 22 ``SPANV2_ESR`` C2 model, 32 channels, bias-free, x4)."""
    return SPANV2(scale=scale, in_channels=in_channels, num_features=num_features, num_blocks=num_blocks, bias=bias)


def _detect_spanf_layout(state_dict: StateDict, tail_names: tuple[str, str]) -> dict[str, Any] | None:
    """Kwargs shared by the SPANF / PKDSR / PDS layouts, plus ``tail_channels``, or None."""
    cat_name, out_name = tail_names
    needed = ("conv_near.weight", "block_1.c1_r.eval_conv.weight", "block_2.c1_r.eval_conv.weight",
              f"{cat_name}.weight", f"{out_name}.eval_conv.weight")
    if not all(k in state_dict for k in needed):
        return None
    num_features, in_channels = (int(n) for n in state_dict["block_1.c1_r.eval_conv.weight"].shape[:2])
    num_blocks = count_numbered(state_dict, "block_")
    scale = upsampler_scale(int(state_dict["conv_near.weight"].shape[0]), in_channels)
    if num_blocks is None or scale is None:
        return None
    return {"scale": scale, "in_channels": in_channels, "num_features": num_features, "num_blocks": num_blocks,
            "tail_channels": int(state_dict[f"{cat_name}.weight"].shape[0])}


def detect_spanf(state_dict: StateDict) -> dict[str, Any] | None:
    """A SPAN-F state_dict whose fusion keeps the feature width (a narrower one is PKDSR's pruned tail), or None."""
    kwargs = _detect_spanf_layout(state_dict, SPANF.tail_names)
    if kwargs is None or kwargs.pop("tail_channels") != kwargs["num_features"]:
        return None
    return kwargs


def detect_pkdsr(state_dict: StateDict) -> dict[str, Any] | None:
    """A SPAN-F-layout state_dict whose 1x1 fusion is narrower or wider than the features (PKDSR's pruning), or None."""
    kwargs = _detect_spanf_layout(state_dict, PKDSR.tail_names)
    if kwargs is None or kwargs["tail_channels"] == kwargs["num_features"]:
        return None
    return kwargs


def detect_pds(state_dict: StateDict) -> dict[str, Any] | None:
    """Constructor kwargs of a PDS state_dict (``conv_cat_1`` / ``conv_2_1`` tail keys), or None."""
    return _detect_spanf_layout(state_dict, PDS.tail_names)


def detect_spanv2(state_dict: StateDict) -> dict[str, Any] | None:
    """Constructor kwargs from the key names and shapes of a bare SPANV2 state_dict, or None."""
    needed = ("block_1.c1.conv.weight", "block_2.guidance_map_conv.weight", "conv_near.weight",
              "depthwise_conv.weight", "pointwise_conv.weight")
    if not all(k in state_dict for k in needed):
        return None
    num_features, in_channels = (int(n) for n in state_dict["block_1.c1.conv.weight"].shape[:2])
    num_blocks = count_numbered(state_dict, "block_")
    scale = upsampler_scale(int(state_dict["conv_near.weight"].shape[0]), in_channels)
    if num_blocks is None or scale is None:
        return None
    return {"scale": scale, "in_channels": in_channels, "num_features": num_features, "num_blocks": num_blocks,
            "bias": "block_1.c1.conv.bias" in state_dict}


# ------------------------------------------------------------------------------------------------------ weight records

_REPO_2025 = "Amazingren/NTIRE2025_ESR"
_COMMIT_2025 = "b69fb668c0362deb696eecbfdebfaa5c2fcdfcb4"
_REPO_2026 = "Amazingren/NTIRE2026_ESR"
_COMMIT_2026 = "4592ce6db68b395699f13e7e2a4e3baf317ef1c6"

SPANF_NTIRE2025 = model_zoo_record(
    _REPO_2025,
    _COMMIT_2025,
    "team24_spanf.pth",
    name="spanf_ntire2025",
    model="spanf",
    sha256="1508c566008654646bea1edff537c83dd7a6fe8f6ffda3f25f9eb7ba09cbbcd3",
    wrapper_key=None,  # bare state_dict, saved with CUDA storages (read with map_location="cpu")
    kwargs={"scale": 4, "in_channels": 3, "num_features": 32, "num_blocks": 5},
    params=148_288,
    licence="MIT",
    scale=4,
    description="SPAN-F (NTIRE 2025 ESR 2nd overall, team 24 XiaomiMM), 32 ch; Set5 x4 RGB PSNR 29.85 dB",
)

PDS_NTIRE2026 = model_zoo_record(
    _REPO_2026,
    _COMMIT_2026,
    "team01_PDS.pth",
    name="pds_ntire2026",
    model="pds",
    sha256="6196a5e03e7d3fb58e3c35427bdd00290e693c8b530f5f8573108e517b9ade46",
    wrapper_key=None,  # bare state_dict, saved with CUDA storages
    kwargs={"scale": 4, "in_channels": 3, "num_features": 32, "num_blocks": 5, "tail_channels": 20},
    params=141_748,
    licence="MIT",
    scale=4,
    description="PDS (NTIRE 2026 ESR, team 01): SPAN-F with a 20-channel tail; Set5 x4 RGB PSNR 29.82 dB",
)

PKDSR_NTIRE2026 = model_zoo_record(
    _REPO_2026,
    _COMMIT_2026,
    "team16_PKDSR.pth",
    name="pkdsr_ntire2026",
    model="pkdsr",
    sha256="737fb4bb122c8dcdc0e3b6864d420819206ef7260e90b4a3e984c40c64e56d24",
    # The file also holds 'params' (non-EMA, up to 0.0045 apart); the organisers load 'params_ema'.
    wrapper_key="params_ema",
    kwargs={"scale": 4, "in_channels": 3, "num_features": 32, "num_blocks": 5, "tail_channels": 24},
    params=143_928,
    licence="MIT",
    scale=4,
    description="PKDSR (NTIRE 2026 ESR, team 16): SPAN-F with a pruned 24-channel tail; Set5 x4 RGB PSNR 29.84 dB",
)

SPANV2_NTIRE2026 = model_zoo_record(
    _REPO_2026,
    _COMMIT_2026,
    "team22_spanv2_c2.pth",
    name="spanv2_c2_ntire2026",
    model="spanv2",
    sha256="fca2743272b8a7fb32931ed3287454173c7d209f204cb2f58084ee868414d371",
    wrapper_key=None,  # bare state_dict
    kwargs={"scale": 4, "in_channels": 3, "num_features": 32, "num_blocks": 5, "bias": False},
    params=139_104,
    licence="MIT",
    scale=4,
    description="SPANV2_ESR C2 (NTIRE 2026 ESR 1st overall, team 22 Xiaomi), 32 ch, attention in PyTorch; "
    "Set5 x4 RGB PSNR 29.84 dB",
)

_SPANF_DETERMINED = ("scale", "in_channels", "num_features", "num_blocks", "tail_channels")

register_model(
    ModelSpec(
        name="spanf",
        builder=spanf,
        weights=(SPANF_NTIRE2025,),
        detect=detect_spanf,
        description="SPAN-F: SPAN with a nearest-copy shortcut and a fused tail, no mean shift",
        weight_determined=_SPANF_DETERMINED[:-1],
    )
)

register_model(
    ModelSpec(
        name="pds",
        builder=pds,
        weights=(PDS_NTIRE2026,),
        detect=detect_pds,
        description="PDS: SPAN-F with a 20-channel distilled tail, no mean shift",
        weight_determined=_SPANF_DETERMINED,
    )
)

register_model(
    ModelSpec(
        name="pkdsr",
        builder=pkdsr,
        weights=(PKDSR_NTIRE2026,),
        detect=detect_pkdsr,
        description="PKDSR: SPAN-F with a pruned 24-channel tail, distilled, no mean shift",
        weight_determined=_SPANF_DETERMINED,
    )
)

register_model(
    ModelSpec(
        name="spanv2",
        builder=spanv2,
        weights=(SPANV2_NTIRE2026,),
        detect=detect_spanv2,
        description="SPANV2: SPAN-F descendant with ReLU blocks and 1x1 guidance attention, no mean shift",
        weight_determined=("scale", "in_channels", "num_features", "num_blocks", "bias"),
    )
)
