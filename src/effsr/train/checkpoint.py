"""Training checkpoints, written atomically and read back safely.

A checkpoint is a folder ``<run>/checkpoints/s<stage>_it<iteration>/`` holding

* ``model.safetensors``: the trained weights (effsr metadata: architecture and constructor args);
* ``ema.safetensors``: the EMA weights, when the stage keeps an EMA;
* ``state.pt``: everything else needed to continue as if never stopped: optimizer, schedule position, AMP
  scaler, the RNG states of every rank (torch, CUDA, numpy, python), the stage, the next iteration and the data
  position. Only tensors and Python primitives are stored, so it loads with ``torch.load(weights_only=True)``.

The folder is written under a temporary name and renamed into place, then the ``latest`` pointer file is
replaced atomically: a run killed at any instant leaves either the previous or the new checkpoint, never a
half-written one. Older checkpoints beyond ``keep`` are removed after the new one is in place.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..files import make_temp_dir, write_text
from ..weights import read_state_dict, save_safetensors

__all__ = [
    "Checkpoint",
    "capture_rng",
    "latest_checkpoint",
    "load_checkpoint",
    "restore_rng",
    "save_checkpoint",
]

STATE_VERSION = 1
_POINTER = "latest"


def capture_rng() -> dict[str, Any]:
    """This process's RNG states as tensors and primitives."""
    np_state = np.random.get_state()
    out: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": _py_state_to_primitives(random.getstate()),
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def _py_state_to_primitives(state: tuple[Any, ...]) -> list[Any]:
    version, internal, gauss = state
    return [int(version), [int(v) for v in internal], gauss]


def restore_rng(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class Checkpoint:
    path: Path
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor] | None
    state: dict[str, Any]


def _name(stage: int, iteration: int) -> str:
    return f"s{stage:02d}_it{iteration:09d}"


def save_checkpoint(
    run_dir: str | os.PathLike[str],
    *,
    stage: int,
    iteration: int,
    model_state: Mapping[str, torch.Tensor],
    ema_state: Mapping[str, torch.Tensor] | None,
    state: Mapping[str, Any],
    arch: str | None = None,
    arch_kwargs: Mapping[str, Any] | None = None,
    keep: int = 2,
) -> Path:
    """Write a checkpoint folder atomically, point ``latest`` at it and prune old ones. Returns its path."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / _name(stage, iteration)
    tmp = make_temp_dir(final)
    try:
        save_safetensors(model_state, tmp / "model.safetensors", model=arch, kwargs=arch_kwargs)
        if ema_state is not None:
            save_safetensors(ema_state, tmp / "ema.safetensors", model=arch, kwargs=arch_kwargs)
        full = {"version": STATE_VERSION, "stage": stage, "iteration": iteration, **state}
        with open(tmp / "state.pt", "wb") as f:
            torch.save(full, f)
            f.flush()
            os.fsync(f.fileno())
        if final.exists():  # the same point saved again (e.g. after a resume): replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    _write_pointer(root, final.name)
    _prune(root, keep, final.name)
    return final


def _write_pointer(root: Path, name: str) -> None:
    write_text(root / _POINTER, name + "\n")


def _complete(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("s*_it*") if p.is_dir() and (p / "state.pt").is_file())


def _prune(root: Path, keep: int, current: str) -> None:
    for p in _complete(root)[:-keep]:
        if p.name != current:
            shutil.rmtree(p, ignore_errors=True)
    for p in root.glob(".*.part"):  # leftovers of a run killed while writing
        shutil.rmtree(p, ignore_errors=True)


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    """The checkpoint ``latest`` points at (or the newest complete one), or None."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return None
    pointer = root / _POINTER
    if pointer.is_file():
        cand = root / pointer.read_text().strip()
        if (cand / "state.pt").is_file():
            return cand
    done = _complete(root)
    return done[-1] if done else None


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    p = Path(path)
    state = torch.load(p / "state.pt", map_location="cpu", weights_only=True)
    if state.get("version") != STATE_VERSION:
        raise RuntimeError(f"{p}: unsupported checkpoint version {state.get('version')}")
    ema_file = p / "ema.safetensors"
    return Checkpoint(
        path=p,
        model=read_state_dict(p / "model.safetensors"),
        ema=read_state_dict(ema_file) if ema_file.is_file() else None,
        state=state,
    )
