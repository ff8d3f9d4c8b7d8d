"""The size and tiling contract of a model: one frozen :class:`TilingSpec`, declared once by each architecture.

Every architecture builds its spec in its constructor (``self.tiling = TilingSpec(scale=..., ...)``); every engine,
wrapper and exported model carries that object whole (:func:`tiling_of` reads it), and :mod:`effsr.infer` plans its
padding and tiles from it. Nobody copies the fields one by one: a wrapper that forwarded ``scale`` and ``min_size``
but not ``min_tile`` once made AGDN tile at 64 pixels through the fast backend (40.9 dB on Set14 ``barbara`` against
the whole image, where 45 dB is promised). The idea is spandrel's ``SizeRequirements``.

This module knows no architecture: models, :mod:`effsr.infer` and :mod:`effsr.deploy` import it, it imports nothing
of effsr. What each zoo model declares, and why, is tabulated in the :mod:`effsr.infer` module docstring.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

# The attributes models once declared one by one (before TilingSpec). A module that still has one of them and no
# spec is refused rather than read, so a half-declared model cannot tile wrongly in silence.
_OLD_ATTRIBUTES = ("min_size", "tile_multiple", "min_tile", "receptive_radius")


@dataclass(frozen=True)
class TilingSpec:
    """What the tiler needs to know about a model; all sizes in LR pixels.

    * ``scale``: output pixels per input pixel along each axis.
    * ``min_size``: the smallest input edge the model computes (smaller inputs are edge-padded bottom/right and the
      output cropped back); below it a reflect pad or pooling window is larger than its input.
    * ``size_multiple``: input height and width are padded up to a multiple of this (window attention, pixel
      unshuffle); 1 when any size works.
    * ``stride_period``: the period of the model's strided and pooled grids; tile starts and sizes are multiples of
      it, so that a tile's pooling windows sit where the whole image's do.
    * ``min_tile``: the smallest tile the model computes faithfully (AGDN: its 96-pixel attention windows are laid
      out from the input size); 0 for none.
    * ``receptive_radius``: how far (LR pixels) an output pixel sees, when that is bounded and known; lets the tiler
      widen the zero-weight band at the seams to it. None: unbounded or unknown.
    * ``exact``: the output at a pixel depends only on input pixels within ``receptive_radius`` and the grids of
      ``stride_period``, so tiles whose seam band covers the radius give the whole-image output up to float rounding.
      Models with global statistics, input-size-dependent resizes or attention are not exact (their tiles are
      blended to stay invisible instead).
    """

    scale: int
    min_size: int = 1
    size_multiple: int = 1
    stride_period: int = 1
    min_tile: int = 0
    receptive_radius: int | None = None
    exact: bool = False

    def __post_init__(self) -> None:
        for name in ("scale", "min_size", "size_multiple", "stride_period"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TilingSpec.{name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.min_tile, int) or self.min_tile < 0:
            raise ValueError(f"TilingSpec.min_tile must be an integer >= 0, got {self.min_tile!r}")
        if self.receptive_radius is not None and (not isinstance(self.receptive_radius, int)
                                                  or self.receptive_radius < 0):
            raise ValueError(f"TilingSpec.receptive_radius must be None or an integer >= 0, got "
                             f"{self.receptive_radius!r}")
        if self.exact and self.receptive_radius is None:
            raise ValueError("TilingSpec.exact needs a receptive_radius: exactness is relative to the seam band")

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        """The input size the model is run at for an input of ``height`` x ``width``: at least ``min_size`` and a
        multiple of ``size_multiple``."""
        m = self.size_multiple
        return (-(-max(height, self.min_size) // m) * m, -(-max(width, self.min_size) // m) * m)

    def to_json(self) -> str:
        """A one-line JSON form (the ONNX export stores it in the file's metadata)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TilingSpec:
        data: dict[str, Any] = json.loads(text)
        return cls(**data)


def tiling_of(model: Any) -> TilingSpec:
    """The :class:`TilingSpec` of ``model`` (an architecture, an engine or a wrapper: its ``tiling`` attribute).

    A module without one is taken as ``TilingSpec(scale=model.scale)`` (``scale`` 4 when it has none either): any
    input size, tiles anywhere, nothing exact. A module that declares the tiling attributes of old
    (``min_size``, ``tile_multiple``, ``min_tile``, ``receptive_radius``) instead of a spec raises: those would be
    ignored here.
    """
    spec = getattr(model, "tiling", None)
    if isinstance(spec, TilingSpec):
        return spec
    if spec is not None:
        raise TypeError(f"{type(model).__name__}.tiling must be an effsr.tiling.TilingSpec, got {type(spec).__name__}")
    old = [name for name in _OLD_ATTRIBUTES if hasattr(model, name)]
    if old:
        raise TypeError(
            f"{type(model).__name__} declares {', '.join(old)} as attributes; declare them as one spec instead: "
            f"self.tiling = TilingSpec(scale=..., min_size=..., stride_period=..., ...) (effsr.tiling; "
            f"tile_multiple is now stride_period)")
    return TilingSpec(scale=int(getattr(model, "scale", 4)))
