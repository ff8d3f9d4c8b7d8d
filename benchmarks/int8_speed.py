"""int8 against fp32 for one model, by float-layer policy or int8 file: one process, interleaved forwards.

``lowp_goal.py`` times ``--precision int8`` as ``prepare`` builds it (the zoo's stored policy, a near-float graph for
RLFN and SPAN). This script times the other int8 graphs a user can run next to the fast fp32 engine of the official
weights: post-training with nothing kept float (``--policy none``), the stored policy, and int8 files (``--file``,
e.g. the ``final_int8.safetensors`` of a ``quant: int8`` training stage). All engines live in one process and run in
turn, ``--runs`` rounds, so a shared machine's drift falls on all of them alike; medians and p25-p75 are printed
with each graph's time as a fraction of fast fp32 (the issue's goal: at most 0.4).

    EFFSR_WEIGHTS_DIR=../shared/weights .venv/bin/python benchmarks/int8_speed.py rlfn --policy none,stored \\
        --file /tmp/effsr_qat_rlfn_none_600/final_int8.safetensors --runs 15

A timing: run it on a quiet machine with VNNI. Not a test.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import effsr
from effsr.deploy import prepare
from effsr.deploy.quantize import load_int8, prepare_int8
from effsr.runtime import set_threads
from effsr.sizes import parse_image_size


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(values, n=4)
    return q[0], statistics.median(values), q[2]


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Time the engines and print the table; returns each engine's median ms by label."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--policy", default="none,stored", help="post-training policies: none, stored (comma-separated)")
    ap.add_argument("--file", action="append", default=[], help="an int8 file (repeatable)")
    ap.add_argument("--lr-size", default="256x256", help="W x H")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args(argv)
    if args.runs < 2:
        ap.error("--runs must be at least 2 (quartiles)")
    h, w = parse_image_size(args.lr_size, square=True)
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    model = effsr.load(args.model)
    engines: dict[str, torch.nn.Module] = {"fast fp32": prepare(model, "fast", threads=args.threads)}
    for policy in [p for p in args.policy.split(",") if p]:
        engine = prepare_int8(model, policy=None if policy == "stored" else policy)
        engines[f"int8 {policy} ({engine.layers['int8_convs']} int8 convs, {engine.activation_bits}-bit)"] = engine
    for path in args.file:
        engine = load_int8(path)
        engines[f"int8 file {path} ({engine.layers['int8_convs']} int8 convs, {engine.activation_bits}-bit)"] = engine
    set_threads(args.threads)
    times: dict[str, list[float]] = {k: [] for k in engines}
    with torch.inference_mode():
        for e in engines.values():  # warm-up
            e(x)
            e(x)
        for _ in range(args.runs):
            for label, e in engines.items():
                t0 = time.perf_counter()
                e(x)
                times[label].append((time.perf_counter() - t0) * 1e3)
    medians = {label: statistics.median(t) for label, t in times.items()}
    base = medians["fast fp32"]
    print(f"{args.model}, LR {w}x{h}, {args.threads} threads, {args.runs} interleaved rounds: median (p25-p75) ms")
    for label, t in times.items():
        q1, med, q3 = _quartiles(t)
        print(f"  {label}: {med:.1f} ({q1:.1f}-{q3:.1f}) ms, {med / base:.2f}x fast fp32")
    return medians


if __name__ == "__main__":
    main()
