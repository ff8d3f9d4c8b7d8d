"""``make demo``: the challenge's picture in one run.

1. Upscale a sample image with a seed model and say where the result is.
2. Print the quality leaderboard on Set5 (official protocol, every zoo model).
3. Print the complexity table of the zoo (NTIRE counters at LR 256x256) with the latest NTIRE score
   (``effsr.ntire``: 2026, against SPAN).

Offline when the weights mirror is present (``EFFSR_WEIGHTS_DIR`` or ``$EFFSR_ASSETS/weights``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

SAMPLE = ("Set14", "comic")  # a small textured image: the SR is worth a look
DEMO_MODEL = "agdn"


def _upscale_sample(out_dir: Path) -> Path:
    import effsr
    from effsr.assets import data_root
    from effsr.imageio import read_rgb_uint8, tensor_to_uint8, uint8_to_tensor, write_rgb_uint8
    from effsr.infer import upscale

    lr_path = data_root() / SAMPLE[0] / "LR_bicubic" / "X4" / f"{SAMPLE[1]}.png"
    model = effsr.load(DEMO_MODEL)
    sr = tensor_to_uint8(upscale(model, uint8_to_tensor(read_rgb_uint8(lr_path))))
    out = write_rgb_uint8(sr, out_dir / f"{SAMPLE[1]}_x4_{DEMO_MODEL}.png")
    h, w = sr.shape[0] // 4, sr.shape[1] // 4
    print(f"[1/3] upscaled {lr_path} ({w}x{h}) with {DEMO_MODEL} -> {out.resolve()}", flush=True)
    return out


def _leaderboard() -> None:
    import effsr
    from effsr.evaluate import evaluate, find_dataset, markdown_summary
    from effsr.models import get_spec, list_models

    dataset = find_dataset("set5")
    names = [n for n in list_models() if get_spec(n).weights]  # the seed models, NTIRE 2022-2026 entries, teachers
    results = [evaluate(effsr.load(name), dataset, model_name=name) for name in names]
    results.sort(key=lambda r: r.mean["psnr_rgb"], reverse=True)
    print("\n[2/3] Set5 x4 leaderboard (official NTIRE protocol; PSNR RGB is the challenge metric)\n", flush=True)
    print(markdown_summary(results), flush=True)


def _complexity() -> None:
    from effsr.cli import app
    from effsr.ntire import rules

    r = rules()
    title = (f"Complexity at LR 256x256 (NTIRE counters; runtime on this CPU, 5 runs after 2 warm-ups) with the NTIRE "
             f"{r.year} score against {r.baseline.model.upper()}")
    print(f"\n[3/3] {title}\n", flush=True)
    app(["profile", "--all-models", "--runs", "5", "--warmup", "2"], standalone_mode=False)


def main(argv: list[str] | None = None) -> int:
    out_dir = Path(argv[0] if argv else "demo_out")
    # Rich wraps tables to 80 columns when stdout is not a terminal (make, CI logs): give the tables room.
    os.environ.setdefault("COLUMNS", "200")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    _upscale_sample(out_dir)
    _leaderboard()
    _complexity()
    print(f"\nDone. The upscaled sample is in {out_dir.resolve()}/", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
