"""The low-precision goal table of benchmarks/RESULTS.md: the six seed models and SPAN at LR 256x256, 2 threads, in
every path (eager fp32, fast fp32, fast bf16, fast int8, openvino fp32 / bf16 / int8), with each precision's own
floor and the PSNR cost measured by benchmarks/lowp_quality.py.

    python benchmarks/lowp_goal.py --json benchmarks/results/lowp_goal_256_t2.json          # measure (quiet machine)
    python benchmarks/lowp_goal.py --render benchmarks/results/lowp_goal_256_t2.json \\
        --quality benchmarks/results/lowp_quality_bf16.json benchmarks/results/lowp_quality_int8.json

Timing is ``effsr.bench.bench_model`` with explicit (backend, precision) pairs: every path of a model in its own
worker process, the interleaved rounds shared with the float32 eager forward and one dense 3x3 convolution per
precision (fp32 and bf16 ``nn.Conv2d`` channels-last, int8 ``torch.ao.nn.quantized.Conv2d`` on the x86 engine), so
each row's floor (2 x MACs / that precision's rate) comes from the same rounds. A path this machine cannot run (a
backend not installed, no BF16 or VNNI) is listed as unavailable, not timed.

The goals (the issue's), checked per row by ``--render``:

* bf16: at most 0.6 x the model's fast fp32 time, PSNR cost at most 0.02 dB (RGB) on every set;
* int8: at most 0.4 x the fast fp32 time, PSNR cost at most 0.05 dB (RGB) on Set5, Set14 and B100; RLFN's fast int8
  within 1.5 x its int8 floor;
* OpenVINO rows: effsr's best path in the same precision at least as fast as OpenVINO's (same run).

A row that misses says by how much. Not part of the test suite (tests/test_lowp.py renders a tiny JSON).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MODELS = ("rlfn", "agdn", "lsanet", "ifadnet", "mdrn_s", "msn", "span")
PATHS = (("eager", "fp32"), ("fast", "fp32"), ("fast", "bf16"), ("fast", "int8"), ("openvino", "fp32"),
         ("openvino", "bf16"), ("openvino", "int8"))
# The goals: time as a fraction of the model's fast fp32 time, and the largest PSNR cost (dB, RGB) on any set.
TIME_GOAL = {"bf16": 0.6, "int8": 0.4}
COST_GOAL_DB = {"bf16": 0.02, "int8": 0.05}
# RLFN's fast int8 time as a multiple of its int8 floor.
RLFN_INT8_FLOOR_GOAL = 1.5


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--paths", default=",".join(f"{b}:{p}" for b, p in PATHS), help="backend:precision, ...")
    ap.add_argument("--lr-size", default="256x256", help="W x H")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=9, help="timed runs per path (interleaved)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--json", type=Path, help="write the measurement as JSON")
    ap.add_argument("--render", type=Path, metavar="JSON", help="do not measure: render the table of a --json file")
    ap.add_argument("--quality", type=Path, nargs="*", default=[],
                    help="benchmarks/lowp_quality.py JSON files with the PSNR costs (merged in order)")
    ap.add_argument("--markdown", type=Path, help="also write the rendered table to this file")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    from effsr.files import check_output, write_json, write_text

    if args.render:
        report = json.loads(args.render.read_text())
    else:
        from effsr.runtime import configure_openmp
        from effsr.sizes import parse_image_size

        configure_openmp()  # as the effsr command line does, before the workers start
        paths = [tuple(p.split(":", 1)) for p in args.paths.split(",") if p.strip()]
        if args.json:
            check_output(args.json, overwrite=args.overwrite)  # before the long run

        def save(partial: dict[str, Any]) -> None:
            if args.json:
                write_json(args.json, partial, overwrite=True)

        report = measure([m.strip() for m in args.models.split(",") if m.strip()], paths,
                         lr_size=parse_image_size(args.lr_size, square=True), threads=args.threads, runs=args.runs,
                         warmup=args.warmup, log=lambda msg: print(msg, file=sys.stderr, flush=True), on_model=save)
    text = render(report, load_quality(args.quality))
    print(text)
    if args.markdown:
        write_text(args.markdown, text + "\n", overwrite=args.overwrite)
    return 0


def measure(models: list[str], paths: list[tuple[str, str]], *, lr_size: tuple[int, int], threads: int, runs: int,
            warmup: int, log=lambda msg: None, on_model=None) -> dict[str, Any]:
    """Time every available path of every model (``effsr.bench.bench_model``); the unavailable ones with why, and
    a path that fails to build for one model (``failed``) with its first line. ``on_model(report)`` is called after
    each model (the report so far: an interrupted run keeps what it finished)."""
    from effsr.bench import PathFailedError, bench_model, machine_name
    from effsr.deploy.backends import require_backend
    from effsr.deploy.precision import check_precision
    from effsr.errors import EffsrError

    usable, unavailable = [], []
    for backend, precision in paths:
        try:
            require_backend(backend)
            check_precision(precision, backend, "cpu")
            usable.append((backend, precision))
        except (EffsrError, ValueError) as exc:
            unavailable.append({"backend": backend, "precision": precision, "reason": str(exc)})
            log(f"{backend}:{precision}: not available ({exc})")
    started = time.time()
    report = {"machine": machine_name(), "date": datetime.date.today().isoformat(), "threads": threads,
              "lr_size": list(lr_size), "runs": runs, "warmup": warmup, "seconds": 0.0, "results": [],
              "unavailable": unavailable, "failed": []}
    for model in models:
        pairs = list(usable)
        while pairs:
            log(f"{model}: {', '.join(f'{b}:{p}' for b, p in pairs)} ({threads} threads, {lr_size[1]}x{lr_size[0]})")
            try:
                timed = bench_model(model, pairs=pairs, threads=threads, lr_size=lr_size, runs=runs, warmup=warmup,
                                    on_progress=log)
            except PathFailedError as exc:  # one path of this model cannot be built here: time the others without it
                log(f"{model}: {exc.backend}:{exc.precision} failed, timing the others without it ({exc})")
                report["failed"].append({"model": model, "backend": exc.backend, "precision": exc.precision,
                                         "reason": str(exc).splitlines()[0] if str(exc) else type(exc).__name__})
                pairs.remove((exc.backend, exc.precision))
                continue
            for r in timed:
                report["results"].append({**r.to_json(), "times_ms": list(r.times_ms), "macs": r.macs,
                                          "floor_ms": r.floor_ms, "dense_gflops": r.dense_gflops,
                                          "max_abs_vs_eager": r.max_abs_vs_eager, "prepare_s": r.prepare_s})
            break
        report["seconds"] = round(time.time() - started, 1)
        if on_model is not None:
            on_model(report)
    return report


def load_quality(paths: Iterable[Path]) -> dict[tuple[str, str], dict[str, float]]:
    """(model, "backend:precision") -> {set name: PSNR cost RGB (dB)} from lowp_quality.py JSON files."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    for path in paths:
        for c in json.loads(Path(path).read_text())["costs"]:
            out.setdefault((c["model"], f"{c['backend']}:{c['precision']}"), {})[c["dataset"]] = c["cost_rgb_db"]
    return out


def _ratio_verdict(value: float, goal: float, what: str) -> tuple[bool, str]:
    if value <= goal:
        return True, f"{what} {value:.2f} <= {goal:g}"
    return False, f"{what} {value:.2f} > {goal:g} (misses by {100 * (value / goal - 1):.0f}%)"


def verdicts(row: dict[str, Any], cell: dict[str, dict[str, Any]],
             cost: dict[str, float] | None) -> list[tuple[bool, str]]:
    """The goals ``row`` is held to (module docstring) and whether it meets each, with the numbers."""
    precision, backend, model = row["precision"], row["backend"], row["model"]
    out: list[tuple[bool, str]] = []
    fast32 = cell.get("fast:fp32")
    if precision in TIME_GOAL and fast32 is not None:
        out.append(_ratio_verdict(row["median_ms"] / fast32["median_ms"], TIME_GOAL[precision], "x fast fp32"))
    if precision in COST_GOAL_DB:
        if cost:
            worst_set, worst = max(cost.items(), key=lambda kv: kv[1])
            goal = COST_GOAL_DB[precision]
            if worst <= goal:
                out.append((True, f"cost <= {goal:g} dB on every set (worst {worst_set} {worst:+.3f})"))
            else:
                out.append((False, f"cost {worst:+.3f} dB on {worst_set} > {goal:g} (misses by {worst - goal:.3f} dB)"))
        else:
            out.append((False, "PSNR cost not measured (no lowp_quality JSON for this path)"))
    if model == "rlfn" and backend == "fast" and precision == "int8" and row["floor_ms"] > 0:
        out.append(_ratio_verdict(row["median_ms"] / row["floor_ms"], RLFN_INT8_FLOOR_GOAL, "x int8 floor"))
    if backend == "openvino":
        mine = [r for key, r in cell.items() if r["precision"] == precision and r["backend"] != "openvino"]
        if mine:
            best = min(mine, key=lambda r: r["median_ms"])
            ratio = best["median_ms"] / row["median_ms"]
            label = f"effsr {best['backend']} {best['median_ms']:.1f} ms"
            if ratio <= 1.0:
                out.append((True, f"{label} <= OpenVINO"))
            else:
                out.append((False, f"{label} > OpenVINO (effsr misses by {100 * (ratio - 1):.0f}%)"))
    return out


def render(report: dict[str, Any], quality: dict[tuple[str, str], dict[str, float]] | None = None) -> str:
    """The goal table of a :func:`measure` report, with the PSNR costs of ``quality`` (:func:`load_quality`)."""
    quality = quality or {}
    cells: dict[str, dict[str, dict[str, Any]]] = {}
    for r in report["results"]:
        cells.setdefault(r["model"], {})[f"{r['backend']}:{r['precision']}"] = r
    h, w = report["lr_size"]
    lines = [
        f"Machine: {report['machine']}; LR {w}x{h}, {report['threads']} threads, {report['runs']} interleaved runs "
        f"per path after {report['warmup']} warm-up, median (IQR) ms; {report['date']}. Floor = 2 x MACs / the "
        "dense 3x3 conv rate of the row's precision, measured in the same rounds. PSNR cost: float32 eager minus "
        "the path, RGB, mean over the sets measured (benchmarks/lowp_quality.py).",
        "",
        "| model | path | median ms (IQR) | speed-up vs eager fp32 | x fast fp32 | floor ms | x floor "
        "| PSNR cost RGB (dB) | goals |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    met = missed = 0
    for model, cell in cells.items():
        eager = cell.get("eager:fp32")
        fast32 = cell.get("fast:fp32")
        for path, r in cell.items():
            cost = quality.get((model, path))
            speedup = f"{eager['median_ms'] / r['median_ms']:.2f}x" if eager else "-"
            rel = f"{r['median_ms'] / fast32['median_ms']:.2f}" if fast32 else "-"
            x_floor = f"{r['median_ms'] / r['floor_ms']:.2f}" if r["floor_ms"] > 0 else "-"
            cost_text = f"{sum(cost.values()) / len(cost):+.4f}" if cost else ("0 (reference)"
                                                                             if path == "eager:fp32" else "-")
            checks = verdicts(r, cell, cost)
            met += sum(ok for ok, _ in checks)
            missed += sum(not ok for ok, _ in checks)
            goals = "; ".join(("meets: " if ok else "**misses**: ") + text for ok, text in checks) or "-"
            lines.append(f"| {model} | {path} | {r['median_ms']:.1f} ({r['iqr_ms']:.1f}) | {speedup} | {rel} "
                         f"| {r['floor_ms']:.1f} | {x_floor} | {cost_text} | {goals} |")
    lines.append("")
    lines.append(f"Goals met: {met}; missed: {missed}.")
    for u in report.get("unavailable", []):
        lines.append(f"Not measured: {u['backend']}:{u['precision']} ({u['reason']}).")
    for f in report.get("failed", []):
        lines.append(f"Failed to build: {f['model']} {f['backend']}:{f['precision']} ({f['reason']}).")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
