"""The images int8 quantization is calibrated on (both int8 paths use them: the fast backend's and OpenVINO's).

Post-training quantization sets each activation's int8 range from what the network sees on real images, so the
calibration set must look like the images the model will upscale: natural photographs at LR resolution, not noise.
The default set is :data:`DEFAULT_COUNT` images of B100's bicubic x4 LR set (``<assets>/data/B100/LR_bicubic/X4``),
spread evenly over the sorted file names, centre-cropped to :data:`DEFAULT_CROP` pixels. B100 is the only benchmark
set here with enough distinct natural images; the cost measured on B100 therefore includes 8 of its 100 images
that calibration saw (stated beside every B100 figure). Any folder of images, list of files or tensors can be
given instead.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import InvalidValueError

DEFAULT_COUNT = 8
DEFAULT_CROP = 96  # LR pixels: large enough for every zoo model's receptive field and minimum size (MSN: 29)


def default_calibration_folder() -> Path:
    """B100's x4 LR folder in the shared assets (``$EFFSR_DATA`` or ``$EFFSR_ASSETS``/data)."""
    from ..assets import data_root

    return data_root() / "B100" / "LR_bicubic" / "X4"


def calibration_images(calibration: Any = None, *, limit: int = DEFAULT_COUNT,
                       crop: int | None = DEFAULT_CROP) -> list[torch.Tensor]:
    """The calibration images as a list of 1x3xHxW float32 tensors in [0,1].

    ``calibration``: None (the default set, above), a folder, an image file, a list of files, an Nx3xHxW tensor or
    a list of tensors. Folders and file lists take ``limit`` images spread evenly over the sorted names; images are
    centre-cropped to ``crop`` x ``crop`` pixels (None: whole). A folder that is missing or holds no image is one
    clear error (:class:`~effsr.errors.InvalidValueError`) that says what to pass.
    """
    if isinstance(calibration, torch.Tensor):
        batch = calibration if calibration.dim() == 4 else calibration.unsqueeze(0)
        return [_crop(b.unsqueeze(0).float(), crop) for b in batch]
    if isinstance(calibration, Sequence) and not isinstance(calibration, (str, bytes)) and calibration and all(
            isinstance(c, torch.Tensor) for c in calibration):
        return [_crop((c if c.dim() == 4 else c.unsqueeze(0)).float(), crop) for c in calibration]
    files = calibration_files(calibration, limit=limit)
    from ..imageio import read_image

    return [_crop(read_image(f).rgb.float(), crop) for f in files]


def calibration_files(calibration: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None, *,
                      limit: int = DEFAULT_COUNT) -> list[Path]:
    """The image files of a calibration folder or list (None: the default folder), ``limit`` of them spread evenly."""
    from ..imageio import list_images

    if calibration is None:
        folder = default_calibration_folder()
        if not folder.is_dir():
            raise InvalidValueError(f"int8 calibration: the default images ({folder}) are not here; pass "
                                    f"--calibration FOLDER (calibration= in Python) with a few natural LR images")
        files = list_images(folder)
    elif isinstance(calibration, (str, os.PathLike)):
        path = Path(calibration)
        if path.is_file():
            files = [path]
        elif path.is_dir():
            files = list_images(path, recursive=True)
        else:
            raise InvalidValueError(f"int8 calibration: {path} does not exist; pass a folder of images")
    else:
        files = [Path(f) for f in calibration]
    if not files:
        raise InvalidValueError(f"int8 calibration: no images in {calibration}; pass a folder of images")
    if limit and len(files) > limit:
        step = len(files) / limit
        files = [files[int(i * step)] for i in range(limit)]
    return files


def _crop(img: torch.Tensor, crop: int | None) -> torch.Tensor:
    """Centre crop of a 1xCxHxW tensor to at most crop x crop."""
    if crop is None:
        return img.contiguous()
    h, w = img.shape[-2:]
    top, left = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
    return img[..., top:top + crop, left:left + crop].contiguous()
