"""Metrics against the golden values of ../shared/reference/metrics/Set5.json.

Each model's official SR image (reference/out/<model>/Set5) is scored against data/Set5/HR; the values must match
to 1e-4 dB (PSNR) and 1e-5 (SSIM), the ``bicubic`` entries included.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from effsr import metrics
from effsr.imageio import read_rgb_uint8
from effsr.metrics import psnr_rgb, psnr_y, rgb_to_y, ssim_rgb, ssim_y

from .conftest import require

FUNCS = {"psnr_rgb": psnr_rgb, "psnr_y": psnr_y, "ssim_y": ssim_y, "ssim_rgb": ssim_rgb}
TOL = {"psnr_rgb": 1e-4, "psnr_y": 1e-4, "ssim_y": 1e-5, "ssim_rgb": 1e-5}


def test_reference_sr_images_match_golden_metrics(set5_metrics: dict, data_dir: Path, reference_dir: Path) -> None:
    assert "bicubic" in set5_metrics and len(set5_metrics) >= 9
    checked = 0
    for model, per_image in set5_metrics.items():
        for name, expected in per_image.items():
            sr = read_rgb_uint8(require(reference_dir / "out" / model / "Set5" / f"{name}.png"))
            hr = read_rgb_uint8(require(data_dir / "Set5" / "HR" / f"{name}.png"))
            for key, f in FUNCS.items():
                got = f(sr, hr, border=4)
                assert isinstance(got, float)
                assert abs(got - expected[key]) <= TOL[key], f"{model}/{name} {key}: {got} vs {expected[key]}"
                checked += 1
    assert checked == 4 * 5 * len(set5_metrics)


def test_identical_images() -> None:
    img = (np.arange(40 * 30 * 3) % 251).astype(np.uint8).reshape(40, 30, 3)
    assert psnr_rgb(img, img) == float("inf")
    assert psnr_y(img, img) == float("inf")
    assert ssim_y(img, img) == pytest.approx(1.0, abs=1e-12)
    assert ssim_rgb(img, img) == pytest.approx(1.0, abs=1e-12)


def test_conventions() -> None:
    # MATLAB BT.601 luma spans [16, 235] on 8-bit values and is not rounded.
    y = rgb_to_y(np.array([[[0, 0, 0], [255, 255, 255], [10, 20, 30]]], dtype=np.uint8))
    np.testing.assert_allclose(y[0, :2], [16.0, 235.0])
    assert y[0, 2] == pytest.approx(16 + (65.481 * 10 + 128.553 * 20 + 24.966 * 30) / 255)
    # The border is cropped: errors only in the 4-pixel frame do not count.
    a = np.full((32, 32, 3), 100, np.uint8)
    b = a.copy()
    b[:4] = 0
    assert psnr_rgb(a, b, border=4) == float("inf")
    assert psnr_rgb(a, b, border=0) < 20
    # PSNR with an error of 1 on every value: 20 log10(255).
    assert psnr_rgb(a, a + 1, border=0) == pytest.approx(20 * np.log10(255.0), abs=1e-12)


def test_errors() -> None:
    a = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError):
        psnr_y(a, a[:-1])
    with pytest.raises(ValueError):
        ssim_y(a[:18, :18], a[:18, :18], border=4)  # 10x10 after the crop: smaller than the 11x11 window


def test_lpips_is_optional() -> None:
    a = np.zeros((64, 64, 3), np.uint8)
    if metrics.lpips_available():
        assert metrics.lpips(a, a) == pytest.approx(0.0, abs=1e-6)
    else:
        with pytest.raises(RuntimeError, match="never downloads"):
            metrics.lpips(a, a)
