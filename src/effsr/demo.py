"""``make demo``: the challenge's picture in one run, with pictures to look at.

1. Upscale a sample image with a seed model; write the result and a side-by-side crop (bicubic | model | ground
   truth, each labelled with its PSNR) and say where they are.
2. Print the quality leaderboard on Set5 (official protocol, every zoo model).
3. Print the complexity table of the zoo (NTIRE counters at LR 256x256) with the latest NTIRE score
   (``effsr.ntire``: 2026, against SPAN), labelled as a CPU-runtime score when the runtimes come from a CPU (the
   challenge ranks GPU runtimes).
4. Draw quality (Set5 PSNR) against cost (MACs, marker area ~ parameters) from steps 2 and 3.

Offline when the weights mirror is present (``EFFSR_WEIGHTS_DIR`` or ``$EFFSR_ASSETS/weights``). Everything goes
to ``demo_out/`` (or the folder given), replacing the previous run's files there.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

SAMPLE = ("Set14", "comic")  # a small textured image: the SR is worth a look
DEMO_MODEL = "agdn"
CROP = 96  # HR pixels of the side-by-side crop, shown enlarged x2 (nearest neighbour, so pixels stay visible)


def _detail_crop(hr: np.ndarray, size: int = CROP) -> tuple[int, int]:
    """Top-left corner of the ``size`` square with the most detail (largest gradient energy; on a fixed grid, so
    the choice is deterministic)."""
    g = hr.astype(np.float64).mean(axis=2)
    energy = np.abs(np.diff(g, axis=0))[:, :-1] + np.abs(np.diff(g, axis=1))[:-1, :]
    h, w = energy.shape
    step = max(1, size // 4)
    best, corner = -1.0, (0, 0)
    for y in range(0, max(1, h - size), step):
        for x in range(0, max(1, w - size), step):
            e = float(energy[y : y + size, x : x + size].sum())
            if e > best:
                best, corner = e, (y, x)
    return corner


def side_by_side(panels: list[tuple[str, np.ndarray]], corner: tuple[int, int], path: Path,
                 note: str = "") -> Path:
    """Crops of HxWx3 uint8 images at ``corner``, enlarged x2, next to each other with a label above each."""
    from PIL import Image, ImageDraw, ImageFont

    from .files import atomic_path

    y, x = corner
    zoom, gap, band, foot = 2, 8, 28, 22 if note else 0
    tile = CROP * zoom
    canvas = Image.new("RGB", (len(panels) * tile + (len(panels) + 1) * gap, band + tile + gap + foot), "white")
    draw = ImageDraw.Draw(canvas)
    try:
        font = ImageFont.load_default(size=15)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        font = ImageFont.load_default()
    for i, (label, img) in enumerate(panels):
        crop = Image.fromarray(np.ascontiguousarray(img[y : y + CROP, x : x + CROP]))
        left = gap + i * (tile + gap)
        canvas.paste(crop.resize((tile, tile), Image.Resampling.NEAREST), (left, band))
        draw.text((left, 6), label, fill="black", font=font)
    if note:
        draw.text((gap, band + tile + 4), note, fill="dimgray", font=font)
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return path


def _upscale_sample(out_dir: Path) -> list[Path]:
    import effsr
    from effsr import metrics
    from effsr.assets import data_root
    from effsr.data.degrade import modcrop
    from effsr.imageio import read_rgb_uint8, tensor_to_uint8, uint8_to_tensor, write_rgb_uint8
    from effsr.infer import upscale
    from effsr.resize import imresize

    folder = data_root() / SAMPLE[0]
    lr_path = folder / "LR_bicubic" / "X4" / f"{SAMPLE[1]}.png"
    lr = read_rgb_uint8(lr_path)
    hr = modcrop(read_rgb_uint8(folder / "HR" / f"{SAMPLE[1]}.png"), 4)
    model = effsr.load(DEMO_MODEL)
    sr = tensor_to_uint8(upscale(model, uint8_to_tensor(lr)))
    out = write_rgb_uint8(sr, out_dir / f"{SAMPLE[1]}_x4_{DEMO_MODEL}.png")
    bicubic = imresize(lr, 4)  # MATLAB bicubic x4: the baseline every SR model is measured against
    psnr = {name: metrics.psnr_rgb(img, hr, border=4) for name, img in (("bicubic", bicubic), (DEMO_MODEL, sr))}
    picture = side_by_side(
        [(f"bicubic  {psnr['bicubic']:.2f} dB", bicubic), (f"{DEMO_MODEL}  {psnr[DEMO_MODEL]:.2f} dB", sr),
         ("ground truth (HR)", hr)],
        _detail_crop(hr), out_dir / f"{SAMPLE[1]}_side_by_side.png",
        note="PSNR RGB of the whole image (NTIRE protocol, 4-px border); crop enlarged 2x",
    )
    h, w = lr.shape[:2]
    print(f"[1/4] upscaled {lr_path} ({w}x{h}) with {DEMO_MODEL} -> {out.resolve()}", flush=True)
    print(f"      side by side (bicubic {psnr['bicubic']:.2f} dB | {DEMO_MODEL} {psnr[DEMO_MODEL]:.2f} dB | "
          f"ground truth) -> {picture.resolve()}", flush=True)
    return [out, picture]


def _leaderboard() -> dict[str, float]:
    import effsr
    from effsr.evaluate import evaluate, find_dataset, markdown_summary
    from effsr.models import get_spec, list_models

    dataset = find_dataset("set5")
    names = [n for n in list_models() if get_spec(n).weights]  # the seed models, NTIRE 2022-2026 entries, teachers
    results = [evaluate(effsr.load(name), dataset, model_name=name) for name in names]
    results.sort(key=lambda r: r.mean["psnr_rgb"], reverse=True)
    print("\n[2/4] Set5 x4 leaderboard (official NTIRE protocol; PSNR RGB is the challenge metric)\n", flush=True)
    print(markdown_summary(results), flush=True)
    return {r.model: r.mean["psnr_rgb"] for r in results}


def _complexity(out_dir: Path) -> Path:
    from effsr.cli import app
    from effsr.ntire import rules

    r = rules()
    title = (f"Complexity at LR 256x256 (NTIRE counters; runtime on this CPU, 5 runs after 2 warm-ups) with the NTIRE "
             f"{r.year} score against {r.baseline.model.upper()}")
    print(f"\n[3/4] {title}\n", flush=True)
    path = out_dir / "complexity.json"
    code = app(["profile", "--all-models", "--runs", "5", "--warmup", "2", "--json", str(path), "--overwrite"],
               standalone_mode=False)
    if code:
        raise SystemExit(code)
    return path


def _plot(out_dir: Path, psnr: dict[str, float], complexity: Path) -> Path | None:
    from effsr.evaluate import ModelCost, plot_quality_vs_cost

    rows = {r["model"]: r for r in json.loads(complexity.read_text())}
    points = [(m, "set5", v, ModelCost(rows[m]["params"], rows[m]["macs_fvcore"], tuple(rows[m]["lr_size"]),
                                       "fvcore, the NTIRE 2024-2026 count")) for m, v in psnr.items() if m in rows]
    try:
        path = plot_quality_vs_cost(points, out_dir / "quality_vs_cost.png")
    except ImportError:
        print("\n[4/4] quality vs cost: skipped (needs matplotlib: pip install 'effsr[plot]')", flush=True)
        return None
    print(f"\n[4/4] quality vs cost (Set5 PSNR RGB vs fvcore MACs at LR 256x256) -> {path.resolve()}", flush=True)
    return path


def main(argv: list[str] | None = None) -> int:
    out_dir = Path(argv[0] if argv else "demo_out")
    # Rich wraps tables to 80 columns when stdout is not a terminal (make, CI logs): give the tables room.
    os.environ.setdefault("COLUMNS", "200")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    written = _upscale_sample(out_dir)
    psnr = _leaderboard()
    complexity = _complexity(out_dir)
    plot = _plot(out_dir, psnr, complexity)
    written += [complexity] + ([plot] if plot is not None else [])
    print(f"\nDone. In {out_dir.resolve()}/: " + ", ".join(p.name for p in written), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
