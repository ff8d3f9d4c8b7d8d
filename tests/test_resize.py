"""MATLAB-compatible bicubic resize (``imresize`` with antialiasing, as the organisers made the LR sets).

Golden data: the benchmark LR sets in ../shared/data were made by MATLAB ``imresize(hr, 1/4, 'bicubic')`` from the
HR files (data/MANIFEST.md), and reference/out/bicubic holds the Set5 LR upscaled x4 by a MATLAB-compatible bicubic
in float32 on [0, 1] images, rounded to uint8 (reference/README.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from effsr.imageio import read_rgb_uint8
from effsr.resize import imresize, imresize_torch

from .conftest import require

SET5 = ["baby", "bird", "butterfly", "head", "woman"]


def _pattern(h: int, w: int, c: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w, c))


def _modcrop(img: np.ndarray, s: int) -> np.ndarray:
    h, w = img.shape[:2]
    return img[: h - h % s, : w - w % s]


@pytest.mark.parametrize("dataset", ["Set5", "Set14", "B100"])
def test_uint8_downscale_regenerates_matlab_lr(dataset: str, data_dir: Path) -> None:
    """MANIFEST.md: a MATLAB port with per-pass uint8 rounding matches >= 99.9% of values, none off by more than 1."""
    hr_files = sorted(require(data_dir / dataset / "HR").glob("*.png"))
    assert hr_files
    same = total = 0
    for f in hr_files:
        hr = _modcrop(read_rgb_uint8(f), 4)
        lr = imresize(hr, 0.25)
        ref = read_rgb_uint8(require(data_dir / dataset / "LR_bicubic" / "X4" / f.name))
        assert lr.dtype == np.uint8 and lr.shape == ref.shape, f.name
        diff = np.abs(lr.astype(np.int16) - ref.astype(np.int16))
        assert diff.max() <= 1, f"{dataset}/{f.name}: max diff {diff.max()}"
        same += int((diff == 0).sum())
        total += diff.size
    assert same / total >= 0.999


def test_float32_upscale_matches_reference_bicubic(data_dir: Path, reference_dir: Path) -> None:
    for name in SET5:
        lr = read_rgb_uint8(require(data_dir / "Set5" / "LR_bicubic" / "X4" / f"{name}.png"))
        ref = read_rgb_uint8(require(reference_dir / "out" / "bicubic" / "Set5" / f"{name}.png"))
        up = imresize(lr.astype(np.float32) / np.float32(255), 4)
        assert up.dtype == np.float32 and up.shape == ref.shape
        sr = np.uint8(np.round(np.clip(up, 0, 1) * np.float32(255)))
        np.testing.assert_array_equal(sr, ref, err_msg=name)


def test_output_size_rules() -> None:
    img = _pattern(101, 37)
    assert imresize(img, 0.3).shape == (31, 12, 3)  # ceil(0.3 * size), as MATLAB
    assert imresize(img, output_size=(20, 50)).shape == (20, 50, 3)
    assert imresize(img, (0.5, 2.0)).shape == (51, 74, 3)
    assert imresize(img[..., 0], 2).shape == (202, 74)
    with pytest.raises(ValueError):
        imresize(img)
    with pytest.raises(ValueError):
        imresize(img, 2, output_size=(3, 3))


def test_constant_image_is_preserved() -> None:
    """Weights are normalised per output pixel and the boundary is symmetric: a constant stays constant."""
    img = np.full((9, 14, 3), 0.25)
    for kw in ({"scale": 0.25}, {"scale": 3.0}, {"output_size": (5, 40)}):
        np.testing.assert_allclose(imresize(img, **kw), 0.25, atol=1e-12)
    u8 = np.full((16, 12, 3), 77, dtype=np.uint8)
    assert (imresize(u8, 0.25) == 77).all()


def test_integer_upscale_of_linear_ramp_interior() -> None:
    """The cubic kernel reproduces linear functions exactly away from the border (Keys' a = -0.5 property)."""
    ramp = np.tile(np.arange(32, dtype=np.float64), (4, 1))  # 4 x 32, linear along width
    out = imresize(ramp, output_size=(4, 64))
    x = (np.arange(1, 65) - 0.5) / 2 + 0.5 - 1  # 0-based input coordinate of each output pixel (MATLAB mapping)
    np.testing.assert_allclose(out[:, 8:-8], np.tile(x[8:-8], (4, 1)), atol=1e-12)


CASES = [
    ((40, 48), {"scale": 0.25}),
    ((37, 53), {"scale": 4}),
    ((33, 29), {"scale": 1 / 3}),
    ((20, 31), {"output_size": (13, 70)}),
    ((5, 3), {"scale": 0.5}),  # smaller than the kernel support: taps mirror more than once
    ((24, 24), {"scale": (0.5, 2.0)}),
]


@pytest.mark.parametrize(("hw", "kw"), CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_equals_numpy_on_float(hw, kw, dtype) -> None:
    img = _pattern(*hw, seed=hw[0]).astype(dtype)
    ref = imresize(img, **kw)
    batch = torch.from_numpy(np.stack([img, 1 - img])).permute(0, 3, 1, 2)  # N x C x H x W
    exact = imresize_torch(batch, method="gather", **kw).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(exact[0], ref)
    np.testing.assert_array_equal(exact[1], imresize(1 - img, **kw))
    fast = imresize_torch(batch, **kw).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(fast[0], ref, rtol=0, atol=1e-6 if dtype == np.float32 else 1e-12)


def test_torch_quantize_float64_equals_uint8_path(data_dir: Path) -> None:
    hr = read_rgb_uint8(require(data_dir / "Set5" / "HR" / "bird.png"))
    ref = imresize(hr, 0.25)
    x = torch.from_numpy(hr.astype(np.float64) / 255).permute(2, 0, 1)  # C x H x W is accepted too
    out = imresize_torch(x, 0.25, quantize=True, method="gather")
    np.testing.assert_array_equal(np.round(out.permute(1, 2, 0).numpy() * 255).astype(np.uint8), ref)
    fast32 = imresize_torch(x.float()[None], 0.25, quantize=True)[0].permute(1, 2, 0).numpy()
    diff = np.abs(np.round(fast32 * 255).astype(np.int16) - ref)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_torch_is_differentiable_and_keeps_device_dtype() -> None:
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0), requires_grad=True)
    y = imresize_torch(x, 0.5)
    assert y.shape == (2, 3, 8, 8) and y.dtype == torch.float32
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    with pytest.raises(TypeError):
        imresize_torch(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), 2)
