"""The training loop: plain and linear (nanoGPT style). It moves data, asks the task for losses, steps.

One call of :func:`train` runs a whole :class:`~effsr.train.recipe.Recipe`, stage after stage, in one process or
as one rank of a ``torchrun`` world (DDP; each rank reads its own shard of every global batch). Every
``ckpt_every`` iterations it writes an atomic checkpoint (:mod:`effsr.train.checkpoint`); ``resume=True`` picks
up from the newest one and continues exactly (bit-identical on CPU in deterministic mode, because the data is
a pure function of the seed and the position, and every other piece of state is saved). At the end it writes
``final.safetensors``: the EMA weights in deploy form (re-parameterized), with the architecture and constructor
arguments in the metadata, so ``effsr.load(path)`` rebuilds the model from the file alone.

Before anything is written or read, :func:`effsr.train.preflight.plan_run` checks the recipe against the machine
(teacher weights, data folders, the recipe a resumed run started with) and settles the model's constructor
arguments. Each stage trains on its own ``train_data`` and validates on its own ``val_data`` when it names them.
Progress is a bar on a terminal and plain lines otherwise (:class:`_Console`).

Run folder layout: ``recipe.yaml`` (the validated recipe), ``checkpoints/``, ``stage<k>_<name>.safetensors``
(each stage's result), ``final.safetensors``, ``metrics.jsonl`` (losses, rate, validation), ``tb/``; a last stage
with ``quant: int8`` (quantization-aware fine-tuning, :mod:`effsr.train.qat`) adds ``final_int8.safetensors``, the
int8 file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from .. import metrics
from ..data.batches import DevicePrefetcher
from ..data.datasets import PositionBatchSampler, TrainDataset, find_images, match_lr_files
from ..data.degrade import degrade_image, modcrop
from ..deploy.reparam import reparameterize_model
from ..errors import EffsrError, OutputExistsError
from ..evaluate import find_dataset, super_resolve
from ..files import write_text
from ..imageio import read_rgb_uint8
from ..models import build_model, detect_architecture, get_spec, load_model, load_state_dict_strict
from ..weights import read_state_dict, save_safetensors
from .checkpoint import capture_rng, latest_checkpoint, load_checkpoint, restore_rng, save_checkpoint
from .distributed import DistInfo, all_reduce_sum, barrier, cleanup, gather_objects, setup_distributed
from .ema import ModelEMA
from .losses import get_loss
from .preflight import RunPlan, plan_run
from .qat import INT8_FILE, finish_qat, start_qat
from .recipe import DataSource, Recipe, Stage
from .schedule import lr_at
from .tasks import DistillTask, SRTask

__all__ = ["NonFiniteLossError", "RunResult", "load_val_images", "train", "validate"]


class NonFiniteLossError(EffsrError, RuntimeError):
    """A loss became NaN or infinite: training stopped before the bad step touched the weights."""


@dataclass
class RunResult:
    out_dir: Path
    final: Path
    iterations: int  # optimizer steps run by this call (all stages)
    val: dict[str, float] = field(default_factory=dict)  # last validation (psnr_y, psnr_rgb)
    int8: Path | None = None  # the int8 file of a run whose last stage is quant: int8


# ---------------------------------------------------------------------------------------------------- helpers


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _stage_seed(seed: int, stage: int) -> int:
    # A different but fixed sample stream per stage (1_000_003 is prime: stages never collide for sane seeds).
    return seed + 1_000_003 * stage


def _worker_init(_: int) -> None:
    # Decoding and cropping are single-threaded per worker; many workers each spawning all-core thread pools
    # would oversubscribe the CPU the training process needs.
    torch.set_num_threads(1)
    with contextlib.suppress(Exception):
        import cv2

        cv2.setNumThreads(0)


def _deploy_kwargs(name: str, kwargs: dict[str, Any], sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Constructor kwargs that build a model whose state_dict matches ``sd`` (the deploy form may differ)."""
    ref = get_spec(name).builder(**kwargs).state_dict()
    if set(ref) == set(sd) and all(ref[k].shape == sd[k].shape for k in sd):
        return kwargs
    found, detected = detect_architecture(sd)
    if found != name:
        raise RuntimeError(f"deploy weights of '{name}' are detected as '{found}'")
    return {**kwargs, **detected}


class _Log:
    """metrics.jsonl and TensorBoard scalars, written by the main rank only."""

    def __init__(self, out_dir: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.t0 = time.perf_counter()
        self.tb = None
        self._fh = None
        if not enabled:
            return
        self._fh = open(out_dir / "metrics.jsonl", "a")  # noqa: SIM115 (closed in close())
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out_dir / "tb"))
        except ImportError:  # tensorboard is the optional 'train' extra
            self.tb = None

    def scalars(self, step: int, values: dict[str, float], **tags: Any) -> None:
        if not self.enabled:
            return
        assert self._fh is not None
        elapsed = round(time.perf_counter() - self.t0, 3)  # seconds since this process started the run
        self._fh.write(json.dumps({**tags, "step": step, "time": elapsed, **values}) + "\n")
        self._fh.flush()
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
        if self.tb is not None:
            self.tb.close()


def _clock(seconds: float) -> str:
    """``h:mm:ss``, with a day count past 24 h."""
    m, sec = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    d, h = divmod(h, 24)
    return (f"{d}d " if d else "") + f"{h}:{m:02d}:{sec:02d}"


class _Console:
    """Progress for people: a rich bar on a terminal, one plain line per event elsewhere (nohup, SLURM, CI).

    ``mode``: ``"bar"``, ``"lines"`` or ``"off"``. Lines go to stdout, flushed at once: every ``log_every``
    iterations (stage, iteration, losses, rate, it/s over the last interval, the stage's ETA at that speed) and at
    each validation. Notices (what a run decided at start) go to stderr in every mode but ``off``.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._bar: Any = None
        self._job: Any = None
        self._mark = (0, time.perf_counter())

    def __enter__(self) -> _Console:
        if self.mode == "bar":
            self._bar = _rich_progress()
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def note(self, text: str) -> None:
        if self.mode != "off":
            print(text, file=sys.stderr, flush=True)

    def line(self, text: str) -> None:
        if self.mode == "lines":
            print(text, flush=True)
        elif self.mode == "bar":
            self._bar.console.print(text)

    def stage(self, label: str, total: int, start: int, about: str) -> None:
        self._mark = (start, time.perf_counter())
        self.line(f"{label}  {about}")
        if self.mode == "bar":
            self._job = self._bar.add_task(label, total=total, completed=start, info="")

    def progress(self, done: int) -> None:
        if self.mode == "bar":
            self._bar.update(self._job, completed=done)

    def log(self, label: str, done: int, total: int, losses: dict[str, float], rate: float) -> None:
        it0, t0 = self._mark
        now = time.perf_counter()
        speed = (done - it0) / (now - t0) if now > t0 and done > it0 else 0.0
        self._mark = (done, now)
        ordered = [("loss", losses["loss"]), *sorted((k, v) for k, v in losses.items() if k != "loss")]
        terms = "  ".join(f"{k} {v:.5g}" for k, v in ordered)
        eta = _clock((total - done) / speed) if speed > 0 else "--"
        if self.mode == "lines":
            print(f"{label}  iter {done}/{total}  {terms}  lr {rate:.3e}  {speed:.2f} it/s  ETA {eta}", flush=True)
        elif self.mode == "bar":
            self._bar.update(self._job, info=f"loss {losses['loss']:.4g} lr {rate:.2e}")

    def validation(self, label: str, done: int, total: int, val_name: str, val: dict[str, float]) -> None:
        self.line(f"{label}  iter {done}/{total}  val {val_name}  PSNR-Y {val['psnr_y']:.3f} dB  "
                  f"PSNR-RGB {val['psnr_rgb']:.3f} dB")


def _rich_progress():  # type: ignore[no-untyped-def]
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class SpeedColumn(ProgressColumn):
        def render(self, task):  # type: ignore[no-untyped-def]
            return Text(f"{task.speed:.2f} it/s" if task.speed else "-- it/s")

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        SpeedColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        transient=False,
    )


# ------------------------------------------------------------------------------------------------- validation


def load_val_images(
    folder: str | os.PathLike[str] | None, scale: int, rank: int = 0, world_size: int = 1
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """This rank's shard (every ``world_size``-th image) of a validation set, decoded once: (name, LR uint8, HR uint8
    cropped to a multiple of the scale). ``folder`` is a folder or a benchmark name, in any layout
    :func:`effsr.evaluate.find_dataset` knows; LR from the set's LR folder or made by the MATLAB bicubic resize."""
    if not folder:
        return []
    pairs = find_dataset(folder, scale=scale).pairs()
    out = []
    for name, hr_path, lr_path in pairs[rank::world_size]:
        hr = modcrop(read_rgb_uint8(hr_path), scale)
        lr = read_rgb_uint8(lr_path) if lr_path is not None else degrade_image(hr, scale)
        out.append((name, lr, hr))
    return out


@torch.no_grad()
def validate(
    model: nn.Module, images: list[tuple[str, np.ndarray, np.ndarray]], scale: int, device: torch.device
) -> dict[str, float]:
    """Mean PSNR-Y and PSNR-RGB over every rank's images (sums all-reduced), border = scale."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64)
    for _, lr, hr in images:
        sr = super_resolve(model, lr, device)
        sums[0] += metrics.psnr_y(sr, hr, scale)
        sums[1] += metrics.psnr_rgb(sr, hr, scale)
        sums[2] += 1
    model.train(was_training)
    if torch.distributed.is_initialized() and device.type == "cuda":
        sums = sums.to(device)
    sums = all_reduce_sum(sums).cpu()
    n = max(float(sums[2]), 1.0)
    return {"psnr_y": float(sums[0]) / n, "psnr_rgb": float(sums[1]) / n, "images": float(sums[2])}


# ----------------------------------------------------------------------------------------------------- data


def _build_dataset(recipe: Recipe, stage_idx: int) -> tuple[TrainDataset, str]:
    """The stage's training set (its own ``train_data`` or the recipe's) and a one-line description of it."""
    stage = recipe.stages[stage_idx]
    sources: list[DataSource] = recipe.stage_train_data(stage_idx)
    hr_files: list[Path] = []
    lr_files: list[Path] = []
    counts: list[str] = []
    paired = all(src.lr is not None for src in sources)  # mixing is refused by the preflight check
    for j, src in enumerate(sources):
        files = find_images(src.hr, file_list=src.file_list, limit=src.limit)
        hr_files += files
        counts.append(f"{src.name or f'train_data.{j}'} {len(files)}")
        if src.lr is not None:
            lr_files += match_lr_files(files, src.hr, src.lr, recipe.scale)
    ds = TrainDataset(
        hr_files,
        lr_files if paired else None,
        scale=recipe.scale,
        patch_size=stage.patch_size,
        seed=_stage_seed(recipe.seed, stage_idx),
        hflip=stage.hflip,
        rot=stage.rot,
        cache_images=recipe.cache_images,
    )
    lr_kind = "LR from folders" if paired else "LR made on the fly"
    return ds, f"data {' + '.join(counts)} images ({lr_kind})"


def _loader(
    ds: TrainDataset, recipe: Recipe, stage: Stage, start: int, stop: int, dist_info: DistInfo
) -> Iterator[dict[str, torch.Tensor]]:
    sampler = PositionBatchSampler(
        stage.batch_size, start=start, stop=stop, rank=dist_info.rank, world_size=dist_info.world_size
    )
    workers = recipe.workers
    loader = DataLoader(
        ds,
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=dist_info.device.type == "cuda",
        worker_init_fn=_worker_init if workers else None,
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
    )
    return iter(DevicePrefetcher(loader, recipe.scale, dist_info.device))


# ------------------------------------------------------------------------------------------------------ train


def _init_weights(model: nn.Module, plan: RunPlan, stage: Stage) -> None:
    name, kwargs = plan.model, plan.model_kwargs
    if stage.init == "official":
        ref = load_model(name, **{k: v for k, v in kwargs.items() if k in get_spec(name).weight_determined})
        load_state_dict_strict(model, ref.state_dict(), name)
    elif stage.init is not None:
        load_state_dict_strict(model, read_state_dict(stage.init), name)


def _console_mode(progress: bool | None, is_main: bool) -> str:
    if not is_main or progress is False:
        return "off"
    if progress is None and not sys.stdout.isatty():
        return "lines"
    return "bar"


def train(
    recipe: Recipe,
    out_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    max_iters: int | None = None,
    progress: bool | None = None,
) -> RunResult:
    """Run ``recipe`` into ``out_dir``. ``max_iters`` caps every stage's length (a quick try that still ends
    with ``final.safetensors``); the schedules keep their full-length shape."""
    dist_info = setup_distributed(recipe.device)
    try:
        return _train(recipe, Path(out_dir), dist_info, resume, max_iters, progress)
    finally:
        cleanup()


def _train(
    recipe: Recipe, out: Path, di: DistInfo, resume: bool, max_iters: int | None, progress: bool | None
) -> RunResult:
    ckpt_path = latest_checkpoint(out)
    if ckpt_path is not None and not resume:
        raise OutputExistsError(out, f"already holds checkpoints ({ckpt_path.name})", "pass --resume or another --out")
    # Before anything is written or read: teacher weights, data folders, the recipe a resumed run was started with.
    plan = plan_run(recipe, out, resume=resume and ckpt_path is not None)
    console = _Console(_console_mode(progress, di.is_main))
    if resume and ckpt_path is None:
        console.note(f"no checkpoint in {out}: starting from scratch")
    for note in plan.notes:
        console.note(note)

    # Process-wide settings the run changes are put back when it ends (a Python caller's other work keeps its own).
    threads_before = torch.get_num_threads()
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    if recipe.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif di.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    _seed_everything(recipe.seed)

    if di.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if ckpt_path is None:  # a resumed run keeps the recipe it was started with (checked equal above)
            write_text(out / "recipe.yaml", yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False))
    barrier()
    ckpt = load_checkpoint(ckpt_path) if (resume and ckpt_path is not None) else None

    name, kwargs = plan.model, plan.model_kwargs
    model = build_model(name, **kwargs).to(di.device)
    if ckpt is not None:
        # The checkpoint's weights: mid-stage, the trained model; at a stage boundary, the next stage's start.
        load_state_dict_strict(model, ckpt.model, name)
        restore_rng(ckpt.state["rng"][di.rank] if di.rank < len(ckpt.state["rng"]) else ckpt.state["rng"][0])
    teacher = plan.teacher.to(di.device) if plan.teacher is not None else None
    use_amp = di.device.type == "cuda" and recipe.precision != "fp32"
    amp_dtype = torch.bfloat16 if recipe.precision == "bf16" else torch.float16
    val_sets: dict[str, tuple[str, list[tuple[str, np.ndarray, np.ndarray]]]] = {}  # name, images: decoded once
    log = _Log(out, di.is_main)
    saver = _Saver(out, recipe, name, kwargs, di)
    steps_run = 0
    last_val: dict[str, float] = {}
    result: nn.Module | None = None
    first_stage = int(ckpt.state["stage"]) if ckpt else 0
    int8_file: Path | None = None

    try:
        with console:
            for si, stage in enumerate(recipe.stages):
                if si < first_stage:
                    continue
                n_iters = min(stage.iters, max_iters) if max_iters else stage.iters
                mid_stage = ckpt is not None and int(ckpt.state["stage"]) == si and int(ckpt.state["iteration"]) > 0
                start = int(ckpt.state["iteration"]) if mid_stage else 0
                if not mid_stage:
                    _init_weights(model, plan, stage)
                # The module this stage trains: the model, or for quant: int8 its fake-quantized deploy graph.
                trained: nn.Module = model
                if stage.quant is not None:
                    trained = start_qat(model, stage.quant_policy).to(di.device)
                    console.note(f"stage {si + 1}: quantization-aware training of the {stage.quant} deploy graph "
                                 f"(no EMA, no mid-stage checkpoints; docs/training.md)")
                ema = ModelEMA(trained, stage.ema_decay) if stage.ema_decay > 0 and stage.quant is None else None
                params = [p for p in trained.parameters() if p.requires_grad]
                opt = torch.optim.Adam(params, lr=stage.lr, betas=stage.betas, weight_decay=stage.weight_decay)
                scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
                if mid_stage and ckpt is not None:
                    if ema is not None and ckpt.ema is not None:
                        ema.load_state_dict(ckpt.ema)
                    opt.load_state_dict(ckpt.state["optimizer"])
                    if ckpt.state.get("scaler"):
                        scaler.load_state_dict(ckpt.state["scaler"])
                ckpt = None
                net: nn.Module = trained
                if di.enabled:
                    ids = [di.device.index] if di.device.type == "cuda" else None
                    net = DistributedDataParallel(trained, device_ids=ids)
                pixel = get_loss(stage.loss)
                task: SRTask
                if stage.distill_weight > 0:
                    assert teacher is not None
                    task = DistillTask(net, teacher, pixel, get_loss(stage.distill_loss),
                                       pixel_weight=stage.pixel_weight, distill_weight=stage.distill_weight)
                else:
                    task = SRTask(net, pixel, stage.pixel_weight)
                task.train()
                dataset, about = _build_dataset(recipe, si)
                val_spec = recipe.stage_val_data(si)
                if val_spec and val_spec not in val_sets:
                    val_sets[val_spec] = (find_dataset(val_spec, scale=recipe.scale).name,
                                          load_val_images(val_spec, recipe.scale, di.rank, di.world_size))
                val_name, val_images = val_sets.get(val_spec or "", ("", []))
                batches = _loader(dataset, recipe, stage, start, n_iters, di)
                global_batch = stage.batch_size * di.world_size
                label = f"stage {si + 1}/{len(recipe.stages)} {stage.name}".strip()
                kd = f", distillation from {recipe.teacher}" if stage.distill_weight > 0 else ""
                console.stage(label, n_iters, start, f"{about}, HR patch {stage.patch_size}, batch {global_batch}, "
                              f"{stage.loss} loss{kd}, lr {stage.lr:g}, {n_iters} iterations")
                offset = sum(s.iters for s in recipe.stages[:si])  # global step of this stage's iteration 0

                for it in range(start, n_iters):
                    batch = next(batches)
                    rate = lr_at(stage, it)
                    for g in opt.param_groups:
                        g["lr"] = rate
                    with torch.autocast(di.device.type, dtype=amp_dtype, enabled=use_amp):
                        losses = task(batch)
                    keys = sorted(losses)
                    # One small all-reduce per step: the logged losses are global means, and every rank takes
                    # the same decision in the guard below.
                    vals = all_reduce_sum(torch.stack([losses[k].detach().float() for k in keys])) / di.world_size
                    host = dict(zip(keys, vals.tolist(), strict=True))
                    if not all(math.isfinite(v) for v in host.values()):
                        raise NonFiniteLossError(
                            f"non-finite loss at stage {si + 1} ('{stage.name}') iteration {it + 1}: "
                            + ", ".join(f"{k}={v}" for k, v in host.items())
                            + ". The weights were not updated by this step. Last good checkpoint: "
                            + f"{latest_checkpoint(out) or 'none yet'} (resume from it with --resume and a lower "
                            + "'lr', a 'grad_clip', or precision fp32)."
                        )
                    opt.zero_grad(set_to_none=True)
                    scaler.scale(losses["loss"]).backward()
                    if stage.grad_clip is not None:
                        scaler.unscale_(opt)
                        torch.nn.utils.clip_grad_norm_(params, stage.grad_clip)
                    scaler.step(opt)
                    scaler.update()
                    if ema is not None:
                        ema.update(trained)
                    steps_run += 1
                    done = it + 1
                    if done % recipe.log_every == 0 or done == n_iters:
                        log.scalars(offset + done, {f"train/{k}": v for k, v in host.items()} | {"train/lr": rate},
                                    stage=si, iter=done)
                        console.log(label, done, n_iters, host, rate)
                    console.progress(done)
                    if recipe.val_every and done % recipe.val_every == 0 and done < n_iters and val_images:
                        last_val = validate(ema.module if ema else trained, val_images, recipe.scale, di.device)
                        log.scalars(offset + done, {f"val/{k}": v for k, v in last_val.items()},
                                    stage=si, iter=done)
                        console.validation(label, done, n_iters, val_name, last_val)
                    if done % recipe.ckpt_every == 0 and done < n_iters and stage.quant is None:
                        saver.save(si, done, model, ema, opt, scaler, done * global_batch)

                # End of stage: validate, keep its weights, and mark it complete for --resume.
                result = ema.module if ema is not None else trained
                if val_images:
                    last_val = validate(result, val_images, recipe.scale, di.device)
                    log.scalars(offset + n_iters, {f"val/{k}": v for k, v in last_val.items()},
                                stage=si, iter=n_iters)
                    console.validation(label, n_iters, n_iters, val_name, last_val)
                if stage.quant is not None:
                    if di.is_main:
                        int8_file = finish_qat(result, out / INT8_FILE)
                    result = result.float_deploy()  # the fine-tuned float weights, in deploy form
                    sd = result.state_dict()
                    if di.is_main:
                        save_safetensors(sd, _stage_file(out, si, stage), model=name,
                                         kwargs=_deploy_kwargs(name, kwargs, sd))
                elif di.is_main:
                    save_safetensors(result.state_dict(), _stage_file(out, si, stage), model=name, kwargs=kwargs)
                if recipe.stage_init == "ema" and ema is not None:
                    model.load_state_dict(ema.state_dict())
                saver.save(si + 1, 0, model, None, None, None, 0)
                del batches, task, net
    finally:
        log.close()
        torch.use_deterministic_algorithms(was_deterministic)
        torch.set_num_threads(threads_before)

    if result is None:  # every stage was already complete in the checkpoint we resumed from
        last = len(recipe.stages) - 1
        last_file = _stage_file(out, last, recipe.stages[last])
        if recipe.stages[last].quant is not None:  # a deploy-form file with its own constructor arguments
            result = load_model(weights=last_file, device=di.device)
        else:
            result = build_model(name, **kwargs)
            load_state_dict_strict(result, read_state_dict(last_file), name)
        if (out / INT8_FILE).is_file():
            int8_file = out / INT8_FILE
    deploy = reparameterize_model(result).eval()
    sd = {k: v.detach().cpu() for k, v in deploy.state_dict().items()}
    final = out / "final.safetensors"
    if di.is_main:
        extra = {"recipe": recipe.name, "val": last_val} if last_val else {"recipe": recipe.name}
        save_safetensors(sd, final, model=name, kwargs=_deploy_kwargs(name, kwargs, sd), extra=extra)
    barrier()
    return RunResult(out_dir=out, final=final, iterations=steps_run, val=last_val,
                     int8=int8_file if recipe.stages[-1].quant is not None else None)


def _stage_file(out: Path, si: int, stage: Stage) -> Path:
    return out / f"stage{si + 1}_{stage.name or 'train'}.safetensors"


class _Saver:
    """Collects every rank's RNG state and writes a checkpoint from the main rank."""

    def __init__(self, out: Path, recipe: Recipe, name: str, kwargs: dict[str, Any], di: DistInfo) -> None:
        self.out, self.recipe, self.name, self.kwargs, self.di = out, recipe, name, kwargs, di

    def save(
        self,
        stage: int,
        iteration: int,
        model: nn.Module,
        ema: ModelEMA | None,
        opt: torch.optim.Optimizer | None,
        scaler: torch.amp.GradScaler | None,
        data_position: int,
    ) -> None:
        """Checkpoint "stage ``stage`` continues at ``iteration``" (iteration 0: the stage has not started)."""
        rngs = gather_objects(capture_rng())
        if self.di.is_main:
            state = {
                "optimizer": opt.state_dict() if opt is not None else {},
                "scheduler": {"iteration": iteration},  # the rate is a pure function of the iteration
                "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else {},
                "rng": rngs,
                "world_size": self.di.world_size,
                "data_position": data_position,  # global sample position (the sampler is stateless)
            }
            save_checkpoint(
                self.out,
                stage=stage,
                iteration=iteration,
                model_state=model.state_dict(),
                ema_state=ema.state_dict() if ema is not None else None,
                state=state,
                arch=self.name,
                arch_kwargs=self.kwargs,
                keep=self.recipe.keep_checkpoints,
            )
        barrier()
