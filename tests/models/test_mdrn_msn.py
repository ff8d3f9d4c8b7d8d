"""MDRN (``mdrn_s``, ``mdrn``) and MSN: spec test vectors, parameter counts, strict loading, detection, records.

Golden numbers come from ``shared/specs/MDRN.md`` / ``MSN.md`` section 6 (test vector of specs/README.md section 4)
and section 5 / ``shared/weights/SOURCES.md`` (parameter counts). The Set5 and butterfly comparisons against the
official outputs live in ``test_zoo_reference.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import effsr
from effsr.models import get_spec
from effsr.models.blocks import local_variance
from effsr.models.mdrn import MDRN, detect_mdrn, detect_mdrn_s
from effsr.models.msn import detect_msn
from effsr.weights import read_state_dict

from ..conftest import make_test_vector, require

# specs/MDRN.md and specs/MSN.md section 6: Σy, Σ|y| and y[0,:,0,0], y[0,:,-1,-1], y[0,:,77,101] for the test vector.
TEST_VECTORS = {
    "mdrn_s": (
        46021.2852,
        47769.5912,
        [[0.031263, 0.520035, -0.025324], [0.364177, 0.80069, 0.342325], [0.372754, 1.069287, 0.393597]],
    ),
    "msn": (
        45986.9257,
        47291.6440,
        [[0.023626, 0.566322, -0.04894], [0.367126, 0.794699, 0.352967], [0.441991, 1.069429, 0.43561]],
    ),
}
# Specs section 5 / SOURCES.md. The x3/x2 counts of the full MDRN are not published; they are checked against the
# number of elements in the files instead (test_mdrn_x3_x2_params_match_files).
PARAMS = {"mdrn_s": 95_396, "mdrn": 321_904, "msn": 87_612}
# (registry name, kwargs for effsr.load, file, wrapper key, expected detected kwargs)
FILES = [
    ("mdrn_s", {}, "mdrn-s.pth", None, {"scale": 4, "num_features": 28, "num_blocks": 8}),
    ("mdrn", {}, "mdrn_x4.pth", "params_ema", {"scale": 4, "num_features": 56, "num_blocks": 8}),
    ("mdrn", {"scale": 3}, "mdrn_x3.pth", "params_ema", {"scale": 3, "num_features": 56, "num_blocks": 8}),
    ("mdrn", {"scale": 2}, "mdrn_x2.pth", "params_ema", {"scale": 2, "num_features": 56, "num_blocks": 8}),
    ("msn", {}, "team28_MSN.pth", "params_ema", {"scale": 4, "num_features": 28, "num_blocks": 8}),
]
FILE_IDS = [f[2] for f in FILES]


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["mdrn_s", "msn"])
def test_spec_test_vector(name: str, weights_dir: Path) -> None:
    expected_sum, expected_abs_sum, pixels = TEST_VECTORS[name]
    model = effsr.load(name)
    with torch.inference_mode():
        y = model(make_test_vector())
    assert tuple(y.shape) == (1, 3, 160, 192)
    # The spec's sums are float32 reductions printed to 4 decimals; a few float32 ulps (~4e-3 at 4.7e4) separate
    # reduction orders, so the float64 sums are compared at 1e-2.
    assert y.double().sum().item() == pytest.approx(expected_sum, abs=1e-2)
    assert y.double().abs().sum().item() == pytest.approx(expected_abs_sum, abs=1e-2)
    got = torch.stack([y[0, :, 0, 0], y[0, :, -1, -1], y[0, :, 77, 101]])
    torch.testing.assert_close(got, torch.tensor(pixels), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["mdrn_s", "mdrn", "msn"])
def test_parameter_counts(name: str) -> None:
    model = effsr.build_model(name)
    assert _n_params(model) == PARAMS[name]
    assert get_spec(name).default_weights.params == PARAMS[name]


def test_mdrn_x3_x2_params_match_files(weights_dir: Path) -> None:
    for rec in get_spec("mdrn").weights:
        sd = read_state_dict(require(weights_dir / rec.file), rec.wrapper_key)
        model = effsr.build_model("mdrn", **rec.kwargs)
        assert _n_params(model) == sum(t.numel() for t in sd.values()) == rec.params, rec.file


def test_widths_and_defaults() -> None:
    # the challenge weights' MDRN-S width, not the official class default 56
    assert effsr.build_model("mdrn_s").fea_conv.out_channels == 28
    assert effsr.build_model("mdrn").fea_conv.out_channels == 56
    assert effsr.build_model("msn").fea_conv.out_channels == 28
    # Minimum LR sizes (../shared/specs/README.md section 5).
    assert effsr.build_model("mdrn_s").tiling.min_size == 15 and effsr.build_model("msn").tiling.min_size == 29
    # The mean is a non-persistent buffer, never a state_dict entry (../shared/specs/README.md section 5).
    assert not any("mean" in k for k in effsr.build_model("mdrn_s").state_dict())


@pytest.mark.parametrize(("name", "load_kwargs", "file", "wrapper", "kwargs"), FILES, ids=FILE_IDS)
def test_strict_load_and_forward_at_min_size(name, load_kwargs, file, wrapper, kwargs, weights_dir: Path) -> None:
    require(weights_dir / file)
    model = effsr.load(name, **load_kwargs)  # strict=True inside; raises on any key or shape mismatch
    assert model.scale == kwargs["scale"]
    assert model.fea_conv.out_channels == kwargs["num_features"]
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    n = model.tiling.min_size
    with torch.inference_mode():
        y = model(torch.rand(1, 3, n, n + 1, generator=torch.Generator().manual_seed(0)))
    s = kwargs["scale"]
    assert tuple(y.shape) == (1, 3, n * s, (n + 1) * s)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize(("name", "load_kwargs", "file", "wrapper", "kwargs"), FILES, ids=FILE_IDS)
def test_detection(name, load_kwargs, file, wrapper, kwargs, weights_dir: Path) -> None:
    sd = read_state_dict(require(weights_dir / file), wrapper)
    assert effsr.detect_architecture(sd) == (name, kwargs)
    # The three detectors are mutually exclusive: exactly one claims each file.
    claims = {n for n, det in (("mdrn_s", detect_mdrn_s), ("mdrn", detect_mdrn), ("msn", detect_msn)) if det(sd)}
    assert claims == {name}


def test_load_from_file_alone_detects_scale(weights_dir: Path) -> None:
    model = effsr.load(weights=require(weights_dir / "mdrn_x3.pth"))
    assert isinstance(model, MDRN) and model.scale == 3 and model.fea_conv.out_channels == 56


def test_conflicting_requests_raise(weights_dir: Path) -> None:
    with pytest.raises(ValueError):
        effsr.load("mdrn", scale=5)  # no published x5 weights
    with pytest.raises(ValueError):
        effsr.load("mdrn_s", weights=require(weights_dir / "mdrn-s.pth"), num_features=56)  # width fixed by the file


def test_weight_records(weights_dir: Path) -> None:
    sums = {}
    for line in require(weights_dir / "SHA256SUMS").read_text().splitlines():
        if line.strip():
            digest, file = line.split()
            sums[file] = digest
    mdrn_commit = "a919ff291f96bb7ab6267da52a8a8db4354fc653"
    ntire_commit = "6404fa48dde4a4adbf241a51debdc661aef20449"
    records = {r.file: r for name in ("mdrn_s", "mdrn", "msn") for r in get_spec(name).weights}
    assert [r.file for r in get_spec("mdrn").weights] == ["mdrn_x4.pth", "mdrn_x3.pth", "mdrn_x2.pth"]
    for name, _, file, wrapper, kwargs in FILES:
        rec = records[file]
        assert rec.model == name and rec.wrapper_key == wrapper and rec.licence == "MIT"
        assert rec.sha256 == sums[file]
        assert dict(rec.kwargs) == kwargs and rec.scale == kwargs["scale"]
        commit = ntire_commit if name == "msn" else mdrn_commit
        assert rec.url.endswith(f"/raw/{commit}/{'model_zoo' if name == 'msn' else 'pretrain_models'}/{file}")


@pytest.mark.parametrize("name", ["mdrn_s", "msn"])
def test_same_padding_declarations_kept(name: str) -> None:
    """fea_conv and both ECCA convs of every block stay padding='same' (specs section 5: fvcore skips these 17)."""
    model = effsr.build_model(name)
    same = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.padding == "same"]
    assert len(same) == 17
    assert "fea_conv" in same and "B8.cca.body.0" in same and "B8.cca.body.3" in same


def test_msn_esa_downsamples_by_four() -> None:
    """MSN's strided separable BSConvU takes the stride in dw1 and dw2 (specs/README.md §5); MDRN's halves
    the size once."""
    x = torch.zeros(1, 7, 64, 64)
    assert effsr.build_model("msn").B1.esa.body[0].conv2_0(x).shape[-2:] == (16, 16)
    assert effsr.build_model("mdrn_s").B1.esa.body[0].conv2_0(x).shape[-2:] == (32, 32)


def test_local_variance_definition_and_export_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """specs/README.md section 3: reflect pad 1, 7x7 windows at stride 3, unbiased variance; the ONNX-export path
    (strided slices instead of unfold) gives bit-identical values."""
    x = torch.randn(2, 7, 29, 23, generator=torch.Generator().manual_seed(1))
    eager = local_variance(x)
    padded = torch.nn.functional.pad(x.double(), (1, 1, 1, 1), mode="reflect")
    assert eager.shape == (2, 7, (31 - 7) // 3 + 1, (25 - 7) // 3 + 1)
    window = padded[1, 3, 3 * 2 : 3 * 2 + 7, 3 * 4 : 3 * 4 + 7]
    manual = ((window - window.mean()) ** 2).sum() / (7 * 7 - 1)
    assert eager[1, 3, 2, 4].item() == pytest.approx(manual.item(), rel=1e-5)
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
    assert torch.equal(local_variance(x), eager)
