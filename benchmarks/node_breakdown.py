"""Where the time goes: effsr's fast engine against OpenVINO, node by node, in one precision.

For each model: both engines prepared for LR HxW at N threads; then interleaved rounds, each one plain forward of
each engine (the wall time, as ``effsr bench`` measures it) and one per-node forward of each
(``effsr.deploy.node_times``: the fast engine's deploy graph run node by node, OpenVINO's own performance counters).
Medians over the rounds. Reports, per engine, the time by kind of node; and for the convolutions the two engines
share by name (OpenVINO keeps the torch module path in its node names), each engine's total and the nodes where the
gap is largest, with the rate in GFLOP/s (2 x MACs / time).

    .venv/bin/python benchmarks/node_breakdown.py --models rlfn,mdrn_s,msn --json benchmarks/results/nodes.json
    .venv/bin/python benchmarks/node_breakdown.py --render benchmarks/results/nodes.json    # the markdown

A timing: run it on a quiet machine. Not a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

MODELS = ("rlfn", "lsanet", "mdrn_s", "msn", "span", "agdn", "ifadnet")


def ov_module_path(node_name: str) -> str | None:
    """``__module.block_1.c1_r/aten::_convolution/Convolution`` -> ``block_1_c1_r`` (the fx node name of the same
    module in effsr's deploy graph); None for nodes OpenVINO made itself."""
    head = node_name.split("/", 1)[0]
    if not head.startswith("__module."):
        return None
    return head[len("__module."):].replace(".", "_")


def measure(name: str, size: tuple[int, int], threads: int, rounds: int, warmup: int, precision: str) -> dict:
    import torch

    import effsr
    from effsr.deploy import prepare
    from effsr.deploy.node_times import sample, summarise

    torch.set_num_threads(threads)
    model = effsr.load(name)
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0))
    engines = {"fast": prepare(model, "fast", threads=threads, precision=precision),
               "openvino": prepare(model, "openvino", threads=threads, precision=precision)}
    walls: dict[str, list[float]] = {k: [] for k in engines}
    samples: dict[str, list] = {k: [] for k in engines}
    for r in range(warmup + rounds):
        for key, eng in engines.items():
            t0 = time.perf_counter()
            eng(x)
            wall = (time.perf_counter() - t0) * 1e3
            nodes = sample(eng, x)
            if r >= warmup:
                walls[key].append(wall)
                samples[key].append(nodes)
    out: dict = {"model": name, "wall_ms": {k: statistics.median(v) for k, v in walls.items()}, "engines": {}}
    for key in engines:
        times = summarise(samples[key])
        out["engines"][key] = [{"name": t.name, "kind": t.kind, "ms": t.ms, "macs": t.macs, "detail": t.detail}
                               for t in times]
    return out


def matched_convs(row: dict) -> list[dict]:
    """Convolutions present in both engines under the same module path: fast ms, OpenVINO ms, MACs."""
    fast = {n["name"]: n for n in row["engines"]["fast"] if n["macs"]}
    pairs = []
    for n in row["engines"]["openvino"]:
        path = ov_module_path(n["name"])
        if n["kind"] == "Convolution" and path in fast:
            f = fast[path]
            pairs.append({"node": path, "kind": f["kind"], "macs": f["macs"], "fast_ms": f["ms"], "ov_ms": n["ms"],
                          "fast_detail": f["detail"], "ov_detail": n["detail"]})
    return pairs


def kinds(nodes: list[dict]) -> dict[str, dict]:
    """Total ms and node count per kind of the JSON rows (effsr.deploy.node_times.by_kind)."""
    from effsr.deploy.node_times import NodeTime, by_kind

    return by_kind([NodeTime(**n) for n in nodes])


def render(data: dict, top: int = 4) -> str:
    lines = [f"Machine: {data['machine']}; LR {data['size']}, {data['threads']} threads, {data['precision']}, "
             f"{data['rounds']} interleaved rounds after {data['warmup']} warm-up, medians; {data['date']}.", ""]
    for row in data["models"]:
        fast_nodes, ov_nodes = row["engines"]["fast"], row["engines"]["openvino"]
        fs, os_ = sum(n["ms"] for n in fast_nodes), sum(n["ms"] for n in ov_nodes)
        pairs = matched_convs(row)
        pf, po = sum(p["fast_ms"] for p in pairs), sum(p["ov_ms"] for p in pairs)
        lines.append(f"**{row['model']}**: wall fast {row['wall_ms']['fast']:.1f} ms, OpenVINO "
                     f"{row['wall_ms']['openvino']:.1f} ms; sum of nodes fast {fs:.1f} ms ({len(fast_nodes)} nodes), "
                     f"OpenVINO {os_:.1f} ms ({len(ov_nodes)} nodes). Convolutions both engines run as one node "
                     f"each ({len(pairs)}): fast {pf:.1f} ms, OpenVINO {po:.1f} ms; everything else: fast "
                     f"{fs - pf:.1f} ms, OpenVINO {os_ - po:.1f} ms.")
        lines.append("")
        fk, ok = kinds(fast_nodes), kinds(ov_nodes)
        lines.append("| fast: kind | nodes | ms | | OpenVINO: kind | nodes | ms |")
        lines.append("|---|---:|---:|---|---|---:|---:|")
        fl, ol = list(fk.items())[:6], list(ok.items())[:6]
        for i in range(max(len(fl), len(ol))):
            a = f"{fl[i][0]} | {fl[i][1]['nodes']} | {fl[i][1]['ms']:.1f}" if i < len(fl) else " | | "
            b = f"{ol[i][0]} | {ol[i][1]['nodes']} | {ol[i][1]['ms']:.1f}" if i < len(ol) else " | | "
            lines.append(f"| {a} | | {b} |")
        lines.append("")
        if pairs:
            worst = sorted(pairs, key=lambda p: p["ov_ms"] - p["fast_ms"])[:top]
            lines.append("| shared convolution | kind | fast ms (GFLOP/s, post-ops) | OpenVINO ms (GFLOP/s, kernel) |")
            lines.append("|---|---|---:|---:|")
            for p in worst:
                gf = 2 * p["macs"] / p["fast_ms"] / 1e6
                go = 2 * p["macs"] / p["ov_ms"] / 1e6
                lines.append(f"| {p['node']} | {p['kind']} | {p['fast_ms']:.2f} ({gf:.0f}, {p['fast_detail'] or '-'}) "
                             f"| {p['ov_ms']:.2f} ({go:.0f}, {p['ov_detail']}) |")
            lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--lr-size", default="256x256")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--render", type=Path, default=None, help="print the markdown of a JSON written before")
    args = ap.parse_args(argv)
    if args.render:
        print(render(json.loads(args.render.read_text())))
        return 0
    from effsr.bench import machine_name

    h, w = (int(v) for v in args.lr_size.lower().split("x"))
    data = {"machine": machine_name(),
            "size": args.lr_size, "threads": args.threads, "precision": args.precision, "rounds": args.rounds,
            "warmup": args.warmup, "date": time.strftime("%Y-%m-%d"), "models": []}
    for name in [m for m in args.models.split(",") if m]:
        row = measure(name, (h, w), args.threads, args.rounds, args.warmup, args.precision)
        data["models"].append(row)
        print(f"{name}: wall fast {row['wall_ms']['fast']:.1f} ms, openvino {row['wall_ms']['openvino']:.1f} ms",
              flush=True)
        if args.json:
            args.json.write_text(json.dumps(data, indent=1) + "\n")
    print(render(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
