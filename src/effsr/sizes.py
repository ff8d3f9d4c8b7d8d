"""The one parser for sizes typed by people: image sizes (``--lr-size 640x360``) and byte counts (``--max-memory 2G``).

Image sizes are written W x H, as image tools and video formats write them (``640x360`` is a 360p frame), and
returned (H, W), the order of tensors. Byte counts take decimal units (k, M, G, T, with or without B: powers of
1000) and binary ones (KiB, MiB, GiB, TiB: powers of 1024), as the IEC 80000-13 prefixes define them. Errors are
:class:`effsr.errors.InvalidValueError` (a ``ValueError``) with an example of what is accepted.
"""

from __future__ import annotations

import re

from .errors import InvalidValueError

__all__ = ["parse_image_size", "parse_memory_size"]

_SIZE_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
               "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_IMAGE_SIZE = re.compile(r"\s*([0-9]+)\s*(?:[x×*]\s*([0-9]+)\s*)?", re.IGNORECASE)


def parse_image_size(text: str, *, square: bool = False) -> tuple[int, int]:
    """``"640x360"`` (W x H; also ``640*360`` or ``640×360``) -> ``(360, 640)``; with ``square``, ``"256"`` means
    256x256. Both sides must be positive integers."""
    m = _IMAGE_SIZE.fullmatch(str(text))
    if m is None or (m.group(2) is None and not square):
        example = "640x360 (W x H)" + (" or 256 (square)" if square else "")
        raise InvalidValueError(f"expected a size like {example}, got {text!r}")
    w = int(m.group(1))
    h = int(m.group(2)) if m.group(2) is not None else w
    if h < 1 or w < 1:
        raise InvalidValueError(f"a size must be positive in both directions (like 640x360), got {text!r}")
    return h, w


def parse_memory_size(value: int | float | str | None) -> int | None:
    """Bytes from ``2G``, ``1.5GB``, ``512MiB``, ``800M`` or a plain number of bytes (None stays None)."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        n = float(value)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", value)
        if m is None or m.group(2).lower() not in _SIZE_UNITS:
            raise InvalidValueError(f"cannot read a memory size from {value!r} (examples: 2G, 1.5GB, 512MiB)")
        n = float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
    if n <= 0:
        raise InvalidValueError(f"memory size must be positive, got {value!r}")
    return int(n)
