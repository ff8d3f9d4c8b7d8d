"""From loader batches to device tensors: uint8 -> float, on-the-fly MATLAB bicubic LR, and prefetching.

The LR of an HR-only batch is made here, on the training device, for the whole batch at once by
:func:`effsr.resize.imresize_torch` with ``quantize=True`` (MATLAB's uint8 path: round after each pass), so
the network sees the same 8-bit LR values the teams' pre-made LR folders hold. The context margin the dataset
kept around each patch is then cut away and each sample's flips/rotation applied, in that order, so the pair
equals a crop of the LR of the whole image, augmented (as with a pre-made LR folder).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from ..resize import imresize_torch
from .datasets import DEGRADE_MARGIN_LR
from .transforms import apply_aug_torch

__all__ = ["DevicePrefetcher", "degrade_windows", "prepare_batch"]


def degrade_windows(
    windows: torch.Tensor, scale: int, aug: torch.Tensor | None = None, *, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """(lr, hr) in [0,1] from uint8 HR windows Nx3xWxW carrying the context margin, computed in ``dtype``.

    float64 reproduces MATLAB's uint8 ``imresize`` bit for bit (see :func:`effsr.resize.imresize_torch`); the
    default float32 is what training uses: it can move a rounded LR value by one level only where a pass lands
    within float32 rounding of a .5 boundary, and it is twice as fast.
    """
    if windows.dtype != torch.uint8:
        raise TypeError(f"expected uint8 windows, got {windows.dtype}")
    x = windows.to(dtype) / 255.0
    lr = imresize_torch(x, 1.0 / scale, quantize=True)
    m = DEGRADE_MARGIN_LR
    lr = lr[..., m : lr.shape[-2] - m, m : lr.shape[-1] - m]
    ms = m * scale
    hr = x[..., ms : x.shape[-2] - ms, ms : x.shape[-1] - ms]
    if aug is not None and bool(aug.any()):
        codes = aug.tolist()
        lr = torch.stack([apply_aug_torch(t, c) for t, c in zip(lr, codes, strict=True)])
        hr = torch.stack([apply_aug_torch(t, c) for t, c in zip(hr, codes, strict=True)])
    return lr.contiguous(), hr.contiguous()


def prepare_batch(batch: dict[str, torch.Tensor], scale: int, device: torch.device) -> dict[str, torch.Tensor]:
    """A loader batch (uint8, any device) -> ``{"lr", "hr"}`` float32 in [0,1] on ``device``."""
    if "hr_window" in batch:
        windows = batch["hr_window"].to(device, non_blocking=True)
        lr, hr = degrade_windows(windows, scale, batch["aug"])
        return {"lr": lr.float(), "hr": hr.float()}
    return {
        "lr": batch["lr"].to(device, non_blocking=True).float().div_(255.0),
        "hr": batch["hr"].to(device, non_blocking=True).float().div_(255.0),
    }


class DevicePrefetcher:
    """Iterate prepared batches, preparing the next one on a side CUDA stream while the current one trains.

    On CPU it simply prepares each batch in turn. With a DataLoader using workers and ``pin_memory`` this keeps
    the accelerator fed: decoding and cropping happen in the workers, the copy and the resize overlap compute.
    """

    def __init__(self, loader: Iterable[dict[str, torch.Tensor]], scale: int, device: torch.device) -> None:
        self.loader = loader
        self.scale = scale
        self.device = device
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        if self.stream is None:
            for batch in self.loader:
                yield prepare_batch(batch, self.scale, self.device)
            return
        it = iter(self.loader)
        nxt = self._prefetch(it)
        while nxt is not None:
            torch.cuda.current_stream(self.device).wait_stream(self.stream)
            cur = nxt
            for t in cur.values():
                t.record_stream(torch.cuda.current_stream(self.device))
            nxt = self._prefetch(it)
            yield cur

    def _prefetch(self, it: Iterator[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor] | None:
        try:
            batch = next(it)
        except StopIteration:
            return None
        assert self.stream is not None
        with torch.cuda.stream(self.stream):
            return prepare_batch(batch, self.scale, self.device)
