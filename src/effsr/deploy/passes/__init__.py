"""The fast engine's graph passes, one module per family; :mod:`.pipeline` runs them in order."""

from __future__ import annotations

from .pipeline import build_deploy_graph
from .trace import trace_with_leaves

__all__ = ["build_deploy_graph", "trace_with_leaves"]
