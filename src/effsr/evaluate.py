"""Benchmark evaluation: a plain ``nn.Module`` over dataset folders, scored with the official protocol.

The SR pipeline is the NTIRE 2024 harness (specs/README.md section 2): LR read as RGB uint8
(:func:`effsr.imageio.read_rgb_uint8`), u8 / 255, whole-image forward (:func:`effsr.infer.upscale`), clamp and round
half-to-even to uint8 (:func:`effsr.imageio.tensor_to_uint8`); HR read the same way and cropped to a multiple of the
scale (``modcrop``); every metric of :mod:`effsr.metrics` with ``border = scale``. A dataset mean is the arithmetic
mean of the per-image values. When a dataset has no LR folder, the LR images are made from the cropped HR by the
MATLAB bicubic resize (:func:`effsr.data.degrade.degrade_image`), as the benchmark LR sets were.

:func:`quality_cost` states what a lower precision (or another backend) costs in dB: the same protocol run through
that engine and through the float32 eager forward of the same model, per set.

Nothing here prints; results are dataclasses, with writers for CSV, JSON (one object per model and dataset,
as the README's eval section shows) and a markdown summary, and a quality-vs-cost plot.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import files, metrics
from .assets import data_root as default_data_root
from .data.degrade import degrade_image, modcrop
from .imageio import list_images, read_rgb_uint8, tensor_to_uint8, uint8_to_tensor, write_rgb_uint8
from .infer import model_scale, upscale

__all__ = [
    "DATASET_FOLDERS",
    "METRICS",
    "DatasetResult",
    "EvalDataset",
    "ImageResult",
    "ModelCost",
    "QualityCost",
    "evaluate",
    "fp32_reference",
    "evaluate_image",
    "csv_text",
    "find_dataset",
    "leaderboard_markdown",
    "json_payload",
    "markdown_summary",
    "model_cost",
    "plot_quality_vs_cost",
    "quality_cost",
    "quality_cost_markdown",
    "super_resolve",
    "write_csv",
    "write_json",
]

# Metric keys, in output order (the CSV columns and the JSON keys). LPIPS is added only when requested and available.
METRICS = ("psnr_rgb", "psnr_y", "ssim_y", "ssim_rgb")
_METRIC_FUNCS: dict[str, Callable[[np.ndarray, np.ndarray, int], float]] = {
    "psnr_rgb": metrics.psnr_rgb,
    "psnr_y": metrics.psnr_y,
    "ssim_y": metrics.ssim_y,
    "ssim_rgb": metrics.ssim_rgb,
}

# Benchmark names -> folder names looked for (case-insensitively) under the data root. Each folder holds HR/ and
# optionally LR_bicubic/X<s>/ (the EDSR "benchmark" layout of ../shared/data); DIV2K also in its release layout.
DATASET_FOLDERS: dict[str, tuple[str, ...]] = {
    "set5": ("Set5",),
    "set14": ("Set14",),
    "b100": ("B100", "BSD100", "BSDS100"),
    "urban100": ("Urban100",),
    "manga109": ("Manga109",),
    "div2k-valid": ("DIV2K_valid", "DIV2K-valid", "DIV2K_val", "DIV2K/valid", "DIV2K"),
    # The NTIRE ESR challenge sets, as the organisers ship them (next comment).
    "div2k-lsdir-valid": ("DIV2K_LSDIR_valid_HR", "DIV2K_LSDIR_valid"),
    "div2k-lsdir-test": ("DIV2K_LSDIR_test_HR", "DIV2K_LSDIR_test"),
}
# DIV2K release layout: <root>/DIV2K_valid_HR/0801.png and <root>/DIV2K_valid_LR_bicubic/X4/0801x4.png.
_DIV2K_RELEASE = ("DIV2K_valid_HR", "DIV2K_valid_LR_bicubic")
# The NTIRE ESR organisers' layout (Amazingren/NTIRE2025_ESR @ b69fb668, test_demo.py select_dataset and README):
# <root>/DIV2K_LSDIR_valid_HR/0801.png beside <root>/DIV2K_LSDIR_valid_LR/0801x4.png; the harness finds each LR
# file by replacing "_HR" with "_LR" in the path and ".png" with "x4.png". Same for DIV2K_LSDIR_test.
_HR_SUFFIX, _LR_SUFFIX = "_HR", "_LR"


# ------------------------------------------------------------------------------------------------------ datasets


@dataclass(frozen=True)
class EvalDataset:
    """An HR folder and, optionally, its LR folder at ``scale`` (None: LR generated from HR by the MATLAB resize)."""

    name: str
    hr_dir: Path
    lr_dir: Path | None
    scale: int = 4

    def pairs(self) -> list[tuple[str, Path, Path | None]]:
        """(name, HR file, LR file or None) for every HR image, sorted by file name.

        LR files are matched by base name: ``<stem>.*`` or the EDSR/DIV2K spelling ``<stem>x<scale>.*``.
        """
        hr_files = list_images(self.hr_dir)
        if not hr_files:
            raise FileNotFoundError(f"{self.hr_dir}: no HR images")
        if self.lr_dir is None:
            return [(p.stem, p, None) for p in hr_files]
        lr_by_stem = {p.stem: p for p in list_images(self.lr_dir)}
        out: list[tuple[str, Path, Path | None]] = []
        for p in hr_files:
            lr = lr_by_stem.get(p.stem) or lr_by_stem.get(f"{p.stem}x{self.scale}")
            if lr is None:
                want = f"{p.stem}.* or {p.stem}x{self.scale}.*"
                raise FileNotFoundError(f"{self.lr_dir}: no LR image for {p.name} (looked for {want})")
            out.append((p.stem, p, lr))
        return out


def _child_ci(parent: Path, rel: str) -> Path | None:
    """``parent/rel`` with each path component matched case-insensitively; None when absent."""
    cur = parent
    for part in Path(rel).parts:
        exact = cur / part
        if exact.exists():
            cur = exact
            continue
        if not cur.is_dir():
            return None
        match = next((c for c in sorted(cur.iterdir()) if c.name.lower() == part.lower()), None)
        if match is None:
            return None
        cur = match
    return cur


def _lr_subdir(lr_root: Path, scale: int) -> Path | None:
    d = _child_ci(lr_root, f"X{scale}")
    return d if d is not None and d.is_dir() else None


def _has_images(d: Path) -> bool:
    return d.is_dir() and bool(list_images(d))


def _organiser_pair(d: Path) -> tuple[Path, Path] | None:
    """(HR, LR) folders of the organisers' layout: ``d`` is ``X_HR`` beside ``X_LR``, or ``d`` holds one such pair."""
    if d.name.upper().endswith(_HR_SUFFIX):
        lr = _child_ci(d.parent, d.name[: -len(_HR_SUFFIX)] + _LR_SUFFIX)
        return (d, lr) if lr is not None and lr.is_dir() else None
    pairs = [
        (hr, lr)
        for hr in sorted(c for c in d.iterdir() if c.is_dir() and c.name.upper().endswith(_HR_SUFFIX))
        if (lr := _child_ci(d, hr.name[: -len(_HR_SUFFIX)] + _LR_SUFFIX)) is not None and lr.is_dir()
    ]
    if len(pairs) > 1:
        names = ", ".join(str(hr) for hr, _ in pairs)
        raise FileNotFoundError(f"{d} holds several HR/LR folder pairs; pass one HR folder: {names}")
    return pairs[0] if pairs else None


def dataset_from_folder(folder: str | os.PathLike[str], scale: int = 4, name: str | None = None) -> EvalDataset:
    """A dataset folder: ``HR/`` (+ ``LR_bicubic/X<scale>/`` if present), the DIV2K release layout, the NTIRE
    organisers' ``X_HR/`` + ``X_LR/`` (LR files ``<name>x<scale>.png``; the folder itself or its parent), or a plain
    folder of HR images."""
    d = Path(folder).expanduser()
    if not d.is_dir():
        raise NotADirectoryError(f"{d}: not a folder")
    hr = _child_ci(d, "HR")
    if hr is not None and hr.is_dir():
        lr_root = _child_ci(d, "LR_bicubic")
        lr = _lr_subdir(lr_root, scale) if lr_root is not None else None
        return EvalDataset(name or d.name, hr, lr, scale)
    hr_rel, lr_rel = _DIV2K_RELEASE
    hr = _child_ci(d, hr_rel)
    if hr is not None and hr.is_dir():
        lr_root = _child_ci(d, lr_rel)
        lr = _lr_subdir(lr_root, scale) if lr_root is not None else None
        return EvalDataset(name or d.name, hr, lr, scale)
    pair = _organiser_pair(d)
    if pair is not None:
        hr_dir, lr_dir = pair
        return EvalDataset(name or hr_dir.name[: -len(_HR_SUFFIX)], hr_dir, lr_dir, scale)
    if _has_images(d):
        # A bare folder of HR images; name it after its parent when it is itself called HR.
        auto = d.parent.name if d.name.lower() == "hr" else d.name
        return EvalDataset(name or auto, d, None, scale)
    raise FileNotFoundError(f"{d}: neither HR/ (+ LR_bicubic/X{scale}/), NAME_HR/ + NAME_LR/, nor a folder of images")


def find_dataset(
    spec: str | os.PathLike[str], *, scale: int = 4, data_root: str | os.PathLike[str] | None = None
) -> EvalDataset:
    """A dataset by folder path, or by benchmark name (set5, set14, b100, urban100, manga109, div2k-valid,
    div2k-lsdir-valid, div2k-lsdir-test).

    Names are looked up under ``data_root`` (default :func:`effsr.assets.data_root`). An existing folder wins.
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        return dataset_from_folder(path, scale)
    key = str(spec).lower().replace("_", "-")
    if key not in DATASET_FOLDERS:
        raise FileNotFoundError(
            f"'{spec}' is neither a folder nor a known dataset name ({', '.join(DATASET_FOLDERS)})"
        )
    root = Path(data_root).expanduser() if data_root is not None else default_data_root()
    tried: list[str] = []
    for rel in DATASET_FOLDERS[key]:
        cand = _child_ci(root, rel)
        tried.append(str(root / rel))
        if cand is None or not cand.is_dir():
            continue
        try:
            return dataset_from_folder(cand, scale, name=key)
        except FileNotFoundError:
            continue
    raise FileNotFoundError(f"dataset '{spec}' not found under {root} (looked for {', '.join(tried)})")


# --------------------------------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class ImageResult:
    """Metrics of one image (float64 values; ``lpips`` None when not computed)."""

    name: str
    psnr_rgb: float
    psnr_y: float
    ssim_y: float
    ssim_rgb: float
    lpips: float | None = None
    # Wall time of the whole-image SR (forward, uint8 conversion) in evaluate(); not part of the JSON shape.
    runtime_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, **{k: getattr(self, k) for k in METRICS}}
        if self.lpips is not None:
            d["lpips"] = self.lpips
        return d


@dataclass(frozen=True)
class DatasetResult:
    """One model on one dataset: per-image metrics and their arithmetic means."""

    model: str
    dataset: str
    scale: int
    images: tuple[ImageResult, ...]
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. {"lr": "generated"}; not part of the JSON shape

    @property
    def metric_names(self) -> tuple[str, ...]:
        has_lpips = bool(self.images) and all(r.lpips is not None for r in self.images)
        return (*METRICS, "lpips") if has_lpips else METRICS

    @property
    def mean(self) -> dict[str, float]:
        if not self.images:
            return {k: float("nan") for k in self.metric_names}
        return {k: float(np.mean([getattr(r, k) for r in self.images])) for k in self.metric_names}

    @property
    def mean_runtime_ms(self) -> float | None:
        """Mean wall time per image of the SR step (None when not timed)."""
        times = [r.runtime_ms for r in self.images if r.runtime_ms is not None]
        return float(np.mean(times)) if times and len(times) == len(self.images) else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``effsr eval``:
        ``{"model", "dataset", "images": [{"name", metrics...}], "mean": {metrics...}}``."""
        return {
            "model": self.model,
            "dataset": self.dataset,
            "images": [r.to_dict() for r in self.images],
            "mean": self.mean,
        }


def super_resolve(model: nn.Module, lr: np.ndarray, device: str | torch.device = "cpu") -> np.ndarray:
    """The official harness on one HxWx3 uint8 RGB LR image: u8 / 255, whole-image forward, clamp, round to uint8."""
    return tensor_to_uint8(upscale(model, uint8_to_tensor(lr).to(device), tile=0))


def evaluate_image(
    sr: np.ndarray, hr: np.ndarray, *, name: str, border: int, lpips: bool = False
) -> ImageResult:
    """Every metric of an SR image (HxWx3 uint8) against its (already cropped) HR, ``border`` px cropped."""
    if sr.shape != hr.shape:
        raise ValueError(f"{name}: SR {sr.shape} and HR {hr.shape} differ (LR x scale does not match the cropped HR)")
    values = {k: f(sr, hr, border) for k, f in _METRIC_FUNCS.items()}
    lp = metrics.lpips(sr, hr, border) if lpips else None
    return ImageResult(name=name, lpips=lp, **values)


def evaluate(
    model: nn.Module,
    dataset: EvalDataset,
    *,
    model_name: str = "model",
    device: str | torch.device = "cpu",
    lpips: bool = False,
    save_dir: str | os.PathLike[str] | None = None,
    on_image: Callable[[ImageResult], None] | None = None,
) -> DatasetResult:
    """Score ``model`` on every image of ``dataset`` with the official protocol (module docstring).

    ``save_dir`` also writes each SR image as ``<save_dir>/<stem>.png``; ``on_image`` is called after each image.
    LPIPS needs the optional package and weights (:func:`effsr.metrics.lpips_available`).
    """
    scale = model_scale(model)
    if scale != dataset.scale:
        raise ValueError(f"model scale x{scale} but dataset '{dataset.name}' is set up for x{dataset.scale}")
    if lpips and not metrics.lpips_available():
        raise RuntimeError("LPIPS requested but the lpips package or its weights are not installed (never downloaded)")
    model.eval()
    results: list[ImageResult] = []
    for name, hr_path, lr_path in dataset.pairs():
        hr = modcrop(read_rgb_uint8(hr_path), scale)
        lr = read_rgb_uint8(lr_path) if lr_path is not None else degrade_image(hr, scale)
        t0 = time.perf_counter()
        sr = super_resolve(model, lr, device)  # ends on the host (uint8), so CUDA work is finished when it returns
        runtime_ms = (time.perf_counter() - t0) * 1000.0
        if save_dir is not None:
            write_rgb_uint8(sr, Path(save_dir) / f"{name}.png")
        res = replace(evaluate_image(sr, hr, name=name, border=scale, lpips=lpips), runtime_ms=runtime_ms)
        results.append(res)
        if on_image is not None:
            on_image(res)
    extra = {"lr": "folder" if dataset.lr_dir is not None else "generated (MATLAB bicubic)"}
    return DatasetResult(model=model_name, dataset=dataset.name, scale=scale, images=tuple(results), extra=extra)


# ------------------------------------------------------------------------------------------------- quality cost

# The sets a quality cost is stated on by default (the Set5, Set14 and B100).
COST_DATASETS = ("set5", "set14", "b100")


@dataclass(frozen=True)
class QualityCost:
    """What one (backend, precision) costs on one set against the float32 eager forward of the same model.

    Means of the per-image PSNR (dB, RGB and Y, the challenge protocol of :func:`evaluate`) through both engines;
    ``cost_*_db`` is the float32 eager mean minus this engine's (positive: this engine loses quality).
    ``worst_image_cost_rgb_db`` is the largest per-image RGB loss, so a mean hiding one bad image shows.
    """

    model: str
    dataset: str
    backend: str
    precision: str
    images: int
    psnr_rgb_fp32: float
    psnr_y_fp32: float
    psnr_rgb: float
    psnr_y: float
    worst_image_cost_rgb_db: float

    @property
    def path(self) -> str:
        """``backend:precision``, e.g. ``fast:bf16``."""
        return f"{self.backend}:{self.precision}"

    @property
    def cost_rgb_db(self) -> float:
        return self.psnr_rgb_fp32 - self.psnr_rgb

    @property
    def cost_y_db(self) -> float:
        return self.psnr_y_fp32 - self.psnr_y

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "dataset": self.dataset, "backend": self.backend, "precision": self.precision,
                "images": self.images, "psnr_rgb_fp32": self.psnr_rgb_fp32, "psnr_y_fp32": self.psnr_y_fp32,
                "psnr_rgb": self.psnr_rgb, "psnr_y": self.psnr_y, "cost_rgb_db": self.cost_rgb_db,
                "cost_y_db": self.cost_y_db, "worst_image_cost_rgb_db": self.worst_image_cost_rgb_db}


def fp32_reference(
    model: nn.Module,
    datasets: Sequence[str | os.PathLike[str] | EvalDataset] = COST_DATASETS,
    *,
    model_name: str = "model",
    data_root: str | os.PathLike[str] | None = None,
) -> dict[str, DatasetResult]:
    """The float32 eager results of ``model`` on ``datasets`` (names, folders or :class:`EvalDataset`), by dataset
    name: the reference of :func:`quality_cost` (compute it once and pass it to several calls)."""
    from .deploy import prepare

    eager = prepare(model, "eager")
    out = {}
    for ds in _cost_datasets(datasets, model_scale(model), data_root):
        out[ds.name] = evaluate(eager, ds, model_name=model_name)
    return out


def quality_cost(
    model: nn.Module,
    datasets: Sequence[str | os.PathLike[str] | EvalDataset] = COST_DATASETS,
    *,
    backend: str = "fast",
    precision: str = "bf16",
    model_name: str = "model",
    threads: int | None = None,
    calibration: Any = None,
    data_root: str | os.PathLike[str] | None = None,
    reference: Mapping[str, DatasetResult] | None = None,
    engine: nn.Module | None = None,
) -> list[QualityCost]:
    """The PSNR cost in dB (RGB and Y, per set) of running ``model`` with ``backend`` in ``precision`` instead of
    its float32 eager forward, both scored with :func:`evaluate`'s challenge protocol, on CPU.

    ``datasets``: names (Set5, Set14, B100 by default), folders or :class:`EvalDataset`. ``reference``: the float32
    eager results by dataset name (:func:`fp32_reference`; computed here when None or missing a set). ``engine``:
    an already prepared engine for (backend, precision) (else :func:`effsr.deploy.prepare` builds one, with
    ``threads`` and, for int8, ``calibration``). A pair this machine cannot run raises
    :class:`~effsr.errors.PrecisionError` before any image is processed.
    """
    from .deploy import prepare
    from .deploy.precision import precision_name

    name = precision_name(precision)
    if engine is None:
        engine = prepare(model, backend, threads=threads, precision=name, calibration=calibration)
    sets = _cost_datasets(datasets, model_scale(model), data_root)
    missing = [ds for ds in sets if reference is None or ds.name not in reference]
    ref = dict(reference or {})
    if missing:
        ref.update(fp32_reference(model, missing, model_name=model_name))
    costs = []
    for ds in sets:
        base = ref[ds.name]
        low = evaluate(engine, ds, model_name=model_name)
        if [r.name for r in low.images] != [r.name for r in base.images]:
            raise ValueError(f"{ds.name}: the reference results are of other images")
        worst = max(b.psnr_rgb - r.psnr_rgb for b, r in zip(base.images, low.images, strict=True))
        costs.append(QualityCost(
            model=model_name, dataset=ds.name, backend=backend, precision=name, images=len(low.images),
            psnr_rgb_fp32=base.mean["psnr_rgb"], psnr_y_fp32=base.mean["psnr_y"], psnr_rgb=low.mean["psnr_rgb"],
            psnr_y=low.mean["psnr_y"], worst_image_cost_rgb_db=float(worst)))
    return costs


def _cost_datasets(datasets: Sequence[str | os.PathLike[str] | EvalDataset], scale: int,
                   data_root: str | os.PathLike[str] | None) -> list[EvalDataset]:
    return [d if isinstance(d, EvalDataset) else find_dataset(d, scale=scale, data_root=data_root) for d in datasets]


def quality_cost_markdown(costs: Sequence[QualityCost]) -> str:
    """One row per (model, path): the PSNR cost (dB, RGB / Y) on each set and the RGB mean over the sets, with the
    float32 eager PSNR it is measured from."""
    sets = list(dict.fromkeys(c.dataset for c in costs))
    rows: dict[tuple[str, str], dict[str, QualityCost]] = {}
    for c in costs:
        rows.setdefault((c.model, c.path), {})[c.dataset] = c
    head = ["model", "path"] + [f"{d} fp32 RGB / cost RGB / cost Y (dB)" for d in sets] + [
        "mean cost RGB (dB)", "worst image RGB (dB)"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for (model, path), by_set in rows.items():
        cells = [model, path]
        for d in sets:
            c = by_set.get(d)
            cells.append("-" if c is None else f"{c.psnr_rgb_fp32:.4f} / {c.cost_rgb_db:+.4f} / {c.cost_y_db:+.4f}")
        have = list(by_set.values())
        cells.append(f"{np.mean([c.cost_rgb_db for c in have]):+.4f}")
        cells.append(f"{max(c.worst_image_cost_rgb_db for c in have):+.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------ writers


def json_payload(results: Sequence[DatasetResult]) -> Any:
    """One object for a single (model, dataset), else a list of them (the JSON that ``effsr eval --json`` writes)."""
    if not results:
        raise ValueError("no results to write")
    return results[0].to_dict() if len(results) == 1 else [r.to_dict() for r in results]


def write_json(results: Sequence[DatasetResult], path: str | os.PathLike[str], *, overwrite: bool = True) -> Path:
    """:func:`json_payload` written atomically to ``path``."""
    return files.write_json(path, json_payload(results), overwrite=overwrite)


def csv_text(results: Sequence[DatasetResult]) -> str:
    """Per-image rows: model, dataset, name, every metric (lpips column when any result has it)."""
    cols = list(METRICS) + (["lpips"] if any("lpips" in r.metric_names for r in results) else [])
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(["model", "dataset", "name", *cols])
    for r in results:
        for img in r.images:
            row = [getattr(img, c) for c in cols]
            w.writerow([r.model, r.dataset, img.name, *("" if v is None else repr(float(v)) for v in row)])
    return buf.getvalue()


def write_csv(results: Sequence[DatasetResult], path: str | os.PathLike[str], *, overwrite: bool = True) -> Path:
    """:func:`csv_text` written atomically to ``path``."""
    with files.open_atomic(path, "w", newline="", overwrite=overwrite) as f:
        f.write(csv_text(results))
    return Path(path)


_HEADERS = {
    "psnr_rgb": "PSNR RGB (dB)",
    "psnr_y": "PSNR Y (dB)",
    "ssim_y": "SSIM Y",
    "ssim_rgb": "SSIM RGB",
    "lpips": "LPIPS",
}


def markdown_summary(results: Sequence[DatasetResult], *, per_image: bool = False) -> str:
    """A markdown table: one row per (model, dataset) with the mean of every metric (and per-image rows if asked)."""
    cols = list(METRICS) + (["lpips"] if any("lpips" in r.metric_names for r in results) else [])
    lines = [
        "| model | dataset | images | " + " | ".join(_HEADERS[c] for c in cols) + " |",
        "|---|---|---:|" + "---:|" * len(cols),
    ]

    def fmt(v: float | None) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        return f"{v:.4f}"

    for r in results:
        mean = r.mean
        lines.append(
            f"| {r.model} | {r.dataset} | {len(r.images)} | " + " | ".join(fmt(mean.get(c)) for c in cols) + " |"
        )
        if per_image:
            for img in r.images:
                vals = " | ".join(fmt(getattr(img, c)) for c in cols)
                lines.append(f"| {r.model} | {r.dataset}/{img.name} | 1 | {vals} |")
    return "\n".join(lines)


def leaderboard_markdown(
    results: Sequence[DatasetResult],
    costs: Mapping[str, ModelCost] | None = None,
    *,
    metric: str = "psnr_rgb",
    second: str | None = "ssim_rgb",
) -> str:
    """One row per model: parameters and MACs (when ``costs`` has them), ``metric`` / ``second`` per dataset, and the
    mean time per image of the SR step over all its datasets in this run.

    Models and datasets keep the order of ``results``. The MACs are the challenge's count (fvcore at LR 256x256,
    :func:`model_cost`); the time is this machine's, with the engine the results were made with.
    """
    models = list(dict.fromkeys(r.model for r in results))
    datasets = list(dict.fromkeys(r.dataset for r in results))
    by_key = {(r.model, r.dataset): r for r in results}
    costs = costs or {}
    label = _HEADERS.get(metric, metric) + (f" / {_HEADERS.get(second, second)}" if second else "")
    head = ["model", "params", "GMACs"] + [f"{d} {label}" for d in datasets] + ["ms / image"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for m in models:
        cost = costs.get(m)
        row = [m, f"{cost.params:,}" if cost else "-", f"{cost.macs / 1e9:.2f}" if cost else "-"]
        for d in datasets:
            r = by_key.get((m, d))
            if r is None:
                row.append("-")
                continue
            mean = r.mean
            row.append(f"{mean[metric]:.4f}" + (f" / {mean[second]:.4f}" if second else ""))
        times = [t for r in results if r.model == m for t in [r.mean_runtime_ms] if t is not None]
        counts = [len(r.images) for r in results if r.model == m and r.mean_runtime_ms is not None]
        per_image = sum(t * n for t, n in zip(times, counts, strict=True)) / sum(counts) if counts else None
        row.append(f"{per_image:.1f}" if per_image is not None else "-")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- cost and plot


@dataclass(frozen=True)
class ModelCost:
    """Cost of one model for plotting: parameters and MACs at ``lr_size`` (counter named in ``counter``)."""

    params: int
    macs: int
    lr_size: tuple[int, int]
    counter: str


def _conv_macs(model: nn.Module, lr_size: tuple[int, int]) -> int:
    """MACs of Conv2d / ConvTranspose2d / Linear layers by forward hooks: output elements x (in / groups) x kernel."""
    total = 0

    def hook(mod: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
            total += out.numel() * k
        elif isinstance(mod, nn.ConvTranspose2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.out_channels // mod.groups)
            total += inp[0].numel() * k
        elif isinstance(mod, nn.Linear):
            total += out.numel() * mod.in_features

    counted = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, counted)]
    try:
        dev = next((p.device for p in model.parameters()), torch.device("cpu"))
        with torch.inference_mode():
            model(torch.zeros(1, 3, *lr_size, device=dev))
    finally:
        for h in handles:
            h.remove()
    return int(total)


def model_cost(model: nn.Module, lr_size: tuple[int, int] = (256, 256)) -> ModelCost:
    """Parameters and MACs at ``lr_size`` (NTIRE's 256x256 LR by default), for plotting only.

    MACs are the NTIRE 2024 count (fvcore, one trace via :func:`effsr.profile.fvcore_counts`, ``macs_fvcore``) when
    the profiler and fvcore are importable; otherwise Conv2d/ConvTranspose2d/Linear forward hooks. ``counter`` says
    which.
    """
    params = int(sum(p.numel() for p in model.parameters()))
    dev = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        from .profile import fvcore_counts

        # test_demo.py feeds torch.rand; counts do not depend on the values (private generator, global RNG untouched).
        x = torch.rand(1, 3, *lr_size, generator=torch.Generator().manual_seed(0)).to(dev)
        with torch.no_grad():
            macs = int(fvcore_counts(model, x)[0])
        return ModelCost(params, macs, lr_size, "fvcore, the NTIRE 2024-2026 count")
    except ImportError:  # no profiler or no fvcore (optional dependency effsr[profile])
        return ModelCost(params, _conv_macs(model, lr_size), lr_size, "conv/linear hooks")
    finally:
        model.train(was_training)


def plot_quality_vs_cost(
    points: Iterable[tuple[str, str, float, ModelCost]],
    path: str | os.PathLike[str],
    *,
    metric: str = "psnr_rgb",
    overwrite: bool = True,
) -> Path:
    """Scatter ``metric`` (PSNR by default) against GMACs, marker area ~ parameters, one panel per dataset.

    ``points`` holds (model, dataset, metric value, cost). Each dataset gets its own panel (its own metric range; the
    GMACs axis is shared), and the labels of neighbouring points alternate above and below. Uses matplotlib's Agg
    backend (no display needed).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = list(points)
    if not pts:
        raise ValueError("nothing to plot")
    datasets = list(dict.fromkeys(d for _, d, _, _ in pts))
    fig, axes = plt.subplots(len(datasets), 1, figsize=(8, 3.6 * len(datasets) + 0.6), dpi=120, sharex=True,
                             squeeze=False)
    max_params = max(c.params for *_, c in pts) or 1
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (ds, ax) in enumerate(zip(datasets, axes[:, 0], strict=True)):
        sel = sorted(((m, v, c) for m, d, v, c in pts if d == ds), key=lambda t: (t[2].macs, t[1]))
        ax.scatter(
            [c.macs / 1e9 for _, _, c in sel],
            [v for _, v, _ in sel],
            s=[30 + 600 * c.params / max_params for _, _, c in sel],
            alpha=0.6,
            color=colors[i % len(colors)],
            edgecolors="black",
        )
        for j, (m, v, c) in enumerate(sel):
            ax.annotate(m, (c.macs / 1e9, v), xytext=(5, 6 if j % 2 == 0 else -11), textcoords="offset points",
                        fontsize=7)
        ax.set_ylabel(_HEADERS.get(metric, metric))
        ax.set_title(ds, fontsize=10)
        ax.grid(True, alpha=0.3)
    lr = pts[0][3].lr_size
    axes[-1, 0].set_xlabel(f"GMACs at LR {lr[0]}x{lr[1]} ({pts[0][3].counter})")
    fig.suptitle("Quality vs cost (marker area ~ parameters)")
    p = Path(path)
    fig.tight_layout()
    try:
        with files.atomic_path(p, overwrite=overwrite) as tmp:
            fig.savefig(tmp, format=(p.suffix[1:] or "png").lower())
    finally:
        plt.close(fig)
    return p
