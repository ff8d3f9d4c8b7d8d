"""Paired training transforms: scale-aligned random crops, flips and 90-degree rotations.

The same geometric operation must hit the LR and the HR patch, so every transform here takes both (or takes an
explicit code that is applied later to both). The augmentations follow BasicSR's ``augment`` (the trainer every
seed team used): horizontal flip, vertical flip, then a transpose (``rot90``), each with probability 1/2.

Randomness always comes from an explicit ``numpy.random.Generator``: the caller decides the seed, so a sample is a
pure function of (seed, sample position) and training is reproducible whatever the number of loader workers.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "AUG_NONE",
    "apply_aug_numpy",
    "apply_aug_torch",
    "random_aug",
    "random_crop_pair",
    "random_window",
]

# (hflip, vflip, transpose): the augmentation code of one sample.
AUG_NONE = (False, False, False)


def random_aug(rng: np.random.Generator, hflip: bool = True, rot: bool = True) -> tuple[bool, bool, bool]:
    """Draw one augmentation code (three coin flips are always drawn, so the stream does not depend on options)."""
    u = rng.random(3)
    return (bool(hflip and u[0] < 0.5), bool(rot and u[1] < 0.5), bool(rot and u[2] < 0.5))


def apply_aug_numpy(img: np.ndarray, code: tuple[bool, bool, bool]) -> np.ndarray:
    """Apply an augmentation code to an HxWxC array (returns a contiguous copy)."""
    hflip, vflip, transpose = code
    if hflip:
        img = img[:, ::-1]
    if vflip:
        img = img[::-1]
    if transpose:
        img = img.transpose(1, 0, 2)
    return np.ascontiguousarray(img)


def apply_aug_torch(x: torch.Tensor, code: tuple[bool, bool, bool] | torch.Tensor) -> torch.Tensor:
    """Apply an augmentation code to a ...xHxW tensor (the same operations as :func:`apply_aug_numpy`)."""
    hflip, vflip, transpose = (bool(v) for v in code)
    if hflip:
        x = x.flip(-1)
    if vflip:
        x = x.flip(-2)
    if transpose:
        x = x.transpose(-1, -2)
    return x


def random_crop_pair(
    lr: np.ndarray, hr: np.ndarray, lr_patch: int, scale: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Crop an ``lr_patch``-square LR patch and the HR patch ``scale`` times larger at the matching position."""
    h, w = lr.shape[:2]
    if hr.shape[0] != h * scale or hr.shape[1] != w * scale:
        raise ValueError(
            f"HR {hr.shape[1]}x{hr.shape[0]} is not x{scale} of LR {w}x{h}; crop HR to a multiple of the scale "
            "(the benchmark HR sets are) or regenerate the LR"
        )
    if h < lr_patch or w < lr_patch:
        raise ValueError(f"LR image {w}x{h} is smaller than the LR patch {lr_patch}")
    top = int(rng.integers(0, h - lr_patch + 1))
    left = int(rng.integers(0, w - lr_patch + 1))
    lr_c = lr[top : top + lr_patch, left : left + lr_patch]
    hr_c = hr[top * scale : (top + lr_patch) * scale, left * scale : (left + lr_patch) * scale]
    return lr_c, hr_c


def random_window(
    hr: np.ndarray, hr_patch: int, scale: int, margin: int, rng: np.random.Generator
) -> np.ndarray:
    """A scale-aligned HR patch plus ``margin`` HR pixels on every side, for making its LR on the device.

    The patch origin is a multiple of ``scale`` inside the image cropped to a multiple of ``scale`` (what the
    LR of the whole image is made from). Where the margin leaves the image it is filled by symmetric mirroring
    (edge pixel repeated), which is exactly the boundary rule of MATLAB's ``imresize``; so downscaling the window
    and cutting its centre gives the same LR patch as downscaling the whole image and cropping.
    """
    h = hr.shape[0] - hr.shape[0] % scale
    w = hr.shape[1] - hr.shape[1] % scale
    if h < hr_patch or w < hr_patch:
        raise ValueError(f"HR image {w}x{h} is smaller than the HR patch {hr_patch}")
    top = int(rng.integers(0, (h - hr_patch) // scale + 1)) * scale
    left = int(rng.integers(0, (w - hr_patch) // scale + 1)) * scale
    y0, y1 = top - margin, top + hr_patch + margin
    x0, x1 = left - margin, left + hr_patch + margin
    inner = hr[max(y0, 0) : min(y1, h), max(x0, 0) : min(x1, w)]
    pads = ((max(0, -y0), max(0, y1 - h)), (max(0, -x0), max(0, x1 - w)), (0, 0))
    if any(p for pair in pads for p in pair):
        # Mirroring a margin wider than the image would need repeated reflection; the margins used are a few
        # pixels and patches are at least that large, so one reflection always suffices.
        inner = np.pad(inner, pads, mode="symmetric")
    return np.ascontiguousarray(inner)
