"""``effsr upscale``: upscale image files and folders with a zoo model."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import Progress

from . import app


def _collect(inputs: list[Path]) -> list[Path]:
    from ..imageio import IMAGE_EXTENSIONS

    files: list[Path] = []
    for p in inputs:
        if p.is_dir():
            files.extend(sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_EXTENSIONS))
        else:
            files.append(p)
    return files


@app.command("upscale")
def upscale_cmd(
    inputs: list[Path] = typer.Argument(..., help="Image files and/or folders."),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder (PNG files, same base names)."),
    model: str | None = typer.Option(None, "--model", "-m", help="Model name (see `effsr zoo`)."),
    weights: Path | None = typer.Option(None, "--weights", "-w", help="Weights file (.pth or .safetensors)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
) -> None:
    """Upscale images x4 (or the model's scale) and write PNGs with the same base names."""
    import effsr

    from ..imageio import read_rgb_uint8, tensor_to_uint8, uint8_to_tensor, write_rgb_uint8
    from ..infer import upscale

    if model is None and weights is None:
        raise typer.BadParameter("give --model NAME and/or --weights FILE")
    net = effsr.load(model, weights, device=device)
    files = _collect(inputs)
    with Progress() as progress:
        task = progress.add_task("upscaling", total=len(files))
        for f in files:
            lr = uint8_to_tensor(read_rgb_uint8(f)).to(device)
            sr = upscale(net, lr)
            out = write_rgb_uint8(tensor_to_uint8(sr), output / (f.stem + ".png"))
            progress.console.print(f"{f} -> {out}")
            progress.advance(task)
