"""The command line's one error handler: every mistake and failure becomes one line on stderr and an exit status.

:class:`EffsrGroup` is the click group behind ``effsr``; its ``main`` runs the command and hands anything raised to
:func:`report`, so the console script, ``python -m effsr`` and typer's ``CliRunner`` all behave the same:

* usage errors found while parsing (an unknown option, a bad value, a missing argument; click's ``UsageError``) and
  :class:`effsr.errors.UsageError` from the library exit with status 2;
* failures (:class:`effsr.errors.EffsrError`, and any other exception) exit with status 1, an interrupt with 130;
* the line reads ``error: <what was wrong and what to do>``; ``EFFSR_DEBUG=1`` also prints the traceback first.

No command catches errors its own way: the library raises typed errors (:mod:`effsr.errors`) and this module prints
them. Commands that report per-file problems and go on (``effsr upscale --continue-on-error``) print those lines
themselves and end with ``typer.Exit(1)``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

import typer
from typer.core import TyperGroup

from ..errors import EffsrError, one_line

# click's exception base class: vendored inside typer (typer >= 0.20) or the click package (older typer).
_ClickException: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")

# Optional packages and the effsr extra that installs each (pyproject.toml [project.optional-dependencies]).
_EXTRAS = {"onnx": "onnx", "onnxruntime": "onnx", "fvcore": "profile", "matplotlib": "plot", "tensorboard": "train"}


def debug_enabled() -> bool:
    return os.environ.get("EFFSR_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def _message(exc: BaseException) -> tuple[str, int]:
    """The line to print (without ``error: ``) and the exit status for ``exc``."""
    if isinstance(exc, EffsrError):
        return exc.message, exc.exit_code
    if isinstance(exc, _ClickException):
        msg = exc.format_message()  # type: ignore[attr-defined]
        ctx = getattr(exc, "ctx", None)
        if ctx is not None and getattr(exc, "exit_code", 1) == 2:
            msg = f"{msg.rstrip('.')} (see '{ctx.command_path} -h')"
        return msg, int(getattr(exc, "exit_code", 1))
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        top = exc.name.split(".")[0]
        extra = _EXTRAS.get(top)
        how = f"pip install 'effsr[{extra}]'" if extra else f"pip install {top}"
        return f"this needs the Python package '{top}', which is not installed: {how}", 1
    if isinstance(exc, MemoryError):
        return "out of memory; try --max-memory with a smaller budget, --tile, or a smaller --batch-size", 1
    if isinstance(exc, OSError):  # files: a missing folder, a full disk, a permission
        return (f"{exc.filename}: {exc.strerror}" if exc.strerror and exc.filename else str(exc)), 1
    # Anything else is unexpected (a bug, or a library error without a type yet): say so and how to see more.
    return f"{type(exc).__name__}: {exc} (unexpected; EFFSR_DEBUG=1 shows the traceback)", 1


def report(exc: BaseException) -> int:
    """Print ``exc`` as one line on stderr (after its traceback when ``EFFSR_DEBUG`` is set); return the status."""
    if isinstance(exc, typer.Exit):
        return int(exc.exit_code)
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    if type(exc).__name__ == "NoArgsIsHelpError":  # bare `effsr` / `effsr data`: the help was printed
        return int(getattr(exc, "exit_code", 2))
    if isinstance(exc, (KeyboardInterrupt, typer.Abort)):
        print("error: interrupted", file=sys.stderr)
        return 130
    if isinstance(exc, BrokenPipeError):  # `effsr zoo | head`: the reader left; nothing to say
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (the interpreter's flush at exit must not fail)
        return 1
    msg, code = _message(exc)
    if debug_enabled():
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    print(f"error: {one_line(msg)}", file=sys.stderr, flush=True)
    return code


def guarded(run: Callable[[], Any]) -> int:
    """Call ``run`` (a click ``main`` in non-standalone mode) and turn its result or what it raises into a status."""
    try:
        rv = run()
    except BaseException as exc:  # noqa: BLE001  (every exception ends here, by design)
        return report(exc)
    return rv if isinstance(rv, int) and not isinstance(rv, bool) else 0


class EffsrGroup(TyperGroup):
    """The ``effsr`` group: runs the command in non-standalone mode and reports what it raises (:func:`report`)."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        code = guarded(lambda: super(EffsrGroup, self).main(
            args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra))
        if standalone_mode:
            sys.exit(code)
        return code
