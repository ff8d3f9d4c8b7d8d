"""Every odd input file is read correctly or refused with an error naming it; writes are exact and atomic.

The odd files are generated in tmp_path with Pillow and OpenCV; expected pixel values come from the generating
arrays (lossless formats) or from OpenCV's own decode (JPEG, the official harness's reader).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from PIL import ImageOps

from effsr import imageio
from effsr.imageio import (
    Image,
    ImageReadError,
    image_to_array,
    read_image,
    read_rgb_uint8,
    tensor_to_uint8,
    uint8_to_tensor,
    write_image,
    write_rgb_uint8,
)

RNG = np.random.default_rng(1234)
RGB8 = RNG.integers(0, 256, (21, 34, 3), dtype=np.uint8)
GRAY8 = RNG.integers(0, 256, (21, 34), dtype=np.uint8)
ALPHA8 = RNG.integers(0, 256, (21, 34), dtype=np.uint8)
RGB16 = RNG.integers(0, 65536, (21, 34, 3), dtype=np.uint16)
GRAY16 = RNG.integers(0, 65536, (21, 34), dtype=np.uint16)
ALPHA16 = RNG.integers(0, 65536, (21, 34), dtype=np.uint16)


def _u8(t: torch.Tensor) -> np.ndarray:
    """1xCxHxW in [0,1] (exact k/255 values) -> HxWxC uint8."""
    return np.uint8(np.round(t[0].permute(1, 2, 0).numpy() * 255))


def _u16(t: torch.Tensor) -> np.ndarray:
    return np.round(t[0].permute(1, 2, 0).numpy().astype(np.float64) * 65535).astype(np.uint16)


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".part")]


# ---------------------------------------------------------------------------------------------------------------
# The harness layer keeps its behaviour, and read_image agrees with it on ordinary files.


def test_read_image_equals_harness_read_for_rgb_and_gray(tmp_path: Path) -> None:
    PILImage.fromarray(RGB8).save(tmp_path / "rgb.png")
    PILImage.fromarray(GRAY8).save(tmp_path / "gray.png")
    for name in ("rgb.png", "gray.png"):
        img = read_image(tmp_path / name)
        harness = uint8_to_tensor(read_rgb_uint8(tmp_path / name))
        assert img.rgb.dtype == torch.float32 and img.rgb.shape == harness.shape
        assert torch.equal(img.rgb, harness), name
        assert img.bit_depth == 8 and img.alpha is None and img.path == tmp_path / name
    assert read_image(tmp_path / "gray.png").was_grayscale
    assert not read_image(tmp_path / "rgb.png").was_grayscale


def test_harness_write_and_quantisation_unchanged(tmp_path: Path) -> None:
    t = torch.tensor([0.0, 0.5 / 255, 1.5 / 255, 2.5 / 255, 1.2, -0.3]).view(1, 3, 1, 2)
    u = tensor_to_uint8(t)
    assert u.dtype == np.uint8 and u.shape == (1, 2, 3)
    # clamp, x255, round half to even in float32 (specs/README.md section 2, step 4)
    assert u[0, :, 0].tolist() == [0, 0] and u[0, :, 1].tolist() == [2, 2] and u[0, :, 2].tolist() == [255, 0]
    out = write_rgb_uint8(RGB8, tmp_path / "h.png")
    assert np.array_equal(read_rgb_uint8(out), RGB8)
    assert _no_temp_files(tmp_path)


def test_image_to_array_quantises_like_the_harness() -> None:
    t = torch.rand(1, 3, 9, 11, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.1
    arr = image_to_array(Image(rgb=t))
    assert np.array_equal(arr[..., ::-1], tensor_to_uint8(t))  # image_to_array is in OpenCV (BGR) order


# ---------------------------------------------------------------------------------------------------------------
# Odd inputs.


def test_grayscale_stays_grayscale(tmp_path: Path) -> None:
    PILImage.fromarray(GRAY8).save(tmp_path / "g.png")
    img = read_image(tmp_path / "g.png")
    assert img.was_grayscale and img.rgb.shape == (1, 3, 21, 34)
    assert torch.equal(img.rgb[:, 0], img.rgb[:, 1]) and torch.equal(img.rgb[:, 1], img.rgb[:, 2])
    out = write_image(img, tmp_path / "out.png")
    with PILImage.open(out) as im:
        assert im.mode == "L"
        assert np.array_equal(np.asarray(im), GRAY8)


def test_grayscale_with_differing_channels_is_written_as_channel_mean(tmp_path: Path) -> None:
    rgb = torch.rand(1, 3, 5, 6, generator=torch.Generator().manual_seed(1))
    out = write_image(Image(rgb=rgb, was_grayscale=True), tmp_path / "m.png")
    expected = tensor_to_uint8(rgb.mean(1, keepdim=True).expand(1, 3, 5, 6))[..., 0]
    got = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert got.ndim == 2 and np.abs(got.astype(int) - expected).max() <= 1  # float sum order may flip a rounding


def test_bilevel_image(tmp_path: Path) -> None:
    PILImage.fromarray(GRAY8).convert("1").save(tmp_path / "bw.png")
    img = read_image(tmp_path / "bw.png")
    assert img.was_grayscale
    assert set(np.unique(_u8(img.rgb))) <= {0, 255}


@pytest.mark.parametrize("bits", [8, 16])
def test_rgba_alpha_is_kept(tmp_path: Path, bits: int) -> None:
    if bits == 8:
        rgba, rgb, alpha = np.dstack([RGB8, ALPHA8]), RGB8, ALPHA8
    else:
        rgba, rgb, alpha = np.dstack([RGB16, ALPHA16]), RGB16, ALPHA16
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    img = read_image(tmp_path / "a.png")
    conv = _u8 if bits == 8 else _u16
    assert img.bit_depth == bits and not img.was_grayscale and img.alpha is not None
    assert np.array_equal(conv(img.rgb), rgb) and np.array_equal(conv(img.alpha)[..., 0], alpha)
    out = write_image(img, tmp_path / "out.png")
    back = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert back.dtype == rgba.dtype and np.array_equal(cv2.cvtColor(back, cv2.COLOR_BGRA2RGBA), rgba)


@pytest.mark.parametrize("bits", [8, 16])
def test_gray_alpha_is_kept_as_gray_alpha(tmp_path: Path, bits: int) -> None:
    gray, alpha = (GRAY8, ALPHA8) if bits == 8 else (GRAY16, ALPHA16)
    peak = 2**bits - 1
    img = Image(rgb=torch.from_numpy(gray / peak).float().view(1, 1, 21, 34).expand(1, 3, 21, 34),
                alpha=torch.from_numpy(alpha / peak).float().view(1, 1, 21, 34), bit_depth=bits, was_grayscale=True)
    out = write_image(img, tmp_path / "la.png")
    raw = out.read_bytes()
    assert raw[24] == bits and raw[25] == 4  # IHDR: bit depth, colour type 4 = gray + alpha
    back = read_image(out)
    assert back.was_grayscale and back.bit_depth == bits and back.alpha is not None
    conv = _u8 if bits == 8 else _u16
    assert np.array_equal(conv(back.rgb)[..., 0], gray) and np.array_equal(conv(back.alpha)[..., 0], alpha)
    if bits == 8:
        with PILImage.open(out) as im:
            assert im.mode == "LA" and np.array_equal(np.asarray(im)[..., 0], gray)


@pytest.mark.parametrize("kind", ["rgb", "gray"])
def test_16bit_png_read_and_written_in_16_bit(tmp_path: Path, kind: str) -> None:
    src = RGB16 if kind == "rgb" else GRAY16
    cv2.imwrite(str(tmp_path / "s.png"), src[..., ::-1] if kind == "rgb" else src)
    img = read_image(tmp_path / "s.png")
    assert img.bit_depth == 16 and img.was_grayscale == (kind == "gray")
    got = _u16(img.rgb)
    assert np.array_equal(got if kind == "rgb" else got[..., 0], src)
    out = write_image(img, tmp_path / "o.png")
    back = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16
    assert np.array_equal(back[..., ::-1] if kind == "rgb" else back, src)
    with pytest.raises(ValueError, match="16-bit"):
        write_image(img, tmp_path / "o.jpg")


def test_16bit_tiff(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "s.tif"), RGB16[..., ::-1])
    img = read_image(tmp_path / "s.tif")
    assert img.bit_depth == 16 and np.array_equal(_u16(img.rgb), RGB16)


def test_palette_images(tmp_path: Path) -> None:
    pal = PILImage.fromarray(RGB8).convert("P", palette=PILImage.Palette.ADAPTIVE, colors=64)
    pal.save(tmp_path / "p.png")
    pal.save(tmp_path / "pt.png", transparency=3)
    img = read_image(tmp_path / "p.png")
    assert img.alpha is None and not img.was_grayscale
    assert np.array_equal(_u8(img.rgb), np.asarray(pal.convert("RGB")))
    img_t = read_image(tmp_path / "pt.png")
    expected = np.asarray(PILImage.open(tmp_path / "pt.png").convert("RGBA"))
    assert img_t.alpha is not None
    assert np.array_equal(_u8(img_t.rgb), expected[..., :3])
    assert np.array_equal(_u8(img_t.alpha)[..., 0], expected[..., 3])


@pytest.mark.parametrize("ext", [".jpg", ".webp", ".bmp", ".tif", ".gif"])
def test_common_formats(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"x{ext}"
    options = {"quality": 92} if ext == ".jpg" else {"lossless": True} if ext == ".webp" else {}
    PILImage.fromarray(RGB8).save(path, **options)
    img = read_image(path)
    assert img.rgb.shape == (1, 3, 21, 34) and img.bit_depth == 8
    if ext == ".jpg":  # lossy: the pixels are OpenCV's decode, as in the official harness
        assert np.array_equal(_u8(img.rgb), read_rgb_uint8(path))
    elif ext == ".gif":  # palette-quantised by Pillow on save; OpenCV may not read GIF, Pillow does
        assert np.array_equal(_u8(img.rgb), np.asarray(PILImage.open(path).convert("RGB")))
    else:
        assert np.array_equal(_u8(img.rgb), RGB8)


def test_grayscale_jpeg(tmp_path: Path) -> None:
    PILImage.fromarray(GRAY8).save(tmp_path / "g.jpg", quality=95)
    img = read_image(tmp_path / "g.jpg")
    assert img.was_grayscale and np.array_equal(_u8(img.rgb), read_rgb_uint8(tmp_path / "g.jpg"))


def test_cmyk_jpeg_becomes_rgb_without_alpha(tmp_path: Path) -> None:
    PILImage.fromarray(RGB8).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    img = read_image(tmp_path / "c.jpg")
    assert img.alpha is None and img.rgb.shape == (1, 3, 21, 34)
    assert np.array_equal(_u8(img.rgb), np.asarray(PILImage.open(tmp_path / "c.jpg").convert("RGB")))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied(tmp_path: Path, orientation: int) -> None:
    im = PILImage.fromarray(RGB8)
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(tmp_path / "o.png", exif=exif.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(PILImage.open(tmp_path / "o.png")).convert("RGB"))
    got = _u8(read_image(tmp_path / "o.png").rgb)
    assert got.shape == expected.shape and np.array_equal(got, expected)


def test_exif_orientation_jpeg_rotates(tmp_path: Path) -> None:
    im = PILImage.fromarray(RGB8)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 clockwise
    im.save(tmp_path / "o.jpg", exif=exif.tobytes(), quality=95)
    img = read_image(tmp_path / "o.jpg")
    assert img.rgb.shape == (1, 3, 34, 21)
    assert np.array_equal(_u8(img.rgb), np.rot90(read_rgb_uint8(tmp_path / "o.jpg"), -1))


# ---------------------------------------------------------------------------------------------------------------
# Files that must be refused, with the file named.


def _corrupt_files(tmp_path: Path) -> dict[str, Path]:
    PILImage.fromarray(RGB8).save(tmp_path / "ok.png")
    PILImage.fromarray(RGB8).save(tmp_path / "ok.jpg", quality=90)
    png, jpg = (tmp_path / "ok.png").read_bytes(), (tmp_path / "ok.jpg").read_bytes()
    bad = bytearray(png)
    bad[png.index(b"IDAT") + 20] ^= 0xFF
    files = {
        "truncated png": png[: len(png) // 2],
        "truncated jpeg": jpg[: len(jpg) // 2],
        "corrupt png data": bytes(bad),
        "png signature then garbage": b"\x89PNG\r\n\x1a\n" + bytes(64),
        "text named png": b"not an image at all\n",
        "empty file": b"",
    }
    out = {}
    for i, (what, data) in enumerate(files.items()):
        p = tmp_path / f"bad{i}{'.jpg' if 'jpeg' in what else '.png'}"
        p.write_bytes(data)
        out[what] = p
    return out


def test_corrupt_and_non_image_files_raise_naming_the_file(tmp_path: Path) -> None:
    for what, path in _corrupt_files(tmp_path).items():
        with pytest.raises(ImageReadError) as exc:
            read_image(path)
        assert str(path) in str(exc.value), what


def test_missing_folder_and_unreadable_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ImageReadError, match="no such file") as exc:
        read_image(tmp_path / "nope.png")
    assert "nope.png" in str(exc.value)
    with pytest.raises(ImageReadError, match="folder"):
        read_image(tmp_path)
    PILImage.fromarray(RGB8).save(tmp_path / "locked.png")

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    # Tests may run as root, where chmod 000 does not stop reading: simulate the OS refusal instead.
    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(ImageReadError, match="permission denied") as exc:
        read_image(tmp_path / "locked.png")
    assert "locked.png" in str(exc.value)


def test_unsupported_sample_type(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "f.tif"), np.zeros((4, 5, 3), np.float32))
    with pytest.raises(ImageReadError, match="f.tif"):
        read_image(tmp_path / "f.tif")


# ---------------------------------------------------------------------------------------------------------------
# Atomic writes.


def test_write_is_atomic_and_leaves_target_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "t.png"
    target.write_bytes(b"previous content")
    img = Image(rgb=uint8_to_tensor(RGB8))

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    # The failure happens after the bytes went to the temporary file, before the rename.
    monkeypatch.setattr(imageio.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        write_image(img, target)
    assert target.read_bytes() == b"previous content"
    assert _no_temp_files(tmp_path)
    monkeypatch.undo()

    write_image(img, target)
    assert np.array_equal(read_rgb_uint8(target), RGB8) and _no_temp_files(tmp_path)


def test_write_encode_failure_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imageio.cv2, "imencode", lambda ext, arr: (False, None))
    with pytest.raises(OSError, match="cannot encode"):
        write_image(Image(rgb=uint8_to_tensor(RGB8)), tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_written_file_permissions_follow_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        out = write_image(Image(rgb=uint8_to_tensor(RGB8)), tmp_path / "p.png")
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644


def test_image_validates_shapes() -> None:
    with pytest.raises(ValueError):
        Image(rgb=torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError):
        Image(rgb=torch.zeros(1, 3, 4, 4), alpha=torch.zeros(1, 1, 4, 5))
    with pytest.raises(ValueError):
        Image(rgb=torch.zeros(1, 3, 4, 4), bit_depth=12)
