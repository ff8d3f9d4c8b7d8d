"""``effsr export``: write a zoo model as ONNX and verify it in onnxruntime (see :mod:`effsr.deploy.onnx`)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from . import app


@app.command("export")
def export_cmd(
    model: str | None = typer.Option(None, "--model", "-m", help="Model name (see `effsr zoo`)."),
    weights: Path | None = typer.Option(None, "--weights", "-w", help="Weights file (.pth or .safetensors)."),
    output: Path = typer.Option(..., "--output", "-o", help="The .onnx file to write."),
    dynamic: bool = typer.Option(False, "--dynamic", help="Symbolic batch, height and width (where the model allows)."),
    lr_size: str = typer.Option(
        "64x64", "--lr-size", help="WxH of the traced input (the only size of a static export)."
    ),
    opset: int = typer.Option(17, "--opset", help="ONNX opset."),
) -> None:
    """Export to ONNX, then check onnxruntime against PyTorch at two input sizes (max abs 5e-4 in [0,1] units)."""
    import effsr

    from ..bench import parse_size
    from ..deploy.onnx import export_onnx

    if model is None and weights is None:
        raise typer.BadParameter("give --model NAME and/or --weights FILE")
    try:
        size = parse_size(lr_size)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--lr-size") from exc
    console = Console()
    net = effsr.load(model, weights)
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
