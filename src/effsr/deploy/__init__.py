"""Deployment helpers that take a plain ``nn.Module``: re-parameterization, the inference engine, ONNX export.

``backends`` (the ``prepare`` entry point and its engines), ``ops`` (the run-time ops of the fast graph), ``passes``
(the graph rewrites, in order), ``native`` (hand-written CPU kernels), ``onnx`` (export), ``reparam``, ``checks``.
"""

from __future__ import annotations

from .backends import BACKENDS, prepare
from .checks import FP32_TOLERANCE, LOW_PRECISION_TOLERANCE
from .onnx import ExportReport, export_onnx
from .passes import build_deploy_graph
from .reparam import reparameterize_model

__all__ = [
    "BACKENDS",
    "FP32_TOLERANCE",
    "LOW_PRECISION_TOLERANCE",
    "ExportReport",
    "build_deploy_graph",
    "export_onnx",
    "prepare",
    "reparameterize_model",
]
