"""Recipes as data: a flat YAML file of run settings plus a list of stages, validated on load (torchtune style).

A recipe names the model (a registry name and constructor arguments), the training and validation data, and
the stages. Each stage starts from the previous stage's weights (or from ``init``) and has its own patch size,
batch, loss, rate schedule and length, and may name its own ``train_data`` / ``val_data`` (else the top-level
ones). Unknown or misspelt keys are errors that name the key and suggest the closest valid ones, at any depth;
``--set key=value`` overrides are parsed as YAML scalars and validated like the file.

Adding a stage key is adding a field to :class:`Stage` (with its default): validation, the "did you mean" hints,
``--set`` and the resume check pick it up with no other change.

Strings may use ``${VAR}``: ``${EFFSR_ASSETS}`` and ``${EFFSR_DATA}`` default to :func:`effsr.assets.assets_dir`
and :func:`effsr.assets.data_root` when unset; any other variable must be set.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..assets import assets_dir, data_root
from ..errors import UsageError

__all__ = [
    "DataSource",
    "Recipe",
    "RecipeError",
    "Stage",
    "apply_overrides",
    "load_recipe",
    "load_recipe_text",
    "parse_recipe",
]

LossName = Literal["l1", "mse", "l2", "charbonnier"]


class RecipeError(UsageError, ValueError):
    """A recipe file or override is invalid; the message names the offending key."""


class _Strict(BaseModel):
    # protected_namespaces=(): the recipe keys model / model_args are ours, not pydantic's.
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class DataSource(_Strict):
    """One training image folder: HR, optional matching LR (else LR made on the fly), optional subset."""

    name: str = ""  # what the folder holds (DIV2K, LSDIR...): named in logs and errors
    hr: str
    lr: str | None = None  # None: LR made from HR by the MATLAB bicubic resize on the device
    file_list: str | None = None  # text file of paths relative to ``hr``, one per line
    limit: int | None = Field(default=None, gt=0)  # keep the first N images (sorted by relative path)


class Stage(_Strict):
    """One training stage. ``iters`` counts optimizer steps; ``patch_size`` is the HR patch side."""

    name: str = ""
    train_data: list[DataSource] | None = Field(default=None, min_length=1)  # None: the recipe's train_data
    val_data: str | None = None  # None: the recipe's val_data
    iters: int = Field(gt=0)
    patch_size: int = Field(gt=0)
    batch_size: int = Field(gt=0)  # per rank: the global batch is batch_size x world size
    loss: LossName = "l1"
    pixel_weight: float = 1.0
    distill_weight: float = Field(default=0.0, ge=0)  # > 0: add a loss towards the recipe's teacher
    distill_loss: LossName = "l1"
    optimizer: Literal["adam"] = "adam"  # every seed factsheet trains with Adam
    lr: float = Field(gt=0)
    betas: tuple[float, float] = (0.9, 0.99)  # BasicSR's Adam betas in every seed team's options
    weight_decay: float = Field(default=0.0, ge=0)
    schedule: Literal["multistep", "cosine", "constant"] = "multistep"
    milestones: list[int] = Field(default_factory=list)  # multistep: iterations where the rate is x gamma
    gamma: float = 0.5
    eta_min: float = Field(default=1e-7, ge=0)  # cosine: final rate
    warmup_iters: int = Field(default=0, ge=0)  # linear warm-up from 0 (none in the seed recipes)
    ema_decay: float = Field(default=0.999, ge=0, lt=1)  # 0 disables the EMA
    grad_clip: float | None = Field(default=None, gt=0)  # max global L2 norm of the gradients
    init: str | None = None  # None: previous stage's weights (fresh init for stage 0); a path; or "official"
    hflip: bool = True
    rot: bool = True
    # "int8": quantization-aware fine-tuning of the deploy graph (effsr.train.qat), the last stage only; the run
    # then also writes the int8 file final_int8.safetensors.
    quant: Literal["int8"] | None = None
    # Which layers of a quant stage stay float (trained without fake quantization): "stored", the measured policy
    # effsr ships for the architecture (every layer int8 where it has none); "none", every layer int8; "search", a
    # sensitivity search on the calibration images before training (effsr.deploy.quantize.search_policy).
    quant_policy: Literal["stored", "none", "search"] = "stored"

    @model_validator(mode="after")
    def _check(self) -> Stage:
        if sorted(self.milestones) != list(self.milestones):
            raise ValueError(f"milestones must be increasing, got {self.milestones}")
        if any(m <= 0 or m >= self.iters for m in self.milestones):
            raise ValueError(f"milestones must lie in (0, iters={self.iters}), got {self.milestones}")
        if self.warmup_iters >= self.iters:
            raise ValueError(f"warmup_iters {self.warmup_iters} must be below iters {self.iters}")
        if self.quant is None and self.quant_policy != "stored":
            raise ValueError(f"quant_policy {self.quant_policy!r} applies to a quant stage only: add quant: int8")
        return self


class Recipe(_Strict):
    """A whole run. Paths are expanded (``${VAR}``, ``~``) on load."""

    name: str = ""  # run name; defaults to the config file's stem
    model: str
    model_args: dict[str, Any] = Field(default_factory=dict)
    scale: int = Field(default=4, gt=0)
    seed: int = Field(default=0, ge=0)
    deterministic: bool = False  # torch.use_deterministic_algorithms: bit-identical resume on CPU
    device: str = "auto"  # auto | cpu | cuda | cuda:N (under torchrun each rank takes cuda:LOCAL_RANK)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast dtype on CUDA; CPU always runs fp32
    threads: int | None = Field(default=None, gt=0)  # torch CPU threads per process
    workers: int = Field(default=4, ge=0)  # DataLoader workers per rank
    cache_images: int = Field(default=0, ge=0)  # decoded images kept per worker (small datasets)
    train_data: list[DataSource] | None = Field(default=None, min_length=1)  # stages without their own use it
    val_data: str | None = None  # a benchmark folder or name (effsr.evaluate.find_dataset); stages may override
    val_every: int = Field(default=0, ge=0)  # 0: validate at the end of each stage only
    ckpt_every: int = Field(default=1000, gt=0)
    keep_checkpoints: int = Field(default=2, gt=0)
    log_every: int = Field(default=100, gt=0)
    teacher: str | None = None  # a zoo model name used by stages with distill_weight > 0
    teacher_args: dict[str, Any] = Field(default_factory=dict)
    teacher_weights: str | None = None  # None: the zoo's default weights for ``teacher``
    stage_init: Literal["ema", "model"] = "ema"  # which weights of a finished stage start the next one
    stages: list[Stage] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Recipe:
        for i, st in enumerate(self.stages):
            if st.train_data is None and self.train_data is None:
                raise ValueError(f"stages.{i} ('{st.name}') has no train_data and the recipe has no top-level one")
            if st.patch_size % self.scale:
                raise ValueError(f"stages.{i}.patch_size {st.patch_size} is not a multiple of scale {self.scale}")
            if st.distill_weight > 0 and not self.teacher:
                raise ValueError(f"stages.{i}.distill_weight > 0 needs a 'teacher'")
            if st.quant is not None and i != len(self.stages) - 1:
                raise ValueError(f"stages.{i}.quant: quantization-aware training must be the last stage (its result "
                                 f"is the int8 file), but {len(self.stages) - 1 - i} stage(s) follow it")
            if st.quant is not None and self.precision != "fp32":
                raise ValueError(f"stages.{i}.quant trains fake-quantized graphs in float32: set precision: fp32, "
                                 f"not {self.precision}")
        return self

    @property
    def uses_teacher(self) -> bool:
        return any(st.distill_weight > 0 for st in self.stages)

    def stage_train_data(self, index: int) -> list[DataSource]:
        """The training folders of stage ``index``: its own ``train_data``, else the recipe's."""
        own = self.stages[index].train_data
        data = own if own is not None else self.train_data
        assert data is not None  # guaranteed by validation
        return data

    def stage_val_data(self, index: int) -> str | None:
        """The validation set of stage ``index``: its own ``val_data``, else the recipe's."""
        own = self.stages[index].val_data
        return own if own is not None else self.val_data


# ---------------------------------------------------------------------------------------------------------------
# Loading, overrides and errors


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def expand(value: str) -> str:
    """``${VAR}``/``$VAR`` and ``~`` expansion with project defaults for EFFSR_ASSETS and EFFSR_DATA."""
    defaults = {"EFFSR_ASSETS": lambda: str(assets_dir()), "EFFSR_DATA": lambda: str(data_root())}

    def sub(m: re.Match[str]) -> str:
        var = m.group(1) or m.group(2)
        if var in os.environ:
            return os.environ[var]
        if var in defaults:
            return defaults[var]()
        raise RecipeError(f"environment variable {var} used in '{value}' is not set")

    out = _VAR.sub(sub, value)
    return os.path.expanduser(out) if out.startswith("~") else out


def _expand_all(obj: Any) -> Any:
    if isinstance(obj, str):
        return expand(obj)
    if isinstance(obj, list):
        return [_expand_all(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _expand_all(v) for k, v in obj.items()}
    return obj


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside ``X``, ``list[X]`` or ``X | None``, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _submodel(arg)
        if found is not None:
            return found
    return None


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """The valid keys of the model that holds location ``loc`` (for 'did you mean' hints), at any depth."""
    model: type[BaseModel] = Recipe
    for part in loc[:-1]:
        if not isinstance(part, str):
            continue  # a list index: same model
        field_info = model.model_fields.get(part)
        sub = _submodel(field_info.annotation) if field_info is not None else None
        if sub is None:
            break
        model = sub
    return list(model.model_fields)


def _format_errors(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(loc[-1]), _fields_at(loc), n=3, cutoff=0.5)
            hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
            lines.append(f"unknown key '{key}'{hint}")
        elif e["type"] == "missing":
            lines.append(f"missing key '{key}'")
        else:
            msg = str(e["msg"]).removeprefix("Value error, ")
            got = e.get("input")
            lines.append(f"'{key}': {msg}" if isinstance(got, dict) else f"'{key}': {msg} (got {got!r})")
    # One line, however many problems: a batch log or a terminal shows it whole.
    return f"invalid recipe {source}: " + "; ".join(lines)


def _set_path(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    targets: list[Any] = [data]
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        nxt: list[Any] = []
        for t in targets:
            if isinstance(t, list):
                idxs = range(len(t)) if part == "*" else [int(part)] if part.lstrip("-").isdigit() else None
                if idxs is None:
                    raise RecipeError(f"--set {key}: '{part}' must be a list index or '*'")
                for j in idxs:
                    if not -len(t) <= j < len(t):
                        raise RecipeError(f"--set {key}: index {j} out of range (the list has {len(t)} entries)")
                    if last:
                        t[j] = value
                    else:
                        nxt.append(t[j])
            elif isinstance(t, dict):
                if last:
                    t[part] = value
                else:
                    # Missing intermediate keys become dicts; validation reports them if they are not valid keys.
                    nxt.append(t.setdefault(part, {}))
            else:
                raise RecipeError(f"--set {key}: cannot index into {type(t).__name__} at '{part}'")
        targets = nxt


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``key=value`` overrides (``stages.1.lr=1e-4``, ``stages.*.batch_size=8``); values are YAML scalars."""
    out = copy.deepcopy(data)
    for item in overrides or []:
        if "=" not in item:
            raise RecipeError(f"--set expects key=value, got '{item}'")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise RecipeError(f"--set expects key=value, got '{item}'")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise RecipeError(f"--set {key}: cannot parse value '{raw}': {' '.join(str(exc).split())}") from None
        _set_path(out, key, value)
    return out


def parse_recipe(data: dict[str, Any], *, source: str = "<recipe>", name: str = "") -> Recipe:
    """Validate a recipe dict (after overrides); ``name`` fills an empty ``name``."""
    if not isinstance(data, dict):
        raise RecipeError(f"invalid recipe {source}: the top level must be a mapping")
    data = _expand_all(data)
    if not data.get("name") and name:
        data = {**data, "name": name}
    try:
        return Recipe.model_validate(data)
    except ValidationError as err:
        raise RecipeError(_format_errors(err, source)) from None


def load_recipe_text(
    text: str, overrides: list[str] | None = None, *, source: str = "<recipe>", name: str = ""
) -> Recipe:
    """Parse, override and validate recipe YAML text; ``name`` fills an empty ``name``."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise RecipeError(f"cannot parse {source}: {' '.join(str(exc).split())}") from None
    return parse_recipe(apply_overrides(data, overrides), source=source, name=name)


def load_recipe(path: str | os.PathLike[str], overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate a recipe YAML file."""
    p = Path(path)
    if not p.is_file():
        raise RecipeError(f"recipe not found: {p}")
    return load_recipe_text(p.read_text(encoding="utf-8"), overrides, source=str(p), name=p.stem)
