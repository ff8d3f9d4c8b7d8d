"""The backends: ``prepare(model, backend)``, the one entry point that turns any effsr model into a callable
inference module (the command line and the Python API both use it).

Three backends share one contract (float RGB NCHW in [0,1] in and out, the model's
:class:`~effsr.tiling.TilingSpec` carried whole as ``tiling``, any input size, the given model never modified):

* ``eager``: the plain PyTorch forward, as the authors run it (eval mode, ``torch.inference_mode``, on a copy).
* ``fast``: effsr's fastest exact PyTorch path (the default). The model is re-parameterized, traced with
  ``torch.fx`` and rewritten into a deploy graph whose every rewrite is an algebraic identity
  (:mod:`effsr.deploy.passes`, an ordered list of named passes, each of which can be disabled);
  convolutions then run as oneDNN primitives with pre-packed weights and fused element-wise post-ops, on channels-last
  tensors; optionally the graph goes through ``torch.compile``. In float32 the output equals the eager forward's up
  to float rounding (tests/test_engine.py: at most 5e-4 in [0,1] units on every zoo model, typically ~1e-6).
* ``onnxruntime``: the model exported to ONNX (:mod:`effsr.deploy.onnx`) and run by an onnxruntime
  ``InferenceSession`` with all graph optimizations; see :class:`OnnxRuntimeEngine`.
* ``openvino`` (the optional ``openvino`` extra): the model converted by OpenVINO and compiled for its CPU plugin,
  in fp32, bf16 or int8 (:mod:`effsr.deploy.openvino`).

Precision is a separate choice (:mod:`effsr.deploy.precision`, checked before anything is built): ``fp32``,
``fp16``/``bf16`` (the network runs in that dtype; float32 in and out) and ``int8`` (a quantized graph calibrated on
images: :mod:`effsr.deploy.quantize` for the fast backend, NNCF for openvino).

Process-wide settings (threads, malloc tuning) come from :mod:`effsr.runtime`; the fast backend's passes, their
order and their invariants from :mod:`effsr.deploy.passes` (``passes/README.md``).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Collection
from typing import Any

import torch
from torch import nn

from ..errors import DeviceError, MissingDependencyError
from ..runtime import set_threads, single_thread, tune_glibc_malloc
from ..tiling import tiling_of
from .checks import FP32_TOLERANCE, LOW_PRECISION_TOLERANCE, example_image, input_channels
from .passes import NATIVE_PASSES, PipelineReport, build_deploy_graph, resolve_disabled
from .precision import FLOAT_DTYPES, check_precision, precision_name
from .reparam import cast_plain_tensors, reparameterize_model

log = logging.getLogger(__name__)


BACKENDS = ("eager", "fast", "onnxruntime", "openvino")
# The backends whose packages are optional: the module each imports and the pyproject extra that installs it.
OPTIONAL_BACKENDS = {"onnxruntime": ("onnxruntime", "onnx"), "openvino": ("openvino", "openvino")}


def available_backends() -> tuple[str, ...]:
    """The backends this environment can run: every backend whose optional package is installed."""
    import importlib.util

    return tuple(b for b in BACKENDS if b not in OPTIONAL_BACKENDS
                 or importlib.util.find_spec(OPTIONAL_BACKENDS[b][0]) is not None)


def require_backend(backend: str) -> None:
    """Raise MissingDependencyError (one line, the pip command) if ``backend``'s optional package is missing."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if backend not in available_backends():
        module, extra = OPTIONAL_BACKENDS[backend]
        raise MissingDependencyError(f"--backend {backend} needs the {module} package: pip install 'effsr[{extra}]'")


def prepare(
    model: nn.Module,
    backend: str = "fast",
    *,
    device: str | torch.device = "cpu",
    threads: int | None = None,
    precision: str | torch.dtype | None = None,
    example_size: tuple[int, int] = (64, 64),
    compile: bool = False,
    tune_malloc: bool = True,
    verify: bool = True,
    disable_passes: Collection[str] = (),
    calibration: Any = None,
) -> Engine:
    """Return ``model`` ready for inference with ``backend`` on ``device``: the one entry point of the command line
    and the Python API.

    The result is a callable ``nn.Module`` with the model's contract (float RGB NCHW in [0,1] in and out, any input
    size at least its minimum size) that carries the model's :class:`~effsr.tiling.TilingSpec` whole (``tiling``).
    ``model`` itself is never modified (every backend works on its own copy).

    - ``backend``: ``eager`` (the model's own forward, eval mode, no autograd: the reference), ``fast`` (effsr's
      fastest exact PyTorch path, the default) or ``onnxruntime``.
    - ``threads``: CPU intra-op threads (:func:`effsr.runtime.set_threads`, process-wide; onnxruntime gets its own
      pool of that size).
    - ``precision``: None (default: ``"fp32"``, or ``"int8"`` for a model loaded from an int8 file, which runs int8
      only, on the fast backend), ``"fp32"``, ``"fp16"``, ``"bf16"`` (or the torch dtype) or ``"int8"``, checked first
      by :func:`effsr.deploy.precision.check_precision` (a CPU without the kernels gets one clear line). fp16/bf16
      run the network in that dtype and return float32 (tolerances:
      :data:`~effsr.deploy.checks.LOW_PRECISION_TOLERANCE`); int8 runs a graph quantized after calibration on
      images (fast: :func:`effsr.deploy.quantize.prepare_int8`; openvino: NNCF). onnxruntime runs fp32 only.
    - ``calibration`` (int8): the images to calibrate on: a folder, a list of files, an Nx3xHxW tensor or a list of
      tensors; None takes the default set (:mod:`effsr.deploy.calibration`). A model loaded from an int8 file
      carries its own calibration and ignores this.
    - ``example_size``: (H, W) of the example input used to trace, check and pre-pack (any size works afterwards).
    - ``compile`` (fast backend): additionally run the fast graph through ``torch.compile`` (inductor; minutes of
      compilation per input shape on a small CPU, so off by default).
    - ``tune_malloc`` (fast backend on Linux/glibc): keep freed memory in the process heap instead of returning it
      to the kernel, so the next forward reuses it without page faults (:func:`effsr.runtime.tune_glibc_malloc`).
      Process-wide.
    - ``verify`` (fast backend): run the example through the float32 eager model and the deploy graph and fall back
      to the unfused channels-last forward (with a warning) if they differ by more than
      :data:`~effsr.deploy.checks.FP32_TOLERANCE` (float32) or the precision's
      :data:`~effsr.deploy.checks.LOW_PRECISION_TOLERANCE` (bfloat16, float16).
    - ``disable_passes`` (fast backend): names of graph passes to leave out (``effsr.deploy.passes.PASS_NAMES``;
      ``$EFFSR_DISABLE_PASSES`` adds to them), for A/B measurement and debugging.
    """
    require_backend(backend)
    dev = _device(device)
    precision = _int8_file_precision(model, backend, precision)
    name = check_precision(precision, backend, dev)
    if compile and backend != "fast":
        raise ValueError("compile applies to the fast backend only")
    if disable_passes and backend != "fast":
        raise ValueError("disable_passes applies to the fast backend only")
    if compile and name == "int8":
        raise ValueError("compile applies to the float precisions only")
    set_threads(threads)
    if backend == "openvino":
        from .openvino import OpenVinoEngine

        return OpenVinoEngine(model, device=dev, threads=threads, precision=name, example_size=example_size,
                              calibration=calibration, verify=verify)
    if name == "int8":
        from .quantize import prepare_int8

        return prepare_int8(model, device=dev, threads=threads, example_size=example_size, calibration=calibration,
                            verify=verify)
    dtype = FLOAT_DTYPES[name]
    if backend == "eager":
        return EagerEngine(model, device=dev, dtype=dtype)
    if backend == "onnxruntime":
        if dtype != torch.float32:
            raise ValueError("the onnxruntime backend runs float32 only")
        return OnnxRuntimeEngine(model, device=dev, threads=threads, example_size=example_size)
    tuned = tune_malloc and dev.type == "cpu" and tune_glibc_malloc()
    engine = FastEngine(model, device=dev, dtype=dtype, example_size=example_size, compile=compile, verify=verify,
                        disable_passes=disable_passes)
    if tuned:
        engine.memory_safety_factor = TUNED_MALLOC_MEMORY_SAFETY_FACTOR
    return engine


def _int8_file_precision(model: nn.Module, backend: str, precision: str | torch.dtype | None) -> str | torch.dtype:
    """The precision to run: as given, fp32 by default, and int8 (only) for a model loaded from an int8 file."""
    from ..errors import PrecisionError
    from ..weights import INT8_ATTR

    payload = getattr(model, INT8_ATTR, None)
    if payload is None:
        return "fp32" if precision is None else precision
    if precision is not None and precision_name(precision) != "int8":
        raise PrecisionError(f"{payload.source or 'this model'} is an int8 file: it runs --precision int8 (the "
                             f"default for it); for {precision_name(precision)} use the float weights it was made from")
    if backend != "fast":
        raise PrecisionError(f"{payload.source or 'this model'} is an int8 file: it runs on --backend fast (its "
                             f"quantization is torch.ao's), not {backend}")
    return "int8"


# Automatic tiling plans each tile's memory as the measured tensor peak times a safety factor (effsr.infer, 2.0). With
# the heap kept (tune_glibc_malloc) the process also holds freed blocks it cannot reuse: a 2000x2000 x4 upscale with
# RLFN's fast path and 551-pixel tiles peaked at 2.91 GB against 1.68 GB for the eager forward with the same tiles
# (benchmarks/RESULTS.md, "Memory"), so the fast engine plans with a larger factor (smaller tiles).
TUNED_MALLOC_MEMORY_SAFETY_FACTOR = 3.0


def _device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device, checked to exist on this machine."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError("CUDA was requested but is not available on this machine; run on cpu instead")
    return dev


class Engine(nn.Module):
    """Base of the backends: carries the model's tiling spec, moves/casts the input, runs without autograd."""

    backend = "?"

    def __init__(self, model: nn.Module, *, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__()
        self.tiling = tiling_of(model)
        self.device = device
        self.dtype = dtype

    @property
    def scale(self) -> int:
        return self.tiling.scale

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
        cast_plain_tensors(self.model, device, dtype)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class FastEngine(Engine):
    """effsr's fast path: the deploy graph of :func:`build_deploy_graph`, channels-last, optionally compiled."""

    backend = "fast"

    def __init__(self, model: nn.Module, *, device: torch.device, dtype: torch.dtype,
                 example_size: tuple[int, int] = (64, 64), compile: bool = False, verify: bool = True,
                 disable_passes: Collection[str] = ()) -> None:
        super().__init__(model, device=device, dtype=dtype)
        # torch.compile brings its own conv fusions and cannot trace pre-packed oneDNN weights.
        disabled = resolve_disabled((*disable_passes, *(("pack_weights",) if compile else ())))
        h, w = self.tiling.padded_size(*(int(s) for s in example_size))
        base = reparameterize_model(model).eval().requires_grad_(False).to(device=device, dtype=torch.float32)
        cast_plain_tensors(base, device, torch.float32)
        example = example_image(input_channels(base), h, w).to(device)
        self.fused = True
        # The measured max abs difference from the eager forward on the example (float32 with ``verify``).
        self.max_abs_vs_eager: float | None = None
        try:
            with single_thread():  # preparation: its speed does not matter, stalls of a busy machine do
                graph = build_deploy_graph(base, example, dtype=dtype, disable_passes=disabled)
        except Exception as exc:  # an architecture the tracer cannot follow: still a correct, faster forward
            log.warning("fast backend: graph rewrite failed for %s (%s: %s); using the channels-last forward",
                        type(model).__name__, type(exc).__name__, exc)
            graph, self.fused = _plain_deploy(base, device, dtype), False
        if verify and self.fused:
            graph = self._verified(graph, base, example, dtype, disabled, type(model).__name__)
        self.graph = graph
        # What the graph passes did (None when the engine fell back to the plain channels-last forward).
        self.pass_report: PipelineReport | None = getattr(graph, "pass_report", None) if self.fused else None
        self._runner: Callable[[torch.Tensor], torch.Tensor] = graph
        if compile:
            self._runner = torch.compile(graph, dynamic=False)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        return self._runner(x.contiguous(memory_format=torch.channels_last))

    def _verified(self, graph: nn.Module, base: nn.Module, example: torch.Tensor, dtype: torch.dtype,
                  disabled: tuple[str, ...], name: str) -> nn.Module:
        """``graph`` if its output on ``example`` is within the dtype's tolerance of the float32 eager forward
        (:data:`~effsr.deploy.checks.FP32_TOLERANCE`, or :data:`~effsr.deploy.checks.LOW_PRECISION_TOLERANCE` for
        bfloat16 / float16: the low-precision graph is checked against float32, not against itself); else the graph
        rebuilt without the passes that bring their own kernels (the native kernels, and in a low precision the
        oneDNN pre-packing), else the plain channels-last forward in ``dtype``, each fallback with a warning.
        Sets ``max_abs_vs_eager``."""
        tol = FP32_TOLERANCE if dtype == torch.float32 else LOW_PRECISION_TOLERANCE[dtype]
        with torch.inference_mode(), single_thread():
            ref = base(example)

        def error_of(g: nn.Module) -> float:
            with torch.inference_mode(), single_thread():
                got = g(example.to(dtype).contiguous(memory_format=torch.channels_last))
                return (got.float() - ref.float()).abs().max().item()

        err = error_of(graph)
        own_kernels = _own_kernel_passes(graph, dtype)
        if not err <= tol and own_kernels:
            log.warning("fast backend: the %s deploy graph of %s differs from its float32 eager forward by %.2e "
                        "(> %.0e); rebuilding it without %s", _dtype_name(dtype), name, err, tol,
                        ", ".join(own_kernels))
            with single_thread():
                graph = build_deploy_graph(base, example, dtype=dtype, disable_passes=(*disabled, *own_kernels))
            err = error_of(graph)
        self.max_abs_vs_eager = err
        if not err <= tol:
            log.warning("fast backend: the %s deploy graph of %s differs from its float32 eager forward by %.2e "
                        "(> %.0e); using the channels-last forward", _dtype_name(dtype), name, err, tol)
            graph, self.fused = _plain_deploy(base, self.device, dtype), False
            self.max_abs_vs_eager = error_of(graph)
        return graph


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _own_kernel_passes(graph: nn.Module, dtype: torch.dtype) -> tuple[str, ...]:
    """The passes that fired in ``graph`` and put in kernels of their own rather than PyTorch's operators: effsr's
    native kernels, and in a low precision oneDNN's pre-packed weights (whose bfloat16 kernels exist only on CPUs
    with AVX-512)."""
    report = getattr(graph, "pass_report", None)
    if report is None:
        return ()
    names = NATIVE_PASSES + (("pack_weights",) if dtype != torch.float32 else ())
    return tuple(n for n in names if report.fired(n))


def _plain_deploy(model: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """The fallback fast path: re-parameterized, channels-last, eager forward."""
    m = reparameterize_model(model).eval().requires_grad_(False).to(device=device, dtype=dtype)
    cast_plain_tensors(m, device, dtype)
    return m.to(memory_format=torch.channels_last)


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
        h, w = self.tiling.padded_size(*(int(s) for s in example_size))
        data = onnx_export.dynamic_onnx_bytes(self.model, (h, w))
        self.dynamic = data is not None
        if data is not None:
            self._sessions[None] = onnx_export.make_session(data, threads=self.threads, device=device)
        else:
            self._session_for((1, input_channels(model), h, w))

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
