"""``--backend openvino`` (effsr.deploy.openvino): every zoo model converted by OpenVINO reproduces its eager forward
in fp32; bf16 and int8 stay within their stated bounds or say why they cannot run; the CLI runs it; a missing package
is one line.

The suite runs with ``ONEDNN_MAX_CPU_ISA=AVX2`` in the environment (tests/conftest.py), the setting under which
OpenVINO's CPU plugin was seen to crash compiling AGDN: every engine here is built under it, so a crash fails the run.
No timing here.
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from torch import nn
from typer.testing import CliRunner

import effsr
from effsr.cli import app
from effsr.deploy import FP32_TOLERANCE, LOW_PRECISION_TOLERANCE, prepare
from effsr.deploy.calibration import calibration_images
from effsr.deploy.openvino import INT8_MIN_PSNR_DB, OpenVinoEngine, sensitive_nodes
from effsr.errors import BackendError, DeviceError, MissingDependencyError, PrecisionError
from effsr.imageio import read_rgb_uint8, tensor_to_uint8, uint8_to_tensor
from effsr.infer import upscale
from effsr.runtime import ONEDNN_ISA_VARIABLES

from .conftest import ZOO_2025_2026, eval_mean

# Every zoo model but MSN and MDRN, whose conversion alone takes 30 s here (MSN's graph has 3,448 nodes): they were
# checked the same way outside the suite (docs/deploy.md, "OpenVINO"), and MDRN-S, MDRN's small sibling, is here.
ZOO = ["rlfn", "agdn", "lsanet", "ifadnet", "mdrn_s", "span", "safmnpp", *ZOO_2025_2026]
# Converted once per input shape: AGDN lays its attention windows out from the input size.
STATIC_ONLY = {"agdn"}
SIZE = (32, 40)  # (H, W) of the example and of the crop compared

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def lr_image(data_dir: Path) -> torch.Tensor:
    from tests.conftest import require

    return uint8_to_tensor(read_rgb_uint8(require(data_dir / "Set5" / "LR_bicubic" / "X4" / "baby.png")))


def _crop(img: torch.Tensor, h: int, w: int, top: int = 9, left: int = 13) -> torch.Tensor:
    return img[:, :, top:top + h, left:left + w].contiguous()


def _err(engine: nn.Module, model: nn.Module, x: torch.Tensor) -> float:
    with torch.inference_mode():
        return float((engine(x) - model(x)).abs().max())


def _psnr_db(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.double() - b.double()) ** 2).mean())
    return math.inf if mse == 0 else -10 * math.log10(mse)


@pytest.mark.parametrize("name", ZOO)
def test_fp32_equals_eager_for_every_zoo_model(name: str, lr_image: torch.Tensor, weights_dir: Path) -> None:
    model = effsr.load(name)
    engine = prepare(model, "openvino", threads=1, example_size=SIZE)
    assert engine.backend == "openvino" and engine.tiling == model.tiling
    assert engine.inference_precision == "f32"  # asked for: the plugin would pick bf16 by itself where it can
    assert engine.max_abs_vs_eager is not None and engine.max_abs_vs_eager <= FP32_TOLERANCE
    assert engine.dynamic == (name not in STATIC_ONLY)
    err = _err(engine, model, _crop(lr_image, *SIZE))
    assert err <= FP32_TOLERANCE, f"{name}: openvino differs from eager by {err:.2e}"
    if name in STATIC_ONLY:  # above the 96-pixel attention window a graph traced at 32x40 is wrong: converted again
        x = _crop(lr_image, 100, 104, top=0, left=0)
        assert _err(engine, model, x) <= FP32_TOLERANCE
        assert set(engine._compiled) == {(1, 3, *SIZE), tuple(x.shape)}


def test_the_isa_cap_is_kept_for_pytorch(weights_dir: Path) -> None:
    """The engine hides $ONEDNN_MAX_CPU_ISA from OpenVINO's compiler only: the environment is restored after."""
    assert os.environ.get("ONEDNN_MAX_CPU_ISA") == "AVX2"  # tests/conftest.py
    prepare(effsr.load("span"), "openvino", threads=1, example_size=SIZE, verify=False)
    assert os.environ.get("ONEDNN_MAX_CPU_ISA") == "AVX2"
    assert "ONEDNN_MAX_CPU_ISA" in ONEDNN_ISA_VARIABLES


def test_bf16_within_its_bound_or_refused(monkeypatch: pytest.MonkeyPatch, lr_image: torch.Tensor,
                                          weights_dir: Path) -> None:
    """With the CPU flags of a bf16 CPU, bf16 runs within LOW_PRECISION_TOLERANCE where OpenVINO's plugin has
    native bfloat16, and is refused in one line where it would silently run f32 (this machine's case is whichever
    OpenVINO reports)."""
    import openvino as ov

    monkeypatch.setenv("EFFSR_CPU_FLAGS", "avx2 avx512f avx512_bf16")
    model = effsr.load("rlfn")
    if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        engine = prepare(model, "openvino", precision="bf16", threads=1, example_size=SIZE)
        assert engine.inference_precision == "bf16"
        err = _err(engine, model, _crop(lr_image, *SIZE))
        assert 0 < err <= LOW_PRECISION_TOLERANCE[torch.bfloat16]  # it did run in bf16, within the bound
    else:
        with pytest.raises(PrecisionError, match="no native bfloat16"):
            prepare(model, "openvino", precision="bf16", threads=1, example_size=SIZE)


def test_bf16_without_the_cpu_flags_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EFFSR_CPU_FLAGS", "avx2 fma")
    with pytest.raises(PrecisionError, match="avx512_bf16"):
        prepare(nn.Conv2d(3, 3, 3), "openvino", precision="bf16")


@pytest.mark.parametrize("name", ["rlfn", "span"])
def test_int8_within_its_bound(name: str, monkeypatch: pytest.MonkeyPatch, lr_image: torch.Tensor,
                               weights_dir: Path) -> None:
    monkeypatch.setenv("EFFSR_CPU_FLAGS", "avx2 avx512_vnni")
    model = effsr.load(name)
    # Four 48x48 crops of B100 LR images (the default set, smaller): calibration in a test's time budget.
    calibration = calibration_images(limit=4, crop=48)
    engine = prepare(model, "openvino", precision="int8", threads=1, example_size=SIZE, calibration=calibration)
    assert engine.psnr_vs_eager_db is not None and engine.psnr_vs_eager_db >= INT8_MIN_PSNR_DB
    graph = engine._graphs[None]
    assert sum(op.get_type_name() == "FakeQuantize" for op in graph.get_ordered_ops()) > 10  # it is quantized
    assert len(engine.kept_float) >= 2  # at least the first conv and the upsampler stay in float
    x = _crop(lr_image, 48, 48)
    with torch.inference_mode():
        got = _psnr_db(engine(x), model(x))
    assert INT8_MIN_PSNR_DB <= got < 200, f"{name}: int8 vs eager {got:.1f} dB"  # < 200: it is not the fp32 graph


def test_sensitive_nodes_found_from_the_graph() -> None:
    """The first conv, the conv(s) that reach the output and the sigmoid gates, on a small model."""
    import openvino as ov

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Conv2d(3, 8, 3, padding=1)
            self.body = nn.Conv2d(8, 8, 3, padding=1)
            self.gate = nn.Conv2d(8, 8, 1)
            self.tail = nn.Conv2d(8, 12, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            f = torch.relu(self.body(self.head(x)))
            f = f * torch.sigmoid(self.gate(f))
            return nn.functional.pixel_shuffle(self.tail(f), 2)

    graph = ov.convert_model(Tiny().eval(), example_input=torch.rand(1, 3, 8, 8))
    convs = [op.get_friendly_name() for op in graph.get_ordered_ops() if op.get_type_name() == "Convolution"]
    muls = [op.get_friendly_name() for op in graph.get_ordered_ops() if op.get_type_name() == "Multiply"]
    assert sensitive_nodes(graph, ("first_conv",)) == [convs[0]]
    assert sensitive_nodes(graph, ("upsampler",)) == [convs[-1]]
    gates = sensitive_nodes(graph, ("gates",))
    assert len(gates) == 1 and gates[0] in muls
    with pytest.raises(ValueError, match="unknown int8 layer groups"):
        sensitive_nodes(graph, ("everything",))


def test_cli_upscale_with_openvino(tmp_path: Path, weights_dir: Path) -> None:
    rng = np.random.default_rng(5)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    smooth = np.asarray(PILImage.fromarray(small).resize((20, 16), PILImage.BICUBIC))
    PILImage.fromarray(smooth).save(tmp_path / "a.png")
    result = CliRunner().invoke(app, ["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--model",
                                      "span", "--backend", "openvino", "--threads", "1"])
    assert result.exit_code == 0, result.output
    got = read_rgb_uint8(tmp_path / "out" / "a.png").astype(np.int16)
    reference = tensor_to_uint8(upscale(effsr.load("span"), uint8_to_tensor(smooth))).astype(np.int16)
    assert got.shape == reference.shape and np.abs(got - reference).max() <= 1  # fp32: at most one 8-bit level


def test_missing_openvino_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: object, **kwargs: object) -> object:
        return None if name.split(".")[0] in ("openvino", "nncf") else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(MissingDependencyError, match=r"pip install 'effsr\[openvino\]'"):
        prepare(nn.Conv2d(3, 3, 3), "openvino")
    PILImage.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    result = CliRunner().invoke(app, ["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--model",
                                      "span", "--backend", "openvino"])
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 2 and lines == ["error: --backend openvino needs the openvino package: pip install "
                                               "'effsr[openvino]'"], result.output


def test_a_graph_the_plugin_cannot_compile_is_one_line(weights_dir: Path) -> None:
    """OpenVINO's CPU plugin can reject a graph it converted (measured: AGDN's int8 graph on an AVX-512 VNNI CPU,
    "Check 'any_of(scale.size(), OC, 1U)' failed"): a BackendError naming the check and what to use instead."""
    engine = prepare(effsr.load("span"), "openvino", threads=1, example_size=SIZE, verify=False)

    class Core:
        def compile_model(self, *args: object) -> None:
            raise RuntimeError("Exception from src/inference/src/cpp/core.cpp:117:\nException from "
                               "src/inference/src/dev/plugin.cpp:54:\nCheck 'any_of(scale.size(), OC, 1U)' failed at "
                               "src/plugins/intel_cpu/src/dnnl_postops_composer.cpp:526\n\n")

    engine._core = Core()
    with pytest.raises(BackendError) as info:
        engine._compile(object(), "int8")
    message = str(info.value)
    assert "\n" not in message and "Check 'any_of(scale.size(), OC, 1U)' failed" in message
    assert message.endswith("use --backend fast --precision int8")


def test_overflow_fix_follows_the_real_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """7-bit weights (NNCF's overflow fix) only where int8 sums can saturate: the real flags, not $EFFSR_CPU_FLAGS."""
    from effsr import runtime
    from effsr.deploy.openvino import Int8Settings, overflow_fix_for_this_cpu

    monkeypatch.setenv("EFFSR_CPU_FLAGS", "avx2 avx512_vnni")
    monkeypatch.setattr(runtime, "cpu_flags", lambda: "sse4_2 avx2 fma avx512f")
    assert overflow_fix_for_this_cpu() == "enable"
    monkeypatch.setattr(runtime, "cpu_flags", lambda: "sse4_2 avx2 fma avx512f avx512_vnni")
    assert overflow_fix_for_this_cpu() == "disable"
    assert Int8Settings().overflow_fix is None  # the default asks the CPU


def test_cpu_only() -> None:
    with pytest.raises(DeviceError, match="cpu only"):
        OpenVinoEngine(nn.Conv2d(3, 3, 3), device=torch.device("cuda"))


def test_eval_runs_the_openvino_backend(set5_crops: Path, tmp_path: Path, weights_dir: Path) -> None:
    """``effsr eval --backend openvino`` scores the same PSNR as eager (fp32 OpenVINO is within FP32_TOLERANCE, a
    fraction of one uint8 step, so at most a rare rounding flip)."""
    means = {b: eval_mean(set5_crops, "rlfn", tmp_path / f"{b}.json", "--backend", b) for b in ("eager", "openvino")}
    assert means["openvino"]["psnr_rgb"] == pytest.approx(means["eager"]["psnr_rgb"], abs=1e-3)
    assert means["openvino"]["psnr_y"] == pytest.approx(means["eager"]["psnr_y"], abs=1e-3)
