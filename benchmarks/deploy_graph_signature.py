"""Structural signature of the fast backend's deploy graph of every zoo model, to prove a refactor keeps it.

``dump`` writes, per model, every node of the graph (op, target, arguments; for fused convs their settings and a hash
of every weight) and a hash of the output on a fixed example; ``compare`` reports, per model, whether two dumps have
the same graph up to node names and the same output bits. Run ``dump`` with each checkout's code on its path:

    EFFSR_WEIGHTS_DIR=../shared/weights PYTHONPATH=../main/src .venv/bin/python benchmarks/deploy_graph_signature.py \\
        dump /tmp/before.json
    EFFSR_WEIGHTS_DIR=../shared/weights .venv/bin/python benchmarks/deploy_graph_signature.py dump /tmp/after.json
    .venv/bin/python benchmarks/deploy_graph_signature.py compare /tmp/before.json /tmp/after.json

Not part of the test suite (about a minute). It also reads checkouts from before the deploy split (engine.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys

os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")  # as the tests pin it (tests/conftest.py)
os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")

ZOO = ("rlfn", "agdn", "lsanet", "ifadnet", "mdrn_s", "msn", "span", "safmnpp", "mdrn")


def _hash(t) -> str:
    t = t.detach().contiguous().cpu()
    return f"{hashlib.sha256(t.numpy().tobytes()).hexdigest()[:16]}{tuple(t.shape)}{t.dtype}"


def _arg(a):
    import torch.fx as fx

    if isinstance(a, fx.Node):
        return "%" + a.name
    if isinstance(a, (list, tuple)):
        return [_arg(x) for x in a]
    if isinstance(a, dict):
        return {k: _arg(v) for k, v in a.items()}
    if isinstance(a, slice):
        return f"slice({a.start},{a.stop},{a.step})"
    return repr(a)


def dump(path: str, names: list[str]) -> None:
    import torch

    import effsr
    from effsr.deploy import prepare

    try:
        from effsr.deploy.checks import example_image
    except ImportError:  # a checkout from before the split
        from effsr.deploy.engine import example_image
    torch.set_num_threads(1)
    out = {}
    for name in names:
        engine = prepare(effsr.load(name), "fast", tune_malloc=False)
        gm = engine.graph
        nodes = []
        for n in gm.graph.nodes:
            target = n.target
            if n.op == "call_module":
                m = gm.get_submodule(n.target)
                tensors = dict(m.named_parameters()) | dict(m.named_buffers())
                target = {"path": n.target, "type": type(m).__name__, "repr": m.extra_repr(),
                          "tensors": {k: _hash(v) for k, v in tensors.items()}}
            elif n.op == "get_attr":
                value = gm
                for part in n.target.split("."):  # a buffer or a parameter (AGDN's per-channel scale)
                    value = getattr(value, part)
                target = {"path": n.target, "value": _hash(value) if isinstance(value, torch.Tensor) else repr(value)}
            elif not isinstance(target, str):
                target = getattr(target, "__name__", repr(target)).lstrip("_")
            nodes.append([n.name, n.op, target, _arg(n.args), _arg(n.kwargs)])
        with torch.inference_mode():
            y = engine(example_image(3, 48, 52))
        out[name] = {"nodes": nodes, "out": _hash(y)}
        print(name, len(nodes), "nodes", file=sys.stderr)
    with open(path, "w") as f:
        json.dump(out, f)


def _canonical(nodes: list) -> str:
    """The node list with nodes numbered by position and folded constants unnamed (names are not structure)."""
    index = {}
    for n in nodes:
        index[n[0]] = f"n{len(index)}"
        index["_" + n[0]] = index[n[0]]
    text = json.dumps([n[1:] for n in nodes], sort_keys=True)
    text = re.sub(r'"%(\w+)"', lambda m: '"%' + index.get(m.group(1), m.group(1)) + '"', text)
    return re.sub(r'"path": "(_const\d+|mean|rgb_mean)"', '"path": "C"', text)


def compare(before: str, after: str) -> int:
    with open(before) as fa, open(after) as fb:
        a, b = json.load(fa), json.load(fb)
    bad = 0
    for name in a:
        if name not in b:
            print(f"{name}: missing in {after}")
            bad += 1
            continue
        same = _canonical(a[name]["nodes"]) == _canonical(b[name]["nodes"])
        bits = a[name]["out"] == b[name]["out"]
        bad += not (same and bits)
        print(f"{name}: graph {'the same' if same else 'DIFFERENT'} ({len(a[name]['nodes'])} -> "
              f"{len(b[name]['nodes'])} nodes), output {'bit-identical' if bits else 'DIFFERENT'}")
    return 1 if bad else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump")
    d.add_argument("path")
    d.add_argument("--models", default=",".join(ZOO))
    c = sub.add_parser("compare")
    c.add_argument("before")
    c.add_argument("after")
    args = ap.parse_args()
    if args.cmd == "dump":
        dump(args.path, args.models.split(","))
        return 0
    return compare(args.before, args.after)


if __name__ == "__main__":
    raise SystemExit(main())
