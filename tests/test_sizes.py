"""``effsr.sizes``: the one parser for image sizes and byte counts typed on the command line."""

from __future__ import annotations

import pytest

from effsr.errors import InvalidValueError
from effsr.sizes import parse_image_size, parse_memory_size


def test_image_sizes_are_width_by_height() -> None:
    assert parse_image_size("640x360") == (360, 640)  # a 360p frame: W x H in, (H, W) out
    assert parse_image_size(" 640 X 360 ") == (360, 640)
    assert parse_image_size("640*360") == (360, 640)
    assert parse_image_size("256", square=True) == (256, 256)
    for bad, square in (("640", False), ("0x4", False), ("64by64", True), ("-1x4", True), ("4x4x4", True), ("", True)):
        with pytest.raises(InvalidValueError, match="640x360"):
            parse_image_size(bad, square=square)
    with pytest.raises(ValueError):  # code written before the typed errors catches ValueError
        parse_image_size("x")


def test_memory_sizes_decimal_and_binary() -> None:
    assert parse_memory_size("2G") == 2 * 10**9
    assert parse_memory_size("512MiB") == 512 * 2**20
    assert parse_memory_size(None) is None
    with pytest.raises(InvalidValueError, match="2G"):
        parse_memory_size("lots")
