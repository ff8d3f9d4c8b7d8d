"""``effsr upscale``: upscale image files and folders with a zoo model.

Every file is handled or reported: each problem is printed with the file it concerns, the exit status is 1 when any
file failed, and ``--continue-on-error`` processes the other files instead of stopping at the first problem.
Problems found before any work (missing paths, two inputs that would write the same output, an output that exists)
stop the run before the model is loaded unless ``--continue-on-error`` is given. Outputs are written atomically
(temporary file + rename), so an interrupted run never leaves a half-written PNG, and an existing file (an input
above all) is never replaced without ``--overwrite``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from . import app


class BackendChoice(str, Enum):
    eager = "eager"
    fast = "fast"
    onnxruntime = "onnxruntime"


class PrecisionChoice(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"


@dataclass
class _Job:
    src: Path
    dst: Path | None = None
    error: str | None = None


def _image_extensions() -> tuple[str, ...]:
    from ..imageio import IMAGE_EXTENSIONS

    return IMAGE_EXTENSIONS


def collect_inputs(inputs: list[Path]) -> list[_Job]:
    """One job per input file: files as given (any extension), folders listed (image extensions, no hidden files,
    not recursive, sorted). Missing or unreadable paths become jobs that carry their error."""
    exts = _image_extensions()
    jobs: list[_Job] = []
    seen: set[str] = set()

    def add(p: Path, error: str | None = None) -> None:
        key = os.path.realpath(p)
        if key not in seen:
            seen.add(key)
            jobs.append(_Job(p, error=error))

    for p in inputs:
        if p.is_dir():
            try:
                entries = sorted(q for q in p.iterdir() if q.suffix.lower() in exts and not q.name.startswith("."))
            except OSError as e:
                add(p, f"{p}: cannot list the folder ({e.strerror or e})")
                continue
            for q in entries:
                if q.is_file():
                    add(q)
        elif p.exists():
            add(p)
        else:
            add(p, f"{p}: no such file or folder")
    return jobs


def plan_outputs(jobs: list[_Job], outdir: Path, overwrite: bool) -> None:
    """Give each job its output ``OUTDIR/<stem>.png``; mark collisions and existing outputs as errors."""
    inputs = {os.path.realpath(j.src) for j in jobs if j.error is None}
    taken: dict[Path, Path] = {}
    for job in jobs:
        if job.error is not None:
            continue
        dst = outdir / (job.src.stem + ".png")
        if dst in taken:
            job.error = f"{job.src}: its output {dst} would also be written for {taken[dst]}; rename one of them"
            continue
        taken[dst] = job.src
        job.dst = dst
        if dst.exists() and not overwrite:
            what = "is an input file" if os.path.realpath(dst) in inputs else "exists"
            job.error = f"{job.src}: output {dst} {what}; pass --overwrite to replace it"


@app.command("upscale")
def upscale_cmd(
    inputs: list[Path] = typer.Argument(..., help="Image files and/or folders (folders: their image files)."),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder (PNG files, same base names)."),
    model: str | None = typer.Option(None, "--model", "-m", help="Model name (see `effsr zoo`)."),
    weights: Path | None = typer.Option(None, "--weights", "-w", help="Weights file (.pth or .safetensors)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    tile: int | None = typer.Option(
        None, "--tile", min=0, help="LR tile edge in pixels; 0 = never tile; default: automatic from --max-memory."
    ),
    tile_overlap: int | None = typer.Option(
        None, "--tile-overlap", min=0, help="LR pixels shared by neighbouring tiles (default 32, at most half a tile)."
    ),
    max_memory: str | None = typer.Option(
        None, "--max-memory", help="Working-set budget for automatic tiling, e.g. 2G, 800MiB (default 1.5 GiB)."
    ),
    backend: BackendChoice = typer.Option(BackendChoice.fast, "--backend", help="Inference engine."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads (default: PyTorch's)."),
    precision: PrecisionChoice = typer.Option(
        PrecisionChoice.fp32, "--precision",
        help="Compute precision: fp16/bf16 for CUDA (bf16 also on CPUs with AVX-512 BF16); docs/deploy.md states "
             "their tolerances.",
    ),
    compile_graph: bool = typer.Option(
        False, "--compile", help="torch.compile the fast path (slow start: compiles once per image size)."
    ),
    batch_size: int = typer.Option(
        1, "--batch-size", min=1, help="Run up to N same-size RGB images per forward (the budget covers the batch)."
    ),
    continue_on_error: bool = typer.Option(
        False, "--continue-on-error", help="Report a failing file and go on with the others."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files (inputs included)."),
) -> None:
    """Upscale images by the model's scale and write PNGs with the same base names (16-bit stays 16-bit)."""
    console = Console(stderr=True, soft_wrap=True, highlight=False)

    def say(msg: str, style: str | None = None) -> None:
        console.print(msg, style=style, markup=False)

    if model is None and weights is None:
        raise typer.BadParameter("give --model NAME and/or --weights FILE")
    from ..infer import DEFAULT_TILE_OVERLAP, parse_memory_size

    try:
        budget = parse_memory_size(max_memory)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--max-memory") from None
    overlap = DEFAULT_TILE_OVERLAP if tile_overlap is None else tile_overlap
    if tile and 2 * overlap > tile:
        raise typer.BadParameter(f"--tile-overlap {overlap} must be at most half of --tile {tile}")
    if output.exists() and not output.is_dir():
        raise typer.BadParameter(f"{output} exists and is not a folder", param_hint="-o/--output")

    jobs = collect_inputs(inputs)
    if not jobs:
        say("error: no input images found", "red")
        raise typer.Exit(1)
    plan_outputs(jobs, output, overwrite)
    early = [j for j in jobs if j.error is not None]
    for j in early:
        say(f"error: {j.error}", "red")
    if early and not continue_on_error:
        say(f"stopped before processing: {len(early)} problem(s); fix them or pass --continue-on-error", "red")
        raise typer.Exit(1)
    todo = [j for j in jobs if j.error is None]
    if not todo:
        say("error: nothing to upscale", "red")
        raise typer.Exit(1)

    import effsr

    from ..deploy import prepare
    from ..imageio import Image, ImageReadError, read_image, write_image
    from ..infer import upscale_image, upscale_images

    try:
        net = effsr.load(model, weights, device="cpu")
        net = prepare(net, backend.value, device=device, threads=threads, precision=precision.value,
                      compile=compile_graph)
    except (NotImplementedError, ValueError, KeyError, OSError, RuntimeError) as e:
        say(f"error: cannot set up the model: {e}", "red")
        raise typer.Exit(2) from None
    output.mkdir(parents=True, exist_ok=True)

    failed = len(early)
    written = 0
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        files_task = progress.add_task("upscaling", total=len(todo))
        tiles_task = progress.add_task("tiles", total=1, visible=False)

        def on_tile(done: int, total: int) -> None:
            progress.update(tiles_task, completed=done, total=total, visible=total > 1)

        def run(batch: list[tuple[_Job, Image]]) -> list[Image | None]:
            """The upscaled images of ``batch`` (None where a job failed, with its error set). When the joint
            forward of a batch fails (out of memory, say), each image is tried alone."""
            kw = {"tile": tile, "tile_overlap": overlap, "max_memory": budget, "on_tile": on_tile}
            if len(batch) > 1:
                try:
                    return list(upscale_images(net, [img for _, img in batch], **kw))
                except (RuntimeError, ValueError, MemoryError):
                    pass
            out: list[Image | None] = []
            for job, img in batch:
                try:
                    out.append(upscale_image(net, img, **kw))
                except (RuntimeError, OSError, ValueError, MemoryError) as e:
                    job.error = f"{job.src}: {type(e).__name__}: {e}"
                    out.append(None)
            return out

        def finish(job: _Job) -> None:
            nonlocal failed, written
            progress.update(tiles_task, visible=False)
            progress.advance(files_task)
            if job.error is not None:
                failed += 1
                say(f"error: {job.error}", "red")
                if not continue_on_error:
                    say("stopped at the first error; pass --continue-on-error to process the other files", "red")
                    raise typer.Exit(1)
            else:
                written += 1
                say(f"{job.src} -> {job.dst}")

        for start in range(0, len(todo), batch_size):
            batch: list[tuple[_Job, Image]] = []
            for job in todo[start : start + batch_size]:
                progress.update(files_task, description=f"reading {job.src.name}")
                try:
                    batch.append((job, read_image(job.src).to(device)))
                except ImageReadError as e:
                    job.error = str(e)
                except (RuntimeError, OSError, ValueError, MemoryError) as e:
                    job.error = f"{job.src}: {type(e).__name__}: {e}"
                if job.error is not None:
                    finish(job)
            if not batch:
                continue
            names = ", ".join(job.src.name for job, _ in batch)
            progress.update(files_task, description=f"upscaling {names}")
            results = run(batch)
            for (job, _img), sr in zip(batch, results, strict=True):
                if sr is not None and job.error is None:
                    assert job.dst is not None
                    try:
                        write_image(sr, job.dst)
                    except (RuntimeError, OSError, ValueError, MemoryError) as e:
                        job.error = f"{job.src}: {type(e).__name__}: {e}"
                finish(job)
            del batch, results
        progress.update(files_task, description="done")
    say(f"{written} image(s) written to {output}" + (f", {failed} failed" if failed else ""),
        "red" if failed else "green")
    if failed:
        raise typer.Exit(1)
