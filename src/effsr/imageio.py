"""The only module that touches image files.

Two layers:

* the **harness layer** (``read_rgb_uint8``, ``uint8_to_tensor``, ``tensor_to_uint8``, ``write_rgb_uint8``) reads and
  writes exactly as the NTIRE 2024 harness does (``utils/utils_image.py``: cv2 read, BGR->RGB, grayscale replicated
  to RGB; output clamped and rounded half-to-even to uint8), specs/README.md section 2. The Set5 parity tests use it.
* the **image layer** (``read_image`` -> :class:`Image`, ``write_image``) handles every odd file a user may hand to
  ``effsr upscale``: grayscale (kept grayscale on output), alpha (kept, upscaled separately by ``effsr.infer``),
  16-bit PNG/TIFF (kept 16-bit), palette and bilevel images, JPEG/WebP/BMP/TIFF, EXIF orientation, truncated or
  corrupt files and non-images (:class:`ImageReadError` naming the file). Writes are atomic (:mod:`effsr.files`).
* **conversions** for the Python API (``image_from_array`` / ``image_to_array_rgb``, ``image_from_pil`` /
  ``image_to_pil``) and :func:`list_images`, the one walk over input folders (upscale, eval, datasets, degrade).

How a file is read (``read_image``): Pillow opens and fully decodes it first, which detects truncated and corrupt data
(OpenCV silently accepts a truncated JPEG and fills the rest with grey), tells the colour type (``L``/``LA``/``I;16``
are grayscale) and gives the EXIF orientation. The pixels themselves come from OpenCV (``IMREAD_UNCHANGED``), as in
the official harness, so an 8-bit RGB or grayscale file yields exactly the harness's values (the SR output then has
the official PSNR), and 16-bit files keep their 16 bits (Pillow reduces 48/64-bit PNGs to 8 bits per channel). Formats
Pillow reads and OpenCV does not (GIF, ...) use Pillow's pixels.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from .errors import ImageReadError, InvalidValueError
from .files import write_bytes

__all__ = [
    "IMAGE_EXTENSIONS",
    "OUTPUT_FORMATS",
    "Image",
    "ImageReadError",
    "image_from_array",
    "image_from_pil",
    "image_to_array",
    "image_to_array_rgb",
    "image_to_pil",
    "list_images",
    "read_image",
    "read_rgb_uint8",
    "tensor_to_uint8",
    "uint8_to_tensor",
    "write_image",
    "write_rgb_uint8",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# Output formats by the name users type (``--ext``) -> file suffix; the first is the default.
OUTPUT_FORMATS = {"png": ".png", "jpg": ".jpg", "webp": ".webp", "tiff": ".tiff"}
# Suffixes whose formats hold 16-bit samples, and those that hold an alpha channel (OpenCV's encoders).
_DEEP_SUFFIXES = (".png", ".tif", ".tiff")
_ALPHA_SUFFIXES = (".png", ".tif", ".tiff", ".webp")

# Pillow format names whose pixels OpenCV decodes; when OpenCV rejects such a file that Pillow accepted, the file is
# corrupt in a way Pillow does not check (a PNG CRC error, for example), so it is refused rather than half-trusted.
_CV2_FORMATS = frozenset({"PNG", "JPEG", "MPO", "BMP", "TIFF", "WEBP", "PPM", "DIB"})
# Pillow modes that hold one gray channel (optionally with alpha): "1" bilevel, "L", "LA", "I;16*" 16-bit, "I" int32
# (16-bit PNGs in older Pillow).
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I;16", "I;16L", "I;16B", "I;16N", "I"})
# Colour spaces whose samples OpenCV would hand over unconverted or ambiguously (a CMYK file's K channel would look
# like alpha): their pixels are taken from Pillow, converted to RGB.
_PILLOW_PIXEL_MODES = frozenset({"CMYK", "YCbCr", "LAB", "HSV"})
# How the RGB output for a grayscale input becomes one channel again: the channel mean. The model sees the gray
# plane replicated to R, G and B, so its three output channels are three estimates of one gray value that differ only
# by the model's colour noise; equal weights average that noise best (BT.601 luma would favour G). Measured on Set14
# bridge, the only grayscale image in ../shared/data, the RGB PSNR of the gray output is within 0.001 dB of the
# official RGB output's for every zoo model (luma: up to 0.00104 dB), so scores stay comparable.
GRAY_WEIGHTS = (1 / 3, 1 / 3, 1 / 3)
# Rows converted per step when quantising a large float image, so the float32 temporaries stay small (~16 MiB for an
# 8000-pixel-wide RGB output) instead of several full-size copies.
_CHUNK_ROWS = 256


# --------------------------------------------------------------------------------------------------------------------
# Harness layer (kept as is: the Set5 parity tests depend on these exact conversions).


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


def write_rgb_uint8(img: np.ndarray, path: str | os.PathLike[str], *, overwrite: bool = True) -> Path:
    """Write HxWx3 RGB (or HxW gray) uint8 atomically (:mod:`effsr.files`); the format follows the suffix."""
    arr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 and img.shape[2] == 3 else img
    return _write_cv2(arr, Path(path), overwrite=overwrite)


# --------------------------------------------------------------------------------------------------------------------
# Image layer.


@dataclass(frozen=True)
class Image:
    """An image as the inference engine sees it.

    ``rgb`` is float32 1x3xHxW in [0,1] (a grayscale file is replicated to three channels, as the harness does);
    ``alpha`` is float32 1x1xHxW in [0,1] or None; ``bit_depth`` (8 or 16) and ``was_grayscale`` say how to write
    it back; ``path`` is the source file (None for a computed image). Values of a computed image (an SR output) may
    lie outside [0,1]: ``write_image`` clamps.
    """

    rgb: torch.Tensor
    alpha: torch.Tensor | None = None
    bit_depth: int = 8
    was_grayscale: bool = False
    path: Path | None = None

    def __post_init__(self) -> None:
        if self.rgb.dim() != 4 or self.rgb.shape[:2] != (1, 3):
            raise ValueError(f"Image.rgb must be 1x3xHxW, got {tuple(self.rgb.shape)}")
        if self.alpha is not None and (self.alpha.dim() != 4 or self.alpha.shape[:2] != (1, 1)
                                       or self.alpha.shape[2:] != self.rgb.shape[2:]):
            raise ValueError(f"Image.alpha must be 1x1xHxW matching rgb, got {tuple(self.alpha.shape)}")
        if self.bit_depth not in (8, 16):
            raise ValueError(f"bit_depth must be 8 or 16, got {self.bit_depth}")

    @property
    def height(self) -> int:
        return int(self.rgb.shape[2])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[3])

    def to(self, device: torch.device | str) -> Image:
        """The same image with its tensors on ``device``."""
        alpha = None if self.alpha is None else self.alpha.to(device)
        return replace(self, rgb=self.rgb.to(device), alpha=alpha)

    def with_pixels(self, rgb: torch.Tensor, alpha: torch.Tensor | None) -> Image:
        """The same image description (bit depth, grayscale, no source path) with new pixels (an SR output)."""
        return replace(self, rgb=rgb, alpha=alpha, path=None)


def _apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1..8) to an HxW[xC] array, as ``PIL.ImageOps.exif_transpose`` does.

    EXIF 2.3 tag 0x0112: 2 mirror, 3 rotate 180, 4 flip, 5 transpose, 6 rotate 90 clockwise, 7 transverse,
    8 rotate 90 counter-clockwise (Pillow's methods FLIP_LEFT_RIGHT, ROTATE_180, FLIP_TOP_BOTTOM, TRANSPOSE,
    ROTATE_270, TRANSVERSE, ROTATE_90).
    """
    if orientation == 2:
        arr = arr[:, ::-1]
    elif orientation == 3:
        arr = arr[::-1, ::-1]
    elif orientation == 4:
        arr = arr[::-1]
    elif orientation == 5:
        arr = arr.swapaxes(0, 1)
    elif orientation == 6:
        arr = np.rot90(arr, -1)
    elif orientation == 7:
        arr = arr[::-1, ::-1].swapaxes(0, 1)
    elif orientation == 8:
        arr = np.rot90(arr, 1)
    return np.ascontiguousarray(arr)


def _read_bytes(p: Path) -> bytes:
    try:
        if p.is_dir():
            raise ImageReadError(f"{p}: is a folder, not an image file")
        return p.read_bytes()
    except FileNotFoundError:
        raise ImageReadError(f"{p}: no such file") from None
    except PermissionError:
        raise ImageReadError(f"{p}: permission denied") from None
    except IsADirectoryError:
        raise ImageReadError(f"{p}: is a folder, not an image file") from None
    except OSError as e:
        raise ImageReadError(f"{p}: cannot read the file ({e.strerror or e})") from None


def _pillow_check(p: Path, data: bytes) -> tuple[PILImage.Image, int]:
    """Open and fully decode with Pillow (detects truncation/corruption); returns the image and its EXIF orientation."""
    if not data:
        raise ImageReadError(f"{p}: empty file, not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            im = PILImage.open(io.BytesIO(data))
            im.load()
    except UnidentifiedImageError:
        raise ImageReadError(f"{p}: not an image (or a format effsr cannot read)") from None
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as e:
        raise ImageReadError(f"{p}: image too large to read safely ({e})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        # Pillow reports truncated data as OSError("image file is truncated ...") and broken streams as
        # OSError/SyntaxError/ValueError depending on the codec.
        raise ImageReadError(f"{p}: truncated or corrupt image ({e})") from None
    try:
        orientation = int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # a malformed EXIF block must not make the pixels unreadable
        orientation = 1
    return im, orientation if 1 <= orientation <= 8 else 1


def _pillow_pixels(p: Path, im: PILImage.Image) -> np.ndarray:
    """Pixels in OpenCV layout (HxW gray or HxWx3 BGR / HxWx4 BGRA, uint8/uint16) from a Pillow image."""
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(im).astype(np.uint16)
    if mode == "I":
        arr = np.asarray(im)
        if arr.min() < 0 or arr.max() > 65535:
            raise ImageReadError(f"{p}: 32-bit integer samples outside 0..65535 are not supported")
        return arr.astype(np.uint16)
    if mode in ("1", "L"):
        return np.asarray(im.convert("L"))
    has_alpha = mode in ("LA", "La", "RGBA", "RGBa", "PA") or "transparency" in im.info
    if mode == "LA":
        la = np.asarray(im)
        return np.dstack([la[..., 0], la[..., 0], la[..., 0], la[..., 1]])
    rgb = np.asarray(im.convert("RGBA" if has_alpha else "RGB"))
    return cv2.cvtColor(rgb, cv2.COLOR_RGBA2BGRA if has_alpha else cv2.COLOR_RGB2BGR)


def read_image(path: str | os.PathLike[str]) -> Image:
    """Read any supported image file as an :class:`Image`; raise :class:`ImageReadError` naming the file otherwise.

    Grayscale files (``L``, ``1``, 16-bit gray, gray+alpha) are replicated to RGB with ``was_grayscale=True``;
    palette images are expanded (their transparency becomes alpha); 16-bit files give ``bit_depth=16`` and values
    ``u16 / 65535``, 8-bit files ``u8 / 255`` (the harness conversion); the EXIF orientation is applied.
    """
    p = Path(path)
    data = _read_bytes(p)
    im, orientation = _pillow_check(p, data)
    mode, fmt = im.mode, (im.format or "").upper()
    was_gray = mode in _GRAY_MODES
    if fmt == "PNG" and data[12:16] == b"IHDR":
        # Pillow opens a 16-bit gray+alpha PNG as RGBA; the IHDR colour type (byte 25) is authoritative:
        # 0 gray, 4 gray + alpha (PNG spec, ISO 15948, 11.2.2).
        was_gray = data[25] in (0, 4)
    if mode in _PILLOW_PIXEL_MODES:
        arr = _pillow_pixels(p, im)
    else:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if arr is None:
            if fmt in _CV2_FORMATS:
                raise ImageReadError(f"{p}: corrupt {fmt} data (the decoder rejected it)")
            arr = _pillow_pixels(p, im)
    im.close()
    del data
    if arr.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(f"{p}: {arr.dtype} samples are not supported (8- or 16-bit integer images only)")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[2] == 2:  # gray + alpha in OpenCV layout
        arr = np.dstack([arr[..., 0], arr[..., 0], arr[..., 0], arr[..., 1]])
    if arr.ndim == 3 and arr.shape[2] not in (3, 4):
        raise ImageReadError(f"{p}: {arr.shape[2]}-channel images are not supported")
    arr = _apply_orientation(arr, orientation)

    bit_depth = 16 if arr.dtype == np.uint16 else 8
    peak = 65535.0 if bit_depth == 16 else 255.0
    if arr.ndim == 2:
        gray, color, alpha, was_gray = arr, None, None, True
    else:
        color, alpha = arr[..., :3], (arr[..., 3] if arr.shape[2] == 4 else None)
        gray = color[..., 0] if was_gray else None  # gray + alpha arrives as BGRA with B = G = R
    if gray is not None:
        # Replicated as a view: three identical channels without three copies (the harness's GRAY2RGB).
        g = torch.from_numpy(np.ascontiguousarray(gray)).float().div(peak)
        rgb = g.view(1, 1, *g.shape).expand(1, 3, *g.shape)
    else:
        assert color is not None
        rgb = torch.from_numpy(np.ascontiguousarray(color[..., ::-1].transpose(2, 0, 1))).float().div(peak)
        rgb = rgb.unsqueeze(0)
    a = None
    if alpha is not None:
        a = torch.from_numpy(np.ascontiguousarray(alpha)).float().div(peak).view(1, 1, *alpha.shape)
    return Image(rgb=rgb, alpha=a, bit_depth=bit_depth, was_grayscale=was_gray, path=p)


def _quantize_rows(t: torch.Tensor, peak: float, dtype: np.dtype) -> np.ndarray:
    """CxHxW float -> HxWxC integer: clamp to [0,1], x peak in float32, round half-to-even (as ``tensor_to_uint8``)."""
    arr = t.detach().float().clamp(0, 1).cpu().numpy().transpose(1, 2, 0)
    return np.round(arr * np.float32(peak)).astype(dtype)


def image_to_array(img: Image) -> np.ndarray:
    """The pixels to write, in OpenCV layout: HxW gray, HxWx3 BGR or HxWx4 BGRA, uint8 or uint16.

    A grayscale image becomes one channel again: its channel 0 when the three channels are one replicated plane,
    otherwise the mean of the RGB values (:data:`GRAY_WEIGHTS`); with alpha it is HxWx2 (gray, alpha). Converted
    in row chunks so no full-size float temporary is made.
    """
    peak, dtype = (65535.0, np.uint16) if img.bit_depth == 16 else (255.0, np.uint8)
    h, w = img.height, img.width
    rgb = img.rgb[0]
    gray_out = img.was_grayscale
    channels = (1 if gray_out else 3) + (img.alpha is not None)
    out = np.empty((h, w, channels), dtype=dtype)
    replicated = img.was_grayscale and (
        rgb.stride(0) == 0 or bool(torch.equal(rgb[0], rgb[1]) and torch.equal(rgb[1], rgb[2]))
    )
    for r0 in range(0, h, _CHUNK_ROWS):
        r1 = min(h, r0 + _CHUNK_ROWS)
        block = rgb[:, r0:r1]
        if img.was_grayscale:
            if replicated:
                g = block[:1]
            else:
                wr, wg, wb = GRAY_WEIGHTS
                g = (wr * block[0] + wg * block[1] + wb * block[2]).unsqueeze(0)
            out[r0:r1, :, :1] = _quantize_rows(g, peak, dtype)
        else:
            out[r0:r1, :, :3] = _quantize_rows(block.flip(0), peak, dtype)  # RGB -> BGR
        if img.alpha is not None:
            out[r0:r1, :, -1:] = _quantize_rows(img.alpha[0, :, r0:r1], peak, dtype)
    return out[..., 0] if channels == 1 else out


def write_image(img: Image, path: str | os.PathLike[str], *, overwrite: bool = True) -> Path:
    """Write an :class:`Image` atomically (:func:`effsr.files.write_bytes`) and return the path.

    The format follows the suffix (PNG when there is none): PNG, TIFF, JPEG, WebP, BMP. The bit depth is
    ``img.bit_depth`` (16-bit needs PNG or TIFF); grayscale images are written as one channel (gray + alpha: a PNG of
    colour type 4, or RGBA where the format has no gray + alpha), colour images with alpha as RGBA. A format that
    cannot hold the image (16-bit or alpha in a JPEG) raises ``ValueError`` rather than dropping data silently;
    ``overwrite=False`` refuses an existing file (:class:`effsr.errors.OutputExistsError`).
    """
    p = Path(path)
    if not p.suffix:
        p = p.with_suffix(".png")
    ext = p.suffix.lower()
    if img.bit_depth == 16 and ext not in _DEEP_SUFFIXES:
        raise ValueError(f"{p}: {p.suffix} cannot hold 16-bit samples; write PNG or TIFF")
    if img.alpha is not None and ext not in _ALPHA_SUFFIXES:
        raise ValueError(f"{p}: {p.suffix} cannot hold transparency; write PNG, WebP or TIFF")
    arr = image_to_array(img)
    if arr.ndim == 3 and arr.shape[2] == 2:
        if ext == ".png":
            return write_bytes(p, _encode_png_gray_alpha(arr), overwrite=overwrite)
        arr = np.dstack([arr[..., 0], arr[..., 0], arr[..., 0], arr[..., 1]])  # BGRA with B = G = R
    return _write_cv2(arr, p, overwrite=overwrite)


def _encode_png_gray_alpha(arr: np.ndarray) -> bytes:
    """A PNG of colour type 4 (gray + alpha, 8 or 16 bits), which OpenCV cannot write (PNG spec, ISO 15948).

    Every scanline uses filter type 2 ("Up": byte-wise difference to the previous line), then zlib level 6.
    """
    h, w, _ = arr.shape
    depth = 16 if arr.dtype == np.uint16 else 8
    rows = np.ascontiguousarray(arr.astype(">u2") if depth == 16 else arr).view(np.uint8).reshape(h, -1)
    up = rows.copy()
    up[1:] -= rows[:-1]  # uint8 arithmetic wraps modulo 256, as the filter requires
    raw = np.hstack([np.full((h, 1), 2, np.uint8), up]).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, depth, 4, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def _write_cv2(arr: np.ndarray, p: Path, *, overwrite: bool = True) -> Path:
    """Encode with OpenCV (format from the suffix) and write atomically."""
    ext = p.suffix.lower() or ".png"
    try:
        ok, buf = cv2.imencode(ext, arr)
    except cv2.error as e:
        raise OSError(f"{p}: cannot encode the image as {ext} ({e})") from None
    if not ok:
        raise OSError(f"{p}: cannot encode the image as {ext}")
    return write_bytes(p, buf.data, overwrite=overwrite)


# --------------------------------------------------------------------------------------------------------------------
# Conversions for the Python API: arrays (RGB order, as Pillow and matplotlib use) and Pillow images.


def image_from_array(arr: np.ndarray) -> Image:
    """An :class:`Image` from an HxW (gray), HxWx1, HxWx2 (gray + alpha), HxWx3 (RGB) or HxWx4 (RGBA) array.

    uint8 and uint16 samples are scaled by 255 and 65535 (the bit depth is kept for :func:`image_to_array_rgb`);
    float samples are taken as [0,1] values (8-bit on output).
    """
    a = np.asarray(arr)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise InvalidValueError(f"expected an HxW or HxWxC image array with C in 1..4, got shape {a.shape}")
    if a.dtype == np.uint8:
        peak, depth = 255.0, 8
    elif a.dtype == np.uint16:
        peak, depth = 65535.0, 16
    elif np.issubdtype(a.dtype, np.floating):
        peak, depth = 1.0, 8
    else:
        raise InvalidValueError(f"image arrays must be uint8, uint16 or float, got {a.dtype}")
    t = torch.from_numpy(a.transpose(2, 0, 1).astype(np.float32, order="C"))  # a copy: the input may be read-only
    if peak != 1.0:
        t = t.div_(peak)
    t = t.unsqueeze(0)
    c = a.shape[2]
    gray = c in (1, 2)
    color = t[:, :1].expand(1, 3, *t.shape[2:]) if gray else t[:, :3]
    alpha = t[:, c - 1 : c] if c in (2, 4) else None
    return Image(rgb=color, alpha=alpha, bit_depth=depth, was_grayscale=gray)


def image_to_array_rgb(img: Image) -> np.ndarray:
    """The pixels of ``img`` in RGB order: HxW gray, HxWx2 gray + alpha, HxWx3 RGB or HxWx4 RGBA, uint8/uint16
    (clamped and rounded as :func:`write_image` writes them)."""
    arr = image_to_array(img)
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        order = [2, 1, 0, 3][: arr.shape[2]]
        arr = np.ascontiguousarray(arr[..., order])
    return arr


# Pillow modes read as they are; the others are converted to one of these first (palette, CMYK, bilevel...).
_PIL_MODES = frozenset({"L", "LA", "RGB", "RGBA"})


def image_from_pil(im: PILImage.Image) -> Image:
    """An :class:`Image` from a Pillow image (any mode: palette and bilevel images are expanded, 16-bit kept)."""
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        return image_from_array(_pillow_pixels(Path("<PIL image>"), im))
    if mode not in _PIL_MODES:
        has_alpha = "A" in mode or "transparency" in im.info
        gray = mode in ("1", "La")
        im = im.convert(("LA" if has_alpha else "L") if gray else ("RGBA" if has_alpha else "RGB"))
    return image_from_array(np.asarray(im))


def image_to_pil(img: Image) -> PILImage.Image:
    """A Pillow image of ``img``: mode L, LA, RGB or RGBA (8-bit) or I;16 (16-bit gray). 16-bit colour images are
    reduced to 8 bits, which is all Pillow holds for colour."""
    if img.bit_depth == 16 and not (img.was_grayscale and img.alpha is None):
        img = replace(img, bit_depth=8)
    return PILImage.fromarray(image_to_array_rgb(img))  # uint16 HxW becomes mode I;16


# --------------------------------------------------------------------------------------------------------------------
# Folders.


def list_images(folder: str | os.PathLike[str], *, recursive: bool = False,
                exclude: Iterable[str | os.PathLike[str]] = ()) -> list[Path]:
    """The image files in ``folder`` (by extension, :data:`IMAGE_EXTENSIONS`, in any case), sorted by their path
    relative to ``folder``; with ``recursive`` the whole tree. Hidden files and folders (a leading dot: editor and
    macOS ``._`` files, effsr's own ``.part`` temporaries) are skipped, and so is every folder in ``exclude`` (an
    output folder inside an input tree). Raises ``NotADirectoryError`` when ``folder`` is not a folder and
    ``OSError`` (``PermissionError``...) when it cannot be listed."""
    root = Path(folder)
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a folder")
    seen = {os.path.realpath(e) for e in exclude} | {os.path.realpath(root)}  # also guards against link loops
    found: list[tuple[str, Path]] = []

    def walk(d: Path, rel: str) -> None:
        for entry in d.iterdir():
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                real = os.path.realpath(entry)
                if recursive and real not in seen:
                    seen.add(real)
                    walk(entry, f"{rel}{entry.name}/")
            elif entry.suffix.lower() in IMAGE_EXTENSIONS and entry.is_file():
                found.append((rel + entry.name, entry))

    walk(root, "")
    return [p for _, p in sorted(found, key=lambda item: item[0])]
