"""Placeholder: filled by the rlfn implementation."""
