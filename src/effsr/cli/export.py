"""``effsr export``: write a zoo model as ONNX and verify it in onnxruntime (see :mod:`effsr.deploy.onnx`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from . import app, options


@app.command("export")
def export_cmd(
    model: options.Model = None,
    weights: options.Weights = None,
    scale: options.Scale = None,
    output: Path = typer.Option(..., "--output", "-o", help="The .onnx file to write."),
    dynamic: bool = typer.Option(False, "--dynamic", help="Symbolic batch, height and width (where the model allows)."),
    lr_size: Annotated[str, typer.Option(
        "--lr-size", parser=options.parse_lr_size, help="WxH of the traced input (the only size of a static export)."
    )] = "64x64",
    opset: int = typer.Option(17, "--opset", help="ONNX opset."),
    overwrite: options.Overwrite = False,
) -> None:
    """Export to ONNX, then check onnxruntime against PyTorch at two input sizes (max abs 5e-4 in [0,1] units)."""
    from ..deploy.onnx import export_onnx
    from ..sizes import parse_image_size

    options.need_model(model, weights)
    options.check_outputs([output], overwrite=overwrite)
    size = parse_image_size(lr_size, square=True)
    console = Console()
    net = options.load_model(model, weights, scale=scale)
    report = export_onnx(net, output, dynamic=dynamic, opset=opset, example_size=size)
    console.print(f"wrote {report.path} ({report.file_bytes / 1e6:.2f} MB, opset {report.opset}, "
                  f"{'dynamic' if report.dynamic else 'static'} shapes)")
    if report.dynamic_requested and not report.dynamic:
        console.print(f"[yellow]{report.model} cannot be exported with dynamic sizes; the file is static.[/yellow]")
    for note in report.notes:
        console.print(f"  note: {note}")
    console.print(f"supported input shapes: {report.supported_shapes}")
    for check in report.checks:
        status = "ok" if check.max_abs <= report.tolerance else "FAILED"
        console.print(f"  onnxruntime vs PyTorch at {check.lr_size[1]}x{check.lr_size[0]} (WxH, {check.graph}): "
                      f"max abs {check.max_abs:.2e}, {status}")
    if not report.ok:
        console.print(f"[red]verification failed: max abs {report.max_abs:.2e} > {report.tolerance:.0e}[/red]")
        raise typer.Exit(1)
