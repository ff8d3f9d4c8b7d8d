"""int8 on the fast backend (effsr.deploy.quantize): every zoo model runs, the seed models keep their dB budget on
Set5 crops, the int8 file round-trips through save, load and ``effsr upscale --weights``, quantization-aware
fine-tuning ends in such a file, and a CPU without VNNI gets one clear line.

Tests of int8 arithmetic set ``$EFFSR_CPU_FLAGS`` to a VNNI CPU's flags so that they test the numbers, not the host
(CI may run elsewhere); under pytest oneDNN is capped to AVX2 (tests/conftest.py), and its int8 kernels still run.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from typer.testing import CliRunner

import effsr
from effsr.cli import app
from effsr.deploy import prepare, quantize
from effsr.deploy.quantize import Int8Engine, fidelity_db, load_int8, prepare_int8, save_int8, stored_policies
from effsr.errors import InvalidValueError, OutputExistsError, PrecisionError
from effsr.evaluate import super_resolve
from effsr.imageio import read_rgb_uint8
from effsr.metrics import psnr_rgb
from effsr.models import list_models
from effsr.train.recipe import RecipeError, load_recipe_text
from effsr.weights import is_int8_file, resolve_weights

from .conftest import require

pytestmark = pytest.mark.usefixtures("one_thread")

VNNI_FLAGS = "sse4_2 avx2 fma avx512f avx512bw avx512_vnni"
SEED = ("rlfn", "agdn", "lsanet", "ifadnet", "mdrn_s", "msn")
# The cost test runs RLFN (its stored policy) and LSANet (no stored policy: everything int8) within the file's
# time budget; benchmarks/int8_quality.py measures every seed model on the full sets.
COST_MODELS = ("rlfn", "lsanet")
# Set5 crops: the centre LR_CROP x LR_CROP of each LR image and the matching HR region.
LR_CROP = 48
# Budgets on the PSNR-RGB cost (fp32 minus int8, these Set5 crops, official protocol, two calibration crops), the
# measured value rounded up: RLFN with its stored policy (35 of 39 convolutions float) measured 0.055 dB; LSANet with
# everything int8 (no stored policy) 2.60 dB, the plain post-training cost that the policy search exists to remove.
SET5_CROP_BUDGET_DB = {"rlfn": 0.08, "lsanet": 2.8}
# Every zoo model with nothing kept float, calibrated on one 32x32 example image and run on another: the fidelity
# (PSNR against its float32 forward) stays above this. Measured: 11.3 dB (SAFMN-L), 16.3 (SPAN), 18.0 (DSCF), 20.2
# (DSCF fused), the others 28 dB and up: plain int8 of these networks is far from float, and one calibration image is
# the least there is. The bound says the int8 graph runs and still computes the image, not that it is good.
ZOO_FIDELITY_DB = 10.0


@pytest.fixture(autouse=True)
def _vnni(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EFFSR_CPU_FLAGS", VNNI_FLAGS)


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "1000", "TERMINAL_WIDTH": "1000"})


@pytest.fixture(scope="module")
def set5_crops(data_dir: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for lr_path in sorted((require(data_dir / "Set5" / "LR_bicubic" / "X4")).glob("*.png")):
        lr = read_rgb_uint8(lr_path)
        hr = read_rgb_uint8(data_dir / "Set5" / "HR" / lr_path.name)
        top, left = (lr.shape[0] - LR_CROP) // 2, (lr.shape[1] - LR_CROP) // 2
        out.append((lr[top:top + LR_CROP, left:left + LR_CROP],
                    hr[4 * top:4 * (top + LR_CROP), 4 * left:4 * (left + LR_CROP)]))
    assert len(out) == 5
    return out


@pytest.fixture(scope="module")
def seed_engines(weights_dir: Path, data_dir: Path) -> Iterator[dict[str, Int8Engine]]:
    """The cost models' int8 engines as ``prepare`` builds them (stored policy or everything int8), calibrated on
    two B100 crops (enough for the bound, quick to observe)."""
    from effsr.deploy.calibration import calibration_images

    with pytest.MonkeyPatch.context() as mp:  # module scope: the function-scoped monkeypatch cannot serve here
        mp.setenv("EFFSR_CPU_FLAGS", VNNI_FLAGS)
        images = calibration_images(limit=2, crop=64)
        yield {name: prepare(effsr.load(name), "fast", precision="int8", calibration=images) for name in COST_MODELS}


def _cost(model: torch.nn.Module, engine: torch.nn.Module, crops: list[tuple[np.ndarray, np.ndarray]]) -> float:
    fp32 = np.mean([psnr_rgb(super_resolve(model, lr), hr, 4) for lr, hr in crops])
    int8 = np.mean([psnr_rgb(super_resolve(engine, lr), hr, 4) for lr, hr in crops])
    return float(fp32 - int8)


@pytest.mark.parametrize("name", COST_MODELS)
def test_seed_model_int8_cost_on_set5_crops(name: str, seed_engines: dict, set5_crops: list) -> None:
    engine = seed_engines[name]
    assert isinstance(engine, Int8Engine) and engine.policy_source == ("stored" if name in stored_policies() else
                                                                       "given")
    assert engine.layers["int8_convs"] > 0  # int8 kernels really run
    cost = _cost(effsr.load(name), engine, set5_crops)
    print(f"{name}: int8 cost {cost:.4f} dB RGB on Set5 crops, {engine.layers}, kernels vs simulation "
          f"{engine.kernel_fidelity_db:.1f} dB")
    assert abs(cost) <= SET5_CROP_BUDGET_DB[name], f"{name}: int8 costs {cost:.4f} dB RGB on Set5 crops"


@pytest.mark.slow
@pytest.mark.parametrize("name", [m for m in list_models() if m not in COST_MODELS])
def test_every_zoo_model_runs_int8(name: str, weights_dir: Path) -> None:
    """The rest of the zoo (two models run above), everything quantized, calibrated on one example image (marked
    slow: about 2 s per model)."""
    from effsr.deploy.checks import example_image

    torch.manual_seed(0)  # a model without published weights (SAFMN-L) starts from a seeded initialisation
    model = effsr.load(name) if effsr.get_spec(name).weights else effsr.build_model(name)
    engine = prepare_int8(model, calibration=example_image(3, 32, 32, seed=1), policy="none",
                          example_size=(32, 32))
    x = example_image(3, 32, 32, seed=2)
    with torch.inference_mode():
        ref = model(x).clamp(0, 1)
    got = engine(x).clamp(0, 1)
    assert got.shape == ref.shape
    assert engine.layers["int8_convs"] > 0
    print(f"{name}: fidelity {fidelity_db([got], [ref]):.1f} dB, kernels vs simulation {engine.kernel_fidelity_db:.1f}")
    assert fidelity_db([got], [ref]) >= ZOO_FIDELITY_DB


def test_policies_are_stored_for_the_seed_models_and_span() -> None:
    stored = stored_policies()
    assert "rlfn" in stored
    for name, entry in stored.items():
        assert entry["search"]["fidelity_db"] >= entry["search"]["target_db"], name


def test_int8_file_round_trip(tmp_path: Path, seed_engines: dict, runner: CliRunner) -> None:
    engine = seed_engines["rlfn"]
    path = save_int8(engine, tmp_path / "rlfn_int8.safetensors")
    assert is_int8_file(path) and not is_int8_file(resolve_weights(effsr.get_spec("rlfn").default_weights))
    with pytest.raises(OutputExistsError):
        save_int8(engine, path)
    x = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(3))
    with warnings.catch_warnings():  # loading and running an int8 file prints nothing (torch.ao's notices muted)
        warnings.simplefilter("error")
        loaded = load_int8(path)
        out = loaded(x)
    assert loaded.float_nodes == engine.float_nodes and loaded.layers == engine.layers
    assert torch.equal(out, engine(x))  # same weights, statistics and policy: the same int8 graph
    # No in-place quantized activation: torch's C++ quantized::leaky_relu warns on stderr at every such call.
    assert not [n for n, m in loaded.graph.named_modules() if getattr(m, "inplace", False)]
    # effsr.load gives the float deploy model carrying the int8 tensors; prepare runs it as int8 by default ...
    net = effsr.load(weights=path)
    again = prepare(net, "fast")
    assert isinstance(again, Int8Engine) and torch.equal(again(x), engine(x))
    # ... and refuses another precision or backend in one line.
    with pytest.raises(PrecisionError, match="int8 file"):
        prepare(net, "fast", precision="fp32")
    with pytest.raises(PrecisionError, match="int8 file"):
        prepare(net, "eager")
    # effsr upscale --weights FILE runs it.
    img = tmp_path / "in.png"
    PILImage.fromarray(np.random.default_rng(0).integers(0, 256, (16, 20, 3), dtype=np.uint8)).save(img)
    res = runner.invoke(app, ["upscale", str(img), "-o", str(tmp_path / "out.png"), "--weights", str(path)])
    assert res.exit_code == 0, res.output
    assert PILImage.open(tmp_path / "out.png").size == (80, 64)
    res = runner.invoke(app, ["upscale", str(img), "-o", str(tmp_path / "o2.png"), "--weights", str(path),
                              "--precision", "bf16"])
    assert res.exit_code == 2 and "int8 file" in res.output and "Traceback" not in res.output


def test_cpu_without_vnni_gets_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, runner: CliRunner) -> None:
    monkeypatch.setenv("EFFSR_CPU_FLAGS", "sse4_2 avx2 fma avx512f avx512bw")
    with pytest.raises(PrecisionError, match="avx512_vnni"):
        prepare(effsr.load("span"), "fast", precision="int8")
    img = tmp_path / "in.png"
    PILImage.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(img)
    res = runner.invoke(app, ["upscale", str(img), "-o", str(tmp_path / "out.png"), "-m", "span",
                              "--precision", "int8"])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "avx512_vnni" in lines[0], res.output


def test_activation_grid_follows_the_real_cpu_and_the_onednn_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """8-bit activations only where the kernels cannot saturate: real VNNI and oneDNN not capped below it.
    ``$EFFSR_CPU_FLAGS`` (set to a VNNI CPU's flags by this file) does not count: it would not change the kernels."""
    from effsr import runtime

    monkeypatch.setattr(runtime, "cpu_flags", lambda: "sse4_2 avx2 fma avx512f avx512bw avx512_vnni")
    assert os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX2"  # tests/conftest.py
    assert quantize.exact_activation_bits() == 7
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_VNNI")
    assert quantize.exact_activation_bits() == 8
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert quantize.exact_activation_bits() == 8
    monkeypatch.setattr(runtime, "cpu_flags", lambda: "sse4_2 avx2 fma avx512f avx512bw")
    assert quantize.exact_activation_bits() == 7  # no VNNI: vpmaddubsw's int16 pair sums would saturate
    for bits, top in ((7, 127), (8, 255)):
        for qat in (False, True):
            with warnings.catch_warnings():  # torch.ao's note that reduce_range is deprecated
                warnings.simplefilter("ignore", UserWarning)
                act = quantize.qconfig_mapping(qat, bits).global_qconfig.activation()
            assert (act.quant_max - act.quant_min if qat else 2 ** (8 - act.reduce_range) - 1) == top, (bits, qat)
    with pytest.raises(PrecisionError, match="VNNI"):
        prepare_int8(effsr.load("rlfn"), activation_bits=8)
    with pytest.raises(InvalidValueError, match="activation bits"):
        prepare_int8(effsr.load("rlfn"), activation_bits=6)


def test_stored_policy_follows_the_activation_grid(monkeypatch: pytest.MonkeyPatch) -> None:
    """A policy searched on the engine's grid first; a coarser grid's serves a finer one, never the reverse."""
    arch = ("rlfn", {"scale": 4})
    entries = {"m": {"architecture": "rlfn", "kwargs": {"scale": 4}, "float_nodes": ["a", "b"]},
               "m@8bit": {"architecture": "rlfn", "kwargs": {"scale": 4}, "activation_bits": 8, "float_nodes": ["a"]}}
    monkeypatch.setattr(quantize, "stored_policies", lambda: entries)
    names = ["a", "b", "c"]
    assert quantize._stored_policy(arch, None, names, 8) == ["a"]
    assert quantize._stored_policy(arch, None, names, 7) == ["a", "b"]
    del entries["m"]
    assert quantize._stored_policy(arch, None, names, 7) is None
    assert quantize._stored_policy(("rlfn", {"scale": 2}), None, names, 8) is None


def test_a_mostly_float_policy_says_it_gives_no_speed(caplog: pytest.LogCaptureFixture) -> None:
    """RLFN's stored policy keeps 35 of 39 convolutions float: int8 for quality, and the user is told so."""
    import logging

    from effsr.deploy.checks import example_image

    with caplog.at_level(logging.WARNING):
        engine = prepare_int8(effsr.load("rlfn"), calibration=example_image(3, 32, 32, seed=1),
                              example_size=(32, 32), verify=False)
    assert engine.policy_source == "stored" and engine.layers["float_convs"] > engine.layers["int8_convs"]
    assert "no faster than --precision fp32" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        prepare_int8(effsr.load("rlfn"), calibration=example_image(3, 32, 32, seed=1), policy="none",
                     example_size=(32, 32), verify=False)
    assert "no faster" not in caplog.text


def test_8bit_int8_file_round_trips_and_is_refused_where_it_would_saturate(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, runner: CliRunner) -> None:
    """An 8-bit file records its grid, loads back to the same graph where it runs exactly, and elsewhere is one
    line. (Under pytest oneDNN is capped to AVX2, where 8-bit activations saturate: the graph is built here as on a
    VNNI CPU, and only its bookkeeping is checked, not its numbers.)"""
    from effsr.deploy.checks import example_image

    monkeypatch.setattr(quantize, "exact_activation_bits", lambda: 8)
    engine = prepare_int8(effsr.load("rlfn"), calibration=example_image(3, 32, 32, seed=1), policy="none",
                          example_size=(32, 32), verify=False)
    assert engine.activation_bits == 8
    observers = [m for m in engine.prepared.modules() if isinstance(m, torch.ao.quantization.HistogramObserver)]
    assert observers and all(not o.reduce_range for o in observers)
    path = save_int8(engine, tmp_path / "rlfn_int8_8bit.safetensors")
    x = example_image(3, 20, 24, seed=2)
    loaded = load_int8(path, verify=False)
    assert loaded.activation_bits == 8 and torch.equal(loaded(x), engine(x))
    monkeypatch.setattr(quantize, "exact_activation_bits", lambda: 7)
    with pytest.raises(PrecisionError, match="8 bits"):
        load_int8(path)
    img = tmp_path / "in.png"
    PILImage.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(img)
    res = runner.invoke(app, ["upscale", str(img), "-o", str(tmp_path / "out.png"), "--weights", str(path)])
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and "8 bits" in lines[0], res.output
    assert not (tmp_path / "out.png").exists()


def test_int8_speed_script_times_policies_and_files(tmp_path: Path, seed_engines: dict) -> None:
    """benchmarks/int8_speed.py runs every kind of int8 graph it offers (a smoke run: one round on 16x16, no
    timing judged)."""
    from .conftest import load_benchmark

    path = save_int8(seed_engines["rlfn"], tmp_path / "rlfn_int8.safetensors")
    medians = load_benchmark("int8_speed").main(["rlfn", "--policy", "none", "--file", str(path), "--lr-size",
                                                 "16x16", "--threads", "1", "--runs", "2"])
    assert list(medians)[0] == "fast fp32" and len(medians) == 3
    assert any(k.startswith("int8 none (39 int8 convs") for k in medians)
    assert all(v > 0 for v in medians.values())


def test_quant_stage_is_validated() -> None:
    base = ("model: rlfn\ntrain_data: [{hr: /x}]\nstages:\n"
            "  - {iters: 2, patch_size: 32, batch_size: 1, lr: 1.0e-4, quant: int8}\n")
    assert load_recipe_text(base).stages[0].quant == "int8"
    with pytest.raises(RecipeError, match="last stage"):
        load_recipe_text(base + "  - {iters: 2, patch_size: 32, batch_size: 1, lr: 1.0e-4}\n")
    with pytest.raises(RecipeError, match="quant"):
        load_recipe_text(base.replace("quant: int8", "quant: int4"))
    with pytest.raises(RecipeError, match="did you mean 'quant'"):
        load_recipe_text(base.replace("quant: int8", "quantize: int8"))
    assert load_recipe_text(base.replace("quant: int8", "quant: int8, quant_policy: none")).stages[0].quant_policy \
        == "none"
    with pytest.raises(RecipeError, match="quant_policy"):  # a policy without a quant stage would be ignored
        load_recipe_text(base.replace("quant: int8", "quant_policy: none"))


def test_quantization_aware_training_ends_in_an_int8_file(tmp_path: Path, runner: CliRunner, data_dir: Path) -> None:
    from effsr.train.loop import train

    hr = tmp_path / "hr"
    hr.mkdir()
    rng = np.random.default_rng(1)
    for i in range(2):  # smooth images: a tiny dataset made here
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        PILImage.fromarray(small).resize((64, 64), PILImage.BICUBIC).save(hr / f"{i}.png")
    recipe = load_recipe_text(
        f"model: rlfn\ndevice: cpu\nthreads: 1\nworkers: 0\ntrain_data: [{{hr: {hr}}}]\nlog_every: 1\n"
        "teacher: rlfn\nstages:\n  - {name: qat, iters: 3, patch_size: 64, batch_size: 2, lr: 1.0e-5, init: official, "
        "ema_decay: 0.999, quant: int8, distill_weight: 0.5}\n")  # distilled from the float model, as users do
    result = train(recipe, tmp_path / "run", progress=False)
    assert result.int8 == tmp_path / "run" / "final_int8.safetensors" and is_int8_file(result.int8)
    assert not is_int8_file(result.final)
    engine = load_int8(result.int8)
    assert engine.qat and engine.layers["int8_convs"] > 0
    img = tmp_path / "in.png"
    PILImage.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(img)
    res = runner.invoke(app, ["upscale", str(img), "-o", str(tmp_path / "out.png"), "--weights", str(result.int8)])
    assert res.exit_code == 0, res.output
    assert PILImage.open(tmp_path / "out.png").size == (48, 48)
