"""``effsr train CONFIG``: run a training recipe (one process, or one rank per device under torchrun).

``torchrun --nproc-per-node N -m effsr train CONFIG`` runs DDP; ``python -m effsr.cli.train CONFIG`` also works
(a standalone entry point, e.g. for ``torchrun -m effsr.cli.train``).
"""

from __future__ import annotations

from pathlib import Path

import typer

from . import app


def train_cmd(
    config: Path = typer.Argument(..., help="Recipe YAML (configs/*.yaml).", exists=True, dir_okay=False),
    set_: list[str] = typer.Option(
        [], "--set", help="Override a recipe key: key=value (YAML value), e.g. stages.0.lr=1e-4 or stages.*.iters=50."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Run folder (default runs/<config name>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run folder's latest checkpoint."),
    max_iters: int | None = typer.Option(
        None, "--max-iters", min=1, help="Cap every stage at N iterations (a quick try that still writes final)."
    ),
) -> None:
    """Train a model from a recipe; writes checkpoints, TensorBoard logs and DIR/final.safetensors."""
    from ..train.loop import NonFiniteLossError, train
    from ..train.recipe import RecipeError, load_recipe

    try:
        recipe = load_recipe(config, set_)
    except RecipeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    run_dir = out if out is not None else Path("runs") / config.stem
    try:
        result = train(recipe, run_dir, resume=resume, max_iters=max_iters)
    except (NonFiniteLossError, FileExistsError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3 if isinstance(exc, NonFiniteLossError) else 2) from None
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        val = ", ".join(f"{k} {v:.3f}" for k, v in result.val.items() if k != "images")
        typer.echo(f"wrote {result.final}" + (f" ({val})" if val else ""))


app.command("train")(train_cmd)

if __name__ == "__main__":
    standalone = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    standalone.command()(train_cmd)
    standalone()
