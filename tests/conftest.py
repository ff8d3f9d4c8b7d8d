"""Shared fixtures: the assets folder (``$EFFSR_ASSETS``, default ../shared) and deterministic settings.

When ``CI=true`` a missing asset fails the run; elsewhere the test is skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

# The references in ../shared/reference were computed where oneDNN ran its AVX2 convolution kernels. On CPUs
# with AVX-512 oneDNN picks other kernels whose float32 summation order differs, which flips a few more uint8
# roundings than the issue allows (SPAN butterfly: 1.2e-4 of values vs 1e-4). Capping the ISA reproduces the
# references exactly (max abs 0.0 for RLFN/SPAN/SAFMN++); it must be set before oneDNN initialises.
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
# Likewise ATen's own vectorised kernels (GELU, sigmoid...) dispatch on the CPU capability; AVX2 makes MDRN-S,
# MDRN and MSN equal to the references bit for bit (otherwise ~1e-6 apart, within tolerance but not exact).
os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")

import torch  # noqa: E402
from PIL import Image as PILImage  # noqa: E402

from effsr.imageio import read_rgb_uint8  # noqa: E402
from effsr.runtime import single_thread  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# The NTIRE 2025 and 2026 zoo entries, under the keys of ../shared/official/README.md and ../shared/reference
# (metrics_ntire2025_2026/, complexity_ntire2025_2026.json).
ZOO_2025_2026 = ("efdn", "dscf", "spanf", "safmnv3", "espan", "pds", "pkdsr", "disp", "dscf_fused", "spanv2")
ASSETS = Path(os.environ.get("EFFSR_ASSETS", REPO.parent / "shared")).resolve()
IN_CI = os.environ.get("CI", "").lower() == "true"
# The side of the LR centre crops of the set5_crops folder.
SET5_CROP = 36

# The references were computed on 2 threads; keep the same count so reductions match.
torch.set_num_threads(2)


def load_benchmark(name: str) -> ModuleType:
    """The script ``benchmarks/<name>.py`` imported as module ``name`` (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def require(path: Path) -> Path:
    """Return ``path`` if it exists; fail in CI, skip elsewhere."""
    if path.exists():
        return path
    msg = f"missing asset {path} (set EFFSR_ASSETS)"
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def assets() -> Path:
    return require(ASSETS)


@pytest.fixture(scope="session")
def weights_dir(assets: Path) -> Path:
    return require(assets / "weights")


@pytest.fixture(scope="session")
def data_dir(assets: Path) -> Path:
    return require(assets / "data")


@pytest.fixture(scope="session")
def reference_dir(assets: Path) -> Path:
    return require(assets / "reference")


def eval_mean(folder: Path, model: str, out: Path, *options: str) -> dict:
    """``effsr eval FOLDER -m MODEL --threads 1 --json OUT OPTIONS...`` through the CLI; its JSON's ``mean``."""
    from typer.testing import CliRunner

    from effsr.cli import app

    result = CliRunner().invoke(app, ["eval", str(folder), "-m", model, "--threads", "1", "--json", str(out),
                                      *options])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())["mean"]


@pytest.fixture(scope="session")
def set5_crops(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Set5 as a dataset folder of centre crops: LR ``SET5_CROP`` x ``SET5_CROP`` (smaller images whole) and the HR
    to match (the low-precision cost tests and ``effsr eval`` on other backends)."""
    out = tmp_path_factory.mktemp("set5_crops")
    (out / "HR").mkdir()
    (out / "LR_bicubic" / "X4").mkdir(parents=True)
    for lr_path in sorted(require(data_dir / "Set5" / "LR_bicubic" / "X4").glob("*.png")):
        lr = read_rgb_uint8(lr_path)
        hr = read_rgb_uint8(data_dir / "Set5" / "HR" / lr_path.name)
        h, w = lr.shape[:2]
        top, left = max(0, (h - SET5_CROP) // 2), max(0, (w - SET5_CROP) // 2)
        lr_c = lr[top:top + SET5_CROP, left:left + SET5_CROP]
        hr_c = hr[4 * top:4 * (top + lr_c.shape[0]), 4 * left:4 * (left + lr_c.shape[1])]
        PILImage.fromarray(lr_c).save(out / "LR_bicubic" / "X4" / lr_path.name)
        PILImage.fromarray(hr_c).save(out / "HR" / lr_path.name)
    return out


@pytest.fixture(scope="session")
def set5_metrics(reference_dir: Path) -> dict:
    return json.loads(require(reference_dir / "metrics" / "Set5.json").read_text())


@pytest.fixture(scope="session")
def zoo(weights_dir: Path) -> Callable[[str], torch.nn.Module]:
    """``zoo(name)``: the zoo model with its default official weights, loaded once per session (eval mode, no grad).

    Shared between test modules: a test must not change the model it gets (build or load its own to do that).
    """
    import effsr

    cache: dict[str, torch.nn.Module] = {}

    def load(name: str) -> torch.nn.Module:
        if name not in cache:
            cache[name] = effsr.load(name)
        return cache[name]

    return load


@pytest.fixture(autouse=True)
def _weights_mirror(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Point the offline mirror at the shared weights and the cache at a temp dir: tests never download."""
    monkeypatch.setenv("EFFSR_WEIGHTS_DIR", str(ASSETS / "weights"))
    monkeypatch.setenv("EFFSR_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread for a test module (``pytestmark = pytest.mark.usefixtures("one_thread")``): the numbers
    checked do not depend on the thread count, and on a shared 2-core machine two OpenMP threads stall on each other
    (the many small operators of these models ran up to 10x slower)."""
    with single_thread():
        yield


def make_test_vector(h: int = 40, w: int = 48) -> torch.Tensor:
    """specs/README.md section 4: x[0,c,h,w] = ((37 * (c*H*W + h*W + w)) mod 256) / 255, float64 -> float32."""
    idx = torch.arange(3 * h * w, dtype=torch.float64)
    return ((37 * idx) % 256 / 255).to(torch.float32).view(1, 3, h, w)
