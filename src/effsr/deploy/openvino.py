"""The ``openvino`` backend: the deploy copy of a model converted by OpenVINO and compiled for its CPU plugin, in
fp32, bf16 or int8 (the ``openvino`` extra: ``pip install 'effsr[openvino]'``).

How a model gets there (:class:`OpenVinoEngine`):

1. The re-parameterized float32 deploy copy (the one the ONNX export uses, :func:`effsr.deploy.onnx._deploy_copy`)
   is converted with ``openvino.convert_model`` straight from the ``nn.Module`` (OpenVINO's PyTorch frontend
   traces it with ``torch.jit.trace``), with dynamic batch, height and width.
2. Whether that graph computes the model at other sizes is checked, not assumed (as for the ONNX export): it is
   compiled in f32 and compared with the eager forward at the example size and at
   :func:`effsr.deploy.onnx.second_check_size` (larger, odd, non-square). A model whose forward takes Python
   decisions from the input size (AGDN lays its attention windows out from it) fails that check and is converted
   again for every new input shape instead.
3. int8: NNCF post-training quantization of the converted graph (:func:`quantize_int8`), calibrated on
   :func:`effsr.deploy.calibration.calibration_images`, with the layers int8 hurts most kept in float
   (:data:`INT8_KEEP_FLOAT`).
4. Each input shape gets its own compiled model (the graph reshaped to that static shape, cached): OpenVINO plans
   memory and picks kernels per static shape. Compile options: ``INFERENCE_NUM_THREADS`` = threads,
   ``PERFORMANCE_HINT`` = ``LATENCY`` (one stream), ``INFERENCE_PRECISION_HINT`` f32 or bf16 (OpenVINO's CPU
   plugin otherwise picks bf16 by itself on CPUs that have it: fp32 must be asked for).
5. ``verify``: the example is run through the compiled model and the eager forward; fp32 must agree within
   :data:`~effsr.deploy.checks.FP32_TOLERANCE`, bf16 within ``LOW_PRECISION_TOLERANCE[torch.bfloat16]``, int8
   within :data:`INT8_MIN_PSNR_DB`. A failure logs a warning and raises :class:`~effsr.errors.BackendError`: there
   is no other OpenVINO graph to fall back to, and running another backend under the name ``openvino`` would
   mislabel every measurement.

bf16 needs OpenVINO's own word as well as the CPU flags (:func:`effsr.deploy.precision.check_precision`): the CPU
plugin silently runs f32 where it finds no native bfloat16 (its ``OPTIMIZATION_CAPABILITIES`` lack ``BF16``;
measured with OpenVINO 2026.4 on an AVX2-only CPU: asked for bf16, the compiled model reports f32, with no warning),
so the engine checks those capabilities first, reads back the precision the compiled model runs, and raises
:class:`~effsr.errors.PrecisionError` unless it is bf16, instead of timing f32 under the bf16 label.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BackendError, DeviceError, MissingDependencyError, PrecisionError
from ..runtime import ONEDNN_ISA_VARIABLES, single_thread
from .backends import Engine
from .checks import FP32_TOLERANCE, LOW_PRECISION_TOLERANCE, example_image, input_channels
from .onnx import _deploy_copy, _quiet_fds, second_check_size

log = logging.getLogger(__name__)

# OpenVINO's names for the float precisions it is asked to run (``INFERENCE_PRECISION_HINT``).
OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
# int8 is checked against the float32 eager forward as a PSNR of the int8 output against it on the example, in dB
# over [0,1] (max abs would be decided by a single pixel). The bound catches a broken graph (a quantizer that lost
# its range), not a costly one: measured on the 64x64 example with the default settings, RLFN gives 47.6 dB, LSANet
# 42.7 dB and SPAN 33.6 dB against fp32; their cost against HR (0.6-3.6 dB on Set5, docs/deploy.md "OpenVINO") is
# stated there, not hidden by this check.
INT8_MIN_PSNR_DB = 25.0
# The layer groups int8 keeps in float (measured: docs/deploy.md, "OpenVINO", int8 settings):
# ``first_conv``: the convolution that reads the image; ``upsampler``: the convolution(s) whose output reaches the
# network's output without another convolution (the pixel-shuffle conv and the global residual's last conv);
# ``gates``: the element-wise products with a sigmoid input, directly or through an offset (ESA / CCA / SPAN's
# ``sigmoid(x) - 0.5`` attention), whose inputs NNCF would otherwise quantize; ``eltwise``: every element-wise
# operation of two activations (residual sums, gates), so that only convolution inputs are quantized.
INT8_GROUPS = ("first_conv", "upsampler", "gates", "eltwise")
_ELTWISE = ("Add", "Subtract", "Multiply", "Divide", "Maximum", "Minimum")
INT8_KEEP_FLOAT: tuple[str, ...] = INT8_GROUPS


def require_openvino(need_nncf: bool = False) -> Any:
    """The ``openvino`` module (and, with ``need_nncf``, a check that NNCF is installed), else one clear line."""
    import importlib.util

    for module, why in (("openvino", "--backend openvino"), *((("nncf", "--backend openvino --precision int8"),)
                                                               if need_nncf else ())):
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError(f"{why} needs the {module} package: pip install 'effsr[openvino]'")
    import openvino

    return openvino


@contextlib.contextmanager
def uncapped_isa() -> Iterator[None]:
    """Run the block without ``$ONEDNN_MAX_CPU_ISA`` / ``$DNNL_MAX_CPU_ISA`` in the environment (restored after).

    OpenVINO's CPU plugin carries its own oneDNN, which reads the cap when the plugin first compiles. The cap is
    meant for PyTorch's oneDNN (the test suite sets AVX2 so that float sums match the references); the plugin, which
    picks its kernels from CPUID itself, must not see it (docs/deploy.md, "OpenVINO"). PyTorch's oneDNN read the
    variable at its first convolution, before this block (the engine runs the eager forward first), so removing it
    here does not change PyTorch's kernels.
    """
    saved = {k: os.environ.pop(k) for k in ONEDNN_ISA_VARIABLES if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _warm_torch_onednn() -> None:
    """Make PyTorch's oneDNN read its environment (the ISA cap) now, before :func:`uncapped_isa` removes it."""
    with torch.inference_mode(), single_thread():
        F.conv2d(torch.zeros(1, 8, 8, 8), torch.zeros(8, 8, 3, 3), padding=1)


def _plugin_reason(exc: BaseException) -> str:
    """The informative line of an OpenVINO exception (its text is a stack of "Exception from <file>" lines above
    the failed check)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith("Exception from")]
    return (useful or lines or [type(exc).__name__])[-1]


@dataclass(frozen=True)
class Int8Settings:
    """How :func:`quantize_int8` quantizes: NNCF's preset, the layer groups kept in float (:data:`INT8_GROUPS`),
    fast bias correction, how many calibration images, and NNCF's overflow fix (7-bit weights, for CPUs without
    VNNI whose int8 dot products saturate)."""

    preset: str = "mixed"  # "mixed" (symmetric weights, asymmetric activations) or "performance" (both symmetric)
    keep_float: tuple[str, ...] = INT8_KEEP_FLOAT
    fast_bias_correction: bool = True
    subset_size: int = 300
    # "enable" (7-bit weights everywhere), "disable" or "first_layer" (NNCF's default); None: "disable" on a CPU with
    # VNNI (no saturation to avoid), else "enable" (:func:`overflow_fix_for_this_cpu`). Measured, Set5 RGB cost with
    # effsr's float groups: without VNNI "enable" was 0.25-0.26 dB better on RLFN than NNCF's default; with VNNI
    # (AVX-512 VNNI, 2026-12-04) "disable" was 0.17-0.65 dB better than "enable" on RLFN, LSANet, IFADNet and SPAN
    # (Set5; 0.07-0.48 dB on Set14; benchmarks/results/openvino_int8_vnni_*.json).
    overflow_fix: str | None = None


def overflow_fix_for_this_cpu() -> str:
    """NNCF's overflow fix for this CPU: "disable" with VNNI (int32 accumulation), else "enable" (7-bit weights keep
    the int16 pair sums of ``vpmaddubsw`` from saturating). The real flags, not ``$EFFSR_CPU_FLAGS``: the choice
    changes the numbers, and OpenVINO's kernels follow the real CPU."""
    from .precision import cpu_supports, real_cpu_flags

    return "disable" if cpu_supports("int8", real_cpu_flags()) else "enable"


def sensitive_nodes(ov_model: Any, groups: Sequence[str] = INT8_KEEP_FLOAT) -> list[str]:
    """The friendly names of the nodes of ``ov_model`` in the given layer groups (:data:`INT8_GROUPS`), for NNCF's
    ignored scope. Found from the graph's structure, so they hold for every architecture."""
    unknown = sorted(set(groups) - set(INT8_GROUPS))
    if unknown:
        raise ValueError(f"unknown int8 layer groups {unknown} (choose from {', '.join(INT8_GROUPS)})")
    ops = list(ov_model.get_ordered_ops())
    convs = [op for op in ops if op.get_type_name() in ("Convolution", "GroupConvolution")]
    names: list[str] = []
    if "first_conv" in groups and convs:
        names.append(convs[0].get_friendly_name())
    if "upsampler" in groups:
        names += [op.get_friendly_name() for op in _last_convs(ov_model)]
    if "gates" in groups:
        names += [op.get_friendly_name() for op in ops if op.get_type_name() == "Multiply" and any(
            _from_sigmoid(_producer(op, i)) for i in range(op.get_input_size()))]
    if "eltwise" in groups:
        names += [op.get_friendly_name() for op in ops if op.get_type_name() in _ELTWISE and op.get_input_size() == 2
                  and not any(_producer(op, i).get_type_name() == "Constant" for i in range(2))]
    return list(dict.fromkeys(names))


def _producer(op: Any, index: int) -> Any:
    return op.input_value(index).get_node()


def _from_sigmoid(op: Any, depth: int = 2) -> bool:
    """Whether ``op`` is a Sigmoid, or an element-wise op with a constant applied to one (``sigmoid(x) - 0.5``)."""
    if op.get_type_name() == "Sigmoid":
        return True
    if depth == 0 or op.get_type_name() not in _ELTWISE:
        return False
    inputs = [_producer(op, i) for i in range(op.get_input_size())]
    consts = [p for p in inputs if p.get_type_name() == "Constant"]
    return len(consts) == len(inputs) - 1 and any(_from_sigmoid(p, depth - 1) for p in inputs if p not in consts)


def _last_convs(ov_model: Any) -> list[Any]:
    """The convolutions reached first when walking back from each output (through non-convolution nodes)."""
    found: dict[str, Any] = {}
    seen: set[str] = set()
    stack = [r for r in ov_model.get_results()]
    while stack:
        op = stack.pop()
        name = op.get_friendly_name()
        if name in seen:
            continue
        seen.add(name)
        if op.get_type_name() in ("Convolution", "GroupConvolution"):
            found[name] = op
            continue
        if op.get_type_name() in ("Constant", "Parameter"):
            continue
        stack += [_producer(op, i) for i in range(op.get_input_size())]
    return list(found.values())


def quantize_int8(ov_model: Any, calibration: Sequence[np.ndarray], settings: Int8Settings | None = None) -> Any:
    """``ov_model`` quantized to int8 by NNCF's post-training quantization (``nncf.quantize``): per-channel
    symmetric weights, activation ranges from the calibration arrays, the :class:`Int8Settings` groups in float."""
    require_openvino(need_nncf=True)
    import nncf

    s = settings or Int8Settings()
    preset = {"mixed": nncf.QuantizationPreset.MIXED, "performance": nncf.QuantizationPreset.PERFORMANCE}[s.preset]
    overflow = {"enable": nncf.OverflowFix.ENABLE, "disable": nncf.OverflowFix.DISABLE,
                "first_layer": nncf.OverflowFix.FIRST_LAYER}[s.overflow_fix or overflow_fix_for_this_cpu()]
    names = sensitive_nodes(ov_model, s.keep_float)
    ignored = nncf.IgnoredScope(names=names) if names else None
    with _quiet_nncf(), _quiet_fds():  # its progress bars would break the command line's own output
        return nncf.quantize(ov_model, nncf.Dataset(list(calibration)), preset=preset,
                             target_device=nncf.TargetDevice.CPU, subset_size=min(s.subset_size, len(calibration)),
                             fast_bias_correction=s.fast_bias_correction, ignored_scope=ignored,
                             advanced_parameters=nncf.AdvancedQuantizationParameters(overflow_fix=overflow))


@contextlib.contextmanager
def _quiet_nncf() -> Iterator[None]:
    """NNCF logs at INFO and draws progress bars on stdout; keep them to warnings."""
    nncf_log = logging.getLogger("nncf")
    before = nncf_log.level
    nncf_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        nncf_log.setLevel(before)


class OpenVinoEngine(Engine):
    """The model converted by OpenVINO and compiled for its CPU plugin (module docstring): fp32, bf16 or int8.

    Attributes after preparation: ``dynamic`` (one converted graph for every input size, else one per shape),
    ``precision``, ``inference_precision`` (what the CPU plugin reports it runs: ``f32`` or ``bf16``),
    ``max_abs_vs_eager`` and, for int8, ``psnr_vs_eager_db`` on the example (with ``verify``), ``int8_settings``
    and ``kept_float`` (the node names left in float).
    """

    backend = "openvino"

    def __init__(self, model: nn.Module, *, device: torch.device, threads: int | None = None,
                 precision: str = "fp32", example_size: tuple[int, int] = (64, 64), calibration: Any = None,
                 verify: bool = True, int8_settings: Int8Settings | None = None) -> None:
        device = torch.device(device)
        if device.type != "cpu":
            raise DeviceError(f"the openvino backend runs on cpu only (OpenVINO's CPU plugin), not {device.type}; "
                              f"pass --device cpu, or use --backend fast on {device.type}")
        if precision not in OV_PRECISION:
            raise PrecisionError(f"the openvino backend runs {', '.join(OV_PRECISION)}, not {precision}")
        ov = require_openvino(need_nncf=precision == "int8")
        super().__init__(model, device=device, dtype=torch.float32)
        self._ov = ov
        self._core = ov.Core()
        if precision == "bf16" and "BF16" not in self.capabilities().split():
            raise PrecisionError(f"OpenVINO's CPU plugin finds no native bfloat16 on this CPU (its capabilities: "
                                 f"{self.capabilities()}), so it would run f32, not bf16; use --precision fp32")
        self.precision = precision
        self.threads = int(threads or torch.get_num_threads())
        self.int8_settings = (int8_settings or Int8Settings()) if precision == "int8" else None
        self.net = _deploy_copy(model)
        self.channels = input_channels(self.net)
        self._calibration = calibration
        self._compiled: dict[tuple[Any, ...], Any] = {}  # shape or ("perf_count", *shape) -> (model, request)
        self._graphs: dict[tuple[int, ...] | None, Any] = {}
        self.kept_float: list[str] = []
        self.max_abs_vs_eager: float | None = None
        self.psnr_vs_eager_db: float | None = None
        _warm_torch_onednn()
        h, w = self.tiling.padded_size(*(int(s) for s in example_size))
        example = example_image(self.channels, h, w)
        graph = self._convert(example, dynamic=True)
        self.dynamic = graph is not None and self._reproduces(graph, [(h, w), second_check_size((h, w),
                                                                                                self.tiling)])
        if self.dynamic:
            self._graphs = {None: self._lower(graph, None)}
        else:
            # Shapes at which the checked graph was exact keep it (lowered to the engine's precision).
            self._graphs = {k: self._lower(g, k) for k, g in self._graphs.items()}
            log.info("openvino: the converted graph of %s depends on the input size; converting it per shape",
                     type(model).__name__)
        compiled, _ = self._compiled_for(tuple(example.shape))
        self.inference_precision = _type_name(compiled.get_property("INFERENCE_PRECISION_HINT"))
        if precision == "bf16" and self.inference_precision != "bf16":
            raise PrecisionError(f"OpenVINO's CPU plugin runs {self.inference_precision}, not bf16, on this CPU; use "
                                 f"--precision fp32")
        if verify:
            self._verify(example)

    # ---- conversion, lowering, compilation -----------------------------------------------------------------

    def _convert(self, example: torch.Tensor, *, dynamic: bool) -> Any:
        """``self.net`` converted by OpenVINO at ``example``'s shape (dynamic batch/H/W or that static shape);
        None if the converter fails on it."""
        shape = [-1, self.channels, -1, -1] if dynamic else list(example.shape)
        try:
            with single_thread(), torch.no_grad():
                return self._ov.convert_model(self.net, example_input=example,
                                              input=[self._ov.PartialShape(shape)])
        except Exception as exc:  # the converter cannot follow this architecture
            if dynamic:
                log.info("openvino: dynamic conversion of %s failed (%s: %s)", type(self.net).__name__,
                         type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else "")
                return None
            raise BackendError(f"OpenVINO cannot convert {type(self.net).__name__} at {tuple(example.shape)}: "
                               f"{type(exc).__name__}: {one_line_of(exc)}") from exc

    def _lower(self, graph: Any, shape: tuple[int, ...] | None) -> Any:
        """The graph in the engine's precision: int8 quantizes it (calibration images fitted to ``shape`` for a
        static graph); the float precisions are a compile option."""
        if self.precision != "int8":
            return graph
        assert self.int8_settings is not None
        from .calibration import calibration_images

        images = calibration_images(self._calibration)
        arrays = [_fit(img, shape, self.tiling.padded_size).numpy() for img in images]
        self.kept_float = sensitive_nodes(graph, self.int8_settings.keep_float)
        return quantize_int8(graph, arrays, self.int8_settings)

    def _compile(self, graph: Any, precision: str, *, perf_count: bool = False) -> tuple[Any, Any]:
        """(compiled model, an infer request of it) for ``graph`` at ``precision``; ``perf_count`` turns on the
        plugin's per-node performance counters."""
        config = {"INFERENCE_NUM_THREADS": self.threads, "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_PRECISION_HINT": OV_PRECISION[precision]}
        if perf_count:
            config["PERF_COUNT"] = True
        with uncapped_isa():
            try:
                compiled = self._core.compile_model(graph, "CPU", config)
            except RuntimeError as exc:  # the plugin rejects a graph it converted (a plugin limitation, not the user's)
                alternative = "--backend fast" + (" --precision int8" if precision == "int8" else "")
                raise BackendError(f"OpenVINO's CPU plugin cannot compile the {precision} graph of "
                                   f"{type(self.net).__name__} on this CPU ({_plugin_reason(exc)}); use "
                                   f"{alternative}") from exc
        return compiled, compiled.create_infer_request()

    def _compiled_for(self, shape: tuple[int, ...]) -> tuple[Any, Any]:
        """The compiled model (and its infer request) for one static input shape, cached."""
        if shape not in self._compiled:
            if self.dynamic:
                graph = self._graphs[None].clone()
                graph.reshape(self._ov.PartialShape(list(shape)))
            else:
                if shape not in self._graphs:
                    example = _example_like(shape)
                    self._graphs[shape] = self._lower(self._convert(example, dynamic=False), shape)
                graph = self._graphs[shape]
            self._compiled[shape] = self._compile(graph, self.precision)
        return self._compiled[shape]

    def node_counters(self, x: torch.Tensor) -> list[Any]:
        """One forward of ``x`` through :meth:`profiled_request`: the plugin's per-node counters (``ProfilingInfo``:
        node name, type, kernel, time), as effsr.deploy.node_times reads them."""
        request = self.profiled_request(tuple(x.shape))
        _infer(request, x)
        return list(request.profiling_info)

    def profiled_request(self, shape: tuple[int, ...]) -> Any:
        """An infer request of this engine's graph for ``shape``, compiled like :meth:`run`'s (same precision and
        threads) with the per-node performance counters on (``request.profiling_info``)."""
        key = ("perf_count", *shape)
        if key not in self._compiled:
            self._compiled_for(shape)  # converts (and for int8 quantizes) the graph for this shape if needed
            graph = self._graphs[None].clone() if self.dynamic else self._graphs[shape]
            if self.dynamic:
                graph.reshape(self._ov.PartialShape(list(shape)))
            self._compiled[key] = self._compile(graph, self.precision, perf_count=True)
        return self._compiled[key][1]

    def capabilities(self) -> str:
        """OpenVINO's CPU plugin's ``OPTIMIZATION_CAPABILITIES`` (``FP32 BF16 INT8 ...``)."""
        with uncapped_isa():
            return " ".join(self._core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))

    # ---- checks -----------------------------------------------------------------------------------------------

    def _reference(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), single_thread():
            return self.net(x)

    def _reproduces(self, graph: Any, sizes: Sequence[tuple[int, int]]) -> bool:
        """Whether the (float) converted graph equals the eager forward within FP32_TOLERANCE at every size."""
        for size in sizes:
            x = example_image(self.channels, *size, seed=7)
            g = graph.clone()
            g.reshape(self._ov.PartialShape(list(x.shape)))
            try:
                compiled = self._compile(g, "fp32")
                y = _infer(compiled[1], x)
            except Exception as exc:  # the plugin rejects the shape: the graph is not shape-generic
                log.info("openvino: the dynamic graph fails at %s: %s", size, type(exc).__name__)
                return False
            ref = self._reference(x)
            if y.shape != ref.shape or not float((y - ref).abs().max()) <= FP32_TOLERANCE:
                return False
            # Exact at this shape whatever the other sizes give: keep the graph (and, in fp32, the compiled model).
            self._graphs.setdefault(tuple(x.shape), g)
            if self.precision == "fp32":
                self._compiled.setdefault(tuple(x.shape), compiled)
        return True

    def _verify(self, example: torch.Tensor) -> None:
        y = self.run(example)
        ref = self._reference(example)
        err = float((y - ref).abs().max())
        self.max_abs_vs_eager = err
        what = type(self.net).__name__
        if self.precision == "int8":
            mse = float(((y.double() - ref.double()) ** 2).mean())
            self.psnr_vs_eager_db = math.inf if mse == 0 else -10 * math.log10(mse)
            ok = self.psnr_vs_eager_db >= INT8_MIN_PSNR_DB
            got, bound = f"PSNR {self.psnr_vs_eager_db:.1f} dB", f"< {INT8_MIN_PSNR_DB:.0f} dB"
        else:
            tol = FP32_TOLERANCE if self.precision == "fp32" else LOW_PRECISION_TOLERANCE[torch.bfloat16]
            ok = err <= tol
            got, bound = f"max abs {err:.2e}", f"> {tol:.0e}"
        if not ok:
            log.warning("openvino %s: %s differs from its eager forward (%s %s)", self.precision, what, got, bound)
            raise BackendError(f"the openvino {self.precision} graph of {what} differs from its eager forward on the "
                               f"example ({got}, {bound}); use --backend fast or another --precision")

    # ---- running ------------------------------------------------------------------------------------------------

    def run(self, x: torch.Tensor) -> torch.Tensor:
        return _infer(self._compiled_for(tuple(x.shape))[1], x).to(self.device)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, precision={self.precision}, dynamic={self.dynamic}, threads={self.threads}"


def _infer(request: Any, x: torch.Tensor) -> torch.Tensor:
    """One forward through an infer request: float32 NCHW tensor in and out (a copy: the request reuses its
    output buffer)."""
    request.infer({0: x.detach().cpu().float().contiguous().numpy()}, share_inputs=True)
    return torch.from_numpy(np.array(request.get_output_tensor(0).data, copy=True))


def _example_like(shape: tuple[int, ...]) -> torch.Tensor:
    n, c, h, w = shape
    return torch.cat([example_image(c, h, w, seed=i) for i in range(n)])


def _fit(img: torch.Tensor, shape: tuple[int, ...] | None, padded: Any) -> torch.Tensor:
    """A calibration image at the graph's input size: any size the model takes for a dynamic graph (padded to its
    size requirement), else centre-cropped and reflect-padded to the static (H, W)."""
    if shape is None:
        h, w = padded(*img.shape[-2:])
    else:
        h, w = shape[-2:]
    img = img[..., : h, : w]
    while img.shape[-2] < h or img.shape[-1] < w:  # reflect padding reaches at most the edge length per step
        ph, pw = min(h - img.shape[-2], img.shape[-2] - 1), min(w - img.shape[-1], img.shape[-1] - 1)
        img = F.pad(img, (0, pw, 0, ph), mode="reflect")
    return img.contiguous()


def _type_name(value: Any) -> str:
    """OpenVINO's short name of an element type property (``f32``, ``bf16``), whatever form the binding returns."""
    return str(value.get_type_name() if hasattr(value, "get_type_name") else value)


def one_line_of(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""
