"""Training and validation datasets: paired HR/LR folders and HR-only folders whose LR is made on the device.

Folder layouts (all found by the same rule, see :func:`match_lr_files`):

* DIV2K: ``DIV2K_train_HR/0001.png`` with ``DIV2K_train_LR_bicubic/X4/0001x4.png``;
* Flickr2K: ``Flickr2K_HR/000001.png`` with ``Flickr2K_LR_bicubic/X4/000001x4.png``;
* LSDIR: ``HR/train/0001000/0000001.png`` (nested folders) with ``X4/train/0001000/0000001x4.png``;
* the EDSR benchmark package and ``effsr data extract-subimages`` output: the same base name in both folders.

"The first 10k images of LSDIR" is ``limit: 10000`` (files sorted by their path relative to the root) or a
``file_list`` text file with one relative path per line.

Sampling is a pure function of (seed, global sample position): position ``p`` reads image ``perm_e[p mod N]`` of
epoch ``e = p // N`` (a seeded permutation per epoch) and draws its crop and augmentation from a generator seeded
with ``(seed, p)``. A run therefore reads the same samples whatever the number of loader workers or ranks, and
resuming at iteration ``i`` only needs ``i``: there is no hidden sampler or worker state to save.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..imageio import list_images, read_rgb_uint8
from .transforms import apply_aug_numpy, random_aug, random_crop_pair, random_window

__all__ = [
    "DEGRADE_MARGIN_LR",
    "PositionBatchSampler",
    "TrainDataset",
    "find_images",
    "match_lr_files",
]

# LR pixels of context kept around an HR-only patch before downscaling on the device. MATLAB's antialiased
# bicubic kernel at 1/s spans 4*s HR pixels (2*s each side, specs: resize.py docstring), i.e. 2 LR pixels; one
# more covers the tap rounding at the window edge.
DEGRADE_MARGIN_LR = 3


def _rel_key(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def find_images(
    root: str | os.PathLike[str],
    *,
    file_list: str | os.PathLike[str] | None = None,
    limit: int | None = None,
) -> list[Path]:
    """Image files under ``root`` (recursively), sorted by their relative path.

    ``file_list``: a text file of paths relative to ``root`` (blank lines and ``#`` comments ignored), taken in
    its order. ``limit``: keep the first N after sorting or listing (e.g. LSDIR's first 10k images).
    """
    base = Path(root).expanduser()
    if not base.is_dir():
        raise FileNotFoundError(f"image folder not found: {base}")
    if file_list is not None:
        lines = Path(file_list).expanduser().read_text().splitlines()
        files = [base / s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} files of {file_list} not found under {base}: {missing[:3]}")
    else:
        files = list_images(base, recursive=True)
    if limit is not None:
        files = files[:limit]
    if not files:
        raise FileNotFoundError(f"no images in {base}")
    return files


def match_lr_files(
    hr_files: Sequence[Path], hr_root: str | os.PathLike[str], lr_root: str | os.PathLike[str], scale: int
) -> list[Path]:
    """The LR file of every HR file: same relative folder, stem equal to the HR stem or to ``<stem>x<scale>``."""
    hr_base, lr_base = Path(hr_root).expanduser(), Path(lr_root).expanduser()
    if not lr_base.is_dir():
        raise FileNotFoundError(f"LR folder not found: {lr_base}")
    index: dict[tuple[str, str], Path] = {}
    for p in list_images(lr_base, recursive=True):
        index[(p.parent.relative_to(lr_base).as_posix(), p.stem)] = p
    out: list[Path] = []
    missing: list[str] = []
    for f in hr_files:
        folder = f.parent.relative_to(hr_base).as_posix()
        hit = index.get((folder, f.stem)) or index.get((folder, f"{f.stem}x{scale}"))
        if hit is None:
            missing.append(_rel_key(f, hr_base))
        else:
            out.append(hit)
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(hr_files)} HR images have no LR in {lr_base} "
            f"(looked for '<name>' and '<name>x{scale}'): {missing[:5]}"
        )
    return out


class _ImageCache:
    """A small per-process LRU of decoded images (each loader worker holds its own)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[Path, np.ndarray] = OrderedDict()

    def read(self, path: Path) -> np.ndarray:
        if self.capacity <= 0:
            return read_rgb_uint8(path)
        img = self._items.get(path)
        if img is None:
            img = read_rgb_uint8(path)
            self._items[path] = img
            if len(self._items) > self.capacity:
                self._items.popitem(last=False)
        else:
            self._items.move_to_end(path)
        return img


def _hwc_to_chw_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


class TrainDataset(Dataset):
    """Random training patches indexed by global sample position (see the module docstring).

    With ``lr_files`` (paired): item = ``{"lr": uint8 3xPxP, "hr": uint8 3x(sP)x(sP)}``, cropped at a scale-aligned
    position and augmented here. Without (HR-only): item = ``{"hr_window": uint8 3xWxW, "aug": bool[3]}``, an HR
    patch with :data:`DEGRADE_MARGIN_LR` LR pixels of context on every side; the LR is made on the device from the
    whole batch by the MATLAB bicubic resize and the augmentation applied afterwards
    (:func:`effsr.data.batches.prepare_batch`), so the pair equals a crop of the LR made from the whole image.

    Items stay uint8 until they reach the device (4x less to copy than float32).
    """

    def __init__(
        self,
        hr_files: Sequence[Path],
        lr_files: Sequence[Path] | None,
        *,
        scale: int,
        patch_size: int,
        seed: int,
        hflip: bool = True,
        rot: bool = True,
        cache_images: int = 0,
    ) -> None:
        if patch_size % scale:
            raise ValueError(f"patch_size {patch_size} (HR) must be a multiple of the scale {scale}")
        if lr_files is not None and len(lr_files) != len(hr_files):
            raise ValueError(f"{len(hr_files)} HR files but {len(lr_files)} LR files")
        self.hr_files = list(hr_files)
        self.lr_files = list(lr_files) if lr_files is not None else None
        self.scale = scale
        self.patch_size = patch_size
        self.seed = seed
        self.hflip = hflip
        self.rot = rot
        self._cache = _ImageCache(cache_images)
        self._perm_epoch = -1
        self._perm = np.arange(0)

    @property
    def paired(self) -> bool:
        return self.lr_files is not None

    @property
    def num_images(self) -> int:
        return len(self.hr_files)

    def __len__(self) -> int:
        # Positions are unbounded; the length of one epoch is the number of images.
        return self.num_images

    def image_index(self, position: int) -> int:
        """The image read at a global sample position (a seeded permutation per epoch)."""
        epoch, k = divmod(position, self.num_images)
        if epoch != self._perm_epoch:
            # 0x5EED: a constant stream id so the permutation stream differs from the per-sample one.
            rng = np.random.default_rng([self.seed, 0x5EED, epoch])
            self._perm = rng.permutation(self.num_images)
            self._perm_epoch = epoch
        return int(self._perm[k])

    def __getitem__(self, position: int) -> dict[str, torch.Tensor]:
        idx = self.image_index(position)
        rng = np.random.default_rng([self.seed, position])
        hr = self._cache.read(self.hr_files[idx])
        if self.lr_files is not None:
            lr = self._cache.read(self.lr_files[idx])
            lr_c, hr_c = random_crop_pair(lr, hr, self.patch_size // self.scale, self.scale, rng)
            code = random_aug(rng, self.hflip, self.rot)
            return {
                "lr": _hwc_to_chw_tensor(apply_aug_numpy(lr_c, code)),
                "hr": _hwc_to_chw_tensor(apply_aug_numpy(hr_c, code)),
            }
        window = random_window(hr, self.patch_size, self.scale, DEGRADE_MARGIN_LR * self.scale, rng)
        code = random_aug(rng, self.hflip, self.rot)
        return {"hr_window": _hwc_to_chw_tensor(window), "aug": torch.tensor(code, dtype=torch.bool)}


class PositionBatchSampler:
    """Batches of global sample positions for one rank, from iteration ``start`` to ``stop`` (exclusive).

    Iteration ``i`` covers the global positions ``[i*G, (i+1)*G)`` with ``G = batch_size * world_size``; rank ``r``
    takes ``[i*G + r*B, i*G + (r+1)*B)``. One process with batch G and N ranks with batch G/N read exactly the same
    samples, and a resumed run continues at ``i*G``.
    """

    def __init__(self, batch_size: int, *, start: int, stop: int, rank: int = 0, world_size: int = 1) -> None:
        self.batch_size = batch_size
        self.start = start
        self.stop = stop
        self.rank = rank
        self.world_size = world_size

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        g = self.batch_size * self.world_size
        for i in range(self.start, self.stop):
            base = i * g + self.rank * self.batch_size
            yield list(range(base, base + self.batch_size))
