"""RLFN, SPAN and SAFMN++: golden outputs, parameter counts, strict loading, detection, weight records.

Golden numbers come from ``shared/specs/RLFN.md`` section 6 (deterministic test vector), ``SPAN.md`` /
``SAFMNPP.md`` (parameter counts) and ``shared/reference/testvec_butterfly.json`` (the SPAN and SAFMN++ specs list
no test vector, so their golden output summary is the official raw butterfly output's).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import effsr
from effsr.imageio import read_rgb_uint8, uint8_to_tensor
from effsr.models import get_spec
from effsr.models.rlfn import detect_rlfn
from effsr.models.safmnpp import detect_safmnpp
from effsr.models.span import detect_span
from effsr.weights import read_state_dict

from ..conftest import make_test_vector, require

NAMES = ["rlfn", "span", "safmnpp"]
# Parameter counts from the specs (RLFN.md s1, SPAN.md s1, SAFMNPP.md s1), equal to the factsheets where given.
SPEC_PARAMS = {"rlfn": 317_218, "span": 150_688, "safmnpp": 211_572}
DETECTORS = {"rlfn": detect_rlfn, "span": detect_span, "safmnpp": detect_safmnpp}
COMMIT = "6404fa48dde4a4adbf241a51debdc661aef20449"  # shared/weights/SOURCES.md

# Tolerances for the RLFN test vector: the listed digits allow +-5e-5 on the sums and +-5e-7 on the pixels.
# On top of that we allow for float32 kernel differences between CPU builds: oneDNN's AVX2 path reproduces every
# listed digit, its AVX-512 path moves sum|y| by 8e-4 and single pixels by 1.1e-6 (the test vector's high-frequency
# pattern drives large activations in 0..255 units).
SUM_TOL = 5e-5 + 2e-3
PIXEL_TOL = 5e-7 + 2e-6


def _official_state_dict(name: str, weights_dir: Path) -> dict[str, torch.Tensor]:
    record = get_spec(name).default_weights
    assert record is not None
    return read_state_dict(require(weights_dir / record.file), record.wrapper_key)


@pytest.fixture(scope="module")
def models() -> dict[str, torch.nn.Module]:
    return {}


def _load(name: str, cache: dict[str, torch.nn.Module]) -> torch.nn.Module:
    if name not in cache:
        cache[name] = effsr.load(name)
    return cache[name]


def test_rlfn_test_vector(models, weights_dir: Path) -> None:
    """specs/RLFN.md s6: README s4 input (x255 happens inside the model), output already divided by 255."""
    model = _load("rlfn", models)
    with torch.inference_mode():
        y = model(make_test_vector()).double()
    assert tuple(y.shape) == (1, 3, 160, 192)
    assert abs(y.sum().item() - 45942.2507) <= SUM_TOL
    assert abs(y.abs().sum().item() - 48176.6997) <= SUM_TOL
    expected = {
        (0, 0): [-0.084505, 0.425008, -0.024135],
        (-1, -1): [0.333064, 0.818941, 0.364868],
        (77, 101): [0.302221, 0.910061, 0.185699],
    }
    for (h, w), values in expected.items():
        got = y[0, :, h, w]
        assert torch.allclose(got, torch.tensor(values, dtype=torch.float64), rtol=0, atol=PIXEL_TOL), (h, w, got)


@pytest.mark.parametrize("name", ["span", "safmnpp"])
def test_butterfly_output_summary(name, models, data_dir: Path, reference_dir: Path) -> None:
    """Sum, sum of |y|, min and max of the raw butterfly output equal the official ones (reference README)."""
    meta = json.loads(require(reference_dir / "testvec_butterfly.json").read_text())["models"][name]
    assert meta["data_range"] == 1.0
    lr = read_rgb_uint8(require(data_dir / "Set5" / "LR_bicubic" / "X4" / "butterfly.png"))
    with torch.inference_mode():
        y = _load(name, models)(uint8_to_tensor(lr)).double()
    assert list(y.shape) == meta["shape"]
    # 196,608 values, each within ~1e-6 of the official float32 output across CPU kernels.
    assert abs(y.sum().item() - meta["sum_float64"]) <= 1e-3
    assert abs(y.abs().sum().item() - meta["abs_sum_float64"]) <= 1e-3
    assert abs(y.min().item() - meta["min"]) <= 1e-5
    assert abs(y.max().item() - meta["max"]) <= 1e-5


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count(name: str) -> None:
    spec = get_spec(name)
    record = spec.default_weights
    assert record is not None
    model = spec.builder(**dict(record.kwargs))
    n = sum(p.numel() for p in model.parameters())
    assert n == SPEC_PARAMS[name] == record.params


@pytest.mark.parametrize("name", NAMES)
def test_strict_load(name: str, models, weights_dir: Path) -> None:
    model = _load(name, models)
    sd = _official_state_dict(name, weights_dir)
    own = model.state_dict()
    assert set(own) == set(sd)  # nothing extra (e.g. no registered mean buffer), nothing missing
    for key, tensor in sd.items():
        assert torch.equal(own[key], tensor), key
    assert not model.training
    assert model.scale == 4
    assert all(not p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_detect_official_weights(name: str, weights_dir: Path) -> None:
    record = get_spec(name).default_weights
    assert record is not None
    sd = _official_state_dict(name, weights_dir)
    assert effsr.detect_architecture(sd) == (name, dict(record.kwargs))
    # Each detector declines the other two architectures' files.
    for other, detect in DETECTORS.items():
        if other != name:
            assert detect(sd) is None, (other, name)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("rlfn", {"scale": 2, "num_features": 32, "mid_channels": 40, "esa_channels": 8, "num_blocks": 3}),
        ("span", {"scale": 3, "num_features": 16, "num_blocks": 4}),
        ("safmnpp", {"scale": 2, "num_features": 24, "num_blocks": 2, "ffn_scale": 2.0}),
    ],
)
def test_detect_other_configurations(name: str, kwargs: dict) -> None:
    """Detection reads every shape-determining argument back from a randomly initialised model."""
    model = effsr.build_model(name, **kwargs)
    found, found_kwargs = effsr.detect_architecture(model.state_dict())
    assert found == name
    assert {k: found_kwargs[k] for k in kwargs} == kwargs


@pytest.mark.parametrize("name", NAMES)
def test_min_size_forward(name: str) -> None:
    """The smallest declared LR size runs, and the output is scale x larger."""
    torch.manual_seed(0)
    model = effsr.build_model(name).eval()
    s = model.tiling.min_size
    with torch.inference_mode():
        y = model(torch.rand(2, 3, s, s + 1))
    assert tuple(y.shape) == (2, 3, 4 * s, 4 * (s + 1))
    assert torch.isfinite(y).all()


def test_span_uses_activated_c1_output(models) -> None:
    """specs/README.md §5: conv_cat's 4th input is SiLU(block_6.c1_r(F5)), not the pre-activation."""
    model = _load("span", models)
    captured: dict[str, torch.Tensor] = {}
    handles = [
        model.block_6.c1_r.register_forward_hook(lambda m, i, o: captured.__setitem__("c1", o.clone())),
        model.conv_cat.register_forward_hook(lambda m, i, o: captured.__setitem__("cat", i[0].clone())),
    ]
    try:
        with torch.inference_mode():
            model(make_test_vector(16, 16))
    finally:
        for h in handles:
            h.remove()
    c = captured["c1"].shape[1]
    assert torch.equal(captured["cat"][:, 3 * c :], torch.nn.functional.silu(captured["c1"]))


@pytest.mark.parametrize("name", NAMES)
def test_weights_record(name: str, weights_dir: Path) -> None:
    record = get_spec(name).default_weights
    assert record is not None
    sums = dict(
        reversed(line.split()) for line in require(weights_dir / "SHA256SUMS").read_text().splitlines() if line.strip()
    )
    assert record.sha256 == sums[record.file]
    assert record.url == f"https://github.com/Amazingren/NTIRE2024_ESR/raw/{COMMIT}/model_zoo/{record.file}"
    assert record.model == name and record.licence == "MIT" and record.scale == 4
    assert record.wrapper_key == ("params_ema" if name == "safmnpp" else None)


def test_rlfn_boundary_is_unit_range(models) -> None:
    """RLFN scales by 255 inside: a [0,1] input gives a [0,1]-range output (no clamping inside)."""
    lr = torch.full((1, 3, 16, 16), 0.5)
    with torch.inference_mode():
        y = _load("rlfn", models)(lr)
    assert 0.3 < y.mean().item() < 0.7
