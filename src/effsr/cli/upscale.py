"""``effsr upscale``: upscale image files, folders and folder trees with a zoo model.

Where outputs go: ``-o FILE`` for one input file writes that file (the format follows its suffix); otherwise ``-o``
is a folder and each input becomes ``DIR/<stem><suffix>.<ext>`` (``--suffix``, ``--ext png|jpg|webp|tiff``, PNG by
default), with ``-r`` keeping each file's place in the tree below the folder it was found in.

Every file is handled or reported: each problem is printed with the file it concerns, the exit status is 1 when any
file failed, and ``--continue-on-error`` processes the other files instead of stopping at the first problem.
Problems found before any work (missing paths, two inputs that would write the same output, an output that exists)
stop the run before the model is loaded unless ``--continue-on-error`` is given. An existing output (an input above
all) is never replaced without ``--overwrite``; ``--skip-existing`` leaves it and reports the file as skipped, so an
interrupted run can be resumed. Outputs are written atomically (:mod:`effsr.files`), so an interrupted run never
leaves a half-written image. The last line counts the images written, skipped and failed, and the time taken.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ..errors import UsageError
from . import app, options


class ExtChoice(str, Enum):
    """Output formats (``effsr.imageio.OUTPUT_FORMATS``)."""

    png = "png"
    jpg = "jpg"
    webp = "webp"
    tiff = "tiff"


# Suffixes that make ``-o`` a file name (one input) rather than a folder, with the ``--ext`` each one means.
_FILE_SUFFIXES = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg", ".webp": "webp", ".tif": "tiff", ".tiff": "tiff",
                  ".bmp": "bmp"}
# Formats that hold 8-bit samples only: a 16-bit image is written with 8 bits when the user asks for one of them.
_EIGHT_BIT = (".jpg", ".jpeg", ".webp", ".bmp")


@dataclass
class _Job:
    src: Path
    rel: Path  # where the output goes below the output folder (the tree of -r), before --suffix / --ext
    dst: Path | None = None
    error: str | None = None
    skipped: bool = False


def collect_inputs(inputs: list[Path], *, recursive: bool = False, exclude: tuple[Path, ...] = ()) -> list[_Job]:
    """One job per input file: files as given (any extension), folders listed (image extensions, no hidden files,
    sorted; with ``recursive`` the whole tree, ``exclude`` left out). Missing or unreadable paths become jobs that
    carry their error."""
    from ..imageio import list_images

    jobs: list[_Job] = []
    seen: set[str] = set()

    def add(p: Path, rel: Path, error: str | None = None) -> None:
        key = os.path.realpath(p)
        if key not in seen:
            seen.add(key)
            jobs.append(_Job(p, rel, error=error))

    for p in inputs:
        if p.is_dir():
            try:
                entries = list_images(p, recursive=recursive, exclude=exclude)
            except OSError as e:
                add(p, Path(p.name), f"{p}: cannot list the folder ({e.strerror or e})")
                continue
            for q in entries:
                add(q, q.relative_to(p))
        elif p.exists():
            add(p, Path(p.name))
        else:
            add(p, Path(p.name), f"{p}: no such file or folder")
    return jobs


def plan_outputs(jobs: list[_Job], output: Path, *, single_file: bool, suffix: str, ext: str, overwrite: bool,
                 skip_existing: bool) -> None:
    """Give each job its output (``output`` itself for one file, else ``output/<rel dir>/<stem><suffix><ext>``);
    mark collisions and existing outputs as errors, or as skipped with ``skip_existing``."""
    inputs = {os.path.realpath(j.src) for j in jobs if j.error is None}
    taken: dict[Path, Path] = {}
    for job in jobs:
        if job.error is not None:
            continue
        dst = output if single_file else output / job.rel.parent / f"{job.rel.stem}{suffix}{ext}"
        if dst in taken:
            job.error = f"{job.src}: its output {dst} would also be written for {taken[dst]}; rename one of them"
            continue
        taken[dst] = job.src
        job.dst = dst
        if dst.exists():
            if skip_existing:
                job.skipped = True
            elif not overwrite:
                what = "is an input file" if os.path.realpath(dst) in inputs else "exists"
                job.error = f"{job.src}: output {dst} {what}; pass --overwrite to replace it (or --skip-existing)"


def _output_mode(inputs: list[Path], output: Path, ext: ExtChoice | None, suffix: str,
                 overwrite: bool) -> tuple[bool, str]:
    """(one output file?, output suffix) from ``-o``, ``--ext`` and ``--suffix``; contradictions are usage errors."""
    from ..imageio import OUTPUT_FORMATS

    as_file = output.suffix.lower() in _FILE_SUFFIXES and not output.is_dir()
    if not as_file:
        if output.exists() and not output.is_dir():
            raise typer.BadParameter(f"{output} exists and is not a folder", param_hint="'-o' / '--output'")
        return False, OUTPUT_FORMATS[(ext or ExtChoice.png).value]
    if len(inputs) != 1 or inputs[0].is_dir():
        raise UsageError(f"-o {output} names one file, but the inputs are a folder or several files; "
                         "give -o a folder name")
    if ext is not None and _FILE_SUFFIXES[output.suffix.lower()] != ext.value:
        raise UsageError(f"-o {output} and --ext {ext.value} disagree; the suffix of -o FILE sets the format")
    if suffix:
        raise UsageError("--suffix names the files written into an output folder; with -o FILE name the file itself")
    if not overwrite and inputs[0].exists() and output.exists() and os.path.samefile(inputs[0], output):
        raise UsageError(f"-o {output} is the input image itself (not a folder or a new file name); pass "
                         "--overwrite to replace the input with its upscaled image, or choose another output")
    return True, output.suffix.lower()


@app.command("upscale")
def upscale_cmd(
    inputs: list[Path] = typer.Argument(..., help="Image files and/or folders (folders: their image files)."),
    output: Path = typer.Option(
        ..., "-o", "--output", help="Output folder, or an output file (e.g. out.png, its suffix sets the format) for "
                                    "one input file."),
    model: options.Model = None,
    weights: options.Weights = None,
    scale: options.Scale = None,
    recursive: bool = typer.Option(False, "-r", "--recursive", help="Also upscale the images in subfolders, "
                                                                    "keeping the tree below each input folder."),
    suffix: str = typer.Option("", "--suffix", help="Added to each output name in a folder: --suffix _x4 writes "
                                                    "a_x4.png for a.png."),
    ext: ExtChoice | None = typer.Option(None, "--ext", help="Output format in a folder (default png; jpg and webp "
                                                             "hold 8 bits and jpg no transparency)."),
    skip_existing: bool = typer.Option(
        False, "--skip-existing", help="Leave outputs that exist and report them as skipped (resume a run)."),
    device: options.Device = "cpu",
    tile: int | None = typer.Option(
        None, "--tile", min=0, help="LR tile edge in pixels; 0 = never tile; default: automatic from --max-memory."
    ),
    tile_overlap: int | None = typer.Option(
        None, "--tile-overlap", min=0, help="LR pixels shared by neighbouring tiles (default 32, at most half a tile)."
    ),
    max_memory: options.MaxMemory = None,
    backend: options.Backend = options.BackendChoice.fast,
    threads: options.Threads = None,
    precision: options.Precision = None,
    calibration: options.Calibration = None,
    compile_graph: bool = typer.Option(
        False, "--compile", help="torch.compile the fast path (slow start: compiles once per image size)."
    ),
    batch_size: int = typer.Option(
        1, "--batch-size", min=1, help="Run up to N same-size RGB images per forward (the budget covers the batch)."
    ),
    continue_on_error: bool = typer.Option(
        False, "--continue-on-error", help="Report a failing file and go on with the others."
    ),
    overwrite: options.Overwrite = False,
) -> None:
    """Upscale images by the model's scale (16-bit stays 16-bit in PNG and TIFF, gray stays gray, alpha is kept)."""
    started = time.perf_counter()
    console = Console(stderr=True, soft_wrap=True, highlight=False)

    def say(msg: str, style: str | None = None) -> None:
        console.print(msg, style=style, markup=False)

    options.need_model(model, weights)
    if overwrite and skip_existing:
        raise UsageError("--overwrite and --skip-existing contradict each other; pass one of them")
    from ..infer import DEFAULT_TILE_OVERLAP
    from ..sizes import parse_memory_size

    if model is not None:
        options.check_model(model)  # an unknown name fails here, before the inputs are listed
    budget = parse_memory_size(max_memory)
    overlap = DEFAULT_TILE_OVERLAP if tile_overlap is None else tile_overlap
    if tile and 2 * overlap > tile:
        raise typer.BadParameter(f"--tile-overlap {overlap} must be at most half of --tile {tile}")
    single_file, out_ext = _output_mode(inputs, output, ext, suffix, overwrite)

    jobs = collect_inputs(inputs, recursive=recursive, exclude=() if single_file else (output,))
    if not jobs:
        say("error: no input images found", "red")
        raise typer.Exit(1)
    plan_outputs(jobs, output, single_file=single_file, suffix=suffix, ext=out_ext, overwrite=overwrite,
                 skip_existing=skip_existing)
    early = [j for j in jobs if j.error is not None]
    skipped = [j for j in jobs if j.skipped]
    for j in early:
        say(f"error: {j.error}", "red")
    for j in skipped:
        say(f"skipped: {j.src} (output {j.dst} exists)")
    if early and not continue_on_error:
        say(f"stopped before processing: {len(early)} problem(s); fix them or pass --continue-on-error", "red")
        raise typer.Exit(1)
    todo = [j for j in jobs if j.error is None and not j.skipped]
    failed = len(early)
    written = 0

    def summary() -> None:
        where = output if single_file else f"{output}/"
        say(f"{written} image(s) written to {where}, {len(skipped)} skipped, {failed} failed "
            f"in {time.perf_counter() - started:.1f} s", "red" if failed else "green")

    if not todo:
        if skipped and not early:
            summary()
            return
        say("error: nothing to upscale", "red")
        raise typer.Exit(1)

    from ..imageio import Image, ImageReadError, read_image, write_image
    from ..infer import upscale_image, upscale_images

    net = options.load_model(model, weights, scale=scale, device="cpu")
    net = options.prepare(net, backend=backend.value, device=device, threads=threads,
                          precision=precision.value if precision else None, compile=compile_graph,
                          calibration=calibration)

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
                    summary()
                    raise typer.Exit(1)
            else:
                written += 1
                say(f"{job.src} -> {job.dst}")

        def save(job: _Job, sr: Image) -> None:
            assert job.dst is not None
            if sr.bit_depth == 16 and job.dst.suffix.lower() in _EIGHT_BIT:
                sr = replace(sr, bit_depth=8)  # the format asked for holds 8 bits (--ext's help says so)
            try:
                # Checked again at write time: another process may have written it since the plan.
                write_image(sr, job.dst, overwrite=overwrite)
            except (RuntimeError, OSError, ValueError, MemoryError) as e:
                job.error = f"{job.src}: {e}"

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
                    save(job, sr)
                finish(job)
            del batch, results
        progress.update(files_task, description="done")
    summary()
    if failed:
        raise typer.Exit(1)
