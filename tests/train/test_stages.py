"""A run whose stages read their own data and validation sets, logged as plain lines when stdout is not a terminal.

Tiny RLFN, CPU, a few iterations per stage; ``effsr train`` runs in a subprocess with stdout captured (a pipe, as
under nohup, SLURM or CI).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

TINY_RLFN = {"num_features": 8, "mid_channels": 8, "esa_channels": 4, "num_blocks": 1}
NUM = r"[-+0-9.e]+"
# stage, iteration, every loss term, rate, speed and ETA, on one line (loop._Console).
LOG_LINE = re.compile(
    rf"^stage (\d)/2 (\w+)  iter (\d+)/(\d+)  loss {NUM}  pixel {NUM}  lr {NUM}  [0-9.]+ it/s  "
    r"ETA (\d+d )?\d+:\d\d:\d\d$"
)
VAL_LINE = re.compile(rf"^stage (\d)/2 (\w+)  iter (\d+)/(\d+)  val (\S+)  PSNR-Y {NUM} dB  PSNR-RGB {NUM} dB$")


def _challenge_val_set(data_dir: Path, root: Path) -> Path:
    """Three Set5 images in the organisers' DIV2K_LSDIR_valid layout (see test_layouts.py)."""
    hr_dir, lr_dir = root / "DIV2K_LSDIR_valid_HR", root / "DIV2K_LSDIR_valid_LR"
    hr_dir.mkdir(parents=True)
    lr_dir.mkdir(parents=True)
    for i, name in enumerate(("baby", "bird", "woman")):
        shutil.copyfile(data_dir / "Set5" / "HR" / f"{name}.png", hr_dir / f"080{i + 1}.png")
        shutil.copyfile(data_dir / "Set5" / "LR_bicubic" / "X4" / f"{name}.png", lr_dir / f"080{i + 1}x4.png")
    return hr_dir


def test_per_stage_data_and_plain_log_lines(data_dir: Path, tmp_path: Path) -> None:
    challenge = _challenge_val_set(data_dir, tmp_path / "challenge")
    recipe = {
        "model": "rlfn", "model_args": TINY_RLFN, "device": "cpu", "threads": 1, "workers": 0, "cache_images": 8,
        "log_every": 2, "val_every": 2, "ckpt_every": 100,
        "stages": [
            {"name": "a", "iters": 4, "patch_size": 64, "batch_size": 2, "lr": 1e-3,
             "train_data": [{"name": "Set5", "hr": str(data_dir / "Set5" / "HR"),
                             "lr": str(data_dir / "Set5" / "LR_bicubic" / "X4")}],
             "val_data": str(challenge)},
            {"name": "b", "iters": 3, "patch_size": 64, "batch_size": 2, "lr": 1e-4,
             "train_data": [{"name": "Set14", "hr": str(data_dir / "Set14" / "HR"), "limit": 3}],
             "val_data": str(data_dir / "Set5")},
        ],
    }
    cfg = tmp_path / "stages.yaml"
    cfg.write_text(yaml.safe_dump(recipe))
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "effsr.cli.train", str(cfg), "--out", str(run)],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()

    # Each stage reads its own folders, and says which.
    assert "stage 1/2 a  data Set5 5 images (LR from folders), HR patch 64, batch 2, l1 loss, lr 0.001, " \
           "4 iterations" in lines
    assert "stage 2/2 b  data Set14 3 images (LR made on the fly), HR patch 64, batch 2, l1 loss, lr 0.0001, " \
           "3 iterations" in lines
    # One plain line every log_every iterations (and at the stage's end), one at each validation.
    logs = [m.groups()[:4] for m in map(LOG_LINE.match, lines) if m]
    assert logs == [("1", "a", "2", "4"), ("1", "a", "4", "4"), ("2", "b", "2", "3"), ("2", "b", "3", "3")]
    vals = [m.groups() for m in map(VAL_LINE.match, lines) if m]
    assert vals == [("1", "a", "2", "4", "DIV2K_LSDIR_valid"), ("1", "a", "4", "4", "DIV2K_LSDIR_valid"),
                    ("2", "b", "2", "3", "Set5"), ("2", "b", "3", "3", "Set5")]
    assert lines[-1].startswith(f"wrote {run / 'final.safetensors'}")
    assert not any("\x1b" in line for line in lines), "no terminal control codes in a pipe"
    # The validation sets really were each stage's own.
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    images = [(r["stage"], r["iter"], r["val/images"]) for r in rows if "val/images" in r]
    assert images == [(0, 2, 3.0), (0, 4, 3.0), (1, 2, 5.0), (1, 3, 5.0)]
