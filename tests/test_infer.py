"""Tiling, padding, memory budget and image handling of ``effsr.infer``.

* Exactness: for models whose output depends only on a bounded neighbourhood, tiled output equals the whole-image
  output (max abs 1e-5) when the feathering band covers the receptive radius and the grid respects the strides:
  small randomly initialised local models of our own, and SPAN with its official weights.
* Invisible tiles: for the zoo models with global statistics, global/windowed attention or position-dependent
  resizes, at least 45 dB PSNR between tiled and whole-image output on every Set14 image.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import effsr
from effsr.deploy import prepare
from effsr.imageio import Image, read_rgb_uint8, uint8_to_tensor
from effsr.infer import (
    CONSERVATIVE_BYTES_PER_LR_PIXEL,
    MEMORY_SAFETY_FACTOR,
    _axis_weight,
    auto_tile_size,
    bytes_per_lr_pixel,
    parse_memory_size,
    plan_tiles,
    upscale,
    upscale_image,
)
from effsr.runtime import single_thread
from effsr.tiling import TilingSpec, tiling_of

from .conftest import require


class LocalNet(nn.Module):
    """``depth`` zero-padded 3x3 convs at LR resolution, then PixelShuffle: receptive radius = depth (LR pixels)."""

    def __init__(self, depth: int = 4, width: int = 8, scale: int = 4, seed: int = 0) -> None:
        super().__init__()
        self.tiling = TilingSpec(scale=scale)
        chans = [3] + [width] * (depth - 1) + [3 * scale * scale]
        with torch.random.fork_rng():  # deterministic weights without touching the global RNG
            torch.manual_seed(seed)
            self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(chans, chans[1:], strict=False))
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i < len(self.convs) - 1:
                x = F.leaky_relu(x, 0.1)
        return self.shuffle(x)


class StridedNet(nn.Module):
    """A local model with a stride-2 grid: conv, 2x2 average pool, conv at half resolution, nearest x2 back.

    Its output depends on the position modulo 2, so tiles are exact only when they start on even pixels
    (``stride_period = 2``) of an image with even sizes. Receptive radius 5 LR pixels (c1: 1, pooled conv read back
    through the nearest resize: 3, c3: 1).
    """

    def __init__(self, scale: int = 2) -> None:
        super().__init__()
        self.tiling = TilingSpec(scale=scale, min_size=2, stride_period=2)
        with torch.random.fork_rng():
            torch.manual_seed(1)
            self.c1 = nn.Conv2d(3, 8, 3, padding=1)
            self.c2 = nn.Conv2d(8, 8, 3, padding=1)
            self.c3 = nn.Conv2d(8, 3 * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = F.relu(self.c1(x))
        g = F.interpolate(F.relu(self.c2(F.avg_pool2d(f, 2))), scale_factor=2, mode="nearest")
        return self.shuffle(self.c3(f + g))


class NearestNet(nn.Module):
    """Nearest-neighbour x3 upscaling (receptive radius 0): any tiling must reproduce it exactly."""

    scale = 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=3, mode="nearest")


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# One intra-op thread for the heavy zoo-model checks (results do not depend on it; see conftest.one_thread).
_one_thread = single_thread


def _psnr01(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.clamp(0, 1) - b.clamp(0, 1)).double() ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


# ---------------------------------------------------------------------------------------------------------------
# Tile grid and weights.


def test_plan_tiles_invariants() -> None:
    rng = np.random.default_rng(0)
    for _ in range(3000):
        m = int(rng.choice([1, 2, 6, 8, 12]))
        tile = int(rng.integers(1, 90))
        overlap = int(rng.integers(0, tile // 2 + 1))
        length = int(rng.integers(1, 400))
        grid = plan_tiles(length, 7, tile, overlap, multiple=m)
        segs = grid.rows
        assert segs[0][0] == 0 and segs[-1][1] == length
        for (s0, e0), (s1, _) in zip(segs, segs[1:], strict=False):
            assert s1 % m == 0 and s0 < s1 and e0 - s1 >= overlap  # aligned starts, overlap respected
        assert 2 * grid.band <= overlap and grid.band + grid.ramp <= overlap
        total = torch.zeros(length * 2)
        for seg in segs:
            total[seg[0] * 2 : seg[1] * 2] += _axis_weight(seg, length, 2, grid.band, grid.ramp)
        assert float(total.min()) > 0  # every output pixel gets weight


def test_plan_tiles_rejects_bad_overlap() -> None:
    with pytest.raises(ValueError, match="half"):
        plan_tiles(100, 100, 40, 21)
    with pytest.raises(ValueError):
        plan_tiles(100, 100, 0, 0)


def test_feather_weights_are_zero_on_the_band_and_complementary() -> None:
    grid = plan_tiles(100, 100, 40, 16)  # band 4, ramp 8
    assert (grid.band, grid.ramp) == (4, 8)
    w = _axis_weight((30, 70), 100, 4, grid.band, grid.ramp)
    assert float(w[: 4 * 4].abs().max()) == 0 and float(w[-4 * 4 :].abs().max()) == 0
    assert float(w[4 * 12 : -4 * 12].min()) == 1
    left = _axis_weight((0, 40), 100, 4, grid.band, grid.ramp)
    # Where two tiles overlap by exactly the nominal overlap, their ramps sum to one.
    assert torch.allclose(left[4 * 24 :] + w[: 4 * 16], torch.ones(4 * 16))


@pytest.mark.parametrize(("h", "w", "tile", "overlap"), [(50, 70, 16, 4), (33, 97, 20, 10), (64, 64, 21, 0)])
def test_tiling_reproduces_a_zero_radius_model_exactly(h: int, w: int, tile: int, overlap: int) -> None:
    x = _rand(2, 3, h, w)
    calls: list[tuple[int, int]] = []
    out = upscale(NearestNet(), x, tile=tile, tile_overlap=overlap, on_tile=lambda d, t: calls.append((d, t)))
    assert len(calls) > 1 and calls[-1][0] == calls[-1][1]
    assert torch.allclose(out, F.interpolate(x, scale_factor=3, mode="nearest"), atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------------------------------
# Exactness for local models.


@pytest.mark.parametrize(("h", "w"), [(97, 131), (64, 200)])
def test_tiles_equal_whole_image_when_band_covers_receptive_radius(h: int, w: int) -> None:
    net = LocalNet(depth=5).eval()  # receptive radius 5
    x = _rand(1, 3, h, w, seed=h)
    whole = upscale(net, x, tile=0)
    tiled = upscale(net, x, tile=48, tile_overlap=20)  # band = 20 // 4 = 5
    assert float((tiled - whole).abs().max()) <= 1e-5
    short = upscale(net, x, tile=48, tile_overlap=12)  # band 3 < 5: seams show, so the check above has teeth
    assert float((short - whole).abs().max()) > 1e-4


def test_declared_receptive_radius_allows_a_smaller_overlap() -> None:
    net = LocalNet(depth=5).eval()
    net.tiling = replace(net.tiling, receptive_radius=5)
    x = _rand(2, 3, 80, 90, seed=3)
    tiled = upscale(net, x, tile=32, tile_overlap=10)  # band = 5 from the declaration, ramp 0
    assert float((tiled - upscale(net, x, tile=0)).abs().max()) <= 1e-5


def test_strided_model_needs_aligned_tiles() -> None:
    net = StridedNet().eval()
    x = _rand(1, 3, 90, 118, seed=5)
    whole = upscale(net, x, tile=0)
    assert float((upscale(net, x, tile=48, tile_overlap=24) - whole).abs().max()) <= 1e-5  # band 6 >= radius 5
    net.tiling = replace(net.tiling, stride_period=1)
    grid = plan_tiles(90, 118, 48, 24)
    assert any(s % 2 for s, _ in grid.rows + grid.cols)  # an odd start shifts the pooling grid
    assert float((upscale(net, x, tile=48, tile_overlap=24) - whole).abs().max()) > 1e-4


def _set14(data_dir: Path) -> list[Path]:
    files = sorted(require(data_dir / "Set14" / "LR_bicubic" / "X4").glob("*.png"))
    assert len(files) == 14
    return files


def test_span_tiles_are_exact(data_dir: Path) -> None:
    """SPAN is purely local: 21 zero-padded 3x3 convs at LR resolution (specs/SPAN.md section 3), radius 21."""
    model = effsr.load("span")
    declared_spec = model.tiling
    assert declared_spec.receptive_radius == 21 and declared_spec.exact
    x = uint8_to_tensor(read_rgb_uint8(_set14(data_dir)[1]))  # barbara, 144x180
    with _one_thread():
        whole = upscale(model, x, tile=0)
        model.tiling = replace(declared_spec, receptive_radius=None, exact=False)
        undeclared = upscale(model, x, tile=168, tile_overlap=84)  # band 84 // 4 = 21
        assert float((undeclared - whole).abs().max()) <= 1e-5
        model.tiling = declared_spec
        declared = upscale(model, x, tile=96, tile_overlap=42)  # band 21 from the declaration
        assert float((declared - whole).abs().max()) <= 1e-5


# Tiling facts per zoo model (infer.py module docstring): the period of the strided/pooled grids and, for AGDN, the
# attention window. Each architecture file must declare them in its TilingSpec.
TILING_FACTS: dict[str, dict[str, int]] = {
    "rlfn": {"stride_period": 6},  # ESA: stride-2 conv, then max-pool stride 3
    "lsanet": {"stride_period": 6},
    "ifadnet": {"stride_period": 6},
    "mdrn_s": {"stride_period": 6},  # MDSA: stride-2 BSConvU, pools/local variance at stride 3
    "mdrn": {"stride_period": 6},
    "msn": {"stride_period": 12},  # stride 2 in both separable halves (1/4 resolution), then stride 3
    "agdn": {"stride_period": 6, "min_tile": 96},  # MVSA stride 2 x 3; TLC attention windows of 96 (AGDN.md 3.6)
    "safmnpp": {"stride_period": 8},  # adaptive max-pool to (h//8, w//8)
    "efdn": {"stride_period": 6},  # ESA as RLFN's: stride-2 conv, then max-pool stride 3
    "safmnv3": {"stride_period": 8, "min_tile": 96},  # adaptive max-pool to (h//8, w//8); whole-map variance
}


@pytest.mark.slow
def test_tiles_are_invisible_on_set14(data_dir: Path) -> None:
    """>= 45 dB between tiled (64-pixel tiles, 16-pixel overlap) and whole-image output, every Set14 image."""
    files = _set14(data_dir)
    images = [uint8_to_tensor(read_rgb_uint8(f)) for f in files]
    worst: dict[str, tuple[float, str]] = {}
    for name, facts in TILING_FACTS.items():
        model = effsr.load(name)
        for attr, value in facts.items():
            assert getattr(tiling_of(model), attr) == value, (name, attr)
        for f, x in zip(files, images, strict=True):
            with _one_thread():
                psnr = _psnr01(upscale(model, x, tile=64, tile_overlap=16), upscale(model, x, tile=0))
            if psnr < worst.get(name, (math.inf, ""))[0]:
                worst[name] = (psnr, f.stem)
    assert all(p >= 45.0 for p, _ in worst.values()), worst


# ---------------------------------------------------------------------------------------------------------------
# Padding to the minimum size.


def test_small_images_are_padded_and_cropped_back() -> None:
    net = LocalNet(depth=3).eval()
    net.tiling = replace(net.tiling, min_size=29)
    x = _rand(1, 3, 10, 12, seed=9)
    out = upscale(net, x)
    assert out.shape == (1, 3, 40, 48)
    expected = net(F.pad(x, (0, 17, 0, 19), mode="replicate"))[..., :40, :48]
    assert torch.equal(out, expected)
    # Tiles narrower than the minimum (a thin image) are padded the same way.
    thin = _rand(1, 3, 12, 90, seed=10)
    tiled = upscale(net, thin, tile=40, tile_overlap=12)
    assert tiled.shape == (1, 3, 48, 360) and torch.isfinite(tiled).all()


def test_official_model_pads_below_min_size() -> None:
    model = effsr.load("rlfn")  # minimum size 15 (../shared/specs/README.md section 5)
    x = _rand(1, 3, 7, 9, seed=11)
    out = upscale(model, x)
    assert out.shape == (1, 3, 28, 36) and torch.isfinite(out).all()


# ---------------------------------------------------------------------------------------------------------------
# Memory budget.


def test_parse_memory_size() -> None:
    assert parse_memory_size("2G") == 2 * 10**9
    assert parse_memory_size("1.5GB") == 1_500_000_000
    assert parse_memory_size("512MiB") == 512 * 2**20
    assert parse_memory_size(" 800 m ") == 800 * 10**6
    assert parse_memory_size(12345) == 12345
    assert parse_memory_size(None) is None
    for bad in ("lots", "2X", "-1G", "0"):
        with pytest.raises(ValueError):
            parse_memory_size(bad)


class OneConv(nn.Module):
    scale = 1

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_memory_probe_counts_tensor_bytes() -> None:
    # One conv: the only tensor made is the 8-channel float32 output (32 B per pixel), plus the 12 B input.
    assert bytes_per_lr_pixel(OneConv()) == pytest.approx(44.0)
    net = LocalNet()
    net.bytes_per_lr_pixel = 1000.0
    assert bytes_per_lr_pixel(net) == 1000.0


def test_memory_probe_falls_back_to_conservative() -> None:
    class Broken(nn.Module):
        scale = 4

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("not traceable")

    assert bytes_per_lr_pixel(Broken()) == CONSERVATIVE_BYTES_PER_LR_PIXEL


def test_auto_tile_size_respects_the_budget() -> None:
    net = LocalNet()
    per_px = bytes_per_lr_pixel(net) * MEMORY_SAFETY_FACTOR
    assert auto_tile_size(net, torch.empty(1, 3, 100, 100)) == 0  # fits: whole image
    big = torch.empty(1, 3, 2000, 2000)
    budget = 1_200_000_000
    tile = auto_tile_size(net, big, max_memory=budget)
    resident = 3 * 2000 * 2000 * 16 * 4 + big.numel() * 4
    assert tile > 0 and resident + tile * tile * (per_px + 16 * 4) <= budget
    assert resident + (tile + 1) ** 2 * (per_px + 16 * 4) > budget  # the largest such tile
    assert auto_tile_size(net, big, max_memory="100MB", tile_overlap=32) == 128  # too small: the minimum tile


def test_budget_drives_tiling_end_to_end() -> None:
    net = LocalNet(depth=4).eval()
    x = _rand(1, 3, 120, 150, seed=4)
    calls: list[int] = []
    out = upscale(net, x, max_memory="6MB", tile_overlap=16, on_tile=lambda d, t: calls.append(t))
    assert calls and calls[-1] > 1  # it tiled
    assert float((out - upscale(net, x, tile=0)).abs().max()) <= 1e-5


# ---------------------------------------------------------------------------------------------------------------
# Images: grayscale and alpha.


def test_upscale_image_grayscale_stays_gray() -> None:
    net = LocalNet().eval()
    g = _rand(1, 1, 20, 24, seed=6)
    img = Image(rgb=g.expand(1, 3, 20, 24), bit_depth=16, was_grayscale=True)
    sr = upscale_image(net, img)
    assert sr.was_grayscale and sr.bit_depth == 16 and sr.rgb.shape == (1, 3, 80, 96)
    assert torch.equal(sr.rgb[:, 0], sr.rgb[:, 2])
    expected = upscale(net, g.expand(1, 3, 20, 24).contiguous()).mean(1)
    assert torch.allclose(sr.rgb[:, 0], expected, atol=1e-6)


def test_upscale_image_alpha() -> None:
    net = LocalNet().eval()
    rgb = _rand(1, 3, 20, 24, seed=7)
    opaque = upscale_image(net, Image(rgb=rgb, alpha=torch.ones(1, 1, 20, 24)))
    assert opaque.alpha is not None and opaque.alpha.shape == (1, 1, 80, 96) and bool((opaque.alpha == 1).all())
    assert torch.equal(opaque.rgb, upscale(net, rgb))
    a = _rand(1, 1, 20, 24, seed=8)
    by_model = upscale_image(net, Image(rgb=rgb, alpha=a))
    expected = upscale(net, a.expand(1, 3, 20, 24).contiguous()).mean(1, keepdim=True).clamp(0, 1)
    assert torch.allclose(by_model.alpha, expected, atol=1e-6)
    bicubic = upscale_image(net, Image(rgb=rgb, alpha=a), alpha="bicubic")
    assert torch.allclose(bicubic.alpha, F.interpolate(a, scale_factor=4, mode="bicubic").clamp(0, 1))
    with pytest.raises(ValueError):
        upscale_image(net, Image(rgb=rgb, alpha=a), alpha="nearest")  # type: ignore[arg-type]


def test_upscale_image_tiled_gray_alpha_matches_whole() -> None:
    net = LocalNet(depth=3).eval()
    img = Image(rgb=_rand(1, 1, 70, 90, seed=12).expand(1, 3, 70, 90), alpha=_rand(1, 1, 70, 90, seed=13),
                was_grayscale=True)
    whole = upscale_image(net, img, tile=0)
    tiled = upscale_image(net, img, tile=40, tile_overlap=12)
    assert float((whole.rgb - tiled.rgb).abs().max()) <= 1e-5
    assert float((whole.alpha - tiled.alpha).abs().max()) <= 1e-5


# ---------------------------------------------------------------------------------------------------------------
# Backend seam.


def test_prepare_is_the_one_entry_point() -> None:
    """effsr.deploy.prepare serves the CLI and the API: fast by default, the caller's model never modified."""
    net = LocalNet().train()
    eager = prepare(net, "eager")
    assert eager.backend == "eager" and not eager.model.training
    assert not any(p.requires_grad for p in eager.model.parameters())
    assert net.training and all(p.requires_grad for p in net.parameters())  # the model passed in is left as it was
    assert prepare(net).backend == "fast"
    x = torch.rand(1, 3, 24, 30)
    with torch.no_grad():
        ref = net(x)
        assert torch.equal(eager(x), ref)
    for backend in ("fast", "onnxruntime"):  # the engines of effsr.deploy.backends, exact within 5e-4
        with torch.no_grad():
            out = prepare(net, backend)(x)
        assert float((out - ref).abs().max()) <= 5e-4, backend
    with pytest.raises(ValueError, match="backend"):
        prepare(net, "tensorrt")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            prepare(net, device="cuda")
    threads = torch.get_num_threads()
    try:
        prepare(net, "eager", threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
