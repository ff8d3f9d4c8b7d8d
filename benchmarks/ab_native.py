"""A/B of the fast engine's native kernels: one process, both deploy graphs, interleaved forwards.

Builds the deploy graph of a zoo model twice (without and with the native passes: ``disable_passes=NATIVE_PASSES``),
checks both against the eager forward and each other, then times them in alternating order with a short pause before
each forward (as ``effsr bench`` does), and prints median and p25-p75. Used for the "Native kernels" before/after table
of benchmarks/RESULTS.md:

    EFFSR_WEIGHTS_DIR=../shared/weights GOMP_SPINCOUNT=300000 .venv/bin/python benchmarks/ab_native.py rlfn --runs 31

Not part of the test suite (a minute per model on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import time

import torch

import effsr
from effsr.deploy import build_deploy_graph, native
from effsr.deploy.checks import example_image
from effsr.deploy.passes import NATIVE_PASSES
from effsr.profile import time_call
from effsr.runtime import set_threads, tune_glibc_malloc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--size", type=int, default=256, help="LR height and width (default 256)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=21)
    args = ap.parse_args()
    set_threads(args.threads)
    tune_glibc_malloc()  # as prepare() does for the fast backend
    if native.library() is None:
        raise SystemExit(f"native kernels unavailable: {native.unavailable_reason()}")
    model = effsr.load(args.model).eval()
    example = example_image(3, 64, 64).contiguous(memory_format=torch.channels_last)
    graphs = {"oneDNN only": build_deploy_graph(model, example, disable_passes=NATIVE_PASSES),
              "native": build_deploy_graph(model, example)}
    x = example_image(3, args.size, args.size)
    xc = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        ref = model(x)
        outs = {k: g(xc) for k, g in graphs.items()}
    for k, y in outs.items():
        print(f"{k}: max abs vs eager {(y - ref).abs().max().item():.2e}")
    print(f"native vs oneDNN only: max abs {(outs['native'] - outs['oneDNN only']).abs().max().item():.2e}")
    times: dict[str, list[float]] = {k: [] for k in graphs}
    order = list(graphs)
    with torch.inference_mode():
        for g in graphs.values():
            for _ in range(3):
                g(xc)
        for r in range(args.runs):
            for k in order if r % 2 else order[::-1]:
                time.sleep(0.2)
                times[k].append(time_call(lambda k=k: graphs[k](xc)) / 1e3)
    for k, v in times.items():
        v.sort()
        n = len(v)
        print(f"{args.model} {k}: median {v[n // 2] * 1e3:.1f} ms (p25 {v[n // 4] * 1e3:.1f}, "
              f"p75 {v[3 * n // 4] * 1e3:.1f}), {n} runs, {args.size}x{args.size}, {args.threads} threads")


if __name__ == "__main__":
    main()
