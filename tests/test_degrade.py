"""``effsr data degrade`` regenerates the MATLAB-made benchmark LR sets (MATLAB ``imresize``, bicubic, antialiased).

Golden data: ../shared/data/<Set>/LR_bicubic/X4, made by MATLAB ``imresize(hr, 1/4, 'bicubic')`` (data/MANIFEST.md).
Required: at least 99.9% of values identical and none off by more than 1.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from effsr.cli import app
from effsr.data.degrade import degrade_folder, degrade_image, modcrop
from effsr.imageio import read_rgb_uint8, write_rgb_uint8

from .conftest import require


def _compare(lr_dir: Path, ref_dir: Path) -> tuple[int, int, int]:
    """(identical values, total values, max abs difference) over every reference LR file."""
    same = total = worst = 0
    refs = sorted(ref_dir.glob("*.png"))
    assert refs
    for ref_path in refs:
        ref = read_rgb_uint8(ref_path)
        got = read_rgb_uint8(lr_dir / ref_path.name)
        assert got.shape == ref.shape, ref_path.name
        diff = np.abs(got.astype(np.int16) - ref.astype(np.int16))
        same += int((diff == 0).sum())
        total += diff.size
        worst = max(worst, int(diff.max()))
    return same, total, worst


@pytest.mark.parametrize("dataset", ["Set5", "Set14", "B100"])
def test_degrade_folder_regenerates_benchmark_lr(dataset: str, data_dir: Path, tmp_path: Path) -> None:
    hr_dir = require(data_dir / dataset / "HR")
    done = degrade_folder(hr_dir, tmp_path / "lr", 4)
    assert len(done) == len(list(hr_dir.glob("*.png")))
    same, total, worst = _compare(tmp_path / "lr", require(data_dir / dataset / "LR_bicubic" / "X4"))
    assert worst <= 1
    assert same / total >= 0.999


def test_grayscale_stays_grayscale(data_dir: Path, tmp_path: Path) -> None:
    """Set14 bridge is single-channel in HR and LR; the LR written is single-channel too."""
    hr = require(data_dir / "Set14" / "HR" / "bridge.png")
    (tmp_path / "hr").mkdir()
    (tmp_path / "hr" / "bridge.png").write_bytes(hr.read_bytes())
    [item] = degrade_folder(tmp_path / "hr", tmp_path / "lr", 4)
    assert item.grayscale
    lr = cv2.imread(str(item.lr_path), cv2.IMREAD_UNCHANGED)
    ref = cv2.imread(str(require(data_dir / "Set14" / "LR_bicubic" / "X4" / "bridge.png")), cv2.IMREAD_UNCHANGED)
    assert lr.ndim == 2 and lr.shape == ref.shape
    assert np.abs(lr.astype(np.int16) - ref).max() <= 1


def test_modcrop_and_sizes(tmp_path: Path) -> None:
    hr = (np.arange(14 * 11 * 3) % 256).astype(np.uint8).reshape(14, 11, 3)
    assert modcrop(hr, 4).shape == (12, 8, 3)
    lr = degrade_image(hr, 4)
    assert lr.shape == (3, 2, 3) and lr.dtype == np.uint8
    assert degrade_image(hr, 3).shape == (4, 3, 3)
    write_rgb_uint8(hr, tmp_path / "hr" / "odd.png")
    [item] = degrade_folder(tmp_path / "hr", tmp_path / "lr", 4, hr_out_dir=tmp_path / "hr4")
    assert item.hr_size == (14, 11) and item.lr_size == (3, 2)
    np.testing.assert_array_equal(read_rgb_uint8(tmp_path / "hr4" / "odd.png"), hr[:12, :8])
    with pytest.raises(TypeError):
        degrade_image(hr.astype(np.float32), 4)


def test_cli_degrade(data_dir: Path, tmp_path: Path) -> None:
    hr_dir = require(data_dir / "Set5" / "HR")
    result = CliRunner().invoke(app, ["data", "degrade", str(hr_dir), "-o", str(tmp_path / "lr"), "--scale", "4"])
    assert result.exit_code == 0, result.output
    assert "wrote 5 LR images" in result.output
    same, total, worst = _compare(tmp_path / "lr", require(data_dir / "Set5" / "LR_bicubic" / "X4"))
    assert worst <= 1 and same / total >= 0.999
