"""ONNX export with an onnxruntime round trip: ``export_onnx(model, path)`` -> :class:`ExportReport`.

The model is re-parameterized (deploy form), exported with PyTorch's TorchScript-based exporter (``dynamo=False``:
the dynamo exporter needs ``onnxscript``, which effsr does not require) and then checked in onnxruntime against the
PyTorch forward at two input sizes: the example size and a larger, odd, non-square one. The check passes when the
max abs difference is at most 5e-4 in [0,1] units (every backend's float32 contract, ``checks.FP32_TOLERANCE``),
typically ~1e-6.

Dynamic sizes. With ``dynamic=True`` the input height and width (and the batch) are symbolic. Whether the exported
graph really computes the model at other sizes is decided by the check, not assumed: a model whose forward takes
Python decisions from the input size bakes the example's decisions into the graph. Two zoo models do that:

* AGDN's test-time local converter (TLC) lays its attention windows out from the feature-map size in Python
  (specs/AGDN.md section 3.6). A dynamic graph traced at a size up to the window (96 x 96) attends globally, so it
  is right for every input up to 96 x 96 and wrong above; above that, each input size needs its own export.
* SAFMN++ pools to ``(h // 8, w // 8)`` with ``adaptive_max_pool2d``, whose bins depend on the size; ONNX has no
  adaptive pooling, so effsr writes the bins out (a slice and a ReduceMax per output row and column) for the
  traced size only.

For these the report says ``dynamic=False``, why, and which shapes the file supports; the export falls back to a
static graph at the example size (use ``example_size`` / ``effsr export --lr-size`` to pick it).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..files import write_bytes
from ..runtime import single_thread
from ..tiling import TilingSpec, tiling_of
from .checks import FP32_TOLERANCE, example_image, input_channels
from .reparam import cast_plain_tensors, reparameterize_model

DEFAULT_OPSET = 17
# onnxruntime must reproduce PyTorch within the float32 contract of every backend (5e-4 in [0,1] units).
ONNX_TOLERANCE = FP32_TOLERANCE
INPUT_NAME, OUTPUT_NAME = "lr", "sr"
# The metadata key under which an exported file carries the model's TilingSpec (JSON), so that it keeps its scale,
# size and tiling requirements wherever it is deployed.
TILING_METADATA_KEY = "effsr.tiling"


@dataclass(frozen=True)
class SizeCheck:
    """One onnxruntime-vs-PyTorch comparison: LR size (H, W), max abs difference, and how the graph was obtained."""

    lr_size: tuple[int, int]
    max_abs: float
    graph: str  # "the exported file" or "a static re-export at this size"


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_onnx` wrote and verified."""

    path: Path | None
    model: str
    opset: int
    dynamic_requested: bool
    dynamic: bool
    input_shape: tuple[int, int, int, int]
    supported_shapes: str
    checks: tuple[SizeCheck, ...] = field(default_factory=tuple)
    tolerance: float = ONNX_TOLERANCE
    notes: tuple[str, ...] = ()
    file_bytes: int = 0

    @property
    def max_abs(self) -> float:
        return max((c.max_abs for c in self.checks), default=float("nan"))

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.max_abs <= self.tolerance for c in self.checks)


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str] | None,
    *,
    dynamic: bool = True,
    opset: int = DEFAULT_OPSET,
    example_size: tuple[int, int] = (64, 64),
    second_size: tuple[int, int] | None = None,
    tolerance: float = ONNX_TOLERANCE,
) -> ExportReport:
    """Export ``model`` (deploy form, float32, CPU) to ``path`` and verify it in onnxruntime at two sizes.

    ``example_size`` (H, W) is the traced size (the only size of a static export); ``second_size`` defaults to
    :func:`second_check_size`. With ``dynamic=True`` the file has symbolic batch/height/width when the architecture
    allows it (see the module docstring); otherwise the report explains and the file is static. ``path=None``
    verifies without writing. The file is written atomically (temporary name, then rename).
    """
    net = _deploy_copy(model)
    name = type(model).__name__
    spec = tiling_of(model)
    h, w = spec.padded_size(*(int(s) for s in example_size))
    second = second_size or second_check_size((h, w), spec)
    channels = input_channels(net)
    shape = (1, channels, h, w)
    notes: list[str] = []
    checks: list[SizeCheck] = []
    data: bytes | None = None
    if dynamic:
        data, messages = export_onnx_bytes(net, example_shape=shape, dynamic=True, opset=opset,
                                           return_warnings=True)
        if data is None:
            notes.append(f"the dynamic export failed: {messages[0] if messages else 'unknown error'}")
        else:
            session = make_session(data, threads=None)
            first = SizeCheck((h, w), _compare(net, session, (h, w), channels), "the exported file")
            try:
                err2 = _compare(net, session, second, channels)
            except Exception as exc:  # onnxruntime rejects the size: the graph is not shape-generic
                err2 = math.inf
                notes.append(f"the dynamic graph fails at {second[0]}x{second[1]}: {type(exc).__name__}")
            if err2 <= tolerance:
                checks = [first, SizeCheck(second, err2, "the exported file")]
            else:
                if err2 < math.inf:
                    notes.append(f"a dynamic graph traced at {h}x{w} differs from the model by {err2:.2e} at "
                                 f"{second[0]}x{second[1]}: the graph depends on the input size")
                if messages:
                    notes.append(f"tracer: {messages[0]}")
    is_dynamic = bool(checks)
    if not checks:
        data, messages = export_onnx_bytes(net, example_shape=shape, dynamic=False, opset=opset,
                                           return_warnings=True)
        if data is None:
            raise RuntimeError(f"{name}: ONNX export at {h}x{w} failed: {messages[0] if messages else '?'}")
        session = make_session(data, threads=None)
        checks = [SizeCheck((h, w), _compare(net, session, (h, w), channels), "the exported file")]
        data2 = export_onnx_bytes(net, example_shape=(1, channels, *second), dynamic=False, opset=opset)
        if data2 is None:
            notes.append(f"a static export at {second[0]}x{second[1]} failed")
        else:
            s2 = make_session(data2, threads=None)
            checks.append(SizeCheck(second, _compare(net, s2, second, channels), "a static re-export at this size"))
    supported = supported_shapes_text(net, is_dynamic, (h, w), channels)
    nbytes = 0
    if path is not None:
        nbytes = write_bytes(path, data).stat().st_size
    return ExportReport(path=Path(path) if path is not None else None, model=name, opset=opset,
                        dynamic_requested=dynamic, dynamic=is_dynamic, input_shape=shape, supported_shapes=supported,
                        checks=tuple(checks), tolerance=tolerance, notes=tuple(notes), file_bytes=nbytes)


def second_check_size(example_size: tuple[int, int], spec: TilingSpec | None = None) -> tuple[int, int]:
    """The second verification size: odd, non-square and larger than AGDN's 96-pixel TLC window (and than the
    spec's minimum tile, which is that window), so that graphs which depend on the input size are caught:
    (H + 45, W + 61) for the default 64 x 64 -> 109 x 125, padded to what ``spec`` requires."""
    spec = spec or TilingSpec(scale=1)
    h, w = example_size
    return spec.padded_size(max(h + 45, spec.min_tile + 1), max(w + 61, spec.min_tile + 17))


def dynamic_onnx_bytes(model: nn.Module, example_size: tuple[int, int] = (64, 64),
                       opset: int = DEFAULT_OPSET) -> bytes | None:
    """A dynamic-size export of ``model`` if it reproduces the model at a second size (see the module docstring),
    else None. ``model`` should already be in deploy form (CPU, float32, eval)."""
    spec = tiling_of(model)
    h, w = spec.padded_size(*(int(s) for s in example_size))
    channels = input_channels(model)
    data = export_onnx_bytes(model, example_shape=(1, channels, h, w), dynamic=True, opset=opset)
    if data is None:
        return None
    session = make_session(data, threads=None)
    try:
        ok = _compare(model, session, second_check_size((h, w), spec), channels) <= ONNX_TOLERANCE
    except Exception:
        ok = False
    return data if ok else None


def supported_shapes_text(model: nn.Module, dynamic: bool, size: tuple[int, int], channels: int = 3) -> str:
    """A sentence for the CLI and docs: which input shapes the exported file takes."""
    spec = tiling_of(model)
    if dynamic:
        multiple = f", multiples of {spec.size_multiple}" if spec.size_multiple > 1 else ""
        return (f"any N x {channels} x H x W with H, W >= {spec.min_size}{multiple} (dynamic batch, height and "
                f"width)")
    text = f"exactly 1 x {channels} x {size[0]} x {size[1]} (static: export again for another size)"
    window = _tlc_window(model)
    if window:
        text += (f"; the TLC attention windows ({window} x {window}) are laid out from the input size, so every "
                 f"size needs its own export; a dynamic export traced at a size up to {window} x {window} is exact "
                 f"for inputs up to {window} x {window} only")
    if any(isinstance(m, nn.Module) and _uses_adaptive_pool(m) for m in model.modules()):
        text += "; the adaptive max-pool bins are written out for the traced size"
    return text


def export_onnx_bytes(
    model: nn.Module,
    *,
    example_shape: Sequence[int],
    dynamic: bool,
    opset: int = DEFAULT_OPSET,
    return_warnings: bool = False,
) -> Any:
    """The ONNX bytes of ``model`` traced at ``example_shape`` (``None`` if the exporter fails), with the model's
    :class:`~effsr.tiling.TilingSpec` in the file's metadata (:data:`TILING_METADATA_KEY`, read back by
    :func:`onnx_tiling`).

    With ``return_warnings`` returns ``(bytes | None, [tracer warnings or the error])``.
    """
    x = _example(tuple(example_shape))
    buf = io.BytesIO()
    axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}, OUTPUT_NAME: {0: "batch", 2: "out_height",
                                                                           3: "out_width"}}
    messages: list[str] = []
    data = None
    # One thread: the traced forward's speed does not matter, and on a busy machine an OpenMP team waiting for a
    # descheduled thread makes each of its hundreds of small ops take milliseconds.
    with (warnings.catch_warnings(record=True) as caught, _adaptive_max_pool_symbolic(opset), _quiet_fds(),
          single_thread()):
        warnings.simplefilter("always")
        try:
            torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], dynamic_axes=axes if dynamic else None,
                              do_constant_folding=True)
            data = _with_tiling_metadata(buf.getvalue(), tiling_of(model))
        except Exception as exc:
            messages.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    for w in caught:
        if "Tracer" in type(w.message).__name__ and str(w.message) not in messages:
            messages.append(str(w.message).splitlines()[0][:200])
    return (data, messages) if return_warnings else data


def make_session(data: bytes, *, threads: int | None, device: torch.device | str = "cpu") -> Any:
    """An onnxruntime session with every graph optimization, ``threads`` intra-op threads and no inter-op pool."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.inter_op_num_threads = 1
    if threads:
        opts.intra_op_num_threads = int(threads)
    opts.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    if torch.device(device).type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    return ort.InferenceSession(data, opts, providers=providers)


def onnx_tiling(data: bytes | str | os.PathLike[str]) -> TilingSpec | None:
    """The :class:`~effsr.tiling.TilingSpec` an effsr export carries (file bytes or a path), else None."""
    import onnx

    proto = onnx.load_model_from_string(data) if isinstance(data, bytes) else onnx.load(os.fspath(data))
    for prop in proto.metadata_props:
        if prop.key == TILING_METADATA_KEY:
            return TilingSpec.from_json(prop.value)
    return None


# ---- helpers ---------------------------------------------------------------------------------------------------


def _with_tiling_metadata(data: bytes, spec: TilingSpec) -> bytes:
    import onnx

    proto = onnx.load_model_from_string(data)
    onnx.helper.set_model_props(proto, {TILING_METADATA_KEY: spec.to_json()})
    return proto.SerializeToString()


def _deploy_copy(model: nn.Module) -> nn.Module:
    net = reparameterize_model(model).eval().requires_grad_(False).to(device="cpu", dtype=torch.float32)
    cast_plain_tensors(net, torch.device("cpu"), torch.float32)
    return net


def _example(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    n, c, h, w = shape
    return torch.cat([example_image(c, h, w, seed=seed + i) for i in range(n)])


def _compare(model: nn.Module, session: Any, size: tuple[int, int], channels: int) -> float:
    x = _example((1, channels, *size), seed=7)
    with torch.inference_mode(), single_thread():
        ref = model(x).numpy()
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    if got.shape != ref.shape:
        return math.inf
    return float(np.abs(got - ref).max())


def _tlc_window(model: nn.Module) -> int | None:
    """AGDN-style windowed attention (``tlc`` on, a ``tlc_window`` size): the window edge, else None."""
    for m in model.modules():
        if getattr(m, "tlc", False) and isinstance(getattr(m, "tlc_window", None), int):
            return int(m.tlc_window)
    return None


def _uses_adaptive_pool(module: nn.Module) -> bool:
    import inspect

    try:
        return "adaptive_max_pool2d" in inspect.getsource(type(module).forward)
    except (OSError, TypeError):
        return False


@contextlib.contextmanager
def _quiet_fds() -> Iterator[None]:
    """Silence file descriptors 1 and 2: on failure the exporter dumps the whole TorchScript graph from C++ (megabytes
    for these models) before raising; the exception itself is reported instead."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = []
    try:
        saved = [os.dup(1), os.dup(2)]
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
    except OSError:  # no real file descriptors (embedded interpreters): stay verbose
        for fd in saved:
            os.close(fd)
        saved = []
    try:
        yield
    finally:
        if saved:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


class _adaptive_max_pool_symbolic:
    """Context manager: export ``adaptive_max_pool2d`` with a known input size as per-bin slices + ReduceMax.

    PyTorch's exporter handles only output sizes that divide the input (SAFMN++ at sizes that are not multiples of
    8 fails). Adaptive max pooling over a bin is a max over its rows then its columns, so the bins of each axis
    (start ``floor(i * n / m)``, end ``ceil((i + 1) * n / m)``) are written out one axis at a time: exact, static.
    """

    def __init__(self, opset: int) -> None:
        self.opset = opset

    def __enter__(self) -> _adaptive_max_pool_symbolic:
        torch.onnx.register_custom_op_symbolic("aten::adaptive_max_pool2d", _adaptive_max_pool2d, self.opset)
        return self

    def __exit__(self, *exc: object) -> None:
        torch.onnx.unregister_custom_op_symbolic("aten::adaptive_max_pool2d", self.opset)


def _adaptive_max_pool2d(g: Any, x: Any, output_size: Any) -> Any:
    from torch.onnx import symbolic_helper as sh

    out = sh._parse_arg(output_size, "is")
    sizes = sh._get_tensor_sizes(x)
    if sizes is None or len(sizes) != 4 or any(s is None for s in sizes[2:]):
        return sh._unimplemented("adaptive_max_pool2d", "input size not known (static export only)", x)
    y = x
    for axis, (n, m) in enumerate(zip(sizes[2:], out, strict=True), start=2):
        if n % m == 0:
            k = [1, 1]
            k[axis - 2] = n // m
            y = g.op("MaxPool", y, kernel_shape_i=k, strides_i=k)
            continue
        parts = []
        for i in range(m):
            start, end = (i * n) // m, -((-(i + 1) * n) // m)
            sl = g.op("Slice", y, g.op("Constant", value_t=torch.tensor([start])),
                      g.op("Constant", value_t=torch.tensor([end])), g.op("Constant", value_t=torch.tensor([axis])))
            if g.opset >= 18:  # ReduceMax takes its axes as an input from opset 18
                parts.append(g.op("ReduceMax", sl, g.op("Constant", value_t=torch.tensor([axis])), keepdims_i=1))
            else:
                parts.append(g.op("ReduceMax", sl, axes_i=[axis], keepdims_i=1))
        y = g.op("Concat", *parts, axis_i=axis)
    return y, None
