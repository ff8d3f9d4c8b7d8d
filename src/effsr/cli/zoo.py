"""``effsr zoo``: list models and their official weights (a table, or JSON with ``--json FILE|-``)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from . import app, options


def zoo_records() -> list[dict[str, Any]]:
    """One entry per weight record (and per architecture without weights): what the table shows, unformatted.
    ``weights`` is the name ``-m`` accepts to pick that record (``effsr upscale -m mdrn_x3``)."""
    from ..models import get_spec, list_models

    rows: list[dict[str, Any]] = []
    for name in list_models():
        spec = get_spec(name)
        if not spec.weights:
            rows.append({"model": name, "weights": None, "default": False, "file": None, "scale": None,
                         "params": None, "source": spec.description, "licence": None})
        for i, rec in enumerate(spec.weights):
            rows.append({"model": name, "weights": rec.name, "default": i == 0, "file": rec.file,
                         "scale": rec.scale, "params": rec.params, "source": rec.source, "licence": rec.licence,
                         "kwargs": dict(rec.kwargs), "sha256": rec.sha256, "url": rec.url})
    return rows


@app.command("zoo")
def zoo_cmd(json_path: options.Json = None, overwrite: options.Overwrite = False) -> None:
    """List every model and its weight records (name, scale, params, source); `-m` takes either name."""
    options.check_outputs([json_path], overwrite=overwrite)
    rows = zoo_records()
    if options.is_stdout(json_path):
        options.write_json_output("-", rows, overwrite=overwrite)
        return
    table = Table(title="effsr model zoo (-m takes the model or the weights name)")
    for col in ("model", "weights", "file", "scale", "params", "source", "licence"):
        table.add_column(col)
    previous = None
    for r in rows:
        if r["weights"] is None:
            table.add_row(r["model"], "-", "-", "-", "-", r["source"], "-")
        else:
            table.add_row(r["model"] if r["model"] != previous else "",
                          r["weights"] + (" (default)" if r["default"] else ""), r["file"], f"x{r['scale']}",
                          f"{r['params']:,}", r["source"], r["licence"])
        previous = r["model"]
    options.table_console().print(table)
    if json_path is not None:
        options.table_console(stderr=True).print(f"JSON: {options.write_json_output(json_path, rows, overwrite=True)}")
