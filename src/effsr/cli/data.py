"""``effsr data degrade``: make a MATLAB-bicubic LR set from HR images."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress

from ..errors import InvalidValueError
from . import data_app, options


@data_app.command("degrade")
def degrade_cmd(
    hr_dir: Path = typer.Argument(..., help="Folder of HR images.", exists=True, file_okay=False),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder for the LR PNGs (same base names)."),
    scale: int = typer.Option(4, "--scale", "-s", min=1, help="Downscaling factor."),
    hr_output: Path | None = typer.Option(
        None, "--hr-output", help="Also write the HR images cropped to a multiple of the scale here."
    ),
    overwrite: options.Overwrite = False,
) -> None:
    """Crop HR to a multiple of the scale and downscale with MATLAB's bicubic imresize (uint8 rounding)."""
    from ..data.degrade import degrade_folder
    from ..imageio import IMAGE_EXTENSIONS, list_images

    files = list_images(hr_dir)
    if not files:
        raise InvalidValueError(f"{hr_dir}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    for folder in (output, hr_output):  # degrade_folder writes <folder>/<stem>.png for every HR image
        if folder is not None:
            options.check_outputs([folder / f"{p.stem}.png" for p in files], overwrite=overwrite)
    console = Console(stderr=True)
    total = len(files)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"degrading x{scale}", total=total)
        done = degrade_folder(hr_dir, output, scale, hr_out_dir=hr_output, on_image=lambda _: progress.advance(task))
    cropped = sum(1 for d in done if (d.hr_size[0] % scale) or (d.hr_size[1] % scale))
    typer.echo(f"wrote {len(done)} LR images x{scale} to {output} ({cropped} HR cropped to a multiple of {scale})")
