"""``effsr train CONFIG`` / ``effsr train --recipe NAME``: run a training recipe (one process, or one rank per device
under torchrun).

``torchrun --nproc-per-node N -m effsr train CONFIG`` runs DDP; ``python -m effsr.cli.train CONFIG`` also works
(a standalone entry point, e.g. for ``torchrun -m effsr.cli.train``). When stdout is not a terminal (nohup, SLURM,
CI) progress is printed as plain lines (docs/training.md).
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from . import app


def train_cmd(
    config: Path | None = typer.Argument(None, help="Recipe YAML file (e.g. configs/mdrn.yaml).", dir_okay=False),
    recipe_name: str | None = typer.Option(
        None, "--recipe", "-r", help="A recipe shipped with effsr, by name (`effsr recipes` lists them)."
    ),
    set_: list[str] = typer.Option(
        [], "--set", help="Override a recipe key: key=value (YAML value), e.g. stages.0.lr=1e-4 or stages.*.iters=50."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Run folder (default runs/<recipe name>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run folder's latest checkpoint."),
    max_iters: int | None = typer.Option(
        None, "--max-iters", min=1, help="Cap every stage at N iterations (a quick try that still writes final)."
    ),
) -> None:
    """Train a model from a recipe; writes checkpoints, TensorBoard logs and DIR/final.safetensors."""
    from ..errors import InvalidValueError
    from ..train.loop import train
    from ..train.recipe import load_recipe

    if (config is None) == (recipe_name is None):
        raise InvalidValueError(
            "give a recipe file (effsr train FILE) or a shipped recipe (effsr train --recipe NAME), not both")
    # A RecipeError (a usage error) names the key and the handler prints it on one line.
    if recipe_name is not None:
        from ..recipes import load_packaged_recipe

        recipe = load_packaged_recipe(recipe_name, set_)
        stem = recipe_name
    else:
        assert config is not None
        recipe = load_recipe(config, set_)
        stem = config.stem
    run_dir = out if out is not None else Path("runs") / stem
    result = train(recipe, run_dir, resume=resume, max_iters=max_iters)
    if int(os.environ.get("RANK", "0")) == 0:
        val = ", ".join(f"{k} {v:.3f}" for k, v in result.val.items() if k != "images")
        typer.echo(f"wrote {result.final}" + (f" ({val})" if val else ""))
        if result.int8 is not None:
            typer.echo(f"wrote {result.int8} (int8; effsr upscale --weights {result.int8})")


app.command("train")(train_cmd)

if __name__ == "__main__":
    import sys

    from .handler import guarded

    standalone = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    standalone.command()(train_cmd)
    sys.exit(guarded(lambda: standalone(standalone_mode=False)))
