"""The errors effsr raises for a user's mistake or a failed job: one hierarchy, one message each.

Every class derives from :class:`EffsrError`; the command line prints ``error: <message>`` on one line and exits with
the class's ``exit_code`` (:mod:`effsr.cli` catches them in one place). The convention is the shells' and click's:

* **2, usage errors** (:class:`UsageError`): what was asked cannot be right whatever the data: an unknown model, a
  device this machine does not have, a malformed size, flags that contradict each other;
* **1, failures**: the job was attempted and something in the data or on disk stopped it: an unreadable image,
  weights that do not fit, an output that exists (refused without ``--overwrite``).

Each class also derives from the built-in exception that code written before this module caught (``KeyError`` for
an unknown model, ``ValueError`` for a bad value, ``FileExistsError``...), so ``except ValueError`` keeps working.
A message names what was wrong and says what to do; it holds no newline. This module imports nothing heavy: the
command line uses it before torch loads.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "DeviceError",
    "EffsrError",
    "ImageReadError",
    "InvalidValueError",
    "MissingDependencyError",
    "OutputExistsError",
    "PrecisionError",
    "UnknownModelError",
    "UsageError",
    "WeightsError",
    "WeightsMismatchError",
]


def one_line(text: object) -> str:
    """``text`` on one line: its lines joined by ``; `` (by a space after a line ending in a colon)."""
    out = ""
    for part in (p.strip() for p in str(text).splitlines()):
        if part:
            out = part if not out else out + (" " if out.endswith(":") else "; ") + part
    return out


class EffsrError(Exception):
    """Base class: a problem the user can act on. ``str(err)`` is the whole one-line message."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = one_line(message)

    def __str__(self) -> str:
        return self.message


class UsageError(EffsrError):
    """What was asked cannot be done as written (exit status 2, as click's usage errors)."""

    exit_code = 2


class InvalidValueError(UsageError, ValueError):
    """A value (a size, a scale, a combination of options) that cannot be used."""


class UnknownModelError(UsageError, KeyError):
    """A model or weights name that is not in the zoo; the message lists the closest names."""

    def __str__(self) -> str:  # KeyError's own __str__ would wrap the message in quotes
        return self.message


class DeviceError(UsageError, ValueError):
    """A device that does not exist on this machine (``cuda`` without CUDA, ``cuda:3`` with two GPUs)."""


class PrecisionError(UsageError, ValueError):
    """A precision this backend, device or CPU cannot run at native speed (bf16 without AVX-512 BF16 or AMX, int8
    without VNNI, int8 on CUDA): the message says what to choose instead."""


class MissingDependencyError(UsageError, ImportError):
    """An optional package is needed for what was asked (onnxruntime, fvcore, matplotlib...)."""


class WeightsError(EffsrError, RuntimeError):
    """A weights file cannot be found, verified, read or loaded."""


class WeightsMismatchError(WeightsError):
    """A weights file holds a state_dict that does not fit the requested architecture."""


class BackendError(EffsrError, RuntimeError):
    """A backend cannot build a faithful engine for this model: its converter fails on it, or the engine it built
    differs from the eager forward by more than that precision's stated bound (checked at preparation)."""


class ImageReadError(EffsrError, RuntimeError):
    """An input image cannot be read (missing, unreadable, corrupt or not an image). The message names the file."""


class OutputExistsError(EffsrError, FileExistsError):
    """An output file exists and ``--overwrite`` (``overwrite=True``) was not given: nothing was written."""

    HINT = "pass --overwrite (overwrite=True in Python) to replace it, or choose another output"

    def __init__(self, path: object, what: str = "exists", hint: str = HINT) -> None:
        super().__init__(f"{path} {what}; {hint}")
        self.path = path
