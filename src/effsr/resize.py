"""MATLAB-compatible bicubic ``imresize`` in numpy and in batched torch.

This follows the algorithm MATLAB documents for ``imresize(A, scale, 'bicubic')`` (Antialiasing on):

* kernel: Keys' cubic convolution with a = -0.5, support [-2, 2];
* downscaling (scale < 1) stretches the kernel by 1/scale and scales it by ``scale`` (antialiasing);
* output pixel x (1-based) maps to input coordinate u = x / scale + 0.5 * (1 - 1 / scale);
  taps at floor(u - width / 2) + (0 .. ceil(width) + 1), weights normalised to sum 1 per output pixel;
* out-of-range taps are mirrored symmetrically (index sequence 1..n, n..1, repeated);
* the output size is ceil(scale * input size) when a scale is given; the scale is output/input when a size is given;
* dimensions are resized one at a time, in order of increasing scale (a stable sort: height first when the two
  scales are equal);
* for uint8 input, each one-dimensional pass rounds (half away from zero) and saturates to uint8 before the next
  pass, as MATLAB's per-pass kernel returns the input class. ../shared/data/MANIFEST.md records that this is what
  regenerates the benchmark LR files (max difference 1 on 0.03-0.06% of values); a float intermediate differs more.

Weights and indices are computed in float64 (as MATLAB does) and cached per (input length, output length, scale).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

# Keys' cubic convolution kernel parameter used by MATLAB's 'bicubic' (a = -0.5) and its support width.
_KERNEL_WIDTH = 4.0


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' kernel, a = -0.5: 1.5|x|^3 - 2.5|x|^2 + 1 on |x| <= 1; -0.5|x|^3 + 2.5|x|^2 - 4|x| + 2 on 1 < |x| <= 2."""
    ax = np.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    inner = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    outer = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return inner + outer


@lru_cache(maxsize=256)
def _contributions(in_len: int, out_len: int, scale: float, antialias: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(weights, indices), both out_len x taps: output i = sum_k weights[i, k] * input[indices[i, k]] (0-based).

    Read-only arrays (they are cached and shared).
    """
    if scale < 1 and antialias:
        width = _KERNEL_WIDTH / scale

        def kernel(x: np.ndarray) -> np.ndarray:
            return scale * _cubic(scale * x)
    else:
        width = _KERNEL_WIDTH
        kernel = _cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)  # 1-based output coordinates, as MATLAB
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based input indices
    weights = kernel(u[:, None] - idx)
    weights = weights / weights.sum(axis=1, keepdims=True)
    # Symmetric boundary: mirror into 1..n through the sequence [1..n, n..1] repeated.
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    indices = mirror[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    # Drop tap columns whose weight is zero for every output pixel (MATLAB does the same; it only saves work).
    keep = np.any(weights != 0, axis=0)
    weights = np.ascontiguousarray(weights[:, keep])
    indices = np.ascontiguousarray(indices[:, keep])
    weights.flags.writeable = False
    indices.flags.writeable = False
    return weights, indices


def _plan(
    in_hw: tuple[int, int],
    scale: float | tuple[float, float] | None,
    output_size: tuple[int, int] | None,
) -> tuple[tuple[int, int], tuple[float, float], list[int]]:
    """Output size, per-dimension scale and the order of the passes (0 = height, 1 = width)."""
    if (scale is None) == (output_size is None):
        raise ValueError("give exactly one of scale or output_size")
    h, w = in_hw
    if h < 1 or w < 1:
        raise ValueError(f"empty image {in_hw}")
    if scale is not None:
        sh, sw = (float(scale), float(scale)) if np.isscalar(scale) else (float(scale[0]), float(scale[1]))
        if sh <= 0 or sw <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        # MATLAB: output size = ceil(scale * input size), while the given scale (not out/in) drives the mapping.
        out = (int(math.ceil(sh * h)), int(math.ceil(sw * w)))
    else:
        assert output_size is not None
        out = (int(output_size[0]), int(output_size[1]))
        if out[0] < 1 or out[1] < 1:
            raise ValueError(f"output_size must be positive, got {output_size}")
        sh, sw = out[0] / h, out[1] / w
    order = sorted(range(2), key=lambda d: (sh, sw)[d])  # stable: height first on a tie
    return out, (sh, sw), order


def _round_saturate_uint8(a: np.ndarray) -> np.ndarray:
    """MATLAB's double -> uint8 conversion: round half away from zero, then saturate to [0, 255]."""
    return np.clip(np.floor(np.abs(a) + 0.5) * np.sign(a), 0, 255).astype(np.uint8)


def _resize_axis_np(a: np.ndarray, axis: int, out_len: int, scale: float, antialias: bool) -> np.ndarray:
    """One pass along ``axis``, computed in ``a``'s float dtype (weights cast to it)."""
    weights, indices = _contributions(a.shape[axis], out_len, scale, antialias)
    w = weights.astype(a.dtype)
    moved = np.moveaxis(a, axis, 0)
    extra = (1,) * (moved.ndim - 1)
    acc = np.zeros((out_len, *moved.shape[1:]), dtype=a.dtype)
    # Accumulate tap by tap, in tap order, as MATLAB's per-pixel loop does.
    for k in range(w.shape[1]):
        acc += w[:, k].reshape(out_len, *extra) * moved[indices[:, k]]
    return np.moveaxis(acc, 0, axis)


def imresize(
    img: np.ndarray,
    scale: float | tuple[float, float] | None = None,
    output_size: tuple[int, int] | None = None,
    *,
    antialias: bool = True,
) -> np.ndarray:
    """MATLAB ``imresize(img, scale, 'bicubic')`` (or ``imresize(img, [h w], 'bicubic')``) for HxW or HxWxC arrays.

    uint8 input: computed in float64 and rounded to uint8 after each pass (MATLAB's behaviour), uint8 output.
    float32 / float64 input: computed and returned in that dtype (no rounding, no clamping); other dtypes raise.
    """
    if img.ndim not in (2, 3):
        raise ValueError(f"expected HxW or HxWxC, got shape {img.shape}")
    if img.dtype not in (np.uint8, np.float32, np.float64):
        raise TypeError(f"unsupported dtype {img.dtype} (uint8, float32 or float64)")
    out_hw, scales, order = _plan((img.shape[0], img.shape[1]), scale, output_size)
    is_uint8 = img.dtype == np.uint8
    x: np.ndarray = img.astype(np.float64) if is_uint8 else img
    for d in order:
        x = _resize_axis_np(x, d, out_hw[d], scales[d], antialias)
        if is_uint8:
            x = _round_saturate_uint8(x).astype(np.float64)
    return x.astype(np.uint8) if is_uint8 else x


# --------------------------------------------------------------------------------------------------------------
# torch: the same cached weights/indices. "matmul" (default) folds them into a dense out x in matrix, one matmul per
# pass over the whole batch (fast enough to degrade training batches on the fly); it equals the numpy path up to float
# rounding (about 3e-7 in float32 on [0, 1] images). "gather" accumulates tap by tap exactly like the numpy path
# (bit-identical for the same dtype) at several times the cost.

_TORCH_CACHE: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
_TORCH_CACHE_MAX = 128


def _torch_weights(
    in_len: int, out_len: int, scale: float, antialias: bool, dense: bool, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights out x taps, indices out x taps) or, with ``dense``, (out x in matrix, empty), cached per size."""
    key = (in_len, out_len, float(scale), antialias, dense, dtype, str(device))
    hit = _TORCH_CACHE.get(key)
    if hit is not None:
        return hit
    weights, indices = _contributions(in_len, out_len, scale, antialias)
    if dense:
        m = np.zeros((out_len, in_len), dtype=np.float64)
        # Mirrored taps that land on the same input pixel add up.
        np.add.at(m, (np.repeat(np.arange(out_len), weights.shape[1]), indices.ravel()), weights.ravel())
        hit = (torch.from_numpy(m).to(device=device, dtype=dtype), torch.empty(0, dtype=torch.long))
    else:
        # Weights are cast from float64 to the tensor dtype, as the numpy path does.
        hit = (
            torch.from_numpy(weights.copy()).to(device=device, dtype=dtype),
            torch.from_numpy(indices.copy()).to(device=device),
        )
    if len(_TORCH_CACHE) >= _TORCH_CACHE_MAX:
        _TORCH_CACHE.pop(next(iter(_TORCH_CACHE)))
    _TORCH_CACHE[key] = hit
    return hit


def _resize_dim_torch(
    x: torch.Tensor, dim: int, out_len: int, scale: float, antialias: bool, method: str
) -> torch.Tensor:
    """One pass along ``dim`` (-2 = height, -1 = width) of an NxCxHxW tensor."""
    in_len = x.shape[dim]
    if method == "matmul":
        m, _ = _torch_weights(in_len, out_len, scale, antialias, True, x.dtype, x.device)
        return torch.matmul(m, x) if dim == -2 else torch.matmul(x, m.t())
    w, idx = _torch_weights(in_len, out_len, scale, antialias, False, x.dtype, x.device)
    shape = (out_len, 1) if dim == -2 else (out_len,)
    acc = x.new_zeros((*x.shape[:-2], out_len, x.shape[-1]) if dim == -2 else (*x.shape[:-1], out_len))
    for k in range(w.shape[1]):
        # Separate multiply and add (no fused multiply-add) so the rounding matches numpy's ``acc += w * x``.
        acc = acc + w[:, k].reshape(shape) * x.index_select(dim, idx[:, k])
    return acc


def imresize_torch(
    x: torch.Tensor,
    scale: float | tuple[float, float] | None = None,
    output_size: tuple[int, int] | None = None,
    *,
    antialias: bool = True,
    quantize: bool = False,
    method: str = "matmul",
) -> torch.Tensor:
    """Batched MATLAB bicubic resize of a float NxCxHxW (or CxHxW) tensor, computed in the tensor's dtype.

    Same weights, boundary and pass order as :func:`imresize`. ``method="matmul"`` (default) equals ``imresize`` on
    the same float dtype up to float rounding; ``method="gather"`` equals it bit for bit.

    ``quantize=True`` emulates MATLAB's uint8 path for images in [0, 1]: the input is rounded to the uint8 grid, each
    pass rounds (half up) and saturates in 0..255 units, and the result is divided by 255 (with ``method="gather"``
    in float64 this equals ``imresize`` on the uint8 image exactly). Differentiable when
    ``quantize`` is False.
    """
    if not torch.is_floating_point(x):
        raise TypeError(f"imresize_torch takes a float tensor, got {x.dtype}")
    if method not in ("gather", "matmul"):
        raise ValueError(f"method must be 'gather' or 'matmul', got {method!r}")
    squeeze = x.dim() == 3
    if squeeze:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"expected NxCxHxW or CxHxW, got shape {tuple(x.shape)}")
    out_hw, scales, order = _plan((x.shape[-2], x.shape[-1]), scale, output_size)
    if quantize:
        x = torch.floor(x * 255.0 + 0.5).clamp(0, 255)
    for d in order:
        x = _resize_dim_torch(x, d - 2, out_hw[d], scales[d], antialias, method)
        if quantize:
            # floor(v + 0.5) is MATLAB's round for v >= 0; negatives saturate to 0 either way.
            x = torch.floor(x + 0.5).clamp(0, 255)
    if quantize:
        x = x / 255.0
    return x.squeeze(0) if squeeze else x
