"""``effsr bench``: its JSON has exactly the shape docs/deploy.md ("Benchmarks") documents (no timing asserts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from effsr.bench import BenchResult, parse_size
from effsr.cli import app

RESULT_KEYS = {"model", "backend", "precision", "threads", "lr_size", "median_ms", "iqr_ms", "runs"}


def _check_report(data: dict, expected: list[tuple[str, str]], threads: int, lr_size: list[int], runs: int) -> None:
    assert set(data) == {"machine", "dense_conv_gflops", "dense_gflops_by_precision", "results"}
    assert isinstance(data["machine"], str) and data["machine"]
    assert isinstance(data["dense_conv_gflops"], float) and data["dense_conv_gflops"] > 0
    assert data["dense_gflops_by_precision"] == {"fp32": data["dense_conv_gflops"]}
    assert [(r["model"], r["backend"]) for r in data["results"]] == expected
    for r in data["results"]:
        assert set(r) == RESULT_KEYS
        assert r["threads"] == threads and r["lr_size"] == lr_size and r["runs"] == runs
        assert r["precision"] == "fp32"  # the default
        assert isinstance(r["median_ms"], float) and r["median_ms"] > 0
        assert isinstance(r["iqr_ms"], float) and r["iqr_ms"] >= 0


def test_bench_json_shape_in_process(tmp_path: Path, weights_dir: Path) -> None:
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, [
        "bench", "--model", "rlfn,lsanet", "--lr-size", "24x16", "--backend", "eager,fast", "--threads", "1",
        "--runs", "2", "--warmup", "1", "--in-process", "--json", str(out)])
    assert result.exit_code == 0, result.output
    expected = [("rlfn", "eager"), ("rlfn", "fast"), ("lsanet", "eager"), ("lsanet", "fast")]
    _check_report(json.loads(out.read_text()), expected, threads=1, lr_size=[16, 24], runs=2)


def test_bench_isolated_workers(tmp_path: Path, weights_dir: Path) -> None:
    """The default protocol: each backend in its own interpreter, interleaved runs."""
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, [
        "bench", "--model", "rlfn", "--lr-size", "16x16", "--backend", "eager,fast", "--threads", "1", "--runs", "2",
        "--warmup", "1", "--json", str(out)])
    assert result.exit_code == 0, result.output
    _check_report(json.loads(out.read_text()), [("rlfn", "eager"), ("rlfn", "fast")], threads=1, lr_size=[16, 16],
                  runs=2)


def test_bench_rejects_unknown_backend() -> None:
    result = CliRunner().invoke(app, ["bench", "--model", "rlfn", "--backend", "tensorrt"])
    assert result.exit_code != 0


def test_sizes_are_width_by_height_and_results_derive_rates() -> None:
    assert parse_size("640x360") == (360, 640)
    with pytest.raises(ValueError):
        parse_size("640")
    r = BenchResult("m", "fast", 2, (256, 256), median_ms=100.0, iqr_ms=1.0, runs=5, floor_ms=50.0)
    assert r.output_mpix_per_s == pytest.approx(16 * 256 * 256 / 1e5)
    assert r.times_floor == pytest.approx(2.0)
    assert r.to_json()["lr_size"] == [256, 256]


def test_floor_comes_from_the_dense_reference_in_the_same_rounds(weights_dir: Path) -> None:
    """The floor's rate is timed as one more worker in the same rounds, with as many MACs as the model's forward."""
    from effsr.bench import DENSE_CHANNELS, bench_model

    results = bench_model("rlfn", backends=("fast",), threads=1, lr_size=(16, 24), runs=2, warmup=1, isolate=False,
                          pause_s=0.0)
    (r,) = results
    assert r.backend == "fast" and r.runs == 2 and r.macs > 0 and r.dense_gflops > 0
    assert r.floor_ms == pytest.approx(2 * r.macs / (r.dense_gflops * 1e9) * 1e3)
    repeat = max(1, round(r.macs / (DENSE_CHANNELS * DENSE_CHANNELS * 9 * 16 * 24)))
    assert repeat > 1  # RLFN's forward is several dense convolutions' worth of MACs
    fixed = bench_model("rlfn", backends=("eager",), threads=1, lr_size=(16, 24), runs=1, warmup=1, isolate=False,
                        gflops=100.0, pause_s=0.0)
    assert fixed[0].dense_gflops == 100.0 and fixed[0].floor_ms == pytest.approx(2 * fixed[0].macs / 1e11 * 1e3)
