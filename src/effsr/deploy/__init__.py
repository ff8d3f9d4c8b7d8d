"""Deployment helpers that take a plain ``nn.Module``: re-parameterization (and, later, export)."""

from __future__ import annotations

from .reparam import reparameterize_model

__all__ = ["reparameterize_model"]
