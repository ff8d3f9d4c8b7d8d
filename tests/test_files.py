"""``effsr.files``: every artefact is written atomically, with the umask's permissions, without touching process state.

The modes are checked through the library functions that write each kind of artefact (images, safetensors weights,
training checkpoints and their pointer, JSON and CSV reports, plots, ONNX bytes), under the usual 022 umask and under
077, which must be respected (0600 files, 0700 folders), not overridden.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from effsr import files
from effsr.errors import OutputExistsError
from effsr.evaluate import DatasetResult, ImageResult, write_csv, write_json
from effsr.imageio import read_rgb_uint8, write_rgb_uint8
from effsr.train.checkpoint import latest_checkpoint, save_checkpoint
from effsr.weights import read_state_dict, save_safetensors


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """Run the test under a umask, and fail if anything in effsr reads or sets it (os.umask changes it for every
    thread while it is read)."""
    old = os.umask(request.param)
    real = os.umask

    def forbidden(mask: int) -> int:
        raise AssertionError("effsr must not call os.umask")

    monkeypatch.setattr(os, "umask", forbidden)
    try:
        yield request.param
    finally:
        monkeypatch.setattr(os, "umask", real)
        os.umask(old)


def _artefacts(root: Path) -> dict[str, Path]:
    """Write one artefact of every kind through the function effsr uses for it; return them by kind."""
    img = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    out = {"image": write_rgb_uint8(img, root / "images" / "a.png")}
    sd = {"w": torch.ones(2, 3)}
    out["weights"] = save_safetensors(sd, root / "weights" / "w.safetensors", model="span", kwargs={"scale": 4})
    ckpt = save_checkpoint(root / "run", stage=0, iteration=3, model_state=sd, ema_state=sd, state={"x": 1})
    out["checkpoint folder"] = ckpt
    out["checkpoint weights"] = ckpt / "model.safetensors"
    out["checkpoint state"] = ckpt / "state.pt"
    out["checkpoint pointer"] = ckpt.parent / "latest"
    res = DatasetResult(model="m", dataset="d", scale=4, images=(ImageResult("a", 30.0, 31.0, 0.9, 0.8),))
    out["json"] = write_json([res], root / "reports" / "r.json")
    out["csv"] = write_csv([res], root / "reports" / "r.csv")
    out["onnx bytes"] = files.write_bytes(root / "model.onnx", b"\x08\x07")
    return out


def test_every_artefact_gets_the_umask_permissions(tmp_path: Path, umask: int) -> None:
    made = _artefacts(tmp_path / "new")
    want_file, want_dir = 0o666 & ~umask, 0o777 & ~umask
    for kind, path in made.items():
        want = want_dir if path.is_dir() else want_file
        assert _mode(path) == want, f"{kind} {path}: {oct(_mode(path))}, expected {oct(want)}"
    for folder in ("new", "new/images", "new/weights", "new/run", "new/run/checkpoints", "new/reports"):
        assert _mode(tmp_path / folder) == want_dir, folder
    # The artefacts read back, and no temporary file is left anywhere.
    assert read_rgb_uint8(made["image"]).shape == (4, 6, 3)
    assert torch.equal(read_state_dict(made["weights"])["w"], torch.ones(2, 3))
    assert latest_checkpoint(tmp_path / "new" / "run") == made["checkpoint folder"]
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(files.TEMP_SUFFIX)]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = files.write_text(tmp_path / "r.json", "old\n")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        files.write_text(target, "new\n")
    with pytest.raises(RuntimeError, match="boom"), files.atomic_path(tmp_path / "w.bin") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_overwrite_is_refused_unless_asked(tmp_path: Path) -> None:
    p = files.write_bytes(tmp_path / "a.bin", b"1")
    with pytest.raises(OutputExistsError, match="--overwrite") as err:
        files.write_bytes(p, b"2", overwrite=False)
    assert isinstance(err.value, FileExistsError) and err.value.exit_code == 1
    with pytest.raises(OutputExistsError), files.atomic_path(p, overwrite=False):
        pass
    assert p.read_bytes() == b"1"
    files.write_bytes(p, b"2")  # the library default replaces, atomically
    assert p.read_bytes() == b"2"
    with pytest.raises(OutputExistsError, match="is an input file"):
        files.check_output(p, overwrite=False, inputs={os.path.realpath(p)})


def test_threads_write_side_by_side(tmp_path: Path) -> None:
    """Each writer has its own temporary name: eight threads writing the same target leave one whole file."""
    payloads = [bytes([i]) * 50_000 for i in range(8)]
    threads = [threading.Thread(target=files.write_bytes, args=(tmp_path / "same.bin", data)) for data in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (tmp_path / "same.bin").read_bytes() in payloads
    assert [p.name for p in tmp_path.iterdir()] == ["same.bin"]
