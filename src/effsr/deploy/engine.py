"""The inference engine: ``prepare(model, backend)`` turns any effsr model into a fast, callable deploy module.

Three backends share one contract (float RGB NCHW in [0,1] in and out, ``scale`` and ``min_size`` attributes, any
input size):

* ``eager``: the plain PyTorch forward, as the authors run it (eval mode, ``torch.inference_mode``).
* ``fast``: effsr's fastest exact PyTorch path (the default). The model is re-parameterized, traced with
  ``torch.fx`` and rewritten into a deploy graph whose every rewrite is an algebraic identity (see "Passes" below);
  convolutions then run as oneDNN primitives with pre-packed weights and fused element-wise post-ops, on channels-last
  tensors; optionally the graph goes through ``torch.compile``. In float32 the output equals the eager forward's up
  to float rounding (tests/test_engine.py: at most 5e-4 in [0,1] units on every zoo model, typically ~1e-6).
* ``onnxruntime``: the model exported to ONNX (:mod:`effsr.deploy.onnx`) and run by an onnxruntime
  ``InferenceSession`` with all graph optimizations; see :class:`OnnxRuntimeEngine`.

Why these rewrites (measured with ``torch.profiler`` on the seed models at LR 256x256, benchmarks/RESULTS.md): the
challenge models run 40-430 small convolutions, and in an eager forward most of the time goes to (1) fresh 7-60 MB
allocations that glibc serves with ``mmap`` and the kernel zero-fills page by page, (2) the NCHW depth-wise kernel,
an order of magnitude slower than the channels-last one, (3) reflect-padding copies and (4) separate element-wise
passes (bias, GELU, residual adds, LayerNorm written as ten tensor ops). The passes below remove or fuse these.

Passes (each proven by tests/test_engine.py, on small random modules and on every zoo model; none changes what is
computed, only how, so outputs differ from the eager forward by float rounding only):

1. re-parameterization (:func:`effsr.deploy.reparameterize_model`) and constant folding (the RGB mean moved to the
   device, ``w[:, None, None]`` views, anything that does not depend on the input);
2. every ``nn.Conv2d`` becomes a :class:`FusedConv2d` with explicit reflect padding and pre-packed oneDNN weights; a
   reflect-padded depth-wise ``kx1`` conv followed by a reflect-padded depth-wise ``1xk`` conv (MSN's separable
   BSConv) becomes one reflect pad and one ``kxk`` depth-wise conv (the ``1xk`` conv commutes with the row padding);
3. scalar multiplications before a convolution (RLFN's ``x * 255``) and scalar scaling or constant per-channel
   offsets after a convolution and pixel shuffle (the ``/ 255`` and ``+ mean`` of the outputs) fold into its weights;
4. ``conv(cat([a, b, ...]))`` becomes ``conv_a(a) + conv_b(b) + ...`` accumulated in place (no concatenation copy),
   and ``conv(x).chunk(n)`` becomes ``n`` convs (through a depth-wise conv to the 1x1 conv that feeds it);
5. ``conv + tensor`` and then ReLU / LeakyReLU / sigmoid / SiLU / GELU become oneDNN post-ops, written in place
   into the residual buffer when it is dead afterwards;
6. LayerNorm written element-wise over channels (AGDN, MSN) becomes one ``F.layer_norm`` on the channels-last view;
   ``x.sum(3).sum(2)`` becomes ``x.sum((2, 3))``; the unfold-based local variance becomes :func:`window_variance`;
7. element-wise ops whose input is a dead temporary run in place; the pixel shuffle writes NCHW output directly;
8. ``conv(s) * gate`` becomes one conv with oneDNN's binary-mul post-op (the ESA's ``c5(s) * sigmoid(...)``): the
   gate's own 1x1 conv on ``c5(s)`` is composed with ``c5`` so that it reads ``s`` (a product of linear maps);
9. feature maps just under a multiple of 16 channels (RLFN's 46) are widened with zero channels: oneDNN's kernels
   block output channels by 16, and a 48 -> 46 conv ran slower than a 48 -> 48 one;
10. on the packed float32 CPU graph, the ESA's glue (residual add + first 1x1 conv; the low-resolution branch; the
   upsampling, 1x1 convs, sigmoid and gated ``c5``) and the pixel shuffle run in effsr's native kernels
   (:mod:`effsr.deploy.native`) where they are available; otherwise the graph of passes 1-9 runs unchanged.

The global statistics of CCA and AGDN's windowed attention (TLC) are computed as the model computes them, over the
whole input: only their float summation order may differ. Submodules that take Python decisions from the input size
(the TLC) are kept as opaque calls, so one deploy graph serves every input size.
"""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import logging
import math
import operator
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from . import native as _native
from .onnx import single_thread
from .reparam import reparameterize_model

log = logging.getLogger(__name__)

BACKENDS = ("eager", "fast", "onnxruntime")
# Attributes the tiler (effsr.infer) reads from a model: every engine copies them from the model it wraps.
MODEL_ATTRIBUTES = ("scale", "min_size", "tile_multiple", "min_tile", "receptive_radius")
# Issue 4 item 1: every fp32 fast path equals the eager forward within 5e-4 in [0,1] units (1/8 of an 8-bit level).
FP32_TOLERANCE = 5e-4
# Lower precisions: bound on the max abs error against the float32 eager forward, in [0,1] units. Measured on Set5
# and Set14 crops over the whole zoo with the CPU kernels (worst: bfloat16 4.1e-2 = 10 levels of 8 bits, SPAN;
# float16 6.8e-3 = 1.7 levels, MSN; docs/deploy.md), with ~1.5x margin; tests/test_engine.py checks them.
LOW_PRECISION_TOLERANCE = {torch.bfloat16: 6e-2, torch.float16: 1e-2}


# --------------------------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------------------------


def prepare(
    model: nn.Module,
    backend: str = "fast",
    *,
    device: str | torch.device = "cpu",
    threads: int | None = None,
    dtype: torch.dtype | None = None,
    example_size: tuple[int, int] = (64, 64),
    compile: bool = False,
    tune_malloc: bool = True,
    verify: bool = True,
) -> nn.Module:
    """Return ``model`` ready for inference with ``backend`` on ``device``.

    The result is a callable ``nn.Module`` with the model's contract (float RGB NCHW in [0,1] in and out, any input
    size at least ``min_size``) and the attributes ``scale``, ``min_size`` (and ``tile_multiple``,
    ``receptive_radius`` where the model declares them). ``model`` itself is never modified.

    - ``threads``: CPU intra-op threads (``torch.set_num_threads`` is process-wide; onnxruntime gets its own pool).
    - ``dtype``: compute precision; ``None`` is float32. ``torch.float16`` / ``torch.bfloat16`` run the network in
      that precision (meant for CUDA; bfloat16 also works on CPUs with AVX-512 BF16) and return float32; their
      tolerances are :data:`LOW_PRECISION_TOLERANCE`. The onnxruntime backend is float32 only.
    - ``example_size``: (H, W) of the example input used to trace, check and pre-pack (any size works afterwards).
    - ``compile``: additionally run the fast graph through ``torch.compile`` (inductor; minutes of compilation per
      input shape on a small CPU, so off by default).
    - ``tune_malloc`` (fast backend on Linux/glibc): keep freed memory in the process heap instead of returning it
      to the kernel, so the next forward reuses it without page faults (see :func:`tune_glibc_malloc`).
      Process-wide.
    - ``verify`` (fast backend, float32): run the example through the eager model and the deploy graph and fall back
      to the unfused channels-last forward (with a warning) if they differ by more than :data:`FP32_TOLERANCE`.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    dev = setup_device(device, threads)
    dtype = dtype or torch.float32
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"dtype must be float32, float16 or bfloat16, got {dtype}")
    if backend == "eager":
        return EagerEngine(model, device=dev, dtype=dtype)
    if backend == "onnxruntime":
        if dtype != torch.float32:
            raise ValueError("the onnxruntime backend runs float32 only")
        return OnnxRuntimeEngine(model, device=dev, threads=threads, example_size=example_size)
    tuned = tune_malloc and dev.type == "cpu" and tune_glibc_malloc()
    engine = FastEngine(model, device=dev, dtype=dtype, example_size=example_size, compile=compile, verify=verify)
    if tuned:
        engine.memory_safety_factor = TUNED_MALLOC_MEMORY_SAFETY_FACTOR
    return engine


# Automatic tiling plans each tile's memory as the measured tensor peak times a safety factor (effsr.infer, 2.0). With
# the heap kept (tune_glibc_malloc) the process also holds freed blocks it cannot reuse: a 2000x2000 x4 upscale with
# RLFN's fast path and 551-pixel tiles peaked at 2.91 GB against 1.68 GB for the eager forward with the same tiles
# (benchmarks/RESULTS.md, "Memory"), so the fast engine plans with a larger factor (smaller tiles).
TUNED_MALLOC_MEMORY_SAFETY_FACTOR = 3.0


def setup_device(device: str | torch.device, threads: int | None) -> torch.device:
    """Check that ``device`` exists here and set the CPU intra-op threads (process-wide) when ``threads`` is given."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was requested but is not available on this machine")
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    return dev


def tune_glibc_malloc() -> bool:
    """Make glibc keep freed memory for reuse instead of unmapping it (process-wide; returns whether it applied).

    An SR forward allocates and frees hundreds of feature maps of several MB. glibc serves blocks above its dynamic
    mmap threshold (at most 32 MiB) with fresh ``mmap`` calls and trims the heap top after frees, so every forward
    page-faults (and the kernel zero-fills) its working set again: about 200,000 faults per forward, a third of MSN's
    eager time at 256x256 and 40% of RLFN's fast path at 640x360 (48-channel maps of 44 MB) here. ``M_MMAP_MAX = 0``
    serves every block from the heap, a 2 GiB ``M_TRIM_THRESHOLD`` keeps it and a 64 MiB ``M_TOP_PAD`` grows it in
    large steps: later forwards reuse warm memory. The price: the process keeps its heap at the peak it reached
    (RLFN at 640x360: peak RSS 585 MB instead of 518 MB). Does nothing (returns False) outside glibc.
    """
    if _MALLOC_STATE["tuned"] is not None:
        return bool(_MALLOC_STATE["tuned"])
    ok = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            # mallopt parameter numbers from glibc's malloc.h; the value is a C int, so the largest threshold is
            # 2**31 - 1 bytes (a larger Python int would be silently truncated by ctypes, to 0 for 2**32 multiples).
            m_trim_threshold, m_top_pad, m_mmap_max = -1, -2, -4
            ok = (bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
                  and bool(libc.mallopt(m_top_pad, 64 * 2**20)))
        except (OSError, AttributeError):
            ok = False
    _MALLOC_STATE["tuned"] = ok
    return ok


_MALLOC_STATE: dict[str, bool | None] = {"tuned": None}


# --------------------------------------------------------------------------------------------------------------
# Engines
# --------------------------------------------------------------------------------------------------------------


class Engine(nn.Module):
    """Base of the backends: copies the model's tiler attributes, moves/casts the input, runs without autograd."""

    backend = "?"

    def __init__(self, model: nn.Module, *, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__()
        for attr in MODEL_ATTRIBUTES:
            if hasattr(model, attr):
                setattr(self, attr, getattr(model, attr))
        self.scale = int(getattr(model, "scale", 4))
        self.min_size = int(getattr(model, "min_size", 1))
        self.device = device
        self.dtype = dtype

    def run(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        if lr.dim() != 4:
            raise ValueError(f"expected an NxCxHxW tensor, got shape {tuple(lr.shape)}")
        out_dtype = lr.dtype if lr.is_floating_point() else torch.float32
        with torch.inference_mode():
            y = self.run(lr.to(self.device, self.dtype))
            return y.to(dtype=out_dtype).contiguous()

    def extra_repr(self) -> str:
        return f"backend={self.backend}, device={self.device}, dtype={self.dtype}, scale={self.scale}"


class EagerEngine(Engine):
    """The plain eager forward of the model, as its authors run it (the reference every other backend matches)."""

    backend = "eager"

    def __init__(self, model: nn.Module, *, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(model, device=device, dtype=dtype)
        self.model = copy.deepcopy(model).eval().requires_grad_(False).to(device=device, dtype=dtype)
        _cast_plain_tensors(self.model, device, dtype)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class FastEngine(Engine):
    """effsr's fast path: the deploy graph of :func:`build_deploy_graph`, channels-last, optionally compiled."""

    backend = "fast"

    def __init__(self, model: nn.Module, *, device: torch.device, dtype: torch.dtype,
                 example_size: tuple[int, int] = (64, 64), compile: bool = False, verify: bool = True) -> None:
        super().__init__(model, device=device, dtype=dtype)
        h, w = (max(int(s), self.min_size) for s in example_size)
        base = reparameterize_model(model).eval().requires_grad_(False).to(device=device, dtype=torch.float32)
        _cast_plain_tensors(base, device, torch.float32)
        example = example_image(_input_channels(base), h, w).to(device)
        self.fused = True
        try:
            # torch.compile brings its own conv fusions and cannot trace pre-packed oneDNN weights.
            with single_thread():  # preparation: its speed does not matter, stalls of a busy machine do
                graph = build_deploy_graph(base, example, dtype=dtype, pack=not compile)
        except Exception as exc:  # an architecture the tracer cannot follow: still a correct, faster forward
            log.warning("fast backend: graph rewrite failed for %s (%s: %s); using the channels-last forward",
                        type(model).__name__, type(exc).__name__, exc)
            graph, self.fused = _plain_deploy(base, device, dtype), False
        if verify and self.fused and dtype == torch.float32:
            with torch.inference_mode(), single_thread():
                ref = base(example)

            def error_of(g: nn.Module) -> float:
                with torch.inference_mode(), single_thread():
                    got = g(example.contiguous(memory_format=torch.channels_last))
                    return (got.float() - ref.float()).abs().max().item()

            err = error_of(graph)
            if not err <= FP32_TOLERANCE and _has_native(graph):
                log.warning("fast backend: the deploy graph of %s with native kernels differs from its eager "
                            "forward by %.2e (> %.0e); rebuilding it without them", type(model).__name__, err,
                            FP32_TOLERANCE)
                with single_thread():
                    graph = build_deploy_graph(base, example, dtype=dtype, pack=not compile, native=False)
                err = error_of(graph)
            if not err <= FP32_TOLERANCE:
                log.warning("fast backend: the deploy graph of %s differs from its eager forward by %.2e (> %.0e); "
                            "using the channels-last forward", type(model).__name__, err, FP32_TOLERANCE)
                graph, self.fused = _plain_deploy(base, device, dtype), False
        self.graph = graph
        self._runner: Callable[[torch.Tensor], torch.Tensor] = graph
        if compile:
            self._runner = torch.compile(graph, dynamic=False)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        return self._runner(x.contiguous(memory_format=torch.channels_last))


def _has_native(graph: nn.Module) -> bool:
    return any(isinstance(m, (_native.EsaTail, _native.EsaHead, _native.EsaLow)) for m in graph.modules()) or (
        isinstance(graph, fx.GraphModule)
        and any(n.target is _native.pixel_shuffle_nchw for n in graph.graph.nodes))


def example_image(channels: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A deterministic image-like input in [0,1]: random values on an 8x coarser grid, bilinearly enlarged.

    Not white noise on purpose: some zoo models (SAFMN++'s modulation, MSN's LayerNorm) amplify pixel-level noise
    far outside the [0,1] range (activations of 1e15 on torch.rand), where any float reordering shows up as a
    large absolute error although the relative error stays ~1e-7. Natural images stay well inside.
    """
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, channels, max(2, height // 8), max(2, width // 8), generator=g)
    return F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False).clamp_(0, 1)


# --------------------------------------------------------------------------------------------------------------
# The deploy graph
# --------------------------------------------------------------------------------------------------------------


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
        return _apply_unary(y, late_unary, self.unary_scalars, inplace=True) if late_unary else y

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


def _apply_unary(y: torch.Tensor, name: str, scalars: Sequence[float], inplace: bool = False) -> torch.Tensor:
    if name == "gelu":
        return torch.ops.aten.gelu_(y) if inplace else F.gelu(y)
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


def build_deploy_graph(model: nn.Module, example: torch.Tensor, *, dtype: torch.dtype = torch.float32,
                       fuse_gelu: bool = True, pack: bool = True, native: bool = True) -> fx.GraphModule:
    """The deploy graph of ``model`` (a new module; ``model`` is not modified). See the module docstring.

    ``native``: on the packed float32 CPU graph, run the ESA's glue through effsr's native kernels
    (:mod:`effsr.deploy.native`, pass 10) where they are available.
    """
    device = example.device
    m = reparameterize_model(model).eval().requires_grad_(False).to(device)
    gm = trace_with_leaves(m)
    _normalize(gm)
    _fold_constants(gm, device, torch.float32)
    _fuse_layer_norms(gm)
    _fold_constants(gm, device, torch.float32)
    _merge_separable_depthwise(gm)
    _fold_scalars_into_convs(gm)
    _fold_constants(gm, device, torch.float32)
    _rewrite_reductions(gm)
    # One shape propagation serves the rest: the rewrites below keep every surviving node's output shape.
    _propagate_shapes(gm, example)
    _split_concat_convs(gm)
    _split_chunked_convs(gm)
    _fuse_conv_add(gm)
    _fuse_conv_unary(gm, fuse_gelu=fuse_gelu)
    _fuse_conv_mul(gm)
    _inplace_elementwise(gm)
    _pad_channels(gm)
    _finish(gm)
    gm = gm.to(device=device, dtype=dtype)
    _cast_plain_tensors(gm, device, dtype)
    gm = gm.to(memory_format=torch.channels_last)
    if pack and device.type == "cpu" and torch.backends.mkldnn.is_available() and dtype in (torch.float32,
                                                                                              torch.bfloat16):
        _pack_convs(gm, example.to(dtype).contiguous(memory_format=torch.channels_last))
        for mod in gm.modules():  # convs inside opaque (untraceable) modules pack on their first call
            if isinstance(mod, FusedConv2d) and mod.packed is None:
                mod.pack_on_first_call = True
        if native and dtype == torch.float32 and _native.library() is not None:
            _fuse_esa_native(gm)
    return gm


def _plain_deploy(model: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """The fallback fast path: re-parameterized, channels-last, eager forward."""
    m = reparameterize_model(model).eval().requires_grad_(False).to(device=device, dtype=dtype)
    _cast_plain_tensors(m, device, dtype)
    return m.to(memory_format=torch.channels_last)


# ---- tracing ---------------------------------------------------------------------------------------------------


class _LeafTracer(fx.Tracer):
    """``torch.fx`` tracer that keeps the given modules (and ``torch.nn`` built-ins) as opaque calls."""

    def __init__(self, leaves: set[nn.Module]) -> None:
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return m in self.leaves or super().is_leaf_module(m, module_qualified_name)


def _traceable(module: nn.Module, leaves: set[nn.Module]) -> bool:
    try:
        _LeafTracer(leaves).trace(module)
    except Exception:
        return False
    return True


def _untraceable_leaf(module: nn.Module, leaves: set[nn.Module]) -> nn.Module | None:
    """The outermost-first, deepest submodule that cannot be traced although all its children can."""
    for child in module.children():
        if child in leaves or _LeafTracer(leaves).is_leaf_module(child, ""):
            continue
        if not _traceable(child, leaves):
            return _untraceable_leaf(child, leaves) or child
    return None


def trace_with_leaves(model: nn.Module, max_leaves: int = 64) -> fx.GraphModule:
    """Symbolically trace ``model``; submodules with input-dependent Python control flow (AGDN's windowed attention
    picks its windows from the input size) are found automatically and kept as opaque calls."""
    leaves: set[nn.Module] = set()
    for _ in range(max_leaves):
        try:
            graph = _LeafTracer(leaves).trace(model)
            return fx.GraphModule(model, graph)
        except Exception:
            culprit = _untraceable_leaf(model, leaves)
            if culprit is None:
                raise
            leaves.add(culprit)
    raise RuntimeError(f"could not trace {type(model).__name__}")


# ---- node helpers ----------------------------------------------------------------------------------------------

_GELU = (F.gelu, torch._C._nn.gelu)
_ADD = (operator.add, torch.add)
_MUL = (operator.mul, torch.mul)
_UNARY_FUNCTIONS: dict[Any, str] = {
    F.relu: "relu", torch.relu: "relu", torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", F.silu: "swish",
    F.leaky_relu: "leaky_relu", F.gelu: "gelu", torch._C._nn.gelu: "gelu",
}


def _conv_of(gm: fx.GraphModule, node: Any) -> FusedConv2d | None:
    if isinstance(node, fx.Node) and node.op == "call_module":
        mod = gm.get_submodule(node.target)
        if isinstance(mod, FusedConv2d):
            return mod
    return None


def _meta_shape(node: Any) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _meta_dtype(node: Any) -> torch.dtype | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return meta.dtype if meta is not None and hasattr(meta, "dtype") else None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _unary_of(node: fx.Node) -> tuple[str, list[float]] | None:
    """(oneDNN activation name, scalars) if ``node`` is a supported activation of its first argument."""
    if node.op != "call_function" or node.target not in _UNARY_FUNCTIONS:
        return None
    name = _UNARY_FUNCTIONS[node.target]
    args, kwargs = node.args, dict(node.kwargs)
    if kwargs.pop("inplace", False) or (len(args) > 2 and args[2]):
        return None
    if name == "gelu":
        if kwargs.pop("approximate", "none") != "none" or len(args) > 1:
            return None
        return (name, []) if not kwargs else None
    if name == "leaky_relu":
        slope = args[1] if len(args) > 1 else kwargs.pop("negative_slope", 0.01)
        return (name, [float(slope)]) if _is_number(slope) and not kwargs else None
    return (name, []) if len(args) == 1 and not kwargs else None


def _new_name(gm: fx.GraphModule, prefix: str) -> str:
    i = 0
    while hasattr(gm, f"{prefix}{i}"):
        i += 1
    return f"{prefix}{i}"


# ---- passes ----------------------------------------------------------------------------------------------------


def _normalize(gm: fx.GraphModule) -> None:
    """nn.Conv2d -> FusedConv2d (one module per call), activation modules -> functions, PixelShuffle -> NCHW writer."""
    activations = {nn.ReLU: torch.relu, nn.Sigmoid: torch.sigmoid, nn.SiLU: F.silu}
    for node in list(gm.graph.nodes):
        if node.op != "call_module":
            continue
        mod = gm.get_submodule(node.target)
        if type(mod) is nn.Conv2d:
            conv = _fused_from_conv(mod)
            if conv is None:
                continue
            name = _new_name(gm, "fconv")
            gm.add_submodule(name, conv)
            node.target = name
        elif type(mod) in activations:
            node.op, node.target = "call_function", activations[type(mod)]
        elif type(mod) is nn.GELU and mod.approximate == "none":
            node.op, node.target = "call_function", F.gelu
        elif type(mod) is nn.LeakyReLU:
            node.op, node.target = "call_function", F.leaky_relu
            node.args = (node.args[0], float(mod.negative_slope))
        elif type(mod) is nn.PixelShuffle:
            node.op, node.target = "call_function", pixel_shuffle_nchw
            node.args = (node.args[0], int(mod.upscale_factor))
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and node.target is F.pixel_shuffle:
            node.target = pixel_shuffle_nchw
        elif node.op == "call_module":
            _convert_convs_inside(gm.get_submodule(node.target))
    gm.graph.lint()


def _convert_convs_inside(module: nn.Module) -> None:
    """Inside an opaque (untraceable) module, swap every ``nn.Conv2d`` for an equivalent :class:`FusedConv2d`
    (no fusion, but pre-packed oneDNN weights and explicit padding)."""
    if isinstance(module, (nn.Conv2d, FusedConv2d)) or type(module).__module__.startswith("torch.nn"):
        return
    for name, child in list(module.named_children()):
        if type(child) is nn.Conv2d:
            conv = _fused_from_conv(child)
            if conv is not None:
                setattr(module, name, conv)
        else:
            _convert_convs_inside(child)


def _fused_from_conv(conv: nn.Conv2d) -> FusedConv2d | None:
    k = conv.kernel_size
    if isinstance(conv.padding, str):
        if conv.padding == "valid":
            padding = [0, 0]
        else:  # 'same' with stride 1: symmetric only for odd effective kernels
            totals = [d * (kk - 1) for d, kk in zip(conv.dilation, k, strict=True)]
            if any(t % 2 for t in totals):
                return None
            padding = [t // 2 for t in totals]
    else:
        padding = list(conv.padding)
    reflect = None
    if conv.padding_mode != "zeros":
        if conv.padding_mode != "reflect":
            return None
        reflect = (padding[1], padding[1], padding[0], padding[0])
        padding = [0, 0]
        if not any(reflect):
            reflect = None
    return FusedConv2d(conv.weight, conv.bias, stride=conv.stride, padding=padding, dilation=conv.dilation,
                       groups=conv.groups, reflect_pad=reflect)


def _fold_constants(gm: fx.GraphModule, device: torch.device, dtype: torch.dtype) -> None:
    """Evaluate every node that does not depend on the input and store its value as a constant."""
    consts: dict[fx.Node, Any] = {}
    for node in list(gm.graph.nodes):
        if node.op == "get_attr":
            consts[node] = _fetch_attr(gm, node.target)
            continue
        if node.op == "call_function" and node.target is getattr and len(node.args) == 2:
            src, attr = node.args
            if isinstance(src, fx.Node) and src.op == "placeholder" and attr in ("device", "dtype"):
                _replace_with_value(gm, node, device if attr == "device" else dtype)
            continue
        if node.op not in ("call_function", "call_method"):
            continue
        if node.op == "call_method" and str(node.target).endswith("_"):
            continue
        inputs = node.all_input_nodes
        if not inputs or not all(n in consts for n in inputs):
            continue
        args = fx.node.map_arg(node.args, lambda n: consts[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: consts[n])
        try:
            with torch.no_grad():
                if node.op == "call_function":
                    value = node.target(*args, **kwargs)
                else:
                    value = getattr(args[0], node.target)(*args[1:], **kwargs)
        except Exception:
            continue
        if isinstance(value, torch.Tensor):
            name = _new_name(gm, "_const")
            gm.register_buffer(name, value.detach().clone())
            with gm.graph.inserting_before(node):
                new = gm.graph.get_attr(name)
            node.replace_all_uses_with(new)
            gm.graph.erase_node(node)
            consts[new] = value
        elif value is None or isinstance(value, (int, float, bool, torch.device, torch.dtype)):
            _replace_with_value(gm, node, value)
    gm.graph.eliminate_dead_code()
    gm.graph.lint()


def _fetch_attr(gm: fx.GraphModule, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _replace_with_value(gm: fx.GraphModule, node: fx.Node, value: Any) -> None:
    for user in list(node.users):
        user.args = fx.node.map_arg(user.args, lambda n: value if n is node else n)
        user.kwargs = fx.node.map_arg(user.kwargs, lambda n: value if n is node else n)
    gm.graph.erase_node(node)


def _ln_channels_first(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    mu = x.mean(1, keepdim=True)
    s = (x - mu).pow(2).mean(1, keepdim=True)
    x = (x - mu) / torch.sqrt(s + 1e-6)
    return w * x + b


def _ln_channels_first_fused(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return _channel_layer_norm_1e6(x, w, b)


def _ln_last(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    mu = x.mean(-1, keepdim=True)
    var = x.var(-1, keepdim=True, unbiased=False)
    return (x - mu) / torch.sqrt(var + 1e-5) * w + b


def _ln_last_fused(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), w, b, 1e-5)


# (pattern, replacement): LayerNorm spelled element-wise, as MSN (channels-first, eps 1e-6, specs/MSN.md section 3)
# and AGDN (last dim, biased variance, eps 1e-5, specs/AGDN.md section 3.5) write it.
_LAYER_NORM_PATTERNS = ((_ln_channels_first, _ln_channels_first_fused), (_ln_last, _ln_last_fused))


def _fuse_layer_norms(gm: fx.GraphModule) -> None:
    from torch.fx import subgraph_rewriter

    for pattern, replacement in _LAYER_NORM_PATTERNS:
        subgraph_rewriter.replace_pattern(gm, pattern, replacement)
    gm.graph.lint()


def _channel_layer_norm_1e6(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return channel_layer_norm(x, w, b, 1e-6)


# Kept as one call when the replacement above is traced (torch.fx.wrap works on module-level names).
torch.fx.wrap("_channel_layer_norm_1e6")


def _merge_separable_depthwise(gm: fx.GraphModule) -> None:
    """Reflect-padded depth-wise ``kx1`` then ``1xk`` (stride 1) -> one reflect pad and one ``kxk`` depth-wise conv.

    Exact: the ``1xk`` conv works along rows, so it commutes with the first conv's reflection of rows, and the two
    reflections together are the reflection of both axes. The kernel is the outer product of the two kernels and the
    bias ``b2 + b1 * sum(w2)``, computed in float64.
    """
    for node in list(gm.graph.nodes):
        second = _conv_of(gm, node)
        if second is None or len(node.args) != 1:
            continue
        src = node.args[0]
        first = _conv_of(gm, src)
        if first is None or len(src.users) != 1 or len(src.args) != 1:
            continue
        if not (first.is_depthwise() and second.is_depthwise() and first.out_channels == second.out_channels):
            continue
        if first.binary or first.unary or second.binary or second.unary:
            continue
        if first.stride != [1, 1] or second.stride != [1, 1] or first.dilation != [1, 1] or second.dilation != [1, 1]:
            continue
        (kh, kw1), (kh2, kw) = first.weight.shape[2:], second.weight.shape[2:]
        if kw1 != 1 or kh2 != 1 or first.padding != [0, 0] or second.padding != [0, 0]:
            continue
        ph, pw = (kh - 1) // 2, (kw - 1) // 2
        if first.reflect_pad != (0, 0, ph, ph) or second.reflect_pad != (pw, pw, 0, 0):
            continue
        w1 = first.weight.double()[:, 0, :, 0]  # [C, kh]
        w2 = second.weight.double()[:, 0, 0, :]  # [C, kw]
        weight = (w1[:, :, None] * w2[:, None, :]).unsqueeze(1)
        bias = torch.zeros(second.out_channels, dtype=torch.float64, device=w1.device)
        if second.bias is not None:
            bias += second.bias.double()
        if first.bias is not None:
            bias += first.bias.double() * w2.sum(1)
        merged = FusedConv2d(weight.to(first.weight.dtype), bias.to(first.weight.dtype), stride=[1, 1],
                             padding=[0, 0], dilation=[1, 1], groups=first.groups, reflect_pad=(pw, pw, ph, ph))
        name = _new_name(gm, "fconv")
        gm.add_submodule(name, merged)
        node.target = name
        node.args = (src.args[0],)
        gm.graph.erase_node(src)
    gm.graph.lint()


def _single_user(node: fx.Node) -> fx.Node | None:
    return next(iter(node.users)) if len(node.users) == 1 else None


def _fold_scalars_into_convs(gm: fx.GraphModule) -> None:
    """Fold scalar scaling before a conv, and scalar scaling / constant channel offsets after a conv (+ shuffle).

    ``conv(s * x) = conv'(x)`` with ``w' = s * w`` (zero or reflect padding commute with scaling);
    ``shuffle(conv(x)) / s`` and ``shuffle(conv(x)) + c`` move into the conv's weight and bias, with output channel
    ``c`` of the shuffle reading conv channels ``c * r * r ... c * r * r + r * r - 1``.
    """
    changed = True
    while changed:
        changed = False
        for node in list(gm.graph.nodes):
            if node.op != "call_function":
                continue
            if _fold_input_scale(gm, node) or _fold_output_affine(gm, node):
                changed = True
                break
    gm.graph.lint()


def _scalar_factor(node: fx.Node) -> tuple[fx.Node, float] | None:
    """(tensor node, factor) when ``node`` multiplies or divides a tensor node by a Python number."""
    a, b = (node.args + (None, None))[:2]
    if node.target in _MUL and not node.kwargs:
        if isinstance(a, fx.Node) and _is_number(b):
            return a, float(b)
        if isinstance(b, fx.Node) and _is_number(a):
            return b, float(a)
    if node.target in (operator.truediv, torch.div) and not node.kwargs and isinstance(a, fx.Node) and _is_number(b):
        return a, 1.0 / float(b) if float(b) != 0 else math.inf
    return None


def _fold_input_scale(gm: fx.GraphModule, node: fx.Node) -> bool:
    sf = _scalar_factor(node)
    if sf is None or node.target in (operator.truediv, torch.div):  # only an exact multiplication folds forward
        return False
    src, factor = sf
    users = list(node.users)
    convs = [_conv_of(gm, u) for u in users]
    if not users or any(c is None for c in convs):
        return False
    if any(u.args[0] is not node or node in u.args[1:] for u in users):
        return False
    for conv in convs:
        conv.weight.mul_(factor)
    node.replace_all_uses_with(src)
    gm.graph.erase_node(node)
    return True


def _producer_conv(gm: fx.GraphModule, node: Any) -> tuple[FusedConv2d, int] | None:
    """(conv, shuffle factor) if ``node`` is a conv without post-ops, possibly through one pixel shuffle, and every
    intermediate has this single use."""
    if not isinstance(node, fx.Node) or len(node.users) != 1:
        return None
    r = 1
    if node.op == "call_function" and node.target is pixel_shuffle_nchw:
        r = int(node.args[1])
        node = node.args[0]
        if not isinstance(node, fx.Node) or len(node.users) != 1:
            return None
    conv = _conv_of(gm, node)
    if conv is None or conv.binary or conv.unary:
        return None
    return conv, r


def _fold_output_affine(gm: fx.GraphModule, node: fx.Node) -> bool:
    sf = _scalar_factor(node)
    if sf is not None:
        prod = _producer_conv(gm, sf[0])
        if prod is None or not math.isfinite(sf[1]):
            return False
        conv, _ = prod
        conv.weight.mul_(sf[1])
        if conv.bias is not None:
            conv.bias.mul_(sf[1])
        node.replace_all_uses_with(sf[0])
        gm.graph.erase_node(node)
        return True
    if node.target not in _ADD + (operator.sub, torch.sub) or node.kwargs or len(node.args) != 2:
        return False
    a, b = node.args
    sign = 1.0
    if node.target in (operator.sub, torch.sub):
        sign = -1.0
    elif isinstance(a, fx.Node) and a.op == "get_attr":
        a, b = b, a
    prod = _producer_conv(gm, a)
    if prod is None:
        return False
    conv, r = prod
    if _is_number(b):
        offset = torch.full((conv.out_channels // (r * r),), float(b), dtype=torch.float64)
    elif isinstance(b, fx.Node) and b.op == "get_attr":
        value = _fetch_attr(gm, b.target)
        if not isinstance(value, torch.Tensor) or value.dim() != 4 or value.shape[0] != 1 or value.shape[2:] != (1, 1):
            return False
        if value.shape[1] * r * r != conv.out_channels:
            return False
        offset = value.detach().double().reshape(-1)
    else:
        return False
    per_conv_channel = (sign * offset).to(conv.weight.device).repeat_interleave(r * r)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(per_conv_channel)
    conv.bias = (bias + per_conv_channel).to(conv.weight.dtype)
    node.replace_all_uses_with(a)
    gm.graph.erase_node(node)
    return True


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


def _method_or_function(node: fx.Node, name: str) -> bool:
    if node.op == "call_method":
        return node.target == name
    return node.op == "call_function" and node.target is getattr(torch, name, None)


def _rewrite_reductions(gm: fx.GraphModule) -> None:
    """``x.sum(3, keepdim=True).sum(2, keepdim=True)`` -> ``x.sum((2, 3), keepdim=True)`` (one pass; on channels-last
    tensors the W-then-H order is a strided reduction ~5x slower), and the local variance over
    ``unfold``-ed windows -> :func:`window_variance`. Both change only the float summation order."""
    for node in list(gm.graph.nodes):
        if _method_or_function(node, "sum") and len(node.args) == 2 and node.kwargs == {"keepdim": True}:
            src = node.args[0]
            if (isinstance(src, fx.Node) and _method_or_function(src, "sum") and len(src.args) == 2
                    and src.kwargs == {"keepdim": True} and len(src.users) == 1
                    and {src.args[1], node.args[1]} == {2, 3}):
                node.args = (src.args[0], (2, 3))
                gm.graph.erase_node(src)
        elif _method_or_function(node, "var"):
            _rewrite_window_variance(gm, node)
    gm.graph.eliminate_dead_code()
    gm.graph.lint()


def _rewrite_window_variance(gm: fx.GraphModule, node: fx.Node) -> None:
    kwargs = dict(node.kwargs)
    args = list(node.args)
    dims = kwargs.pop("dim", args[1] if len(args) > 1 else None)
    unbiased = kwargs.pop("unbiased", args[2] if len(args) > 2 else True)
    if kwargs.pop("keepdim", False) or kwargs or len(args) > 3 or not isinstance(unbiased, bool):
        return
    if not isinstance(dims, (tuple, list)) or sorted(dims) != [-2, -1]:
        return
    u2 = args[0]
    if not (isinstance(u2, fx.Node) and u2.op == "call_method" and u2.target == "unfold" and len(u2.users) == 1):
        return
    u1 = u2.args[0]
    if not (isinstance(u1, fx.Node) and u1.op == "call_method" and u1.target == "unfold" and len(u1.users) == 1):
        return
    (_, d1, k1, s1), (_, d2, k2, s2) = u1.args, u2.args
    if not (d1 == 2 and d2 == 3 and k1 == k2 and s1 == s2 and all(isinstance(v, int) for v in (k1, s1))):
        return
    with gm.graph.inserting_before(node):
        new = gm.graph.call_function(window_variance, (u1.args[0], k1, s1, unbiased))
    node.replace_all_uses_with(new)
    gm.graph.erase_node(node)
    gm.graph.erase_node(u2)
    gm.graph.erase_node(u1)


def _cat_inputs(node: Any) -> list[fx.Node] | None:
    """The inputs of ``torch.cat(inputs, dim=1)`` (channel concatenation), else None."""
    if not (isinstance(node, fx.Node) and node.op == "call_function" and node.target is torch.cat):
        return None
    tensors = node.args[0] if node.args else node.kwargs.get("tensors")
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    if dim != 1 or not isinstance(tensors, (list, tuple)) or not all(isinstance(t, fx.Node) for t in tensors):
        return None
    return list(tensors)


def _split_concat_convs(gm: fx.GraphModule) -> None:
    """``conv(cat([a_1 .. a_n], dim=1))`` -> ``conv_1(a_1) + ... + conv_n(a_n)`` with the weight sliced by input
    channels, accumulated in place by oneDNN's add post-op.

    Convolution is linear in its input channels (zero or reflect padding act per channel), so the sum equals the
    conv of the concatenation up to float summation order. A channel concatenation of channels-last tensors is a
    strided copy that costs more than the partial convs' extra accumulator traffic, and the concatenated tensor
    (224 channels at the end of MDRN) is never allocated.
    """
    for node in list(gm.graph.nodes):
        conv = _conv_of(gm, node)
        if conv is None or conv.groups != 1 or conv.binary or conv.unary or len(node.args) != 1:
            continue
        cat = node.args[0]
        parts = _cat_inputs(cat)
        if parts is None or len(parts) < 2 or len(cat.users) != 1:
            continue
        widths = [(_meta_shape(p) or (0, 0))[1] for p in parts]
        if any(w <= 0 for w in widths) or sum(widths) != conv.weight.shape[1]:
            continue
        acc = None
        offset = 0
        with gm.graph.inserting_before(node):
            for i, (part, width) in enumerate(zip(parts, widths, strict=True)):
                piece = FusedConv2d(conv.weight[:, offset:offset + width], conv.bias if i == 0 else None,
                                    stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=1,
                                    reflect_pad=conv.reflect_pad)
                offset += width
                name = _new_name(gm, "fconv")
                gm.add_submodule(name, piece)
                if acc is None:
                    acc = gm.graph.call_module(name, (part,))
                else:
                    piece.binary, piece.inplace = "add", True  # the accumulator is a fresh, private tensor
                    acc = gm.graph.call_module(name, (part, acc))
                acc.meta = dict(node.meta)
        node.replace_all_uses_with(acc)
        gm.graph.erase_node(node)
        gm.graph.erase_node(cat)
    gm.graph.lint()


def _chunk_widths(node: fx.Node, channels: int) -> list[int] | None:
    """Channel widths of ``x.chunk(n, dim=1)`` / ``x.split(sizes, dim=1)``, else None."""
    if node.op != "call_method" or node.target not in ("chunk", "split") or len(node.args) < 2:
        return None
    dim = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)
    if dim != 1 or set(node.kwargs) - {"dim"}:
        return None
    arg = node.args[1]
    if node.target == "chunk":
        if not isinstance(arg, int) or arg < 1 or channels % arg:
            return None  # uneven chunks: not worth the special cases
        return [channels // arg] * arg
    if isinstance(arg, int):
        return [arg] * (channels // arg) + ([channels % arg] if channels % arg else [])
    return list(arg) if isinstance(arg, (list, tuple)) and sum(arg) == channels else None


def _slice_conv(conv: FusedConv2d, lo: int, hi: int, *, depthwise_input: bool) -> FusedConv2d:
    """The output channels ``lo:hi`` of ``conv`` as a conv of their own (for a depth-wise conv, of input channels
    ``lo:hi`` too)."""
    groups = hi - lo if depthwise_input else conv.groups
    return FusedConv2d(conv.weight[lo:hi], None if conv.bias is None else conv.bias[lo:hi], stride=conv.stride,
                       padding=conv.padding, dilation=conv.dilation, groups=groups, reflect_pad=conv.reflect_pad)


def _split_chunked_convs(gm: fx.GraphModule) -> None:
    """``conv(x).chunk(n, dim=1)`` -> n convs, one per chunk (each output channel is computed exactly as before).

    A channel slice of a channels-last tensor is a strided view that every later element-wise op walks slowly (and
    that oneDNN cannot fuse into); separate convs give contiguous outputs and free activation fusion. For a
    depth-wise conv (Restormer's gated FFN: 1x1 expand -> depth-wise 3x3 -> chunk) the split goes through to the
    1x1 conv before it, which is split by output channels too.
    """
    for node in list(gm.graph.nodes):
        conv = _conv_of(gm, node)
        if conv is None or conv.binary or conv.unary or len(node.args) != 1 or len(node.users) != 1:
            continue
        chunk = next(iter(node.users))
        widths = _chunk_widths(chunk, conv.out_channels)
        if widths is None or not all(u.op == "call_function" and u.target is operator.getitem
                                     and isinstance(u.args[1], int) for u in chunk.users):
            continue
        src = node.args[0]
        inputs: list[Any]
        if conv.is_depthwise():
            feeder = _conv_of(gm, src)
            if feeder is None or feeder.groups != 1 or feeder.binary or feeder.unary or len(src.users) != 1:
                continue  # a depth-wise split would need channel slices of an arbitrary input
            inputs = []
            with gm.graph.inserting_before(node):
                lo = 0
                for width in widths:
                    piece = _slice_conv(feeder, lo, lo + width, depthwise_input=False)
                    name = _new_name(gm, "fconv")
                    gm.add_submodule(name, piece)
                    new = gm.graph.call_module(name, src.args)
                    new.meta = _sliced_meta(src, lo, lo + width)
                    inputs.append(new)
                    lo += width
        else:
            inputs = [src] * len(widths)
        outputs = []
        with gm.graph.inserting_before(node):
            lo = 0
            for width, inp in zip(widths, inputs, strict=True):
                piece = _slice_conv(conv, lo, lo + width, depthwise_input=conv.is_depthwise())
                name = _new_name(gm, "fconv")
                gm.add_submodule(name, piece)
                new = gm.graph.call_module(name, (inp,))
                new.meta = _sliced_meta(node, lo, lo + width)
                outputs.append(new)
                lo += width
        for user in list(chunk.users):
            user.replace_all_uses_with(outputs[user.args[1]])
            gm.graph.erase_node(user)
        gm.graph.erase_node(chunk)
        gm.graph.erase_node(node)
        if conv.is_depthwise():
            gm.graph.erase_node(src)
    gm.graph.lint()


def _sliced_meta(node: fx.Node, lo: int, hi: int) -> dict[str, Any]:
    """The node's shape metadata with channels ``lo:hi`` (enough for the later passes: shape and dtype)."""
    from torch.fx.passes.shape_prop import TensorMetadata

    meta = dict(node.meta)
    tm = meta.get("tensor_meta")
    if isinstance(tm, TensorMetadata):
        shape = torch.Size((tm.shape[0], hi - lo, *tm.shape[2:]))
        meta["tensor_meta"] = tm._replace(shape=shape)
    return meta


def _propagate_shapes(gm: fx.GraphModule, example: torch.Tensor) -> None:
    gm.recompile()
    with torch.inference_mode():
        ShapeProp(gm).propagate(example.contiguous(memory_format=torch.channels_last))


# In-place ops return their first argument: fresh exactly when that argument is.
_INPLACE_METHODS = {"add_", "mul_", "sub_", "div_", "pow_"}
_INPLACE_FUNCTIONS = {torch.ops.aten.gelu_, torch.relu_, torch.sigmoid_}
# Producers that always return a fresh tensor (never a view of an input): safe to overwrite once dead.
_FRESH_FUNCTIONS = {
    operator.add, operator.sub, operator.mul, operator.truediv, torch.add, torch.sub, torch.mul, torch.div,
    torch.cat, F.interpolate, F.gelu, torch._C._nn.gelu, torch.sigmoid, F.silu, F.leaky_relu, torch.relu, F.relu,
    F.max_pool2d, pixel_shuffle_nchw, _channel_layer_norm_1e6, F.layer_norm, window_variance,
}


def _is_fresh(gm: fx.GraphModule, node: Any) -> bool:
    if not isinstance(node, fx.Node):
        return False
    if _conv_of(gm, node) is not None:
        return True
    if node.op == "call_function" and node.target in _FRESH_FUNCTIONS:
        return not (node.target in (F.silu, F.leaky_relu) and node.kwargs.get("inplace", False))
    if node.op == "call_function" and node.target in _INPLACE_FUNCTIONS:
        return _is_fresh(gm, node.args[0])
    if node.op == "call_method" and node.target in _INPLACE_METHODS:
        return _is_fresh(gm, node.args[0])
    return False


def _dead_after(node: fx.Node, user: fx.Node) -> bool:
    """True when ``user`` is the last reader of ``node`` in graph order."""
    order = {n: i for i, n in enumerate(user.graph.nodes)}
    return all(order[u] <= order[user] for u in node.users)


def _fuse_conv_add(gm: fx.GraphModule) -> None:
    """``conv(x) + other`` -> one oneDNN conv with a binary-add post-op (in place into ``other`` when it is dead)."""
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in _ADD or node.kwargs or len(node.args) != 2:
            continue
        for conv_node, other in (node.args, node.args[::-1]):
            conv = _conv_of(gm, conv_node)
            if conv is None or conv.binary or conv.unary or len(conv_node.users) != 1 or len(conv_node.args) != 1:
                continue
            if not isinstance(other, fx.Node) or other.op == "get_attr":
                continue
            shape = _meta_shape(conv_node)
            if shape is None or shape != _meta_shape(other) or _meta_dtype(conv_node) != _meta_dtype(other):
                continue
            conv.binary = "add"
            x = conv_node.args[0]
            # In place only into a dead temporary that the conv's input cannot be a view of: the input is itself
            # a fresh tensor, or the reflect pad copies it first.
            conv.inplace = bool(_is_fresh(gm, other) and _dead_after(other, node) and other is not x
                                and (_is_fresh(gm, x) or conv.reflect_pad is not None))
            node.prepend(conv_node)  # ``other`` may be computed after the conv in the original order
            conv_node.args = (x, other)
            node.replace_all_uses_with(conv_node)
            gm.graph.erase_node(node)
            break
    gm.graph.lint()


def _fuse_conv_unary(gm: fx.GraphModule, *, fuse_gelu: bool = True) -> None:
    """``act(conv(...))`` -> one oneDNN conv with the activation as post-op (GELU: oneDNN's erf form)."""
    for node in list(gm.graph.nodes):
        unary = _unary_of(node) if node.op == "call_function" else None
        if unary is None:
            continue
        src = node.args[0]
        conv = _conv_of(gm, src)
        if conv is None or conv.unary or len(src.users) != 1:
            continue
        if unary[0] == "gelu" and not fuse_gelu:
            continue
        conv.unary, conv.unary_scalars = unary
        node.replace_all_uses_with(src)
        gm.graph.erase_node(node)
    gm.graph.lint()


def _compose_pointwise(first: FusedConv2d, second: FusedConv2d) -> FusedConv2d:
    """``second(first(x))`` as one convolution when ``second`` is a plain 1x1 conv and ``first`` has no post-ops:
    weight ``W2 @ W1`` and bias ``W2 @ b1 + b2``, computed in float64. ``second``'s own post-ops are kept."""
    w2 = second.weight.double()[:, :, 0, 0]
    weight = torch.einsum("om,mikl->oikl", w2, first.weight.double())
    bias = torch.zeros(second.out_channels, dtype=torch.float64, device=w2.device)
    if first.bias is not None:
        bias += w2 @ first.bias.double()
    if second.bias is not None:
        bias += second.bias.double()
    dtype = first.weight.dtype
    return FusedConv2d(weight.to(dtype), bias.to(dtype), stride=first.stride, padding=first.padding,
                       dilation=first.dilation, groups=1, reflect_pad=first.reflect_pad).with_post_ops_of(second)


def _fuse_conv_mul(gm: fx.GraphModule) -> None:
    """``conv(x) * gate`` -> one oneDNN conv with a binary-mul post-op: the product is computed as the conv writes
    its output, so the conv's own output is never stored (RLFN's, LSANet's ESA: ``c5(s) * sigmoid(...)``).

    The gate must be ready before the conv runs. In the ESA it is computed from the conv's output itself, through
    a 1x1 conv (``conv1``); that 1x1 conv is composed with the first one (``conv1(c5(s)) = conv1'(s)``, an identity
    of linear maps) so that the gate reads ``s`` directly. Composition is only done where it costs no MACs: the
    first conv is 1x1 and has no more input than output channels.
    """
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in _MUL or node.kwargs or len(node.args) != 2:
            continue
        for y, gate in (node.args, node.args[::-1]):
            conv = _conv_of(gm, y)
            if (conv is None or conv.binary or conv.unary or len(y.args) != 1 or not isinstance(gate, fx.Node)
                    or gate is y or _meta_shape(y) is None or _meta_shape(y) != _meta_shape(gate)
                    or _meta_dtype(y) != _meta_dtype(gate)):
                continue
            shape_reads = [u for u in y.users if u.op == "call_function" and u.target is getattr
                           and u.args[1:] == ("shape",) and all(_spatial_index(g) for g in u.users)]
            others = [u for u in y.users if u is not node and u not in shape_reads]
            second = [_conv_of(gm, u) for u in others]
            composable = conv.is_pointwise() and conv.weight.shape[1] <= conv.out_channels
            if shape_reads and not conv.is_pointwise():
                continue
            if others and not composable:
                continue
            if any(c is None or not c.is_pointwise() or u.args[0] is not y or y in u.args[1:]
                   for c, u in zip(second, others, strict=True)):
                continue
            src = y.args[0]
            for u in shape_reads:  # a 1x1 conv keeps the spatial size: read it from its input
                u.args = (src, *u.args[1:])
            for c, u in zip(second, others, strict=True):
                name = _new_name(gm, "fconv")
                gm.add_submodule(name, _compose_pointwise(conv, c))
                u.target = name
                u.args = (src, *u.args[1:])
            conv.binary, conv.inplace = "mul", False  # oneDNN's in-place form only adds
            node.prepend(y)  # the gate is computed before the conv now
            y.args = (src, gate)
            node.replace_all_uses_with(y)
            gm.graph.erase_node(node)
            break
    gm.graph.lint()


_INPLACE_UNARY = {"gelu": torch.ops.aten.gelu_, "relu": torch.relu_, "sigmoid": torch.sigmoid_}


def _inplace_elementwise(gm: fx.GraphModule) -> None:
    """Run activations and ``a + b`` / ``a * b`` in place on ``a`` when ``a`` is a dead temporary of full shape."""
    for node in list(gm.graph.nodes):
        if node.op == "call_method" and node.target == "pow" and len(node.args) == 2 and not node.kwargs:
            a, b = node.args
            if _is_fresh(gm, a) and len(a.users) == 1 and _is_number(b):
                node.target = "pow_"
            continue
        if node.op != "call_function":
            continue
        unary = _unary_of(node)
        if unary is not None and unary[0] in _INPLACE_UNARY:
            src = node.args[0]
            if _is_fresh(gm, src) and len(src.users) == 1:
                node.target, node.args, node.kwargs = _INPLACE_UNARY[unary[0]], (src,), {}
            continue
        if node.target in (operator.sub, torch.sub, operator.truediv, torch.div, operator.pow, torch.pow) and (
                not node.kwargs and len(node.args) == 2):
            a, b = node.args
            if (_is_fresh(gm, a) and len(a.users) == 1 and a is not b and _meta_shape(a) is not None
                    and _meta_shape(a) == _meta_shape(node) and _meta_dtype(a) == _meta_dtype(node)
                    and (isinstance(b, fx.Node) or _is_number(b))):
                node.op = "call_method"
                node.target = {operator.sub: "sub_", torch.sub: "sub_", operator.truediv: "div_", torch.div: "div_",
                               operator.pow: "pow_", torch.pow: "pow_"}[node.target]
            continue
        if node.target in _ADD + _MUL and not node.kwargs and len(node.args) == 2:
            for a, b in (node.args, node.args[::-1]):
                if not (_is_fresh(gm, a) and len(a.users) == 1 and a is not b):
                    continue
                if _meta_shape(a) is None or _meta_shape(a) != _meta_shape(node) or _meta_dtype(a) != _meta_dtype(node):
                    continue
                if not (isinstance(b, fx.Node) or _is_number(b)):
                    continue
                node.op = "call_method"
                node.target = "add_" if node.target in _ADD else "mul_"
                node.args = (a, b)
                break
    gm.graph.lint()


# Channel padding (_pad_channels): oneDNN's 3x3 kernels block output channels by 16 and run a masked tail otherwise.
# RLFN's 46-channel maps: a 48 -> 46 conv took 8.3 ms against 7.2 ms for 48 -> 48 (LR 256x256, 2 threads,
# benchmarks/RESULTS.md), so widening by 2 zero channels pays; widening 28 -> 32 or 36 -> 48 did not.
CHANNEL_BLOCK = 16
MAX_PADDING_OVERHEAD = 1 / 16
# Ops that act on each channel alone and keep zero-padded inputs finite: padded channels may hold any finite value
# (sigmoid(0) = 0.5), since every conv that reads them has zero weights there.
_PER_CHANNEL_METHODS = {"add", "add_", "mul", "mul_", "sub", "sub_"}
_PER_CHANNEL_FUNCTIONS = set(_ADD) | set(_MUL) | {operator.sub, torch.sub, F.interpolate, F.max_pool2d,
                                                   F.avg_pool2d} | set(_UNARY_FUNCTIONS) | _INPLACE_FUNCTIONS


def _padded_width(channels: int) -> int | None:
    padded = -(-channels // CHANNEL_BLOCK) * CHANNEL_BLOCK
    if padded == channels or (padded - channels) > MAX_PADDING_OVERHEAD * channels:
        return None
    return padded


def _pad_channels(gm: fx.GraphModule) -> None:
    """Widen feature maps whose channel count is just under a multiple of 16 with zero channels (RLFN: 46 -> 48).

    The maps tied together by residual adds, products, activations and pooling form one group that is widened as a
    whole: convs producing a member get zero output channels (zero weights and bias), convs reading a member get
    zero weights for the new input channels, so every original channel is computed from the same terms (only the
    float summation order of the kernel may change) and the extra channels never reach the output. A group is left
    alone when any member is produced or read by anything else (the graph output, a pixel shuffle, a channel
    concatenation or reduction, a depth-wise conv, an opaque module).
    """
    parent: dict[fx.Node, fx.Node] = {}

    def find(n: fx.Node) -> fx.Node:
        while parent.setdefault(n, n) is not n:
            n = parent[n]
        return n

    def union(a: fx.Node, b: fx.Node) -> None:
        parent[find(a)] = find(b)

    candidates = [n for n in gm.graph.nodes
                  if (shape := _meta_shape(n)) is not None and len(shape) == 4 and _padded_width(shape[1])]
    members = set(candidates)
    for n in candidates:
        find(n)
        conv = _conv_of(gm, n)
        if conv is not None:
            if len(n.args) > 1 and isinstance(n.args[1], fx.Node):
                union(n, n.args[1])
        elif _is_per_channel(n):
            for a in n.all_input_nodes:
                if a in members:
                    union(n, a)
    bad: set[fx.Node] = set()
    for n in candidates:
        conv = _conv_of(gm, n)
        ok = conv.groups == 1 if conv is not None else _is_per_channel(n)
        for u in n.users:
            user_conv = _conv_of(gm, u)
            if user_conv is not None:
                ok = ok and (user_conv.groups == 1 if u.args[0] is n else u in members)
            elif u.op == "call_function" and u.target is getattr and u.args[1:] == ("shape",):
                ok = ok and all(_spatial_index(g) for g in u.users)
            else:
                ok = ok and u in members and _is_per_channel(u)
        if not ok:
            bad.add(find(n))
    # A group only joins maps of one shape (or per-channel resamplings of it), so each member widens alike.
    widened = {n: _padded_width(_meta_shape(n)[1]) for n in candidates if find(n) not in bad}
    if not widened:
        return
    for node in gm.graph.nodes:
        conv = _conv_of(gm, node)
        if conv is None:
            continue
        out_w = widened.get(node, conv.out_channels)
        in_w = widened.get(node.args[0], conv.weight.shape[1]) if conv.groups == 1 else conv.weight.shape[1]
        if (out_w, in_w) == tuple(conv.weight.shape[:2]):
            continue
        weight = conv.weight.new_zeros((out_w, in_w, *conv.weight.shape[2:]))
        weight[: conv.out_channels, : conv.weight.shape[1]] = conv.weight
        bias = None
        if conv.bias is not None:
            bias = conv.bias.new_zeros(out_w)
            bias[: conv.out_channels] = conv.bias
        new = FusedConv2d(weight, bias, stride=conv.stride, padding=conv.padding, dilation=conv.dilation,
                          groups=1, reflect_pad=conv.reflect_pad).with_post_ops_of(conv)
        name = _new_name(gm, "fconv")
        gm.add_submodule(name, new)
        node.target = name
    for n, width in widened.items():
        tm = n.meta["tensor_meta"]
        n.meta["tensor_meta"] = tm._replace(shape=torch.Size((tm.shape[0], width, *tm.shape[2:])))
    gm.graph.lint()


def _is_per_channel(n: fx.Node) -> bool:
    if n.op == "call_method":
        return n.target in _PER_CHANNEL_METHODS
    return n.op == "call_function" and n.target in _PER_CHANNEL_FUNCTIONS


def _spatial_index(n: fx.Node) -> bool:
    """``shape[2:]``, ``shape[2]`` or ``shape[3]``: a read of the spatial size only."""
    if n.op != "call_function" or n.target is not operator.getitem:
        return False
    index = n.args[1]
    if isinstance(index, slice):
        return isinstance(index.start, int) and index.start >= 2 and index.step in (None, 1)
    return index in (2, 3, -1, -2)


def _finish(gm: fx.GraphModule) -> None:
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()


def _pack_convs(gm: fx.GraphModule, example: torch.Tensor) -> None:
    """Pre-pack every conv weight for the input shape it sees on the example (from the shape propagation)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for node in gm.graph.nodes:
        conv = _conv_of(gm, node)
        if conv is not None:
            shapes[node.target] = _meta_shape(node.args[0]) or tuple(example.shape)
    for name, shape in shapes.items():
        conv = gm.get_submodule(name)
        if conv.reflect_pad is not None:
            left, right, top, bottom = conv.reflect_pad
            shape = (*shape[:2], shape[2] + top + bottom, shape[3] + left + right)
        conv.pack(shape)


# ---- small utilities -------------------------------------------------------------------------------------------


def _fuse_esa_native(gm: fx.GraphModule) -> None:
    """Pass 10: the ESA's glue through effsr's native kernels (:mod:`effsr.deploy.native`).

    Tail: ``c5(s) * sigmoid(conv4(conv_f(c1) + interpolate(c3, size=s.shape[2:], bilinear)))``, as the earlier
    passes leave it (conv_f with an add post-op, conv4 with a sigmoid, c5 with a mul post-op), becomes one
    :class:`~effsr.deploy.native.EsaTail`. Head: ``s = a.add_(x)`` read by a 1x1 conv to 16 channels becomes one
    :class:`~effsr.deploy.native.EsaHead` that returns ``s`` and that conv's output. Both only where the widths have
    a kernel; both fall back to the same PyTorch operators at run time on inputs the kernel does not take.
    """
    graph = gm.graph
    for node in list(graph.nodes):
        c5 = _conv_of(gm, node)
        if c5 is None or not (c5.is_pointwise() and c5.binary == "mul" and c5.unary is None and len(node.args) == 2):
            continue
        s, gate = node.args
        conv4 = _conv_of(gm, gate)
        if conv4 is None or not (conv4.is_pointwise() and conv4.binary is None and conv4.unary == "sigmoid"
                                 and len(gate.users) == 1 and len(gate.args) == 1):
            continue
        t = gate.args[0]
        conv_f = _conv_of(gm, t)
        if conv_f is None or not (conv_f.is_pointwise() and conv_f.binary == "add" and conv_f.unary is None
                                  and len(t.users) == 1 and len(t.args) == 2):
            continue
        c1, up = t.args
        if not (isinstance(up, fx.Node) and up.op == "call_function" and up.target is F.interpolate
                and len(up.users) == 1 and len(up.args) == 1 and _interpolates_to_size_of(up, s)):
            continue
        c, f = c5.out_channels, conv_f.out_channels
        if not (c in _native.CHANNELS and f == _native.GATE_CHANNELS and tuple(c5.weight.shape[:2]) == (c, c)
                and tuple(conv4.weight.shape[:2]) == (c, f) and tuple(conv_f.weight.shape[:2]) == (f, f)):
            continue
        name = _new_name(gm, "esa_tail")
        gm.add_submodule(name, _native.EsaTail(conv_f, conv4, c5))
        with graph.inserting_before(node):
            fused = graph.call_module(name, (s, c1, up.args[0]))
        fused.meta = dict(node.meta)
        node.replace_all_uses_with(fused)
        for dead in (node, gate, t, up):
            graph.erase_node(dead)
        _fuse_esa_low_branch(gm, fused)
    for node in list(graph.nodes):
        if not (node.op == "call_method" and node.target == "add_" and len(node.args) == 2 and not node.kwargs
                and all(isinstance(a, fx.Node) for a in node.args)):
            continue
        readers = [u for u in node.users if (conv := _conv_of(gm, u)) is not None and conv.is_pointwise()
                   and conv.binary is None and conv.unary is None and len(u.args) == 1
                   and conv.out_channels == _native.GATE_CHANNELS and conv.weight.shape[1] in _native.CHANNELS]
        if len(readers) != 1:
            continue
        conv1_node = readers[0]
        name = _new_name(gm, "esa_head")
        gm.add_submodule(name, _native.EsaHead(gm.get_submodule(conv1_node.target)))
        with graph.inserting_before(node):
            head = graph.call_module(name, node.args)
            s = graph.call_function(operator.getitem, (head, 0))
            c1 = graph.call_function(operator.getitem, (head, 1))
        s.meta, c1.meta = dict(node.meta), dict(conv1_node.meta)
        conv1_node.replace_all_uses_with(c1)
        graph.erase_node(conv1_node)
        node.replace_all_uses_with(s)
        graph.erase_node(node)
    for node in graph.nodes:
        if node.op == "call_function" and node.target is pixel_shuffle_nchw:
            node.target = _native.pixel_shuffle_nchw
    graph.lint()
    _finish(gm)


def _plain_conv3x3(conv: FusedConv2d | None, stride: int, padding: int) -> bool:
    """A 3x3 conv, 16 -> 16 channels, one group, zero padding ``padding``, stride ``stride``, no post-ops."""
    return conv is not None and (
        tuple(conv.weight.shape) == (_native.GATE_CHANNELS, _native.GATE_CHANNELS, 3, 3)
        and conv.stride == [stride, stride] and conv.padding == [padding, padding] and conv.dilation == [1, 1]
        and conv.groups == 1 and conv.reflect_pad is None and conv.binary is None and conv.unary is None)


def _fuse_esa_low_branch(gm: fx.GraphModule, tail: fx.Node) -> None:
    """The tail's ``c3 = conv3(max_pool2d(conv2(c1)))`` (RLFN's ESA) -> one :class:`~effsr.deploy.native.EsaLow`."""
    _, c1, c3 = tail.args
    conv3 = _conv_of(gm, c3)
    if not (_plain_conv3x3(conv3, 1, 1) and len(c3.users) == 1 and len(c3.args) == 1):
        return
    pool = c3.args[0]
    if not (isinstance(pool, fx.Node) and pool.op == "call_function" and pool.target is F.max_pool2d
            and len(pool.users) == 1):
        return
    args = dict(zip(("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
                    pool.args, strict=False))
    args.update(pool.kwargs)
    square = {k: (v[0] if isinstance(v, (tuple, list)) and len(set(v)) == 1 else v) for k, v in args.items()}
    kernel = square.get("kernel_size")
    stride = square.get("stride") or kernel
    if not (isinstance(kernel, int) and isinstance(stride, int) and square.get("padding", 0) == 0
            and square.get("dilation", 1) == 1 and not square.get("ceil_mode", False)
            and not square.get("return_indices", False)):
        return
    down = square["input"]
    conv2 = _conv_of(gm, down)
    if not (conv2 is not None and len(down.users) == 1 and len(down.args) == 1 and down.args[0] is c1
            and conv2.stride[0] == conv2.stride[1] and _plain_conv3x3(conv2, conv2.stride[0], 0)):
        return
    name = _new_name(gm, "esa_low")
    gm.add_submodule(name, _native.EsaLow(conv2, conv3, kernel, stride))
    graph = gm.graph
    with graph.inserting_before(c3):
        fused = graph.call_module(name, (c1,))
    fused.meta = dict(c3.meta)
    c3.replace_all_uses_with(fused)
    for dead in (c3, pool, down):
        graph.erase_node(dead)


def _interpolates_to_size_of(up: fx.Node, ref: Any) -> bool:
    """``F.interpolate(x, size=ref.shape[2:], mode="bilinear", align_corners=False)``, as traced."""
    kw = up.kwargs
    if not (kw.get("mode") == "bilinear" and kw.get("align_corners") is False and kw.get("scale_factor") is None
            and not kw.get("antialias") and not kw.get("recompute_scale_factor")):
        return False
    size = kw.get("size")
    if not (isinstance(size, fx.Node) and size.op == "call_function" and size.target is operator.getitem
            and size.args[1] == slice(2, None)):
        return False
    shape = size.args[0]
    if isinstance(shape, fx.Node) and shape.op == "call_function" and shape.target is getattr:
        return shape.args == (ref, "shape")
    return isinstance(shape, fx.Node) and shape.op == "call_method" and shape.target == "size" and (
        shape.args == (ref,))


def _cast_plain_tensors(model: nn.Module, device: torch.device, dtype: torch.dtype) -> None:
    """Move plain tensor attributes (the RGB mean is deliberately not a buffer, pitfall 5) with the module."""
    for mod in model.modules():
        for name, value in list(vars(mod).items()):
            if isinstance(value, torch.Tensor) and not isinstance(value, nn.Parameter) and not name.startswith("_"):
                new = value.to(device=device, dtype=dtype if value.is_floating_point() else value.dtype)
                setattr(mod, name, new)


def _input_channels(model: nn.Module) -> int:
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            return int(mod.in_channels)
    return 3


# --------------------------------------------------------------------------------------------------------------
# onnxruntime
# --------------------------------------------------------------------------------------------------------------


class OnnxRuntimeEngine(Engine):
    """The model exported to ONNX (:mod:`effsr.deploy.onnx`) and run by onnxruntime with all graph optimizations.

    Architectures whose dynamic export reproduces them at a second size are exported once with dynamic batch and
    H/W; the others (AGDN: its attention windows are laid out from the input size at export time; SAFMN++: its
    adaptive pooling bins) are exported again for every new input size, and the sessions are cached by shape.
    """

    backend = "onnxruntime"

    def __init__(self, model: nn.Module, *, device: torch.device, threads: int | None = None,
                 example_size: tuple[int, int] = (64, 64)) -> None:
        super().__init__(model, device=device, dtype=torch.float32)
        from . import onnx as onnx_export

        self._onnx = onnx_export
        self.model = onnx_export._deploy_copy(model)
        self.threads = threads or torch.get_num_threads()
        self._sessions: dict[tuple[int, ...] | None, Any] = {}
        h, w = (max(int(s), self.min_size) for s in example_size)
        data = onnx_export.dynamic_onnx_bytes(self.model, (h, w))
        self.dynamic = data is not None
        if data is not None:
            self._sessions[None] = onnx_export.make_session(data, threads=self.threads, device=device)
        else:
            self._session_for((1, _input_channels(model), h, w))

    def _session_for(self, shape: tuple[int, ...]) -> Any:
        key = None if self.dynamic else tuple(shape)
        if key not in self._sessions:
            data = self._onnx.export_onnx_bytes(self.model, example_shape=shape, dynamic=False)
            if data is None:
                raise RuntimeError(f"ONNX export of {type(self.model).__name__} at {tuple(shape)} failed")
            self._sessions[key] = self._onnx.make_session(data, threads=self.threads, device=self.device)
        return self._sessions[key]

    def run(self, x: torch.Tensor) -> torch.Tensor:
        session = self._session_for(tuple(x.shape))
        name = session.get_inputs()[0].name
        (y,) = session.run(None, {name: x.detach().cpu().float().contiguous().numpy()})
        return torch.from_numpy(y).to(self.device)
