"""Every zoo model with its official weights reproduces the official outputs (../shared/reference).

Tolerances (issue 2): uint8 SR images equal the reference PNGs except for roundings flipped by 1 on at most
0.01% of values (the references were made with another PyTorch build); per-image PSNR within 1e-3 dB; raw float
output for the butterfly test input within 1e-5 max abs in [0,1] units (RLFN's stored output is 0..255).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import effsr
from effsr.imageio import read_rgb_uint8, tensor_to_uint8, uint8_to_tensor
from effsr.infer import upscale
from effsr.metrics import psnr_rgb

from ..conftest import require

ZOO = ["rlfn", "agdn", "lsanet", "ifadnet", "mdrn_s", "mdrn", "msn", "span", "safmnpp"]
SET5 = ["baby", "bird", "butterfly", "head", "woman"]


@pytest.fixture(scope="module")
def loaded() -> dict[str, torch.nn.Module]:
    return {}


def _model(name: str, cache: dict[str, torch.nn.Module]) -> torch.nn.Module:
    if name not in cache:
        cache[name] = effsr.load(name)
    return cache[name]


@pytest.mark.parametrize("name", ZOO)
def test_set5_matches_reference(name, loaded, data_dir: Path, reference_dir: Path, set5_metrics) -> None:
    model = _model(name, loaded)
    for img in SET5:
        lr = read_rgb_uint8(require(data_dir / "Set5" / "LR_bicubic" / "X4" / f"{img}.png"))
        hr = read_rgb_uint8(require(data_dir / "Set5" / "HR" / f"{img}.png"))
        ref = read_rgb_uint8(require(reference_dir / "out" / name / "Set5" / f"{img}.png"))
        sr = tensor_to_uint8(upscale(model, uint8_to_tensor(lr)))
        assert sr.shape == ref.shape
        diff = np.abs(sr.astype(np.int16) - ref.astype(np.int16))
        assert diff.max() <= 1, f"{name}/{img}: max uint8 diff {diff.max()}"
        assert (diff > 0).mean() <= 1e-4, f"{name}/{img}: {(diff > 0).mean():.2e} of values differ"
        expected = set5_metrics[name][img]["psnr_rgb"]
        assert abs(psnr_rgb(sr, hr, border=4) - expected) <= 1e-3


@pytest.mark.parametrize("name", ZOO)
def test_butterfly_raw_output(name, loaded, data_dir: Path, reference_dir: Path) -> None:
    meta = json.loads(require(reference_dir / "testvec_butterfly.json").read_text())["models"][name]
    ref = np.load(require(reference_dir / meta["file"]))
    ref01 = ref / meta["data_range"]  # RLFN's stored output is in 0..255 units
    lr = read_rgb_uint8(require(data_dir / "Set5" / "LR_bicubic" / "X4" / "butterfly.png"))
    out = upscale(_model(name, loaded), uint8_to_tensor(lr)).numpy()
    assert out.shape == ref.shape
    assert np.abs(out - ref01).max() <= 1e-5
