"""Tracing: ``torch.fx`` with the submodules that take Python decisions from the input size kept opaque."""

from __future__ import annotations

import torch.fx as fx
from torch import nn


class _LeafTracer(fx.Tracer):
    """``torch.fx`` tracer that keeps the given modules (and ``torch.nn`` built-ins) as opaque calls."""

    def __init__(self, leaves: set[nn.Module]) -> None:
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return m in self.leaves or super().is_leaf_module(m, module_qualified_name)


def _traceable(module: nn.Module, leaves: set[nn.Module]) -> bool:
    try:
        _LeafTracer(leaves).trace(module)
    except Exception:
        return False
    return True


def _untraceable_leaf(module: nn.Module, leaves: set[nn.Module]) -> nn.Module | None:
    """The outermost-first, deepest submodule that cannot be traced although all its children can."""
    for child in module.children():
        if child in leaves or _LeafTracer(leaves).is_leaf_module(child, ""):
            continue
        if not _traceable(child, leaves):
            return _untraceable_leaf(child, leaves) or child
    return None


def trace_with_leaves(model: nn.Module, max_leaves: int = 64) -> fx.GraphModule:
    """Symbolically trace ``model``; submodules with input-dependent Python control flow (AGDN's windowed attention
    picks its windows from the input size) are found automatically and kept as opaque calls."""
    leaves: set[nn.Module] = set()
    for _ in range(max_leaves):
        try:
            graph = _LeafTracer(leaves).trace(model)
            return fx.GraphModule(model, graph)
        except Exception:
            culprit = _untraceable_leaf(model, leaves)
            if culprit is None:
                raise
            leaves.add(culprit)
    raise RuntimeError(f"could not trace {type(model).__name__}")
