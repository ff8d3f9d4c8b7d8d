"""Fine-tune each seed model's official weights briefly with its recipe's last stage; Set5 PSNR must hold.

Checks that the data pipeline matches what the teams trained on: if the LR made on the fly (or
read from a folder), the crops, the loss and the EMA matched the teams' training, a few iterations at a small
rate leave the official weights where they are; a mismatch (a shifted crop, a different downscaler, a range
error) pulls Set5 PSNR down within tens of iterations.

    python benchmarks/finetune_check.py                       # all seed models, 100 iterations each
    python benchmarks/finetune_check.py --models mdrn msn --iters 100 --batch 2 --patch 128 --lr 1e-5

Each model runs its config's last stage (loss, distillation, EMA) from ``init: official`` on B100 + Set14 HR with
the LR made on the fly by the MATLAB bicubic resize (the data available here), at the given batch, patch and a
constant small rate, and reports Set5 PSNR (RGB and Y) of the official weights and of the fine-tuned EMA weights
(deploy form). Not part of the test suite: minutes per model on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

import effsr
from effsr.assets import data_root
from effsr.train.loop import load_val_images, train, validate
from effsr.train.recipe import parse_recipe

ROOT = Path(__file__).resolve().parents[1]
# Recipe file -> (registry model, constructor overrides needed to hold the official weights).
SEED = {
    "agdn": {},
    "lsanet": {"deploy": True},  # the official files are the merged form (specs/README.md §5)
    "ifadnet": {"deploy": True},
    "mdrn": {},  # configs/mdrn.yaml trains mdrn_s
    "msn": {},
    "rlfn": {},
}


def check(name: str, iters: int, batch: int, patch: int, lr: float, threads: int, ema: bool = True) -> dict:
    raw = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())
    last = dict(raw["stages"][-1])
    for key in ("train_data", "val_data"):  # the check's own data below replaces the stage's
        last.pop(key, None)
    if raw.get("teacher") == "safmn_l":  # SAFMN-L's weights are not available here: MDRN x4 stands in
        raw.update(teacher="mdrn", teacher_args={"scale": 4})
    last.update(iters=iters, batch_size=batch, patch_size=patch, lr=lr, schedule="constant", milestones=[],
                init="official", warmup_iters=0)
    if not ema:
        last["ema_decay"] = 0.0  # score the raw weights: the stricter check
    data = data_root()
    raw.update(
        name=f"finetune_{name}",
        model_args={**raw.get("model_args", {}), **SEED[name]},
        device="cpu",
        threads=threads,
        workers=1,
        cache_images=128,
        train_data=[{"hr": str(data / "B100" / "HR")}, {"hr": str(data / "Set14" / "HR")}],
        val_data=str(data / "Set5"),
        val_every=0,
        ckpt_every=max(iters, 1),
        log_every=10,
        stages=[last],
    )
    recipe = parse_recipe(raw, source=f"configs/{name}.yaml (last stage)")
    cpu = torch.device("cpu")
    images = load_val_images(recipe.val_data, recipe.scale)
    official = effsr.load(recipe.model, **{k: v for k, v in recipe.model_args.items() if k != "deploy"})
    before = validate(official, images, recipe.scale, cpu)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = train(recipe, Path(tmp) / "run", progress=False)
        seconds = time.perf_counter() - t0
        tuned = effsr.load(str(res.final))
        after = validate(tuned, images, recipe.scale, cpu)
    return {
        "model": recipe.model,
        "stage": last.get("name", ""),
        "loss": last.get("loss", "l1"),
        "distill_weight": last.get("distill_weight", 0.0),
        "iters": iters,
        "ema_decay": last.get("ema_decay", 0.999),
        "batch": batch,
        "patch": patch,
        "lr": lr,
        "seconds": round(seconds, 1),
        "psnr_rgb_official": before["psnr_rgb"],
        "psnr_rgb_finetuned": after["psnr_rgb"],
        "psnr_y_official": before["psnr_y"],
        "psnr_y_finetuned": after["psnr_y"],
        "delta_psnr_rgb": after["psnr_rgb"] - before["psnr_rgb"],
        "delta_psnr_y": after["psnr_y"] - before["psnr_y"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="*", default=list(SEED), choices=list(SEED))
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--patch", type=int, default=128, help="HR patch side")
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tolerance", type=float, default=0.05, help="max |delta PSNR| in dB")
    ap.add_argument("--no-ema", action="store_true", help="fine-tune without EMA and score the raw weights")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    print("| model | stage (loss, KD weight) | Set5 PSNR-RGB official -> fine-tuned (dB) "
          "| PSNR-Y official -> fine-tuned | time (s) |")
    print("|---|---|---|---|---|")
    for name in args.models:
        r = check(name, args.iters, args.batch, args.patch, args.lr, args.threads, ema=not args.no_ema)
        rows.append(r)
        print(f"| {r['model']} | {r['stage']} ({r['loss']}, {r['distill_weight']}) | {r['psnr_rgb_official']:.4f} -> "
              f"{r['psnr_rgb_finetuned']:.4f} ({r['delta_psnr_rgb']:+.4f}) | {r['psnr_y_official']:.4f} -> "
              f"{r['psnr_y_finetuned']:.4f} ({r['delta_psnr_y']:+.4f}) | {r['seconds']} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    tol = args.tolerance
    bad = [r["model"] for r in rows if abs(r["delta_psnr_rgb"]) > tol or abs(r["delta_psnr_y"]) > tol]
    if bad:
        print(f"outside +-{args.tolerance} dB: {', '.join(bad)}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
