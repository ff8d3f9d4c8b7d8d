"""Image quality metrics with explicit conventions (specs/README.md section 2, reference/README.md)."""

from __future__ import annotations

import numpy as np


def _crop(img: np.ndarray, border: int) -> np.ndarray:
    return img[border:-border, border:-border] if border > 0 else img


def psnr_rgb(sr: np.ndarray, hr: np.ndarray, border: int = 4) -> float:
    """NTIRE harness PSNR: uint8 HxWx3 RGB, ``border`` px cropped per side, MSE over all channels in float64."""
    if sr.shape != hr.shape:
        raise ValueError(f"shape mismatch: sr {sr.shape} vs hr {hr.shape}")
    a = _crop(sr, border).astype(np.float64)
    b = _crop(hr, border).astype(np.float64)
    mse = np.mean((a - b) ** 2)
    if mse == 0:
        return float("inf")
    return float(20 * np.log10(255.0 / np.sqrt(mse)))
