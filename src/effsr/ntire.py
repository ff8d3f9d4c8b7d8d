"""The NTIRE Efficient Super-Resolution challenge's rules, year by year: baseline, score, PSNR gate, organisers' GPU.

Every figure comes from the organisers' repositories (read with ``git show <commit>:README.md``):

* 2024: ``Amazingren/NTIRE2024_ESR`` @ 6404fa48dde4a4adbf241a51debdc661aef20449, ``README.md``, "How the Ranking
  Strategy Works?" and the RLFN reference results (RTX 3090).
* 2025: ``Amazingren/NTIRE2025_ESR`` @ b69fb668c0362deb696eecbfdebfaa5c2fcdfcb4, ``README.md``, same sections with
  EFDN as the baseline (RTX A6000).
* 2026: ``Amazingren/NTIRE2026_ESR`` @ 4592ce6db68b395699f13e7e2a4e3baf317ef1c6, ``README.md``, "Ranking Strategy"
  and the SPAN baseline table (RTX A6000); the published ranking (``results.json``) is this formula applied to the
  harness's unrounded numbers (tests/test_ntire.py reproduces it).

The score of one method, lower is better (every year's README, steps 3 and 4)::

    Score_Runtime = exp(2 * Runtime / Runtime_baseline)
    Score_FLOPs   = exp(2 * FLOPs / FLOPs_baseline)
    Score_Params  = exp(2 * Params / Params_baseline)
    Score_Final   = w_runtime * Score_Runtime + w_flops * Score_FLOPs + w_params * Score_Params

with weights 0.7 / 0.15 / 0.15 in 2024 and 2025 and 0.8 / 0.1 / 0.1 in 2026; the baseline scores exp(2) = 7.3891 on
every term. "FLOPs" is fvcore's ``FlopCountAnalysis(model, torch.rand(1, 3, 256, 256)).total()``, which counts a
multiply-add as one (``effsr.profile``'s ``macs_fvcore``); "Runtime" is the harness's mean per-image time, averaged
over the DIV2K_LSDIR valid and test sets and five runs on the organisers' GPU. Methods below the PSNR gate (26.90 dB
on DIV2K_LSDIR valid, 26.99 dB on DIV2K_LSDIR test, the same all three years) are not ranked; the 2026 ranking lists
PDS (valid 26.8964 dB) and DSCF_Fused (test 26.9856 dB), so the organisers compared PSNR rounded to two decimals
(``shared/official/README.md``), which :meth:`ChallengeRules.passes_psnr_gate` does by default.

This module knows the rules only; it measures nothing (``effsr.profile`` does) and imports no model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "LATEST_YEAR",
    "RULES",
    "BaselineFigures",
    "ChallengeRules",
    "NtireScore",
    "gate_split",
    "rules",
]


@dataclass(frozen=True)
class NtireScore:
    """The challenge score of one method against the baseline (lower is better)."""

    score_runtime: float
    score_flops: float
    score_params: float
    score_final: float


@dataclass(frozen=True)
class BaselineFigures:
    """The baseline's published reference results: effsr model name, runtime on the organisers' GPU, FLOPs at LR
    256x256 (fvcore, G), parameters (M) and DIV2K_LSDIR valid / test PSNR (dB)."""

    model: str
    runtime_ms: float
    flops_g: float
    params_m: float
    valid_psnr_db: float
    test_psnr_db: float


@dataclass(frozen=True)
class ChallengeRules:
    """One year's NTIRE ESR rules."""

    year: int
    baseline: BaselineFigures
    weight_runtime: float
    weight_flops: float
    weight_params: float
    gpu: str
    source: str
    exponent: float = 2.0
    psnr_gate_valid_db: float = 26.90
    psnr_gate_test_db: float = 26.99
    gate_datasets: tuple[str, str] = ("DIV2K_LSDIR_valid", "DIV2K_LSDIR_test")

    def score(
        self,
        runtime_ms: float,
        macs: float,
        params: float,
        *,
        baseline_runtime_ms: float,
        baseline_macs: float,
        baseline_params: float,
    ) -> NtireScore:
        """This year's score of a method against baseline figures in the same units (lower is better).

        The runtimes must come from the same machine and protocol: the published baseline runtime belongs to the
        organisers' GPU (:attr:`gpu`), so scoring a local measurement needs the baseline measured locally too.
        """
        if min(baseline_runtime_ms, baseline_macs, baseline_params) <= 0:
            raise ValueError("baseline runtime, MACs and params must be positive")
        e = self.exponent
        s_rt = math.exp(e * runtime_ms / baseline_runtime_ms)
        s_fl = math.exp(e * macs / baseline_macs)
        s_pa = math.exp(e * params / baseline_params)
        final = self.weight_runtime * s_rt + self.weight_flops * s_fl + self.weight_params * s_pa
        return NtireScore(s_rt, s_fl, s_pa, final)

    def gate_db(self, split: str) -> float:
        """The PSNR gate of the ``"valid"`` or ``"test"`` set, in dB."""
        gates = {"valid": self.psnr_gate_valid_db, "test": self.psnr_gate_test_db}
        if split not in gates:
            raise ValueError(f"split must be 'valid' or 'test', got {split!r}")
        return gates[split]

    def meets_gate(self, split: str, psnr_db: float, *, rounded: bool = True) -> bool:
        """Whether a PSNR on one set reaches its gate (by default after rounding to 0.01 dB, as the published
        rankings imply; ``rounded=False`` compares the raw value)."""
        return (round(psnr_db, 2) if rounded else psnr_db) >= self.gate_db(split)

    def passes_psnr_gate(self, valid_psnr_db: float, test_psnr_db: float, *, rounded: bool = True) -> bool:
        """Whether a method's DIV2K_LSDIR valid and test PSNR both reach the gate (see :meth:`meets_gate`)."""
        return self.meets_gate("valid", valid_psnr_db, rounded=rounded) and self.meets_gate(
            "test", test_psnr_db, rounded=rounded)

    def formula(self) -> str:
        """The final score as one line, with this year's weights and baseline name."""
        b = self.baseline.model.upper()
        return (f"{self.weight_runtime:g} exp(2 rt/rt_{b}) + {self.weight_flops:g} exp(2 FLOPs/FLOPs_{b}) + "
                f"{self.weight_params:g} exp(2 params/params_{b})")


_SOURCE_2024 = "Amazingren/NTIRE2024_ESR @ 6404fa48, README.md (How the Ranking Strategy Works?)"
_SOURCE_2025 = "Amazingren/NTIRE2025_ESR @ b69fb668, README.md (How the Ranking Strategy Works?)"
_SOURCE_2026 = "Amazingren/NTIRE2026_ESR @ 4592ce6d, README.md (Ranking Strategy)"

RULES: dict[int, ChallengeRules] = {
    2024: ChallengeRules(
        year=2024,
        # README: "Runtime: 13.54 ms (Average runtime of 16.18 ms on DIV2K_LSDIR_valid data and 10.89 ms on
        # DIV2K_LSDIR_test data)", 0.317 M parameters, 19.67 G FLOPs, PSNR 26.96 / 27.07 dB.
        baseline=BaselineFigures("rlfn", 13.54, 19.67, 0.317, 26.96, 27.07),
        weight_runtime=0.7,
        weight_flops=0.15,
        weight_params=0.15,
        gpu="NVIDIA GeForce RTX 3090",
        source=_SOURCE_2024,
    ),
    2025: ChallengeRules(
        year=2025,
        # README: "Runtime: 16.69 ms (Average runtime of 18.77 ms on DIV2K_LSDIR_valid data and 14.61 ms on
        # DIV2K_LSDIR_test data)", 0.276 M parameters, 16.70 G FLOPs, PSNR 26.93 / 27.01 dB.
        baseline=BaselineFigures("efdn", 16.69, 16.70, 0.276, 26.93, 27.01),
        weight_runtime=0.7,
        weight_flops=0.15,
        weight_params=0.15,
        gpu="NVIDIA RTX A6000",
        source=_SOURCE_2025,
    ),
    2026: ChallengeRules(
        year=2026,
        # README "SPAN Baseline Reference Results": runtime 8.00 (valid) / 7.47 (test), average 7.74 ms; 0.151 M
        # parameters; 9.83 G FLOPs; PSNR 26.94 / 27.01 dB.
        baseline=BaselineFigures("span", 7.74, 9.83, 0.151, 26.94, 27.01),
        weight_runtime=0.8,
        weight_flops=0.1,
        weight_params=0.1,
        gpu="NVIDIA RTX A6000",
        source=_SOURCE_2026,
    ),
}

LATEST_YEAR = max(RULES)


def rules(year: int | str | None = None) -> ChallengeRules:
    """The rules of ``year`` (default: the latest). An unknown year raises ``ValueError`` naming the known ones."""
    if year is None:
        return RULES[LATEST_YEAR]
    try:
        key = int(str(year).strip())
    except ValueError:
        key = -1
    if key not in RULES:
        raise ValueError(f"no NTIRE ESR rules for {year!r} (known years: {', '.join(map(str, RULES))})")
    return RULES[key]


def gate_split(dataset_name: str) -> str | None:
    """``"valid"`` or ``"test"`` for a dataset named like the challenge's DIV2K_LSDIR sets, else None."""
    key = dataset_name.lower().replace("-", "_")
    if "lsdir" not in key:
        return None
    if "valid" in key or key.endswith("_val"):
        return "valid"
    if "test" in key:
        return "test"
    return None
