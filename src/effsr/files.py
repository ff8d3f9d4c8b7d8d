"""The one way effsr writes a file: atomically, with the permissions the user's umask gives, never over an output
without being asked.

Every artefact (images, weights, checkpoints, JSON/CSV reports, plots, ONNX files, the native kernel cache) goes
through :func:`atomic_path` or one of its wrappers:

* the bytes go to a hidden temporary file beside the target (``.<name>.<random>.part``), are flushed and fsynced,
  then renamed over the target (``os.replace``, atomic on POSIX and Windows). A crash, a full disk or an exception
  leaves the old file (or none), never a half-written one; the temporary file is removed.
* the temporary file is created by ``os.open(..., O_CREAT | O_EXCL | O_WRONLY, 0o666)``, so the kernel applies the
  process umask exactly as a plain ``open()`` would: 0644 under the usual 022, 0600 under 077. (``tempfile.mkstemp``
  makes 0600 files whatever the umask, and reading the umask with ``os.umask`` changes it for every thread while
  it is read: neither is used.) Folders are made with mode 0777 minus the umask (0755 under 022), as ``mkdir`` does.
* ``overwrite=False`` refuses an existing target with :class:`effsr.errors.OutputExistsError` before writing
  anything; :func:`check_output` is the same check for callers that plan many outputs before doing any work.

Nothing here changes process-wide state; writes from several threads are safe (each has its own temporary name).
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .errors import OutputExistsError

__all__ = [
    "atomic_path",
    "check_output",
    "make_temp_dir",
    "open_atomic",
    "write_bytes",
    "write_json",
    "write_text",
]

# Suffix of temporary files and folders: cleanup code (train/checkpoint.py) and tests look for ``.*.part``.
TEMP_SUFFIX = ".part"
_NEW_FILE_FLAGS = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def check_output(path: str | os.PathLike[str], *, overwrite: bool, inputs: set[str] | None = None) -> Path:
    """``path`` as a Path when it may be written; :class:`OutputExistsError` when it exists and ``overwrite`` is
    false. ``inputs``: real paths (``os.path.realpath``) of the job's inputs, so the message can say that the file
    is an input."""
    p = Path(path)
    if not overwrite and (p.exists() or p.is_symlink()):
        what = "is an input file" if inputs and os.path.realpath(p) in inputs else "exists"
        raise OutputExistsError(p, what)
    return p


def _temp_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def _new_temp_file(target: Path) -> tuple[int, Path]:
    """An open descriptor on a new, empty temporary file beside ``target`` (mode 0666 minus the umask)."""
    for _ in range(64):
        tmp = _temp_name(target)
        try:
            return os.open(tmp, _NEW_FILE_FLAGS, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file beside {target}")


def make_temp_dir(target: str | os.PathLike[str]) -> Path:
    """A new, empty temporary folder beside ``target`` (mode 0777 minus the umask), for artefacts written as a
    folder and renamed into place whole (training checkpoints). The caller renames or removes it."""
    t = Path(target)
    t.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(64):
        tmp = _temp_name(t)
        try:
            tmp.mkdir(0o777)
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary folder beside {t}")


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX); best effort: some file systems and Windows cannot open a folder."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _commit(tmp: Path, target: Path) -> None:
    os.replace(tmp, target)
    _fsync_dir(target.parent)


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a writer that takes a file name (safetensors, ``torch.save``,
    a compiler's ``-o``, ``savefig``); on a normal exit the file is fsynced and renamed to ``path``, on an exception
    it is removed. The temporary file exists (empty) when the block starts. A writer that replaces it rather than
    truncating it may leave other permissions (safetensors writes 0600 files): the file gets back the mode the
    kernel gave the temporary file (0666 minus the umask). Writers that infer a format from the suffix need it given
    explicitly (the temporary name ends in ``.part``)."""
    target = check_output(path, overwrite=overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _new_temp_file(target)
    mode = stat.S_IMODE(os.fstat(fd).st_mode)
    os.close(fd)
    try:
        yield tmp
        if stat.S_IMODE(tmp.stat().st_mode) != mode:
            os.chmod(tmp, mode)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        _commit(tmp, target)
    finally:
        if tmp.exists() or tmp.is_symlink():
            tmp.unlink()


@contextmanager
def open_atomic(path: str | os.PathLike[str], mode: str = "wb", *, overwrite: bool = True,
                encoding: str | None = None, newline: str | None = None) -> Iterator[IO[Any]]:
    """``open(path, mode)`` for writing, atomically: the file appears whole at ``path`` when the block ends without
    an exception (``"wb"`` or ``"w"``; text mode defaults to UTF-8)."""
    if mode not in ("wb", "w"):
        raise ValueError(f"open_atomic writes new files only (mode 'wb' or 'w'), got {mode!r}")
    target = check_output(path, overwrite=overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _new_temp_file(target)
    try:
        if mode == "w":
            f: IO[Any] = os.fdopen(fd, "w", encoding=encoding or "utf-8", newline=newline)
        else:
            f = os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        tmp.unlink()
        raise
    try:
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _commit(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes(path: str | os.PathLike[str], data: bytes | bytearray | memoryview, *,
                overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with open_atomic(path, "wb", overwrite=overwrite) as f:
        f.write(data)
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str, *, overwrite: bool = True) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path."""
    with open_atomic(path, "w", overwrite=overwrite) as f:
        f.write(text)
    return Path(path)


def write_json(path: str | os.PathLike[str], payload: Any, *, overwrite: bool = True) -> Path:
    """Write ``payload`` as indented JSON (with a final newline) atomically and return the path."""
    return write_text(path, json.dumps(payload, indent=2) + "\n", overwrite=overwrite)
