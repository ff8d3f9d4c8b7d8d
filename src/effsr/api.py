"""``effsr.upscale(x, model="rlfn")``: the Python one-liner, for whatever kind of image ``x`` is.

It accepts and returns the same kind:

========================================== ==========================================================================
input                                      output
========================================== ==========================================================================
a path (``str`` or ``os.PathLike``)        the written path when ``output=`` is given, else a PIL image
a PIL image (any mode)                     a PIL image of the same family (L, LA, RGB, RGBA; 16-bit gray stays I;16)
a numpy array HxW, HxWxC (C = 1..4, RGB    an array of the same layout and dtype (uint8, uint16; float -> float32
order), uint8 / uint16 / float in [0,1]    in [0,1])
a torch tensor CxHxW or NxCxHxW (C = 3,    a float32 tensor of the same layout in [0,1] (batches run together)
or 1 = gray), float in [0,1]
========================================== ==========================================================================

Grayscale stays grayscale and alpha is upscaled separately, as for files (``effsr.infer.upscale_image``); large
images are tiled within ``max_memory``. The model is loaded and prepared once per distinct set of arguments and kept
(a small cache), so calling ``upscale`` in a loop does not reload it. ``output=`` never replaces an existing file
unless ``overwrite=True``.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import InvalidValueError

__all__ = ["upscale"]


@functools.lru_cache(maxsize=4)
def _prepared(model: str | None, weights: str | None, scale: int | None, backend: str, device: str,
              threads: int | None, precision: str | None) -> nn.Module:
    from .deploy import prepare
    from .models import load_model

    kwargs = {"scale": scale} if scale is not None else {}
    net = load_model(model, weights, device="cpu", **kwargs)
    return prepare(net, backend, device=device, threads=threads, precision=precision)


def _model(model: str | os.PathLike[str] | nn.Module | None, weights: str | os.PathLike[str] | None,
           scale: int | None, backend: str, device: str, threads: int | None, precision: str | None) -> nn.Module:
    if isinstance(model, nn.Module):
        return model  # already built (and prepared, if the caller wants another backend)
    if model is None and weights is None:
        raise InvalidValueError("give model= (a zoo name such as 'rlfn', see `effsr zoo`) and/or weights=FILE")
    return _prepared(None if model is None else os.fspath(model), None if weights is None else os.fspath(weights),
                     scale, backend, device, threads, precision)


def upscale(
    x: Any,
    model: str | os.PathLike[str] | nn.Module | None = "rlfn",
    *,
    weights: str | os.PathLike[str] | None = None,
    scale: int | None = None,
    output: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    backend: str = "fast",
    device: str = "cpu",
    threads: int | None = None,
    precision: str | None = None,
    tile: int | None = None,
    tile_overlap: int | None = None,
    max_memory: int | str | None = None,
) -> Any:
    """Upscale ``x`` (a path, a PIL image, a numpy array or a tensor) and return the same kind (see the module
    docstring).

    ``model``: a zoo model or weights name (``"rlfn"``, ``"mdrn_x3"``), a weights file, or a built ``nn.Module``;
    ``weights``/``scale`` pick other weights as :func:`effsr.load` does. ``backend``, ``device``, ``threads`` and
    ``precision`` are :func:`effsr.deploy.prepare`'s; ``tile``, ``tile_overlap`` and ``max_memory`` are
    :func:`effsr.infer.upscale`'s. With a path input, ``output=FILE`` writes the result there (format from the
    suffix) and returns the path; ``overwrite=False`` refuses an existing file
    (:class:`effsr.errors.OutputExistsError`).
    """
    from .imageio import (
        image_from_array,
        image_from_pil,
        image_to_array_rgb,
        image_to_pil,
        read_image,
        write_image,
    )
    from .infer import DEFAULT_TILE_OVERLAP, upscale_image

    if output is not None and not isinstance(x, (str, os.PathLike)):
        raise InvalidValueError("output= applies to a path input; save the returned image yourself")
    if output is not None:
        from .files import check_output

        check_output(output, overwrite=overwrite, inputs={os.path.realpath(x)})
    net = _model(model, weights, scale, backend, device, threads, precision)
    kw = {"tile": tile, "tile_overlap": DEFAULT_TILE_OVERLAP if tile_overlap is None else tile_overlap,
          "max_memory": max_memory}

    if isinstance(x, torch.Tensor):
        return _upscale_tensor(net, x, device, kw)
    from PIL import Image as PILImage

    if isinstance(x, (str, os.PathLike)):
        img = read_image(x)
        sr = upscale_image(net, img.to(device), **kw)
        if output is not None:
            return write_image(sr, output, overwrite=overwrite)
        return image_to_pil(sr)
    if isinstance(x, PILImage.Image):
        return image_to_pil(upscale_image(net, image_from_pil(x).to(device), **kw))
    if isinstance(x, np.ndarray):
        sr = upscale_image(net, image_from_array(x).to(device), **kw)
        # float in, float out (no 8-bit rounding); integers keep their dtype
        arr = _float_pixels(sr) if np.issubdtype(x.dtype, np.floating) else image_to_array_rgb(sr)
        if x.ndim == 3 and arr.ndim == 2:
            arr = arr[..., None]  # HxWx1 in, HxWx1 out
        return arr
    raise InvalidValueError(f"cannot upscale a {type(x).__name__}: give a path, a PIL image, a numpy array or a tensor")


def _float_pixels(sr: Any) -> np.ndarray:
    """HxW[xC] float32 in [0,1] from an upscaled :class:`effsr.imageio.Image`, channels as ``image_to_array_rgb``."""
    planes = [sr.rgb[0, :1]] if sr.was_grayscale else [sr.rgb[0]]
    if sr.alpha is not None:
        planes.append(sr.alpha[0].expand(1, *sr.alpha.shape[2:]))
    arr = torch.cat(planes).float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    return np.ascontiguousarray(arr[..., 0] if arr.shape[2] == 1 else arr)


def _upscale_tensor(net: nn.Module, x: torch.Tensor, device: str, kw: dict[str, Any]) -> torch.Tensor:
    """CxHxW / NxCxHxW float in [0,1] (C = 3, or 1 for gray) -> the same layout, float32, clamped to [0,1]."""
    from .imageio import Image
    from .infer import upscale as upscale_tensor
    from .infer import upscale_image

    if x.dim() not in (3, 4) or x.shape[-3] not in (1, 3) or not x.is_floating_point():
        raise InvalidValueError(f"expected a float CxHxW or NxCxHxW tensor with 1 or 3 channels in [0,1], got "
                                f"{x.dtype} {tuple(x.shape)}")
    batch = x if x.dim() == 4 else x.unsqueeze(0)
    batch = batch.to(device=device, dtype=torch.float32)
    if batch.shape[1] == 3:
        out = upscale_tensor(net, batch, **kw)
    else:  # gray: as for a gray file, the model sees the plane replicated and its channel mean is kept
        out = torch.cat([upscale_image(net, Image(rgb=g.expand(1, 3, *g.shape[2:]), was_grayscale=True), **kw)
                         .rgb[:, :1] for g in batch.split(1)])
    out = out.float().clamp(0, 1)  # a normal tensor (the engine returns inference-mode tensors)
    return out if x.dim() == 4 else out[0]

