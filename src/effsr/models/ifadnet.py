"""Placeholder: filled by the ifadnet implementation."""
