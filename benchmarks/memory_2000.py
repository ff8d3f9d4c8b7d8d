"""Peak memory of ``effsr upscale`` on a 2000x2000 image x4 (the goal: under 3 GB with any seed model).

Each measurement runs the real command line, ``python -m effsr upscale IMG -o DIR --model NAME``, in its own process
and reads that process's peak resident set size from ``os.wait4`` (``ru_maxrss``, the kernel's VmHWM at exit). A
second process that only imports effsr and loads the model gives the baseline (Python, PyTorch, oneDNN). Automatic
tiling (default budget ``effsr.infer.DEFAULT_MAX_MEMORY``) is what keeps the peak bounded; the tile size it picks is
printed too. The input is a deterministic synthetic photo-like image (smooth gradients plus noise), written as PNG.

    EFFSR_WEIGHTS_DIR=../shared/weights .venv/bin/python benchmarks/memory_2000.py --models rlfn --threads 2
    ... --models all --update-results    # rewrite the "Memory" section of benchmarks/RESULTS.md

Not part of the test suite (minutes per model on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
LIMIT_GB = 3.0
MARKER = "<!-- end of the table written by benchmarks/memory_2000.py -->"


def make_input(path: Path, size: int) -> None:
    """A size x size RGB PNG: smooth colour gradients plus seeded noise (compressible, not flat)."""
    import cv2

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = np.stack([128 + 100 * np.sin(6 * x + 2 * y), 128 + 100 * np.cos(5 * y - 3 * x), 255 * x * y], axis=-1)
    img += rng.normal(0, 12, img.shape).astype(np.float32)
    cv2.imwrite(str(path), np.clip(img, 0, 255).astype(np.uint8)[..., ::-1])


def run_measured(cmd: list[str], env: dict[str, str]) -> tuple[int, float, float]:
    """Run ``cmd``; return (exit status, peak RSS in GB, wall seconds)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        print(err[-2000:], file=sys.stderr)
    return proc.returncode, usage.ru_maxrss * 1024 / 1e9, wall  # ru_maxrss is in KiB on Linux


def planned_tile(name: str, size: int, threads: int, backend: str) -> int:
    """The tile edge automatic tiling picks for this model, backend and image size (same code path as the CLI)."""
    import torch

    import effsr
    from effsr.deploy import prepare
    from effsr.infer import auto_tile_size

    model = prepare(effsr.load(name), backend, threads=threads)
    return auto_tile_size(model, torch.empty(1, 3, size, size))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="rlfn", help="comma-separated names, or 'all'")
    ap.add_argument("--size", type=int, default=2000, help="LR edge in pixels")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-memory", default=None, help="passed to effsr upscale (default: the library default)")
    ap.add_argument("--backend", default="eager", help="passed to effsr upscale (eager, fast, onnxruntime)")
    ap.add_argument("--update-results", action="store_true", help="rewrite the Memory section of RESULTS.md")
    args = ap.parse_args()

    import torch

    import effsr
    from effsr.infer import DEFAULT_MAX_MEMORY
    from effsr.runtime import cpu_name

    names = effsr.list_models() if args.models == "all" else args.models.split(",")
    env = dict(os.environ)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        img = Path(tmp) / "big.png"
        make_input(img, args.size)
        for name in names:
            base_cmd = [sys.executable, "-c", f"import torch, effsr; torch.set_num_threads({args.threads}); "
                        f"effsr.load({name!r})"]
            _, base_gb, _ = run_measured(base_cmd, env)
            cmd = [sys.executable, "-m", "effsr", "upscale", str(img), "-o", str(Path(tmp) / "out"), "--model", name,
                   "--threads", str(args.threads), "--backend", args.backend, "--overwrite"]
            if args.max_memory:
                cmd += ["--max-memory", args.max_memory]
            rc, peak_gb, wall = run_measured(cmd, env)
            from PIL import Image

            with Image.open(Path(tmp) / "out" / "big.png") as out:
                out_size = out.size
            tile = planned_tile(name, args.size, args.threads, args.backend)
            ok = rc == 0 and out_size == (4 * args.size, 4 * args.size) and peak_gb < LIMIT_GB
            rows.append((name, tile, base_gb, peak_gb, wall, out_size, ok))
            print(f"{name}: tile {tile}, baseline {base_gb:.2f} GB, peak {peak_gb:.2f} GB, {wall:.0f} s, "
                  f"output {out_size[0]}x{out_size[1]}, {'OK' if ok else 'FAIL'}", flush=True)

    budget = args.max_memory or f"{DEFAULT_MAX_MEMORY / 2**30:.1f} GiB (default)"
    lines = [
        "## Memory",
        "",
        f"`effsr upscale` of one {args.size}x{args.size} RGB PNG x4 (output {4 * args.size}x{4 * args.size}), "
        f"measured by `benchmarks/memory_2000.py`: peak resident set size of the whole CLI process (`ru_maxrss` from "
        f"`os.wait4`), automatic tiling with `--max-memory` {budget}, backend {args.backend}, "
        f"{args.threads} thread(s). "
        "Baseline: a process that only imports effsr and loads the model. Limit (the goal): 3 GB.",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__}, Python {platform.python_version()}.",
        "",
        "| model | auto tile (LR px) | baseline (GB) | peak (GB) | wall (s) | under 3 GB |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {n} | {t} | {b:.2f} | {p:.2f} | {w:.0f} | {'yes' if ok else 'NO'} |" for n, t, b, p, w, _, ok in rows]
    section = "\n".join(lines) + "\n" + MARKER + "\n"
    print()
    print(section)
    if args.update_results:
        text = RESULTS.read_text() if RESULTS.exists() else "# effsr benchmarks\n\n"
        # Replace the generated part only (up to the marker), so notes written below it survive.
        pattern = re.compile(r"^## Memory\n.*?" + re.escape(MARKER) + r"\n", re.S | re.M)
        text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section
        RESULTS.write_text(text)
        print(f"updated {RESULTS}")
    if not all(r[-1] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
