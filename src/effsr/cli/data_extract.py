"""``effsr data extract-subimages``: cut training images (and their LR) into overlapping sub-images."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress

from . import data_app, options


@data_app.command("extract-subimages")
def extract_cmd(
    hr_dir: Path = typer.Argument(..., help="HR image folder (searched recursively).", exists=True, file_okay=False),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder for the HR sub-images."),
    lr_dir: Path | None = typer.Option(None, "--lr", help="Matching LR folder (<name> or <name>x<scale> files)."),
    lr_output: Path | None = typer.Option(None, "--lr-output", help="Output folder for the LR sub-images."),
    crop_size: int = typer.Option(480, "--crop-size", min=1, help="HR sub-image side."),
    step: int = typer.Option(240, "--step", min=1, help="HR distance between sub-image origins."),
    thresh_size: int = typer.Option(0, "--thresh-size", min=0, help="Add a last tile when more than this is left."),
    scale: int = typer.Option(4, "--scale", "-s", min=1, help="HR/LR scale (LR tiles are crop/scale)."),
    file_list: Path | None = typer.Option(None, "--file-list", help="Only these files (paths relative to HR_DIR)."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N images (sorted by path)."),
    workers: int = typer.Option(4, "--workers", min=1, help="Threads."),
    overwrite: options.Overwrite = False,
) -> None:
    """BasicSR-style sub-images (the teams cut DIV2K/LSDIR into 480x480 tiles, step 240) with HR/LR counts checked."""
    from ..data.datasets import find_images
    from ..data.subimages import extract_subimages

    for folder in (output, lr_output):
        options.check_image_folder(folder, overwrite=overwrite)
    total = len(find_images(hr_dir, file_list=file_list, limit=limit))
    with Progress(console=Console(stderr=True), transient=True) as progress:
        job = progress.add_task("extracting", total=total)
        report = extract_subimages(
            hr_dir, output, lr_dir=lr_dir, lr_out_dir=lr_output, crop_size=crop_size, step=step,
            thresh_size=thresh_size, scale=scale, file_list=file_list, limit=limit, workers=workers,
            progress=lambda n: progress.advance(job, n),
        )
    lr = f", {report.lr_tiles} LR sub-images to {lr_output}" if lr_dir is not None else ""
    typer.echo(f"{report.images} images -> {report.hr_tiles} HR sub-images to {output}{lr}")
