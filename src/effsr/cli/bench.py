"""``effsr bench``: time backends of zoo models with interleaved runs (see :mod:`effsr.bench`)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from . import app


@app.command("bench")
def bench_cmd(
    model: str = typer.Option(..., "--model", "-m", help="Model name(s), comma-separated (see `effsr zoo`)."),
    lr_size: str = typer.Option("256x256", "--lr-size", help="LR input size WxH, comma-separated for several."),
    backend: str = typer.Option("eager,fast,onnxruntime", "--backend", help="Backends, comma-separated."),
    threads: str = typer.Option("2", "--threads", help="CPU threads, comma-separated for several."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    runs: int = typer.Option(20, "--runs", min=1, help="Timed runs per backend (interleaved)."),
    warmup: int = typer.Option(3, "--warmup", min=1, help="Untimed runs first."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the results as JSON."),
    in_process: bool = typer.Option(
        False, "--in-process", help="Run every backend in this process (quick smoke test; settings leak between them)."
    ),
    explain: bool = typer.Option(
        False, "--explain", help="Time nothing: print the fast backend's graph passes, in order, with how often each "
        "fired, for each model (at the first --lr-size; $EFFSR_DISABLE_PASSES leaves passes out)."
    ),
) -> None:
    """Median and IQR of the forward time, output megapixels/s and the distance to the arithmetic floor."""
    from ..bench import BACKENDS, explain_passes, parse_size, run_benchmark

    models = [m.strip() for m in model.split(",") if m.strip()]
    backends = [b.strip() for b in backend.split(",") if b.strip()]
    bad = [b for b in backends if b not in BACKENDS]
    if bad:
        raise typer.BadParameter(f"unknown backend(s) {bad}; choose from {', '.join(BACKENDS)}", param_hint="--backend")
    try:
        sizes = [parse_size(s) for s in lr_size.split(",")]
        thread_counts = [int(t) for t in threads.split(",")]
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if any(t < 1 for t in thread_counts):
        raise typer.BadParameter("threads must be >= 1", param_hint="--threads")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise typer.BadParameter("CUDA is not available on this machine", param_hint="--device")

    if explain:
        for name in models:
            try:
                engine = explain_passes(name, lr_size=sizes[0], threads=thread_counts[0], device=device)
            except (KeyError, ValueError) as exc:
                raise typer.BadParameter(str(exc).strip("'\""), param_hint="--model") from exc
            h, w = sizes[0]
            if engine.pass_report is None:
                typer.echo(f"{name}: the fast backend fell back to the plain channels-last forward (no graph passes)")
                continue
            err = engine.max_abs_vs_eager
            typer.echo(f"{name}: fast deploy graph at LR {w}x{h} (WxH), {str(engine.dtype).removeprefix('torch.')}, "
                       f"{len(engine.graph.graph.nodes)} nodes, max abs vs eager "
                       f"{'-' if err is None else f'{err:.1e}'}")
            for line in engine.pass_report.lines():
                typer.echo("  " + line)
        return

    err = Console(stderr=True)
    report = run_benchmark(models, backends=backends, threads=thread_counts, lr_sizes=sizes, device=device, runs=runs,
                           warmup=warmup, isolate=not in_process, on_progress=lambda msg: err.print(msg))
    table = Table(title=f"{report.machine}; dense 3x3 conv {report.dense_conv_gflops:.0f} GFLOP/s (in-round median)")
    for col in ("model", "backend", "threads", "LR WxH", "median ms", "IQR ms", "out MP/s", "x floor", "max abs"):
        table.add_column(col)
    for r in report.results:
        err_text = "-" if r.max_abs_vs_eager is None else f"{r.max_abs_vs_eager:.1e}"
        table.add_row(r.model, r.backend, str(r.threads), f"{r.lr_size[1]}x{r.lr_size[0]}", f"{r.median_ms:.1f}",
                      f"{r.iqr_ms:.1f}", f"{r.output_mpix_per_s:.2f}", f"{r.times_floor:.2f}", err_text)
    # Piped output gets a wide table (rich would otherwise fold every column to 80 characters).
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    if json_path is not None:
        report.write_json(json_path)
