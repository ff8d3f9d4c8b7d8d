"""AGDN: Attention Guidance Distillation Network (NTIRE 2024 Efficient SR challenge, team 31 "XJU_100th Ann").

- Challenge report: "NTIRE 2024 Challenge on Efficient Super-Resolution: Methods and Results" (CVPRW 2024), team 31;
  factsheet: 0.069 M parameters, 4.39 G FLOPs (fvcore, LR 256x256).
- Official code and weights: ``Amazingren/NTIRE2024_ESR`` @ ``6404fa48dde4a4adbf241a51debdc661aef20449``,
  ``models/team31_AGDN.py`` and ``model_zoo/team31_agdn.pth`` (built with ``AGDN(num_feat=24, upscale=4)``).
- Licence: MIT (the NTIRE 2024 ESR repository).
- Written from ``shared/specs/AGDN.md``; section numbers below refer to that file.

Four AGDBs (residual feature distillation with BSConvU, ``B1``..``B4``), each followed by a multi-scale variance
spatial attention (MVSA), a contrast channel attention with feature decomposition (RCCA) and a Restormer-style
block whose channel attention uses ReLU instead of softmax (SGAL). In eval mode the attention runs on overlapping
96x96 windows (the test-time local converter, TLC, section 3.6); ``tlc=False`` or ``model.tlc = False`` switches
to global attention, which is what training mode always uses.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..tiling import TilingSpec
from ..weights import WeightsRecord
from ._registry import ModelSpec, StateDict, read_common, register_model
from .blocks import CCA, BSConvU, NestedResidual, PixelShuffleUpsampler, distill, local_variance, register_mean

__all__ = ["AGDN", "detect", "tlc_window_starts"]

# --------------------------------------------------------------------------------------------------------------
# Blocks specific to AGDN
# --------------------------------------------------------------------------------------------------------------


class VarianceESA(nn.Module):
    """The ESA inside MVSA (``esa.body.0``, section 3.3): two max-pool and two local-variance branches.

    The k5 pool pairs with the 5x5 variance and the k7 pool with the 7x7 variance, crossed relative to the
    branch numbering (specs/README.md section 5).
    """

    def __init__(self, num_features: int) -> None:
        super().__init__()
        f = num_features // 4  # 24 -> 6 (section 2)
        self.conv1 = nn.Conv2d(num_features, f, 1)
        self.conv_f = nn.Conv2d(f, f, 1)
        self.conv2_1 = BSConvU(f, f, 3, stride=2, padding=1)
        self.conv2_2 = BSConvU(f, f, 3, stride=2, padding=1)
        self.conv2_3 = BSConvU(f, f, 3, stride=2, padding=1)
        self.conv2_4 = BSConvU(f, f, 3, stride=2, padding=1)
        self.conv_max_1 = BSConvU(f, f, 3)
        self.conv_max_2 = BSConvU(f, f, 3)
        self.conv3_1 = BSConvU(f, f, 3)
        self.conv3_2 = BSConvU(f, f, 3)
        self.conv4 = nn.Conv2d(f, num_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv1(x)
        p1 = F.max_pool2d(self.conv2_1(c), kernel_size=5, stride=3, padding=1)
        p2 = F.max_pool2d(self.conv2_2(c), kernel_size=7, stride=3, padding=1)
        v3 = local_variance(self.conv2_3(c), 7)  # unbiased (specs/README.md section 5)
        v4 = local_variance(self.conv2_4(c), 5)
        a1 = self.conv3_1(F.gelu(self.conv_max_1(p1 + v4)))
        a2 = self.conv3_2(F.gelu(self.conv_max_2(p2 + v3)))
        size = (x.shape[2], x.shape[3])
        u1 = F.interpolate(a1, size=size, mode="bilinear", align_corners=False)
        u2 = F.interpolate(a2, size=size, mode="bilinear", align_corners=False)
        m = torch.sigmoid(self.conv4((u1 + u2) + self.conv_f(c)))
        return x * m


class ElementScale(nn.Module):
    """Learnable per-channel scale ``scale`` [1, C, 1, 1], initialised to 1e-5 (section 4)."""

    def __init__(self, channels: int, init_value: float = 1e-5) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((1, channels, 1, 1), init_value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class RCCA(nn.Module):
    """Residual contrast channel attention with feature decomposition (``cca``, section 3.4)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.decompose = nn.Conv2d(channels, 1, 1)
        self.sigma = ElementScale(channels)
        # Official CCALayer(C, reduction=C // 4): hidden width 24 // 6 = 4 (section 7). The shared CCA reduces
        # mean and std in the order that is bit-exact with the official code (specs/README.md section 5).
        self.cca = CCA(channels, reduction=channels // 4)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        t = F.gelu(self.dwconv(z))
        x1 = self.sigma(t - F.gelu(self.decompose(t)))
        x2 = self.cca(t)
        return x1 + x2 + z


class _WithBiasLayerNorm(nn.Module):
    """LayerNorm over the last dim with the biased variance and eps 1e-5 (section 3.5; specs/README.md section 5)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(-1, keepdim=True)
        var = x.var(-1, keepdim=True, unbiased=False)
        return (x - mu) / torch.sqrt(var + 1e-5) * self.weight + self.bias


class ChannelLayerNorm(nn.Module):
    """Per-pixel LayerNorm over channels, computed on the channels-last view to be bit-exact with the official code
    (specs/README.md section 5)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = _WithBiasLayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.body(x.permute(0, 2, 3, 1).reshape(b, h * w, c))
        return y.reshape(b, h, w, c).permute(0, 3, 1, 2)


def tlc_window_starts(size: int, window: int) -> list[int]:
    """Start offsets of the TLC windows along one axis (section 3.6, step 2).

    ``window`` is already clipped to ``size``. Examples with window 96: 97 -> [0, 1], 200 -> [0, 52, 104].
    """
    count = (size - 1) // window + 1
    # The 1e-8 keeps an exact integer quotient from rounding up (section 3.6).
    step = window if count == 1 else math.ceil((size - window) / (count - 1) - 1e-8)
    starts: list[int] = []
    i = 0
    while i < size:
        if i + window >= size:
            starts.append(size - window)
            break
        starts.append(i)
        i += step
    return starts


class SparseAttention(nn.Module):
    """Transposed (channel-to-channel) attention with ReLU scores (``restormer_attn``, section 3.5).

    No softmax and no top-k (specs/README.md section 5). With ``tlc`` on and in eval mode, the attention of steps
    2-5 runs on overlapping windows of ``tlc_window`` pixels and the window outputs are averaged (section 3.6).
    """

    def __init__(self, channels: int, num_heads: int = 3, *, tlc: bool = True, tlc_window: int = 96) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.tlc = tlc
        self.tlc_window = tlc_window
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(channels, channels * 3, 1, bias=False)
        self.qkv_dwconv = nn.Conv2d(channels * 3, channels * 3, 3, padding=1, groups=channels * 3, bias=False)
        self.project_out = nn.Conv2d(channels, channels, 1, bias=False)
        # A module, as in the official code: the NTIRE 2023 conv-hook counter hooks ReLU modules.
        self.relu = nn.ReLU()

    def attend_global(self, qkv: torch.Tensor) -> torch.Tensor:
        """Steps 2-5 of section 3.5 on an N x 3C x h x w tensor; every batch entry is independent."""
        n, c3, h, w = qkv.shape
        q, k, v = qkv.chunk(3, dim=1)
        shape = (n, self.num_heads, c3 // (3 * self.num_heads), h * w)
        q = F.normalize(q.reshape(shape), dim=-1)
        k = F.normalize(k.reshape(shape), dim=-1)
        attn = self.relu((q @ k.transpose(-2, -1)) * self.temperature)
        out = attn @ v.reshape(shape)
        return out.reshape(n, c3 // 3, h, w)

    def attend_local(self, qkv: torch.Tensor) -> torch.Tensor:
        """TLC (section 3.6): windows stacked along the batch, attended, summed on a canvas, divided by the count.

        For batch size 1 the stacking and summation order equal the official code's (which asserted B == 1).
        With B > 1 each image's windows go through the same computations, so this step gives every image
        bit-for-bit the result it gets alone; the surrounding convolutions may still differ in the last bits
        between batch sizes, because PyTorch's CPU kernels choose their algorithm by batch size.
        """
        b, c3, h, w = qkv.shape
        k1, k2 = min(h, self.tlc_window), min(w, self.tlc_window)
        rows, cols = tlc_window_starts(h, k1), tlc_window_starts(w, k2)
        if len(rows) == 1 and len(cols) == 1:
            # One window covering everything: (0 + out) / 1 == out exactly, so skip the canvas.
            return self.attend_global(qkv)
        starts = [(i, j) for i in rows for j in cols]  # rows outer, columns inner
        outs = self.attend_global(torch.cat([qkv[:, :, i : i + k1, j : j + k2] for i, j in starts], dim=0))
        canvas = qkv.new_zeros(b, c3 // 3, h, w)
        count = qkv.new_zeros(1, 1, h, w)
        for n, (i, j) in enumerate(starts):
            canvas[:, :, i : i + k1, j : j + k2] += outs[n * b : (n + 1) * b]
            count[:, :, i : i + k1, j : j + k2] += 1.0
        return canvas / count

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv = self.qkv_dwconv(self.qkv(x))
        # Training mode always attends globally; TLC is a test-time converter (section 4).
        out = self.attend_local(qkv) if self.tlc and not self.training else self.attend_global(qkv)
        return self.project_out(out)


class GDFN(nn.Module):
    """Restormer gated-dconv feed-forward network, expansion 2, no biases (``restormer_ffn``, section 3.5)."""

    def __init__(self, channels: int, expansion: int = 2) -> None:
        super().__init__()
        hidden = channels * expansion
        self.project_in = nn.Conv2d(channels, hidden * 2, 1, bias=False)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=False)
        self.project_out = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t1, t2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(t1) * t2)


class SGAL(nn.Module):
    """Sparse global attention layer (``ea``, section 3.5): pre-norm attention and FFN, both residual."""

    def __init__(self, channels: int, num_heads: int = 3, *, tlc: bool = True, tlc_window: int = 96) -> None:
        super().__init__()
        self.norm3 = ChannelLayerNorm(channels)
        self.norm4 = ChannelLayerNorm(channels)
        self.restormer_attn = SparseAttention(channels, num_heads, tlc=tlc, tlc_window=tlc_window)
        self.restormer_ffn = GDFN(channels)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # Branch output first, as in the official code: a sum takes the memory layout of its first operand, so the
        # tensors the next convolutions and reductions see are laid out exactly as in the official run.
        z = self.restormer_attn(self.norm3(z)) + z
        return self.restormer_ffn(self.norm4(z)) + z


class AGDB(nn.Module):
    """Attention guidance distillation block (section 3.2)."""

    def __init__(self, channels: int, *, tlc: bool = True, tlc_window: int = 96) -> None:
        super().__init__()
        dc = channels // 2  # distilled channels: 24 -> 12 (section 2)
        self.c1_d = nn.Conv2d(channels, dc, 1)
        self.c1_r = BSConvU(channels, channels, 3)
        self.c2_d = nn.Conv2d(channels, dc, 1)
        self.c2_r = BSConvU(channels, channels, 3)
        self.c3_d = nn.Conv2d(channels, dc, 1)
        self.c3_r = BSConvU(channels, channels, 3)
        self.c4 = nn.Conv2d(channels, dc, 3, padding=1, groups=dc)  # zero padding (specs/README.md section 5)
        self.c5 = nn.Conv2d(dc * 4, channels, 1)
        # MVSA, the multi-scale variance spatial attention: ESA(x) + x with the ESA at body.0 (section 7).
        self.esa = NestedResidual(VarianceESA(channels))
        self.cca = RCCA(channels)
        self.ea = SGAL(channels, tlc=tlc, tlc_window=tlc_window)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The distillation steps (residual before each activation, section 3.2), then the three attentions.
        return self.ea(self.cca(self.esa(distill(self, x)))) + x


# --------------------------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------------------------


class AGDN(nn.Module):
    """AGDN x4 (section 3.1). Input and output: float RGB NCHW in [0, 1]; no clamping inside.

    ``tlc`` selects the test-time local converter in eval mode (as shipped, section 3.6); change it on a built
    model with ``model.tlc = False`` or ``model.set_tlc(False)``. Training mode always uses global attention.

    Defaults: the NTIRE 2024 configuration (24 features, 4 blocks, x4, TLC on).
    """

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 3,
        out_channels: int = 3,
        num_features: int = 24,
        num_blocks: int = 4,
        tlc: bool = True,
        tlc_window: int = 96,
    ) -> None:
        super().__init__()
        # 3 attention heads need C % 3 == 0; the grouped c4 (C -> C/2, C/2 groups) needs C even (section 2).
        if num_features % 6 != 0:
            raise ValueError(f"num_features must be a multiple of 6, got {num_features}")
        if tlc_window < 1:
            raise ValueError(f"tlc_window must be positive, got {tlc_window}")
        self.scale = int(scale)
        # Below 15x15 a reflect pad inside the ESA is larger than its input (../shared/specs/README.md section 5).
        # MVSA: stride 2 then pools at stride 3 (period 6). Tiles no smaller than the TLC attention window
        # (specs/AGDN.md section 3.6), so that each tile attends like the whole image.
        self.tiling = TilingSpec(scale=self.scale, min_size=15, stride_period=6, min_tile=tlc_window)
        self.num_blocks = num_blocks
        # The DIV2K mean, a non-persistent buffer: no state_dict entry, moved with the model.
        register_mean(self)
        self.fea_conv = nn.Conv2d(in_channels, num_features, 3, padding=1)
        # Blocks are attributes B1..Bn, as in the official state_dict (section 2), not a ModuleList.
        for n in range(1, num_blocks + 1):
            setattr(self, f"B{n}", AGDB(num_features, tlc=tlc, tlc_window=tlc_window))
        self.c1 = nn.Conv2d(num_features * num_blocks, num_features, 1)
        self.c2 = BSConvU(num_features, num_features, 3)
        self.upsampler = PixelShuffleUpsampler(num_features, out_channels, self.scale)
        self._tlc = tlc

    def _attentions(self) -> list[SparseAttention]:
        return [m for m in self.modules() if isinstance(m, SparseAttention)]

    @property
    def tlc(self) -> bool:
        """Whether eval-mode attention runs on TLC windows (True, as shipped) or globally (False)."""
        return self._tlc

    @tlc.setter
    def tlc(self, enabled: bool) -> None:
        self._tlc = bool(enabled)
        for attn in self._attentions():
            attn.tlc = self._tlc

    def set_tlc(self, enabled: bool) -> AGDN:
        """Switch the test-time local converter on or off; returns the model for chaining."""
        self.tlc = enabled
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.mean
        fea = self.fea_conv(x - mean)
        feats = []
        out = fea
        for n in range(1, self.num_blocks + 1):
            out = getattr(self, f"B{n}")(out)
            feats.append(out)
        trunk = self.c2(F.gelu(self.c1(torch.cat(feats, dim=1)))) + fea
        return self.upsampler(trunk) + mean


# --------------------------------------------------------------------------------------------------------------
# Builders, detection, weights
# --------------------------------------------------------------------------------------------------------------


def detect(state_dict: StateDict) -> dict[str, Any] | None:
    """Constructor kwargs for a bare AGDN state_dict, or None when the keys are not AGDN's."""
    if "fea_conv.weight" not in state_dict or "B1.ea.restormer_attn.temperature" not in state_dict:
        return None
    return read_common(state_dict, stem="fea_conv.weight", blocks="B", upsampler="upsampler.0.weight")


AGDN_NTIRE2024 = WeightsRecord(
    name="agdn_ntire2024",
    model="agdn",
    file="team31_agdn.pth",
    url=(
        "https://github.com/Amazingren/NTIRE2024_ESR/raw/6404fa48dde4a4adbf241a51debdc661aef20449/"
        "model_zoo/team31_agdn.pth"
    ),
    sha256="795b7724e5975391c7134b088fb645ae2824e3ed286673dd43f1df3c9270650a",
    wrapper_key=None,  # bare state_dict (section 1)
    kwargs={"scale": 4, "num_features": 24, "num_blocks": 4},
    params=69_272,
    source="Amazingren/NTIRE2024_ESR @ 6404fa48, model_zoo/team31_agdn.pth",
    licence="MIT",
    scale=4,
    description="AGDN, NTIRE 2024 ESR team 31 (XJU_100th Ann); Set5 x4 RGB PSNR 30.10 dB with TLC on",
)

register_model(
    ModelSpec(
        name="agdn",
        builder=AGDN,
        weights=(AGDN_NTIRE2024,),
        detect=detect,
        description="Attention Guidance Distillation Network (NTIRE 2024 ESR, team 31), 69K params",
        weight_determined=("scale", "num_features", "num_blocks"),
    )
)
