"""Where an engine's time goes: the wall time of each node of one forward, for the fast and the OpenVINO engines.

The fast engine's deploy graph is a ``torch.fx`` graph: :func:`sample` runs it node by node (an ``fx.Interpreter``
that frees each value after its last use, as the compiled forward does) and times each node with
``time.perf_counter``; the interpreter adds a few microseconds per node, against milliseconds for a convolution at
the sizes that matter. The OpenVINO engine reports its own per-node times: its CPU plugin's performance counters
(``PERF_COUNT``) on a model compiled for the same shape, precision and threads. Nodes that the plugin fused into
another report no time of their own.

Each :func:`sample` is one forward; :func:`summarise` takes the median of each node over several samples
(benchmarks interleave the samples of the engines they compare, as ``effsr bench`` interleaves its runs).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from .ops import FusedConv2d

__all__ = ["NodeTime", "by_kind", "sample", "summarise"]


@dataclass(frozen=True)
class NodeTime:
    """One node of one engine: its median time over the samples (ms) and what it is."""

    name: str
    kind: str  # "conv3x3", "conv1x1 dw", a module's class, a function's name; OpenVINO: the node's layer type
    ms: float
    # Multiply-accumulates of a convolution node as the engine runs it (zero channels it added included); None where
    # not counted.
    macs: int | None = None
    detail: str = ""  # the fused post-ops (fast) or the kernel OpenVINO chose (its exec type)


def _conv_kind(conv: nn.Module) -> str:
    kh, kw = (int(k) for k in conv.weight.shape[2:])
    cin = int(conv.weight.shape[1]) * int(getattr(conv, "groups", 1))
    depthwise = int(getattr(conv, "groups", 1)) == cin and cin > 1
    return f"conv{kh}x{kw}" + (" dw" if depthwise else "")


def _conv_macs(conv: nn.Module, out: torch.Tensor) -> int:
    """Output elements x (input channels per group x kernel area): the multiply-accumulates of the convolution."""
    per_out = int(conv.weight.shape[1]) * int(conv.weight.shape[2]) * int(conv.weight.shape[3])
    return int(out.numel()) * per_out


class _Timer(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm, garbage_collect_values=True)
        self.times: dict[str, tuple[str, float, int | None, str]] = {}

    def run_node(self, n: fx.Node) -> Any:
        t0 = time.perf_counter()
        out = super().run_node(n)
        ms = (time.perf_counter() - t0) * 1e3
        if n.op in ("placeholder", "output", "get_attr"):
            return out
        macs: int | None = None
        detail = ""
        if n.op == "call_module":
            mod = self.module.get_submodule(str(n.target))
            if isinstance(mod, (FusedConv2d, nn.Conv2d)) and isinstance(out, torch.Tensor):
                kind, macs = _conv_kind(mod), _conv_macs(mod, out)
                if isinstance(mod, FusedConv2d):
                    detail = "+".join(p for p in (mod.binary, mod.unary) if p)
            else:
                kind = type(mod).__name__
        elif n.op == "call_function":
            kind = getattr(n.target, "__name__", str(n.target))
        else:
            kind = str(n.target)
        self.times[n.name] = (kind, ms, macs, detail)
        return out


def sample(engine: nn.Module, x: torch.Tensor) -> dict[str, tuple[str, float, int | None, str]]:
    """One forward of ``engine`` (a fast engine with a deploy graph, or an OpenVINO engine) on ``x``: each node's
    (kind, ms, macs, detail) by node name."""
    from .backends import FastEngine
    from .openvino import OpenVinoEngine

    if isinstance(engine, OpenVinoEngine):
        return _openvino_sample(engine, x)
    if isinstance(engine, FastEngine) and isinstance(engine.graph, fx.GraphModule):
        timer = _Timer(engine.graph)
        with torch.inference_mode():
            timer.run(x.to(engine.dtype).contiguous(memory_format=torch.channels_last))
        return timer.times
    raise TypeError(f"per-node times need a fast engine with a deploy graph or an openvino engine, "
                    f"not {type(engine).__name__}")


def _openvino_sample(engine: Any, x: torch.Tensor) -> dict[str, tuple[str, float, int | None, str]]:
    out = {}
    for info in engine.node_counters(x):
        ms = info.real_time.total_seconds() * 1e3
        if ms <= 0 or info.node_type in ("Parameter", "Result"):
            continue  # fused into another node, or the model's input / output
        out[info.node_name] = (info.node_type, ms, None, info.exec_type)
    return out


def summarise(samples: Sequence[dict[str, tuple[str, float, int | None, str]]]) -> list[NodeTime]:
    """The median time of each node over ``samples`` (nodes in the order of the first sample)."""
    if not samples:
        raise ValueError("summarise needs at least one sample")
    out = []
    for name, (kind, _, macs, detail) in samples[0].items():
        ms = statistics.median(s[name][1] for s in samples if name in s)
        out.append(NodeTime(name, kind, ms, macs, detail))
    return out


def by_kind(times: Sequence[NodeTime]) -> dict[str, dict[str, float]]:
    """Total ms, node count and MACs per kind, largest total first."""
    acc: dict[str, dict[str, float]] = {}
    for t in times:
        row = acc.setdefault(t.kind, {"ms": 0.0, "nodes": 0, "macs": 0})
        row["ms"] += t.ms
        row["nodes"] += 1
        row["macs"] += t.macs or 0
    return dict(sorted(acc.items(), key=lambda kv: -kv[1]["ms"]))
