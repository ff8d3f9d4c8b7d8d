"""int8: what quantization-aware fine-tuning recovers, measured through ``effsr train`` and the int8 file it writes.

One ``effsr train`` run of a single ``quant: int8`` stage from the official weights (``init: official``), on the HR
images of a training folder (B100 by default: the only training-sized folder in the assets; its LR_bicubic/X4
images where present, else LR made on the fly by the MATLAB bicubic resize), then the int8 file
``<run>/final_int8.safetensors`` is loaded as ``effsr upscale --weights`` loads it and scored against the float32
eager forward of the official weights with the challenge protocol (``effsr.evaluate.quality_cost``). The sets scored
should not include the training folder: by default Set5 and Set14. Quality only, no timing (PSNR is deterministic;
the run's wall time is reported, nothing more).

    EFFSR_WEIGHTS_DIR=../shared/weights EFFSR_CPU_FLAGS="avx2 fma avx512_vnni" \\
        .venv/bin/python benchmarks/qat_run.py --model rlfn --policy none --iters 400

(``$EFFSR_CPU_FLAGS`` only where the CPU lacks VNNI, as on the AVX2 host: int8 is refused there otherwise.)
Writes benchmarks/results/qat_<model>_<policy>[_kd]_<iters>.json (the run folder goes to /tmp). Not a test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def recipe_text(args: argparse.Namespace, train_hr: Path, train_lr: Path | None) -> str:
    lr_part = f", lr: '{train_lr}'" if train_lr is not None else ""
    # --distill: the float32 official model is the teacher and the only target (the cost is measured against it).
    teacher = f"teacher: {args.model}\n" if args.distill else ""
    weights = ", pixel_weight: 0, distill_weight: 1" if args.distill else ""
    return (
        f"name: qat_{args.model}\nmodel: {args.model}\ndevice: cpu\nthreads: {args.threads}\nworkers: 0\n{teacher}"
        f"cache_images: 200\nseed: 0\nlog_every: 25\nckpt_every: {args.iters}\n"
        f"train_data: [{{name: train, hr: '{train_hr}'{lr_part}}}]\n"
        "stages:\n"
        f"  - {{name: qat, iters: {args.iters}, patch_size: {args.patch}, batch_size: {args.batch}, "
        f"loss: {args.loss}, lr: {args.lr}, schedule: cosine, eta_min: {args.lr / 10}, init: official, "
        f"ema_decay: 0, quant: int8, quant_policy: {args.policy}{weights}}}\n"
    )


def main(argv: list[str] | None = None) -> int:
    from effsr.assets import data_root
    from effsr.deploy.quantize import load_int8
    from effsr.evaluate import fp32_reference, quality_cost
    from effsr.models import load_model
    from effsr.train.loop import train
    from effsr.train.recipe import load_recipe_text

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="rlfn")
    ap.add_argument("--policy", default="none", choices=("stored", "none", "search"))
    ap.add_argument("--iters", type=int, default=400)
    ap.add_argument("--patch", type=int, default=128, help="HR patch side")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--loss", default="l1")
    ap.add_argument("--distill", action="store_true", help="train towards the float32 model's output, not HR")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train", default="B100", help="a folder under the data root with HR/ (and LR_bicubic/X4/)")
    ap.add_argument("--sets", default="set5,set14")
    ap.add_argument("--run-dir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    root = data_root() / args.train
    train_hr = root / "HR"
    train_lr = root / "LR_bicubic" / "X4"
    tag = f"{args.model}_{args.policy}{'_kd' if args.distill else ''}_{args.iters}"
    run_dir = args.run_dir or Path("/tmp") / f"effsr_qat_{tag}"
    recipe = load_recipe_text(recipe_text(args, train_hr, train_lr if train_lr.is_dir() else None))
    t0 = time.perf_counter()
    result = train(recipe, run_dir, progress=False)
    train_s = time.perf_counter() - t0
    assert result.int8 is not None

    model = load_model(args.model)
    sets = [s for s in args.sets.split(",") if s]
    ref = fp32_reference(model, sets, model_name=args.model)
    engine = load_int8(result.int8)
    costs = quality_cost(model, sets, backend="fast", precision="int8", model_name=args.model, reference=ref,
                         engine=engine)
    row = {
        "model": args.model, "policy": args.policy, "float_nodes": len(engine.float_nodes),
        "layers": engine.layers, "iters": args.iters, "patch": args.patch, "batch": args.batch, "lr": args.lr,
        "loss": args.loss, "distill_from_fp32": args.distill,
        "train_data": f"{args.train} HR" + (" + LR_bicubic/X4" if train_lr.is_dir() else " (LR by MATLAB bicubic)"),
        "threads": args.threads,
        "train_wall_s_not_a_timing": round(train_s, 1), "int8_file": str(result.int8),
        "sets": {c.dataset: {"fp32_psnr_rgb": c.psnr_rgb_fp32, "int8_psnr_rgb": c.psnr_rgb,
                             "cost_rgb_db": c.cost_rgb_db, "cost_y_db": c.cost_y_db} for c in costs},
    }
    for c in costs:
        print(f"{args.model} {c.dataset}: QAT int8 cost RGB {c.cost_rgb_db:.4f} dB, Y {c.cost_y_db:.4f} dB", flush=True)
    out = args.json or HERE / "results" / f"qat_{tag}.json"
    out.write_text(json.dumps(row, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
