"""The tiling contract (``effsr.tiling``) and tiled upscaling through every backend.

Every zoo model with weights runs through every backend with small tiles, and its tiled output is compared with the
whole-image output of the same backend, at the bounds the README promises: max abs 1e-5 for purely local models
(``TilingSpec.exact``) when the seam band covers the receptive radius, at least 45 dB otherwise. The inputs are two
108 x 108 crops of Set14 LR images; the ``barbara`` crop is where AGDN fell to 39 dB when an engine dropped its
minimum tile (every tile of 64 instead of 96 pixels). Low-precision backends join by adding a :class:`Case` with
their own bounds to :data:`CASES`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch
from torch import nn

import effsr
from effsr.deploy import prepare
from effsr.imageio import read_rgb_uint8, uint8_to_tensor
from effsr.infer import _ChannelAdapter, upscale
from effsr.models import get_spec, list_models
from effsr.tiling import TilingSpec, tiling_of

from .conftest import require

ZOO = [name for name in list_models() if get_spec(name).weights]
# (image, top, left): 108 x 108 crops, so that both share every tile shape (one ONNX export per shape).
CROPS = (("barbara", 0, 0), ("ppt3", 56, 24))
CROP = 108
# Small tiles: 64 pixels with a 16-pixel overlap (the invisible-seam bound); for exact models the overlap must
# reach twice the receptive radius (band = radius, see effsr.infer.plan_tiles): tiles of four radii, two of overlap
# (SPAN: 84-pixel tiles, 42 of overlap).
TILE, OVERLAP = 64, 16


def _exact_tiles(spec: TilingSpec) -> tuple[int, int]:
    radius = int(spec.receptive_radius or 0)
    return 4 * radius, 2 * radius


@dataclass(frozen=True)
class Case:
    """A backend and precision, with the bounds of its tiled output against its own whole-image output."""

    backend: str
    precision: str = "fp32"
    exact_max_abs: float = 1e-5  # README: exact (max abs 1e-5) for purely local models
    min_psnr_db: float = 45.0  # README: at least 45 dB for the others

    def __str__(self) -> str:
        return f"{self.backend}-{self.precision}"


CASES = [Case("eager"), Case("fast"), Case("onnxruntime")]

pytestmark = pytest.mark.usefixtures("one_thread")


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.clamp(0, 1) - b.clamp(0, 1)).double() ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


@pytest.fixture(scope="module")
def crops(data_dir: Path) -> list[tuple[str, torch.Tensor]]:
    out = []
    for name, top, left in CROPS:
        img = uint8_to_tensor(read_rgb_uint8(require(data_dir / "Set14" / "LR_bicubic" / "X4" / f"{name}.png")))
        out.append((name, img[:, :, top : top + CROP, left : left + CROP].contiguous()))
    return out


# bfloat16 on two models, one purely local (SPAN) and one with global statistics (RLFN's ESA), each with the
# bounds of the float32 cases stretched to bfloat16's: the low-precision tolerance for exact models (measured: 0, the
# same sums in every tile) and 45 dB otherwise (measured: 50.6 dB, RLFN on barbara). The whole zoo in bfloat16 would
# take minutes here (no native bfloat16 kernels on the test CPU), so two models stand for the two kinds.
LOW_PRECISION_CASES = [("rlfn", Case("fast", "bf16", exact_max_abs=6e-2)), ("span", Case("fast", "bf16",
                                                                                         exact_max_abs=6e-2))]


@pytest.mark.parametrize(("name", "case"), LOW_PRECISION_CASES, ids=lambda v: str(v))
def test_low_precision_tiles_match_the_whole_image(name: str, case: Case, crops, weights_dir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EFFSR_CPU_FLAGS", "avx2 avx512_bf16")  # the arithmetic, not this host's kernels
    _check_tiles(name, case, crops)


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("name", ZOO)
def test_tiles_match_the_whole_image_through_every_backend(name: str, case: Case, crops, weights_dir: Path) -> None:
    _check_tiles(name, case, crops)


def _check_tiles(name: str, case: Case, crops: list[tuple[str, torch.Tensor]]) -> None:
    model = effsr.load(name)
    engine = prepare(model, case.backend, precision=case.precision, threads=1, example_size=(CROP, CROP),
                     tune_malloc=False)
    assert engine.tiling == model.tiling  # carried whole: scale, sizes, stride period, minimum tile, radius
    spec = model.tiling
    tile, overlap = _exact_tiles(spec) if spec.exact else (TILE, OVERLAP)
    for image, x in crops:
        whole = upscale(engine, x, tile=0)
        tiled = upscale(engine, x, tile=tile, tile_overlap=overlap)
        assert tiled.shape == whole.shape == (1, 3, CROP * spec.scale, CROP * spec.scale)
        if spec.exact:
            err = float((tiled - whole).abs().max())
            assert err <= case.exact_max_abs, f"{name} {case} {image}: tiled differs by {err:.2e}"
        else:
            psnr = _psnr(tiled, whole)
            assert psnr >= case.min_psnr_db, f"{name} {case} {image}: tiled vs whole {psnr:.1f} dB"


def test_dropping_the_minimum_tile_is_caught(crops, weights_dir: Path) -> None:
    """The test above has teeth: AGDN tiled at 64 pixels (its 96-pixel minimum ignored) falls below 45 dB."""
    model = effsr.load("agdn")
    barbara = crops[0][1]
    whole = upscale(model, barbara, tile=0)
    model.tiling = replace(model.tiling, min_tile=0)
    assert _psnr(upscale(model, barbara, tile=TILE, tile_overlap=OVERLAP), whole) < 45.0


# ---- the spec itself ------------------------------------------------------------------------------------------


def test_every_architecture_declares_its_spec() -> None:
    for name in list_models():
        model = effsr.build_model(name)
        spec = model.tiling
        assert isinstance(spec, TilingSpec) and spec.scale == model.scale, name
        assert tiling_of(model) is spec


def test_spec_validation_padding_and_json() -> None:
    spec = TilingSpec(scale=4, min_size=15, size_multiple=8, stride_period=6, min_tile=96)
    assert spec.padded_size(7, 30) == (16, 32)  # min_size first, then the multiple
    assert spec.padded_size(16, 17) == (16, 24)
    assert TilingSpec.from_json(spec.to_json()) == spec
    for bad in ({"scale": 0}, {"scale": 4, "min_size": 0}, {"scale": 4, "stride_period": 0},
                {"scale": 4, "min_tile": -1}, {"scale": 4, "receptive_radius": -2}, {"scale": 4, "exact": True}):
        with pytest.raises(ValueError):
            TilingSpec(**bad)


def test_tiling_of_plain_modules_and_old_declarations() -> None:
    class Plain(nn.Module):
        scale = 3

    assert tiling_of(Plain()) == TilingSpec(scale=3)
    assert tiling_of(nn.Identity()) == TilingSpec(scale=4)

    class OldStyle(nn.Module):
        scale, min_size, tile_multiple = 4, 15, 6

    with pytest.raises(TypeError, match="TilingSpec"):  # refused, never half-read
        tiling_of(OldStyle())
    wrong = nn.Identity()
    wrong.tiling = {"scale": 4}
    with pytest.raises(TypeError, match="TilingSpec"):
        tiling_of(wrong)


def test_size_multiple_pads_and_crops_back() -> None:
    class Needs8(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tiling = TilingSpec(scale=2, size_multiple=8)
            self.seen: list[tuple[int, int]] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.seen.append(tuple(x.shape[2:]))
            assert x.shape[2] % 8 == 0 and x.shape[3] % 8 == 0
            return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")

    net = Needs8()
    x = torch.rand(1, 3, 13, 21)
    out = upscale(net, x, tile=0)
    assert out.shape == (1, 3, 26, 42) and net.seen == [(16, 24)]
    assert torch.equal(out, torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest"))


def test_wrappers_carry_the_spec() -> None:
    model = effsr.build_model("agdn").eval()
    assert _ChannelAdapter(model).tiling == model.tiling
    assert prepare(model, "eager").tiling == model.tiling
