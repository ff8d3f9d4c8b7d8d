"""``effsr zoo``: list models and their official weights."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from . import app


@app.command("zoo")
def zoo_cmd() -> None:
    """List every model and its weight records (name, scale, params, source)."""
    from ..models import get_spec, list_models

    table = Table(title="effsr model zoo")
    for col in ("model", "weights", "file", "scale", "params", "source", "licence"):
        table.add_column(col)
    for name in list_models():
        spec = get_spec(name)
        if not spec.weights:
            table.add_row(name, "-", "-", "-", "-", spec.description, "-")
        for i, rec in enumerate(spec.weights):
            table.add_row(
                name if i == 0 else "",
                rec.name + (" (default)" if i == 0 else ""),
                rec.file,
                f"x{rec.scale}",
                f"{rec.params:,}",
                rec.source,
                rec.licence,
            )
    Console().print(table)


_ = typer  # typer is the CLI framework; imported for type checkers of this module's users
