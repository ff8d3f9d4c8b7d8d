"""The ``effsr`` command line: a thin table over typed library functions.

Each subcommand lives in its own small module that registers on :data:`app` (or :data:`data_app`);
they are imported here by name.
"""

from __future__ import annotations

from ..runtime import configure_openmp

# Before anything imports torch: how OpenMP threads wait between operators (see effsr.runtime).
configure_openmp()

import typer  # noqa: E402

app = typer.Typer(
    name="effsr",
    help="Efficient x4 image super-resolution: NTIRE ESR model zoo, evaluation, profiling, training, inference.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Dataset tools (degrade HR to LR, extract sub-images).", no_args_is_help=True)
app.add_typer(data_app, name="data")

# Subcommand modules register themselves on import; keep this list explicit.
from . import zoo, upscale, data, data_extract, eval, profile, export, bench, train, recipes  # noqa: E402,F401,I001


def main() -> None:
    app()
