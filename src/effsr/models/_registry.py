"""Explicit model registry: builders, their weight records, and architecture detection.

Architecture files call :func:`register_model` once at import time; ``effsr.models`` imports every
architecture file by name (no discovery by file name). A duplicate name raises; an unknown name raises
with the closest registered names.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InvalidValueError, UnknownModelError, WeightsMismatchError
from ..weights import (
    INT8_ATTR,
    Int8Payload,
    WeightsError,
    WeightsRecord,
    read_effsr_metadata,
    read_state_dict,
    resolve_weights,
    split_int8_tensors,
    state_dict_sha256,
)

StateDict = Mapping[str, torch.Tensor]
Detector = Callable[[StateDict], "dict[str, Any] | None"]


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one architecture name."""

    name: str
    builder: Callable[..., nn.Module]
    weights: tuple[WeightsRecord, ...] = ()  # the first one is the default
    detect: Detector | None = None  # state_dict -> constructor kwargs, or None when it does not fit
    description: str = ""
    # Constructor arguments fixed by weights (scale, width...): a conflicting request raises.
    weight_determined: tuple[str, ...] = ("scale", "num_features")
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def default_weights(self) -> WeightsRecord | None:
        return self.weights[0] if self.weights else None


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"model '{spec.name}' is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def list_models() -> list[str]:
    return list(_REGISTRY)


def _key(name: str) -> str:
    return name.lower().replace("-", "_")


def _unknown(name: str, what: str = "model") -> UnknownModelError:
    names = [*_REGISTRY, *(r.name for r in all_weight_records())]
    close = difflib.get_close_matches(_key(name), names, n=3, cutoff=0.4)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return UnknownModelError(f"unknown {what} '{name}'{hint} (`effsr zoo` lists the models and their weights)")


def get_spec(name: str) -> ModelSpec:
    """The architecture registered as ``name``, or :class:`UnknownModelError` naming the closest names."""
    key = _key(name)
    if key in _REGISTRY:
        return _REGISTRY[key]
    raise _unknown(name)


def all_weight_records() -> list[WeightsRecord]:
    return [r for spec in _REGISTRY.values() for r in spec.weights]


def get_weights_record(name: str) -> WeightsRecord:
    """A weight record by its own name or its file name."""
    for rec in all_weight_records():
        if name in (rec.name, rec.file) or _key(name) == rec.name:
            return rec
    raise _unknown(name, "weights")


def resolve_model_name(name: str) -> tuple[ModelSpec, WeightsRecord | None]:
    """An architecture name (``mdrn``) or the name of one of its weight records (``mdrn_x3``, as ``effsr zoo``
    lists them) -> the architecture and the record it names (None for an architecture name)."""
    key = _key(name)
    if key in _REGISTRY:
        return _REGISTRY[key], None
    try:
        rec = get_weights_record(name)
    except UnknownModelError:
        raise _unknown(name) from None
    return get_spec(rec.model), rec


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """A randomly initialised model of architecture ``name``."""
    return get_spec(name).builder(**kwargs)


def detect_architecture(state_dict: StateDict) -> tuple[str, dict[str, Any]]:
    """Find the registered architecture and constructor kwargs whose state_dict matches ``state_dict``.

    A detector proposes kwargs from key names and shapes; the proposal is accepted only when the built
    model has exactly the same keys and shapes. A published file whose layout another architecture shares is
    recognised first by its content (:attr:`WeightsRecord.state_dict_sha256`).
    """
    known = {r.state_dict_sha256: r for r in all_weight_records() if r.state_dict_sha256}
    if known:
        record = known.get(state_dict_sha256(state_dict))
        if record is not None:
            return record.model, dict(record.kwargs)
    tried: list[str] = []
    for spec in _REGISTRY.values():
        if spec.detect is None:
            continue
        try:
            kwargs = spec.detect(state_dict)
        except (KeyError, IndexError, ValueError):
            kwargs = None
        if kwargs is None:
            continue
        tried.append(spec.name)
        model = spec.builder(**kwargs)
        if _shape_mismatch(model.state_dict(), state_dict) is None:
            return spec.name, kwargs
    raise WeightsError(
        "the state_dict matches no registered architecture"
        + (f" (close candidates: {', '.join(tried)})" if tried else "")
        + f"; first keys: {list(state_dict)[:5]}"
    )


def model_zoo_record(repo: str, commit: str, file: str, **fields: Any) -> WeightsRecord:
    """The record of ``model_zoo/<file>`` in a GitHub repository at a pinned commit (the NTIRE challenge layout):
    the download URL and the source line are built from ``repo`` and ``commit``; ``fields`` are the rest."""
    return WeightsRecord(
        file=file,
        url=f"https://github.com/{repo}/raw/{commit}/model_zoo/{file}",
        source=f"{repo} @ {commit[:8]}, model_zoo/{file}",
        **fields,
    )


def count_numbered(state_dict: StateDict, prefix: str, first: int = 1) -> int | None:
    """How many numbered submodules ``<prefix><i>.*`` the keys hold (``i = first, first + 1, ...``: ``B1``..``B8``,
    ``block_1``.., ``feats.0``..), or None when there are none or the numbers have gaps. For detectors."""
    found = {int(m.group(1)) for k in state_dict if (m := re.match(rf"{re.escape(prefix)}(\d+)\.", k))}
    if not found or found != set(range(first, first + len(found))):
        return None
    return len(found)


def upsampler_scale(out_rows: int, channels: int) -> int | None:
    """The scale of a pixel-shuffle upsampler whose conv emits ``out_rows = channels * scale**2`` channels, or None
    when ``out_rows`` is no such number. For detectors."""
    scale = math.isqrt(int(out_rows) // int(channels)) if channels > 0 else 0
    return scale if scale >= 1 and channels * scale * scale == out_rows else None


def read_common(state_dict: StateDict, *, stem: str, blocks: str, upsampler: str,
                first_block: int = 1) -> dict[str, int] | None:
    """The constructor arguments the zoo's pixel-shuffle networks share, read from a state_dict: ``num_features``
    and ``in_channels`` from the stem conv's weight ``stem``, ``num_blocks`` from the numbered ``blocks`` prefix
    (:func:`count_numbered`), ``scale`` from the upsampler conv's weight ``upsampler`` (:func:`upsampler_scale`),
    ``out_channels`` taken equal to ``in_channels`` (RGB in, RGB out). None when the keys do not fit."""
    if stem not in state_dict or upsampler not in state_dict:
        return None
    num_features, in_channels = (int(n) for n in state_dict[stem].shape[:2])
    num_blocks = count_numbered(state_dict, blocks, first_block)
    scale = upsampler_scale(state_dict[upsampler].shape[0], in_channels)
    if num_blocks is None or scale is None:
        return None
    return {"scale": scale, "in_channels": in_channels, "out_channels": in_channels, "num_features": num_features,
            "num_blocks": num_blocks}


def _shape_mismatch(expected: StateDict, got: StateDict) -> str | None:
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [
        f"{k}: file {tuple(got[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in got and tuple(got[k].shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or shapes):
        return None
    parts = []
    if missing:
        parts.append(f"missing keys ({len(missing)}): {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")
    if unexpected:
        parts.append(
            f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:10])}"
            f"{' ...' if len(unexpected) > 10 else ''}"
        )
    if shapes:
        parts.append(f"shape mismatches ({len(shapes)}): {'; '.join(shapes[:5])}")
    return "; ".join(parts)


def load_state_dict_strict(model: nn.Module, state_dict: StateDict, model_name: str = "model") -> nn.Module:
    """``load_state_dict(strict=True)`` with an error that names the keys and the architecture the file fits."""
    problem = _shape_mismatch(model.state_dict(), state_dict)
    if problem is not None:
        try:
            guess, kwargs = detect_architecture(state_dict)
            looks = f"; the file looks like '{guess}' with {kwargs}"
        except WeightsError:
            looks = "; the file matches no registered architecture"
        raise WeightsMismatchError(f"weights do not fit '{model_name}': {problem}{looks}")
    model.load_state_dict(dict(state_dict), strict=True)
    return model


def _check_conflicts(spec: ModelSpec, fixed: Mapping[str, Any], requested: Mapping[str, Any], what: str) -> None:
    for key in spec.weight_determined:
        if key in requested and key in fixed and requested[key] != fixed[key]:
            raise InvalidValueError(
                f"{spec.name}: {key}={requested[key]!r} conflicts with {what}, which needs {key}={fixed[key]!r}"
            )


def _finish(model: nn.Module, device: str | torch.device | None) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if device is not None:
        model.to(device)
    return model


def _weights_path(weights: str | os.PathLike[str], download: bool) -> Path:
    """An existing file as given; a bare file name that is no file here but a published record's file (e.g.
    ``"team24_spanf.pth"``) resolves like that record (mirror, cache, verified download)."""
    given = Path(weights).expanduser()
    if not given.exists() and given.name == str(weights):
        record = next((r for r in all_weight_records() if r.file == given.name), None)
        if record is not None:
            return resolve_weights(record, download=download)
    return resolve_weights(path=weights)


def load_model(
    model: str | None = None,
    weights: str | os.PathLike[str] | None = None,
    *,
    device: str | torch.device | None = "cpu",
    download: bool = True,
    **kwargs: Any,
) -> nn.Module:
    """Build a model and load its weights (eval mode, no grad).

    - ``load_model("rlfn")``: the default official weights of ``rlfn``, found by the resolution order
      (explicit path, ``$EFFSR_WEIGHTS_DIR``, cache, verified download).
    - ``load_model("mdrn", scale=3)`` or ``load_model("mdrn_x3")``: the record of ``mdrn`` whose constructor args
      match, or the record named (the names ``effsr zoo`` lists).
    - ``load_model("rlfn", "file.pth")`` or ``load_model(weights="file.pth")``: a given file; with no
      model name the architecture comes from effsr metadata (safetensors) or is detected from the keys. A bare
      published file name that is not a file here (``"team24_spanf.pth"``) is found like its record.
    - ``load_model("some.pth")``: a path given as first argument is treated as ``weights``.
    - an int8 file (:func:`effsr.deploy.quantize.save_int8`) gives its float deploy model carrying the int8 tensors
      (:data:`effsr.weights.INT8_ATTR`): ``effsr.deploy.prepare`` runs it as int8.
    """
    if model is not None and weights is None and (
        Path(model).suffix in (".pth", ".pt", ".safetensors", ".ckpt") or os.sep in model
    ):
        model, weights = None, model
    if model is None and weights is None:
        raise InvalidValueError("give a model name, a weights file, or both")
    named: WeightsRecord | None = None
    if model is not None:
        resolved, named = resolve_model_name(model)  # "mdrn_x3" names the mdrn architecture and one record
        model = resolved.name

    if weights is not None:
        path = _weights_path(weights, download)
        meta = read_effsr_metadata(path)
        record = None
        if model is not None:
            spec = get_spec(model)
            record = next((r for r in spec.weights if r.file == path.name), None)
        wrapper = record.wrapper_key if record else None
        sd = read_state_dict(path, wrapper)
        payload = None
        if meta is not None and isinstance(meta.get("int8"), Mapping):
            # An int8 file: the float deploy weights build the model as for any effsr file; the observers'
            # statistics ride along for effsr.deploy.prepare (effsr.deploy.quantize).
            sd, quant = split_int8_tensors(sd)
            payload = Int8Payload(metadata=dict(meta["int8"]), tensors=quant, model=str(meta["model"]),
                                  kwargs=dict(meta.get("kwargs", {})), source=str(path))
        if meta is not None and model is None:
            model = meta["model"]
            fixed = dict(meta.get("kwargs", {}))
        elif model is None:
            model, fixed = detect_architecture(sd)
        elif meta is not None and meta.get("model") == get_spec(model).name:
            fixed = dict(meta.get("kwargs", {}))
        elif record is not None:
            fixed = dict(record.kwargs)
        else:
            spec = get_spec(model)
            fixed = spec.detect(sd) if spec.detect else None
            if fixed is None:
                fixed = {}
        spec = get_spec(model)
        _check_conflicts(spec, fixed, kwargs, f"the weights file {path.name}")
        net = spec.builder(**{**fixed, **kwargs})
        load_state_dict_strict(net, sd, spec.name)
        if payload is not None:
            setattr(net, INT8_ATTR, payload)
        return _finish(net, device)

    assert model is not None
    spec = get_spec(model)
    if not spec.weights:
        raise WeightsError(f"model '{spec.name}' has no published weights; pass weights=PATH")
    wanted = {k: v for k, v in kwargs.items() if k in spec.weight_determined}
    records = (named,) if named is not None else spec.weights
    candidates = [r for r in records if all(r.kwargs.get(k, v) == v for k, v in wanted.items())]
    if not candidates:
        options = "; ".join(f"{r.name}: {dict(r.kwargs)}" for r in spec.weights)
        raise InvalidValueError(f"{spec.name}: no published weights with {kwargs} (available: {options})")
    record = candidates[0]
    path = resolve_weights(record, download=download)
    sd = read_state_dict(path, record.wrapper_key)
    net = spec.builder(**{**dict(record.kwargs), **kwargs})
    load_state_dict_strict(net, sd, spec.name)
    return _finish(net, device)
