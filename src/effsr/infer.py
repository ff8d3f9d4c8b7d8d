"""The single inference contract: ``upscale(model, lr)``, with padding, tiling and a memory budget.

``upscale`` takes a plain ``nn.Module`` whose boundary is float RGB in [0,1] (NCHW) and returns its float output
(unclamped). Three regimes:

* **whole image** (the official protocol, used whenever the image fits the memory budget): one forward. Inputs smaller
  than the model's minimum size (or not a multiple of its size multiple) are padded at the bottom/right by edge
  replication, upscaled and cropped back.
* **tiled**, for large images or an explicit ``tile``: overlapping LR tiles of ``tile`` x ``tile`` pixels, each
  upscaled on its own, blended with feathered weights (:func:`plan_tiles` documents the weights). The tile grid starts
  on multiples of the model's stride period, the period of its strided/pooled grids.
* **automatic**: ``tile=None`` picks the largest tile whose estimated working set fits ``max_memory`` (default
  :data:`DEFAULT_MAX_MEMORY`); the per-pixel activation memory is measured per model on a small probe forward.

Exactness of tiling. A model whose output at a pixel depends only on LR pixels within a radius R (its *receptive
radius*) gives tiled output equal to the whole-image output (up to float rounding, ~1e-7) when the feathering band
(``overlap // 4``, see :class:`TileGrid`) is at least R and the tile grid respects its strides. Models describe their
sizes and tiling once, as one :class:`effsr.tiling.TilingSpec` (``model.tiling``, read by
:func:`effsr.tiling.tiling_of`; engines and wrappers carry the model's spec whole):

* ``stride_period`` (default 1): tile starts and sizes are multiples of it: the period of the model's strided and
  pooled grids, so that a tile's pooling windows sit where the whole image's do;
* ``min_tile`` (default 0): the smallest tile the model computes faithfully (AGDN: its 96-pixel attention window);
* ``receptive_radius`` (default None = unbounded or unknown): lets ``band = R`` when ``overlap // 4 < R``;
* ``min_size`` and ``size_multiple``: the padding above; ``exact``: whether the guarantee above holds.

Two memory overrides stay plain attributes of a model or engine: ``bytes_per_lr_pixel`` (replaces the measured
activation memory, for backends the probe cannot follow) and ``memory_safety_factor`` (replaces
:data:`MEMORY_SAFETY_FACTOR`; the fast engine keeps freed memory in its heap).

What each zoo model needs (measured in ``tests/test_infer.py``; the minimum is over the 14 Set14 images with 64-pixel
tiles and a 16-pixel overlap, the tiled output against the whole-image output, in [0,1] units):

=========== ================================ ========================================================== ============
model       declaration                      why                                                        Set14 min
=========== ================================ ========================================================== ============
span        ``receptive_radius=21``,         21 zero-padded 3x3 convs at LR resolution, no stride        exact
            ``exact=True``
rlfn,       ``stride_period=6``              ESA: stride-2 unpadded conv, max-pool 7/3 (period 6); the   47.6, 50.6,
lsanet,                                      bilinear resize back is given the *size*, so its sampling   47.3 dB
ifadnet                                      positions depend on the whole feature size: never exact
mdrn_s,     ``stride_period=6``              MDSA: stride-2 BSConvU, pools/local variance at stride 3;   50.3,
mdrn                                         CCA: channel mean/std over the whole image                  48.6 dB
msn         ``stride_period=12``             stride 2 in both separable halves (1/4 resolution), then 3  49.6 dB
agdn        ``stride_period=6``,             MVSA as MDRN; RCCA global statistics; TLC attention on       47.3 dB
            ``min_tile=96``                  96-pixel windows placed by the image size (AGDN.md 3.6)
safmnpp     ``stride_period=8``              adaptive max-pool to (h//8, w//8) then x8 bilinear: local    47.1 dB
                                             with period 8 for sizes that are multiples of 8, but with a
                                             receptive radius of ~150 LR pixels: not exact in practice
=========== ================================ ========================================================== ============

Without the declarations tiles still blend, but a shifted pooling grid costs up to ~4 dB (RLFN at 64-pixel tiles:
44.2 dB instead of 47.6) and AGDN tiles smaller than its attention window reach only ~41 dB.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from .errors import InvalidValueError
from .imageio import GRAY_WEIGHTS, Image
from .sizes import parse_memory_size
from .tiling import TilingSpec, tiling_of

log = logging.getLogger(__name__)

# The working-set budget when none is given: the whole-image output of a 2000x2000 x4 upscale (768 MiB in float32)
# plus tiles of a few hundred pixels fit, and the process stays well under 3 GB (benchmarks/RESULTS.md, "Memory").
DEFAULT_MAX_MEMORY = 1536 * 2**20
# Default LR overlap between neighbouring tiles: an 8-pixel zero-weight band and a 16-pixel blending ramp on each seam
# (see TileGrid). The Set14 test reaches >= 47 dB with every zoo model at half this overlap and 64-pixel tiles; the
# automatic tiles are several hundred pixels, where the overlap costs little.
DEFAULT_TILE_OVERLAP = 32
# The smallest automatic tile edge (LR pixels); smaller tiles waste most of their work on the overlap.
MIN_AUTO_TILE = 64
# Bytes per LR pixel assumed when a model's memory cannot be measured (a backend that does not run through PyTorch's
# dispatcher): 4x the largest zoo model's measured peak (MDRN x4, ~4 KB per LR pixel; benchmarks/RESULTS.md "Memory").
CONSERVATIVE_BYTES_PER_LR_PIXEL = 16 * 1024
# Measured tensor peaks miss allocator slack, oneDNN scratch buffers and heap fragmentation: the resident memory of
# a tile forward reached 1.9x the tracked tensor peak for MDRN-S (317 small convolutions) at a 505-pixel tile, 2000x2000
# image (benchmarks/memory_2000.py); plan with this margin.
MEMORY_SAFETY_FACTOR = 2.0
# Edge of the square probe input the per-pixel memory is measured on (a few tens of ms for every zoo model).
_PROBE_SIZE = 128

TileCallback = Callable[[int, int], None]


def model_scale(model: nn.Module) -> int:
    """The model's scale factor, from its :class:`~effsr.tiling.TilingSpec`."""
    return tiling_of(model).scale


# --------------------------------------------------------------------------------------------------------------------
# Memory.

class _PeakTensorMemory(TorchDispatchMode):
    """Tracks the bytes of tensor storages created during a forward and keeps their peak.

    Every aten op's outputs are registered by storage (views share their base's storage and count once); a storage
    leaves the count when its last reference dies. This is the tensor working set of an eager forward, the same on
    CPU and CUDA; allocator slack is covered by :data:`MEMORY_SAFETY_FACTOR`.
    """

    def __init__(self) -> None:
        super().__init__()
        from torch.multiprocessing.reductions import StorageWeakRef

        self._ref = StorageWeakRef
        self._live: dict[tuple[str, int], tuple[object, int]] = {}
        self.current = 0
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for key, (ref, n) in list(self._live.items()):
            if ref.expired():  # type: ignore[attr-defined]
                del self._live[key]
                self.current -= n
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                st = t.untyped_storage()
                key = (str(st.device), st.data_ptr())
                if key[1] and key not in self._live:
                    self._live[key] = (self._ref(st), st.nbytes())
                    self.current += st.nbytes()
        self.peak = max(self.peak, self.current)
        return out


_MEMORY_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[tuple, float]] = weakref.WeakKeyDictionary()


def _inner_model(model: nn.Module) -> nn.Module:
    return model.model if isinstance(model, _ChannelAdapter) else model


def bytes_per_lr_pixel(model: nn.Module, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                       channels: int = 3) -> float:
    """Peak tensor memory of one forward per LR pixel (batch 1), measured on a probe input and cached per model.

    A model (or a backend wrapper) may declare ``bytes_per_lr_pixel`` itself; otherwise the eager forward runs once
    on a ``_PROBE_SIZE`` square random input under a dispatch-mode tracker (:class:`_PeakTensorMemory`). When the
    measurement fails (a model outside PyTorch's dispatcher), :data:`CONSERVATIVE_BYTES_PER_LR_PIXEL` is used.
    The input tile itself is included.
    """
    declared = getattr(model, "bytes_per_lr_pixel", None)
    if declared is not None:
        return float(declared)
    inner = _inner_model(model)
    if inner is not model:
        channels = 3
    declared = getattr(inner, "bytes_per_lr_pixel", None)
    if declared is not None:
        return float(declared)
    key = (str(torch.device(device)), str(dtype), channels)
    cache = _MEMORY_CACHE.setdefault(inner, {})
    if key not in cache:
        size = max(tiling_of(inner).padded_size(_PROBE_SIZE, _PROBE_SIZE))
        probe = torch.rand(1, channels, size, size, generator=torch.Generator().manual_seed(0)).to(device, dtype)
        try:
            tracker = _PeakTensorMemory()
            with torch.inference_mode(), tracker:
                y = inner(probe)
            del y
            per_px = (tracker.peak + probe.numel() * probe.element_size()) / (size * size)
        except Exception as e:  # a backend the tracker cannot follow: be conservative, never fail the upscale
            log.debug("memory probe failed for %s: %s", type(inner).__name__, e)
            per_px = float(CONSERVATIVE_BYTES_PER_LR_PIXEL)
        cache[key] = per_px
    return cache[key]


def auto_tile_size(model: nn.Module, lr: torch.Tensor, *, max_memory: int | str | None = None,
                   tile_overlap: int = DEFAULT_TILE_OVERLAP) -> int:
    """The LR tile edge for ``lr`` under the budget, or 0 when the whole image fits (no tiling).

    Whole image: N x H x W x (bytes per LR pixel) x safety. Tiled: the float32 output accumulator and the input stay
    resident; each tile costs its forward's working set plus its weight map. The result is at least
    ``max(MIN_AUTO_TILE, 4 x overlap, min_size)``; when even that exceeds the budget, it is used anyway (the output
    alone may not fit) and a warning is logged.
    """
    budget = parse_memory_size(max_memory) or DEFAULT_MAX_MEMORY
    n, c, h, w = lr.shape
    spec = tiling_of(model)
    s = spec.scale
    if getattr(model, "bytes_per_lr_pixel", None) is None and \
            n * h * w * CONSERVATIVE_BYTES_PER_LR_PIXEL * MEMORY_SAFETY_FACTOR <= budget:
        return 0  # fits even at the conservative rate: no need to measure (benchmark-sized images)
    factor = getattr(model, "memory_safety_factor", None) or getattr(_inner_model(model), "memory_safety_factor", None)
    per_px = bytes_per_lr_pixel(model, device=lr.device, dtype=lr.dtype, channels=c) * float(
        factor or MEMORY_SAFETY_FACTOR)
    if n * h * w * per_px <= budget:
        return 0
    resident = n * c * h * w * s * s * 4 + lr.numel() * lr.element_size()
    per_tile_px = n * per_px + s * s * 4  # + the HR weight map of the tile
    smallest = max(MIN_AUTO_TILE, 4 * tile_overlap, spec.min_size, spec.min_tile)
    room = budget - resident
    tile = int(math.sqrt(room / per_tile_px)) if room > 0 else 0
    if tile < smallest:
        log.warning("memory budget %.2f GB is too small for a %dx%d x%d upscale; using %d-pixel tiles",
                    budget / 1e9, h, w, s, smallest)
        tile = smallest
    return tile


# --------------------------------------------------------------------------------------------------------------------
# Tiles.


@dataclass(frozen=True)
class TileGrid:
    """Tiles as a product of row and column segments ``[start, end)`` in LR pixels, and the seam feathering.

    Each tile's weight is separable, w(y, x) = wy(y) * wx(x). Along an axis, at a side shared with a neighbour, the
    weight is 0 over the first ``band`` LR pixels from the tile edge (pixels whose receptive field crosses the tile
    edge and sees padding instead of the image), rises linearly over the next ``ramp`` pixels, and is 1 inside;
    ``band = overlap // 4`` and ``ramp = overlap - 2 * band`` (a model declaring ``receptive_radius`` R with
    overlap//4 < R <= overlap//2 gets ``band = R``). The weights are evaluated at HR pixel centres, so the seams are
    smooth at output resolution, and the blended output is divided by the summed weights. With an overlap of at
    least ``2 * band`` every pixel gets a positive weight; when ``band`` covers a local model's receptive radius the
    blend mixes only exact values, so tiled output equals whole-image output.
    """

    rows: tuple[tuple[int, int], ...]
    cols: tuple[tuple[int, int], ...]
    band: int
    ramp: int

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)


def _axis_segments(length: int, tile: int, overlap: int, multiple: int) -> tuple[tuple[int, int], ...]:
    """Segments covering ``[0, length)``: starts on multiples of ``multiple``, evenly spread, overlaps >= ``overlap``.

    All segments have ``tile`` pixels except the last, which ends at ``length`` (``tile - multiple + 1`` to ``tile``
    pixels: its start is the first grid position from which ``tile`` pixels reach the end).
    """
    if tile >= length:
        return ((0, length),)
    stride_units = max(1, (tile - overlap) // multiple)
    last_units = -(-(length - tile) // multiple)  # ceil: the last start, in grid units
    steps = -(-last_units // stride_units)  # ceil
    # Even spreading in grid units: consecutive starts differ by floor or ceil of last/steps <= stride.
    starts = [round(i * last_units / steps) * multiple for i in range(steps + 1)]
    return tuple((s0, s0 + tile) for s0 in starts[:-1]) + ((starts[-1], length),)


def plan_tiles(height: int, width: int, tile: int, overlap: int = DEFAULT_TILE_OVERLAP, *, multiple: int = 1,
               receptive_radius: int | None = None) -> TileGrid:
    """The tile grid for an LR image of ``height`` x ``width`` (see :class:`TileGrid` for the weights).

    ``overlap`` must be at most half the tile; ``tile`` is then rounded down to a multiple of ``multiple`` (up when
    rounding down would make the overlap more than half of it).
    """
    if tile <= 0:
        raise ValueError(f"tile must be positive, got {tile}")
    if overlap < 0:
        raise ValueError(f"tile overlap must be >= 0, got {overlap}")
    if 2 * overlap > tile:
        raise ValueError(f"tile overlap {overlap} must be at most half the tile size {tile}")
    # Round to the grid, down unless that would break the overlap rule (then up); the stride between tile starts,
    # tile - overlap, must hold at least one grid step.
    tile = max(tile // multiple * multiple, -(-2 * overlap // multiple) * multiple,
               -(-(overlap + multiple) // multiple) * multiple)
    band = overlap // 4
    if receptive_radius is not None and band < receptive_radius <= overlap // 2:
        band = int(receptive_radius)
    ramp = overlap - 2 * band
    return TileGrid(
        rows=_axis_segments(height, tile, overlap, multiple),
        cols=_axis_segments(width, tile, overlap, multiple),
        band=band,
        ramp=ramp,
    )


def _axis_weight(seg: tuple[int, int], length: int, scale: int, band: int, ramp: int) -> torch.Tensor:
    """HR-resolution 1-D weight of one segment (float32), feathered on the sides shared with a neighbour."""
    start, end = seg
    d = (torch.arange((end - start) * scale, dtype=torch.float64) + 0.5) / scale  # LR distance from the start edge
    w = torch.ones_like(d)

    def feather(dist: torch.Tensor) -> torch.Tensor:
        if ramp == 0:
            return (dist > band).to(dist.dtype)
        return ((dist - band) / ramp).clamp(0, 1)

    if start > 0:
        w = w * feather(d)
    if end < length:
        w = w * feather((end - start) - d)
    return w.to(torch.float32)


# --------------------------------------------------------------------------------------------------------------------
# Forward.


def _forward_padded(model: nn.Module, x: torch.Tensor, spec: TilingSpec) -> torch.Tensor:
    """One forward; an input below the spec's minimum size or off its size multiple is edge-padded bottom/right and
    the output cropped."""
    h, w = x.shape[-2:]
    ph, pw = (p - q for p, q in zip(spec.padded_size(h, w), (h, w), strict=True))
    xp = F.pad(x, (0, pw, 0, ph), mode="replicate") if (ph or pw) else x
    sr = model(xp)
    s = spec.scale
    return sr[..., : h * s, : w * s]


@torch.inference_mode()
def upscale(
    model: nn.Module,
    lr: torch.Tensor,
    *,
    tile: int | None = None,
    tile_overlap: int = DEFAULT_TILE_OVERLAP,
    max_memory: int | str | None = None,
    on_tile: TileCallback | None = None,
) -> torch.Tensor:
    """Upscale an NxCxHxW batch (C = 3 for RGB models): the whole image when it fits, else blended tiles.

    ``tile``: None picks the tile size from ``max_memory`` (whole image when it fits; see :func:`auto_tile_size`);
    0 forces one whole-image forward; N > 0 uses N x N LR tiles (whole image if it is no larger). ``tile_overlap``:
    LR pixels shared by neighbouring tiles (at most half a tile). ``max_memory``: the working-set budget in bytes or
    as ``"2G"`` (default :data:`DEFAULT_MAX_MEMORY`), counting the output, the input and one tile's activations, not
    the process itself. ``on_tile(done, total)`` is called after each tile.
    Returns the unclamped output (float32 when tiled).
    """
    if not isinstance(lr, torch.Tensor):  # paths, PIL images and arrays: effsr.upscale (effsr/api.py)
        raise InvalidValueError(f"effsr.infer.upscale takes an NxCxHxW tensor, got a {type(lr).__name__}; "
                                "effsr.upscale(x, model=...) takes paths, PIL images and numpy arrays")
    if lr.dim() != 4:
        raise ValueError(f"expected an NxCxHxW tensor, got {tuple(lr.shape)}")
    n, c, h, w = lr.shape
    if tile is None:
        tile = auto_tile_size(model, lr, max_memory=max_memory, tile_overlap=tile_overlap)
    if tile < 0:
        raise ValueError(f"tile must be >= 0 (0: whole image), got {tile}")
    spec = tiling_of(model)
    if tile:
        # A model whose attention works on fixed windows (AGDN: 96) computes something else on smaller tiles.
        tile = max(tile, spec.min_tile)
    if tile == 0 or (tile >= h and tile >= w):
        sr = _forward_padded(model, lr, spec)
        if on_tile is not None:
            on_tile(1, 1)
        return sr

    grid = plan_tiles(h, w, tile, tile_overlap, multiple=spec.stride_period, receptive_radius=spec.receptive_radius)
    s = spec.scale
    wrows = [_axis_weight(seg, h, s, grid.band, grid.ramp).to(lr.device) for seg in grid.rows]
    wcols = [_axis_weight(seg, w, s, grid.band, grid.ramp).to(lr.device) for seg in grid.cols]
    out: torch.Tensor | None = None
    done = 0
    for (y0, y1), wy in zip(grid.rows, wrows, strict=True):
        for (x0, x1), wx in zip(grid.cols, wcols, strict=True):
            y = _forward_padded(model, lr[:, :, y0:y1, x0:x1].contiguous(), spec)
            if out is None:
                out = torch.zeros((n, y.shape[1], h * s, w * s), dtype=torch.float32, device=lr.device)
            y = y.float() if y.dtype != torch.float32 else y
            y.mul_(wy.view(-1, 1) * wx.view(1, -1))
            out[:, :, y0 * s : y1 * s, x0 * s : x1 * s].add_(y)
            del y
            done += 1
            if on_tile is not None:
                on_tile(done, len(grid))
    assert out is not None
    # Normalise by the summed weights, separable because the grid is a product of row and column segments.
    total_y = torch.zeros(h * s, device=lr.device)
    total_x = torch.zeros(w * s, device=lr.device)
    for (y0, y1), wy in zip(grid.rows, wrows, strict=True):
        total_y[y0 * s : y1 * s] += wy
    for (x0, x1), wx in zip(grid.cols, wcols, strict=True):
        total_x[x0 * s : x1 * s] += wx
    inv_x = total_x.reciprocal().view(1, -1)
    step = 256
    for r0 in range(0, h * s, step):
        r1 = min(h * s, r0 + step)
        out[:, :, r0:r1].mul_(total_y[r0:r1].reciprocal().view(-1, 1) * inv_x)
    return out


# --------------------------------------------------------------------------------------------------------------------
# Images (grayscale, alpha) and backends.


class _ChannelAdapter(nn.Module):
    """Runs an RGB model on a one-channel input (replicated to RGB) and reduces its RGB output to one channel.

    Used for grayscale images and for alpha; the reduction is the channel mean (``imageio.GRAY_WEIGHTS``). Tiles and
    the output stay one-channel, a third of the memory of an RGB output.
    """

    def __init__(self, model: nn.Module, weights: tuple[float, float, float] = GRAY_WEIGHTS) -> None:
        super().__init__()
        self.model = model
        self.weights = weights
        self.tiling = tiling_of(model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x.expand(-1, 3, -1, -1).contiguous())
        r, g, b = self.weights
        return r * y[:, 0:1] + g * y[:, 1:2] + b * y[:, 2:3]


AlphaMode = Literal["model", "bicubic"]


@torch.inference_mode()
def upscale_image(
    model: nn.Module,
    image: Image,
    *,
    tile: int | None = None,
    tile_overlap: int = DEFAULT_TILE_OVERLAP,
    max_memory: int | str | None = None,
    alpha: AlphaMode = "model",
    on_tile: TileCallback | None = None,
) -> Image:
    """Upscale an :class:`Image` (from ``effsr.imageio.read_image``): colour, grayscale and alpha handled.

    * RGB: :func:`upscale` on ``image.rgb``.
    * grayscale (``was_grayscale``): the model runs on the gray plane replicated to RGB (as the harness feeds it);
      its three output channels are averaged (``imageio.GRAY_WEIGHTS``), so the output is gray again (returned
      replicated, as a view).
    * alpha: a constant alpha stays constant; otherwise ``alpha="model"`` (default, as Real-ESRGAN does) runs the
      model on the alpha plane replicated to RGB and keeps the channel mean, which keeps alpha edges as sharp as the
      colour edges; ``alpha="bicubic"`` uses PyTorch bicubic interpolation (align_corners=False). Alpha is done
      first and its output counts against ``max_memory`` for the colour pass.
    """
    s = model_scale(model)
    device = image.rgb.device
    budget = parse_memory_size(max_memory) or DEFAULT_MAX_MEMORY
    kw = {"tile": tile, "tile_overlap": tile_overlap}

    alpha_sr = None
    if image.alpha is not None:
        a = image.alpha
        lo, hi = float(a.min()), float(a.max())
        if lo == hi:
            alpha_sr = torch.full((1, 1, 1, 1), lo, device=device).expand(1, 1, image.height * s, image.width * s)
        elif alpha == "bicubic":
            alpha_sr = F.interpolate(a, scale_factor=s, mode="bicubic", align_corners=False).clamp_(0, 1)
        elif alpha == "model":
            adapter = _ChannelAdapter(model)
            alpha_sr = upscale(adapter, a, max_memory=budget, on_tile=on_tile, **kw).clamp_(0, 1)
        else:
            raise ValueError(f"alpha must be 'model' or 'bicubic', got {alpha!r}")
        if alpha_sr.stride(-1) != 0:
            budget = max(1, budget - alpha_sr.numel() * alpha_sr.element_size())

    if image.was_grayscale:
        gray = upscale(_ChannelAdapter(model), image.rgb[:, :1], max_memory=budget, on_tile=on_tile, **kw)
        rgb = gray.expand(-1, 3, -1, -1)
    else:
        rgb = upscale(model, image.rgb, max_memory=budget, on_tile=on_tile, **kw)
    return image.with_pixels(rgb, alpha_sr)


def _batchable(image: Image) -> bool:
    return image.alpha is None and not image.was_grayscale


@torch.inference_mode()
def upscale_images(
    model: nn.Module,
    images: Sequence[Image],
    *,
    tile: int | None = None,
    tile_overlap: int = DEFAULT_TILE_OVERLAP,
    max_memory: int | str | None = None,
    alpha: AlphaMode = "model",
    on_tile: TileCallback | None = None,
) -> list[Image]:
    """Upscale several images, running same-size plain RGB images as one batch (one forward per tile for all).

    Images with alpha or grayscale, and sizes that occur once, go through :func:`upscale_image` one by one; the
    results are in the input order and equal what :func:`upscale_image` returns for each image alone (the models
    treat batch items independently; float rounding of batched kernels aside). ``max_memory`` is the budget of the
    whole batch, so large batches tile sooner.
    """
    results: list[Image | None] = [None] * len(images)
    groups: dict[tuple[int, int, str], list[int]] = {}
    for i, img in enumerate(images):
        if _batchable(img):
            groups.setdefault((img.height, img.width, str(img.rgb.device)), []).append(i)
    for members in groups.values():
        if len(members) < 2:
            continue
        lr = torch.cat([images[i].rgb for i in members], dim=0)
        sr = upscale(model, lr, tile=tile, tile_overlap=tile_overlap, max_memory=max_memory, on_tile=on_tile)
        for k, i in enumerate(members):
            results[i] = images[i].with_pixels(sr[k : k + 1], None)
    for i, img in enumerate(images):
        if results[i] is None:
            results[i] = upscale_image(model, img, tile=tile, tile_overlap=tile_overlap, max_memory=max_memory,
                                       alpha=alpha, on_tile=on_tile)
    return [r for r in results if r is not None]

