"""``effsr eval``: benchmark PSNR/SSIM of zoo models with the official protocol (see :mod:`effsr.evaluate`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..errors import InvalidValueError, UsageError
from . import app, options


def _dataset(spec: str, scale: int, data_root: Path | None) -> Any:
    from ..evaluate import find_dataset

    try:
        return find_dataset(spec, scale=scale, data_root=data_root)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise InvalidValueError(f"dataset {spec!r}: {exc}") from exc


@app.command("eval")
def eval_cmd(
    datasets: list[str] | None = typer.Argument(
        None, help="Datasets: folders (HR/ + LR_bicubic/X4/, or HR only) or names under the data root. Default: set5."
    ),
    dataset_opts: list[str] = typer.Option([], "--dataset", "-d", help="Dataset(s): -d set5,set14 or repeat -d."),
    model: options.Models = None,
    weights: options.Weights = None,
    scale: options.Scale = None,
    all_models: bool = typer.Option(False, "--all-models", help="Every zoo model with published weights."),
    data_root: Path | None = typer.Option(
        None, "--data-root", help="Where dataset names are looked up (default: $EFFSR_DATA or <assets>/data)."
    ),
    device: options.Device = "cpu",
    backend: options.Backend = options.BackendChoice.fast,
    precision: options.Precision = options.PrecisionChoice.fp32,
    calibration: options.Calibration = None,
    threads: options.Threads = None,
    csv_path: Path | None = typer.Option(
        None, "--csv", help="Write per-image metrics to this CSV file ('-': standard output)."),
    json_path: Path | None = typer.Option(
        None, "--json", help="Write per-image metrics and means as JSON, one object or a list for several runs "
                             "('-': standard output; the table then goes to stderr)."
    ),
    plot: Path | None = typer.Option(None, "--plot", help="Draw PSNR (RGB) vs MACs, marker size by params."),
    per_image: bool = typer.Option(False, "--per-image", help="Also print one table row per image."),
    lpips: bool = typer.Option(False, "--lpips", help="Also compute LPIPS (needs the lpips package and weights)."),
    save_images: Path | None = typer.Option(
        None, "--save-images", help="Write SR images to DIR/<model>/<dataset>/<name>.png."
    ),
    ntire: str | None = typer.Option(
        None, "--ntire", metavar="YEAR",
        help="Challenge year whose PSNR gate a DIV2K_LSDIR valid/test result is checked against (default: latest).",
    ),
    overwrite: options.Overwrite = False,
) -> None:
    """Evaluate models on benchmark sets: PSNR RGB/Y and SSIM Y/RGB (x4: 4 px border), official SR pipeline."""
    from ..evaluate import (
        csv_text,
        evaluate,
        json_payload,
        leaderboard_markdown,
        markdown_summary,
        model_cost,
        plot_quality_vs_cost,
        write_csv,
    )
    from ..models import get_spec, list_models
    from ..ntire import gate_split, rules
    from .profile import parse_ntire_year

    year = parse_ntire_year(ntire) if ntire is not None else rules().year

    names = options.split_list(model)
    if all_models and (names or weights is not None):
        raise UsageError("--all-models cannot be combined with --model/--weights")
    if not all_models and not names and weights is None:
        options.need_model(None, None)
    if weights is not None and len(names) > 1:
        raise UsageError(f"--weights goes with one --model, got {', '.join(names)}")
    if sum(options.is_stdout(p) for p in (csv_path, json_path)) > 1:
        raise UsageError("only one of --csv and --json can go to standard output")
    options.check_outputs([csv_path, json_path, plot], overwrite=overwrite)
    specs = options.split_list([*(datasets or []), *dataset_opts]) or ["set5"]

    runs: list[tuple[str, str | None, Path | None]] = []  # (display name, model name, weights)
    if all_models:
        runs = [(name, name, None) for name in list_models() if get_spec(name).weights]
    elif names:
        runs = [(options.check_model(n), n, weights) for n in names]  # unknown names fail before any model loads
    else:
        runs = [(Path(str(weights)).stem, None, weights)]

    for spec in specs:  # a missing folder or an unknown name fails before any model loads
        _dataset(spec, 4, data_root)
    if precision.value != "fp32":  # a precision this machine or backend cannot run fails before any model loads
        from ..deploy.backends import require_backend
        from ..deploy.precision import check_precision

        require_backend(backend.value)
        check_precision(precision.value, backend.value, device)

    stdout_taken = options.is_stdout(json_path) or options.is_stdout(csv_path)
    console = options.table_console(stderr=True)
    results = []
    points = []
    costs = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        for display, name, wpath in runs:
            net = options.load_model(name, wpath, scale=scale, device=device)
            net_scale = int(getattr(net, "scale", 4))
            # Params and the challenge's MACs (fvcore at LR 256x256) for the plot and the --all-models leaderboard.
            cost = model_cost(net) if plot is not None or all_models else None
            if cost is not None:
                costs[display] = cost
            net = options.prepare(net, backend=backend.value, device=device, threads=threads,
                                  precision=precision.value, calibration=calibration)
            for spec in specs:
                ds = _dataset(spec, net_scale, data_root)
                save_dir = save_images / display / ds.name if save_images is not None else None
                options.check_image_folder(save_dir, overwrite=overwrite)
                task = progress.add_task(f"{display} on {ds.name}", total=len(ds.pairs()))
                res = evaluate(
                    net,
                    ds,
                    model_name=display,
                    device=device,
                    lpips=lpips,
                    save_dir=save_dir,
                    on_image=lambda _r, t=task: progress.advance(t),
                )
                progress.remove_task(task)
                results.append(res)
                if cost is not None:
                    points.append((display, ds.name, res.mean["psnr_rgb"], cost))
            del net

    typer.echo(markdown_summary(results, per_image=per_image), err=stdout_taken)
    if all_models:
        typer.echo("\nLeaderboard (MACs: fvcore at LR 256x256, the NTIRE count; ms / image: this run's SR step, "
                   f"--backend {backend.value} --precision {precision.value}, on this machine)\n", err=stdout_taken)
        typer.echo(leaderboard_markdown(results, costs), err=stdout_taken)
    r = rules(year)
    for res in results:
        split = gate_split(res.dataset)
        if split is not None:
            psnr = res.mean["psnr_rgb"]
            verdict = "passes" if r.meets_gate(split, psnr) else "fails"
            typer.echo(f"NTIRE {r.year} PSNR gate on {split} ({r.gate_db(split):.2f} dB, compared at 0.01 dB): "
                       f"{res.model} {verdict} with {psnr:.4f} dB", err=stdout_taken)
    if options.is_stdout(csv_path):
        typer.echo(csv_text(results), nl=False)
    elif csv_path is not None:
        console.print(f"per-image CSV: {write_csv(results, csv_path, overwrite=overwrite)}", markup=False)
    if json_path is not None:
        where = options.write_json_output(json_path, json_payload(results), overwrite=overwrite)
        if not options.is_stdout(json_path):
            console.print(f"JSON: {where}", markup=False)
    if plot is not None:
        console.print(f"plot: {plot_quality_vs_cost(points, plot, overwrite=overwrite)}", markup=False)
