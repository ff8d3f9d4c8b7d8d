"""effsr's native CPU kernels: the ESA block's memory-bound glue and the pixel shuffle, hand-vectorized.

After the fast engine's oneDNN fusions, what separates RLFN from its arithmetic floor is the glue around its 3x3
convolutions: PyTorch's oneDNN binding fuses only ReLU after a binary post-op, so the residual add, the ESA's 1x1
convs, its small low-resolution branch and the gate ``c5(s) * sigmoid(...)`` take nine separate passes per block
(benchmarks/RESULTS.md, "native kernels"). ``kernels/esa.cpp`` does the same arithmetic in three:

* :class:`EsaHead`: ``s = a + x`` (in place into ``a``) and ``c1 = conv1(s)`` (a 1x1 conv, C -> 16);
* :class:`EsaLow`: ``conv3(max_pool2d(conv2(c1)))`` (3x3 stride-2 conv, max-pool, 3x3 conv on 16 channels);
* :class:`EsaTail`: ``c5(s) * sigmoid(conv4(conv_f(c1) + bilinear(c3, size of s)))``;

and :func:`pixel_shuffle_nchw` writes the channels-last conv output as NCHW in one pass.

The source is compiled on first use with the system C++ compiler (``$CXX``, else ``c++`` / ``g++``; about a second,
no PyTorch headers) for this CPU (``-march=native``) and cached under ``$EFFSR_KERNEL_CACHE`` (default
``~/.cache/effsr/kernels``), keyed by the source, the compiler and the CPU flags. It uses OpenMP and shares
PyTorch's libgomp (same soname, loaded once), so it runs on PyTorch's threads (``torch.get_num_threads()``).
Kernels exist for x86-64 CPUs with AVX-512F (16 lanes) or AVX2 + FMA (8 lanes), for maps of 16, 32, 48 or 64
channels and a 16-channel ESA branch (RLFN's 48 after widening, its ``f = 16``).

Everything here is optional: without a compiler, on other CPUs, with ``EFFSR_NATIVE=0``, or when the kernels fail
their self-check against PyTorch's operators on load, :func:`library` returns ``None`` (the reason is logged) and
the engine keeps its oneDNN graph. At run time each module checks its inputs (non-empty float32 CPU maps, dense
channels-last, expected widths) and otherwise computes the same result with the PyTorch operators it replaced.
Outputs equal those operators within float rounding (summation order, FMA, Cephes' expf); copies are bit-exact
(tests/test_native.py: 1e-5 on random maps, measured ~2e-6).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..files import atomic_path
from ..runtime import cpu_flags
from .ops import pixel_shuffle_nchw as plain

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("kernels") / "esa.cpp"
ABI = 2
CHANNELS = (16, 32, 48, 64)  # map widths with a compiled kernel (esa.cpp, EFFSR_DISPATCH)
GATE_CHANNELS = 16
# Self-check on load: the kernels against PyTorch's operators on a small random problem. Float rounding of 16-64
# term dot products and a sigmoid stays near 1e-6 on values of order 1; 1e-5 leaves room and still catches any
# indexing or layout error (those give errors of order 1).
SELF_CHECK_TOLERANCE = 1e-5
NATIVE_ARCH = "-march=native"
# x86-64-v3 = AVX2 + FMA (+ BMI, F16C...), the psABI level of CPUs since 2013-2015: builds the 8-lane kernels on any
# host; the tests use it to check those kernels on AVX-512 machines too.
AVX2_ARCH = "-march=x86-64-v3"
_COMPILE_FLAGS = ("-O3", "-fopenmp", "-shared", "-fPIC", "-std=c++17")
_COMPILE_TIMEOUT_S = 300

_state: dict[str, object] = {}


def cache_dir() -> Path:
    """Where compiled kernels live: ``$EFFSR_KERNEL_CACHE``, else ``~/.cache/effsr/kernels`` (beside the weights
    cache of :mod:`effsr.weights`)."""
    env = os.environ.get("EFFSR_KERNEL_CACHE")
    return Path(env) if env else Path(os.path.expanduser("~")) / ".cache" / "effsr" / "kernels"


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def cpu_lanes() -> int:
    """Float lanes of the kernels this CPU can run: 16 (AVX-512F), 8 (AVX2 + FMA) or 0 (none).

    Read from the hardware, not from ``torch.backends.cpu.get_cpu_capability()``: that one follows
    ``ATEN_CPU_CAPABILITY``, which the test suite caps at AVX2 for ATen's own kernels (tests/conftest.py).
    """
    flags = set(cpu_flags().split())
    if "avx512f" in flags:
        return 16
    return 8 if {"avx2", "fma"} <= flags else 0


def _build(cxx: str, arch: str = NATIVE_ARCH) -> Path:
    """Compile ``SOURCE`` for ``arch`` (or reuse the cached build) and return the shared library's path."""
    source = SOURCE.read_bytes()
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60).stdout
    flags = (*_COMPILE_FLAGS, arch)
    key = hashlib.sha256(b"\0".join([source, version.encode(), " ".join(flags).encode(), cpu_flags().encode(),
                                     platform.machine().encode()])).hexdigest()[:16]
    target = cache_dir() / f"esa-{key}.so"
    if target.exists():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        writable = os.access(target.parent, os.W_OK)
    except OSError:
        writable = False
    if not writable:  # a read-only home (containers): build in this user's temporary directory instead
        target = Path(tempfile.gettempdir()) / f"effsr-kernels-{os.getuid()}" / target.name
        if target.exists():
            return target
        # Private (0700): a library in a shared temporary directory must not be replaceable by other users.
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with atomic_path(target) as tmp:  # atomic: a concurrent process sees either no library or a whole one
        proc = subprocess.run([cxx, *flags, str(SOURCE), "-o", str(tmp)], capture_output=True, text=True,
                              timeout=_COMPILE_TIMEOUT_S)
        if proc.returncode != 0:
            raise RuntimeError(f"{Path(cxx).name} failed: {proc.stderr.strip()[-800:]}")
    return target


def _declare(lib: ctypes.CDLL) -> None:
    i, p = ctypes.c_int, ctypes.c_void_p
    lib.effsr_native_abi.restype = i
    lib.effsr_native_lanes.restype = i
    lib.effsr_esa_tail.restype = i
    lib.effsr_esa_tail.argtypes = [i] * 7 + [p] * 10 + [i]
    lib.effsr_esa_head.restype = i
    lib.effsr_esa_head.argtypes = [i] * 5 + [p] * 5 + [i]
    lib.effsr_esa_low.restype = i
    lib.effsr_esa_low.argtypes = [i] * 7 + [p] * 8 + [i]
    lib.effsr_pixel_shuffle.restype = i
    lib.effsr_pixel_shuffle.argtypes = [i] * 5 + [p] * 2 + [i]


def load(arch: str = NATIVE_ARCH) -> tuple[ctypes.CDLL | None, str | None]:
    """Build (or reuse), load and self-check the kernels for ``arch``: ``(library, None)`` or ``(None, reason)``.

    Does not make the library the engine's (that is :func:`library`); raises if the compiler is missing or fails.
    """
    cxx = _compiler()
    if cxx is None:
        return None, "no C++ compiler found ($CXX, c++, g++)"
    lib = ctypes.CDLL(str(_build(cxx, arch)))
    _declare(lib)
    if lib.effsr_native_abi() != ABI:
        return None, f"the compiled kernels have ABI {lib.effsr_native_abi()}, expected {ABI}"
    if lib.effsr_native_lanes() not in (8, 16):
        return None, "the compiled kernels have no AVX-512F or AVX2 code"
    err = _self_check(lib)
    if not err <= SELF_CHECK_TOLERANCE:
        return None, f"self-check failed (max abs {err:.2e} > {SELF_CHECK_TOLERANCE:.0e})"
    return lib, None


def library() -> ctypes.CDLL | None:
    """The engine's loaded, self-checked kernel library, or ``None`` when it is unavailable here (the reason is
    logged once and given by :func:`unavailable_reason`)."""
    if "lib" in _state:
        return _state["lib"]  # type: ignore[return-value]
    lib, reason = None, None
    try:
        if os.environ.get("EFFSR_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
            reason = "disabled by EFFSR_NATIVE"
        elif platform.machine().lower() not in ("x86_64", "amd64") or not sys.platform.startswith("linux"):
            reason = f"no kernels for {sys.platform}/{platform.machine()}"
        elif cpu_lanes() == 0:
            reason = "the CPU has neither AVX-512F nor AVX2 + FMA"
        elif "OpenMP" not in torch.__config__.parallel_info():
            reason = "PyTorch is not built with OpenMP"
        else:
            lib, reason = load(NATIVE_ARCH)
    except Exception as exc:  # a read-only cache, a failed build, a broken toolchain: keep the oneDNN graph
        lib, reason = None, f"{type(exc).__name__}: {exc}"
    if lib is None:
        log.info("effsr native kernels unavailable (%s); the fast engine uses oneDNN operators only", reason)
    _state["lib"], _state["reason"] = lib, reason
    return lib


def unavailable_reason() -> str | None:
    """Why :func:`library` returned ``None`` (after it was called), else ``None``."""
    library()
    return _state.get("reason")  # type: ignore[return-value]


def _ptr(t: torch.Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr())


def _ready(t: torch.Tensor, channels: int) -> bool:
    """A non-empty float32 CPU map of ``channels`` channels in dense channels-last layout (what the kernels read)."""
    return (t.dim() == 4 and t.dtype == torch.float32 and t.device.type == "cpu" and t.shape[1] == channels
            and t.numel() > 0 and t.is_contiguous(memory_format=torch.channels_last) and not t.requires_grad)


def _bias(conv: nn.Module) -> torch.Tensor:
    """A conv's bias as a contiguous float32 copy (zeros when it has none)."""
    b = conv.bias.detach().float() if conv.bias is not None else torch.zeros(conv.weight.shape[0])
    return b.contiguous().clone()


def _matrix(conv: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """A 1x1 conv's weight as a contiguous [in][out] matrix and its bias."""
    return conv.weight.detach().float()[:, :, 0, 0].t().contiguous(), _bias(conv)


class EsaTail(nn.Module):
    """``c5(s) * sigmoid(conv4(conv_f(c1) + interpolate(c3, s.shape[2:], bilinear)))`` in one native pass.

    ``conv_f``, ``conv4`` and ``c5`` are the deploy graph's 1x1 convs (their own post-ops are not used); the
    modules are kept for the PyTorch fallback, taken when the inputs do not suit the kernel.
    """

    def __init__(self, conv_f: nn.Module, conv4: nn.Module, c5: nn.Module) -> None:
        super().__init__()
        self.conv_f, self.conv4, self.c5 = conv_f, conv4, c5
        self.channels, self.gate_channels = int(c5.weight.shape[0]), int(conv_f.weight.shape[0])
        for name, conv in (("wf", conv_f), ("w4", conv4), ("w5", c5)):
            w, b = _matrix(conv)
            self.register_buffer(name, w, persistent=False)
            self.register_buffer("b" + name[1:], b, persistent=False)

    def _fallback(self, s: torch.Tensor, c1: torch.Tensor, c3: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(c3, size=s.shape[2:], mode="bilinear", align_corners=False)
        t = F.conv2d(c1, self.conv_f.weight, self.conv_f.bias) + up
        g = torch.sigmoid(F.conv2d(t, self.conv4.weight, self.conv4.bias))
        return F.conv2d(s, self.c5.weight, self.c5.bias) * g

    def forward(self, s: torch.Tensor, c1: torch.Tensor, c3: torch.Tensor) -> torch.Tensor:
        n, c, h, w = s.shape
        if not (_ready(s, self.channels) and _ready(c1, self.gate_channels) and _ready(c3, self.gate_channels)
                and c1.shape == (n, self.gate_channels, h, w) and c3.shape[0] == n and self.wf.device.type == "cpu"):
            return self._fallback(s, c1, c3)
        lib = _state.get("lib")
        if lib is None:
            return self._fallback(s, c1, c3)
        out = torch.empty_like(s, memory_format=torch.channels_last)
        rc = lib.effsr_esa_tail(n, c, self.gate_channels, h, w, c3.shape[2], c3.shape[3], _ptr(s), _ptr(c1),
                                _ptr(c3), _ptr(self.wf), _ptr(self.bf), _ptr(self.w4), _ptr(self.b4),
                                _ptr(self.w5), _ptr(self.b5), _ptr(out), torch.get_num_threads())
        return out if rc == 0 else self._fallback(s, c1, c3)


class EsaHead(nn.Module):
    """``s = a.add_(x)``; ``c1 = conv1(s)`` (a 1x1 conv to the ESA's 16 channels) in one native pass.

    Returns ``(s, c1)``; ``s`` is ``a``, overwritten (the engine uses it only where ``a`` is a dead temporary).
    """

    def __init__(self, conv1: nn.Module) -> None:
        super().__init__()
        self.conv1 = conv1
        self.channels, self.gate_channels = int(conv1.weight.shape[1]), int(conv1.weight.shape[0])
        w, b = _matrix(conv1)
        self.register_buffer("w1", w, persistent=False)
        self.register_buffer("b1", b, persistent=False)

    def _fallback(self, a: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = a.add_(x)
        return s, F.conv2d(s, self.conv1.weight, self.conv1.bias)

    def forward(self, a: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, c, h, w = a.shape
        lib = _state.get("lib")
        if lib is None or not (_ready(a, self.channels) and _ready(x, self.channels) and x.shape == a.shape
                               and self.w1.device.type == "cpu"):
            return self._fallback(a, x)
        c1 = torch.empty((n, h, w, self.gate_channels), dtype=a.dtype).permute(0, 3, 1, 2)  # channels-last
        rc = lib.effsr_esa_head(n, c, self.gate_channels, h, w, _ptr(a), _ptr(x), _ptr(self.w1), _ptr(self.b1),
                                _ptr(c1), torch.get_num_threads())
        return (a, c1) if rc == 0 else self._fallback(a, x)


class EsaLow(nn.Module):
    """The ESA's low-resolution branch ``conv3(max_pool2d(conv2(c1), kernel, stride))`` in one native call.

    ``conv2``: 3x3, 16 -> 16, stride ``s`` (RLFN: 2), no padding; the pool: no padding, floor mode; ``conv3``: 3x3,
    16 -> 16, stride 1, zero padding 1. The three maps are small (RLFN at LR 256x256: 127x127 and 41x41), where
    oneDNN's per-call overhead dominates.
    """

    def __init__(self, conv2: nn.Module, conv3: nn.Module, pool_kernel: int, pool_stride: int) -> None:
        super().__init__()
        self.conv2, self.conv3 = conv2, conv3
        self.stride = int(conv2.stride[0])
        self.pool_kernel, self.pool_stride = int(pool_kernel), int(pool_stride)
        for name, conv in (("k2", conv2), ("k3", conv3)):
            w = conv.weight.detach().float().permute(2, 3, 1, 0).contiguous()  # [ky][kx][in][out]
            self.register_buffer(name, w, persistent=False)
            self.register_buffer("b" + name[1:], _bias(conv), persistent=False)

    def _fallback(self, c1: torch.Tensor) -> torch.Tensor:
        return self.conv3(F.max_pool2d(self.conv2(c1), self.pool_kernel, self.pool_stride))

    def forward(self, c1: torch.Tensor) -> torch.Tensor:
        lib = _state.get("lib")
        n, _, h, w = c1.shape
        h2, w2 = (h - 3) // self.stride + 1, (w - 3) // self.stride + 1
        h3, w3 = (h2 - self.pool_kernel) // self.pool_stride + 1, (w2 - self.pool_kernel) // self.pool_stride + 1
        if lib is None or not (_ready(c1, GATE_CHANNELS) and h >= 3 and w >= 3 and h2 >= self.pool_kernel
                               and w2 >= self.pool_kernel and self.k2.device.type == "cpu"):
            return self._fallback(c1)  # also raises PyTorch's own error for maps too small to pool
        t2 = torch.empty(n * h2 * w2 * GATE_CHANNELS)
        t3 = torch.empty(n * (h3 + 2) * (w3 + 2) * GATE_CHANNELS)
        out = torch.empty((n, h3, w3, GATE_CHANNELS)).permute(0, 3, 1, 2)  # channels-last
        rc = lib.effsr_esa_low(n, GATE_CHANNELS, h, w, self.stride, self.pool_kernel, self.pool_stride, _ptr(c1),
                               _ptr(self.k2), _ptr(self.b2), _ptr(self.k3), _ptr(self.b3), _ptr(t2), _ptr(t3),
                               _ptr(out), torch.get_num_threads())
        return out if rc == 0 else self._fallback(c1)


def pixel_shuffle_nchw(x: torch.Tensor, upscale_factor: int) -> torch.Tensor:
    """:func:`effsr.deploy.ops.pixel_shuffle_nchw` (channels-last in, contiguous NCHW out) as one native pass."""
    lib, r = _state.get("lib"), int(upscale_factor)
    n, c, h, w = x.shape
    if lib is None or r < 1 or c % (r * r) or not (x.dtype == torch.float32 and x.device.type == "cpu"
                                                   and x.is_contiguous(memory_format=torch.channels_last)
                                                   and not x.is_contiguous() and not x.requires_grad):
        return plain(x, r)
    out = torch.empty((n, c // (r * r), h * r, w * r))
    rc = lib.effsr_pixel_shuffle(n, c // (r * r), h, w, r, _ptr(x), _ptr(out), torch.get_num_threads())
    return out if rc == 0 else plain(x, r)


def _self_check(lib: ctypes.CDLL) -> float:
    """Max abs difference between the kernels and PyTorch's operators on small random problems (all widths)."""
    saved = _state.get("lib")
    _state["lib"] = lib
    try:
        return _compare_with_torch()
    finally:
        _state["lib"] = saved


def _compare_with_torch() -> float:
    g = torch.Generator().manual_seed(0)
    worst = 0.0
    cl = torch.channels_last
    for c in CHANNELS:
        f = GATE_CHANNELS
        convs = [nn.Conv2d(i, o, 1) for i, o in ((f, f), (f, c), (c, c), (c, f))]
        with torch.no_grad():
            for conv in convs:
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) / conv.weight.shape[1] ** 0.5)
                conv.bias.copy_(torch.randn(conv.bias.shape, generator=g) * 0.1)
        conv_f, conv4, c5, conv1 = convs
        tail, head = EsaTail(conv_f, conv4, c5), EsaHead(conv1)
        h, w = 13, 21  # odd sizes: the pixel blocks' remainders and the interpolation's edges
        a = torch.randn(2, c, h, w, generator=g).contiguous(memory_format=cl)
        x = torch.randn(2, c, h, w, generator=g).contiguous(memory_format=cl)
        c3 = torch.randn(2, f, 4, 6, generator=g).contiguous(memory_format=cl)
        with torch.inference_mode():
            ref_s = a + x
            ref_c1 = F.conv2d(ref_s, conv1.weight, conv1.bias)
            s, c1 = head(a.clone(memory_format=cl), x)
            ref_out = tail._fallback(ref_s, ref_c1, c3)
            out = tail(ref_s, ref_c1.contiguous(memory_format=cl), c3)
        for got, ref in ((s, ref_s), (c1, ref_c1), (out, ref_out)):
            worst = max(worst, (got - ref).abs().max().item())
    convs = [nn.Conv2d(GATE_CHANNELS, GATE_CHANNELS, 3, stride=st, padding=pad) for st, pad in ((2, 0), (1, 1))]
    with torch.no_grad():
        for conv in convs:
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) / 12.0)
            conv.bias.copy_(torch.randn(conv.bias.shape, generator=g) * 0.1)
    low = EsaLow(*convs, pool_kernel=7, pool_stride=3)
    c1 = torch.randn(2, GATE_CHANNELS, 40, 35, generator=g).contiguous(memory_format=cl)
    y = torch.randn(2, 3 * 16, 5, 7, generator=g).contiguous(memory_format=cl)
    with torch.inference_mode():
        worst = max(worst, (low(c1) - low._fallback(c1)).abs().max().item())
        worst = max(worst, (pixel_shuffle_nchw(y, 4) - F.pixel_shuffle(y, 4)).abs().max().item())
    return worst
