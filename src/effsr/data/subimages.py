"""Cut large training images into overlapping sub-images (BasicSR's ``extract_subimages``, as the teams did).

Decoding a 2K PNG for every 256-pixel patch wastes the loader's time; the teams cut DIV2K/Flickr2K/LSDIR into
480x480 HR tiles (step 240, LR tiles 120x120 step 60) once. Tile origins along one axis are
``0, step, 2*step, ...`` up to ``size - crop``; when the part left over after the last tile is larger than
``thresh_size``, one more tile is added flush with the far edge. LR tiles use the same grid divided by the scale,
so HR tile ``k`` and LR tile ``k`` of an image always cover the same area; the counts are checked per image.
Files are written as ``<stem>_s<k:03d>.png`` (1-based ``k``, row-major), atomically.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..imageio import read_rgb_uint8, write_rgb_uint8
from .datasets import find_images, match_lr_files

__all__ = ["ExtractReport", "extract_subimages", "tile_origins"]


def tile_origins(size: int, crop: int, step: int, thresh_size: int) -> list[int]:
    """Tile start positions along one axis (see the module docstring)."""
    if size < crop:
        return [0] if size > thresh_size else []
    starts = list(range(0, size - crop + 1, step))
    if size - (starts[-1] + crop) > thresh_size:
        starts.append(size - crop)
    return starts


def _tiles(img: np.ndarray, crop: int, step: int, thresh: int) -> list[np.ndarray]:
    h, w = img.shape[:2]
    return [
        img[y : y + crop, x : x + crop]
        for y in tile_origins(h, crop, step, thresh)
        for x in tile_origins(w, crop, step, thresh)
    ]


@dataclass(frozen=True)
class ExtractReport:
    images: int
    hr_tiles: int
    lr_tiles: int


def _out_path(out_root: Path, rel: Path, k: int) -> Path:
    return out_root / rel.parent / f"{rel.stem}_s{k:03d}.png"


def extract_subimages(
    hr_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    lr_dir: str | os.PathLike[str] | None = None,
    lr_out_dir: str | os.PathLike[str] | None = None,
    crop_size: int = 480,
    step: int = 240,
    thresh_size: int = 0,
    scale: int = 4,
    file_list: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    workers: int = 4,
    progress: Callable[[int], None] | None = None,
) -> ExtractReport:
    """Write the sub-images of every HR image (and of its LR when ``lr_dir`` is given) and check the counts.

    LR tiles are ``crop_size/scale`` square at ``step/scale`` (``thresh_size/scale``); every size must divide by
    ``scale`` and every HR must be exactly ``scale`` times its LR. ``progress`` is called with 1 after each image.
    """
    if lr_dir is not None:
        if lr_out_dir is None:
            raise ValueError("lr_out_dir is required with lr_dir")
        for name, v in (("crop_size", crop_size), ("step", step), ("thresh_size", thresh_size)):
            if v % scale:
                raise ValueError(f"{name}={v} must be a multiple of the scale {scale} for paired extraction")
    if step <= 0 or crop_size <= 0:
        raise ValueError("crop_size and step must be positive")
    hr_root = Path(hr_dir).expanduser()
    out_root = Path(out_dir).expanduser()
    hr_files = find_images(hr_root, file_list=file_list, limit=limit)
    lr_files = match_lr_files(hr_files, hr_root, lr_dir, scale) if lr_dir is not None else None
    lr_root = Path(lr_out_dir).expanduser() if lr_out_dir is not None else None

    def one(i: int) -> tuple[int, int]:
        rel = hr_files[i].relative_to(hr_root)
        hr = read_rgb_uint8(hr_files[i])
        hr_t = _tiles(hr, crop_size, step, thresh_size)
        lr_t: list[np.ndarray] = []
        if lr_files is not None:
            lr = read_rgb_uint8(lr_files[i])
            if hr.shape[0] != lr.shape[0] * scale or hr.shape[1] != lr.shape[1] * scale:
                raise ValueError(
                    f"{hr_files[i]} is {hr.shape[1]}x{hr.shape[0]} but its LR {lr_files[i]} is "
                    f"{lr.shape[1]}x{lr.shape[0]}: not x{scale}"
                )
            lr_t = _tiles(lr, crop_size // scale, step // scale, thresh_size // scale)
            if len(lr_t) != len(hr_t):
                raise RuntimeError(f"{rel}: {len(hr_t)} HR tiles but {len(lr_t)} LR tiles")
        for k, t in enumerate(hr_t, start=1):
            write_rgb_uint8(np.ascontiguousarray(t), _out_path(out_root, rel, k))
        if lr_root is not None:
            for k, t in enumerate(lr_t, start=1):
                write_rgb_uint8(np.ascontiguousarray(t), _out_path(lr_root, rel, k))
        if progress is not None:
            progress(1)
        return len(hr_t), len(lr_t)

    # cv2 releases the GIL while decoding and encoding PNGs, so threads parallelise the work.
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        counts = list(pool.map(one, range(len(hr_files))))
    n_hr = sum(c[0] for c in counts)
    n_lr = sum(c[1] for c in counts)
    if lr_files is not None and n_hr != n_lr:
        raise RuntimeError(f"{n_hr} HR sub-images but {n_lr} LR sub-images")
    return ExtractReport(images=len(hr_files), hr_tiles=n_hr, lr_tiles=n_lr)
