"""Training data: folder layouts, scale-aligned paired crops and augmentations, seeded sampling, on-the-fly LR."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from typer.testing import CliRunner

from effsr.data.batches import degrade_windows, prepare_batch
from effsr.data.datasets import DEGRADE_MARGIN_LR, PositionBatchSampler, TrainDataset, find_images, match_lr_files
from effsr.data.degrade import degrade_image
from effsr.data.subimages import extract_subimages, tile_origins
from effsr.data.transforms import apply_aug_numpy, apply_aug_torch
from effsr.imageio import read_rgb_uint8, write_rgb_uint8

SCALE = 4


def _rand_img(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


@pytest.fixture()
def div2k_like(tmp_path: Path) -> tuple[Path, Path]:
    """DIV2K-style pair folders (``0001.png`` / ``0001x4.png``) whose LR is HR sampled every 4th pixel.

    With that LR, any correctly aligned and identically augmented crop pair satisfies ``lr == hr[::4, ::4]``.
    """
    rng = np.random.default_rng(0)
    hr_dir, lr_dir = tmp_path / "DIV2K_train_HR", tmp_path / "DIV2K_train_LR_bicubic" / "X4"
    for i, (h, w) in enumerate([(96, 128), (120, 88), (100, 100)], start=1):
        hr = _rand_img(rng, h, w)
        write_rgb_uint8(hr, hr_dir / f"{i:04d}.png")
        write_rgb_uint8(np.ascontiguousarray(hr[::SCALE, ::SCALE]), lr_dir / f"{i:04d}x4.png")
    return hr_dir, lr_dir


def test_layouts_limit_and_file_list(tmp_path: Path, div2k_like: tuple[Path, Path]) -> None:
    hr_dir, lr_dir = div2k_like
    hr = find_images(hr_dir)
    assert [p.name for p in hr] == ["0001.png", "0002.png", "0003.png"]
    assert [p.name for p in match_lr_files(hr, hr_dir, lr_dir, SCALE)] == ["0001x4.png", "0002x4.png", "0003x4.png"]
    # LSDIR: nested folders in HR and LR, "first N images" by sorted relative path.
    rng = np.random.default_rng(1)
    lsdir_hr, lsdir_lr = tmp_path / "LSDIR" / "HR" / "train", tmp_path / "LSDIR" / "X4" / "train"
    for folder in ("0001000", "0002000"):
        for k in (2, 1):
            write_rgb_uint8(_rand_img(rng, 32, 32), lsdir_hr / folder / f"{folder[:4]}{k:03d}.png")
            write_rgb_uint8(_rand_img(rng, 8, 8), lsdir_lr / folder / f"{folder[:4]}{k:03d}x4.png")
    first3 = find_images(lsdir_hr, limit=3)
    assert [p.relative_to(lsdir_hr).as_posix() for p in first3] == [
        "0001000/0001001.png", "0001000/0001002.png", "0002000/0002001.png"
    ]
    lr = match_lr_files(first3, lsdir_hr, lsdir_lr, SCALE)
    assert lr[2].relative_to(lsdir_lr).as_posix() == "0002000/0002001x4.png"
    lst = tmp_path / "list.txt"
    lst.write_text("# two files\n0002000/0002002.png\n\n0001000/0001001.png\n")
    assert [p.name for p in find_images(lsdir_hr, file_list=lst)] == ["0002002.png", "0001001.png"]
    with pytest.raises(FileNotFoundError, match="no LR"):
        match_lr_files(first3, lsdir_hr, lr_dir, SCALE)


def test_paired_crops_are_aligned_and_augmented_together(div2k_like: tuple[Path, Path]) -> None:
    hr_dir, lr_dir = div2k_like
    hr = find_images(hr_dir)
    ds = TrainDataset(hr, match_lr_files(hr, hr_dir, lr_dir, SCALE), scale=SCALE, patch_size=48, seed=3)
    offsets = set()
    for pos in range(40):
        item = ds[pos]
        lr, hr_p = item["lr"], item["hr"]
        assert lr.dtype == torch.uint8 and lr.shape == (3, 12, 12) and hr_p.shape == (3, 48, 48)
        # LR pixel i sits on HR pixel 4i; a flip of the 48-pixel patch moves that sample to offset 3 on its axis.
        hits = [(oy, ox) for oy in (0, 3) for ox in (0, 3) if torch.equal(lr, hr_p[:, oy::SCALE, ox::SCALE])]
        assert len(hits) == 1, pos
        offsets.add(hits[0])
    assert offsets == {(0, 0), (0, 3), (3, 0), (3, 3)}  # every flip combination occurs


def test_sampling_is_a_function_of_seed_and_position(div2k_like: tuple[Path, Path]) -> None:
    hr_dir, lr_dir = div2k_like
    hr = find_images(hr_dir)
    lr = match_lr_files(hr, hr_dir, lr_dir, SCALE)
    a = TrainDataset(hr, lr, scale=SCALE, patch_size=32, seed=7)
    b = TrainDataset(hr, lr, scale=SCALE, patch_size=32, seed=7)
    c = TrainDataset(hr, lr, scale=SCALE, patch_size=32, seed=8)
    assert torch.equal(a[11]["hr"], b[11]["hr"]) and not torch.equal(a[11]["hr"], c[11]["hr"])
    # Every image once per epoch, in a seeded order.
    assert sorted(a.image_index(p) for p in range(3)) == [0, 1, 2]
    # Whatever the number of workers, and with one rank of batch 4 or two ranks of batch 2, the same samples.
    one = PositionBatchSampler(4, start=2, stop=5)
    r0 = PositionBatchSampler(2, start=2, stop=5, rank=0, world_size=2)
    r1 = PositionBatchSampler(2, start=2, stop=5, rank=1, world_size=2)
    expected = [[8, 9, 10, 11], [12, 13, 14, 15], [16, 17, 18, 19]]
    assert [x + y for x, y in zip(r0, r1, strict=True)] == list(one) == expected
    plain = [x["hr"] for x in DataLoader(a, batch_sampler=one, num_workers=0)]
    workers = [x["hr"] for x in DataLoader(b, batch_sampler=one, num_workers=2)]
    assert all(torch.equal(x, y) for x, y in zip(plain, workers, strict=True))


def test_on_the_fly_lr_equals_crop_of_whole_image_lr(data_dir: Path) -> None:
    """HR-only patches: LR made on the device from the window equals the same crop of MATLAB's LR of the image."""
    files = [data_dir / "Set5" / "HR" / "butterfly.png", data_dir / "Set5" / "HR" / "bird.png"]
    ds = TrainDataset(files, None, scale=SCALE, patch_size=64, seed=5)
    whole = {f: degrade_image(read_rgb_uint8(f), SCALE) for f in files}  # numpy MATLAB path, uint8
    hr_whole = {f: read_rgb_uint8(f) for f in files}
    for pos in range(12):
        item = ds[pos]
        m = DEGRADE_MARGIN_LR * SCALE
        assert item["hr_window"].shape == (3, 64 + 2 * m, 64 + 2 * m)
        lr, hr = degrade_windows(item["hr_window"][None], SCALE, dtype=torch.float64)
        lr_u8 = torch.round(lr[0] * 255).to(torch.uint8)
        hr_u8 = torch.round(hr[0] * 255).to(torch.uint8)
        # Locate the (unaugmented) patch in the image from the HR window centre, then compare the LR crop.
        f = files[ds.image_index(pos)]
        ref_hr = torch.from_numpy(hr_whole[f].transpose(2, 0, 1).copy())
        ref_lr = torch.from_numpy(whole[f].transpose(2, 0, 1).copy())
        found = False
        for top in range(0, ref_hr.shape[1] - 63, SCALE):
            row = ref_hr[:, top : top + 64]
            for left in range(0, ref_hr.shape[2] - 63, SCALE):
                if torch.equal(row[:, :, left : left + 64], hr_u8):
                    y, x = top // SCALE, left // SCALE
                    assert torch.equal(ref_lr[:, y : y + 16, x : x + 16], lr_u8), (pos, top, left)
                    found = True
                    break
            if found:
                break
        assert found, f"position {pos}: patch not found in {f.name}"
    # With augmentation codes, the pair gets the same flips/transposition as the numpy transform would apply.
    batch = {"hr_window": torch.stack([ds[p]["hr_window"] for p in range(4)]),
             "aug": torch.tensor([[1, 0, 0], [0, 1, 1], [1, 1, 1], [0, 0, 0]], dtype=torch.bool)}
    out = prepare_batch(batch, SCALE, torch.device("cpu"))
    plain, _ = degrade_windows(batch["hr_window"], SCALE)
    for i, code in enumerate(batch["aug"].tolist()):
        assert torch.equal(out["lr"][i], apply_aug_torch(plain[i], code))
        ref = apply_aug_numpy(plain[i].permute(1, 2, 0).numpy(), tuple(code))
        assert np.array_equal(out["lr"][i].permute(1, 2, 0).numpy(), ref)


def test_extract_subimages_counts_and_content(tmp_path: Path) -> None:
    assert tile_origins(100, 40, 20, 0) == [0, 20, 40, 60]
    assert tile_origins(110, 40, 20, 0) == [0, 20, 40, 60, 70]
    assert tile_origins(110, 40, 20, 12) == [0, 20, 40, 60]
    rng = np.random.default_rng(2)
    hr_dir, lr_dir = tmp_path / "HR", tmp_path / "LR"
    hr = _rand_img(rng, 112, 96)
    write_rgb_uint8(hr, hr_dir / "0001.png")
    write_rgb_uint8(np.ascontiguousarray(hr[::4, ::4]), lr_dir / "0001x4.png")
    report = extract_subimages(hr_dir, tmp_path / "hr_sub", lr_dir=lr_dir, lr_out_dir=tmp_path / "lr_sub",
                               crop_size=48, step=32, thresh_size=0, scale=4, workers=2)
    # Rows: 0, 32, 64 (112 - 48 = 64 exactly); columns: 0, 32, then 48 (flush right: 96 - 48).
    assert (report.images, report.hr_tiles, report.lr_tiles) == (1, 9, 9)
    hr_tiles = sorted((tmp_path / "hr_sub").glob("*.png"))
    lr_tiles = sorted((tmp_path / "lr_sub").glob("*.png"))
    assert [p.name for p in hr_tiles] == [p.name for p in lr_tiles] == [f"0001_s{k:03d}.png" for k in range(1, 10)]
    assert np.array_equal(read_rgb_uint8(hr_tiles[2]), hr[0:48, 48:96])
    for h_t, l_t in zip(hr_tiles, lr_tiles, strict=True):
        assert np.array_equal(read_rgb_uint8(h_t)[::4, ::4], read_rgb_uint8(l_t))
    # An LR that is not HR / scale is refused.
    write_rgb_uint8(_rand_img(rng, 20, 24), lr_dir / "0001x4.png")
    with pytest.raises(ValueError, match="not x4"):
        extract_subimages(hr_dir, tmp_path / "a", lr_dir=lr_dir, lr_out_dir=tmp_path / "b", crop_size=48, step=32)


def test_extract_subimages_cli(tmp_path: Path) -> None:
    import effsr.cli.data_extract  # noqa: F401  (registers the subcommand)
    from effsr.cli import app

    write_rgb_uint8(_rand_img(np.random.default_rng(3), 64, 64), tmp_path / "in" / "a.png")
    res = CliRunner().invoke(app, ["data", "extract-subimages", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                                   "--crop-size", "32", "--step", "32"])
    assert res.exit_code == 0, res.output
    assert "4 HR sub-images" in res.output
    assert len(list((tmp_path / "out").glob("a_s*.png"))) == 4
