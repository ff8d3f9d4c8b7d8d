"""The NTIRE ESR challenge's data layout, as the organisers ship it, for ``effsr eval`` and as ``val_data``.

Amazingren/NTIRE2025_ESR test_demo.py (``select_dataset``) and README: ``DIV2K_LSDIR_valid_HR/0801.png`` beside
``DIV2K_LSDIR_valid_LR/0801x4.png`` (the LR path is the HR path with ``_HR`` -> ``_LR`` and ``.png`` -> ``x4.png``);
the same for ``DIV2K_LSDIR_test``. The folders are built here from Set5 under challenge-style names, so the metrics
must be the official Set5 ones (../shared/reference/metrics/Set5.json).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from effsr.cli import app
from effsr.evaluate import find_dataset
from effsr.imageio import read_rgb_uint8
from effsr.train.loop import load_val_images

# Challenge-style names for three Set5 images (a DIV2K-style and an LSDIR-style name, as the valid set mixes them).
NAMES = {"baby": "0801", "bird": "0802", "woman": "000001"}
TOL_DB = 1e-3  # the per-image tolerance of tests/test_eval.py for model outputs


def _challenge_set(data_dir: Path, root: Path, split: str = "valid") -> Path:
    hr_dir, lr_dir = root / f"DIV2K_LSDIR_{split}_HR", root / f"DIV2K_LSDIR_{split}_LR"
    hr_dir.mkdir(parents=True)
    lr_dir.mkdir(parents=True)
    for src, dst in NAMES.items():
        shutil.copyfile(data_dir / "Set5" / "HR" / f"{src}.png", hr_dir / f"{dst}.png")
        shutil.copyfile(data_dir / "Set5" / "LR_bicubic" / "X4" / f"{src}.png", lr_dir / f"{dst}x4.png")
    return hr_dir


def test_the_layout_is_found_by_folder_parent_and_name(data_dir: Path, tmp_path: Path) -> None:
    hr_dir = _challenge_set(data_dir, tmp_path / "root")
    for spec in (hr_dir, "div2k-lsdir-valid", "DIV2K_LSDIR_valid"):
        ds = find_dataset(spec, data_root=tmp_path / "root")
        assert ds.hr_dir == hr_dir and ds.lr_dir == tmp_path / "root" / "DIV2K_LSDIR_valid_LR"
        assert [(n, hr.name, lr.name) for n, hr, lr in ds.pairs()] == [
            ("000001", "000001.png", "000001x4.png"), ("0801", "0801.png", "0801x4.png"),
            ("0802", "0802.png", "0802x4.png")]
    assert find_dataset(tmp_path / "root").hr_dir == hr_dir  # the folder that holds the pair
    # With the test split beside it, the parent is ambiguous: one line names both HR folders.
    _challenge_set(data_dir, tmp_path / "root", "test")
    with pytest.raises(FileNotFoundError, match="several HR/LR folder pairs.*test_HR.*valid_HR"):
        find_dataset(tmp_path / "root")
    assert find_dataset("div2k-lsdir-test", data_root=tmp_path / "root").name == "div2k-lsdir-test"
    # As val_data: the LR images are the shipped files, not made from HR.
    images = load_val_images(str(hr_dir), 4)
    assert [n for n, _, _ in images] == ["000001", "0801", "0802"]
    for name, lr, _ in images:
        src = next(k for k, v in NAMES.items() if v == name)
        assert np.array_equal(lr, read_rgb_uint8(data_dir / "Set5" / "LR_bicubic" / "X4" / f"{src}.png"))


def test_effsr_eval_reads_the_layout(data_dir: Path, set5_metrics: dict, tmp_path: Path) -> None:
    hr_dir = _challenge_set(data_dir, tmp_path / "root")
    out = tmp_path / "m.json"
    result = CliRunner().invoke(app, ["eval", "--model", "rlfn", "--backend", "eager", "--threads", "2",
                                      "--dataset", str(hr_dir), "--json", str(out)])
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    assert payload["dataset"] == "DIV2K_LSDIR_valid"
    got = {r["name"]: r for r in payload["images"]}
    assert set(got) == set(NAMES.values())
    for src, dst in NAMES.items():
        for key in ("psnr_rgb", "psnr_y"):
            assert abs(got[dst][key] - set5_metrics["rlfn"][src][key]) <= TOL_DB, (dst, key)
