"""``effsr export``: every zoo model round-trips through onnxruntime at two input sizes (docs/deploy.md).

Each file written by the CLI is loaded again here and compared with the PyTorch forward (max abs 5e-4 in [0,1]
units) at the traced size and, for dynamic exports, at a second, larger, odd, non-square size. Architectures that
cannot take dynamic sizes (AGDN's windowed attention, SAFMN++'s adaptive pooling) must say so and name the shapes
they support.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import effsr
from effsr.cli import app
from effsr.deploy.onnx import ONNX_TOLERANCE, export_onnx, make_session, onnx_tiling, second_check_size

from .conftest import ZOO_2025_2026

ZOO = ["rlfn", "agdn", "lsanet", "ifadnet", "mdrn_s", "msn", "span", "safmnpp", "mdrn", *ZOO_2025_2026]
STATIC_ONLY = {"agdn", "safmnpp", "safmnv3"}  # SAFMNv3 pools to (h // 8, w // 8) as SAFMN++ does
SIZE = (32, 40)  # (H, W); the CLI takes WxH


pytestmark = pytest.mark.usefixtures("one_thread")


def _ort_error(path: Path, model: torch.nn.Module, size: tuple[int, int]) -> float:
    g = torch.Generator().manual_seed(3)
    coarse = torch.rand(1, 3, size[0] // 4, size[1] // 4, generator=g)
    x = torch.nn.functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False)
    session = make_session(path.read_bytes(), threads=1)
    (y,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.inference_mode():
        ref = model(x).numpy()
    assert y.shape == ref.shape
    return float(np.abs(y - ref).max())


@pytest.mark.parametrize("name", ZOO)
def test_cli_export_round_trips_every_zoo_model(name: str, tmp_path: Path, weights_dir: Path) -> None:
    out = tmp_path / f"{name}.onnx"
    result = CliRunner().invoke(app, ["export", "--model", name, "-o", str(out), "--dynamic",
                                      "--lr-size", f"{SIZE[1]}x{SIZE[0]}"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    checks = re.findall(r"max abs ([0-9.e+-]+), ok", text)
    assert len(checks) == 2, text  # two input sizes, both within the tolerance
    model = effsr.load(name)
    assert onnx_tiling(out) == model.tiling  # the file carries the model's size and tiling contract whole
    assert _ort_error(out, model, SIZE) <= ONNX_TOLERANCE
    if name in STATIC_ONLY:
        assert "cannot be exported with dynamic sizes" in text
        assert "exactly 1 x 3 x 32 x 40" in text
        if name == "agdn":  # the reason and the window limit are spelled out
            assert "depends on the input size" in text and "up to 96 x 96" in text
        session = make_session(out.read_bytes(), threads=1)
        assert [d for d in session.get_inputs()[0].shape] == [1, 3, *SIZE]
    else:
        assert "dynamic shapes" in text and "any N x 3 x H x W" in text
        assert _ort_error(out, model, second_check_size(SIZE, model.tiling)) <= ONNX_TOLERANCE


def test_static_export_without_dynamic_flag(tmp_path: Path, weights_dir: Path) -> None:
    out = tmp_path / "rlfn.onnx"
    report = export_onnx(effsr.load("rlfn"), out, dynamic=False, example_size=SIZE)
    assert report.ok and not report.dynamic and out.stat().st_size == report.file_bytes
    session = make_session(out.read_bytes(), threads=1)
    assert session.get_inputs()[0].shape == [1, 3, *SIZE]


def test_cli_export_needs_a_model(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["export", "-o", str(tmp_path / "x.onnx")])
    assert result.exit_code != 0
