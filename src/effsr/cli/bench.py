"""``effsr bench``: time backends of zoo models with interleaved runs (see :mod:`effsr.bench`)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from . import app, options


@app.command("bench")
def bench_cmd(
    model: Annotated[list[str], typer.Option(
        "--model", "-m", help="Model name(s): -m rlfn,agdn or repeat -m (see `effsr zoo`).")],
    lr_size: options.LrSizes = "256x256",
    backend: Annotated[list[str] | None, typer.Option(
        "--backend", help="Backends: eager,fast,onnxruntime,openvino (comma-separated or repeated; default: every "
                         "installed one).")] = None,
    threads: Annotated[list[str] | None, typer.Option(
        "--threads", help="CPU threads: 2, or 1,2,4 (comma-separated or repeated).")] = None,
    device: options.Device = "cpu",
    runs: int = typer.Option(20, "--runs", min=1, help="Timed runs per backend (interleaved)."),
    warmup: int = typer.Option(3, "--warmup", min=1, help="Untimed runs first."),
    json_path: options.Json = None,
    in_process: bool = typer.Option(
        False, "--in-process", help="Run every backend in this process (quick smoke test; settings leak between them)."
    ),
    explain: bool = typer.Option(
        False, "--explain", help="Time nothing: print the fast backend's graph passes, in order, with how often each "
        "fired, for each model (at the first --lr-size; $EFFSR_DISABLE_PASSES leaves passes out)."
    ),
    overwrite: options.Overwrite = False,
) -> None:
    """Median and IQR of the forward time, output megapixels/s and the distance to the arithmetic floor."""
    from ..bench import BACKENDS, available_backends, explain_passes, run_benchmark
    from ..sizes import parse_image_size

    models = options.split_list(model)
    for name in models:
        options.check_model(name)  # an unknown name fails before any timing
    backends = options.split_list(backend) or list(available_backends())
    bad = [b for b in backends if b not in BACKENDS]
    if bad:
        raise typer.BadParameter(f"unknown backend(s) {', '.join(bad)}; choose from {', '.join(BACKENDS)}",
                                 param_hint="'--backend'")
    sizes = [parse_image_size(s, square=True) for s in options.split_list(lr_size)]
    thread_list = options.split_list(threads) or ["2"]
    if not all(t.isdigit() and int(t) >= 1 for t in thread_list):
        raise typer.BadParameter(f"expected whole numbers >= 1, got {', '.join(thread_list)}", param_hint="'--threads'")
    thread_counts = [int(t) for t in thread_list]
    options.check_outputs([json_path], overwrite=overwrite)

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
    options.table_console(stderr=options.is_stdout(json_path)).print(table)
    if json_path is not None:
        options.write_json_output(json_path, report.to_json(), overwrite=overwrite)
