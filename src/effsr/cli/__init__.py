"""The ``effsr`` command line: a thin table over typed library functions.

Each subcommand lives in its own small module that registers on :data:`app` (or :data:`data_app`); they are
imported here by name. The options several commands share are declared once in :mod:`effsr.cli.options`; errors
are printed in one place (:mod:`effsr.cli.handler`): one line on stderr, status 2 for usage errors, 1 for failures.
"""

from __future__ import annotations

from ..runtime import configure_openmp

# Before anything imports torch: how OpenMP threads wait between operators (see effsr.runtime).
configure_openmp()

import typer  # noqa: E402

from .handler import EffsrGroup  # noqa: E402

CONTEXT = {"help_option_names": ["-h", "--help"]}

app = typer.Typer(
    name="effsr",
    cls=EffsrGroup,
    help="Efficient x4 image super-resolution: NTIRE ESR model zoo, evaluation, profiling, training, inference.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings=CONTEXT,
)
data_app = typer.Typer(help="Dataset tools (degrade HR to LR, extract sub-images).", no_args_is_help=True,
                       context_settings=CONTEXT)
app.add_typer(data_app, name="data")


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"effsr {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Efficient x4 image super-resolution: NTIRE ESR model zoo, evaluation, profiling, training, inference."""


# Subcommand modules register themselves on import; keep this list explicit.
from . import zoo, upscale, data, data_extract, eval, profile, export, bench, train, recipes  # noqa: E402,F401,I001


def main(argv: list[str] | None = None) -> None:
    """The console script: run ``effsr`` and exit with its status (see :mod:`effsr.cli.handler`)."""
    app(args=argv, prog_name="effsr")
