"""Distillation from SAFMN-L as the LSANet and IFADNet factsheets say, with a stand-in teacher given through --set.

The x4 SAFMN-L weights are not available here, so the runs pass a tiny randomly initialised ``safmn_l``
(``teacher_weights: FILE``): the same code path as the real file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import effsr
from effsr.cli import app
from effsr.recipes import load_packaged_recipe
from effsr.train.preflight import plan_run


@pytest.mark.parametrize("name", ["lsanet", "ifadnet"])
def test_both_stages_distil_from_the_given_teacher(
    name: str, stand_in_teacher: Path, tiny_run: list[str], tmp_path: Path
) -> None:
    run = tmp_path / name
    result = CliRunner().invoke(app, ["train", "--recipe", name, *tiny_run, f"--set=teacher_weights={stand_in_teacher}",
                                      "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert f"teacher: safmn_l from {stand_in_teacher}" in result.stderr
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    distill = {r["stage"]: r["train/distill"] for r in rows if "train/distill" in r}
    assert set(distill) == {0, 1} and all(v > 0 for v in distill.values())  # both stages, as the recipes say
    model = effsr.load(str(run / "final.safetensors"))
    assert type(model).__name__.lower() == name and model.deploy  # trained multi-branch, shipped merged
    with torch.no_grad():
        assert model(torch.rand(1, 3, 16, 16)).shape == (1, 3, 64, 64)


def test_the_published_file_is_read_as_its_record_says(data_dir: Path, tmp_path: Path) -> None:
    """A file under the published name, given as teacher_weights, is read from its record's entry (``params``) into
    the record's architecture (128 channels, 16 blocks), not guessed."""
    torch.manual_seed(0)
    params = effsr.build_model("safmn_l").state_dict()
    other = {k: torch.zeros_like(v) for k, v in params.items()}
    path = tmp_path / "SAFMN_L_DF2K_x4.pth"
    torch.save({"params": params, "params_ema": other}, path)
    recipe = load_packaged_recipe("lsanet", [f"teacher_weights={path}", f"stages.*.train_data=[{{hr: {data_dir}}}]"])
    plan = plan_run(recipe, tmp_path / "run")
    assert plan.teacher is not None and plan.teacher_weights == path
    assert not plan.teacher.training and not any(p.requires_grad for p in plan.teacher.parameters())
    got = plan.teacher.state_dict()
    assert got.keys() == params.keys() and all(torch.equal(got[k], params[k]) for k in params)
