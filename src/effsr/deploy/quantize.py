"""int8 on CPU: post-training static quantization calibrated on images, with the layers that int8 hurts most kept
in float32, and the int8 file that carries it.

The stack is torch.ao's FX graph mode quantization with the ``x86`` backend (:data:`QUANT_ENGINE`): the
re-parameterized deploy model is traced, observers are inserted, calibrated on images
(:func:`effsr.deploy.calibration.calibration_images`) and the graph is converted to real int8 kernels
(``torch.ao.nn.quantized.Conv2d`` and its fused conv+ReLU form, fbgemm/oneDNN). Activations are per-tensor affine
uint8 (``HistogramObserver``) on the finest grid this CPU's kernels compute exactly (:func:`exact_activation_bits`:
all 8 bits with VNNI, else the 7-bit range, ``reduce_range=True``); weights are per-channel symmetric int8. Why this
stack and not the others is measured in benchmarks/RESULTS.md ("int8: quality cost").

Which layers stay float is a measured choice (:func:`search_policy`), not a fixed list: the observed graph is
simulated in float with every quantization point on (activations fake-quantized with the calibrated scale and
zero-point, weights per channel), each candidate node (a module or function call next to an observer) is kept
float alone and the recovery of fidelity is measured, and the nodes are then kept float in the order of their
recovery until the *real* int8 graph reaches :data:`DEFAULT_FIDELITY_DB` against the float output on the
calibration images. The result, a list of ``torch.fx`` node names, is the *float-layer policy*. Searching takes
minutes (one float forward per candidate and step), so the zoo's policies are searched once
(``benchmarks/int8_quality.py``) and shipped in ``int8_policies.json``; a model without one is quantized whole
unless a search is asked for.

An int8 file (:func:`save_int8` / :func:`load_int8`) is one safetensors file: the float deploy weights under their
usual keys, the observers' statistics under ``int8.``, and the policy and its provenance in the ``effsr``
metadata (docs/deploy.md, "int8"). Loading rebuilds the graph from these without calibration images and without
unpickling anything.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import warnings
from collections import defaultdict
from collections.abc import Collection, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from ..errors import InvalidValueError, PrecisionError, WeightsError
from ..runtime import single_thread
from ..weights import INT8_ATTR, INT8_PREFIX, Int8Payload, save_safetensors
from .backends import Engine
from .checks import example_image, input_channels
from .reparam import cast_plain_tensors, reparameterize_model

log = logging.getLogger(__name__)

__all__ = [
    "ACTIVATION_BITS",
    "DEFAULT_FIDELITY_DB",
    "Int8Engine",
    "exact_activation_bits",
    "load_int8",
    "prepare_int8",
    "save_int8",
    "search_policy",
]

FORMAT = "effsr-int8"
FORMAT_VERSION = 1
# torch's "x86" quantized engine (it picks fbgemm or oneDNN per layer) with its qconfig (per-channel symmetric int8
# weights, per-tensor uint8 activations), on the activation grid of exact_activation_bits.
QUANT_ENGINE = "x86"
# Activation grids, in bits of uint8. The full 8 bits (0..255) need int8 dot products that accumulate in int32: VNNI's
# vpdpbusd. Without VNNI, fbgemm and oneDNN multiply u8 x s8 with vpmaddubsw, whose int16 sum of two products
# saturates for full-range activations (oneDNN's "Int8 Computation Aspects" guide), so there the range is 7 bits
# (torch's reduce_range=True). Measured on a CPU without VNNI: RLFN's full-range int8 graph was 16.8 dB from the same
# quantization simulated in float, against 31.0 dB at 7 bits, which the kernels then match.
ACTIVATION_BITS = (7, 8)
# The policy search's target: PSNR of the int8 output against the float32 output on the calibration images, in dB.
# The budget is a 0.05 dB PSNR cost. If the int8 error is independent of the float error, the cost is
# 10 log10(1 + MSE_int8_vs_fp32 / MSE_fp32_vs_HR); the most demanding set is Set5, where the seed models and SPAN
# reach 29.9-30.2 dB RGB in float32 (benchmarks/results/int8_quality.json), so 0.05 dB there needs
# MSE_int8_vs_fp32 <= 1.16 % of 10^(-30.2/10), a fidelity of 30.2 + 19.4 = 49.6 dB on Set5-like images; 52 dB leaves
# room for calibration crops that are easier than Set5 (RLFN at 52.6 dB measured a 0.043 dB cost on Set5).
DEFAULT_FIDELITY_DB = 52.0
# Verification at preparation: the int8 graph against the same quantization simulated in float
# (torch.fake_quantize_*) on the example image, which checks the int8 kernels, not the quantization error (that is
# measured against float32 and reported). Measured with nothing kept float: 28.0 dB (MDRN-S) to 35 dB (RLFN) on
# working kernels (the simulation does not reproduce every kernel's rounding), 16.8 dB for RLFN with saturating int16
# pair sums (full-range activations on a CPU without VNNI): the bound sits between, and a value below it is a warning.
VERIFY_FIDELITY_DB = 22.0
# How many extra real conversions the search may spend when the simulated choice falls short on the real graph.
MAX_REAL_STEPS = 8
_POLICY_FILE = Path(__file__).with_name("int8_policies.json")


# ------------------------------------------------------------------------------------------------ configuration


def _quiet() -> Any:
    """torch.ao's FX flow warns on every call that it is deprecated in favour of torchao's PT2E flow (not a
    dependency here; the choice is explained in RESULTS.md): one warning per process is enough."""
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization.*deprecated.*")
    # effsr.deploy.precision has checked for VNNI before any int8 graph is built.
    warnings.filterwarnings("ignore", message=r".*reduce_range of false may have accuracy issues.*")
    # The x86 qconfig asks its observers for the 7-bit range through reduce_range (the range chosen in
    # qconfig_mapping), and torch 2.13 flags every quantized tensor it creates as a deprecated API (torch.ao is the
    # stack chosen; RESULTS.md says why): facts about torch, nothing a user can act on.
    warnings.filterwarnings("ignore", message=r".*Please use quant_min and quant_max.*")
    warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions.*deprecated.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.ao\..*")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.ao\..*")
    return ctx


@contextmanager
def _ao() -> Any:
    ctx = _quiet()
    try:
        yield
    finally:
        ctx.__exit__(None, None, None)


def use_quant_engine() -> None:
    """Select oneDNN for torch's quantized kernels (process-wide; weights are packed for the engine at conversion)."""
    if QUANT_ENGINE not in torch.backends.quantized.supported_engines:
        raise PrecisionError(f"this PyTorch build has no {QUANT_ENGINE} quantized engine "
                             f"({', '.join(torch.backends.quantized.supported_engines)}); use --precision fp32")
    torch.backends.quantized.engine = QUANT_ENGINE


def exact_activation_bits() -> int:
    """8 when this CPU has VNNI (its real ``/proc/cpuinfo`` flags, not ``$EFFSR_CPU_FLAGS``) and oneDNN is not capped
    below it (``$ONEDNN_MAX_CPU_ISA``), else 7: the finest activation grid whose int8 kernels cannot saturate here
    (:data:`ACTIVATION_BITS`)."""
    from ..runtime import ONEDNN_ISAS_WITHOUT_VNNI, onednn_isa_cap
    from .precision import cpu_supports, real_cpu_flags

    if not cpu_supports("int8", real_cpu_flags()) or onednn_isa_cap() in ONEDNN_ISAS_WITHOUT_VNNI:
        return 7
    return 8


def _activation_bits(bits: int | None) -> int:
    """``bits`` checked against what this CPU computes exactly (None: :func:`exact_activation_bits`)."""
    exact = exact_activation_bits()
    if bits is None:
        return exact
    if bits not in ACTIVATION_BITS:
        raise InvalidValueError(f"activation bits must be one of {', '.join(map(str, ACTIVATION_BITS))}, not {bits}")
    if bits > exact:
        raise PrecisionError(f"{bits}-bit int8 activations need a CPU with VNNI and oneDNN not capped below it "
                             f"($ONEDNN_MAX_CPU_ISA); this one computes {exact} bits exactly: use {exact} bits")
    return bits


def qconfig_mapping(qat: bool = False, bits: int = 7) -> Any:
    """torch.ao's default mapping for the x86 backend (HistogramObserver uint8 activations, per-channel symmetric
    int8 weights; for QAT the fused moving-average fake quantizers; fixed qparams for sigmoid/tanh/softmax), with
    its activations on the ``bits`` grid (7: torch's reduce_range=True; 8: the full uint8 range)."""
    from torch.ao.quantization import get_default_qat_qconfig_mapping, get_default_qconfig_mapping

    mapping = get_default_qat_qconfig_mapping(QUANT_ENGINE) if qat else get_default_qconfig_mapping(QUANT_ENGINE)
    if bits == 7:
        return mapping
    from torch.ao.quantization.fake_quantize import FusedMovingAvgObsFakeQuantize
    from torch.ao.quantization.observer import HistogramObserver, MovingAverageMinMaxObserver

    seven = mapping.global_qconfig.activation
    full = (FusedMovingAvgObsFakeQuantize.with_args(observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=255,
                                                    reduce_range=False)
            if qat else HistogramObserver.with_args(reduce_range=False))
    # Every entry that shares the global activation (conv transposes, layer norms) moves with it; the fixed-qparams
    # ones (sigmoid, tanh, softmax) already span 0..255.
    mapping.set_global(mapping.global_qconfig._replace(activation=full))
    for key, qc in list(mapping.object_type_qconfigs.items()):
        if qc is not None and qc.activation is seven:
            mapping.set_object_type(key, qc._replace(activation=full))
    return mapping


def qconfig_description(qat: bool = False, bits: int = 7) -> str:
    grid = "reduce_range=True: 7 bits" if bits == 7 else "full range: 8 bits"
    if qat:
        return ("torch.ao x86 QAT qconfig: activations FusedMovingAvgObsFakeQuantize(MovingAverageMinMaxObserver, "
                f"quint8, {grid}, per tensor affine); weights per-channel symmetric qint8 fake quant; fixed "
                "qparams for sigmoid/tanh")
    return (f"torch.ao x86 qconfig: activations HistogramObserver(quint8, {grid}, per tensor affine); "
            "weights PerChannelMinMaxObserver(qint8, per channel symmetric); fixed qparams for sigmoid/tanh")


def _module(root: nn.Module, target: str) -> nn.Module:
    # Not named_modules(): torch.ao shares one observer between names, and named_modules() lists it once.
    return root.get_submodule(target)


def _backend_config() -> Any:
    from torch.ao.quantization.backend_config import get_native_backend_config

    return get_native_backend_config()  # torch.ao's default for the fbgemm/x86 engines


# ------------------------------------------------------------------------------------------------ deploy model


def deploy_model(model: nn.Module) -> nn.Module:
    """The float deploy form that gets quantized: re-parameterized copy, eval, float32 on CPU, explicit padding."""
    m = reparameterize_model(model).eval().to("cpu", torch.float32)
    cast_plain_tensors(m, torch.device("cpu"), torch.float32)
    for mod in m.modules():
        # Quantized activations run out of place (quantized::leaky_relu warns on every call otherwise).
        if isinstance(getattr(mod, "inplace", None), bool):
            mod.inplace = False
        # Quantized convolutions take integer padding only; 'same' with stride 1 and an odd effective kernel is
        # the symmetric padding k // 2 (the only 'same' the zoo declares: MDRN/MSN's ECCA).
        if isinstance(mod, nn.Conv2d) and isinstance(mod.padding, str):
            totals = [d * (k - 1) for d, k in zip(mod.dilation, mod.kernel_size, strict=True)]
            if mod.padding == "valid":
                mod.padding = (0, 0)
            elif not any(t % 2 for t in totals):
                mod.padding = tuple(t // 2 for t in totals)
    return m


def _non_traceable(model: nn.Module) -> list[str]:
    """Names of the submodules that take Python decisions from the input size (found as the fast backend finds
    them): they stay opaque float calls in the int8 graph."""
    from .passes.trace import _LeafTracer, _untraceable_leaf

    leaves: set[nn.Module] = set()
    for _ in range(64):
        try:
            _LeafTracer(leaves).trace(model)
            break
        except Exception:
            culprit = _untraceable_leaf(model, leaves)
            if culprit is None:
                raise
            leaves.add(culprit)
    names = {id(m): n for n, m in model.named_modules()}
    return sorted(names[id(m)] for m in leaves)


def _prepare(deploy: nn.Module, example: torch.Tensor, *, qat: bool, non_traceable: Sequence[str],
             bits: int) -> fx.GraphModule:
    """The observed graph (every node quantized, activations on the ``bits`` grid; the float-layer policy applies at
    conversion) of a copy of ``deploy``."""
    from torch.ao.quantization.fx.custom_config import PrepareCustomConfig
    from torch.ao.quantization.quantize_fx import prepare_fx, prepare_qat_fx

    config = PrepareCustomConfig().set_non_traceable_module_names(list(non_traceable))

    def run(mapping: Any) -> fx.GraphModule:
        model = _unshare(copy.deepcopy(deploy), non_traceable)
        with _ao():
            if qat:
                return prepare_qat_fx(model.train(), mapping, (example,), prepare_custom_config=config,
                                      backend_config=_backend_config())
            return prepare_fx(model.eval(), mapping, (example,), prepare_custom_config=config,
                              backend_config=_backend_config())

    first = run(qconfig_mapping(qat, bits))
    first.meta[_BITS] = bits
    # Multiplying or dividing by a Python number (RLFN's x * 255 and / 255) keeps its input's observer in torch.ao,
    # so one observer would see both ranges (0..1 and 0..255) and quantize the input to {0, 1}. These nodes stay
    # float from the start (their neighbours then get observers of their own).
    fixed = _scalar_nodes(first)
    prepared = run(_convert_mapping(first, fixed, qat)) if fixed else first
    prepared.meta[_FIXED_FLOAT] = fixed
    prepared.meta[_BITS] = bits
    return prepared


_FIXED_FLOAT = "effsr_fixed_float_nodes"
_BITS = "effsr_activation_bits"


def activation_bits_of(prepared: fx.GraphModule) -> int:
    """The activation grid (bits) an observed graph was prepared with."""
    return int(prepared.meta.get(_BITS, 7))


def _unshare(model: nn.Module, non_traceable: Sequence[str]) -> nn.Module:
    """``model`` with every parameter-free module that its forward calls more than once (RLFN's one LeakyReLU per
    block, called three times) replaced by a copy per call: torch.ao converts a module into one quantized module with
    one output scale, which would serve three different ranges."""
    from .passes.trace import _LeafTracer

    leaves = {model.get_submodule(n) for n in non_traceable}
    graph = _LeafTracer(leaves).trace(model)
    seen: dict[str, int] = defaultdict(int)
    for node in graph.nodes:
        if node.op == "call_module":
            seen[node.target] += 1
    shared = {t for t, n in seen.items() if n > 1 and not any(True for _ in model.get_submodule(t).parameters())
              and not any(True for _ in model.get_submodule(t).buffers())}
    if not shared:
        return model
    count: dict[str, int] = defaultdict(int)
    for node in graph.nodes:
        if node.op == "call_module" and node.target in shared:
            count[node.target] += 1
            if count[node.target] > 1:
                parent, _, leaf = node.target.rpartition(".")
                name = f"{leaf}_call{count[node.target]}"
                owner = model.get_submodule(parent) if parent else model
                owner.add_module(name, copy.deepcopy(model.get_submodule(node.target)))
                node.target = f"{parent}.{name}" if parent else name
    return fx.GraphModule(model, graph, class_name=type(model).__name__)


def _scalar_nodes(prepared: fx.GraphModule) -> list[str]:
    """The function calls that multiply or divide a tensor by a Python number."""
    import operator

    ops = {operator.mul, operator.truediv, operator.imul, operator.itruediv, torch.mul, torch.div}
    return [n.name for n in prepared.graph.nodes if n.op == "call_function" and n.target in ops
            and any(isinstance(a, (int, float)) for a in n.args)]


def _attrs(prepared: fx.GraphModule) -> Any:
    return prepared.meta["_observed_graph_module_attrs"]


def _is_observer(module: nn.Module) -> bool:
    from torch.ao.quantization.fake_quantize import FakeQuantizeBase
    from torch.ao.quantization.observer import ObserverBase

    return isinstance(module, (ObserverBase, FakeQuantizeBase))


def _convert_mapping(prepared: fx.GraphModule, float_nodes: Collection[str], qat: bool) -> Any:
    """The prepare mapping with qconfig None for every node of ``float_nodes`` (modules by name, function calls by
    their enclosing module, type and order, exactly as torch.ao counts them at conversion)."""
    mapping = qconfig_mapping(qat, activation_bits_of(prepared))
    scope = _attrs(prepared).node_name_to_scope
    counters: dict[str, dict[Any, int]] = defaultdict(lambda: defaultdict(int))
    for node in prepared.graph.nodes:
        if node.op == "call_function":
            path = scope[node.name][0]
            index = counters[path][node.target]
            counters[path][node.target] += 1
            if node.name in float_nodes:
                mapping.set_module_name_object_type_order(path, node.target, index, None)
        elif node.op == "call_module" and node.name in float_nodes and not _is_observer(_module(prepared, node.target)):
            mapping.set_module_name(node.target, None)
    return mapping


def _convert(prepared: fx.GraphModule, float_nodes: Collection[str], qat: bool) -> fx.GraphModule:
    """The int8 graph of a copy of ``prepared`` with ``float_nodes`` left in float32."""
    from torch.ao.quantization.quantize_fx import convert_fx

    model = copy.deepcopy(prepared).eval()
    every = {*float_nodes, *prepared.meta.get(_FIXED_FLOAT, ())}
    with _ao():
        return convert_fx(model, qconfig_mapping=_convert_mapping(prepared, every, qat),
                          backend_config=_backend_config())


def candidates(prepared: fx.GraphModule) -> list[str]:
    """The nodes a policy may keep float: module and function calls that torch.ao quantizes and that touch an
    observer (produce or consume a quantized tensor), in graph order."""
    qconfigs = _attrs(prepared).node_name_to_qconfig

    def observer(n: Any) -> bool:
        return isinstance(n, fx.Node) and n.op == "call_module" and _is_observer(_module(prepared, n.target))

    out = []
    for node in prepared.graph.nodes:
        if node.op not in ("call_module", "call_function") or qconfigs.get(node.name) is None:
            continue
        if node.op == "call_module" and _is_observer(_module(prepared, node.target)):
            continue
        if any(observer(a) for a in node.all_input_nodes) or any(observer(u) for u in node.users):
            out.append(node.name)
    return out


def quantized_layers(graph: nn.Module) -> dict[str, int]:
    """How many convolutions / linear layers of an int8 graph run int8 kernels and how many stay float."""
    import torch.ao.nn.quantized as nnq

    counts = {"int8_convs": 0, "float_convs": 0, "int8_linears": 0, "float_linears": 0}
    for mod in graph.modules():
        if isinstance(mod, nnq.Conv2d):
            counts["int8_convs"] += 1
        elif isinstance(mod, nn.Conv2d):
            counts["float_convs"] += 1
        elif isinstance(mod, nnq.Linear):
            counts["int8_linears"] += 1
        elif isinstance(mod, nn.Linear):
            counts["float_linears"] += 1
    return counts


# ------------------------------------------------------------------------------------------------ measuring


def _float_copy(prepared: fx.GraphModule) -> fx.GraphModule:
    """A copy of an observed graph that computes the float forward (every observer and fake quantizer, weights' ones
    included, replaced by an identity) and leaves the observers' statistics alone."""
    model = copy.deepcopy(prepared)
    for name, mod in list(model.named_modules(remove_duplicate=False)):
        if name and _is_observer(mod):
            _set_submodule(model, name, nn.Identity())
    return model.eval()


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


def _outputs(model: nn.Module, images: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    with torch.inference_mode():
        return [model(img).float().clamp(0, 1) for img in images]


def fidelity_db(outputs: Sequence[torch.Tensor], refs: Sequence[torch.Tensor]) -> float:
    """PSNR (dB, peak 1) of ``outputs`` against ``refs``, with the squared error pooled over all pixels."""
    se = sum(float((o.double() - r.double()).pow(2).sum()) for o, r in zip(outputs, refs, strict=True))
    n = sum(r.numel() for r in refs)
    return math.inf if se == 0 else 10 * math.log10(n / se)


class _FakeQuant(nn.Module):
    """An observer's quantization (its calibrated scale and zero point) applied in float, switchable."""

    def __init__(self, observer: nn.Module) -> None:
        super().__init__()
        scale, zero_point = observer.calculate_qparams()
        self.scale = float(scale.reshape(-1)[0])
        self.zero_point = int(zero_point.reshape(-1)[0])
        self.quant_min, self.quant_max = int(observer.quant_min), int(observer.quant_max)
        self.enabled = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled or not x.is_floating_point():
            return x
        return torch.fake_quantize_per_tensor_affine(x, self.scale, self.zero_point, self.quant_min, self.quant_max)


def _weighted_layer(module: nn.Module) -> nn.Module | None:
    """The conv/linear layer whose weights torch.ao quantizes in a call_module node: the module itself or the first
    part of a fused intrinsic module (conv+ReLU, conv+add); None for other modules (opaque ones stay float)."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        return module
    if type(module).__module__.startswith("torch.ao.nn.intrinsic") and isinstance(module, nn.Sequential):
        first = module[0]
        return first if isinstance(first, (nn.Conv2d, nn.Linear)) else None
    return None


class _Simulation:
    """The observed graph in float with every quantization point switchable, for measuring sensitivity quickly.

    An observer becomes a quantize/dequantize pair at conversion unless every node it connects is float
    (torch.ao's ``_replace_observer_with_quantize_dequantize_node``); weights are quantized per channel where their
    module is quantized. Both rules are reproduced here; the int8 kernels' own rounding is not (the search checks
    its result on the real graph).
    """

    def __init__(self, prepared: fx.GraphModule) -> None:
        self.model = copy.deepcopy(prepared).eval()
        self.qconfigs = dict(_attrs(prepared).node_name_to_qconfig)
        self.points: list[tuple[_FakeQuant, list[str]]] = []
        self.weights: dict[str, tuple[nn.Parameter, torch.Tensor, torch.Tensor]] = {}
        for node in list(self.model.graph.nodes):
            if node.op != "call_module":
                continue
            mod = _module(self.model, node.target)
            if isinstance(mod, (_FakeQuant, nn.Identity)):  # a shared observer, already replaced
                mod = None
            if mod is None or _is_observer(mod):
                if mod is None:
                    shared = _module(self.model, node.target)
                    if isinstance(shared, _FakeQuant):
                        self.points.append((shared, [n.name for n in (*node.all_input_nodes, *node.users)]))
                    continue
                if getattr(mod, "dtype", None) not in (torch.quint8, torch.qint8):
                    _set_submodule(self.model, node.target, nn.Identity())
                    continue
                point = _FakeQuant(mod)
                _set_submodule(self.model, node.target, point)
                self.points.append((point, [n.name for n in (*node.all_input_nodes, *node.users)]))
                continue
            qconfig = self.qconfigs.get(node.name)
            layer = _weighted_layer(mod)
            if qconfig is None or layer is None:
                continue
            observer = qconfig.weight()
            observer(layer.weight.detach())
            scale, zero_point = observer.calculate_qparams()
            with torch.no_grad():
                if getattr(observer, "ch_axis", None) is not None and scale.numel() > 1:
                    wq = torch.fake_quantize_per_channel_affine(
                        layer.weight, scale.float(), zero_point.to(torch.int32), observer.ch_axis,
                        observer.quant_min, observer.quant_max)
                else:
                    wq = torch.fake_quantize_per_tensor_affine(layer.weight, float(scale), int(zero_point),
                                                               observer.quant_min, observer.quant_max)
            self.weights[node.name] = (layer.weight, layer.weight.detach().clone(), wq.detach())

    def set_float(self, float_nodes: Collection[str]) -> None:
        def is_float(name: str) -> bool:
            return name in float_nodes or (name in self.qconfigs and self.qconfigs[name] is None)

        for point, _ in self.points:
            point.enabled = False
        for point, neighbours in self.points:  # a shared observer quantizes where any of its uses needs it
            point.enabled = point.enabled or not all(is_float(n) for n in neighbours)
        with torch.no_grad():
            for name, (param, w, wq) in self.weights.items():
                param.copy_(w if name in float_nodes else wq)

    def fidelity(self, float_nodes: Collection[str], images: Sequence[torch.Tensor],
                 refs: Sequence[torch.Tensor]) -> float:
        self.set_float(float_nodes)
        return fidelity_db(_outputs(self.model, images), refs)


@dataclass
class PolicySearch:
    """What :func:`search_policy` found: the float nodes (in the order they were chosen) and the measurements."""

    float_nodes: list[str]
    candidates: int
    fidelity_db: float  # the real int8 graph against float32, on the calibration images
    all_int8_fidelity_db: float  # the real int8 graph with nothing kept float
    target_db: float
    gains_db: dict[str, float]  # simulated recovery of each chosen node alone

    def as_dict(self) -> dict[str, Any]:
        return {"float_nodes": self.float_nodes, "candidates": self.candidates,
                "fidelity_db": round(self.fidelity_db, 3), "all_int8_fidelity_db": round(self.all_int8_fidelity_db, 3),
                "target_db": self.target_db, "gains_db": {k: round(v, 3) for k, v in self.gains_db.items()}}


def search_policy(prepared: fx.GraphModule, images: Sequence[torch.Tensor], *,
                  target_db: float = DEFAULT_FIDELITY_DB, qat: bool = False) -> PolicySearch:
    """Choose the nodes of a calibrated observed graph to keep float until the int8 graph's fidelity against the
    float output on ``images`` reaches ``target_db`` (the module docstring has the method)."""
    refs = _outputs(_float_copy(prepared), images)
    names = candidates(prepared)
    sim = _Simulation(prepared)
    base = sim.fidelity((), images, refs)
    gains = {n: sim.fidelity({n}, images, refs) - base for n in names}
    order = sorted(names, key=lambda n: (-gains[n], names.index(n)))

    def real(float_nodes: Collection[str]) -> float:
        return fidelity_db(_outputs(_convert(prepared, float_nodes, qat), images), refs)

    all_int8 = real(())
    chosen: list[str] = []
    if all_int8 < target_db:
        for n in order:
            if sim.fidelity(chosen, images, refs) >= target_db:
                break
            chosen.append(n)
    got = real(chosen) if chosen else all_int8
    steps = 0
    while got < target_db and len(chosen) < len(order) and steps < MAX_REAL_STEPS:
        more = max(1, len(chosen) // 4)
        chosen = order[: len(chosen) + more]
        got = real(chosen)
        steps += 1
    return PolicySearch(float_nodes=chosen, candidates=len(names), fidelity_db=got, all_int8_fidelity_db=all_int8,
                        target_db=target_db, gains_db={n: gains[n] for n in chosen})


# ------------------------------------------------------------------------------------------------ policies


def stored_policies() -> dict[str, Any]:
    """The zoo's searched policies (``int8_policies.json``, written by ``benchmarks/int8_quality.py``)."""
    if not _POLICY_FILE.is_file():
        return {}
    return json.loads(_POLICY_FILE.read_text(encoding="utf-8")).get("policies", {})


def architecture_of(model: nn.Module) -> tuple[str, dict[str, Any]] | None:
    """(registry name, constructor kwargs) of a zoo model, from its state_dict; None for a model the zoo does not
    know (its int8 graph still works but cannot be saved to an int8 file)."""
    from ..models import detect_architecture

    try:
        name, kwargs = detect_architecture(model.state_dict())
    except Exception:
        return None
    return name, dict(kwargs)


def _stored_policy(arch: tuple[str, dict[str, Any]] | None, deploy_arch: tuple[str, dict[str, Any]] | None,
                   names: Collection[str], bits: int) -> list[str] | None:
    """The stored policy of this architecture searched on the ``bits`` activation grid; else one searched on a
    coarser grid (it keeps at least as many nodes float as the finer grid needs: as accurate, less fast)."""
    def text(kwargs: Any) -> str:
        return json.dumps(kwargs, sort_keys=True)

    keys = {(k[0], text(k[1])) for k in (arch, deploy_arch) if k is not None}
    fitting = [entry for entry in stored_policies().values()
               if (entry.get("architecture"), text(entry.get("kwargs", {}))) in keys
               and set(entry["float_nodes"]) <= set(names) and int(entry.get("activation_bits", 7)) <= bits]
    if not fitting:
        return None
    return list(max(fitting, key=lambda e: int(e.get("activation_bits", 7)))["float_nodes"])


# ------------------------------------------------------------------------------------------------ the engine


class Int8Engine(Engine):
    """The int8 graph behind the engine contract (float32 RGB NCHW in [0,1] in and out).

    Attributes: ``float_nodes`` (the policy), ``policy_source`` (``"stored"``, ``"searched"``, ``"given"`` or
    ``"file"``), ``activation_bits`` (the activation grid), ``layers`` (:func:`quantized_layers`), ``fidelity_db`` /
    ``max_abs_vs_eager`` (against the float32 forward on the example image, measured when ``verify``), ``search`` (a
    :class:`PolicySearch` when searched).
    """

    backend = "fast"

    def __init__(self, deploy: nn.Module, prepared: fx.GraphModule, *, float_nodes: Sequence[str], qat: bool,
                 non_traceable: Sequence[str], example: torch.Tensor, verify: bool, info: dict[str, Any]) -> None:
        super().__init__(deploy, device=torch.device("cpu"), dtype=torch.float32)
        self.precision = "int8"
        self.qat = qat
        self.float_nodes = list(float_nodes)
        self.non_traceable = list(non_traceable)
        self.info = dict(info)
        self.policy_source: str = info.get("policy_source", "given")
        self.search: PolicySearch | None = None
        self.deploy = deploy  # the float deploy model (its weights are the file's float weights)
        self.prepared = prepared  # the calibrated observed graph (its statistics are the file's int8 tensors)
        self.activation_bits = activation_bits_of(prepared)
        with single_thread():
            self.graph = _convert(prepared, self.float_nodes, qat)
        self.layers = quantized_layers(self.graph)
        convs = self.layers["int8_convs"] + self.layers["float_convs"]
        if convs and self.layers["int8_convs"] * 2 < convs:
            # A policy that keeps most convolutions float (the stored ones do, to stay within the dB budget) runs
            # the float work plus the conversions: measured 1.23-1.25x the fp32 fast time (benchmarks/RESULTS.md).
            log.warning("int8: %d of %d convolutions of %s stay float32 (policy: %s), so this graph is no faster "
                        "than --precision fp32 or bf16; it is int8 for its quality, not its speed",
                        self.layers["float_convs"], convs, type(deploy).__name__, self.policy_source)
        self.fidelity_db: float | None = None
        self.max_abs_vs_eager: float | None = None
        # Against the same quantization simulated in float (the int8 kernels' correctness, not the cost).
        self.kernel_fidelity_db: float | None = None
        if verify:
            with single_thread():
                sim = _Simulation(prepared)
                sim.set_float({*self.float_nodes, *prepared.meta.get(_FIXED_FLOAT, ())})
                with torch.inference_mode():
                    ref = deploy(example).float()
                    got = self.graph(example).float()
                    simulated = sim.model(example).float()
            self.max_abs_vs_eager = float((got - ref).abs().max())
            self.fidelity_db = fidelity_db([got.clamp(0, 1)], [ref.clamp(0, 1)])
            self.kernel_fidelity_db = fidelity_db([got.clamp(0, 1)], [simulated.clamp(0, 1)])
            if not self.kernel_fidelity_db >= VERIFY_FIDELITY_DB:
                # A warning, not an error: the simulation does not model every quantized op (SAFMN-L, SPAN and DSCF
                # measured 7.7-21.5 dB with working kernels), so a low value is a reason to look, not a proof.
                log.warning("int8: the kernels of %s are %.1f dB from the same quantization simulated in float on "
                            "the example (below %.0f dB: broken int8 kernels on this CPU, or ops the simulation does "
                            "not model); %.1f dB from float32", type(deploy).__name__, self.kernel_fidelity_db,
                            VERIFY_FIDELITY_DB, self.fidelity_db)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph(x.contiguous(memory_format=torch.channels_last))

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, precision=int8, int8_convs={self.layers['int8_convs']}, "
                f"float_convs={self.layers['float_convs']}, float_nodes={len(self.float_nodes)}")


def _example(model: nn.Module, example_size: tuple[int, int]) -> torch.Tensor:
    from ..tiling import tiling_of

    h, w = tiling_of(model).padded_size(*(int(s) for s in example_size))
    return example_image(input_channels(model), h, w)


def describe_calibration(calibration: Any, images: Sequence[torch.Tensor]) -> str:
    """One line naming the calibration images (recorded in the int8 file)."""
    from .calibration import DEFAULT_CROP, calibration_files

    sizes = sorted({f"{img.shape[-1]}x{img.shape[-2]}" for img in images})
    if calibration is None or isinstance(calibration, (str, os.PathLike)) or (
            isinstance(calibration, Sequence) and calibration and not isinstance(calibration[0], torch.Tensor)):
        files = calibration_files(calibration)
        where = "the default set (B100 LR_bicubic/X4)" if calibration is None else str(calibration)
        return (f"{len(images)} images of {where}: {', '.join(f.name for f in files)}; centre crops of at most "
                f"{DEFAULT_CROP} px ({', '.join(sizes)})")
    return f"{len(images)} given tensors ({', '.join(sizes)})"


def prepare_int8(model: nn.Module, *, device: str | torch.device = "cpu", threads: int | None = None,
                 example_size: tuple[int, int] = (64, 64), calibration: Any = None, verify: bool = True,
                 policy: str | Sequence[str] | None = None, target_db: float = DEFAULT_FIDELITY_DB,
                 activation_bits: int | None = None) -> Int8Engine:
    """``model`` as an int8 engine on CPU (``prepare(model, "fast", precision="int8")`` lands here).

    A model loaded from an int8 file (it carries :data:`effsr.weights.INT8_ATTR`) is rebuilt from the file: its
    observers' statistics and policy, no calibration. Otherwise the deploy model is calibrated on ``calibration``
    (:func:`effsr.deploy.calibration.calibration_images`) and the float-layer ``policy`` is: None, the zoo's stored
    policy for this architecture if there is one, else nothing float (with a warning); ``"search"``, a search
    (:func:`search_policy`, to ``target_db``); ``"none"``, nothing kept float; a list, those node names.
    ``verify`` checks the result against the float32 forward on the example image (:data:`VERIFY_FIDELITY_DB`).
    ``activation_bits`` is the activation grid (None: the finest this CPU computes exactly,
    :func:`exact_activation_bits`; a file keeps its own). ``threads`` is set by ``prepare``; preparation itself runs
    on one thread.
    """
    if torch.device(device).type != "cpu":
        raise PrecisionError("int8 runs on CPU only; on CUDA use --precision fp16 or bf16")
    use_quant_engine()
    payload: Int8Payload | None = getattr(model, INT8_ATTR, None)
    if payload is not None:
        return _from_payload(model, payload, example_size=example_size, verify=verify)
    bits = _activation_bits(activation_bits)
    arch = architecture_of(model)
    deploy = deploy_model(model)
    deploy_arch = architecture_of(deploy)
    example = _example(model, example_size)
    from .calibration import calibration_images

    images = calibration_images(calibration)
    non_traceable = _non_traceable(deploy)
    with single_thread():
        prepared = _prepare(deploy, example, qat=False, non_traceable=non_traceable, bits=bits)
        with torch.inference_mode():
            for img in images:
                prepared(img)
    names = candidates(prepared)
    search: PolicySearch | None = None
    if policy is None:
        float_nodes = _stored_policy(arch, deploy_arch, names, bits)
        source = "stored"
        if float_nodes is None:  # a search takes minutes (one float forward per candidate): asked for, not implied
            log.warning("int8: no stored float-layer policy for %s; everything is quantized (its cost is not "
                        "measured: effsr.deploy.quantize.prepare_int8(model, policy='search') chooses one)",
                        type(model).__name__)
            policy = "none"
    if policy == "none":
        float_nodes, source = [], "given"
    elif policy == "search":
        with single_thread():
            search = search_policy(prepared, images, target_db=target_db)
        float_nodes, source = search.float_nodes, "searched"
    elif policy is not None:
        if isinstance(policy, str):
            raise InvalidValueError(f"int8 policy {policy!r}: give None, 'search', 'none' or a list of node names")
        float_nodes, source = list(policy), "given"
        unknown = sorted(set(float_nodes) - set(names))
        if unknown:
            raise InvalidValueError(f"int8 policy: no quantizable node named {', '.join(unknown[:5])} in "
                                    f"{type(model).__name__}'s graph")
    info = {"policy_source": source, "calibration": describe_calibration(calibration, images),
            "architecture": deploy_arch or arch}
    engine = Int8Engine(deploy, prepared, float_nodes=float_nodes, qat=False, non_traceable=non_traceable,
                        example=example, verify=verify, info=info)
    engine.search = search
    log.info("int8: %s with %d of %d candidate nodes float (%s policy): %s", type(model).__name__, len(float_nodes),
             len(names), source, engine.layers)
    return engine


def _quant_state(prepared: fx.GraphModule) -> dict[str, torch.Tensor]:
    """The observers' (or fake quantizers') tensors of an observed graph: the keys below an observer module."""
    # remove_duplicate=False: a shared observer has a name per use, and state_dict holds its tensors under each.
    observers = [name for name, mod in prepared.named_modules(remove_duplicate=False) if name and _is_observer(mod)]
    out = {}
    for key, value in prepared.state_dict().items():
        if any(key.startswith(o + ".") for o in observers):
            out[key] = value.detach().clone()
    return out


def save_int8(engine: Int8Engine, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write ``engine`` as an int8 file (one safetensors file; docs/deploy.md, "int8"), atomically."""
    from ..files import check_output

    arch = engine.info.get("architecture")
    if not arch:
        raise InvalidValueError("this int8 engine's model is not a zoo architecture: it cannot be saved as a file")
    check_output(path, overwrite=overwrite)
    name, kwargs = arch
    tensors = {k: v.detach().clone() for k, v in engine.deploy.state_dict().items()}
    for key, value in _quant_state(engine.prepared).items():
        tensors[INT8_PREFIX + key] = value
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "mode": "qat" if engine.qat else "ptq",
        "torch": torch.__version__,
        "quant_engine": QUANT_ENGINE,
        "qconfig": qconfig_description(engine.qat, engine.activation_bits),
        "activation_bits": engine.activation_bits,
        "float_nodes": engine.float_nodes,
        "non_traceable": engine.non_traceable,
        "policy_source": engine.policy_source,
        "calibration": engine.info.get("calibration", ""),
        "layers": engine.layers,
        "fidelity_db": engine.fidelity_db,
    }
    return save_safetensors(tensors, path, model=name, kwargs=kwargs, extra={"int8": meta})


def _from_payload(model: nn.Module, payload: Int8Payload, *, example_size: tuple[int, int],
                  verify: bool) -> Int8Engine:
    meta = payload.metadata
    if meta.get("format") != FORMAT or int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise WeightsError(f"{payload.source}: int8 file format {meta.get('format')} version "
                           f"{meta.get('format_version')} is not one this effsr reads ({FORMAT} {FORMAT_VERSION})")
    qat = meta.get("mode") == "qat"
    # Files written before the grid was recorded used 7 bits.
    bits = int(meta.get("activation_bits", 7))
    if bits > exact_activation_bits():
        raise PrecisionError(f"{payload.source}: this int8 file quantizes activations to {bits} bits, which this "
                             "CPU's int8 kernels cannot compute exactly (they need VNNI, and oneDNN not capped below "
                             "it by $ONEDNN_MAX_CPU_ISA); run it on such a CPU, or prepare int8 here from the float "
                             "weights (--precision int8 with the zoo model)")
    deploy = deploy_model(model)
    if hasattr(deploy, INT8_ATTR):
        delattr(deploy, INT8_ATTR)
    example = _example(model, example_size)
    non_traceable = list(meta.get("non_traceable", []))
    with single_thread():
        prepared = _prepare(deploy, example, qat=qat, non_traceable=non_traceable, bits=bits)
    state = prepared.state_dict()
    expected = set(_quant_state(prepared))
    given = set(payload.tensors)
    if given != expected:
        missing, extra = sorted(expected - given), sorted(given - expected)
        raise WeightsError(f"{payload.source}: the int8 tensors do not fit this graph (torch {torch.__version__}, "
                           f"file written with torch {meta.get('torch')}): missing {missing[:3]}, unexpected "
                           f"{extra[:3]}")
    state.update(payload.tensors)
    prepared.load_state_dict(state, strict=True)
    if qat:
        prepared.eval()
    info = {"policy_source": "file", "calibration": meta.get("calibration", ""),
            "architecture": (payload.model, payload.kwargs)}
    return Int8Engine(deploy, prepared, float_nodes=list(meta.get("float_nodes", [])), qat=qat,
                      non_traceable=non_traceable, example=example, verify=verify, info=info)


def load_int8(path: str | os.PathLike[str], *, verify: bool = True) -> Int8Engine:
    """The int8 engine of an int8 file (``effsr.load(path)`` gives its float deploy model carrying the int8
    tensors; ``effsr.deploy.prepare`` of that model gives this engine too)."""
    from ..models import load_model

    model = load_model(weights=path)
    if getattr(model, INT8_ATTR, None) is None:
        raise WeightsError(f"{path} is not an int8 file (no int8 metadata); prepare it with --precision int8")
    use_quant_engine()
    return _from_payload(model, getattr(model, INT8_ATTR), example_size=(64, 64), verify=verify)


# ------------------------------------------------------------------------------------------------ QAT


def prepare_qat(model: nn.Module, *, example_size: tuple[int, int] = (64, 64),
                policy: str | Sequence[str] | None = None, calibration: Any = None,
                activation_bits: int | None = None) -> QatModel:
    """The fake-quantized training graph of ``model``'s deploy form (``effsr train`` stages with ``quant: int8``).

    The float-layer policy is chosen as for post-training quantization (the stored one, else a search on the
    calibration images) and its nodes train without fake quantization, so the converted graph is the one
    trained. The activation grid is ``activation_bits`` (None: the finest this CPU computes exactly,
    :func:`exact_activation_bits`): the int8 file then runs on CPUs that compute that grid exactly.
    Returns a :class:`QatModel` (train it, then :meth:`QatModel.engine` / :func:`save_int8`).
    """
    use_quant_engine()
    bits = _activation_bits(activation_bits)
    arch = architecture_of(model)
    deploy = deploy_model(model)
    deploy_arch = architecture_of(deploy)
    example = _example(model, example_size)
    non_traceable = _non_traceable(deploy)
    float_nodes: list[str] | None = None
    source = "stored"
    if policy is None:
        float_nodes = _stored_policy(arch, deploy_arch, candidates(
            _prepare(deploy, example, qat=False, non_traceable=non_traceable, bits=bits)), bits)
        if float_nodes is None:
            policy = "none"
    if policy == "none":
        float_nodes, source = [], "given"
    elif float_nodes is None and (policy is None or policy == "search"):
        ptq = prepare_int8(model, calibration=calibration, policy="search", verify=False, example_size=example_size,
                           activation_bits=bits)
        float_nodes, source = ptq.float_nodes, ptq.policy_source
    elif float_nodes is None:
        float_nodes, source = list(policy), "given"
    prepared = _prepare(deploy, example, qat=True, non_traceable=non_traceable, bits=bits)
    qat = QatModel(prepared, deploy, float_nodes, non_traceable, example,
                   {"policy_source": source, "architecture": deploy_arch or arch,
                    "calibration": "quantization-aware training (moving-average ranges over the training batches)"})
    return qat


class QatModel(nn.Module):
    """A fake-quantized deploy graph for training; its float-policy nodes run without fake quantization."""

    def __init__(self, prepared: fx.GraphModule, deploy: nn.Module, float_nodes: Sequence[str],
                 non_traceable: Sequence[str], example: torch.Tensor, info: dict[str, Any]) -> None:
        super().__init__()
        self.graph = prepared
        self.float_nodes = list(float_nodes)
        self.non_traceable = list(non_traceable)
        self.info = info
        self.scale = getattr(deploy, "scale", None)  # what the training tasks check (a teacher's scale must match)
        self._deploy = [deploy]  # a template for the float weights (kept out of the module tree)
        self._example = example
        self._disable_float_quantizers()

    def _disable_float_quantizers(self) -> None:
        """Fake quantizers that the conversion will drop (every neighbour float) and the weight quantizers of float
        modules stop quantizing, so training sees the graph that will be converted."""
        from torch.ao.quantization import disable_fake_quant, disable_observer

        qconfigs = _attrs(self.graph).node_name_to_qconfig

        def is_float(name: str) -> bool:
            return name in self.float_nodes or (name in qconfigs and qconfigs[name] is None)

        for node in self.graph.graph.nodes:
            if node.op != "call_module":
                continue
            mod = _module(self.graph, node.target)
            if _is_observer(mod):
                if all(is_float(n.name) for n in (*node.all_input_nodes, *node.users)):
                    mod.apply(disable_fake_quant)
                    mod.apply(disable_observer)
            elif node.name in self.float_nodes:
                mod.apply(disable_fake_quant)
                mod.apply(disable_observer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph(x)

    def float_deploy(self) -> nn.Module:
        """The float deploy model with the trained weights (the int8 file's float part)."""
        deploy = copy.deepcopy(self._deploy[0])
        trained = self.graph.state_dict()
        state = {}
        for key in deploy.state_dict():
            parent, _, leaf = key.rpartition(".")
            for cand in (key, f"{parent}.0.{leaf}" if parent else f"0.{leaf}"):
                if cand in trained:
                    state[key] = trained[cand].detach().clone()
                    break
            else:
                raise RuntimeError(f"QAT graph has no weight for {key}")
        deploy.load_state_dict(state, strict=True)
        return deploy.eval()

    def engine(self, verify: bool = True) -> Int8Engine:
        """The int8 engine of the trained graph."""
        deploy = self.float_deploy()
        prepared = copy.deepcopy(self.graph).eval()
        return Int8Engine(deploy, prepared, float_nodes=self.float_nodes, qat=True,
                          non_traceable=self.non_traceable, example=self._example, verify=verify,
                          info={**self.info})

