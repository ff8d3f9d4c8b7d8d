"""effsr.profile and ``effsr profile``: the NTIRE complexity counts of every zoo model equal the official raw counts.

Golden numbers: ../shared/reference/complexity.json and complexity_ntire2025_2026.json (the official implementations,
LR 1x3x256x256), and the NTIRE 2024 score example of the official README (RLFN scores 7.3891). Runtime and memory are
only checked for shape and sign; the yearly rules themselves are tested in tests/test_ntire.py.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import effsr
from effsr.cli import app
from effsr.imageio import write_rgb_uint8
from effsr.profile import Complexity, measure_complexity, ntire2024_score

from .conftest import ASSETS, ZOO_2025_2026, require

# Every model of complexity.json (effsr names); mdrn is MDRN 56 ch (mdrn_x4.pth), span/safmnpp reference entries.
OFFICIAL_MODELS = ("rlfn", "agdn", "lsanet", "ifadnet", "mdrn_s", "mdrn", "msn", "span", "safmnpp")
# Every model of complexity_ntire2025_2026.json (spanv2 on its pure-PyTorch path, whose true count the file holds;
# shared/official/README.md, "Traps").
OFFICIAL_MODELS_2025_2026 = ZOO_2025_2026

EXACT_KEYS = ("params", "macs_fvcore", "activations", "num_conv", "fvcore_by_operator")

# macs_conv_hooks (NTIRE 2023 get_model_flops) hooks ReLU / LeakyReLU *modules*; a functional call is invisible to
# it. These model files apply the activation functionally where the official code calls a module, so the hook count
# misses exactly those elements. The fix belongs in the model file (a parameter-free module keeps the state_dict).
HOOK_COUNT_GAPS: dict[str, str] = {}  # every model matches the 2023 conv-hook counter

# effsr's public boundary is [0,1] (DESIGN.md, Contracts); RLFN works on 0..255, so rlfn.py multiplies its input by
# 255 and divides its output by 255, two element-wise operators that the official harness (fed 0..255) never runs.
BOUNDARY_OPS = {"rlfn": {"aten::mul": 1, "aten::div": 1}}

# Element-wise operators (zero MACs, so macs_fvcore is unaffected) that a model file writes differently.
UNSUPPORTED_GAPS = {
    "agdn": "models/agdn.py runs 8 fewer aten::sub and 16 fewer aten::mul than the official code "
    "(its LayerNorm / TLC window bookkeeping is written differently); no effect on any MAC count",
}


# Runtime numbers here are only checked for sign; one thread avoids the OpenMP stalls of the shared machine.
pytestmark = pytest.mark.usefixtures("one_thread")


@functools.cache
def _reference() -> dict:
    ref = json.loads(require(ASSETS / "reference" / "complexity.json").read_text())
    newer = json.loads(require(ASSETS / "reference" / "complexity_ntire2025_2026.json").read_text())
    return {**ref, **{k: v for k, v in newer.items() if not k.startswith("_")}}


@functools.cache
def _measured(name: str) -> Complexity:
    """One measurement per model for the whole module (fvcore traces a real 256x256 forward)."""
    return measure_complexity(effsr.load(name), (256, 256))


def _model(name: str) -> Complexity:
    require(ASSETS / "weights")
    assert name in _reference(), f"{name} is not in complexity.json"
    assert name in effsr.list_models(), f"{name} is in complexity.json but not registered"
    return _measured(name)


def _merge_inplace(ops: dict[str, int]) -> dict[str, int]:
    """``aten::add_`` and ``aten::add`` are the same operator to fvcore (both skipped); merge the spellings."""
    out: dict[str, int] = {}
    for k, v in ops.items():
        key = k[:-1] if k.endswith("_") else k
        out[key] = out.get(key, 0) + v
    return out


@pytest.mark.parametrize("name", OFFICIAL_MODELS + OFFICIAL_MODELS_2025_2026)
def test_counts_equal_official(name: str) -> None:
    c = _model(name)
    ref = _reference()[name]
    got = {k: getattr(c, k) for k in EXACT_KEYS}
    assert got == {k: ref[k] for k in EXACT_KEYS}
    assert c.lr_size == (256, 256)
    # Cross-check of two independent counters: fvcore's convolutions plus the padding='same' ones it skips equal
    # FlopCounterMode's convolutions; the 'same' count is zero exactly when fvcore skipped no such convolution.
    same = c.macs_fvcore_with_same_padding_convs - c.macs_fvcore
    assert ref["fvcore_by_operator"]["conv"] + same == c.macs_torch_by_operator["convolution"]
    assert (same > 0) == ("aten::_convolution_mode" in ref["fvcore_unsupported"])
    assert c.macs_torch == sum(c.macs_torch_by_operator.values())


@pytest.mark.parametrize("name", OFFICIAL_MODELS + OFFICIAL_MODELS_2025_2026)
def test_conv_hook_macs_equal_official(name: str, request: pytest.FixtureRequest) -> None:
    if name in HOOK_COUNT_GAPS:
        request.applymarker(pytest.mark.xfail(strict=True, reason=HOOK_COUNT_GAPS[name]))
    assert _model(name).macs_conv_hooks == _reference()[name]["macs_conv_hooks"]


@pytest.mark.parametrize("name", OFFICIAL_MODELS + OFFICIAL_MODELS_2025_2026)
def test_fvcore_skipped_operators_equal_official(name: str, request: pytest.FixtureRequest) -> None:
    if name in UNSUPPORTED_GAPS:
        request.applymarker(pytest.mark.xfail(strict=True, reason=UNSUPPORTED_GAPS[name]))
    expected = _merge_inplace(_reference()[name]["fvcore_unsupported"])
    for op, extra in BOUNDARY_OPS.get(name, {}).items():
        expected[op] = expected.get(op, 0) + extra
    assert _merge_inplace(_model(name).fvcore_unsupported) == expected


def test_ntire2024_score_baseline() -> None:
    # Official README example: RLFN (13.54 ms, 19.70 G, 0.317 M) against itself scores exp(2) = 7.3891 everywhere.
    s = ntire2024_score(13.54, 19.70e9, 0.317e6, baseline_runtime_ms=13.54, baseline_macs=19.70e9,
                        baseline_params=0.317e6)
    for v in (s.score_runtime, s.score_flops, s.score_params, s.score_final):
        assert v == pytest.approx(7.3891, abs=5e-5)
        assert v == pytest.approx(math.exp(2), rel=1e-12)
    # Halving every quantity gives exp(1) per term; weights 0.7 / 0.15 / 0.15 on distinct ratios.
    half = ntire2024_score(5.0, 2.0, 3.0, baseline_runtime_ms=10.0, baseline_macs=4.0, baseline_params=6.0)
    assert half.score_final == pytest.approx(math.e, rel=1e-12)
    mixed = ntire2024_score(10.0, 0.0, 12.0, baseline_runtime_ms=10.0, baseline_macs=4.0, baseline_params=6.0)
    assert mixed.score_final == pytest.approx(0.7 * math.exp(2) + 0.15 * 1.0 + 0.15 * math.exp(4), rel=1e-12)


def _check_payload(p: dict, model: str, lr_size: list[int], runs: int) -> None:
    for key in ("model", "lr_size", "params", "macs_fvcore", "macs_torch", "activations", "num_conv",
                "peak_memory_mib", "runtime_ms"):
        assert key in p, key
    assert p["model"] == model
    assert p["lr_size"] == lr_size
    for key in ("params", "macs_fvcore", "macs_torch", "activations", "num_conv", "macs_conv_hooks",
                "macs_fvcore_with_same_padding_convs"):
        assert type(p[key]) is int and p[key] > 0, key
    assert isinstance(p["peak_memory_mib"], float) and p["peak_memory_mib"] >= 0
    assert set(p["runtime_ms"]) == {"median", "iqr", "runs"}
    assert p["runtime_ms"]["runs"] == runs
    assert isinstance(p["runtime_ms"]["median"], float) and p["runtime_ms"]["median"] > 0
    assert isinstance(p["runtime_ms"]["iqr"], float) and p["runtime_ms"]["iqr"] >= 0
    assert all(isinstance(v, int) for v in p["fvcore_unsupported"].values())


def test_cli_json_and_ntire_mode(tmp_path: Path) -> None:
    require(ASSETS / "weights")
    # A tiny dataset folder in the benchmark layout (HR/ + LR_bicubic/X4/); the harness times the LR images.
    lr_dir = tmp_path / "tiny" / "LR_bicubic" / "X4"
    rng = np.random.default_rng(0)
    for stem, (h, w) in {"b_img": (20, 24), "a_img": (18, 16)}.items():
        write_rgb_uint8(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), lr_dir / f"{stem}.png")
    out = tmp_path / "rlfn.json"
    result = CliRunner().invoke(
        app,
        ["profile", "--model", "rlfn", "--lr-size", "40x32", "--runs", "2", "--warmup", "1", "--json", str(out),
         "--harness-dir", str(tmp_path / "tiny")],
    )
    assert result.exit_code == 0, result.output
    p = json.loads(out.read_text())
    _check_payload(p, "rlfn", [32, 40], 2)  # --lr-size is W x H; the JSON's lr_size is [H, W]
    assert p["params"] == _reference()["rlfn"]["params"]
    assert p["num_conv"] == _reference()["rlfn"]["num_conv"]  # the conv count does not depend on the size
    images = p["ntire"]["images"]
    assert [(i["name"], i["lr_size"]) for i in images] == [("a_img", [18, 16]), ("b_img", [20, 24])]
    assert all(i["runtime_ms"] > 0 for i in images)
    assert p["ntire"]["mean_ms"] == pytest.approx(sum(i["runtime_ms"] for i in images) / 2)
    # Scored by default with the latest rules (NTIRE 2026, SPAN measured here too), runtime from the harness run.
    score = p["ntire_score"]
    assert (score["year"], score["baseline"], score["runtime_used"]) == (2026, "span", "harness mean per image")
    assert score["baseline_params"] == _reference()["span"]["params"]
    assert score["params"] == pytest.approx(math.exp(2 * p["params"] / _reference()["span"]["params"]))
    assert score["final"] == pytest.approx(0.8 * score["runtime"] + 0.1 * score["flops"] + 0.1 * score["params"])


def test_cli_all_models_scores_rlfn_as_baseline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require(ASSETS / "weights")
    # Two zoo models keep this quick (the counts of all of them are checked above); the CLI reads the list at call time.
    import effsr.models

    monkeypatch.setattr(effsr.models, "list_models", lambda: ["rlfn", "span"])
    out = tmp_path / "all.json"
    result = CliRunner().invoke(
        app, ["profile", "--all-models", "--lr-size", "32x32", "--runs", "1", "--warmup", "0", "--json", str(out),
              "--ntire", "2024"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert [r["model"] for r in rows] == ["rlfn", "span"]
    for r in rows:
        _check_payload(r, r["model"], [32, 32], 1)
    assert {r["ntire_score"]["year"] for r in rows} == {2024}
    by_name = {r["model"]: r["ntire_score"] for r in rows}
    assert by_name["rlfn"]["final"] == pytest.approx(math.exp(2), rel=1e-12)
    span, rlfn = rows[1], rows[0]
    # SPAN's FLOPs and params terms against RLFN's, from the counts in the same JSON.
    assert by_name["span"]["flops"] == pytest.approx(math.exp(2 * span["macs_fvcore"] / rlfn["macs_fvcore"]))
    assert by_name["span"]["params"] == pytest.approx(math.exp(2 * span["params"] / rlfn["params"]))
    assert "score" in result.output


def test_cli_all_models_default_year_measures_a_missing_baseline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) \
        -> None:
    """With no --ntire the latest rules (2026, SPAN) apply; a baseline outside the profiled list is measured anyway."""
    require(ASSETS / "weights")
    import effsr.models

    monkeypatch.setattr(effsr.models, "list_models", lambda: ["rlfn", "pds"])
    out = tmp_path / "all.json"
    result = CliRunner().invoke(
        app, ["profile", "--all-models", "--lr-size", "32x32", "--runs", "1", "--warmup", "0", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert [r["model"] for r in rows] == ["rlfn", "pds"]
    span = _reference()["span"]
    for r in rows:
        s = r["ntire_score"]
        assert (s["year"], s["baseline"], s["baseline_params"]) == (2026, "span", span["params"])
        assert s["weights"] == {"runtime": 0.8, "flops": 0.1, "params": 0.1}
        assert s["organisers_gpu"] == "NVIDIA RTX A6000"
        assert s["flops"] == pytest.approx(math.exp(2 * r["macs_fvcore"] / s["baseline_macs_fvcore"]))
    assert "NTIRE 2026 score vs SPAN" in " ".join(result.output.split())


@pytest.mark.parametrize(("value", "expected"), [
    ("2023", "--ntire takes a challenge year (2024, 2025, 2026), got '2023'"),
    (".", "--harness-dir"),  # the old meaning of --ntire: a folder, pointed at its new flag
])
def test_cli_ntire_year_errors(value: str, expected: str) -> None:
    result = CliRunner().invoke(app, ["profile", "--model", "span", "--ntire", value])
    assert result.exit_code != 0
    assert expected in " ".join(result.output.split())
