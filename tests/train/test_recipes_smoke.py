"""A tiny version of benchmarks/recipes_smoke.py: every stage of MDRN-S (per-stage data) and LSANet (the teacher) runs,
the table has one Set5 row per stage plus bicubic, and the exit code says whether each final model beats bicubic
(PSNR-Y and PSNR-RGB)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from effsr.recipes import load_packaged_recipe

from ..conftest import load_benchmark


@pytest.fixture(scope="module")
def smoke():  # type: ignore[no-untyped-def]
    return load_benchmark("recipes_smoke")


def _small(smoke, name: str, data_dir: Path):  # type: ignore[no-untyped-def]
    over = smoke.smoke_overrides(name, data=data_dir, iters=700, min_iters=100, patch_scale=0.25, max_patch=96,
                                 batch_scale=0.125, threads=1)
    return load_packaged_recipe(name, over)


def test_the_overrides_only_scale_the_recipe(smoke, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    full, small = load_packaged_recipe("agdn"), _small(smoke, "agdn", data_dir)
    assert [s.iters for s in small.stages] == [636, 100]  # 700 split 1000k : 100k, at least 100
    assert [s.milestones for s in small.stages] == [[64, 318, 509, 572, 604], [50]]
    assert [s.patch_size for s in small.stages] == [64, 96]
    assert [s.batch_size for s in small.stages] == [8, 4]
    assert [s.ema_decay for s in small.stages] == [0.9, 0.9]
    for i, (a, b) in enumerate(zip(full.stages, small.stages, strict=True)):  # what a stage computes is the recipe's
        assert (a.loss, a.lr, a.gamma, a.optimizer, a.distill_weight) == (b.loss, b.lr, b.gamma, b.optimizer,
                                                                          b.distill_weight)
        assert [s.name for s in full.stage_train_data(i)] == [s.name.removesuffix("-as-B100")
                                                               for s in small.stage_train_data(i)]
        assert all(src.hr == str(data_dir / "B100" / "HR") for src in small.stage_train_data(i))
    assert small.val_data == str(data_dir / "Set5")
    msn = _small(smoke, "msn", data_dir)
    assert [(s.patch_size, s.batch_size) for s in msn.stages] == [(116, 5), (116, 5)]  # MSN's minimum: 29 LR
    lsanet = _small(smoke, "lsanet", data_dir)
    assert (lsanet.teacher, lsanet.teacher_args) == ("mdrn", {"scale": 4})  # the stand-in for SAFMN-L


def test_a_tiny_run_of_every_stage(smoke, reference_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    md, js = tmp_path / "smoke.md", tmp_path / "smoke.json"
    code = smoke.main(["--recipes", "mdrn", "lsanet", "--iters", "4", "--min-iters", "2", "--patch-scale", "0",
                       "--max-patch", "0", "--batch-scale", "0.03", "--markdown", str(md), "--json", str(js)])
    payload = json.loads(js.read_text())
    rows = payload["rows"]
    assert [(r["recipe"], r["stage"]) for r in rows] == [("mdrn", 1), ("mdrn", 2), ("mdrn", 3), ("lsanet", 1),
                                                         ("lsanet", 2)]
    assert all(r["iters"] == 2 and r["batch_size"] == 2 and math.isfinite(r["psnr_rgb"]) for r in rows)
    assert [r["distill"] for r in rows] == [False, False, False, True, True]
    bicubic = smoke.bicubic_set5(reference_dir / "metrics" / "Set5.json")
    assert payload["bicubic"] == bicubic and 28.4 < bicubic["psnr_y"] < 28.5  # docs/training.md: 28.431 dB
    finals = [r for r in rows if r["stage"] == max(q["stage"] for q in rows if q["recipe"] == r["recipe"])]
    beats = all(r["psnr_y"] > bicubic["psnr_y"] and r["psnr_rgb"] > bicubic["psnr_rgb"] for r in finals)
    assert code == (0 if beats else 1)
    table = md.read_text()
    assert table.count("\n| mdrn | mdrn_s |") == 3 and table.count("\n| lsanet | lsanet |") == 2
    assert "| bicubic |" in table and "Machine:" in table and "thread(s)" in table
