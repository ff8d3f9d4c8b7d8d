"""Precision as a checked, measured choice: the CPU and backend rules (Python and command line), bfloat16 on every zoo
model through the fast and eager backends, its PSNR cost on Set5 crops, and the per-precision benchmark.

The bfloat16 numerics are tested on the arithmetic, not on the host: ``$EFFSR_CPU_FLAGS`` claims AVX-512 BF16, so the
checks of :mod:`effsr.deploy.precision` let bfloat16 run whatever CPU CI has (the test suite caps oneDNN at AVX2,
tests/conftest.py, where the fast engine leaves its bfloat16 weights unpacked and PyTorch's bfloat16 convolutions
run: bfloat16 weights and activations, float32 accumulation, the arithmetic of the native kernels).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from typer.testing import CliRunner

from effsr.bench import bench_model, bench_pairs, check_pairs, dense_conv_module
from effsr.cli import app
from effsr.deploy import LOW_PRECISION_TOLERANCE, prepare
from effsr.deploy.passes import NATIVE_PASSES
from effsr.deploy.precision import CPU_FLAGS_ENV, check_precision, cpu_supports
from effsr.errors import PrecisionError
from effsr.evaluate import quality_cost
from effsr.models import get_spec, list_models

from .conftest import eval_mean, load_benchmark

ZOO = [name for name in list_models() if get_spec(name).weights]
SEED = ("rlfn", "agdn", "lsanet", "ifadnet", "mdrn_s", "msn")
# Flag sets as /proc/cpuinfo names them: a CPU with native bfloat16 and VNNI, and an AVX2 one with neither.
BF16_CPU = "sse4_2 avx avx2 fma avx512f avx512bw avx512vl avx512_bf16 avx512_vnni"
PLAIN_CPU = "sse4_2 avx avx2 fma"
# The bfloat16 PSNR cost (float32 eager minus fast bf16, RGB and Y) allowed on the Set5 crops below, for each seed
# model. Measured on the full sets with native bf16 kernels (benchmarks/results/lowp_quality_native_a.json and
# _b.json, RESULTS.md "Low precision: quality cost"): at most 0.034 dB on Set5, Set14 and B100 (MDRN-S on Set5, RGB;
# 0.036 dB in the emulated arithmetic the suite runs, lowp_quality_bf16.json). Crops of 36x36 LR pixels hold a
# fraction of an image and no flat areas, so their mean moves more (MDRN-S: 0.061 dB on these crops); the budget
# is that with ~1.6x margin, and still far below what a broken low-precision path loses (a plain int8 quantization
# lost 3 to 7 dB on these models).
BF16_CROP_BUDGET_DB = 0.1

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def bf16_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CPU_FLAGS_ENV, BF16_CPU)


@pytest.fixture
def plain_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CPU_FLAGS_ENV, PLAIN_CPU)


# ---- the rules --------------------------------------------------------------------------------------------------


def test_check_precision_rules(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    plain, bf16, vnni, amx = (frozenset(PLAIN_CPU.split()), frozenset({"avx512_bf16"}), frozenset({"avx_vnni"}),
                              frozenset({"amx_bf16", "amx_int8"}))
    with pytest.raises(PrecisionError, match="avx512_bf16 or amx_bf16"):
        check_precision("bf16", "fast", "cpu", flags=plain)
    with pytest.raises(PrecisionError, match="avx512_vnni"):
        check_precision("int8", "fast", "cpu", flags=plain)
    assert check_precision("bf16", "fast", "cpu", flags=bf16) == "bf16"
    assert check_precision(torch.bfloat16, "eager", "cpu", flags=amx) == "bf16"
    assert check_precision("int8", "openvino", "cpu", flags=vnni) == "int8"
    assert check_precision("int8", "fast", "cpu", flags=amx) == "int8"
    assert check_precision("fp32", "onnxruntime", "cpu", flags=plain) == "fp32"
    with pytest.raises(PrecisionError, match="onnxruntime backend runs fp32"):
        check_precision("bf16", "onnxruntime", "cpu", flags=bf16)
    with pytest.raises(PrecisionError, match="eager backend runs"):
        check_precision("int8", "eager", "cpu", flags=vnni)
    with pytest.raises(PrecisionError, match="int8 runs on CPU only"):
        check_precision("int8", "fast", "cuda", flags=vnni)
    assert check_precision("bf16", "fast", "cuda", flags=plain) == "bf16"  # CUDA: no CPU flags needed
    with pytest.raises(PrecisionError, match="unknown precision"):
        check_precision("fp64", "fast", "cpu")
    with caplog.at_level(logging.WARNING):
        assert check_precision("fp16", "fast", "cpu", flags=plain) == "fp16"
    assert "fp16 on CPU has no fast kernels" in caplog.text
    monkeypatch.setenv(CPU_FLAGS_ENV, PLAIN_CPU)
    assert not cpu_supports("bf16") and not cpu_supports("int8") and cpu_supports("fp32")
    monkeypatch.setenv(CPU_FLAGS_ENV, "avx2,avx512_bf16")  # commas work too
    assert cpu_supports("bf16") and not cpu_supports("int8")


def _one_error_line(result) -> str:  # type: ignore[no-untyped-def]
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_cli_refuses_a_precision_this_cpu_cannot_run(plain_cpu: None, tmp_path: Path, weights_dir: Path) -> None:
    """A CPU without BF16 / VNNI: one line, exit status 2, nothing written, for upscale, eval and bench."""
    runner = CliRunner()
    src = tmp_path / "a.png"
    PILImage.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(src)
    for precision, flag in (("bf16", "avx512_bf16"), ("int8", "avx512_vnni")):
        out = tmp_path / f"out_{precision}"
        line = _one_error_line(runner.invoke(app, ["upscale", str(src), "-o", str(out), "-m", "rlfn",
                                                   "--precision", precision]))
        assert flag in line and "--precision fp32" in line
        assert not out.exists() or not any(out.iterdir())
    js = tmp_path / "eval.json"
    line = _one_error_line(runner.invoke(app, ["eval", "-m", "rlfn", "--precision", "bf16", "--json", str(js)]))
    assert "avx512_bf16" in line and not js.exists()
    js = tmp_path / "bench.json"
    line = _one_error_line(runner.invoke(app, ["bench", "-m", "rlfn", "--backend", "eager,fast", "--precision",
                                               "fp32,int8", "--in-process", "--json", str(js)]))
    assert "avx512_vnni" in line and not js.exists()
    line = _one_error_line(runner.invoke(app, ["bench", "-m", "rlfn", "--backend", "onnxruntime", "--precision",
                                               "bf16", "--in-process"]))
    assert "none of the backends onnxruntime runs bf16" in line


def test_bench_pairs_follow_the_backend_table(bf16_cpu: None) -> None:
    assert bench_pairs(["eager", "fast", "onnxruntime"], ["fp32", "bf16"]) == [
        ("eager", "fp32"), ("eager", "bf16"), ("fast", "fp32"), ("fast", "bf16"), ("onnxruntime", "fp32")]
    assert bench_pairs(["eager", "fast"], ["int8"]) == [("fast", "int8")]
    with pytest.raises(PrecisionError, match="none of the backends eager, onnxruntime runs int8"):
        bench_pairs(["eager", "onnxruntime"], ["fp32", "int8"])
    with pytest.raises(PrecisionError, match="int8 runs on CPU only"):
        bench_pairs(["fast"], ["int8"], device="cuda")
    assert check_pairs([("fast", "BF16"), ("fast", "bf16"), ("eager", "fp32")]) == [("fast", "bf16"),
                                                                                  ("eager", "fp32")]
    with pytest.raises(PrecisionError, match="onnxruntime backend runs fp32"):
        check_pairs([("onnxruntime", "bf16")])


# ---- bfloat16 on every zoo model -------------------------------------------------------------------------------


def _image_like(h: int, w: int) -> torch.Tensor:
    from effsr.deploy.checks import example_image

    return example_image(3, h, w, seed=7)


@pytest.mark.parametrize("name", ZOO)
def test_every_zoo_model_runs_in_bf16_on_fast_and_eager(name: str, zoo, bf16_cpu: None) -> None:  # type: ignore[no-untyped-def]
    model = zoo(name)
    x = _image_like(32, 36)
    with torch.inference_mode():
        ref = model(x)
    for backend in ("eager", "fast"):
        engine = prepare(model, backend, precision="bf16", example_size=(32, 36), tune_malloc=False)
        assert engine.dtype == torch.bfloat16
        y = engine(x)
        assert y.dtype == torch.float32 and y.shape == ref.shape
        err = float((y - ref).abs().max())
        assert 0 < err <= LOW_PRECISION_TOLERANCE[torch.bfloat16], f"{name} {backend} bf16: {err:.2e}"
        if backend == "fast":
            assert engine.max_abs_vs_eager is not None and engine.max_abs_vs_eager <= LOW_PRECISION_TOLERANCE[
                torch.bfloat16]  # verified at prepare time against the float32 forward


@pytest.mark.parametrize("name", SEED)
def test_bf16_graph_gets_the_passes_fp32_gets(name: str, zoo, bf16_cpu: None) -> None:  # type: ignore[no-untyped-def]
    """The bfloat16 deploy graph is tuned like the float32 one: every pass fires as often, except effsr's native
    kernels (float32 only) and the oneDNN pre-packing where this CPU has no bfloat16 kernels for it."""
    from effsr.deploy.ops import onednn_packs

    model = zoo(name)
    counts = {}
    for precision in ("fp32", "bf16"):
        engine = prepare(model, "fast", precision=precision, example_size=(32, 36), tune_malloc=False)
        assert engine.fused, f"{name} {precision}: fell back to the plain forward"
        counts[precision] = engine.pass_report.counts()
    fp32, bf16 = counts["fp32"], counts["bf16"]
    for pass_name in NATIVE_PASSES:
        assert bf16[pass_name] == 0
    expected_packs = fp32["pack_weights"] if onednn_packs(torch.bfloat16) else 0
    assert bf16["pack_weights"] == expected_packs
    skip = set(NATIVE_PASSES) | {"pack_weights"}
    assert {k: v for k, v in bf16.items() if k not in skip} == {k: v for k, v in fp32.items() if k not in skip}


def test_a_bf16_graph_outside_its_tolerance_falls_back(bf16_cpu: None, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture, zoo) -> None:  # type: ignore[no-untyped-def]
    """The bfloat16 graph is checked against the float32 eager forward at prepare time, like the float32 one."""
    import effsr.deploy.backends as backends

    monkeypatch.setattr(backends, "LOW_PRECISION_TOLERANCE", {torch.bfloat16: 1e-9})
    with caplog.at_level(logging.WARNING):
        engine = prepare(zoo("rlfn"), "fast", precision="bf16", example_size=(24, 24), tune_malloc=False)
    assert not engine.fused and "using the channels-last forward" in caplog.text
    assert engine.max_abs_vs_eager is not None and engine.max_abs_vs_eager > 1e-9


# ---- the PSNR cost ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SEED)
def test_bf16_psnr_cost_on_set5_crops(name: str, zoo, set5_crops: Path, bf16_cpu: None) -> None:  # type: ignore[no-untyped-def]
    (cost,) = quality_cost(zoo(name), [set5_crops], backend="fast", precision="bf16", model_name=name)
    assert cost.images == 5 and cost.precision == "bf16" and cost.backend == "fast"
    assert cost.psnr_rgb != cost.psnr_rgb_fp32  # it did run in bfloat16
    assert abs(cost.cost_rgb_db) <= BF16_CROP_BUDGET_DB, f"{name}: RGB cost {cost.cost_rgb_db:+.4f} dB"
    assert abs(cost.cost_y_db) <= BF16_CROP_BUDGET_DB, f"{name}: Y cost {cost.cost_y_db:+.4f} dB"
    assert cost.cost_rgb_db == pytest.approx(cost.psnr_rgb_fp32 - cost.psnr_rgb)


def test_eval_and_bench_take_precisions(bf16_cpu: None, set5_crops: Path, tmp_path: Path, weights_dir: Path) -> None:
    runner = CliRunner()
    runs = {p: eval_mean(set5_crops, "rlfn", tmp_path / f"{p}.json", "--precision", p)["psnr_rgb"]
            for p in ("fp32", "bf16")}
    assert runs["fp32"] != runs["bf16"] and abs(runs["fp32"] - runs["bf16"]) <= BF16_CROP_BUDGET_DB

    js = tmp_path / "bench.json"
    result = runner.invoke(app, ["bench", "-m", "rlfn", "--lr-size", "16x16", "--backend", "eager,fast",
                                 "--precision", "fp32,bf16", "--threads", "1", "--runs", "1", "--warmup", "1",
                                 "--in-process", "--json", str(js)])
    assert result.exit_code == 0, result.output
    data = json.loads(js.read_text())
    assert [(r["backend"], r["precision"]) for r in data["results"]] == [
        ("eager", "fp32"), ("eager", "bf16"), ("fast", "fp32"), ("fast", "bf16")]
    assert set(data["dense_gflops_by_precision"]) == {"fp32", "bf16"}
    assert data["dense_conv_gflops"] == data["dense_gflops_by_precision"]["fp32"]
    assert "bf16" in result.output  # the table's precision column


def test_each_precision_gets_its_own_floor(bf16_cpu: None, monkeypatch: pytest.MonkeyPatch,
                                           weights_dir: Path) -> None:
    """bf16 alone still times the float32 eager reference; each precision's floor is its own dense rate."""
    results = bench_model("rlfn", backends=("fast",), precisions=("bf16",), threads=1, lr_size=(16, 16), runs=1,
                          warmup=1, isolate=False, pause_s=0.0, gflops={"fp32": 100.0, "bf16": 200.0})
    assert [(r.backend, r.precision) for r in results] == [("eager", "fp32"), ("fast", "bf16")]
    eager, fast = results
    assert eager.floor_ms == pytest.approx(2 * eager.macs / 100e9 * 1e3)
    assert fast.floor_ms == pytest.approx(2 * fast.macs / 200e9 * 1e3)
    assert fast.to_json()["precision"] == "bf16" and fast.path == "fast:bf16"
    assert 0 < fast.max_abs_vs_eager <= LOW_PRECISION_TOLERANCE[torch.bfloat16]
    # The int8 floor's work: torch.ao's quantized conv on the x86 engine, channels-last quint8 in and out.
    conv, x = dense_conv_module(16, (8, 8), precision="int8")
    y = conv(x)
    assert x.dtype == torch.quint8 and y.dtype == torch.quint8 and y.shape == (1, 16, 8, 8)


# ---- the goal table --------------------------------------------------------------------------------------------


def _script(name: str):  # type: ignore[no-untyped-def]
    return load_benchmark(name)


def test_goal_table_renders_and_judges(tmp_path: Path) -> None:
    goal = _script("lowp_goal")

    def row(backend: str, precision: str, ms: float, floor: float) -> dict:
        return {"model": "rlfn", "backend": backend, "precision": precision, "threads": 2, "lr_size": [256, 256],
                "median_ms": ms, "iqr_ms": 1.0, "runs": 9, "floor_ms": floor}

    report = {"machine": "test CPU", "date": "2026-01-01", "threads": 2, "lr_size": [256, 256], "runs": 9,
              "warmup": 3, "results": [row("eager", "fp32", 200.0, 50.0), row("fast", "fp32", 100.0, 50.0),
                                       row("fast", "bf16", 55.0, 27.0), row("fast", "int8", 50.0, 20.0),
                                       row("openvino", "bf16", 60.0, 27.0)],
              "unavailable": [{"backend": "openvino", "precision": "int8", "reason": "not installed"}],
              "failed": [{"model": "agdn", "backend": "openvino", "precision": "int8", "reason": "plugin check"}]}
    q = tmp_path / "q.json"
    q.write_text(json.dumps({"costs": [
        {"model": "rlfn", "backend": "fast", "precision": "bf16", "dataset": s, "cost_rgb_db": c}
        for s, c in (("set5", 0.01), ("set14", 0.015), ("b100", 0.012))] + [
        {"model": "rlfn", "backend": "fast", "precision": "int8", "dataset": s, "cost_rgb_db": 0.08}
        for s in ("set5", "set14", "b100")]}))
    text = goal.render(report, goal.load_quality([q]))
    lines = {line.split(" | ")[1]: line for line in text.splitlines() if line.startswith("| rlfn")}
    assert "| 2.00x |" in lines["fast:fp32"] and lines["fast:fp32"].endswith("| - |")
    assert "meets: x fast fp32 0.55 <= 0.6" in lines["fast:bf16"]
    assert "meets: cost <= 0.02 dB on every set (worst set14 +0.015)" in lines["fast:bf16"]
    assert "**misses**: x fast fp32 0.50 > 0.4 (misses by 25%)" in lines["fast:int8"]
    assert "**misses**: cost +0.080 dB on set5 > 0.05 (misses by 0.030 dB)" in lines["fast:int8"]
    assert "**misses**: x int8 floor 2.50 > 1.5" in lines["fast:int8"]
    assert "meets: effsr fast 55.0 ms <= OpenVINO" in lines["openvino:bf16"]
    assert "PSNR cost not measured" in lines["openvino:bf16"]
    assert "Not measured: openvino:int8 (not installed)." in text
    assert "Failed to build: agdn openvino:int8 (plugin check)." in text


def test_goal_measurement_goes_on_without_a_path_that_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """A path one model cannot build (an OpenVINO plugin limitation, say) is recorded and the others are timed."""
    from effsr import bench

    goal = _script("lowp_goal")
    asked: list[list[tuple[str, str]]] = []

    def fake_bench_model(model: str, *, pairs, **_: object) -> list:  # type: ignore[no-untyped-def]
        asked.append(list(pairs))
        if ("openvino", "int8") in pairs:
            raise bench.PathFailedError("openvino", "int8", f"{model}/openvino:int8: BackendError: cannot compile")
        return [bench.BenchResult(model=model, backend=b, threads=1, lr_size=(8, 8), median_ms=1.0, iqr_ms=0.0,
                                  runs=1, times_ms=(1.0,), precision=p) for b, p in pairs]

    monkeypatch.setattr(bench, "bench_model", fake_bench_model)
    monkeypatch.setattr("effsr.deploy.backends.require_backend", lambda name: None)
    monkeypatch.setattr("effsr.deploy.precision.check_precision", lambda *a, **k: "fp32")
    saved: list[int] = []
    report = goal.measure(["rlfn"], [("eager", "fp32"), ("openvino", "int8")], lr_size=(8, 8), threads=1, runs=1,
                          warmup=0, on_model=lambda r: saved.append(len(r["results"])))
    assert asked == [[("eager", "fp32"), ("openvino", "int8")], [("eager", "fp32")]]
    assert [(r["backend"], r["precision"]) for r in report["results"]] == [("eager", "fp32")]
    assert report["failed"] == [{"model": "rlfn", "backend": "openvino", "precision": "int8",
                                 "reason": "rlfn/openvino:int8: BackendError: cannot compile"}]
    assert saved == [1]  # written after each model
