"""The only module that touches image files.

``read_image`` returns float32 RGB in [0,1] (plus alpha and bit depth); ``write_image`` writes atomically.
The conversions follow the NTIRE 2024 harness (``utils/utils_image.py``: cv2 read, BGR->RGB, grayscale
replicated to RGB; output clamped and rounded half-to-even to uint8), see specs/README.md section 2.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ImageReadError(RuntimeError):
    """An input image cannot be read (missing, unreadable, corrupt or not an image)."""


def read_rgb_uint8(path: str | os.PathLike[str]) -> np.ndarray:
    """HxWx3 uint8 RGB, read exactly as the official harness does (grayscale replicated to 3 channels)."""
    p = Path(path)
    if not p.is_file():
        raise ImageReadError(f"{p}: no such file")
    img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageReadError(f"{p}: not a readable image")
    if img.dtype != np.uint8:
        raise ImageReadError(f"{p}: expected an 8-bit image, got {img.dtype}")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def uint8_to_tensor(img: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> 1x3xHxW float32 in [0,1] (u8 / 255, as ``uint2tensor4`` with data_range 1)."""
    t = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div(255.0)
    return t.unsqueeze(0)


def tensor_to_uint8(t: torch.Tensor) -> np.ndarray:
    """1x3xHxW (or 3xHxW) float in [0,1] -> HxWx3 uint8: clamp, x255, round half-to-even in float32."""
    if t.dim() == 4:
        if t.shape[0] != 1:
            raise ValueError("tensor_to_uint8 takes one image")
        t = t[0]
    arr = t.detach().float().clamp(0, 1).cpu().numpy().transpose(1, 2, 0)
    return np.uint8(np.round(arr * 255.0))


def write_rgb_uint8(img: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write HxWx3 RGB (or HxW gray) uint8 atomically: a temporary file in the same folder, then rename."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    arr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 and img.shape[2] == 3 else img
    ext = p.suffix.lower() or ".png"
    ok, buf = cv2.imencode(ext, arr)
    if not ok:
        raise OSError(f"cannot encode image as {ext} for {p}")
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".part", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.tobytes())
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return p
