"""One script for a CUDA GPU, under 5 minutes: the organisers' timing protocol next to effsr's paths in fp32, fp16 and
bf16, the PSNR cost of each, peak memory; then AMP training of the smoke recipe and a one-rank NCCL run.

    python benchmarks/gpu_check.py --json gpu_check.json --markdown gpu_check.md      # on one CUDA GPU
    python benchmarks/gpu_check.py --dry-run --models rlfn --json /tmp/g.json          # CPU: the same code, tiny

Per model (the six seed models and SPAN), over the Set5 and Set14 LR images:

* **organisers**: the NTIRE ESR harness (``test_demo.py`` of Amazingren/NTIRE2025_ESR @ b69fb668: ``run`` and
  ``main``): float32, ``torch.backends.cudnn.benchmark = False``, ``model.eval()``, parameters without gradients,
  no warm-up; per image ``start.record(); model(lr); end.record(); torch.cuda.synchronize()`` with CUDA events, the
  mean of those times, and ``torch.cuda.max_memory_allocated`` as the peak;
* **effsr** ``eager`` and ``fast`` in fp32, fp16 and bf16 (``effsr.deploy.prepare``), cuDNN's autotuner on, each
  image run ``--warmup`` times untimed first (every LR shape autotuned before it is timed), then one timed run per
  image with effsr's timer (``effsr.profile.time_call``: CUDA events between synchronisations); peak memory the same
  way. The SR is the challenge pipeline (``effsr.evaluate.super_resolve``: whole image, clamp, round to uint8);
* PSNR (RGB and Y, border 4) per set, and each path's cost against the organisers' float32 run.

Then ``--train-iters`` iterations of the smoke recipe (``effsr train --recipe smoke``: RLFN, patch 96, batch 8) with
AMP in bf16 and in fp16 (``precision`` of the recipe; on CPU the loop runs float32), and a one-rank DDP run of the
same model over an NCCL process group (gloo on CPU) that checks an all-reduce.

The goal checked (the issue's): effsr fast fp16 at least 2x faster than the organisers' float32 protocol for the same
model on the same GPU, at a PSNR cost of at most 0.01 dB. ``--dry-run`` runs every step on the CPU with LR crops of
``--crop`` pixels, ``--max-images`` per set, 2 training iterations and 2 DDP steps (tests/test_gpu_check.py); a
precision the CPU cannot run (bf16 without AVX-512 BF16) is recorded as unavailable, like any path that fails.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MODELS = ("rlfn", "agdn", "lsanet", "ifadnet", "mdrn_s", "msn", "span")
SETS = ("Set5", "Set14")
PATHS = tuple((b, p) for b in ("eager", "fast") for p in ("fp32", "fp16", "bf16"))
# The goal: fast fp16 at least this much faster than the organisers' float32 protocol, at most this PSNR cost (dB).
FP16_SPEEDUP_GOAL = 2.0
FP16_COST_GOAL_DB = 0.01
ORGANISERS = "organisers:fp32"


@dataclass
class Config:
    models: tuple[str, ...] = MODELS
    sets: tuple[str, ...] = SETS
    device: str = "cuda"
    crop: int | None = None  # LR crop edge (dry run); None: whole images
    max_images: int | None = None  # per set (dry run)
    warmup: int = 3
    train_iters: int = 50
    train_patch: int = 96
    train_batch: int = 8
    ddp_steps: int = 20
    dry_run: bool = False

    @classmethod
    def dry(cls, models: tuple[str, ...]) -> Config:
        # 64-pixel HR patches: 16 LR pixels, above the seed models' 15-pixel minimum.
        return cls(models=models, device="cpu", crop=32, max_images=2, warmup=1, train_iters=2, train_patch=64,
                   train_batch=2, ddp_steps=2, dry_run=True)


@dataclass
class PathResult:
    """One (model, path) over the sets: mean ms per image (the organisers' statistic), PSNR per set, peak memory."""

    model: str
    path: str
    ms_per_image: float | None = None
    median_ms: float | None = None
    psnr_rgb: dict[str, float] = field(default_factory=dict)
    psnr_y: dict[str, float] = field(default_factory=dict)
    peak_memory_mib: float | None = None
    error: str | None = None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=None, help="comma-separated zoo names (default: the seed models and SPAN)")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: check the script, time nothing real")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    models = tuple(m.strip() for m in args.models.split(",") if m.strip()) if args.models else MODELS
    cfg = Config.dry(models) if args.dry_run else Config(models=models)
    from effsr.files import check_output, write_json, write_text

    for path in (args.json, args.markdown):
        if path is not None:
            check_output(path, overwrite=args.overwrite)  # before minutes of work
    report = run(cfg, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    text = render(report)
    print(text)
    if args.json:
        write_json(args.json, report, overwrite=args.overwrite)
    if args.markdown:
        write_text(args.markdown, text + "\n", overwrite=args.overwrite)
    return 0


def run(cfg: Config, log=lambda msg: None) -> dict[str, Any]:
    """Every step of the module docstring; returns the JSON report."""
    import torch

    from effsr.bench import machine_name

    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device here; run with --dry-run on a CPU")
    started = time.time()
    images = load_images(cfg)
    inference: list[dict[str, Any]] = []
    for name in cfg.models:
        for r in check_model(name, images, cfg, log):
            inference.append(asdict(r))
    training = [amp_training(precision, cfg, log) for precision in ("bf16", "fp16")]
    ddp = one_rank_ddp(cfg, log)
    return {
        "machine": machine_name(cfg.device),
        "device": cfg.device,
        "date": datetime.date.today().isoformat(),
        "dry_run": cfg.dry_run,
        "torch": torch.__version__,
        "sets": list(images),
        "images": {s: len(v) for s, v in images.items()},
        "crop": cfg.crop,
        "inference": inference,
        "training": training,
        "ddp": ddp,
        "goals": goals(inference),
        "seconds": round(time.time() - started, 1),
    }


def load_images(cfg: Config) -> dict[str, list[tuple[str, Any, Any]]]:
    """(name, LR uint8 HxWx3, HR uint8 modcropped) per set; crops (LR top-left corner, HR to match) in a dry run."""
    from effsr.data.degrade import modcrop
    from effsr.evaluate import find_dataset
    from effsr.imageio import read_rgb_uint8

    out = {}
    for spec in cfg.sets:
        ds = find_dataset(spec)
        pairs = ds.pairs()[: cfg.max_images] if cfg.max_images else ds.pairs()
        items = []
        for name, hr_path, lr_path in pairs:
            hr = modcrop(read_rgb_uint8(hr_path), ds.scale)
            lr = read_rgb_uint8(lr_path)
            if cfg.crop:
                c = cfg.crop
                lr, hr = lr[:c, :c], hr[: c * ds.scale, : c * ds.scale]
            items.append((name, lr, hr))
        out[ds.name] = items
    return out


def _peak_reset(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: Any) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated(device) / 1024**2 if device.type == "cuda" else None


def _score(result: PathResult, set_name: str, srs: list[tuple[Any, Any]]) -> None:
    from effsr import metrics

    result.psnr_rgb[set_name] = statistics.fmean(metrics.psnr_rgb(sr, hr, 4) for sr, hr in srs)
    result.psnr_y[set_name] = statistics.fmean(metrics.psnr_y(sr, hr, 4) for sr, hr in srs)


def organisers_run(model: Any, images: dict[str, list], device: Any) -> PathResult:
    """The organisers' protocol (module docstring), on a copy of ``model``."""
    import torch

    from effsr.imageio import tensor_to_uint8, uint8_to_tensor

    result = PathResult(model="", path=ORGANISERS)
    net = copy.deepcopy(model).eval()
    for p in net.parameters():
        p.requires_grad = False
    net = net.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False
    _peak_reset(device)
    times = []
    for set_name, items in images.items():
        srs = []
        for _, lr, hr in items:
            x = uint8_to_tensor(lr).to(device)
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                sr = net(x)
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end))
            else:  # the dry run: no events on a CPU
                t0 = time.perf_counter()
                sr = net(x)
                times.append((time.perf_counter() - t0) * 1e3)
            srs.append((tensor_to_uint8(sr.detach()), hr))
        _score(result, set_name, srs)
    result.ms_per_image = statistics.fmean(times)
    result.median_ms = statistics.median(times)
    result.peak_memory_mib = _peak_mib(device)
    return result


def effsr_run(model: Any, backend: str, precision: str, images: dict[str, list], device: Any,
              warmup: int) -> PathResult:
    """One effsr path (module docstring): prepared, every image warmed up, then timed once."""
    import torch

    from effsr.deploy import prepare
    from effsr.evaluate import super_resolve
    from effsr.imageio import uint8_to_tensor
    from effsr.infer import upscale
    from effsr.profile import time_call

    result = PathResult(model="", path=f"{backend}:{precision}")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    _peak_reset(device)
    engine = prepare(model, backend, device=device, precision=precision)
    times = []
    for set_name, items in images.items():
        srs = []
        for _, lr, hr in items:
            x = uint8_to_tensor(lr).to(device)
            for _ in range(warmup):
                upscale(engine, x, tile=0)
            times.append(time_call(lambda x=x: upscale(engine, x, tile=0), device))
            srs.append((super_resolve(engine, lr, device), hr))
        _score(result, set_name, srs)
    result.ms_per_image = statistics.fmean(times)
    result.median_ms = statistics.median(times)
    result.peak_memory_mib = _peak_mib(device)
    return result


def check_model(name: str, images: dict[str, list], cfg: Config, log) -> list[PathResult]:
    """The organisers' run and every effsr path of one zoo model; a path that cannot run is recorded with why."""
    import torch

    from effsr.models import load_model

    device = torch.device(cfg.device)
    model = load_model(name)
    rows = [organisers_run(model, images, device)]
    for backend, precision in PATHS:
        try:
            rows.append(effsr_run(model, backend, precision, images, device, cfg.warmup))
        except Exception as exc:  # noqa: BLE001 - one failing path must not hide the others
            rows.append(PathResult(model="", path=f"{backend}:{precision}", error=f"{type(exc).__name__}: {exc}"))
    for r in rows:
        r.model = name
        log(f"{name} {r.path}: " + (r.error or f"{r.ms_per_image:.2f} ms/image, RGB "
                                     + ", ".join(f"{k} {v:.3f}" for k, v in r.psnr_rgb.items())))
    return rows


def amp_training(precision: str, cfg: Config, log) -> dict[str, Any]:
    """``cfg.train_iters`` iterations of the smoke recipe with autocast in ``precision`` (float32 on CPU)."""
    from effsr.recipes import load_packaged_recipe
    from effsr.train.loop import train

    overrides = [f"device={cfg.device}", f"precision={precision}", f"stages.0.iters={cfg.train_iters}",
                 f"stages.0.patch_size={cfg.train_patch}", f"stages.0.batch_size={cfg.train_batch}", "val_every=0",
                 f"ckpt_every={cfg.train_iters}", f"log_every={max(1, cfg.train_iters // 5)}", "keep_checkpoints=1",
                 "workers=2" if not cfg.dry_run else "workers=0"]
    out: dict[str, Any] = {"recipe": "smoke", "precision": precision, "iterations": cfg.train_iters,
                           "autocast": cfg.device.startswith("cuda"), "overrides": overrides}
    try:
        recipe = load_packaged_recipe("smoke", overrides)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            res = train(recipe, Path(tmp) / "run", progress=False)
            out["seconds"] = round(time.perf_counter() - t0, 2)
        out["steps"] = res.iterations
        out["val"] = res.val
    except Exception as exc:  # noqa: BLE001 - reported in the table
        out["error"] = f"{type(exc).__name__}: {exc}"
    log(f"training {precision}: {out.get('error') or out}")
    return out


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_rank_ddp(cfg: Config, log) -> dict[str, Any]:
    """DDP of the smoke model (RLFN) in a process group of one rank (NCCL on CUDA, gloo on CPU): ``ddp_steps`` AMP
    steps (bf16 on CUDA) and an all-reduce whose sum must be 1."""
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel

    from effsr.models import build_model

    device = torch.device(cfg.device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    out: dict[str, Any] = {"backend": backend, "world_size": 1, "steps": cfg.ddp_steps}
    try:
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
        try:
            torch.manual_seed(0)
            model = build_model("rlfn").to(device).train()
            ddp = DistributedDataParallel(model, device_ids=[device.index or 0] if device.type == "cuda" else None)
            opt = torch.optim.Adam(ddp.parameters(), lr=1e-4)
            g = torch.Generator().manual_seed(0)
            hr = torch.rand(cfg.train_batch, 3, cfg.train_patch, cfg.train_patch, generator=g).to(device)
            lr = F.interpolate(hr, scale_factor=0.25, mode="bicubic", antialias=True).clamp(0, 1)
            losses = []
            t0 = time.perf_counter()
            for _ in range(cfg.ddp_steps):
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    loss = F.l1_loss(ddp(lr).float(), hr)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
            one = torch.ones(1, device=device)
            dist.all_reduce(one)
            out.update(seconds=round(time.perf_counter() - t0, 2), first_loss=losses[0], last_loss=losses[-1],
                       all_reduce_ok=float(one) == 1.0)
        finally:
            dist.destroy_process_group()
    except Exception as exc:  # noqa: BLE001 - reported in the table
        out["error"] = f"{type(exc).__name__}: {exc}"
    log(f"one-rank {backend}: {out}")
    return out


def goals(inference: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model: fast fp16 against the organisers' float32 run (speed-up and worst PSNR-RGB cost over the sets)."""
    by_model: dict[str, dict[str, dict[str, Any]]] = {}
    for r in inference:
        by_model.setdefault(r["model"], {})[r["path"]] = r
    out = []
    for model, rows in by_model.items():
        org, fp16 = rows.get(ORGANISERS), rows.get("fast:fp16")
        if org is None or fp16 is None or fp16.get("error") or not fp16.get("ms_per_image"):
            out.append({"model": model, "met": False, "why": "fast fp16 did not run"})
            continue
        speedup = org["ms_per_image"] / fp16["ms_per_image"]
        cost = max(org["psnr_rgb"][s] - fp16["psnr_rgb"][s] for s in org["psnr_rgb"])
        out.append({"model": model, "speedup": speedup, "worst_cost_rgb_db": cost,
                    "met": speedup >= FP16_SPEEDUP_GOAL and cost <= FP16_COST_GOAL_DB})
    return out


def render(report: dict[str, Any]) -> str:
    """The RESULTS.md table of a report."""
    sets = report["sets"]
    head = (f"Machine: {report['machine']}; {report['date']}; torch {report['torch']}"
            + ("; **dry run on CPU (tiny crops: no number here is a measurement)**" if report["dry_run"] else "")
            + f". Images per set: {', '.join(f'{k} {v}' for k, v in report['images'].items())}"
            + (f" (LR crops {report['crop']}x{report['crop']})" if report["crop"] else "") + ".")
    lines = [head, "",
             "| model | path | ms / image (mean) | speed-up vs organisers | "
             + " | ".join(f"{s} PSNR RGB (cost)" for s in sets) + " | peak MiB |",
             "|---|---|---:|---:|" + "---:|" * len(sets) + "---:|"]
    org_by_model = {r["model"]: r for r in report["inference"] if r["path"] == ORGANISERS}
    for r in report["inference"]:
        org = org_by_model.get(r["model"])
        if r.get("error"):
            lines.append(f"| {r['model']} | {r['path']} | not run: {r['error']} | - | " + " | ".join("-" for _ in sets)
                         + " | - |")
            continue
        speedup = f"{org['ms_per_image'] / r['ms_per_image']:.2f}x" if org else "-"
        cells = []
        for s in sets:
            cost = org["psnr_rgb"][s] - r["psnr_rgb"][s] if org else float("nan")
            cells.append(f"{r['psnr_rgb'][s]:.4f} ({cost:+.4f})")
        peak = "-" if r["peak_memory_mib"] is None else f"{r['peak_memory_mib']:.0f}"
        lines.append(f"| {r['model']} | {r['path']} | {r['ms_per_image']:.2f} | {speedup} | " + " | ".join(cells)
                     + f" | {peak} |")
    lines.append("")
    for g in report["goals"]:
        if "speedup" in g:
            lines.append(f"- {g['model']}: fast fp16 {g['speedup']:.2f}x the organisers' fp32 (goal >= "
                         f"{FP16_SPEEDUP_GOAL:g}x), worst PSNR cost {g['worst_cost_rgb_db']:+.4f} dB (goal <= "
                         f"{FP16_COST_GOAL_DB:g}): {'meets' if g['met'] else '**misses**'}")
        else:
            lines.append(f"- {g['model']}: {g['why']}")
    for t in report["training"]:
        what = t.get("error") or (f"{t['steps']} steps in {t['seconds']:.1f} s, Set5 "
                                  + ", ".join(f"{k} {v:.3f}" for k, v in t.get("val", {}).items()))
        lines.append(f"- smoke recipe, AMP {t['precision']}{'' if t['autocast'] else ' (CPU: float32)'}: {what}")
    d = report["ddp"]
    what = d.get("error") or (f"{d['steps']} steps in {d['seconds']:.1f} s, loss {d['first_loss']:.4f} -> "
                              f"{d['last_loss']:.4f}, all-reduce {'ok' if d['all_reduce_ok'] else 'WRONG'}")
    lines.append(f"- one-rank DDP over {d['backend']}: {what}")
    lines.append(f"\nTook {report['seconds']:.0f} s.")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
