"""``effsr upscale`` on real folders, run as the installed console script: ``-o FILE``, ``-r`` trees, ``--suffix``,
``--ext``, ``--skip-existing``, the summary line, weight variants by name, and the permissions of what it writes
(0644 / 0755 under a 022 umask; a 077 umask respected)."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from .test_cli_conventions import run_effsr

RNG = np.random.default_rng(11)


def _image(path: Path, h: int = 10, w: int = 12, mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode).save(path)
    return path


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_a_tree_with_suffix_ext_skip_existing_and_modes(tmp_path: Path, weights_dir: Path) -> None:
    """One run over a tree: the tree is kept, the output folder inside it is not read back, an existing output is
    skipped (and left as it was), a broken file fails without stopping the others, and the last line counts all."""
    tree = tmp_path / "album"
    _image(tree / "a.png")
    _image(tree / "2023" / "b.png", mode="L")
    _image(tree / "2023" / "summer" / "c.jpg")
    _image(tree / ".thumbs" / "hidden.png")
    data = _image(tree / "broken.png").read_bytes()
    (tree / "broken.png").write_bytes(data[: len(data) // 2])
    out = tree / "x4"  # inside the input tree: never walked as input
    (out / "2023").mkdir(parents=True)
    (out / "2023" / "b_x4.webp").write_bytes(b"from an earlier run")
    _image(out / "old_x4.png")  # would be read as an input if the walk entered the output folder

    res = run_effsr("upscale", tree, "-r", "-o", out, "--suffix", "_x4", "--ext", "webp", "-m", "span",
                    "--skip-existing", "--continue-on-error", cwd=tmp_path, umask=0o022)
    assert res.returncode == 1, res.stderr  # one file failed
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["2023/b_x4.webp", "2023/summer/c_x4.webp", "a_x4.webp", "old_x4.png"]
    assert (out / "2023" / "b_x4.webp").read_bytes() == b"from an earlier run"
    assert "skipped: " in res.stderr and "b.png" in res.stderr
    assert "broken.png" in res.stderr and "truncated or corrupt" in res.stderr
    assert "2 image(s) written to" in res.stderr and "1 skipped, 1 failed in" in res.stderr
    with PILImage.open(out / "a_x4.webp") as im:
        assert im.format == "WEBP" and im.size == (48, 40)
    for f in (out / "a_x4.webp", out / "2023" / "summer" / "c_x4.webp"):
        assert _mode(f) == 0o644, f
    assert _mode(out / "2023" / "summer") == 0o755  # a folder effsr made

    again = run_effsr("upscale", tree / "2023", "-r", "-o", out / "2023", "--suffix", "_x4", "--ext", "webp", "-m",
                      "span", "--skip-existing", cwd=tmp_path)
    assert again.returncode == 0, again.stderr  # all skipped is a success: the model is not even loaded
    assert "0 image(s) written" in again.stderr and "2 skipped, 0 failed" in again.stderr


def test_one_file_output_and_a_077_umask(tmp_path: Path, weights_dir: Path) -> None:
    """-o FILE writes that file in the format of its suffix (not a folder named like it); mdrn_x3 is MDRN's x3
    record; a 077 umask gives private files and folders."""
    src = _image(tmp_path / "head.png", 10, 12)
    target = tmp_path / "private" / "head_x3.jpg"
    res = run_effsr("upscale", src, "-o", target, "-m", "mdrn_x3", "--backend", "eager", cwd=tmp_path, umask=0o077)
    assert res.returncode == 0, res.stderr
    assert target.is_file() and "1 image(s) written to" in res.stderr
    with PILImage.open(target) as im:
        assert im.format == "JPEG" and im.size == (36, 30)
    assert _mode(target) == 0o600 and _mode(target.parent) == 0o700
    refused = run_effsr("upscale", src, "-o", target, "-m", "mdrn", "--scale", "3", cwd=tmp_path)
    assert refused.returncode == 1 and "--overwrite" in refused.stderr
    replaced = run_effsr("upscale", src, "-o", target, "-m", "mdrn", "--scale", "3", "--overwrite", "--backend",
                         "eager", cwd=tmp_path, umask=0o022)
    assert replaced.returncode == 0, replaced.stderr
    assert _mode(target) == 0o644  # a new file, with the umask of this run
