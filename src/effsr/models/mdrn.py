"""Placeholder: filled by the mdrn implementation."""
