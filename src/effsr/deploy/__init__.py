"""Deployment helpers that take a plain ``nn.Module``: re-parameterization, the inference engine, ONNX export."""

from __future__ import annotations

from .engine import BACKENDS, FP32_TOLERANCE, LOW_PRECISION_TOLERANCE, build_deploy_graph, prepare
from .onnx import ExportReport, export_onnx
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
