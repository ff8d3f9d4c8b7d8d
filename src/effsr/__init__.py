"""effsr: efficient x4 image super-resolution around the NTIRE Efficient SR challenge."""

from __future__ import annotations

__version__ = "0.1.0"

from .models import build_model, detect_architecture, get_spec, list_models
from .models import load_model as load

__all__ = ["__version__", "build_model", "detect_architecture", "get_spec", "list_models", "load"]
