"""The speed table of benchmarks/RESULTS.md: every zoo model, eager vs fast vs onnxruntime, 1 and 2 threads, LR 256x256
and 640x360, with output megapixels/s and the distance to the arithmetic floor.

Protocol (``effsr.bench``): each backend runs in its own Python process; after warm-up the timed forwards are
interleaved round-robin (order rotated every round) so that drifting load on a shared machine hits all backends
alike; median and inter-quartile range per cell. The floor is 2 x MACs (every conv and matmul, torch's flop counter)
divided by the rate of a dense 3x3 convolution (64 -> 64 channels, channels-last, at the cell's size) that takes its
turn in the same rounds as one more worker (``effsr.bench.DENSE``). The tight-loop peak of that convolution is
printed too, for comparison. The "goal" column is the project's bar for the fast path: max(eager / 2, 1.25 x floor).

    EFFSR_WEIGHTS_DIR=../shared/weights .venv/bin/python benchmarks/bench_speed.py                # full table
    ... --models rlfn,agdn,lsanet,ifadnet,mdrn_s,msn --sizes 256x256 --threads 2 --runs 15      # the goal check
    ... --update-results       # rewrite the speed table in benchmarks/RESULTS.md (between its markers)

Not part of the test suite (the full table takes about an hour on the 2-core CPU).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from effsr.runtime import configure_openmp

configure_openmp()  # as the effsr command line does, before torch loads (the dense-conv rate is measured here)

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
BEGIN = "<!-- speed table: written by benchmarks/bench_speed.py -->"
END = "<!-- end of the speed table -->"
SEED_MODELS = ("rlfn", "agdn", "lsanet", "ifadnet", "mdrn_s", "msn")


def main(argv: list[str] | None = None) -> int:
    from effsr.bench import available_backends, bench_model, dense_conv_gflops, machine_name, parse_size
    from effsr.models import get_spec, list_models

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="all", help="comma-separated zoo names, 'seed' or 'all' (default)")
    ap.add_argument("--sizes", default="256x256,640x360", help="LR sizes WxH, comma-separated")
    ap.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    ap.add_argument("--backends", default=",".join(available_backends()))
    ap.add_argument("--runs", type=int, default=10, help="timed runs per backend (interleaved)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write every result (with the raw times) as JSON")
    ap.add_argument("--update-results", action="store_true", help="rewrite the speed table in RESULTS.md")
    ap.add_argument("--render", type=Path, nargs="+", metavar="JSON",
                    help="do not measure: render the table from JSON files written by --json (merged in order)")
    args = ap.parse_args(argv)

    if args.render:
        results, rates, machine, runs = load_results(args.render)
        table = markdown_table(results, rates, machine, runs, None)
        print(table)
        if args.update_results:
            update_results(table)
        return 0

    if args.models == "all":
        models = [m for m in list_models() if get_spec(m).weights]
    elif args.models == "seed":
        models = list(SEED_MODELS)
    else:
        models = [m.strip() for m in args.models.split(",") if m.strip()]
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    backends = [b.strip() for b in args.backends.split(",")]

    started = time.time()
    rates = {t: dense_conv_gflops(threads=t) for t in threads}  # tight-loop peaks, for comparison only
    print(f"machine: {machine_name()}; dense 3x3 conv tight-loop peak: "
          + ", ".join(f"{rates[t]:.0f} GFLOP/s at {t} thread(s)" for t in threads), file=sys.stderr)
    results = []
    for size in sizes:
        for t in threads:
            for model in models:
                print(f"{model} {size[1]}x{size[0]} {t} thread(s) ...", file=sys.stderr, flush=True)
                results.extend(bench_model(model, backends=backends, threads=t, lr_size=size, runs=args.runs,
                                           warmup=args.warmup))
    table = markdown_table(results, {t: [r] for t, r in rates.items()}, machine_name(), args.runs,
                           time.time() - started)
    print(table)
    if args.json:
        args.json.write_text(json.dumps({
            "machine": machine_name(), "peak_dense_conv_gflops": {str(t): r for t, r in rates.items()},
            "results": [{**r.to_json(), "times_ms": list(r.times_ms), "macs": r.macs, "floor_ms": r.floor_ms,
                         "max_abs_vs_eager": r.max_abs_vs_eager, "prepare_s": r.prepare_s,
                         "dense_gflops": r.dense_gflops} for r in results],
        }, indent=1) + "\n")
    if args.update_results:
        update_results(table)
    return 0


def load_results(paths: list[Path]) -> tuple[list, dict[int, list[float]], str, int]:
    """Results, tight-loop peak rates per thread count (one per file), machine and (max) run count from ``--json``
    files."""
    from effsr.bench import BenchResult

    results, rates, machine, runs = [], {}, "", 0
    for path in paths:
        data = json.loads(path.read_text())
        machine = data["machine"]
        for t, r in data["peak_dense_conv_gflops"].items():
            rates.setdefault(int(t), []).append(float(r))
        for r in data["results"]:
            results.append(BenchResult(
                model=r["model"], backend=r["backend"], threads=r["threads"], lr_size=tuple(r["lr_size"]),
                median_ms=r["median_ms"], iqr_ms=r["iqr_ms"], runs=r["runs"], times_ms=tuple(r["times_ms"]),
                macs=r["macs"], floor_ms=r["floor_ms"], max_abs_vs_eager=r["max_abs_vs_eager"],
                prepare_s=r["prepare_s"], dense_gflops=r["dense_gflops"], precision=r.get("precision", "fp32")))
            runs = max(runs, r["runs"])
    return results, rates, machine, runs


def markdown_table(results: list, rates: dict[int, list[float]], machine: str, runs: int,
                   seconds: float | None) -> str:
    """One row per (model, size, threads): the three backends side by side, speed-ups, floor and the goal."""
    cells: dict[tuple, dict[str, object]] = {}
    for r in results:
        if r.precision == "fp32":  # the float32 table; benchmarks/lowp_goal.py tabulates the other precisions
            cells.setdefault((r.model, r.lr_size, r.threads), {})[r.backend] = r
    lines = [
        f"Machine: {machine}. Dense 3x3 conv (64 -> 64, 256x256) tight-loop peak at the start of each run: "
        + ", ".join(f"{' / '.join(f'{r:.0f}' for r in rates[t])} GFLOP/s ({t} thread{'s' if t > 1 else ''})"
                    for t in sorted(rates))
        + "; the floor uses the rate measured in each cell's rounds (column 'dense GFLOP/s')"
        + f". Up to {runs} interleaved runs per cell after warm-up; median (IQR) in ms"
        + (f"; took {seconds / 60:.0f} min." if seconds is not None else "."),
        "",
        "| model | LR WxH | threads | eager ms | fast ms | onnxruntime ms | fast speed-up | ort speed-up "
        "| fast out MP/s | dense GFLOP/s | floor ms | fast / floor | goal ms | fast meets goal "
        "| fast max abs vs eager |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (model, size, t), row in cells.items():
        eager, fast, ort = row.get("eager"), row.get("fast"), row.get("onnxruntime")

        def ms(r: object) -> str:
            return f"{r.median_ms:.1f} ({r.iqr_ms:.1f})" if r is not None else "-"

        def speedup(r: object, eager: object = eager) -> str:
            return f"{eager.median_ms / r.median_ms:.2f}x" if r is not None and eager is not None else "-"

        ref = fast or eager or ort
        floor = ref.floor_ms if ref is not None else 0.0
        dense = ref.dense_gflops if ref is not None else 0.0
        goal = max(eager.median_ms / 2, 1.25 * floor) if eager is not None else float("nan")
        meets = "-" if fast is None or eager is None else ("yes" if fast.median_ms <= goal else "**no**")
        err = "-" if fast is None or fast.max_abs_vs_eager is None else f"{fast.max_abs_vs_eager:.1e}"
        lines.append(
            f"| {model} | {size[1]}x{size[0]} | {t} | {ms(eager)} | {ms(fast)} | {ms(ort)} | {speedup(fast)} "
            f"| {speedup(ort)} | {fast.output_mpix_per_s if fast else 0:.2f} | {dense:.0f} | {floor:.1f} "
            f"| {fast.times_floor if fast else float('nan'):.2f} | {goal:.1f} | {meets} | {err} |")
    return "\n".join(lines)


def update_results(table: str) -> None:
    """Replace the text between the speed-table markers of RESULTS.md (append a section if there is none)."""
    text = RESULTS.read_text() if RESULTS.exists() else "# effsr benchmarks\n"
    block = f"{BEGIN}\n{table}\n{END}"
    if BEGIN in text and END in text:
        text = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _m: block, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n## Speed\n\n" + block + "\n"
    RESULTS.write_text(text)


if __name__ == "__main__":
    raise SystemExit(main())
