"""The training loop: plain and linear (nanoGPT style). It moves data, asks the task for losses, steps.

One call of :func:`train` runs a whole :class:`~effsr.train.recipe.Recipe`, stage after stage, in one process or
as one rank of a ``torchrun`` world (DDP; each rank reads its own shard of every global batch). Every
``ckpt_every`` iterations it writes an atomic checkpoint (:mod:`effsr.train.checkpoint`); ``resume=True`` picks
up from the newest one and continues exactly (bit-identical on CPU in deterministic mode, because the data is
a pure function of the seed and the position, and every other piece of state is saved). At the end it writes
``final.safetensors``: the EMA weights in deploy form (re-parameterized), with the architecture and constructor
arguments in the metadata, so ``effsr.load(path)`` rebuilds the model from the file alone.

Run folder layout: ``recipe.yaml`` (the validated recipe), ``checkpoints/``, ``stage<k>_<name>.safetensors``
(each stage's result), ``final.safetensors``, ``metrics.jsonl`` (losses, rate, validation), ``tb/``.
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
from ..evaluate import dataset_from_folder, super_resolve
from ..imageio import read_rgb_uint8
from ..models import build_model, detect_architecture, get_spec, load_model, load_state_dict_strict
from ..weights import read_state_dict, save_safetensors
from .checkpoint import capture_rng, latest_checkpoint, load_checkpoint, restore_rng, save_checkpoint
from .distributed import DistInfo, all_reduce_sum, barrier, cleanup, gather_objects, setup_distributed
from .ema import ModelEMA
from .losses import get_loss
from .recipe import Recipe, Stage
from .schedule import lr_at
from .tasks import DistillTask, SRTask

__all__ = ["NonFiniteLossError", "RunResult", "load_val_images", "train", "validate"]


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite: training stopped before the bad step touched the weights."""


@dataclass
class RunResult:
    out_dir: Path
    final: Path
    iterations: int  # optimizer steps run by this call (all stages)
    val: dict[str, float] = field(default_factory=dict)  # last validation (psnr_y, psnr_rgb)


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


def _arch_kwargs(recipe: Recipe) -> tuple[str, dict[str, Any]]:
    return get_spec(recipe.model).name, dict(recipe.model_args)


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


def _progress(enabled: bool):  # type: ignore[no-untyped-def]
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
        disable=not enabled,
        transient=False,
    )


# ------------------------------------------------------------------------------------------------- validation


def load_val_images(
    folder: str | os.PathLike[str] | None, scale: int, rank: int = 0, world_size: int = 1
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """This rank's shard (every ``world_size``-th image) of a validation folder, decoded once:
    (name, LR uint8, HR uint8 cropped to a multiple of the scale). LR from ``LR_bicubic/X<s>`` or made by the
    MATLAB bicubic resize."""
    if not folder:
        return []
    pairs = dataset_from_folder(folder, scale).pairs()
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


def _build_dataset(recipe: Recipe, stage: Stage, stage_idx: int) -> TrainDataset:
    hr_files: list[Path] = []
    lr_files: list[Path] = []
    paired = [src.lr is not None for src in recipe.train_data]
    if any(paired) and not all(paired):
        raise ValueError("train_data mixes sources with and without 'lr': give LR for all of them or for none")
    for src in recipe.train_data:
        files = find_images(src.hr, file_list=src.file_list, limit=src.limit)
        hr_files += files
        if src.lr is not None:
            lr_files += match_lr_files(files, src.hr, src.lr, recipe.scale)
    return TrainDataset(
        hr_files,
        lr_files if all(paired) else None,
        scale=recipe.scale,
        patch_size=stage.patch_size,
        seed=_stage_seed(recipe.seed, stage_idx),
        hflip=stage.hflip,
        rot=stage.rot,
        cache_images=recipe.cache_images,
    )


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


def _init_weights(model: nn.Module, recipe: Recipe, stage: Stage) -> None:
    name, kwargs = _arch_kwargs(recipe)
    if stage.init == "official":
        ref = load_model(name, **{k: v for k, v in kwargs.items() if k in get_spec(name).weight_determined})
        load_state_dict_strict(model, ref.state_dict(), name)
    elif stage.init is not None:
        load_state_dict_strict(model, read_state_dict(stage.init), name)


def _teacher(recipe: Recipe, device: torch.device) -> nn.Module:
    assert recipe.teacher is not None
    if recipe.teacher_weights:
        return load_model(recipe.teacher, recipe.teacher_weights, device=device, **recipe.teacher_args)
    return load_model(recipe.teacher, device=device, **recipe.teacher_args)


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

    ckpt_path = latest_checkpoint(out)
    if ckpt_path is not None and not resume:
        raise FileExistsError(f"{out} already holds checkpoints ({ckpt_path.name}); pass --resume or another --out")
    if resume and ckpt_path is None and di.is_main:
        print(f"no checkpoint in {out}: starting from scratch", file=sys.stderr)
    if di.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "recipe.yaml").write_text(yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False))
    barrier()
    ckpt = load_checkpoint(ckpt_path) if (resume and ckpt_path is not None) else None

    name, kwargs = _arch_kwargs(recipe)
    model = build_model(name, **kwargs).to(di.device)
    if ckpt is not None:
        # The checkpoint's weights: mid-stage, the trained model; at a stage boundary, the next stage's start.
        load_state_dict_strict(model, ckpt.model, name)
        restore_rng(ckpt.state["rng"][di.rank] if di.rank < len(ckpt.state["rng"]) else ckpt.state["rng"][0])
    teacher = _teacher(recipe, di.device) if recipe.uses_teacher else None
    use_amp = di.device.type == "cuda" and recipe.precision != "fp32"
    amp_dtype = torch.bfloat16 if recipe.precision == "bf16" else torch.float16
    val_images = load_val_images(recipe.val_data, recipe.scale, di.rank, di.world_size)
    log = _Log(out, di.is_main)
    show = di.is_main and (sys.stderr.isatty() if progress is None else progress)
    saver = _Saver(out, recipe, name, kwargs, di)
    steps_run = 0
    last_val: dict[str, float] = {}
    result: nn.Module | None = None
    first_stage = int(ckpt.state["stage"]) if ckpt else 0

    try:
        with _progress(show) as bar:
            for si, stage in enumerate(recipe.stages):
                if si < first_stage:
                    continue
                n_iters = min(stage.iters, max_iters) if max_iters else stage.iters
                mid_stage = ckpt is not None and int(ckpt.state["stage"]) == si and int(ckpt.state["iteration"]) > 0
                start = int(ckpt.state["iteration"]) if mid_stage else 0
                if not mid_stage:
                    _init_weights(model, recipe, stage)
                ema = ModelEMA(model, stage.ema_decay) if stage.ema_decay > 0 else None
                params = [p for p in model.parameters() if p.requires_grad]
                opt = torch.optim.Adam(params, lr=stage.lr, betas=stage.betas, weight_decay=stage.weight_decay)
                scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
                if mid_stage and ckpt is not None:
                    if ema is not None and ckpt.ema is not None:
                        ema.load_state_dict(ckpt.ema)
                    opt.load_state_dict(ckpt.state["optimizer"])
                    if ckpt.state.get("scaler"):
                        scaler.load_state_dict(ckpt.state["scaler"])
                ckpt = None
                net: nn.Module = model
                if di.enabled:
                    ids = [di.device.index] if di.device.type == "cuda" else None
                    net = DistributedDataParallel(model, device_ids=ids)
                pixel = get_loss(stage.loss)
                task: SRTask
                if stage.distill_weight > 0:
                    assert teacher is not None
                    task = DistillTask(net, teacher, pixel, get_loss(stage.distill_loss),
                                       pixel_weight=stage.pixel_weight, distill_weight=stage.distill_weight)
                else:
                    task = SRTask(net, pixel, stage.pixel_weight)
                task.train()
                batches = _loader(_build_dataset(recipe, stage, si), recipe, stage, start, n_iters, di)
                global_batch = stage.batch_size * di.world_size
                label = f"stage {si + 1}/{len(recipe.stages)} {stage.name}".strip()
                job = bar.add_task(label, total=n_iters, completed=start, info="")
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
                        ema.update(model)
                    steps_run += 1
                    done = it + 1
                    if done % recipe.log_every == 0 or done == n_iters:
                        log.scalars(offset + done, {f"train/{k}": v for k, v in host.items()} | {"train/lr": rate},
                                    stage=si, iter=done)
                        bar.update(job, info=f"loss {host['loss']:.4g} lr {rate:.2e}")
                    bar.update(job, completed=done)
                    if recipe.val_every and done % recipe.val_every == 0 and done < n_iters and val_images:
                        last_val = validate(ema.module if ema else model, val_images, recipe.scale, di.device)
                        log.scalars(offset + done, {f"val/{k}": v for k, v in last_val.items()},
                                    stage=si, iter=done)
                    if done % recipe.ckpt_every == 0 and done < n_iters:
                        saver.save(si, done, model, ema, opt, scaler, done * global_batch)

                # End of stage: validate, keep its weights, and mark it complete for --resume.
                result = ema.module if ema is not None else model
                if val_images:
                    last_val = validate(result, val_images, recipe.scale, di.device)
                    log.scalars(offset + n_iters, {f"val/{k}": v for k, v in last_val.items()},
                                stage=si, iter=n_iters)
                    if show:
                        bar.console.print(f"{label}: validation PSNR-Y {last_val['psnr_y']:.3f} dB, "
                                          f"PSNR-RGB {last_val['psnr_rgb']:.3f} dB")
                if di.is_main:
                    save_safetensors(result.state_dict(), _stage_file(out, si, stage), model=name, kwargs=kwargs)
                if recipe.stage_init == "ema" and ema is not None:
                    model.load_state_dict(ema.state_dict())
                saver.save(si + 1, 0, model, None, None, None, 0)
                del batches, task, net
    finally:
        log.close()
        torch.use_deterministic_algorithms(was_deterministic)

    if result is None:  # every stage was already complete in the checkpoint we resumed from
        result = build_model(name, **kwargs)
        last = len(recipe.stages) - 1
        load_state_dict_strict(result, read_state_dict(_stage_file(out, last, recipe.stages[last])), name)
    deploy = reparameterize_model(result).eval()
    sd = {k: v.detach().cpu() for k, v in deploy.state_dict().items()}
    final = out / "final.safetensors"
    if di.is_main:
        extra = {"recipe": recipe.name, "val": last_val} if last_val else {"recipe": recipe.name}
        save_safetensors(sd, final, model=name, kwargs=_deploy_kwargs(name, kwargs, sd), extra=extra)
    barrier()
    return RunResult(out_dir=out, final=final, iterations=steps_run, val=last_val)


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
