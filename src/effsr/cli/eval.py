"""``effsr eval``: benchmark PSNR/SSIM of zoo models with the official protocol (see :mod:`effsr.evaluate`)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from . import app


@app.command("eval")
def eval_cmd(
    datasets: list[str] | None = typer.Argument(
        None, help="Datasets: folders (HR/ + LR_bicubic/X4/, or HR only) or names under the data root. Default: set5."
    ),
    dataset_opts: list[str] = typer.Option([], "--dataset", "-d", help="A dataset (name or folder); repeatable."),
    model: str | None = typer.Option(None, "--model", "-m", help="Model name (see `effsr zoo`)."),
    weights: Path | None = typer.Option(None, "--weights", "-w", help="Weights file (.pth or .safetensors)."),
    all_models: bool = typer.Option(False, "--all-models", help="Every zoo model with published weights."),
    data_root: Path | None = typer.Option(
        None, "--data-root", help="Where dataset names are looked up (default: $EFFSR_DATA or <assets>/data)."
    ),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    backend: str = typer.Option(
        "fast", "--backend", help="Inference engine: eager (the authors' forward), fast (default) or onnxruntime."
    ),
    threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads (default: PyTorch's)."),
    csv_path: Path | None = typer.Option(None, "--csv", help="Write per-image metrics to this CSV file."),
    json_path: Path | None = typer.Option(
        None, "--json", help="Write per-image metrics and means as JSON (one object, or a list for several runs)."
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
) -> None:
    """Evaluate models on benchmark sets: PSNR RGB/Y and SSIM Y/RGB (x4: 4 px border), official SR pipeline."""
    import effsr

    from ..deploy import BACKENDS, prepare
    from ..evaluate import (
        evaluate,
        find_dataset,
        leaderboard_markdown,
        markdown_summary,
        model_cost,
        plot_quality_vs_cost,
        write_csv,
    )
    from ..evaluate import write_json as write_json_file
    from ..models import get_spec, list_models
    from ..ntire import gate_split, rules
    from .profile import parse_ntire_year

    year = parse_ntire_year(ntire) if ntire is not None else rules().year

    if all_models and (model is not None or weights is not None):
        raise typer.BadParameter("--all-models cannot be combined with --model/--weights")
    if not all_models and model is None and weights is None:
        raise typer.BadParameter("give --model NAME (and/or --weights FILE), or --all-models")
    if backend not in BACKENDS:
        raise typer.BadParameter(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}",
                                 param_hint="--backend")
    specs = [*(datasets or []), *dataset_opts] or ["set5"]

    runs: list[tuple[str, str | None, Path | None]] = []  # (display name, model name, weights)
    if all_models:
        runs = [(name, name, None) for name in list_models() if get_spec(name).weights]
    else:
        runs = [(model if model is not None else Path(str(weights)).stem, model, weights)]

    console = Console(stderr=True)
    results = []
    points = []
    costs = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        for display, name, wpath in runs:
            net = effsr.load(name, wpath, device=device)
            scale = int(getattr(net, "scale", 4))
            # Params and the challenge's MACs (fvcore at LR 256x256) for the plot and the --all-models leaderboard.
            cost = model_cost(net) if plot is not None or all_models else None
            if cost is not None:
                costs[display] = cost
            try:
                net = prepare(net, backend, device=device, threads=threads)
            except (ValueError, RuntimeError, ImportError) as exc:
                raise typer.BadParameter(f"cannot prepare {display} for --backend {backend}: {exc}") from exc
            for spec in specs:
                try:
                    ds = find_dataset(spec, scale=scale, data_root=data_root)
                except (FileNotFoundError, NotADirectoryError) as exc:
                    raise typer.BadParameter(str(exc), param_hint="DATASETS") from exc
                task = progress.add_task(f"{display} on {ds.name}", total=len(ds.pairs()))
                save_dir = save_images / display / ds.name if save_images is not None else None
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

    typer.echo(markdown_summary(results, per_image=per_image))
    if all_models:
        typer.echo("\nLeaderboard (MACs: fvcore at LR 256x256, the NTIRE count; ms / image: this run's SR step, "
                   f"--backend {backend}, on this machine)\n")
        typer.echo(leaderboard_markdown(results, costs))
    r = rules(year)
    for res in results:
        split = gate_split(res.dataset)
        if split is not None:
            psnr = res.mean["psnr_rgb"]
            verdict = "passes" if r.meets_gate(split, psnr) else "fails"
            typer.echo(f"NTIRE {r.year} PSNR gate on {split} ({r.gate_db(split):.2f} dB, compared at 0.01 dB): "
                       f"{res.model} {verdict} with {psnr:.4f} dB")
    if csv_path is not None:
        console.print(f"per-image CSV: {write_csv(results, csv_path)}")
    if json_path is not None:
        console.print(f"JSON: {write_json_file(results, json_path)}")
    if plot is not None:
        console.print(f"plot: {plot_quality_vs_cost(points, plot)}")
