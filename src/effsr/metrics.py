"""Image quality metrics with explicit conventions (specs/README.md section 2, reference/README.md).

Every metric takes two HxWx3 uint8 RGB images of the same shape (SR first, HR second), crops ``border`` pixels on
every side (the scale, 4 for x4, by convention) and returns a Python float computed in float64:

* ``psnr_rgb``: the NTIRE harness PSNR, MSE over all three RGB channels (no colour conversion).
* ``psnr_y`` / ``ssim_y``: on MATLAB's BT.601 luma Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 of the uint8
  values, kept in float (not rounded), range [16, 235].
* ``ssim_y`` / ``ssim_rgb``: Wang et al. SSIM as in their MATLAB code: 11x11 Gaussian window (sigma 1.5), "valid"
  filtering (no padding), C1 = (0.01 L)^2, C2 = (0.03 L)^2 with L = 255, the mean of the SSIM map; ``ssim_rgb`` is
  the mean of the three per-channel SSIMs.
* ``lpips`` (optional): only when the ``lpips`` package and its AlexNet weights are already on disk; never downloads.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

# MATLAB rgb2ycbcr (BT.601, "studio swing") luma coefficients for 8-bit values, reference/README.md.
_Y_COEFFS = np.array([65.481, 128.553, 24.966], dtype=np.float64)
_Y_OFFSET = 16.0
# SSIM constants (Wang et al. 2004 and reference/README.md): K1 = 0.01, K2 = 0.03, dynamic range L = 255.
_SSIM_C1 = (0.01 * 255.0) ** 2
_SSIM_C2 = (0.03 * 255.0) ** 2
_SSIM_WIN = 11
_SSIM_SIGMA = 1.5


def _check_pair(sr: np.ndarray, hr: np.ndarray) -> None:
    if sr.shape != hr.shape:
        raise ValueError(f"shape mismatch: sr {sr.shape} vs hr {hr.shape}")
    if sr.ndim != 3 or sr.shape[2] != 3:
        raise ValueError(f"expected HxWx3 RGB images, got {sr.shape}")


def _crop(img: np.ndarray, border: int) -> np.ndarray:
    return img[border:-border, border:-border] if border > 0 else img


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a - b) ** 2)
    if mse == 0:
        return float("inf")
    return float(20 * np.log10(255.0 / np.sqrt(mse)))


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB -> HxW float64 MATLAB BT.601 luma in [16, 235] (not rounded)."""
    return img.astype(np.float64) @ _Y_COEFFS / 255.0 + _Y_OFFSET


def psnr_rgb(sr: np.ndarray, hr: np.ndarray, border: int = 4) -> float:
    """NTIRE harness PSNR: uint8 HxWx3 RGB, ``border`` px cropped per side, MSE over all channels in float64."""
    if sr.shape != hr.shape:
        raise ValueError(f"shape mismatch: sr {sr.shape} vs hr {hr.shape}")
    a = _crop(sr, border).astype(np.float64)
    b = _crop(hr, border).astype(np.float64)
    return _psnr(a, b)


def psnr_y(sr: np.ndarray, hr: np.ndarray, border: int = 4) -> float:
    """PSNR on MATLAB BT.601 Y (float, peak 255), ``border`` px cropped per side."""
    _check_pair(sr, hr)
    return _psnr(_crop(rgb_to_y(sr), border), _crop(rgb_to_y(hr), border))


@lru_cache(maxsize=1)
def _gaussian_1d() -> np.ndarray:
    # Separable form of MATLAB fspecial('gaussian', 11, 1.5): exp(-x^2 / (2 sigma^2)), normalised to sum 1.
    x = np.arange(_SSIM_WIN, dtype=np.float64) - (_SSIM_WIN - 1) / 2
    g = np.exp(-(x**2) / (2 * _SSIM_SIGMA**2))
    g = g / g.sum()
    g.flags.writeable = False
    return g


def _filter_valid(img: np.ndarray) -> np.ndarray:
    """2-D Gaussian filtering keeping only fully covered positions ("valid"), separably: rows, then columns."""
    g = _gaussian_1d()
    n = len(g)
    h, w = img.shape
    if h < n or w < n:
        raise ValueError(f"image {h}x{w} (after the border crop) is smaller than the {n}x{n} SSIM window")
    rows = np.zeros((h - n + 1, w), dtype=np.float64)
    for k in range(n):
        rows += g[k] * img[k : k + h - n + 1]
    out = np.zeros((h - n + 1, w - n + 1), dtype=np.float64)
    for k in range(n):
        out += g[k] * rows[:, k : k + w - n + 1]
    return out


def _ssim_2d(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two float64 HxW images with values in 0..255: the mean of the SSIM map."""
    mu_a = _filter_valid(a)
    mu_b = _filter_valid(b)
    mu_aa, mu_bb, mu_ab = mu_a * mu_a, mu_b * mu_b, mu_a * mu_b
    var_a = _filter_valid(a * a) - mu_aa
    var_b = _filter_valid(b * b) - mu_bb
    cov = _filter_valid(a * b) - mu_ab
    num = (2 * mu_ab + _SSIM_C1) * (2 * cov + _SSIM_C2)
    den = (mu_aa + mu_bb + _SSIM_C1) * (var_a + var_b + _SSIM_C2)
    ssim_map = num / den
    return float(ssim_map.mean())


def ssim_y(sr: np.ndarray, hr: np.ndarray, border: int = 4) -> float:
    """SSIM on MATLAB BT.601 Y (float), ``border`` px cropped per side."""
    _check_pair(sr, hr)
    return _ssim_2d(_crop(rgb_to_y(sr), border), _crop(rgb_to_y(hr), border))


def ssim_rgb(sr: np.ndarray, hr: np.ndarray, border: int = 4) -> float:
    """Mean over R, G, B of the per-channel SSIM on the uint8 values, ``border`` px cropped per side."""
    _check_pair(sr, hr)
    a = _crop(sr, border).astype(np.float64)
    b = _crop(hr, border).astype(np.float64)
    return float(np.mean([_ssim_2d(a[..., c], b[..., c]) for c in range(3)]))


# ---------------------------------------------------------------------------------------------------------------
# LPIPS (optional): the `lpips` package ships its linear heads; the AlexNet backbone comes from torchvision's cache.

_LPIPS_BACKBONE_FILE = "alexnet-owt-7be5be79.pth"  # torchvision's AlexNet ImageNet weights, as LPIPS v0.1 loads them


def _alexnet_cached() -> bool:
    import torch

    return (Path(torch.hub.get_dir()) / "checkpoints" / _LPIPS_BACKBONE_FILE).is_file()


def lpips_available() -> bool:
    """True when LPIPS works offline: ``lpips`` and ``torchvision`` import and the AlexNet weights are cached."""
    try:
        import lpips  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError:
        return False
    return _alexnet_cached()


@lru_cache(maxsize=1)
def _lpips_net():  # type: ignore[no-untyped-def]
    import lpips as lpips_pkg

    net = lpips_pkg.LPIPS(net="alex", version="0.1", verbose=False)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def lpips(sr: np.ndarray, hr: np.ndarray, border: int = 4) -> float:
    """LPIPS v0.1 (AlexNet) distance, inputs mapped to [-1, 1], ``border`` px cropped per side. Lower is better.

    Raises ``RuntimeError`` when the package or its weights are not already installed (it never downloads).
    """
    _check_pair(sr, hr)
    if not lpips_available():
        raise RuntimeError(
            "LPIPS needs the `lpips` and `torchvision` packages and the AlexNet weights in the torch hub cache "
            f"({_LPIPS_BACKBONE_FILE}); effsr never downloads them"
        )
    import torch

    def to_t(img: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(_crop(img, border).transpose(2, 0, 1))).float()
        return (t / 127.5 - 1.0).unsqueeze(0)

    with torch.inference_mode():
        return float(_lpips_net()(to_t(sr), to_t(hr)).item())
