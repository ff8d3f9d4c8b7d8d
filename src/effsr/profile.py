"""Cost of an SR network, measured with the NTIRE Efficient SR challenge's written conventions.

Takes a plain ``nn.Module`` (float RGB NCHW in [0,1] in and out), returns dataclasses and prints nothing.
Every number names its unit and its counter (DESIGN.md, "Contracts"):

* ``params``: ``sum(p.numel() for p in model.parameters())``, as the NTIRE 2024 ``test_demo.py``.
* ``macs_fvcore``: fvcore ``FlopCountAnalysis(model, torch.rand(1, 3, H, W)).total()`` with the model in eval
  mode, exactly as the NTIRE 2024 ``test_demo.py`` (the challenge's "FLOPs"). fvcore counts one fused multiply-add
  as one, so this is a MAC count. It silently skips every operator it has no handle for (``fvcore_unsupported``),
  including convolutions declared with ``padding='same'``, which lower to ``aten::_convolution_mode``
  (specs/README.md section 1). The official 2024 numbers carry that artefact; ``macs_fvcore_with_same_padding_convs``
  adds those convolutions back, counted with fvcore's own convolution formula.
* ``macs_torch``: ``torch.utils.flop_counter.FlopCounterMode`` total divided by 2 (PyTorch counts a multiply-add
  as 2 FLOPs). It counts convolutions (``padding='same'`` ones included) and matrix products only.
* ``macs_conv_hooks``: the NTIRE 2023 counter (``utils/model_summary.py get_model_flops``): forward hooks on
  Conv2d / ConvTranspose2d (k*k*Cin*Cout/groups per output pixel, no bias), ReLU / PReLU / ELU / LeakyReLU / ReLU6
  *modules* (one per output element), Linear and BatchNorm2d modules; functional calls are invisible to it.
* ``activations`` / ``num_conv``: ``get_model_activation``: elements output by every Conv2d / ConvTranspose2d
  module call, and the number of such calls.
* ``peak_memory_mib``: CUDA ``max_memory_allocated`` during one forward (weights, input, output and activations,
  as the NTIRE harness reports it); on CPU the growth of the peak resident set size over the resident size
  just before the forward (see :func:`measure_peak_memory`).
* ``runtime_ms``: warm-up runs, then N timed forwards, each bracketed by device synchronisation; median and
  interquartile range (nanoGPT ``bench.py`` style). :func:`ntire_runtime` instead reproduces the official harness:
  one forward per image of a dataset folder, no warm-up, ``cudnn.benchmark = False``, CUDA events, mean per image.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import ctypes.util
import gc
import math
import os
import re
import resource
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .ntire import NtireScore
from .ntire import rules as ntire_rules
from .runtime import cpu_name
from .tiling import tiling_of

# The NTIRE harnesses (2022-2024) measure complexity at an LR input of 1x3x256x256 (test_demo.py ``input_dim``).
NTIRE_LR_SIZE: tuple[int, int] = (256, 256)

# Module types the NTIRE 2023 counter hooks (utils/model_summary.py ``is_supported_instance``); Conv3d has a
# conv hook branch there but is not a "supported instance", so it is never hooked.
_HOOK_CONV = (nn.Conv2d, nn.ConvTranspose2d)
_HOOK_ACT = (nn.ReLU, nn.PReLU, nn.ELU, nn.LeakyReLU, nn.ReLU6)
# get_model_activation registers its hook only on Conv2d / ConvTranspose2d (Linear, Conv1d are listed as
# "supported" but get no hook).
_ACTIVATION_CONV = (nn.Conv2d, nn.ConvTranspose2d)

# fvcore reports the extra convolutions under this operator name; it is not part of ``macs_fvcore``.
_SAME_PADDING_OP = "conv_same_padding"
_CONVOLUTION_MODE = "aten::_convolution_mode"


# --------------------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Complexity:
    """Value-independent counts of one forward at LR ``lr_size`` (batch 1, eval mode)."""

    lr_size: tuple[int, int]
    params: int
    macs_fvcore: int
    macs_fvcore_with_same_padding_convs: int
    macs_torch: int
    macs_conv_hooks: int
    activations: int
    num_conv: int
    fvcore_by_operator: dict[str, int] = field(default_factory=dict)
    fvcore_unsupported: dict[str, int] = field(default_factory=dict)
    macs_torch_by_operator: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RuntimeStats:
    """Wall time of ``runs`` forwards after ``warmup`` untimed ones, in milliseconds."""

    median_ms: float
    iqr_ms: float
    mean_ms: float
    min_ms: float
    q1_ms: float
    q3_ms: float
    runs: int
    warmup: int
    timer: str
    times_ms: tuple[float, ...] = ()


@dataclass(frozen=True)
class PeakMemory:
    mib: float
    method: str


@dataclass(frozen=True)
class ImageTime:
    name: str
    lr_size: tuple[int, int]
    runtime_ms: float


@dataclass(frozen=True)
class NtireRun:
    """The official harness's timing over a dataset folder (one forward per image, no warm-up)."""

    data_dir: str
    images: tuple[ImageTime, ...]
    mean_ms: float
    median_ms: float
    peak_memory_mib: float
    memory_method: str
    timer: str


@dataclass(frozen=True)
class DeviceInfo:
    device: str
    name: str
    torch: str
    threads: int

    @classmethod
    def of(cls, device: torch.device) -> DeviceInfo:
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
        return cls(device=str(device), name=name, torch=torch.__version__, threads=torch.get_num_threads())


@dataclass(frozen=True)
class ProfileReport:
    model: str
    complexity: Complexity
    peak_memory: PeakMemory
    runtime: RuntimeStats
    device: DeviceInfo
    ntire: NtireRun | None = None

    def to_json(self) -> dict[str, Any]:
        """The machine-readable form (``effsr profile --json``, README): raw counts, not millions or billions."""
        c = self.complexity
        out: dict[str, Any] = {
            "model": self.model,
            "lr_size": [int(c.lr_size[0]), int(c.lr_size[1])],
            "params": c.params,
            "macs_fvcore": c.macs_fvcore,
            "macs_torch": c.macs_torch,
            "activations": c.activations,
            "num_conv": c.num_conv,
            "peak_memory_mib": float(self.peak_memory.mib),
            "runtime_ms": {"median": self.runtime.median_ms, "iqr": self.runtime.iqr_ms, "runs": self.runtime.runs},
            "macs_conv_hooks": c.macs_conv_hooks,
            "macs_fvcore_with_same_padding_convs": c.macs_fvcore_with_same_padding_convs,
            "fvcore_by_operator": dict(c.fvcore_by_operator),
            "fvcore_unsupported": dict(c.fvcore_unsupported),
            "macs_torch_by_operator": dict(c.macs_torch_by_operator),
            "peak_memory_method": self.peak_memory.method,
            "runtime_protocol": {
                "warmup": self.runtime.warmup,
                "mean": self.runtime.mean_ms,
                "min": self.runtime.min_ms,
                "q1": self.runtime.q1_ms,
                "q3": self.runtime.q3_ms,
                "timer": self.runtime.timer,
                "times": list(self.runtime.times_ms),
            },
            "device": asdict(self.device),
        }
        if self.ntire is not None:
            n = self.ntire
            out["ntire"] = {
                "data_dir": n.data_dir,
                "mean_ms": n.mean_ms,
                "median_ms": n.median_ms,
                "peak_memory_mib": n.peak_memory_mib,
                "memory_method": n.memory_method,
                "timer": n.timer,
                "images": [{"name": i.name, "lr_size": list(i.lr_size), "runtime_ms": i.runtime_ms} for i in n.images],
            }
        return out


# --------------------------------------------------------------------------------------------------------------
# NTIRE score: every year's rules (baseline, weights, PSNR gate, GPU) live in effsr.ntire.


def ntire2024_score(
    runtime_ms: float,
    macs: float,
    params: float,
    *,
    baseline_runtime_ms: float,
    baseline_macs: float,
    baseline_params: float,
) -> NtireScore:
    """The NTIRE 2024 ESR score of one model against the baseline (RLFN), lower is better: ``effsr.ntire.rules(2024)``.

    FLOPs there is the fvcore count (``macs_fvcore``); Runtime the harness's mean per-image runtime.
    """
    return ntire_rules(2024).score(runtime_ms, macs, params, baseline_runtime_ms=baseline_runtime_ms,
                                   baseline_macs=baseline_macs, baseline_params=baseline_params)


# --------------------------------------------------------------------------------------------------------------
# Helpers


def model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the measurement (the harness calls ``model.eval()``), previous modes restored after."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for m, training in modes.items():
            m.training = training


def _lr_input(lr_size: tuple[int, int], device: torch.device, seed: int = 0) -> torch.Tensor:
    """``torch.rand(1, 3, H, W)`` like test_demo.py, from a private generator (global RNG untouched)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, int(lr_size[0]), int(lr_size[1]), generator=g).to(device)


def _check_size(model: nn.Module, lr_size: tuple[int, int]) -> None:
    min_size = tiling_of(model).min_size
    if min(lr_size) < min_size:
        raise ValueError(f"LR size {lr_size[0]}x{lr_size[1]} is below this model's minimum {min_size}x{min_size}")


def count_parameters(model: nn.Module) -> int:
    """``sum(map(lambda x: x.numel(), model.parameters()))`` as test_demo.py (shared tensors counted once)."""
    return int(sum(p.numel() for p in model.parameters()))


# --------------------------------------------------------------------------------------------------------------
# Counters


def _convolution_mode_handle(calls: list[int]) -> Callable[[list[Any], list[Any]], Counter[str]]:
    """fvcore handle for ``aten::_convolution_mode`` (string padding), counted like fvcore's own conv handle.

    Inputs are (input, weight, bias, stride, padding: str, dilation, groups); a string padding is never
    transposed. Each call is recorded so the skipped-operator list can still report it.
    """
    from fvcore.nn.jit_handles import conv_flop_count, get_shape

    def handle(inputs: list[Any], outputs: list[Any]) -> Counter[str]:
        calls[0] += 1
        x_shape, w_shape, out_shape = get_shape(inputs[0]), get_shape(inputs[1]), get_shape(outputs[0])
        return Counter({_SAME_PADDING_OP: conv_flop_count(x_shape, w_shape, out_shape, transposed=False)})

    return handle


def fvcore_counts(model: nn.Module, x: torch.Tensor) -> tuple[int, int, dict[str, int], dict[str, int]]:
    """(macs_fvcore, macs with 'same' convs, by_operator, unsupported) from one fvcore trace.

    fvcore's result for the default handles does not depend on other handles (each graph node is counted by
    its own handle or listed as unsupported), so one trace with an extra ``aten::_convolution_mode`` handle
    gives both the official total (everything but that handle) and the total with those convolutions.
    """
    with warnings.catch_warnings():
        # fvcore.nn's import scripts a loss function with torch.jit.script, deprecated in recent PyTorch.
        warnings.simplefilter("ignore", DeprecationWarning)
        from fvcore.nn import FlopCountAnalysis

    calls = [0]
    analysis = (
        FlopCountAnalysis(model, x)
        .set_op_handle(_CONVOLUTION_MODE, _convolution_mode_handle(calls))
        .unsupported_ops_warnings(False)
        .uncalled_modules_warnings(False)
        .tracer_warnings("none")
    )
    by_op = {k: int(v) for k, v in analysis.by_operator().items()}
    same = by_op.pop(_SAME_PADDING_OP, 0)
    unsupported = {k: int(v) for k, v in analysis.unsupported_ops().items()}
    if calls[0]:
        # What the official (handle-less) analysis lists for these convolutions.
        unsupported[_CONVOLUTION_MODE] = calls[0]
    official = int(sum(by_op.values()))
    return official, official + int(same), by_op, unsupported


def torch_macs(model: nn.Module, x: torch.Tensor) -> tuple[int, dict[str, int]]:
    """MACs by ``torch.utils.flop_counter.FlopCounterMode`` (its FLOPs count a multiply-add as 2, so halved)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    # Keys are operator packets such as ``aten.convolution``; keep the operator name.
    by_op = {str(k).rsplit(".", 1)[-1]: int(v) // 2 for k, v in counter.get_flop_counts().get("Global", {}).items()}
    return int(counter.get_total_flops()) // 2, by_op


def conv_hook_counts(model: nn.Module, x: torch.Tensor) -> tuple[int, int, int]:
    """(macs_conv_hooks, activations, num_conv): NTIRE ``get_model_flops`` and ``get_model_activation``.

    Both official functions are module forward hooks; one forward with both sets of hooks gives the same
    numbers as their two forwards.
    """
    totals = {"macs": 0, "activations": 0, "num_conv": 0}

    def conv_hook(m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        # model_summary.conv_flops_counter_hook: prod(kernel) * in_channels * (out_channels // groups) per
        # output position (the output's spatial size, also for transposed convs), bias not counted.
        per_position = math.prod(m.kernel_size) * m.in_channels * (m.out_channels // m.groups)
        totals["macs"] += int(per_position) * int(out.shape[0] * math.prod(out.shape[2:]))

    def act_hook(_m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        totals["macs"] += int(out.numel())  # relu_flops_counter_hook: one per output element

    def linear_hook(_m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        i = inp[0]
        # linear_flops_counter_hook, quirks kept: a >2-D input counts batch * shape[1] * out.shape[1].
        if i.dim() == 1:
            totals["macs"] += int(i.shape[0] * out.shape[0])
        else:
            totals["macs"] += int(i.shape[0] * i.shape[1] * out.shape[1])

    def bn_hook(m: nn.BatchNorm2d, _inp: Any, out: torch.Tensor) -> None:
        n = int(out.shape[0] * m.num_features * math.prod(out.shape[2:]))
        totals["macs"] += 2 * n if m.affine else n  # bn_flops_counter_hook

    def activation_hook(_m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        totals["activations"] += int(out.numel())  # conv_activation_counter_hook
        totals["num_conv"] += 1

    handles = []
    try:
        for m in model.modules():
            if isinstance(m, _HOOK_CONV):
                handles.append(m.register_forward_hook(conv_hook))
            elif isinstance(m, _HOOK_ACT):
                handles.append(m.register_forward_hook(act_hook))
            elif isinstance(m, nn.Linear):
                handles.append(m.register_forward_hook(linear_hook))
            elif isinstance(m, nn.BatchNorm2d):
                handles.append(m.register_forward_hook(bn_hook))
            if isinstance(m, _ACTIVATION_CONV):
                handles.append(m.register_forward_hook(activation_hook))
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return totals["macs"], totals["activations"], totals["num_conv"]


def measure_complexity(model: nn.Module, lr_size: tuple[int, int] = NTIRE_LR_SIZE) -> Complexity:
    """Every count of :class:`Complexity` for a batch-1 LR input of ``lr_size``, in eval mode.

    The model stays on its device; counts do not depend on input values (the harness feeds ``torch.rand``).
    fvcore traces a real forward (as the harness); the module-hook and FlopCounterMode counts are taken on a
    deep copy on the ``meta`` device (shapes only), which gives the same numbers without a second forward.
    """
    _check_size(model, lr_size)
    device = model_device(model)
    x = _lr_input(lr_size, device)
    with _eval_mode(model):
        fv, fv_same, by_op, unsupported = fvcore_counts(model, x)
        # The hook and FlopCounterMode counts only read shapes: run them on a shape-only ("meta") copy, which
        # costs no arithmetic; a model whose forward needs real values falls back to a real forward.
        try:
            shadow = copy.deepcopy(model).to("meta")
            t_macs, t_by_op = torch_macs(shadow, x.to("meta"))
            hook_macs, activations, num_conv = conv_hook_counts(shadow, x.to("meta"))
        except Exception:  # any failure of the meta path means: count on the real model
            t_macs, t_by_op = torch_macs(model, x)
            hook_macs, activations, num_conv = conv_hook_counts(model, x)
    return Complexity(
        lr_size=(int(lr_size[0]), int(lr_size[1])),
        params=count_parameters(model),
        macs_fvcore=fv,
        macs_fvcore_with_same_padding_convs=fv_same,
        macs_torch=t_macs,
        macs_conv_hooks=hook_macs,
        activations=activations,
        num_conv=num_conv,
        fvcore_by_operator=by_op,
        fvcore_unsupported=unsupported,
        macs_torch_by_operator=t_by_op,
    )


# --------------------------------------------------------------------------------------------------------------
# Memory


def _proc_status_kib(key: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    m = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (``VmHWM``) to the current RSS: Linux >= 4.0, ``clear_refs`` value 5."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _malloc_trim() -> None:
    """Give freed heap pages back to the OS (glibc), so the forward must fault them in again and is seen."""
    if not sys.platform.startswith("linux"):
        return
    name = ctypes.util.find_library("c")
    if name is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(name).malloc_trim(0)


def _cpu_peak_growth_mib(forward: Callable[[], Any]) -> tuple[float, str]:
    gc.collect()
    _malloc_trim()
    if _reset_peak_rss():
        base = _proc_status_kib("VmRSS")
        out = forward()
        peak = _proc_status_kib("VmHWM")
        del out
        if base is not None and peak is not None:
            return max(0, peak - base) / 1024.0, "cpu_peak_rss_growth (VmHWM after clear_refs=5 minus VmRSS before)"
    # Fallback (no /proc): process-lifetime ru_maxrss growth, a lower bound once an earlier peak was higher.
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    out = forward()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    del out
    return max(0, after - before) / 2**20, "cpu_ru_maxrss_growth (lower bound)"


def measure_peak_memory(model: nn.Module, lr_size: tuple[int, int] = NTIRE_LR_SIZE, repeats: int = 3) -> PeakMemory:
    """Peak memory of one batch-1 forward at ``lr_size`` (inference mode, eval mode), in MiB.

    CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``: weights, input, output and
    activations (what the NTIRE harness reports). One run suffices: the caching allocator's count is exact.

    CPU: the growth of the process's peak resident set size during the forward. Before each forward, freed heap
    pages are returned to the OS (glibc ``malloc_trim``) and the kernel's peak mark is reset by writing ``5`` to
    ``/proc/self/clear_refs``; the result is ``VmHWM`` after minus ``VmRSS`` before, so weights and input (already
    resident) are excluded. Because the mark is reset, this works any number of times in one process; the median
    of ``repeats`` measurements is reported (allocation order under threads makes single runs vary by ~10%).
    """
    _check_size(model, lr_size)
    device = model_device(model)
    x = _lr_input(lr_size, device)

    def forward() -> torch.Tensor:
        with torch.inference_mode():
            return model(x)

    with _eval_mode(model):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            out = forward()
            torch.cuda.synchronize(device)
            del out
            return PeakMemory(torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_memory_allocated")
        results = [_cpu_peak_growth_mib(forward) for _ in range(max(1, repeats))]
    values = sorted(r[0] for r in results)
    return PeakMemory(float(np.median(values)), f"{results[0][1]}, median of {len(values)}")


# --------------------------------------------------------------------------------------------------------------
# Runtime


def measure_runtime(
    model: nn.Module, lr_size: tuple[int, int] = NTIRE_LR_SIZE, *, runs: int = 20, warmup: int = 5
) -> RuntimeStats:
    """Median and IQR of ``runs`` timed batch-1 forwards after ``warmup`` untimed ones (inference mode).

    Every timed forward is bracketed by device synchronisation; CUDA uses events on the current stream,
    CPU ``time.perf_counter``. The quartiles use numpy's default (linear) interpolation.
    """
    if runs < 1:
        raise ValueError("runs must be >= 1")
    _check_size(model, lr_size)
    device = model_device(model)
    x = _lr_input(lr_size, device)
    times: list[float] = []
    with _eval_mode(model), torch.inference_mode():
        for _ in range(max(0, warmup)):
            model(x)
        for _ in range(runs):
            times.append(time_call(lambda: model(x), device))
    q1, med, q3 = (float(v) for v in np.percentile(times, [25, 50, 75]))
    return RuntimeStats(
        median_ms=med,
        iqr_ms=q3 - q1,
        mean_ms=float(np.mean(times)),
        min_ms=float(min(times)),
        q1_ms=q1,
        q3_ms=q3,
        runs=runs,
        warmup=max(0, warmup),
        timer=timer_name(device),
        times_ms=tuple(times),
    )


def timer_name(device: torch.device | str) -> str:
    """The clock :func:`time_call` uses on ``device``."""
    return "cuda_event" if torch.device(device).type == "cuda" else "perf_counter"


def time_call(fn: Callable[[], Any], device: torch.device | str = "cpu") -> float:
    """Milliseconds of one call of ``fn``: effsr's one forward timer (profile, bench, benchmarks).

    On CUDA the call is bracketed by device synchronisation and timed with CUDA events on the current stream, as
    the NTIRE harness times it; on CPU with ``time.perf_counter``.
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(dev)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize(dev)
        return float(start.elapsed_time(end))
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000.0


def lr_images(data_dir: str | os.PathLike[str]) -> list[Path]:
    """The LR images of a dataset folder (``LR_bicubic/X4``, ``LR``) or of a plain folder of images, sorted."""
    from .imageio import list_images

    root = Path(data_dir)
    for sub in (root / "LR_bicubic" / "X4", root / "LR", root):
        if sub.is_dir():
            files = list_images(sub)
            if files:
                return files
    raise FileNotFoundError(f"no LR images found in {root} (looked in LR_bicubic/X4, LR and the folder itself)")


def ntire_runtime(model: nn.Module, images: Sequence[str | os.PathLike[str]], data_dir: str = "") -> NtireRun:
    """Reproduce the NTIRE 2024 ``test_demo.py`` timing over ``images`` (its ``run`` function).

    Per image: read (cv2, RGB uint8), to a 1x3xHxW tensor in [0,1] on the model's device, then one timed
    whole-image forward: CUDA events with a synchronise after, ``perf_counter`` on CPU. No warm-up,
    ``torch.backends.cudnn.benchmark = False`` (restored afterwards), eval mode; gradients off (the harness sets
    ``requires_grad=False`` on every parameter, which ``torch.no_grad`` reproduces without touching the model).
    Reported: the per-image times, their mean (the harness's ``ave_runtime``) and median, and the peak memory over
    the whole run (CUDA ``max_memory_allocated``, reset at the start rather than at process start; on CPU the
    peak resident-set growth, as :func:`measure_peak_memory`).
    """
    from .imageio import read_rgb_uint8, uint8_to_tensor

    if not images:
        raise ValueError("no images given")
    device = model_device(model)
    saved_benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    records: list[ImageTime] = []

    def run_all() -> None:
        with torch.no_grad():
            for path in images:
                lr = uint8_to_tensor(read_rgb_uint8(path)).to(device)
                ms = time_call(lambda lr=lr: model(lr), device)
                records.append(ImageTime(Path(path).stem, (int(lr.shape[2]), int(lr.shape[3])), ms))

    try:
        with _eval_mode(model):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
                run_all()
                mem, method = torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_memory_allocated"
            else:
                mem, method = _cpu_peak_growth_mib(run_all)
    finally:
        torch.backends.cudnn.benchmark = saved_benchmark
    times = [r.runtime_ms for r in records]
    return NtireRun(
        data_dir=str(data_dir),
        images=tuple(records),
        mean_ms=float(sum(times) / len(times)),
        median_ms=float(np.median(times)),
        peak_memory_mib=float(mem),
        memory_method=method,
        timer=timer_name(device),
    )


# --------------------------------------------------------------------------------------------------------------
# Everything at once


def profile_model(
    model: nn.Module,
    name: str = "model",
    *,
    lr_size: tuple[int, int] = NTIRE_LR_SIZE,
    runs: int = 20,
    warmup: int = 5,
    ntire_dir: str | os.PathLike[str] | None = None,
) -> ProfileReport:
    """Complexity, peak memory and runtime of ``model`` at ``lr_size`` (+ the NTIRE harness timing if asked)."""
    complexity = measure_complexity(model, lr_size)
    memory = measure_peak_memory(model, lr_size)
    runtime = measure_runtime(model, lr_size, runs=runs, warmup=warmup)
    ntire = None
    if ntire_dir is not None:
        ntire = ntire_runtime(model, lr_images(ntire_dir), data_dir=str(ntire_dir))
    return ProfileReport(
        model=name,
        complexity=complexity,
        peak_memory=memory,
        runtime=runtime,
        device=DeviceInfo.of(model_device(model)),
        ntire=ntire,
    )
