"""effsr.ntire: each year's NTIRE ESR rules (baseline, weights, PSNR gate, GPU) and its score formula.

Golden numbers: the organisers' READMEs (the baseline example scores 7.3891 every year), hand-computed cases, the
published 2026 ranking (``shared/official/README.md``: SPANV2 3.87, PDS 5.84, PKDSR 5.99, DISP 6.07, DSCF_Fused 7.20,
SPANV2 4.37 with its true FLOPs) from the harness figures in ``Amazingren/NTIRE2026_ESR`` @ 4592ce6d, ``results.json``,
and the baselines' complexity in ``shared/reference/complexity*.json``.
"""

from __future__ import annotations

import json
import math

import pytest

import effsr
from effsr.ntire import LATEST_YEAR, RULES, gate_split, rules

from .conftest import ASSETS, require

E2 = math.exp(2)

# Amazingren/NTIRE2026_ESR @ 4592ce6d, results.json: valid_ave_runtime, test_ave_runtime (ms), flops (G),
# num_parameters (M), valid_ave_psnr, test_ave_psnr (dB); the ranking's runtime is the mean of the two runtimes.
RESULTS_2026 = {
    "span": (8.00402544260025, 7.468770685791969, 9.833807872, 0.150688, 26.94038757172958, 27.012206466782786),
    "pds": (6.958887830972672, 6.4418129479885105, 9.2536832, 0.141748, 26.896448047711953, 26.993599827477215),
    "pkdsr": (7.038300794363022, 6.558669911623001, 9.396289536, 0.143928, 26.908662274411835, 26.998381471908147),
    "disp": (6.730187654495239, 6.2941526246070865, 10.693378048, 0.163792, 26.90170906649294, 27.015727144768817),
    "dscf_fused": (8.401119863986969, 7.36052017390728, 8.219787264, 0.125992, 26.921331215701212,
                   26.985641017528813),
    "spanv2": (5.687406876087189, 4.795523520112038, 1.591738368, 0.139104, 26.91872762709868, 27.003516458290086),
}
# shared/official/README.md, "2026 ranking by the published score formula".
PUBLISHED_2026 = {"span": 7.39, "spanv2": 3.87, "pds": 5.84, "pkdsr": 5.99, "disp": 6.07, "dscf_fused": 7.20}


def _score_2026(key: str, flops_g: float | None = None):
    valid_rt, test_rt, flops, params, _, _ = RESULTS_2026[key]
    b_valid, b_test, b_flops, b_params, _, _ = RESULTS_2026["span"]
    flops = flops if flops_g is None else flops_g
    return rules(2026).score((valid_rt + test_rt) / 2, flops, params, baseline_runtime_ms=(b_valid + b_test) / 2,
                             baseline_macs=b_flops, baseline_params=b_params)


def test_each_year_names_its_baseline_weights_gate_and_gpu() -> None:
    assert sorted(RULES) == [2024, 2025, 2026] and LATEST_YEAR == 2026
    expected = {
        2024: ("rlfn", (0.7, 0.15, 0.15), "NVIDIA GeForce RTX 3090"),
        2025: ("efdn", (0.7, 0.15, 0.15), "NVIDIA RTX A6000"),
        2026: ("span", (0.8, 0.1, 0.1), "NVIDIA RTX A6000"),
    }
    for year, (baseline, weights, gpu) in expected.items():
        r = rules(year)
        assert r.year == year and r.baseline.model == baseline and r.gpu == gpu
        assert (r.weight_runtime, r.weight_flops, r.weight_params) == weights
        assert (r.psnr_gate_valid_db, r.psnr_gate_test_db) == (26.90, 26.99)
        assert r.gate_datasets == ("DIV2K_LSDIR_valid", "DIV2K_LSDIR_test")
        assert baseline in effsr.list_models() and effsr.get_spec(baseline).default_weights is not None
        assert f"NTIRE{year}_ESR" in r.source


def test_published_baseline_figures_match_the_zoo_models() -> None:
    """The READMEs' params (M, 3 decimals) and FLOPs (G, 2 decimals) equal the official code's counts."""
    ref = json.loads(require(ASSETS / "reference" / "complexity.json").read_text())
    ref.update(json.loads(require(ASSETS / "reference" / "complexity_ntire2025_2026.json").read_text()))
    for r in RULES.values():
        counts = ref[r.baseline.model]
        assert round(counts["params"] / 1e6, 3) == r.baseline.params_m, r.year
        assert round(counts["macs_fvcore"] / 1e9, 2) == r.baseline.flops_g, r.year


@pytest.mark.parametrize("year", [2024, 2025, 2026])
def test_the_baseline_scores_e_squared(year: int) -> None:
    """Each README's example: the baseline against its own figures scores 7.3891 on every term."""
    b = rules(year).baseline
    s = rules(year).score(b.runtime_ms, b.flops_g, b.params_m, baseline_runtime_ms=b.runtime_ms,
                          baseline_macs=b.flops_g, baseline_params=b.params_m)
    for v in (s.score_runtime, s.score_flops, s.score_params, s.score_final):
        assert round(v, 4) == 7.3891
        assert v == pytest.approx(E2, rel=1e-12)


@pytest.mark.parametrize(("year", "expected"), [
    # Half the runtime, the same FLOPs, twice the parameters: exp(1), exp(2), exp(4) = 2.718281828, 7.389056099,
    # 54.59815003. 2024 / 2025: 0.7 * 2.718281828 + 0.15 * 7.389056099 + 0.15 * 54.59815003 = 11.2008782;
    # 2026: 0.8 * 2.718281828 + 0.1 * 7.389056099 + 0.1 * 54.59815003 = 8.37334608.
    (2024, 11.2008782), (2025, 11.2008782), (2026, 8.37334608),
])
def test_hand_computed_score(year: int, expected: float) -> None:
    s = rules(year).score(5.0, 8.0, 0.4, baseline_runtime_ms=10.0, baseline_macs=8.0, baseline_params=0.2)
    assert (s.score_runtime, s.score_flops, s.score_params) == pytest.approx((math.e, E2, math.exp(4)), rel=1e-12)
    assert s.score_final == pytest.approx(expected, abs=1e-7)


def test_published_2026_ranking_from_the_harness_figures() -> None:
    """results.json's numbers through the 2026 formula give the published scores, to two decimals."""
    got = {k: round(_score_2026(k).score_final, 2) for k in RESULTS_2026}
    assert got == PUBLISHED_2026
    assert sorted(got, key=got.get)[:3] == ["spanv2", "pds", "pkdsr"]
    # SPANV2 with its true FLOPs (9.107931136 G, complexity_ntire2025_2026.json): 4.37,
    # still first.
    ref = json.loads(require(ASSETS / "reference" / "complexity_ntire2025_2026.json").read_text())
    true_flops = ref["spanv2"]["macs_fvcore"] / 1e9
    assert round(_score_2026("spanv2", true_flops).score_final, 2) == 4.37 < got["pds"]


def test_psnr_gate_compares_rounded_values() -> None:
    """PDS (valid 26.8964) and DSCF_Fused (test 26.9856) were ranked in 2026: the gate reads two decimals."""
    r = rules(2026)
    for key in ("pds", "dscf_fused", "spanv2"):
        *_, valid, test = RESULTS_2026[key]
        assert r.passes_psnr_gate(valid, test), key
    *_, valid, test = RESULTS_2026["pds"]
    assert not r.passes_psnr_gate(valid, test, rounded=False)
    assert not r.passes_psnr_gate(26.894, 27.10) and not r.passes_psnr_gate(26.95, 26.984)
    assert all(rules(y).passes_psnr_gate(26.90, 26.99) for y in RULES)


def test_rules_lookup() -> None:
    assert rules() is RULES[2026] and rules("2025") is RULES[2025] and rules(2024) is RULES[2024]
    for bad in (2023, "latest", "../data"):
        with pytest.raises(ValueError, match="known years: 2024, 2025, 2026"):
            rules(bad)
    with pytest.raises(ValueError, match="must be positive"):
        rules().score(1.0, 1.0, 1.0, baseline_runtime_ms=0.0, baseline_macs=1.0, baseline_params=1.0)
    assert rules(2026).formula() == (
        "0.8 exp(2 rt/rt_SPAN) + 0.1 exp(2 FLOPs/FLOPs_SPAN) + 0.1 exp(2 params/params_SPAN)"
    )


def test_gate_split() -> None:
    assert gate_split("DIV2K_LSDIR_valid") == "valid" and gate_split("div2k-lsdir-test") == "test"
    assert gate_split("DIV2K_LSDIR_val") == "valid"
    assert gate_split("set5") is None and gate_split("DIV2K_valid") is None and gate_split("LSDIR") is None


def test_gate_per_split() -> None:
    r = rules(2025)
    assert (r.gate_db("valid"), r.gate_db("test")) == (26.90, 26.99)
    assert r.meets_gate("valid", 26.896) and not r.meets_gate("valid", 26.896, rounded=False)
    assert not r.meets_gate("test", 26.984)
    with pytest.raises(ValueError, match="'valid' or 'test'"):
        r.gate_db("train")
