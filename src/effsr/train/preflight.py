"""What a run needs, checked before it starts: teacher weights, the official weights' form, data folders, resume.

:func:`plan_run` runs before the run folder is touched and before any image is read, so a mistake costs one line
and nothing else: a teacher without weights names what to pass, a missing data folder is named with its stage, a
``--resume`` with a recipe that differs from the one the run was started with lists the differences. Every
problem is a :class:`~effsr.train.recipe.RecipeError` whose message is one line.

It also settles two things the loop then takes as given: the teacher's weights file, and the model's constructor
arguments when a stage starts from ``init: official`` (LSANet and IFADNet publish only the merged deploy form, so
such a run trains in that form and says so in one notice).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from ..models import build_model, get_spec, load_model, load_state_dict_strict
from ..tiling import tiling_of
from ..weights import WeightsError, WeightsRecord, read_state_dict, resolve_weights
from .recipe import Recipe, RecipeError

__all__ = ["RUN_ONLY_KEYS", "RunPlan", "plan_run", "published_weights", "recipe_differences"]

# Keys that change how a run is executed, validated or logged, not what it trains: a resume may change them
# (top-level keys; ``val_data`` also inside a stage).
RUN_ONLY_KEYS = frozenset({
    "name", "device", "threads", "workers", "cache_images", "val_data", "val_every", "ckpt_every", "keep_checkpoints",
    "log_every",
})


@dataclass(frozen=True)
class RunPlan:
    """What :func:`plan_run` settled for the loop."""

    model: str  # registry name
    model_kwargs: dict[str, Any]  # constructor arguments of the trained model (the deploy form for LSANet official)
    teacher: nn.Module | None  # the teacher, loaded on the CPU, frozen (None: no stage distils)
    teacher_weights: Path | None  # its weights file
    notes: list[str] = field(default_factory=list)  # one-line notices for the log


def published_weights(model: str) -> tuple[WeightsRecord, ...]:
    """Records of weights published outside the zoo's mirror (a model spec's ``extra["published_weights"]``)."""
    return tuple(get_spec(model).extra.get("published_weights", ()))


def _stage_label(recipe: Recipe, i: int) -> str:
    name = recipe.stages[i].name
    return f"stage {i + 1}/{len(recipe.stages)}" + (f" '{name}'" if name else "")


def _teacher_weights(recipe: Recipe) -> Path | None:
    if not recipe.uses_teacher:
        return None
    assert recipe.teacher is not None  # validation: distill_weight > 0 needs a teacher
    if recipe.teacher_weights:
        path = Path(recipe.teacher_weights).expanduser()
        if not path.is_file():
            raise RecipeError(f"teacher_weights file not found: {path}")
        return path
    try:
        spec = get_spec(recipe.teacher)
    except KeyError as exc:
        raise RecipeError(f"teacher: {exc.args[0]}") from None
    if spec.weights:
        wanted = {k: v for k, v in recipe.teacher_args.items() if k in spec.weight_determined}
        record = next((r for r in spec.weights if all(r.kwargs.get(k, v) == v for k, v in wanted.items())), None)
        if record is None:
            raise RecipeError(f"teacher '{spec.name}': no published weights with teacher_args {wanted}; "
                              "pass --set teacher_weights=FILE")
        try:
            return resolve_weights(record)
        except WeightsError as exc:
            raise RecipeError(f"teacher '{spec.name}': {exc}") from None
    # Weights published outside the zoo (SAFMN-L): used when already in the mirror or the cache, never downloaded.
    records = published_weights(spec.name)
    for record in records:
        try:
            return resolve_weights(record, download=False)
        except WeightsError as exc:
            if "sha256" in str(exc):  # a file is there but it is not the published one: say so, do not skip it
                raise RecipeError(f"teacher '{spec.name}': {exc}") from None
    where = "; ".join(f"{r.file} (sha256 {r.sha256[:12]}...) from {r.url}" for r in records)
    raise RecipeError(
        f"teacher '{spec.name}' has no weights here: pass --set teacher_weights=FILE"
        + (f" (published: {where}; or put it in $EFFSR_WEIGHTS_DIR)" if where else "")
        + ", or --set teacher=NAME for a zoo model with weights (e.g. mdrn)"
    )


def _load_teacher(recipe: Recipe, path: Path) -> nn.Module:
    assert recipe.teacher is not None
    try:
        record = next((r for r in published_weights(recipe.teacher) if r.file == path.name), None)
        if record is None:
            return load_model(recipe.teacher, path, device="cpu", **recipe.teacher_args)
        # The published file (SAFMN_L_DF2K_x4.pth): its record says which entry holds the weights and what builds them.
        model = build_model(recipe.teacher, **{**dict(record.kwargs), **recipe.teacher_args})
        load_state_dict_strict(model, read_state_dict(path, record.wrapper_key), record.model)
        return model.eval().requires_grad_(False)
    except (WeightsError, ValueError, TypeError) as exc:
        raise RecipeError(f"teacher '{recipe.teacher}' from {path}: {' '.join(str(exc).split())}") from None


def _model_kwargs(recipe: Recipe) -> tuple[str, dict[str, Any], list[str]]:
    """The trained model's constructor arguments; with ``init: official``, those of the published weights."""
    try:
        spec = get_spec(recipe.model)
    except KeyError as exc:
        raise RecipeError(f"model: {exc.args[0]}") from None
    kwargs = dict(recipe.model_args)
    official = [i for i, st in enumerate(recipe.stages) if st.init == "official"]
    if not official:
        return spec.name, kwargs, []
    where = f"stages.{official[0]}.init: official"
    if not spec.weights:
        raise RecipeError(f"{where}: '{spec.name}' has no published weights; give init: FILE instead")
    # Every weight-determined argument but the form (deploy) must agree with some published record.
    fixed = [k for k in spec.weight_determined if k != "deploy" and k in kwargs]
    record = next((r for r in spec.weights if all(r.kwargs.get(k, kwargs[k]) == kwargs[k] for k in fixed)), None)
    if record is None:
        options = " or ".join(
            "model_args: {" + ", ".join(f"{k}: {r.kwargs[k]}" for k in fixed if k in r.kwargs) + "}"
            for r in spec.weights
        )
        raise RecipeError(f"{where}: no published '{spec.name}' weights fit model_args {kwargs}; set {options}")
    notes = []
    filled = {k: v for k, v in record.kwargs.items() if k in spec.weight_determined and k != "deploy"}
    out = {**filled, **kwargs}
    deploy_default = inspect.signature(spec.builder).parameters.get("deploy")
    form_now = out.get("deploy", deploy_default.default if deploy_default is not None else None)
    if "deploy" in record.kwargs and form_now != record.kwargs["deploy"]:
        out["deploy"] = record.kwargs["deploy"]
        form = "merged deploy" if record.kwargs["deploy"] else "multi-branch training"
        notes.append(
            f"{where}: the published {spec.name} weights ({record.file}) are the {form} form, so every stage "
            f"trains in that form (model_args.deploy: {str(record.kwargs['deploy']).lower()})"
        )
    return spec.name, out, notes


def _check_patches(recipe: Recipe, name: str, kwargs: dict[str, Any]) -> None:
    """Every stage's LR patch is at least the model's minimum input (15x15 for most seed models, 29x29 for MSN,
    below which reflect padding or pooling underflows: specs/README.md §5)."""
    try:
        model = build_model(name, **kwargs)
    except (TypeError, ValueError) as exc:
        raise RecipeError(f"model_args {kwargs} do not build '{name}': {exc}") from None
    smallest = tiling_of(model).min_size
    for i, st in enumerate(recipe.stages):
        lr_side = st.patch_size // recipe.scale
        if lr_side < smallest:
            raise RecipeError(
                f"{_stage_label(recipe, i)}: HR patch {st.patch_size} gives {lr_side}x{lr_side} LR patches, below "
                f"{name}'s minimum input {smallest}x{smallest}; set stages.{i}.patch_size to at least "
                f"{smallest * recipe.scale}"
            )


def _check_data(recipe: Recipe) -> None:
    """Every stage's folders exist (nothing is listed or read here)."""
    from ..evaluate import find_dataset  # dataset-layout rules live in one place

    missing: list[str] = []
    for i in range(len(recipe.stages)):
        label = _stage_label(recipe, i)
        sources = recipe.stage_train_data(i)
        paired = {src.lr is not None for src in sources}
        if len(paired) > 1:
            raise RecipeError(f"{label}: train_data mixes sources with and without 'lr': give LR for all or none")
        for j, src in enumerate(sources):
            what = f"train_data '{src.name}'" if src.name else f"train_data.{j}"
            for kind, path, is_ok in (
                ("HR folder", src.hr, os.path.isdir),
                ("LR folder", src.lr, os.path.isdir),
                ("file_list", src.file_list, os.path.isfile),
            ):
                if path is not None and not is_ok(os.path.expanduser(path)):
                    missing.append(f"{label}: {what} {kind} not found: {path}")
        val = recipe.stage_val_data(i)
        if val:
            try:
                find_dataset(val, scale=recipe.scale)
            except (FileNotFoundError, NotADirectoryError) as exc:
                missing.append(f"{label}: val_data: {exc}")
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        hint = " (set EFFSR_DATA to the folder that holds the datasets, or override the path with --set)"
        raise RecipeError(missing[0] + more + hint)


def _flatten(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _flatten(v, f"{prefix}{k}.")
    elif isinstance(obj, list) and obj and any(isinstance(v, (Mapping, list)) for v in obj):
        for k, v in enumerate(obj):
            yield from _flatten(v, f"{prefix}{k}.")
    else:
        yield prefix[:-1], obj


def recipe_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``key: old -> new`` for every value that differs between two dumped recipes (run-only keys ignored)."""
    a, b = dict(_flatten(saved)), dict(_flatten(current))
    out = []
    for key in sorted(set(a) | set(b), key=lambda k: (k.split(".")[0] != "stages", k)):
        parts = key.split(".")
        if parts[0] in RUN_ONLY_KEYS or (parts[0] == "stages" and parts[2:] == ["val_data"]):
            continue
        old, new = a.get(key, "<absent>"), b.get(key, "<absent>")
        if old != new:
            out.append(f"{key}: {old!r} -> {new!r}")
    return out


def _check_resume(recipe: Recipe, out: Path) -> None:
    saved_file = out / "recipe.yaml"
    if not saved_file.is_file():
        return
    saved = yaml.safe_load(saved_file.read_text()) or {}
    diffs = recipe_differences(saved, recipe.model_dump(mode="json"))
    if diffs:
        shown = ", ".join(diffs[:3]) + (f" (and {len(diffs) - 3} more)" if len(diffs) > 3 else "")
        raise RecipeError(
            f"--resume: the recipe differs from the one {out} was started with ({shown}); resume with "
            f"{saved_file} (effsr train {saved_file} --out {out} --resume) or train into a new --out"
        )


def plan_run(recipe: Recipe, out: str | os.PathLike[str], *, resume: bool = False) -> RunPlan:
    """Check a recipe against the machine before a run starts (module docstring); raises RecipeError."""
    out = Path(out)
    if resume:
        _check_resume(recipe, out)
    # First: a teacher without weights (or with a file that is not one) fails before any data is looked at.
    teacher_file = _teacher_weights(recipe)
    teacher = _load_teacher(recipe, teacher_file) if teacher_file is not None else None
    name, kwargs, notes = _model_kwargs(recipe)
    _check_patches(recipe, name, kwargs)
    _check_data(recipe)
    if teacher_file is not None:
        notes.append(f"teacher: {recipe.teacher} from {teacher_file}")
    return RunPlan(model=name, model_kwargs=kwargs, teacher=teacher, teacher_weights=teacher_file, notes=notes)
