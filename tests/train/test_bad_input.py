"""Bad input to ``effsr train`` gets one clear line (exit code 2) and loses nothing.

A misspelt stage key, a stage whose dataset folder does not exist, a teacher without weights, and a resume with a
recipe that changed: each is refused before the run folder is touched or any image is read.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import effsr.weights
from effsr.cli import app

TINY_RLFN = {"num_features": 8, "mid_channels": 8, "esa_channels": 4, "num_blocks": 1}


def _recipe(data_dir: Path, **over: object) -> dict:
    set5 = {"name": "Set5", "hr": str(data_dir / "Set5" / "HR"), "lr": str(data_dir / "Set5" / "LR_bicubic" / "X4")}
    base: dict = {
        "model": "rlfn", "model_args": TINY_RLFN, "device": "cpu", "workers": 0, "cache_images": 8,
        "ckpt_every": 2, "train_data": [set5],
        "stages": [{"name": "a", "iters": 3, "patch_size": 64, "batch_size": 2, "lr": 1e-3},
                   {"name": "b", "iters": 2, "patch_size": 64, "batch_size": 2, "lr": 1e-4}],
    }
    base.update(over)
    return base


def _train(tmp_path: Path, recipe: dict, *args: str) -> tuple[int, str]:
    cfg = tmp_path / "r.yaml"
    cfg.write_text(yaml.safe_dump(recipe))
    result = CliRunner().invoke(app, ["train", str(cfg), *args])
    return result.exit_code, result.stderr


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and "Traceback" not in stderr
    return lines[0]


def test_a_misspelt_stage_key(data_dir: Path, tmp_path: Path) -> None:
    recipe = _recipe(data_dir)
    recipe["stages"][1]["bach_size"] = recipe["stages"][1].pop("batch_size")
    code, err = _train(tmp_path, recipe, "--out", str(tmp_path / "run"))
    line = _one_line(err)
    assert code == 2
    assert "unknown key 'stages.1.bach_size' (did you mean 'batch_size'" in line
    assert "missing key 'stages.1.batch_size'" in line
    assert not (tmp_path / "run").exists()


def test_a_stage_dataset_folder_that_does_not_exist(data_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "LSDIR" / "HR" / "train"
    recipe = _recipe(data_dir)
    recipe["stages"][1]["train_data"] = [{"name": "LSDIR", "hr": str(missing), "limit": 10000}]
    code, err = _train(tmp_path, recipe, "--out", str(tmp_path / "run"))
    assert code == 2
    assert f"error: stage 2/2 'b': train_data 'LSDIR' HR folder not found: {missing}" in _one_line(err)
    assert not (tmp_path / "run").exists(), "named before training starts: stage 1 never ran"


def test_a_teacher_without_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The SAFMN-L recipes with no teacher file: one line saying what to pass, before any data is looked at, and no
    network access (offline-safe: a download attempt would fail this test)."""

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("the teacher's weights must never be downloaded")

    monkeypatch.setattr(effsr.weights, "_download", no_download)
    monkeypatch.setenv("EFFSR_WEIGHTS_DIR", str(tmp_path / "mirror"))
    monkeypatch.setenv("EFFSR_DATA", str(tmp_path / "no-data-here"))  # the teacher is checked first
    for name in ("lsanet", "ifadnet"):
        result = CliRunner().invoke(app, ["train", "--recipe", name, "--out", str(tmp_path / name)])
        line = _one_line(result.stderr)
        assert result.exit_code == 2
        assert "teacher 'safmn_l' has no weights here: pass --set teacher_weights=FILE" in line
        assert "SAFMN_L_DF2K_x4.pth" in line and "huggingface.co/Meloo/SAFMN" in line
        assert not (tmp_path / name).exists()


def test_a_teacher_file_that_is_not_the_teacher(
    monkeypatch: pytest.MonkeyPatch, stand_in_teacher: Path, weights_dir: Path, tmp_path: Path
) -> None:
    # A file under the published name that is not the published file is refused, never used silently.
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "SAFMN_L_DF2K_x4.pth").write_bytes(stand_in_teacher.read_bytes())
    monkeypatch.setenv("EFFSR_WEIGHTS_DIR", str(mirror))
    result = CliRunner().invoke(app, ["train", "--recipe", "lsanet", "--out", str(tmp_path / "a")])
    assert result.exit_code == 2 and "sha256" in _one_line(result.stderr)
    # teacher_weights naming another architecture's file.
    result = CliRunner().invoke(app, ["train", "--recipe", "ifadnet", "--out", str(tmp_path / "b"),
                                      f"--set=teacher_weights={weights_dir / 'team00_rlfn.pth'}"])
    line = _one_line(result.stderr)
    assert result.exit_code == 2 and "teacher 'safmn_l' from" in line and "do not fit 'safmn_l'" in line
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_resume_with_a_recipe_that_changed(data_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    recipe = _recipe(data_dir)
    code, err = _train(tmp_path, recipe, "--out", str(run), "--max-iters", "2")
    assert code == 0, err
    before = {p.relative_to(run): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}
    recipe["stages"][0]["lr"] = 5e-4
    recipe["stages"][1]["loss"] = "mse"
    recipe["workers"] = 1  # how the run executes may change; what it computes may not
    code, err = _train(tmp_path, recipe, "--out", str(run), "--resume")
    line = _one_line(err)
    assert code == 2
    assert "--resume: the recipe differs from the one" in line
    assert "stages.0.lr: 0.001 -> 0.0005" in line and "stages.1.loss: 'l1' -> 'mse'" in line
    assert "workers" not in line and f"effsr train {run / 'recipe.yaml'} --out {run} --resume" in line
    after = {p.relative_to(run): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}
    assert after == before, "nothing in the run folder changed"
    # The unchanged recipe (only a run-only key differs) resumes.
    recipe["stages"][0]["lr"], recipe["stages"][1]["loss"] = 1e-3, "l1"
    code, err = _train(tmp_path, recipe, "--out", str(run), "--resume")
    assert code == 0, err
