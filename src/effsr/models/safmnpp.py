"""Placeholder: filled by the safmnpp implementation."""
