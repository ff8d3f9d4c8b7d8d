"""Placeholder: filled by the span implementation."""
