"""Make a bicubic LR set from HR images, as the benchmark LR sets were made (MATLAB ``imresize(hr, 1/s, 'bicubic')``).

Each HR image is cropped at the bottom/right to a multiple of the scale (``modcrop``, as the NTIRE harness does
before scoring), then downscaled with :func:`effsr.resize.imresize` on uint8 (rounded after each pass, as MATLAB
does for uint8; ../shared/data/MANIFEST.md). Grayscale inputs stay single-channel files, as in the benchmark sets
(Set14 ``bridge``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..imageio import IMAGE_EXTENSIONS, list_images, read_rgb_uint8, write_rgb_uint8
from ..resize import imresize

__all__ = ["DegradedImage", "degrade_folder", "degrade_image", "list_images", "modcrop"]


@dataclass(frozen=True)
class DegradedImage:
    """One written LR file and the HR it came from."""

    hr_path: Path
    lr_path: Path
    hr_size: tuple[int, int]  # (H, W) of the HR file as read
    lr_size: tuple[int, int]  # (H, W) written
    grayscale: bool


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop bottom/right so that height and width are multiples of ``scale`` (the harness's ``modcrop``)."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def degrade_image(hr: np.ndarray, scale: int = 4) -> np.ndarray:
    """HxW or HxWxC uint8 HR -> uint8 LR of size (H // scale, W // scale): modcrop, then MATLAB bicubic 1/scale."""
    if hr.dtype != np.uint8:
        raise TypeError(f"degrade_image takes uint8 images, got {hr.dtype}")
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    hr = modcrop(hr, scale)
    h, w = hr.shape[:2]
    if h == 0 or w == 0:
        raise ValueError(f"image {hr.shape[:2]} is smaller than the scale {scale}")
    # Giving the output size makes the scale out/in, which is exactly the double nearest 1/scale (what MATLAB's
    # imresize(hr, 1/scale) uses), while avoiding ceil(scale * size) overshooting on an inexact product.
    return imresize(hr, output_size=(h // scale, w // scale))


def degrade_folder(
    hr_dir: str | os.PathLike[str],
    lr_dir: str | os.PathLike[str],
    scale: int = 4,
    *,
    hr_out_dir: str | os.PathLike[str] | None = None,
    on_image: Callable[[DegradedImage], None] | None = None,
) -> list[DegradedImage]:
    """Write ``lr_dir/<stem>.png`` for every image of ``hr_dir`` (optionally the cropped HR to ``hr_out_dir``).

    Files are written atomically. ``on_image`` is called after each image (for progress reporting).
    """
    files = list_images(hr_dir)
    if not files:
        raise FileNotFoundError(f"{hr_dir}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    out_dir = Path(lr_dir)
    done: list[DegradedImage] = []
    for path in files:
        rgb = read_rgb_uint8(path)
        # A grayscale file reads as three equal channels (the harness replicates it); keep it single-channel.
        gray = bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]))
        hr = rgb[..., 0] if gray else rgb
        lr = degrade_image(hr, scale)
        lr_path = write_rgb_uint8(lr, out_dir / f"{path.stem}.png")
        if hr_out_dir is not None:
            write_rgb_uint8(modcrop(hr, scale), Path(hr_out_dir) / f"{path.stem}.png")
        item = DegradedImage(path, lr_path, rgb.shape[:2], lr.shape[:2], gray)
        done.append(item)
        if on_image is not None:
            on_image(item)
    return done
