"""``effsr bench``: time backends of zoo models, in each precision, with interleaved runs (see :mod:`effsr.bench`)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..errors import EffsrError
from . import app, options


@app.command("bench")
def bench_cmd(
    model: Annotated[list[str], typer.Option(
        "--model", "-m", help="Model name(s): -m rlfn,agdn or repeat -m (see `effsr zoo`).")],
    lr_size: options.LrSizes = "256x256",
    backend: Annotated[list[str] | None, typer.Option(
        "--backend", help="Backends: eager,fast,onnxruntime,openvino (comma-separated or repeated; default: every "
                         "installed one).")] = None,
    precision: Annotated[list[str] | None, typer.Option(
        "--precision", help="Precisions: fp32,bf16,int8 (comma-separated or repeated; default fp32). Each runs on "
                            "every given backend that runs it, next to the float32 eager forward, with its own floor."
    )] = None,
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
        "fired, for each model (at the first --lr-size and --precision; $EFFSR_DISABLE_PASSES leaves passes out)."
    ),
    overwrite: options.Overwrite = False,
) -> None:
    """Median and IQR of the forward time, output megapixels/s and the distance to the arithmetic floor."""
    from ..bench import BACKENDS, available_backends, bench_pairs, explain_passes, run_benchmark
    from ..deploy.precision import precision_name
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
    precisions = [precision_name(p) for p in options.split_list(precision)] or ["fp32"]  # PrecisionError: exit 2
    options.check_outputs([json_path], overwrite=overwrite)

    if explain:
        for name in models:
            try:
                engine = explain_passes(name, lr_size=sizes[0], threads=thread_counts[0], device=device,
                                        precision=precisions[0])
            except EffsrError:
                raise
            except (KeyError, ValueError) as exc:
                raise typer.BadParameter(str(exc).strip("'\""), param_hint="--model") from exc
            h, w = sizes[0]
            report = getattr(engine, "pass_report", None)
            if report is None:
                typer.echo(f"{name}: the fast backend ({precisions[0]}) runs no effsr graph passes (the plain "
                           "channels-last forward, or a graph built by another stack)")
                continue
            err = getattr(engine, "max_abs_vs_eager", None)
            typer.echo(f"{name}: fast deploy graph at LR {w}x{h} (WxH), {str(engine.dtype).removeprefix('torch.')}, "
                       f"{len(engine.graph.graph.nodes)} nodes, max abs vs eager "
                       f"{'-' if err is None else f'{err:.1e}'}")
            for line in report.lines():
                typer.echo("  " + line)
        return

    bench_pairs(backends, precisions, device)  # a pair this machine cannot run: one line, exit 2, nothing timed
    err = Console(stderr=True)
    report = run_benchmark(models, backends=backends, precisions=precisions, threads=thread_counts, lr_sizes=sizes,
                           device=device, runs=runs, warmup=warmup, isolate=not in_process,
                           on_progress=lambda msg: err.print(msg))
    rates = ", ".join(f"{p} {g:.0f}" for p, g in report.dense_gflops_by_precision.items())
    table = Table(title=f"{report.machine}; dense 3x3 conv GFLOP/s (GOP/s for int8), in-round median: {rates}")
    for col in ("model", "backend", "precision", "threads", "LR WxH", "median ms", "IQR ms", "out MP/s", "x floor",
                "max abs"):
        table.add_column(col)
    for r in report.results:
        err_text = "-" if r.max_abs_vs_eager is None else f"{r.max_abs_vs_eager:.1e}"
        table.add_row(r.model, r.backend, r.precision, str(r.threads), f"{r.lr_size[1]}x{r.lr_size[0]}",
                      f"{r.median_ms:.1f}", f"{r.iqr_ms:.1f}", f"{r.output_mpix_per_s:.2f}", f"{r.times_floor:.2f}",
                      err_text)
    options.table_console(stderr=options.is_stdout(json_path)).print(table)
    if json_path is not None:
        options.write_json_output(json_path, report.to_json(), overwrite=overwrite)
