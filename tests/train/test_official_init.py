"""``init: official`` for every seed recipe: fine-tuning starts from the published weights.

LSANet and IFADNet publish only the merged deploy form, so their runs train in that form and say so in one line;
a request the published weights cannot meet fails with one line naming what to set. A rate of 1e-12 keeps the
weights where they start, so the final file must equal the official weights: proof of where the run started.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import effsr
from effsr.cli import app

SEED_RECIPES = {"agdn": "agdn", "lsanet": "lsanet", "ifadnet": "ifadnet", "mdrn": "mdrn_s", "msn": "msn"}
# MSN's minimum LR input is 29x29 (specs/README.md §5); the others take 64
MIN_PATCH = {"msn": 128}
DEPLOY_NOTE = "are the merged deploy form, so every stage trains in that form (model_args.deploy: true)"


@pytest.mark.parametrize("name", sorted(SEED_RECIPES))
def test_init_official_starts_from_the_published_weights(
    name: str, stand_in_teacher: Path, tiny_run: list[str], tmp_path: Path
) -> None:
    run = tmp_path / name
    args = ["train", "--recipe", name, *tiny_run, "--set=stages.0.init=official", "--set=stages.*.lr=1e-12",
            f"--set=teacher_weights={stand_in_teacher}", f"--set=stages.*.patch_size={MIN_PATCH.get(name, 64)}",
            "--out", str(run)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (DEPLOY_NOTE in result.stderr) == (name in ("lsanet", "ifadnet"))
    assert result.stderr.count(DEPLOY_NOTE) <= 1
    official = effsr.load(SEED_RECIPES[name]).state_dict()
    final = load_file(str(run / "final.safetensors"))
    assert final.keys() == official.keys()
    for k, v in official.items():
        assert torch.allclose(final[k], v, atol=1e-6), k


def test_init_official_that_cannot_be_met_says_what_to_set(tiny_run: list[str], tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "--recipe", "msn", *tiny_run, "--set=stages.1.init=official",
                                      "--set=model_args.num_features=24", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: stages.1.init: official: no published 'msn' weights fit model_args {'num_features': 24}; "
        "set model_args: {num_features: 28}"]
    assert not (tmp_path / "run").exists()
