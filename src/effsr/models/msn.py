"""Placeholder: filled by the msn implementation."""
