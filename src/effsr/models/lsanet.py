"""Placeholder: filled by the lsanet implementation."""
