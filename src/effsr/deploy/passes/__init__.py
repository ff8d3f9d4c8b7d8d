"""The fast engine's graph passes, one module per family; :mod:`.pipeline` holds their ordered, named list
(``README.md`` beside this file states what every pass keeps)."""

from __future__ import annotations

from .pipeline import (
    DISABLE_ENV,
    NATIVE_PASSES,
    PASS_NAMES,
    PIPELINE,
    Pass,
    PassRecord,
    PipelineReport,
    build_deploy_graph,
    resolve_disabled,
)
from .trace import trace_with_leaves

__all__ = [
    "DISABLE_ENV",
    "NATIVE_PASSES",
    "PASS_NAMES",
    "PIPELINE",
    "Pass",
    "PassRecord",
    "PipelineReport",
    "build_deploy_graph",
    "resolve_disabled",
    "trace_with_leaves",
]
