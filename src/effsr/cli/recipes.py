"""``effsr recipes``: list the shipped training recipes, print one, or copy one out to edit (:mod:`effsr.recipes`)."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app

recipes_app = typer.Typer(
    help="The training recipes shipped with effsr: list them, show one, copy one out to edit.",
    invoke_without_command=True,
)
app.add_typer(recipes_app, name="recipes")


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


@recipes_app.callback()
def recipes_cmd(ctx: typer.Context) -> None:
    """With no subcommand: list the recipes (name, model, stages, what it is)."""
    if ctx.invoked_subcommand is None:
        list_cmd()


@recipes_app.command("list")
def list_cmd() -> None:
    """List the shipped recipes: name, model, stages and the first line of each header."""
    from ..recipes import list_recipes, load_packaged_recipe, recipe_summary

    for name in list_recipes():
        recipe = load_packaged_recipe(name)
        stages = ", ".join(st.name or f"stage {i + 1}" for i, st in enumerate(recipe.stages))
        typer.echo(f"{name:<8}  model {recipe.model:<8}  {len(recipe.stages)} stage(s): {stages}")
        typer.echo(f"          {recipe_summary(name)}")
    typer.echo("train one with `effsr train --recipe NAME`; copy one out with `effsr recipes copy NAME`")


@recipes_app.command("show")
def show_cmd(name: str = typer.Argument(..., help="Recipe name (see `effsr recipes`).")) -> None:
    """Print a recipe's YAML, header included."""
    from ..recipes import recipe_text
    from ..train.recipe import RecipeError

    try:
        typer.echo(recipe_text(name), nl=False)
    except RecipeError as exc:
        _fail(exc)


@recipes_app.command("copy")
def copy_cmd(
    name: str = typer.Argument(..., help="Recipe name (see `effsr recipes`)."),
    dest: Path | None = typer.Argument(None, help="File or folder to write (default ./NAME.yaml)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing file."),
) -> None:
    """Write a recipe to a file to edit and train with `effsr train FILE`."""
    from ..recipes import copy_recipe
    from ..train.recipe import RecipeError

    try:
        path = copy_recipe(name, dest, overwrite=overwrite)
    except (RecipeError, FileExistsError) as exc:
        _fail(exc)
    else:
        typer.echo(f"wrote {path}")
