"""benchmarks/gpu_check.py in its CPU dry run: every step runs (the organisers' protocol, effsr's paths in three
precisions, AMP training of the smoke recipe, the one-rank DDP run) and the JSON and table have their shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from effsr.deploy.precision import CPU_FLAGS_ENV

from .conftest import load_benchmark

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def gpu_check():  # type: ignore[no-untyped-def]
    return load_benchmark("gpu_check")


def test_dry_run_exercises_every_step(gpu_check, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
                                      weights_dir: Path, data_dir: Path) -> None:
    # bf16 on CPU needs AVX-512 BF16: claim it, so the dry run tests the bf16 code path on any host.
    monkeypatch.setenv(CPU_FLAGS_ENV, "avx2 avx512_bf16")
    js, md = tmp_path / "g.json", tmp_path / "g.md"
    assert gpu_check.main(["--dry-run", "--models", "rlfn", "--json", str(js), "--markdown", str(md)]) == 0
    report = json.loads(js.read_text())
    assert report["dry_run"] and report["device"] == "cpu" and report["images"] == {"set5": 2, "set14": 2}
    rows = {r["path"]: r for r in report["inference"]}
    assert list(rows) == ["organisers:fp32", "eager:fp32", "eager:fp16", "eager:bf16", "fast:fp32", "fast:fp16",
                          "fast:bf16"]
    assert all(r["error"] is None and r["ms_per_image"] > 0 for r in rows.values()), rows
    org = rows["organisers:fp32"]
    # The organisers' forward and effsr's float32 eager path compute the same thing: the same PSNR to the bit.
    assert rows["eager:fp32"]["psnr_rgb"] == org["psnr_rgb"] and rows["eager:fp32"]["psnr_y"] == org["psnr_y"]
    for path in ("fast:fp32", "eager:fp16", "fast:fp16", "eager:bf16", "fast:bf16"):
        for s in ("set5", "set14"):
            cost = org["psnr_rgb"][s] - rows[path]["psnr_rgb"][s]
            assert abs(cost) <= (0.01 if path == "fast:fp32" else 0.3), (path, s, cost)
    assert [t["precision"] for t in report["training"]] == ["bf16", "fp16"]
    assert all(t.get("error") is None and t["steps"] == 2 and not t["autocast"] for t in report["training"])
    ddp = report["ddp"]
    assert ddp.get("error") is None and ddp["backend"] == "gloo" and ddp["all_reduce_ok"]
    (goal,) = report["goals"]
    assert goal["model"] == "rlfn" and "speedup" in goal
    text = md.read_text()
    assert "dry run on CPU" in text and "| rlfn | fast:fp16 |" in text and "one-rank DDP over gloo" in text


def test_a_path_that_cannot_run_is_reported(gpu_check, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
                                           weights_dir: Path, data_dir: Path) -> None:
    monkeypatch.setenv(CPU_FLAGS_ENV, "avx2")  # no bf16 kernels: the bf16 paths are refused, the others run
    cfg = gpu_check.Config.dry(("rlfn",))
    rows = gpu_check.check_model("rlfn", gpu_check.load_images(cfg), cfg, log=lambda msg: None)
    errors = {r.path: r.error for r in rows if r.error}
    assert set(errors) == {"eager:bf16", "fast:bf16"} and all("avx512_bf16" in e for e in errors.values())
    assert "not run: PrecisionError" in gpu_check.render({
        "machine": "m", "date": "d", "torch": "t", "dry_run": True, "sets": ["set5", "set14"], "images": {},
        "crop": 32, "inference": [r.__dict__ for r in rows], "training": [], "goals": [], "seconds": 1.0,
        "ddp": {"backend": "gloo", "error": "skipped"}})
