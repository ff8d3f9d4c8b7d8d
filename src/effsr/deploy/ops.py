"""Run-time ops the fast deploy graph calls: the fused convolution and the rewritten element-wise / statistics ops.

Each is an exact replacement (up to float summation order) of what the model computes; the graph passes in
:mod:`effsr.deploy.passes` put them in place. Nothing here knows a graph or an architecture.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class FusedConv2d(nn.Module):
    """A 2-D convolution with explicit reflect padding and fused post-ops: ``unary(conv(pad(x)) [+ or * other])``.

    On CPU (float32/bfloat16) it runs oneDNN's fused primitive (``torch.ops.mkldnn._convolution_pointwise``) with
    weights pre-packed once by :meth:`pack`; elsewhere it runs ``F.conv2d`` and the post-ops as separate ops.
    ``inplace`` writes the result into ``other`` (only set when ``other`` is a dead temporary).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, *, stride: Sequence[int],
                 padding: Sequence[int], dilation: Sequence[int], groups: int,
                 reflect_pad: tuple[int, int, int, int] | None = None) -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach().clone())
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.stride = [int(s) for s in stride]
        self.padding = [int(p) for p in padding]
        self.dilation = [int(d) for d in dilation]
        self.groups = int(groups)
        self.reflect_pad = reflect_pad
        self.binary: str | None = None
        self.inplace = False
        self.unary: str | None = None
        self.unary_scalars: list[float] = []
        self.packed: torch.Tensor | None = None
        self.pack_on_first_call = False

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])

    def is_pointwise(self) -> bool:
        """A plain 1x1 convolution (stride 1, no padding, one group): a matrix product over the channels."""
        return (tuple(self.weight.shape[2:]) == (1, 1) and self.stride == [1, 1] and self.padding == [0, 0]
                and self.dilation == [1, 1] and self.groups == 1 and self.reflect_pad is None)

    def with_post_ops_of(self, other: FusedConv2d) -> FusedConv2d:
        """Take ``other``'s fused post-ops (binary, in-place, activation); returns ``self``."""
        self.binary, self.inplace = other.binary, other.inplace
        self.unary, self.unary_scalars = other.unary, list(other.unary_scalars)
        return self

    def is_depthwise(self) -> bool:
        return self.groups == self.out_channels and self.weight.shape[1] == 1

    def pack(self, input_shape: Sequence[int]) -> None:
        """Pre-pack the weight for oneDNN (CPU only); the packed weight works for every input size."""
        self.packed = torch.ops.mkldnn._reorder_convolution_weight(
            self.weight, self.padding, self.stride, self.dilation, self.groups, list(input_shape))

    def forward(self, x: torch.Tensor, other: torch.Tensor | None = None) -> torch.Tensor:
        if self.reflect_pad is not None:
            x = F.pad(x, self.reflect_pad, mode="reflect")
        if self.pack_on_first_call and x.device.type == "cpu" and x.dtype == self.weight.dtype:
            self.pack(x.shape)
            self.pack_on_first_call = False
        # oneDNN fuses only ReLU after the residual add: other activations then run in place afterwards.
        late_unary = self.unary if (self.binary and (self.binary != "add" or self.unary != "relu")) else None
        if self.packed is not None and x.device.type == "cpu":
            y = self._forward_onednn(x, other, None if late_unary else self.unary)
        else:
            y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
            if self.binary == "add":
                y = other.add_(y) if self.inplace else y + other
            elif self.binary == "mul":
                y = y.mul_(other)
            late_unary = self.unary
        return apply_unary(y, late_unary, self.unary_scalars, inplace=True) if late_unary else y

    def _forward_onednn(self, x: torch.Tensor, other: torch.Tensor | None, unary: str | None) -> torch.Tensor:
        args = (self.packed, self.bias, self.padding, self.stride, self.dilation, self.groups)
        if self.binary is None:
            attr = unary or "none"
            algorithm = "none" if attr == "gelu" else ""
            scalars = self.unary_scalars if unary else []
            return torch.ops.mkldnn._convolution_pointwise(x, *args, attr, scalars, algorithm)
        if self.inplace:  # oneDNN's in-place form is the sum post-op: "add" only
            return torch.ops.mkldnn._convolution_pointwise_.binary(other, x, *args, "add", None, unary, [], None)
        return torch.ops.mkldnn._convolution_pointwise.binary(x, other, *args, self.binary, None, unary, [], None)

    def extra_repr(self) -> str:
        k = tuple(self.weight.shape)
        return (f"{k}, stride={self.stride}, padding={self.padding}, groups={self.groups}, "
                f"reflect_pad={self.reflect_pad}, "
                f"binary={self.binary}{'(inplace)' if self.inplace else ''}, unary={self.unary}")


@functools.cache
def onednn_packs(dtype: torch.dtype) -> bool:
    """Whether oneDNN's fused convolution with pre-packed weights (:meth:`FusedConv2d.pack`) computes correctly in
    ``dtype`` on this CPU, checked once per process on a small convolution against ``F.conv2d`` in float32.

    Float32 always does. bfloat16 has oneDNN kernels on CPUs with AVX-512 (native with AVX-512 BF16 or AMX). Without
    them the packing fails in one of two ways, so it is tested rather than assumed: on a CPU without AVX-512
    (measured on an AVX2-only AMD EPYC VM) ``_reorder_convolution_weight`` raises ("bf16 path needs the cpu support
    avx_ne_convert or avx512bw, avx512vl and avx512dq"), which used to fail the whole graph build and drop every
    pass; under ``ONEDNN_MAX_CPU_ISA=AVX2`` on an AVX-512 CPU (the test suite's setting) PyTorch's check passes and
    oneDNN was found to go wrong without raising. Either failure (an error, or a result off by more than bfloat16
    rounding) leaves the weights unpacked: ``F.conv2d``, PyTorch's own bfloat16 path, with every other pass kept.
    """
    if not torch.backends.mkldnn.is_available():
        return False
    if dtype == torch.float32:
        return True
    if dtype != torch.bfloat16:
        return False
    g = torch.Generator().manual_seed(0)
    w = (torch.randn(16, 16, 3, 3, generator=g) * 0.1).to(dtype)
    b = (torch.randn(16, generator=g) * 0.1).to(dtype)
    x = torch.rand(1, 16, 12, 10, generator=g).to(dtype)
    ref = F.conv2d(x.float(), w.float(), b.float(), padding=1)
    conv = FusedConv2d(w, b, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1)
    xc = x.contiguous(memory_format=torch.channels_last)
    try:
        conv.pack(xc.shape)
        with torch.inference_mode():
            got = conv(xc).float()
    except RuntimeError:
        return False
    # Inputs and weights are exact in bfloat16 and the sums accumulate in float32: only the output's rounding
    # (8 bits of mantissa, relative 2**-8) separates a correct result from the float32 one.
    return bool(got.shape == ref.shape and (got - ref).abs().max() <= 2**-7 * ref.abs().max())


def gelu_dense_(y: torch.Tensor) -> torch.Tensor:
    """In-place exact (erf) GELU of ``y``; returns ``y``.

    On a dense channels-last tensor it runs on the flat view of its memory: PyTorch 2.13's ``gelu_`` on the
    channels-last strides took 3.1 ms for 28x256x256 float32 on 2 threads (AMD EPYC, AVX2) against 1.05 ms on the
    flat view, and its result differed from the NCHW forward's by up to 4.8e-7, where the flat view's equals it bit
    for bit (benchmarks/RESULTS.md, "Where the time goes").
    """
    if y.dim() == 4 and not y.is_contiguous() and y.is_contiguous(memory_format=torch.channels_last):
        torch.ops.aten.gelu_(y.permute(0, 2, 3, 1).view(-1))
        return y
    return torch.ops.aten.gelu_(y)


def apply_unary(y: torch.Tensor, name: str, scalars: Sequence[float], inplace: bool = False) -> torch.Tensor:
    if name == "gelu":
        return gelu_dense_(y if inplace else y.clone())
    if name == "relu":
        return torch.relu_(y) if inplace else torch.relu(y)
    if name == "sigmoid":
        return torch.sigmoid_(y) if inplace else torch.sigmoid(y)
    if name == "swish":
        return F.silu(y, inplace=inplace)
    if name == "leaky_relu":
        return F.leaky_relu(y, scalars[0], inplace=inplace)
    raise ValueError(f"unknown activation {name!r}")


def pixel_shuffle_nchw(x: torch.Tensor, upscale_factor: int) -> torch.Tensor:
    """``F.pixel_shuffle`` that reads a channels-last tensor and writes contiguous NCHW in one pass.

    Channel ``c * r * r + i * r + j`` at (h, w) goes to output channel ``c`` at (h * r + i, w * r + j)
    (specs/README.md section 3, PixelShuffle); on the NHWC memory that is one reshape-permute-copy.
    """
    r = int(upscale_factor)
    n, c, h, w = x.shape
    if not x.is_contiguous(memory_format=torch.channels_last) or x.is_contiguous():
        return F.pixel_shuffle(x, r)
    oc = c // (r * r)
    y = x.permute(0, 2, 3, 1).reshape(n, h, w, oc, r, r).permute(0, 3, 1, 4, 2, 5)
    return y.reshape(n, oc, h * r, w * r)


def channel_layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """LayerNorm over the channels of an NCHW tensor, as one ``F.layer_norm`` on its NHWC view."""
    y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), weight.reshape(-1), bias.reshape(-1), eps)
    return y.permute(0, 3, 1, 2)


def channel_layer_norm_1e6(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return channel_layer_norm(x, w, b, 1e-6)


def window_variance(x: torch.Tensor, kernel_size: int, stride: int, unbiased: bool = True) -> torch.Tensor:
    """Variance of every ``k x k`` window at stride ``s``: ``torch.var(x.unfold(2, k, s).unfold(3, k, s),
    dim=(-1, -2))``, computed as ``E[x^2] - E[x]^2`` with two average pools in float64.

    Six times faster than the reduction over a 6-D strided view, and at least as accurate: float64 leaves no
    cancellation at float32 precision (the result is rounded once to ``x.dtype``).
    """
    xd = x.double()
    mean = F.avg_pool2d(xd, kernel_size, stride)
    var = F.avg_pool2d(xd * xd, kernel_size, stride).sub_(mean * mean).clamp_min_(0.0)
    if unbiased:
        n = kernel_size * kernel_size
        var.mul_(n / (n - 1))
    return var.to(x.dtype)
