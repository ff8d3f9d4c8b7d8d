"""effsr: efficient x4 image super-resolution around the NTIRE Efficient SR challenge."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "build_model", "detect_architecture", "get_spec", "list_models", "load", "upscale"]

if TYPE_CHECKING:
    from .api import upscale
    from .models import build_model, detect_architecture, get_spec, list_models
    from .models import load_model as load

# The public names load lazily (PEP 562): ``import effsr.cli`` must not import torch before the command line has
# made its process-level settings (effsr.runtime), and ``effsr --help`` stays fast.
_LAZY = {"build_model": "build_model", "detect_architecture": "detect_architecture", "get_spec": "get_spec",
         "list_models": "list_models", "load": "load_model"}


def __getattr__(name: str) -> Any:
    if name == "upscale":  # effsr.upscale(x, model="rlfn"): the one-liner (effsr.api)
        from .api import upscale

        globals()[name] = upscale
        return upscale
    if name in _LAZY:
        from . import models

        value = getattr(models, _LAZY[name])
        globals()[name] = value
        return value
    raise AttributeError(f"module 'effsr' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
