"""Weight records, resolution of weight files and safe loading of state_dicts.

This module knows no architecture. Architecture files declare :class:`WeightsRecord` objects; the registry
pairs them with builders. Loading never unpickles code: ``.pth`` files go through
``torch.load(..., weights_only=True)`` and ``.safetensors`` through safetensors.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import WeightsError
from .files import atomic_path, open_atomic

__all__ = [
    "WeightsRecord",
    "WeightsError",
    "cache_dir",
    "resolve_weights",
    "read_state_dict",
    "unwrap_state_dict",
    "save_safetensors",
    "read_effsr_metadata",
    "Int8Payload",
    "is_int8_file",
    "split_int8_tensors",
    "sha256_file",
    "state_dict_sha256",
]

# Wrapper keys used by BasicSR-style trainers, tried in this order (EMA first: it is the evaluated one).
WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model", "net")


@dataclass(frozen=True)
class WeightsRecord:
    """One published checkpoint: where it lives and how to build the model that fits it."""

    name: str  # short id, e.g. "rlfn_ntire2024"
    model: str  # registry name of the architecture, e.g. "rlfn"
    file: str  # file name on disk and in the mirror
    url: str  # download URL pinned to a commit
    sha256: str
    wrapper_key: str | None  # top-level key holding the state_dict, or None for a bare state_dict
    kwargs: Mapping[str, Any] = field(default_factory=dict)  # constructor arguments for these weights
    params: int = 0  # parameter count of the built model
    source: str = ""  # repository @ commit, path
    licence: str = ""
    scale: int = 4
    description: str = ""
    # :func:`state_dict_sha256` of the file's state_dict, set where another architecture shares the key layout (DSCF is
    # SPAN's deploy layout at 26 channels): detection then knows the published file by its content.
    state_dict_sha256: str = ""


def state_dict_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """A digest of a state_dict's content: every key with its tensor's dtype, shape and bytes, in sorted key order.

    It does not depend on the container (.pth, safetensors, wrapper key, key order), only on names and values.
    """
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().to("cpu").contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def cache_dir() -> Path:
    """The download cache: ``$EFFSR_CACHE`` or ``~/.cache/effsr/weights``."""
    env = os.environ.get("EFFSR_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "effsr" / "weights"


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download(url: str, dest: Path, sha256: str, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` through a temporary file; keep it only when the sha256 matches."""
    try:
        h = hashlib.sha256()
        with open_atomic(dest, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while True:
                chunk = resp.read(1 << 20)
                if not chunk:
                    break
                h.update(chunk)
                out.write(chunk)
            digest = h.hexdigest()
            if sha256 and digest != sha256:  # raised inside the block: the temporary file is discarded
                raise WeightsError(
                    f"download of {url} has sha256 {digest}, expected {sha256}; the file was discarded"
                )
        return dest
    except WeightsError:
        raise
    except Exception as exc:  # network errors, HTTP errors
        raise WeightsError(f"could not download {url}: {exc}") from exc


def resolve_weights(
    record: WeightsRecord | None = None,
    path: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    verify: bool = True,
) -> Path:
    """Find the weights file.

    Order: an explicit ``path``; then ``$EFFSR_WEIGHTS_DIR/<file>`` (an offline mirror); then the cache
    folder; then a download from ``record.url`` verified by sha256 into the cache.
    Files found in the mirror or cache are verified by sha256 when ``verify`` is true. When the
    project's shared assets folder (``$EFFSR_ASSETS/weights``, see :mod:`effsr.assets`) holds the file, it
    serves as a last offline mirror before any download.
    """
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise WeightsError(f"weights file not found: {p}")
        return p
    if record is None:
        raise WeightsError("no weights path and no weights record given")
    candidates: list[Path] = []
    mirror = os.environ.get("EFFSR_WEIGHTS_DIR")
    if mirror:
        candidates.append(Path(mirror).expanduser() / record.file)
    candidates.append(cache_dir() / record.file)
    from .assets import weights_mirror  # generic folder lookup, no architecture knowledge

    shared = weights_mirror() / record.file
    if shared not in candidates:
        candidates.append(shared)
    for cand in candidates:
        if cand.is_file():
            if verify and record.sha256:
                digest = sha256_file(cand)
                if digest != record.sha256:
                    raise WeightsError(
                        f"{cand} has sha256 {digest}, expected {record.sha256} for {record.name}; "
                        "remove or replace the file"
                    )
            return cand
    if not download:
        where = ", ".join(str(c) for c in candidates)
        raise WeightsError(f"weights {record.file} not found (looked in {where}) and downloads are disabled")
    return _download(record.url, cache_dir() / record.file, record.sha256)


def _load_raw(path: Path) -> Any:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:
            raise WeightsError(f"cannot read safetensors file {path}: {exc}") from exc
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(
            f"cannot read {path} as a weights-only PyTorch checkpoint ({type(exc).__name__}: {exc}). "
            "effsr never unpickles arbitrary code; convert the file to safetensors if it is trusted."
        ) from exc


def unwrap_state_dict(obj: Any, wrapper_key: str | None = None) -> dict[str, torch.Tensor]:
    """Return the tensor dict inside a checkpoint, with ``module.`` prefixes stripped.

    ``wrapper_key`` names the key to take; otherwise ``params_ema``, ``params``, ``state_dict``... are
    tried in order when the top level is not itself a flat tensor dict.
    """
    if not isinstance(obj, Mapping):
        raise WeightsError(f"checkpoint holds a {type(obj).__name__}, not a state_dict")
    if wrapper_key is not None:
        if wrapper_key not in obj:
            raise WeightsError(
                f"checkpoint has no '{wrapper_key}' entry (top-level keys: {sorted(obj)[:8]})"
            )
        obj = obj[wrapper_key]
    elif not all(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in WRAPPER_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
        else:
            raise WeightsError(f"checkpoint has no state_dict (top-level keys: {sorted(obj)[:8]})")
    sd: dict[str, torch.Tensor] = {}
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            continue
        key = k[len("module.") :] if k.startswith("module.") else k
        sd[key] = v
    if not sd:
        raise WeightsError("checkpoint state_dict holds no tensors")
    return sd


def read_state_dict(path: str | os.PathLike[str], wrapper_key: str | None = None) -> dict[str, torch.Tensor]:
    """Read a ``.pth``/``.safetensors`` file safely and return its (unwrapped) state_dict."""
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"weights file not found: {p}")
    return unwrap_state_dict(_load_raw(p), wrapper_key)


EFFSR_META_KEY = "effsr"


def save_safetensors(
    state_dict: Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
    *,
    model: str | None = None,
    kwargs: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a state_dict as safetensors, atomically, recording the architecture and constructor args.

    The metadata (``{"effsr": json}``) lets :func:`effsr.load` rebuild the model from the file alone.
    """
    from safetensors.torch import save_file

    p = Path(path)
    meta: dict[str, str] = {}
    if model is not None:
        meta[EFFSR_META_KEY] = json.dumps({"model": model, "kwargs": dict(kwargs or {}), **dict(extra or {})})
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    with atomic_path(p) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return p


def read_effsr_metadata(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``effsr`` metadata of a safetensors file (model name, kwargs), or None."""
    p = Path(path)
    if p.suffix != ".safetensors":
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:
        raise WeightsError(f"cannot read safetensors file {p}: {exc}") from exc
    raw = meta.get(EFFSR_META_KEY)
    return json.loads(raw) if raw else None


# An int8 file (effsr.deploy.quantize.save_int8; docs/deploy.md, "int8") is an effsr safetensors file whose metadata
# holds an "int8" entry: its float deploy weights sit under their usual keys, the observers' statistics under
# INT8_PREFIX. The model loaded from it carries them as the attribute INT8_ATTR, which effsr.deploy.prepare turns
# into the int8 graph.
INT8_PREFIX = "int8."
INT8_ATTR = "effsr_int8"


@dataclass(frozen=True)
class Int8Payload:
    """What an int8 file adds to its float weights: the observers' tensors (keys without :data:`INT8_PREFIX`), the
    ``int8`` metadata entry, and the architecture it was written for. Plain data: nothing here is executable."""

    metadata: Mapping[str, Any]
    tensors: Mapping[str, torch.Tensor]
    model: str
    kwargs: Mapping[str, Any]
    source: str = ""


def is_int8_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an effsr int8 file (a safetensors file whose effsr metadata has an ``int8`` entry)."""
    meta = read_effsr_metadata(path) if Path(path).is_file() else None
    return bool(meta and isinstance(meta.get("int8"), Mapping))


def split_int8_tensors(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor],
                                                                          dict[str, torch.Tensor]]:
    """(float weights, int8 tensors without their prefix) of an int8 file's tensors."""
    floats = {k: v for k, v in state_dict.items() if not k.startswith(INT8_PREFIX)}
    quant = {k[len(INT8_PREFIX):]: v for k, v in state_dict.items() if k.startswith(INT8_PREFIX)}
    return floats, quant


def copy_to_cache(src: str | os.PathLike[str], record: WeightsRecord) -> Path:
    """Copy a verified file into the cache (used by ``effsr zoo --fetch`` style helpers)."""
    dest = cache_dir() / record.file
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    return dest
