"""Whole runs (tiny RLFN, Set5 patches, CPU): exact resume after SIGKILL, DDP equivalence, the NaN guard, final file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import effsr
from effsr.train import loop as loop_mod
from effsr.train.checkpoint import latest_checkpoint, load_checkpoint
from effsr.train.loop import NonFiniteLossError, train
from effsr.train.recipe import parse_recipe

TINY_RLFN = {"num_features": 8, "mid_channels": 8, "esa_channels": 4, "num_blocks": 1}
TRAIN_CMD = [sys.executable, "-m", "effsr.cli.train"]


def _recipe(data_dir: Path, **over: object) -> dict:
    base: dict = {
        "name": "tiny",
        "model": "rlfn",
        "model_args": TINY_RLFN,
        "seed": 3,
        "deterministic": True,
        "device": "cpu",
        "threads": 1,
        "workers": 0,
        "cache_images": 8,
        "train_data": [{"hr": str(data_dir / "Set5" / "HR"), "lr": str(data_dir / "Set5" / "LR_bicubic" / "X4")}],
        "val_data": None,
        "ckpt_every": 2,
        "log_every": 1,
        "stages": [
            {"name": "a", "iters": 14, "patch_size": 96, "batch_size": 3, "lr": 2e-3, "milestones": [8]},
            {"name": "b", "iters": 8, "patch_size": 128, "batch_size": 2, "lr": 5e-4, "loss": "charbonnier",
             "schedule": "cosine", "grad_clip": 0.5},
        ],
    }
    base.update(over)
    return base


def _write(tmp_path: Path, data: dict, name: str = "tiny.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return p


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _losses(run: Path) -> list[tuple[int, int, float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["stage"], r["iter"], r["train/loss"]) for r in rows if "train/loss" in r]


def _kill_after(cmd: list[str], run: Path, lines: int) -> None:
    """Start a run and SIGKILL it once metrics.jsonl has ``lines`` lines (i.e. at some iteration past that)."""
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= lines:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (run / "final.safetensors").exists()


def test_resume_after_sigkill_is_bit_identical(tmp_path: Path, data_dir: Path) -> None:
    cfg = _write(tmp_path, _recipe(data_dir))
    ref, run = tmp_path / "ref", tmp_path / "killed"
    subprocess.run([*TRAIN_CMD, str(cfg), "--out", str(ref)], check=True, env=_env(), capture_output=True)

    # Killed twice at arbitrary points (stage 1, then stage 2 after a resume), resumed to the end.
    _kill_after([*TRAIN_CMD, str(cfg), "--out", str(run)], run, lines=5)
    _kill_after([*TRAIN_CMD, str(cfg), "--out", str(run), "--resume"], run, lines=19)
    done = subprocess.run([*TRAIN_CMD, str(cfg), "--out", str(run), "--resume"], env=_env(), capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr

    for name in ("final.safetensors", "stage1_a.safetensors", "stage2_b.safetensors"):
        a, b = load_file(ref / name), load_file(run / name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    # The losses logged after each resume repeat the uninterrupted run's exactly.
    ref_losses = dict(((s, i), v) for s, i, v in _losses(ref))
    assert all(ref_losses[(s, i)] == v for s, i, v in _losses(run))

    # The final file is the deploy-form EMA and rebuilds its model alone.
    model = effsr.load(str(ref / "final.safetensors"))
    assert type(model).__name__ == "RLFN" and model.scale == 4
    sd = load_file(ref / "final.safetensors")
    assert all(torch.equal(v, sd[k]) for k, v in model.state_dict().items())


def test_ddp_two_ranks_match_one_process(tmp_path: Path, data_dir: Path) -> None:
    """torchrun --nproc-per-node 2 (gloo), batch 2 per rank == one process with batch 4, over 20 iterations."""
    stage = {"name": "a", "iters": 20, "patch_size": 64, "batch_size": 2, "lr": 1e-3, "milestones": [10]}
    cfg = _write(tmp_path, _recipe(data_dir, stages=[stage], ckpt_every=10, val_every=10,
                                   val_data=str(data_dir / "Set5")))
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run([*TRAIN_CMD, str(cfg), "--out", str(one), "--set", "stages.0.batch_size=4"],
                   check=True, env=_env(), capture_output=True)
    res = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "effsr.cli.train", str(cfg), "--out", str(two)],
        env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = _losses(one), _losses(two)
    assert len(a) == len(b) == 20
    for (_, i, x), (_, j, y) in zip(a, b, strict=True):
        assert i == j
        assert abs(x - y) <= 1e-5 * abs(x), (i, x, y)
    # Validation: Set5 split across the two ranks (3 + 2 images), metric sums all-reduced.
    val = [[json.loads(x) for x in (r / "metrics.jsonl").read_text().splitlines() if "val/psnr_y" in x]
           for r in (one, two)]
    assert [v["iter"] for v in val[0]] == [v["iter"] for v in val[1]] == [10, 20]
    for v1, v2 in zip(*val, strict=True):
        assert v2["val/images"] == 5.0
        assert abs(v1["val/psnr_y"] - v2["val/psnr_y"]) < 1e-3
    state = load_checkpoint(latest_checkpoint(two)).state  # type: ignore[arg-type]
    assert state["world_size"] == 2 and len(state["rng"]) == 2


def test_nan_guard_stops_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    real_call = loop_mod.SRTask.__call__

    def poisoned(self, batch):  # type: ignore[no-untyped-def]
        out = real_call(self, batch)
        calls["n"] += 1
        if calls["n"] == 5:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(loop_mod.SRTask, "__call__", poisoned)
    recipe = parse_recipe(_recipe(data_dir))
    run = tmp_path / "nan"
    with pytest.raises(NonFiniteLossError, match=r"iteration 5: .*loss=nan.*s00_it000000004"):
        train(recipe, run, progress=False)
    last = latest_checkpoint(run)
    assert last is not None and last.name == "s00_it000000004"
    ckpt = load_checkpoint(last)
    assert all(torch.isfinite(v).all() for v in ckpt.model.values())
    assert not (run / "final.safetensors").exists()
    # Starting over into a folder with checkpoints needs --resume.
    with pytest.raises(FileExistsError, match="--resume"):
        train(recipe, run, progress=False)
