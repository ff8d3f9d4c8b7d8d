"""``effsr.imageio.list_images``: the one walk over input folders (upscale, eval, degrade, training data, profile)."""

from __future__ import annotations

from pathlib import Path

import pytest

from effsr.imageio import list_images


def _touch(root: Path, *names: str) -> None:
    for n in names:
        (root / n).parent.mkdir(parents=True, exist_ok=True)
        (root / n).write_bytes(b"")


def test_flat_and_recursive_listing(tmp_path: Path) -> None:
    _touch(tmp_path, "b.PNG", "a.jpg", "notes.txt", ".hidden.png", "._a.jpg", "sub/c.webp", "sub/deeper/d.tif",
           ".git/e.png", "out/f.png", "a-1/g.png")
    rel = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert rel == ["a.jpg", "b.PNG"]  # image suffixes in any case; hidden files and other files left out
    deep = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path, recursive=True,
                                                                      exclude=[tmp_path / "out"])]
    # Sorted by the relative path as a string (the order training subsets such as "the first 10k" rely on).
    assert deep == ["a-1/g.png", "a.jpg", "b.PNG", "sub/c.webp", "sub/deeper/d.tif"]
    with pytest.raises(NotADirectoryError):
        list_images(tmp_path / "a.jpg")


def test_a_link_loop_is_walked_once(tmp_path: Path) -> None:
    _touch(tmp_path, "sub/a.png")
    (tmp_path / "sub" / "loop").symlink_to(tmp_path)
    assert [p.name for p in list_images(tmp_path, recursive=True)] == ["a.png"]
