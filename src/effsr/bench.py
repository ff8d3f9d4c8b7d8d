"""Speed benchmark harness: time the eager forward, the fast path, onnxruntime and OpenVINO, in every precision they
run, with the same protocol.

Protocol (DESIGN.md habit 12; the JSON shape is documented in docs/deploy.md, "Benchmarks"):

* every (model, backend, precision) runs in its own worker process by default, so process-wide settings of one
  backend (the fast path's malloc tuning, onnxruntime's thread pool) cannot speed up or slow down another, and the
  eager forward runs exactly as its authors run it (in the caller's environment), while the other backends get
  effsr's process settings as the command line applies them (``GOMP_SPINCOUNT``, :mod:`effsr.runtime`);
* each worker loads the model, prepares its backend for the benchmark size, and runs ``warmup`` forwards;
* then the timed runs are **interleaved**: round r asks every worker for one forward, in an order rotated every
  round, so drifting load on a shared machine hits every backend alike, with a short pause before each run (thread
  pools that keep spinning after their own run must not slow the next backend down); each worker times its forward
  with effsr's one timer (:func:`effsr.profile.time_call`: ``time.perf_counter`` on CPU, CUDA events bracketed by
  synchronisation on CUDA);
* results are the median and the inter-quartile range (p75 - p25) of those runs; the output of every backend on
  the same deterministic image-like input is compared with the eager output (``max_abs_vs_eager``);
* the floor is ``2 x MACs / dense rate``: MACs from ``torch.utils.flop_counter`` (every convolution and matrix
  product; :func:`effsr.profile.torch_macs`); the rate from a dense 3x3 convolution (64 -> 64 channels,
  channels-last, at the cell's LR size) that takes its turn in the same interleaved rounds as a worker of its own,
  so it is measured with the same stopwatch, pauses, process setup and machine state as the models.
  :func:`dense_conv_gflops` gives the tight-loop peak of the same convolution for comparison (on the 2-core CPU
  here it is 3-5% higher than the in-round rate when the machine is quiet; benchmarks/RESULTS.md);
* precision (:mod:`effsr.deploy.precision`): each precision asked for runs on every backend that runs it
  (:data:`~effsr.deploy.precision.BACKEND_PRECISIONS`), next to the float32 eager forward (always timed when a
  lower precision is, the reference of every speed-up and of ``max_abs_vs_eager``), and each precision gets its own
  floor: the same dense convolution in that precision (:func:`dense_conv_module`: bfloat16 channels-last, or
  ``torch.ao.nn.quantized.Conv2d`` on the x86 engine for int8, the way the issue's rates were measured), a worker of
  its own in the same rounds. A pair this machine cannot run fast (bf16 without AVX-512 BF16) is refused with one
  line before anything is timed (:func:`bench_pairs`).

The library returns dataclasses and prints nothing; ``effsr bench`` and ``benchmarks/bench_speed.py`` format them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .deploy.backends import BACKENDS, available_backends
from .deploy.precision import BACKEND_PRECISIONS, FLOAT_DTYPES, check_precision, precision_name
from .errors import BackendError
from .files import write_json
from .profile import time_call, torch_macs
from .runtime import cpu_name, openmp_env, set_threads, tune_glibc_malloc
from .sizes import parse_image_size as parse_size  # noqa: F401  (re-exported: the one size parser, W x H -> (H, W))

# The pseudo-backend that times the dense reference convolution inside every cell's interleaved rounds.
DENSE = "dense-3x3"
# Its shape: 64 -> 64 channels, 3x3, channels-last (the fastest layout here), at the cell's LR size, in the precision
# of the results it is the floor of.
DENSE_CHANNELS = 64
# The reference every speed-up is measured against: the authors' forward in float32.
REFERENCE = ("eager", "fp32")


@dataclass(frozen=True)
class BenchResult:
    """One (model, backend, threads, size) measurement. Times in milliseconds, sizes (H, W) of the LR input."""

    model: str
    backend: str
    threads: int
    lr_size: tuple[int, int]
    median_ms: float
    iqr_ms: float
    runs: int
    times_ms: tuple[float, ...] = ()
    device: str = "cpu"
    macs: int = 0
    floor_ms: float = 0.0
    max_abs_vs_eager: float | None = None
    prepare_s: float = 0.0
    dense_gflops: float = 0.0
    precision: str = "fp32"

    @property
    def output_mpix_per_s(self) -> float:
        """Output megapixels per second (x4: 16 output pixels per LR pixel), from the median."""
        h, w = self.lr_size
        return 16 * h * w / (self.median_ms * 1e3) if self.median_ms > 0 else 0.0

    @property
    def times_floor(self) -> float:
        """The median time divided by the arithmetic floor (1.0 = at the floor)."""
        return self.median_ms / self.floor_ms if self.floor_ms > 0 else float("nan")

    @property
    def path(self) -> str:
        """``backend:precision``, the name tables and the quality benchmarks use (``fast:bf16``)."""
        return f"{self.backend}:{self.precision}"

    def to_json(self) -> dict[str, Any]:
        """The entry of ``effsr bench --json``: exactly these keys (docs/deploy.md, "Benchmarks")."""
        return {
            "model": self.model,
            "backend": self.backend,
            "precision": self.precision,
            "threads": self.threads,
            "lr_size": [int(self.lr_size[0]), int(self.lr_size[1])],
            "median_ms": round(self.median_ms, 4),
            "iqr_ms": round(self.iqr_ms, 4),
            "runs": self.runs,
        }


@dataclass
class BenchReport:
    """All results of one benchmark run, with the machine and its dense-convolution rates (float32, and by
    precision: GFLOP/s, or GOP/s for int8)."""

    machine: str
    dense_conv_gflops: float
    results: list[BenchResult] = field(default_factory=list)
    dense_gflops_by_precision: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "dense_conv_gflops": round(self.dense_conv_gflops, 3),
            "dense_gflops_by_precision": {k: round(v, 3) for k, v in self.dense_gflops_by_precision.items()},
            "results": [r.to_json() for r in self.results],
        }

    def write_json(self, path: str | os.PathLike[str]) -> None:
        write_json(path, self.to_json())


def machine_name(device: str = "cpu") -> str:
    """CPU model name (:func:`effsr.runtime.cpu_name`), logical CPUs, torch version; the GPU name on CUDA, else
    whether effsr's native CPU kernels (:mod:`effsr.deploy.native`) are in use."""
    name = f"{cpu_name()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}"
    if str(device).startswith("cuda") and torch.cuda.is_available():
        name += f", {torch.cuda.get_device_name(torch.device(device))}"
    else:
        from .deploy import native  # whether the fast backend's native kernels ran (they change its times)

        name += ", effsr native kernels " + ("on" if native.library() is not None else "off")
    return name


def dense_conv_gflops(*, threads: int | None = None, device: str = "cpu", channels: int = 64,
                      size: int = 256, repeats: int = 15, precision: str = "fp32") -> float:
    """The rate of a dense 3x3 convolution (``channels`` -> ``channels``, ``size`` x ``size``) in GFLOP/s (GOP/s
    for int8), in ``precision`` (:func:`dense_conv_module`).

    Float32: the best of channels-last and NCHW; the other precisions channels-last. Median of ``repeats`` timed runs
    after warm-up: the arithmetic rate the machine reaches on the kind of work these models do, used as the floor's
    denominator.
    """
    set_threads(threads)
    dev = torch.device(device)
    flops = 2 * channels * channels * 9 * size * size
    formats = (torch.channels_last, torch.contiguous_format) if precision_name(precision) == "fp32" else (
        torch.channels_last,)
    best = 0.0
    for fmt in formats:
        conv, x = dense_conv_module(channels, (size, size), device=dev, precision=precision, memory_format=fmt)
        with torch.inference_mode():
            for _ in range(3):  # warm-up
                conv(x)
            times_ms = [time_call(lambda c=conv, x=x: c(x), dev) for _ in range(repeats)]
        best = max(best, flops / (statistics.median(times_ms) * 1e-3) / 1e9)
    return best


def dense_conv_module(channels: int, lr_size: tuple[int, int], *, device: str | torch.device = "cpu",
                      precision: str = "fp32", memory_format: torch.memory_format = torch.channels_last,
                      ) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
    """The floor's reference work in ``precision``: a ``channels`` -> ``channels`` 3x3 convolution (padding 1) and
    its input at ``lr_size``.

    Float precisions: ``nn.Conv2d`` in that dtype on a ``memory_format`` tensor. int8: ``torch.ao.nn.quantized.
    Conv2d`` (per-tensor weight scale) on the x86 quantized engine (oneDNN's int8 kernels where the CPU has VNNI, the
    engine PyTorch's x86 quantizer targets) with a quint8 channels-last input, as the issue's 1633 GOP/s were
    measured: the int8 path's arithmetic without its quantize / dequantize steps.
    """
    name = precision_name(precision)
    dev = torch.device(device)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, channels, *lr_size, generator=g)
    if name == "int8":
        if "x86" in torch.backends.quantized.supported_engines:
            torch.backends.quantized.engine = "x86"
        qconv = torch.ao.nn.quantized.Conv2d(channels, channels, 3, padding=1)
        weight = torch.randn(channels, channels, 3, 3, generator=g) * 0.05
        qconv.set_weight_bias(torch.quantize_per_tensor(weight, 0.05 / 64, 0, torch.qint8), torch.zeros(channels))
        qconv.scale, qconv.zero_point = 0.05, 64
        qx = torch.quantize_per_tensor(x, 1 / 255, 0, torch.quint8).contiguous(memory_format=torch.channels_last)
        return qconv, qx
    dtype = FLOAT_DTYPES[name]
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1).to(device=dev, dtype=dtype).eval().requires_grad_(False)
    conv = conv.to(memory_format=memory_format)
    return conv, x.to(device=dev, dtype=dtype).contiguous(memory_format=memory_format)


def bench_input(lr_size: tuple[int, int], channels: int = 3) -> torch.Tensor:
    """The deterministic image-like input every backend gets (see :func:`effsr.deploy.checks.example_image`)."""
    from .deploy.checks import example_image

    return example_image(channels, lr_size[0], lr_size[1], seed=1234)


def explain_passes(model: str, *, lr_size: tuple[int, int] = (256, 256), threads: int | None = None,
                   device: str = "cpu", weights: str | None = None, precision: str = "fp32") -> Any:
    """The fast engine of zoo model ``model`` prepared at ``lr_size`` in a float ``precision`` (nothing timed): its
    ``pass_report`` lists the graph passes in order with how often each fired (``effsr bench --explain``)."""
    from .deploy import prepare
    from .models import load_model

    net = load_model(model, weights, device=device)
    return prepare(net, "fast", device=device, threads=threads, example_size=lr_size, tune_malloc=False,
                   precision=precision)


def bench_pairs(backends: Sequence[str], precisions: Sequence[str] = ("fp32",), device: str = "cpu",
                ) -> list[tuple[str, str]]:
    """The (backend, precision) pairs to time: every asked backend in every asked precision it runs
    (:data:`~effsr.deploy.precision.BACKEND_PRECISIONS`), backends first, precisions in the asked order.

    Each precision is checked on this machine first (:func:`~effsr.deploy.precision.check_precision`): bf16 on a CPU
    without AVX-512 BF16 or AMX, int8 without VNNI or on CUDA raise :class:`~effsr.errors.PrecisionError` (one line),
    and so does a precision that none of the asked backends runs, before anything is timed.
    """
    from .errors import PrecisionError

    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise ValueError(f"unknown backend(s) {unknown} (choose from {', '.join(BACKENDS)})")
    names = list(dict.fromkeys(precision_name(p) for p in precisions))
    if not names:
        raise ValueError("no precision to time")
    pairs: list[tuple[str, str]] = []
    for name in names:
        runs = [b for b in backends if name in BACKEND_PRECISIONS.get(b, ())]
        if not runs:
            able = [b for b, ps in BACKEND_PRECISIONS.items() if name in ps]
            raise PrecisionError(f"none of the backends {', '.join(backends)} runs {name}; add --backend "
                                 f"{' or '.join(able)}")
    for backend in backends:
        for name in names:
            if name in BACKEND_PRECISIONS.get(backend, ()):
                check_precision(name, backend, device)  # the machine's conditions: one line before any timing
                pairs.append((backend, name))
    return pairs


def check_pairs(pairs: Sequence[tuple[str, str]], device: str = "cpu") -> list[tuple[str, str]]:
    """Explicit (backend, precision) pairs, names normalised, each one a backend runs
    (:data:`~effsr.deploy.precision.BACKEND_PRECISIONS`) and this machine runs fast
    (:func:`~effsr.deploy.precision.check_precision`; :class:`~effsr.errors.PrecisionError` otherwise)."""
    out: list[tuple[str, str]] = []
    for backend, precision in pairs:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
        pair = (backend, check_precision(precision, backend, device))
        if pair not in out:
            out.append(pair)
    if not out:
        raise ValueError("no (backend, precision) pair to time")
    return out


# ---- workers ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    model: str
    weights: str | None
    backend: str
    threads: int
    lr_size: tuple[int, int]
    device: str
    warmup: int
    tune_malloc: bool = True
    dense_repeat: int = 1
    precision: str = "fp32"

    @property
    def label(self) -> str:
        return f"{self.model}/{self.backend}:{self.precision}"


class _Runner:
    """A prepared backend: loads the model, prepares it and runs timed forwards (in a worker or in process)."""

    def __init__(self, job: _Job) -> None:
        from .deploy import prepare
        from .models import load_model

        set_threads(job.threads)
        self.device = torch.device(job.device)
        if job.backend == DENSE:
            self._init_dense(job)
            return
        model = load_model(job.model, job.weights, device=job.device)
        t0 = time.perf_counter()
        self.engine = prepare(model, job.backend, device=job.device, threads=job.threads, example_size=job.lr_size,
                              tune_malloc=job.tune_malloc, precision=job.precision)
        self.x = bench_input(job.lr_size).to(self.device)
        self.output = self.engine(self.x).float().cpu()
        for _ in range(max(0, job.warmup - 1)):
            self.engine(self.x)
        self.prepare_s = time.perf_counter() - t0

    def _init_dense(self, job: _Job) -> None:
        """The reference work of the floor in the job's precision (:func:`dense_conv_module`), timed exactly like a
        model (same process setup and rounds).

        One turn runs the dense convolution ``job.dense_repeat`` times back to back: as many MACs as the model's
        forward, so the cost of starting a turn (waking the threads after the pause, cold caches) weighs on the
        reference as much as on the model (measured here: one 8 ms convolution per turn ran at 394 GFLOP/s, eight at
        492 GFLOP/s, against a 515 GFLOP/s tight-loop peak).
        """
        t0 = time.perf_counter()
        if job.tune_malloc and self.device.type == "cpu":
            # The fast path's allocator setting: without it every 16 MB output is a fresh, page-faulting mmap.
            tune_glibc_malloc()
        conv, self.x = dense_conv_module(DENSE_CHANNELS, job.lr_size, device=self.device, precision=job.precision)

        def engine(inp: torch.Tensor, repeat: int = max(1, job.dense_repeat)) -> torch.Tensor:
            with torch.inference_mode():
                for _ in range(repeat):
                    out = conv(inp)
            return out

        self.engine = engine
        for _ in range(max(1, job.warmup)):
            self.engine(self.x)
        self.output = torch.zeros(0)
        self.prepare_s = time.perf_counter() - t0

    def run_ms(self) -> float:
        return time_call(lambda: self.engine(self.x), self.device)


def _worker_main(address: str, authkey_hex: str) -> None:
    """Entry point of a worker interpreter (``python -m effsr.bench --worker ADDRESS KEY``)."""
    from multiprocessing.connection import Client

    conn = Client(address, authkey=bytes.fromhex(authkey_hex))
    job = conn.recv()
    try:
        runner = _Runner(job)
        # numpy, not a tensor: torch's pickler would share the storage through a file descriptor.
        conn.send(("ready", runner.output.numpy(), runner.prepare_s))
    except Exception as exc:  # report, do not leave the parent waiting
        conn.send(("error", f"{type(exc).__name__}: {exc}", 0.0))
        return
    while True:
        cmd = conn.recv()
        if cmd == "run":
            conn.send(runner.run_ms())
        else:
            break


class PathFailedError(BackendError):
    """A (backend, precision) path could not be prepared in its worker (``backend``, ``precision``: which one; the
    message is the worker's error); the caller may time the others without it."""

    def __init__(self, backend: str, precision: str, message: str) -> None:
        super().__init__(message)
        self.backend, self.precision = backend, precision


class _Worker:
    """One backend in its own Python interpreter (a fresh ``sys.executable``, not ``multiprocessing`` spawn: that
    would re-run the caller's ``__main__``), driven over an authenticated local connection."""

    def __init__(self, job: _Job, isolate: bool, timeout_s: float = 1800.0) -> None:
        self.job = job
        self.proc: subprocess.Popen[bytes] | None = None
        self.timeout_s = timeout_s
        if not isolate:
            self.runner = _Runner(job)
            self.output, self.prepare_s = self.runner.output, self.runner.prepare_s
            return
        from multiprocessing.connection import Listener

        key = os.urandom(16)
        with Listener(authkey=key) as listener:
            # The eager worker runs in the caller's environment (the model as its authors run it); the others with
            # effsr's runtime settings, as the effsr command line runs them (effsr.runtime).
            env = None if job.backend == "eager" else openmp_env()
            self.proc = subprocess.Popen([sys.executable, "-m", "effsr.bench", "--worker", str(listener.address),
                                          key.hex()], env=env)
            self.conn = _accept(listener, self.proc, timeout_s)
        self.conn.send(job)
        status, payload, self.prepare_s = self._recv()
        if status != "ready":
            self.close()
            raise PathFailedError(job.backend, job.precision, f"{job.label}: {payload}")
        self.output = torch.from_numpy(payload)

    def _recv(self) -> Any:
        deadline = time.monotonic() + self.timeout_s
        while not self.conn.poll(1.0):
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.job.label}: the worker exited "
                                   f"(status {self.proc.returncode})")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.job.label}: no answer in {self.timeout_s:.0f} s")
        return self.conn.recv()

    def run_ms(self) -> float:
        if self.proc is None:
            set_threads(self.job.threads)
            return self.runner.run_ms()
        self.conn.send("run")
        return float(self._recv())

    def close(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(OSError):  # the worker may already be gone
                self.conn.send("stop")
                self.conn.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


def _accept(listener: Any, proc: subprocess.Popen[bytes], timeout_s: float) -> Any:
    """Accept the worker's connection, failing (not hanging) if the worker dies first."""
    import threading

    box: dict[str, Any] = {}

    def accept() -> None:
        try:
            box["conn"] = listener.accept()
        except Exception as exc:  # the listener closed under us: reported below
            box["error"] = exc

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while thread.is_alive():
        thread.join(1.0)
        if thread.is_alive() and (proc.poll() is not None or time.monotonic() > deadline):
            if proc.poll() is None:
                proc.kill()
            raise RuntimeError(f"the benchmark worker did not connect (exit status {proc.poll()})")
    if "conn" not in box:
        raise RuntimeError(f"the benchmark worker did not connect: {box.get('error')}")
    return box["conn"]


def bench_model(
    model: str,
    *,
    backends: Sequence[str] | None = None,
    precisions: Sequence[str] = ("fp32",),
    pairs: Sequence[tuple[str, str]] | None = None,
    threads: int = 2,
    lr_size: tuple[int, int] = (256, 256),
    device: str = "cpu",
    runs: int = 20,
    warmup: int = 3,
    weights: str | None = None,
    isolate: bool = True,
    gflops: float | Mapping[str, float] | None = None,
    pause_s: float = 0.2,
    on_progress: Callable[[str], None] | None = None,
) -> list[BenchResult]:
    """Time ``backends`` x ``precisions`` of one zoo model with interleaved runs (see the module docstring); one
    result per (backend, precision) pair of :func:`bench_pairs`, in that order, or of ``pairs`` when given (explicit
    (backend, precision) pairs, checked the same way; ``backends`` and ``precisions`` are then ignored).

    When a precision other than fp32 is asked for, the float32 eager forward (:data:`REFERENCE`) is timed in the same
    rounds too, and reported first if it was not asked for: it is the reference of every speed-up.
    ``gflops=None`` (default) measures each precision's floor rate inside the same rounds: a worker per precision
    that runs a 64 -> 64 3x3 convolution in that precision at ``lr_size`` (repeated to as many MACs as the model's
    forward) takes its turn with the backends, so the rates and the models' times come from the same process
    setup, pauses and machine state (:data:`DENSE`); a number fixes every precision's rate instead, a mapping
    (precision -> GFLOP/s) the rates of the precisions it names.
    ``isolate=False`` runs every backend in this process (quicker to start; process-wide settings then leak
    between backends, so use it only for smoke tests).
    """
    from .models import load_model

    if runs < 1:
        raise ValueError("runs must be >= 1")
    if pairs is not None:
        pairs = check_pairs(pairs, device)
    else:
        pairs = bench_pairs(available_backends() if backends is None else backends, precisions, device)
    if any(p != "fp32" for _, p in pairs) and REFERENCE not in pairs:
        pairs.insert(0, REFERENCE)
    macs, _ = torch_macs(load_model(model, weights), torch.zeros(1, 3, *lr_size))
    h, w = lr_size
    dense_macs = DENSE_CHANNELS * DENSE_CHANNELS * 9 * h * w
    dense_repeat = max(1, round(macs / dense_macs))  # a dense workload as large as the model's forward
    fixed: dict[str, float] = {}
    if isinstance(gflops, Mapping):
        fixed = {precision_name(k): float(v) for k, v in gflops.items()}
    elif gflops is not None:
        fixed = {p: float(gflops) for _, p in pairs}
    floors = [(DENSE, p) for p in dict.fromkeys(p for _, p in pairs) if p not in fixed]
    timed = pairs + floors
    workers: dict[tuple[str, str], _Worker] = {}
    try:
        for backend, precision in timed:
            if on_progress:
                on_progress(f"{model}: preparing {backend} {precision} ({threads} threads, {lr_size[0]}x{lr_size[1]})")
            # In-process runs share one allocator: leave it alone there (the fast path's tuning would leak).
            job = _Job(model, weights, backend, threads, tuple(lr_size), device, warmup, tune_malloc=isolate,
                       dense_repeat=dense_repeat, precision=precision)
            workers[(backend, precision)] = _Worker(job, isolate)
        times: dict[tuple[str, str], list[float]] = {k: [] for k in timed}
        order = list(timed)
        for r in range(runs):
            rotated = order[r % len(order):] + order[: r % len(order)]
            for key in rotated:
                # A pause before each run: thread pools that spin after their own run (onnxruntime's, OpenMP's)
                # must not steal the cores from the next backend (they did: +25 ms on the run after onnxruntime).
                time.sleep(pause_s)
                times[key].append(workers[key].run_ms())
        rates = dict(fixed)
        for key in floors:
            rates[key[1]] = 2 * dense_macs * dense_repeat / (statistics.median(times[key]) * 1e6)
        reference = workers[REFERENCE].output if REFERENCE in workers else None
        results = []
        for key in pairs:
            backend, precision = key
            t = sorted(times[key])
            q1, q3 = _quantile(t, 0.25), _quantile(t, 0.75)
            err = None
            if reference is not None:
                err = float((workers[key].output - reference).abs().max())
            results.append(BenchResult(
                model=model, backend=backend, threads=threads, lr_size=tuple(lr_size),
                median_ms=statistics.median(t), iqr_ms=q3 - q1, runs=len(t), times_ms=tuple(times[key]),
                device=device, macs=macs, floor_ms=2 * macs / (rates[precision] * 1e9) * 1e3,
                max_abs_vs_eager=err, prepare_s=workers[key].prepare_s, dense_gflops=rates[precision],
                precision=precision))
        return results
    finally:
        for w in workers.values():
            w.close()


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile of already sorted values (numpy's default method)."""
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo))


def run_benchmark(
    models: Sequence[str],
    *,
    backends: Sequence[str] | None = None,
    precisions: Sequence[str] = ("fp32",),
    threads: Sequence[int] = (2,),
    lr_sizes: Sequence[tuple[int, int]] = ((256, 256),),
    device: str = "cpu",
    runs: int = 20,
    warmup: int = 3,
    isolate: bool = True,
    on_progress: Callable[[str], None] | None = None,
) -> BenchReport:
    """Benchmark every (model, size, threads) combination in every (backend, precision) pair of :func:`bench_pairs`
    (checked before anything is timed).

    The dense-convolution rates are measured inside every cell's rounds (:func:`bench_model`); the report's single
    ``dense_conv_gflops`` (the issue's JSON has one number) is the median of the float32 rates at the largest thread
    count, ``dense_gflops_by_precision`` the same median for each precision.
    """
    backends = available_backends() if backends is None else backends
    bench_pairs(backends, precisions, device)  # a pair this machine cannot run: one line before any timing
    report = BenchReport(machine=machine_name(device), dense_conv_gflops=0.0)
    for size in lr_sizes:
        for t in threads:
            for model in models:
                report.results.extend(bench_model(
                    model, backends=backends, precisions=precisions, threads=t, lr_size=size, device=device,
                    runs=runs, warmup=warmup, isolate=isolate, on_progress=on_progress))
    top = [r for r in report.results if r.threads == max(threads)]
    for precision in dict.fromkeys(r.precision for r in top):
        report.dense_gflops_by_precision[precision] = statistics.median(
            r.dense_gflops for r in top if r.precision == precision)
    report.dense_conv_gflops = report.dense_gflops_by_precision.get("fp32", 0.0)
    return report


def result_rows(report: BenchReport) -> list[dict[str, Any]]:
    """Flat rows with every field and the derived numbers (for tables and CSV)."""
    rows = []
    for r in report.results:
        row = dataclasses.asdict(r)
        row.pop("times_ms")
        row["output_mpix_per_s"] = r.output_mpix_per_s
        row["times_floor"] = r.times_floor
        rows.append(row)
    return rows


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--worker":
    _worker_main(sys.argv[2], sys.argv[3])
