"""A/B of the fast engine's GELU on channels-last tensors: one process, one deploy graph, interleaved forwards.

A: the engine as built (``effsr.deploy.ops.gelu_dense_``: GELU on the flat view of a channels-last tensor).
B: the same graph with PyTorch's ``gelu_`` on the channels-last strides (what the engine ran before): the graph's
in-place GELU nodes and the GELU that follows a fused convolution + add (``ops.apply_unary``) switched for each B
forward. Both outputs are compared with the eager forward; then A and B alternate, median and p25-p75 printed.
One process and alternating order keep a noisy shared machine's drift out of the difference.

    EFFSR_WEIGHTS_DIR=../shared/weights .venv/bin/python benchmarks/ab_gelu.py mdrn_s msn --runs 15

Not a test.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import effsr
from effsr.deploy import ops, prepare


def _plain_gelu_(y: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten.gelu_(y)


def _use(which: str, engine: torch.nn.Module, nodes: list, new: object) -> None:
    """Switch the engine's GELU to A (``new``) or B (PyTorch's ``gelu_`` on the strides)."""
    fn = new if which == "A" else _plain_gelu_
    ops.gelu_dense_ = fn  # read by apply_unary at call time
    for n in nodes:
        n.target = fn
    engine.graph.recompile()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--lr-size", default="256x256")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.lr_size.lower().split("x"))
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    for name in args.models:
        model = effsr.load(name)
        engine = prepare(model, "fast", threads=args.threads)
        nodes = [n for n in engine.graph.graph.nodes if n.op == "call_function" and n.target is ops.gelu_dense_]
        new = ops.gelu_dense_

        def use(which: str, engine: torch.nn.Module = engine, nodes: list = nodes, new: object = new) -> None:
            _use(which, engine, nodes, new)

        with torch.inference_mode():
            ref = model(x)
            outs = {}
            for which in ("A", "B"):
                use(which)
                outs[which] = engine(x)
            times: dict[str, list[float]] = {"A": [], "B": []}
            for r in range(args.runs + 2):
                for which in (("A", "B") if r % 2 else ("B", "A")):
                    use(which)
                    time.sleep(0.05)
                    t0 = time.perf_counter()
                    engine(x)
                    if r >= 2:
                        times[which].append((time.perf_counter() - t0) * 1e3)
        use("A")
        for which in ("A", "B"):
            q = statistics.quantiles(times[which], n=4)
            print(f"{name} {which}: median {statistics.median(times[which]):.1f} ms (p25 {q[0]:.1f}, p75 {q[2]:.1f}),"
                  f" max abs vs eager {float((outs[which] - ref).abs().max()):.2e}; {len(nodes)} graph GELU nodes",
                  flush=True)


if __name__ == "__main__":
    main()
