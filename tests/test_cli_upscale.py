"""``effsr upscale``: files and folders in, PNGs out; every odd or broken input reported by name, nothing lost.

Runs the real command through typer's CliRunner with SPAN (official weights, minimum size 1, fast) on tiny images.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from typer.testing import CliRunner

import effsr
from effsr.cli import app
from effsr.imageio import read_rgb_uint8, tensor_to_uint8, uint8_to_tensor
from effsr.infer import upscale

RNG = np.random.default_rng(7)
RGB = RNG.integers(0, 256, (12, 16, 3), dtype=np.uint8)
MODEL = ["--model", "span"]


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    # A wide terminal, so that messages holding long tmp paths are not wrapped inside typer's error box.
    return CliRunner(env={"COLUMNS": "1000", "TERMINAL_WIDTH": "1000"})


@pytest.fixture(scope="module")
def span() -> torch.nn.Module:
    return effsr.load("span")


def _run(runner: CliRunner, *args: str | Path) -> object:
    return runner.invoke(app, ["upscale", *map(str, args)])


def _good(path: Path, arr: np.ndarray = RGB) -> Path:
    PILImage.fromarray(arr).save(path)
    return path


def _corrupt(path: Path) -> Path:
    data = (_good(path)).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _no_partials(folder: Path) -> bool:
    return not list(folder.glob(".*.part"))


def test_mixed_folder_and_files(tmp_path: Path, runner: CliRunner, span) -> None:
    src = tmp_path / "in"
    src.mkdir()
    _good(src / "rgb.png")
    _good(src / "gray.png", RGB[..., 0])
    cv2.imwrite(str(src / "rgba.png"), np.dstack([RGB[..., ::-1], RGB[..., :1]]))
    cv2.imwrite(str(src / "deep.png"), RGB[..., ::-1].astype(np.uint16) * 257)
    PILImage.fromarray(RGB).save(src / "photo.jpg", quality=90)
    PILImage.fromarray(RGB).convert("P", palette=PILImage.Palette.ADAPTIVE).save(src / "pal.png")
    (src / "notes.txt").write_text("not an image; folders only list image files")
    extra = _good(tmp_path / "single.bmp")
    out = tmp_path / "out"

    result = _run(runner, src, extra, "-o", out, *MODEL, "--threads", "1")
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["deep.png", "gray.png", "pal.png", "photo.png", "rgb.png", "rgba.png", "single.png"]
    modes = {p.stem: PILImage.open(p).mode for p in out.iterdir()}
    assert modes["gray"] == "L" and modes["rgba"] == "RGBA" and modes["rgb"] == "RGB" and modes["pal"] == "RGB"
    deep = cv2.imread(str(out / "deep.png"), cv2.IMREAD_UNCHANGED)
    assert deep.dtype == np.uint16 and deep.shape == (48, 64, 3)  # 16-bit stays 16-bit
    # An ordinary RGB file gives the library's (harness) result. The default backend is "fast", equal to the eager
    # forward within 5e-4 in [0,1] units (effsr.deploy.checks.FP32_TOLERANCE), which can flip a rounding by one level
    # on a rare value.
    expected = tensor_to_uint8(upscale(span, uint8_to_tensor(read_rgb_uint8(src / "rgb.png"))))
    diff = np.abs(read_rgb_uint8(out / "rgb.png").astype(np.int16) - expected.astype(np.int16))
    assert diff.max() <= 1 and (diff > 0).mean() <= 1e-3
    assert _no_partials(out)
    assert "7 image(s) written" in result.output


def test_corrupt_file_stops_at_first_error(tmp_path: Path, runner: CliRunner) -> None:
    src = tmp_path / "in"
    src.mkdir()
    _good(src / "a.png")
    _corrupt(src / "b.png")
    _good(src / "c.png")
    out = tmp_path / "out"
    result = _run(runner, src, "-o", out, *MODEL)
    assert result.exit_code == 1
    assert str(src / "b.png") in result.output and "--continue-on-error" in result.output
    assert (out / "a.png").exists() and not (out / "b.png").exists() and not (out / "c.png").exists()
    assert _no_partials(out)


def test_continue_on_error_processes_the_others(tmp_path: Path, runner: CliRunner) -> None:
    src = tmp_path / "in"
    src.mkdir()
    _good(src / "a.png")
    _corrupt(src / "b.png")
    (src / "c.jpg").write_text("this is text, not a JPEG")
    _good(src / "d.png")
    out = tmp_path / "out"
    result = _run(runner, src, tmp_path / "missing.png", "-o", out, *MODEL, "--continue-on-error")
    assert result.exit_code == 1
    for bad in ("b.png", "c.jpg", "missing.png"):
        assert bad in result.output
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "d.png"]
    assert "2 image(s) written" in result.output and "3 failed" in result.output


def test_missing_path_stops_before_any_work(tmp_path: Path, runner: CliRunner) -> None:
    good = _good(tmp_path / "a.png")
    out = tmp_path / "out"
    result = _run(runner, good, tmp_path / "nope.png", "-o", out, *MODEL)
    assert result.exit_code == 1 and "nope.png" in result.output
    assert not out.exists() or not list(out.iterdir())


def test_unreadable_folder(tmp_path: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    good = _good(tmp_path / "a.png")
    real_iterdir = Path.iterdir

    def iterdir(self: Path):  # noqa: ANN202
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    # Tests may run as root, where chmod does not stop listing: simulate the OS refusal.
    monkeypatch.setattr(Path, "iterdir", iterdir)
    result = _run(runner, locked, good, "-o", tmp_path / "out", *MODEL, "--continue-on-error")
    assert result.exit_code == 1 and "locked" in result.output and "Permission denied" in result.output
    assert (tmp_path / "out" / "a.png").exists()


def test_existing_outputs_need_overwrite(tmp_path: Path, runner: CliRunner) -> None:
    good = _good(tmp_path / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"keep me")
    result = _run(runner, good, "-o", out, *MODEL)
    assert result.exit_code == 1 and "--overwrite" in result.output
    assert (out / "a.png").read_bytes() == b"keep me"
    result = _run(runner, good, "-o", out, *MODEL, "--overwrite")
    assert result.exit_code == 0, result.output
    assert read_rgb_uint8(out / "a.png").shape == (48, 64, 3)


def test_never_writes_over_an_input_without_overwrite(tmp_path: Path, runner: CliRunner) -> None:
    src = tmp_path / "photos"
    src.mkdir()
    original = _good(src / "a.png").read_bytes()
    result = _run(runner, src, "-o", src, *MODEL)
    assert result.exit_code == 1 and "is an input file" in result.output
    assert (src / "a.png").read_bytes() == original
    result = _run(runner, src, "-o", src, *MODEL, "--overwrite")
    assert result.exit_code == 0, result.output
    assert read_rgb_uint8(src / "a.png").shape == (48, 64, 3)


def test_two_inputs_with_one_output_name(tmp_path: Path, runner: CliRunner) -> None:
    a_png, a_jpg = _good(tmp_path / "a.png"), tmp_path / "a.jpg"
    PILImage.fromarray(RGB).save(a_jpg)
    result = _run(runner, a_png, a_jpg, "-o", tmp_path / "out", *MODEL)
    assert result.exit_code == 1 and "a.jpg" in result.output and "a.png" in result.output
    assert not (tmp_path / "out").exists()


def test_write_failure_leaves_nothing_half_written(tmp_path: Path, runner: CliRunner,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    good = _good(tmp_path / "a.png")
    out = tmp_path / "out"

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("effsr.imageio.os.fsync", disk_full)
    result = _run(runner, good, "-o", out, *MODEL)
    assert result.exit_code == 1 and "a.png" in result.output and "No space" in result.output
    assert list(out.iterdir()) == []  # neither the PNG nor its temporary file


def test_tiling_and_memory_flags(tmp_path: Path, runner: CliRunner, span) -> None:
    arr = RNG.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    good = _good(tmp_path / "a.png", arr)
    tile_flags = ["--tile", "24", "--tile-overlap", "8", "--backend", "eager"]
    result = _run(runner, good, "-o", tmp_path / "t", *MODEL, *tile_flags)
    assert result.exit_code == 0, result.output
    tiled = read_rgb_uint8(tmp_path / "t" / "a.png")
    assert np.array_equal(tiled, tensor_to_uint8(upscale(span, uint8_to_tensor(arr), tile=24, tile_overlap=8)))
    whole = tensor_to_uint8(upscale(span, uint8_to_tensor(arr)))
    assert not np.array_equal(tiled, whole)  # it did tile (24-pixel tiles are far below SPAN's exact overlap)
    result = _run(runner, good, "-o", tmp_path / "m", *MODEL, "--max-memory", "200MiB", "--backend", "eager")
    assert result.exit_code == 0, result.output
    assert np.array_equal(read_rgb_uint8(tmp_path / "m" / "a.png"), whole)  # fits: one whole-image forward


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-memory", "lots"], "memory size"),
        (["--tile", "10", "--tile-overlap", "8"], "half"),
        (["--backend", "tensorrt"], "tensorrt"),
    ],
)
def test_bad_flags_are_usage_errors(tmp_path: Path, runner: CliRunner, args: list[str], message: str) -> None:
    good = _good(tmp_path / "a.png")
    result = _run(runner, good, "-o", tmp_path / "out", *MODEL, *args)
    assert result.exit_code == 2 and message in result.output


def test_setup_errors(tmp_path: Path, runner: CliRunner) -> None:
    good = _good(tmp_path / "a.png")
    result = _run(runner, good, "-o", tmp_path / "out")
    assert result.exit_code == 2 and "--model" in result.output
    result = _run(runner, good, "-o", tmp_path / "out", "--model", "not_a_model")
    assert result.exit_code == 2 and "not_a_model" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _run(runner, empty, "-o", tmp_path / "out", *MODEL)
    assert result.exit_code == 1 and "no input images" in result.output
    result = _run(runner, good, "-o", good, *MODEL)
    assert result.exit_code == 2 and "not a folder" in result.output


def test_batches_of_same_size_images(tmp_path: Path, runner: CliRunner) -> None:
    """--batch-size runs same-size RGB images together; every output equals the one-image run (rounding aside)."""
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        _good(src / f"same{i}.png", RNG.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    _good(src / "other.png", RNG.integers(0, 256, (10, 14, 3), dtype=np.uint8))
    _good(src / "gray.png", RGB[..., 0])
    _corrupt(src / "broken.png")
    flags = [*MODEL, "--backend", "eager", "--continue-on-error"]
    one = _run(runner, src, "-o", tmp_path / "one", *flags)
    many = _run(runner, src, "-o", tmp_path / "many", *flags, "--batch-size", "4")
    for result in (one, many):
        assert result.exit_code == 1 and "broken.png" in result.output  # the corrupt file is reported, not fatal
        assert "5 image(s) written" in result.output and "1 failed" in result.output
    for name in ("same0", "same1", "same2", "other", "gray"):
        a = np.asarray(PILImage.open(tmp_path / "one" / f"{name}.png")).astype(np.int16)
        b = np.asarray(PILImage.open(tmp_path / "many" / f"{name}.png")).astype(np.int16)
        assert a.shape == b.shape
        assert np.abs(a - b).max() <= 1 and (a != b).mean() <= 1e-3, name


def test_precision_and_compile_flags(tmp_path: Path, runner: CliRunner, span,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # The arithmetic, not this host: claim native bfloat16 so that effsr.deploy.precision lets it run anywhere.
    monkeypatch.setenv("EFFSR_CPU_FLAGS", "avx2 avx512_bf16")
    # A smooth photo-like image (the low-precision tolerances are stated for natural images, not for noise).
    yy, xx = np.mgrid[0:24, 0:32]
    smooth = np.stack([yy * 8 + 20, xx * 6 + 30, (yy + xx) * 4 + 10], axis=-1).clip(0, 255).astype(np.uint8)
    good = _good(tmp_path / "a.png", smooth)
    reference = tensor_to_uint8(upscale(span, uint8_to_tensor(smooth))).astype(np.int16)
    # bfloat16 keeps 8 bits of mantissa: effsr.deploy.LOW_PRECISION_TOLERANCE allows 6e-2 (15 levels).
    result = _run(runner, good, "-o", tmp_path / "bf16", *MODEL, "--precision", "bf16")
    assert result.exit_code == 0, result.output
    bf16 = read_rgb_uint8(tmp_path / "bf16" / "a.png").astype(np.int16)
    assert np.abs(bf16 - reference).max() <= 15 and not np.array_equal(bf16, reference)  # it did run in bf16
    result = _run(runner, good, "-o", tmp_path / "compiled", *MODEL, "--compile", "--threads", "1")
    assert result.exit_code == 0, result.output
    compiled = read_rgb_uint8(tmp_path / "compiled" / "a.png").astype(np.int16)
    assert np.abs(compiled - reference).max() <= 1  # float32: the fast path's 5e-4 bound, at most one level
    result = _run(runner, good, "-o", tmp_path / "x", *MODEL, "--precision", "fp16", "--backend", "onnxruntime")
    assert result.exit_code == 2 and "onnxruntime backend runs fp32, not fp16" in result.output


def test_failed_batch_falls_back_to_one_image_at_a_time(tmp_path: Path, runner: CliRunner,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import effsr.infer

    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise MemoryError("the joint batch does not fit")

    monkeypatch.setattr(effsr.infer, "upscale_images", out_of_memory)
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        _good(src / f"s{i}.png")
    result = _run(runner, src, "-o", tmp_path / "out", *MODEL, "--batch-size", "3")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["s0.png", "s1.png", "s2.png"]
