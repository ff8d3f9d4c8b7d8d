"""Placeholder: filled by the agdn implementation."""
