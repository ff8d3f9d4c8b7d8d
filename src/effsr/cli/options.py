"""The options several commands share, declared once (a table: one ``Annotated`` alias per flag), and the helpers
every command uses for the same job: lists (``a,b`` or repeated flags), outputs (``-`` is standard output, refuse
an existing file unless ``--overwrite``), tables that keep their width when piped, and setting up a model.

A command declares ``model: options.Model = None``; a new flag shared by several commands is one more alias here.
Values are checked while the command line is parsed (typer ``parser=`` / ``min=``), so a bad value is a usage error
(status 2) that names the flag, before any model loads.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import InvalidValueError, UsageError
from ..sizes import parse_image_size, parse_memory_size

if TYPE_CHECKING:
    from rich.console import Console
    from torch import nn


class BackendChoice(str, Enum):
    """Inference engines (``effsr.deploy.BACKENDS``; docs/deploy.md)."""

    eager = "eager"
    fast = "fast"
    onnxruntime = "onnxruntime"
    openvino = "openvino"


class PrecisionChoice(str, Enum):
    """Compute precisions (``effsr.deploy.precision.PRECISION_NAMES``; costs and checks in docs/deploy.md)."""

    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"
    int8 = "int8"


# ------------------------------------------------------------------------------------------------------ parsers


def parse_device(text: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:N``, checked against this machine (a usage error names what is available)."""
    name = str(text).strip().lower()
    if name == "cpu":
        return name
    if name != "cuda" and not (name.startswith("cuda:") and name[5:].isdigit()):
        raise typer.BadParameter(f"expected cpu, cuda or cuda:N, got {text!r}")
    import torch

    if not torch.cuda.is_available():
        raise typer.BadParameter(f"{text!r}: CUDA is not available on this machine; use --device cpu")
    if ":" in name and int(name[5:]) >= torch.cuda.device_count():
        raise typer.BadParameter(f"{text!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return name


def _check(parse: Any, text: str) -> str:
    """Run a library parser on an option's text; its ``ValueError`` becomes click's usage error for the flag."""
    try:
        parse(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return text


def parse_lr_size(text: str) -> str:
    """Check an LR size flag (``640x360``, W x H, or ``256`` for a square); the command parses it again."""
    return _check(lambda t: parse_image_size(t, square=True), text)


def _sizes(text: str) -> str:
    return _check(lambda t: [parse_image_size(p, square=True) for p in split_list(t)], text)


def _memory(text: str) -> str:
    return _check(parse_memory_size, text)


# ------------------------------------------------------------------------------------------------------ the table

Model = Annotated[str | None, typer.Option(
    "--model", "-m", help="Zoo model or weights name (`effsr zoo` lists both: rlfn, mdrn_x3, ...).")]
Models = Annotated[list[str] | None, typer.Option(
    "--model", "-m", help="Zoo model(s) or weights name(s): -m rlfn,span or -m rlfn -m span (see `effsr zoo`).")]
Weights = Annotated[Path | None, typer.Option(
    "--weights", "-w", exists=True, dir_okay=False, help="Weights file (.pth or .safetensors; architecture detected).")]
Scale = Annotated[int | None, typer.Option(
    "--scale", min=1, help="Pick the zoo weights of this scale (-m mdrn --scale 3 = -m mdrn_x3).")]
Device = Annotated[str, typer.Option("--device", parser=parse_device, help="cpu, cuda or cuda:N.")]
Backend = Annotated[BackendChoice, typer.Option("--backend", help="Inference engine (docs/deploy.md).")]
Precision = Annotated[PrecisionChoice, typer.Option(
    "--precision", help="Compute precision (default fp32; int8 for an int8 weights file): fp32; bf16 (CPUs with "
                        "AVX-512 BF16 or AMX, CUDA); int8 (CPUs with VNNI; fast and openvino backends); fp16 (CUDA). "
                        "docs/deploy.md states each one's cost in dB.")]
Calibration = Annotated[Path | None, typer.Option(
    "--calibration", exists=True, help="int8: a folder of images to calibrate on (default: 8 B100 LR crops; an int8 "
                                       "weights file carries its own).")]
Threads = Annotated[int | None, typer.Option("--threads", min=1, help="CPU threads (default: PyTorch's).")]
LrSize = Annotated[str, typer.Option(
    "--lr-size", parser=parse_lr_size, help="LR input size W x H, e.g. 640x360 (or 256).")]
LrSizes = Annotated[str, typer.Option(
    "--lr-size", parser=_sizes, help="LR input size(s) W x H: 256x256,640x360.")]
MaxMemory = Annotated[str | None, typer.Option(
    "--max-memory", parser=_memory, help="Working-set budget for automatic tiling, e.g. 2G, 800MiB (default 1.5 GiB).")]
Json = Annotated[Path | None, typer.Option(
    "--json", help="Write the results as JSON to this file ('-': standard output; tables then go to stderr).")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")]


# ------------------------------------------------------------------------------------------------------ helpers


def split_list(values: Iterable[str] | str | None) -> list[str]:
    """``["rlfn,span", "agdn"]`` -> ``["rlfn", "span", "agdn"]``: a list flag takes ``a,b`` and repeats alike
    (duplicates dropped, order kept)."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for v in values:
        for part in str(v).split(","):
            part = part.strip()
            if part and part not in out:
                out.append(part)
    return out


def is_stdout(path: Path | str | None) -> bool:
    return path is not None and str(path) == "-"


def check_outputs(paths: Iterable[Path | str | None], *, overwrite: bool) -> None:
    """Refuse (before any work) every output file that exists, unless ``overwrite``; ``-`` and None pass."""
    from ..files import check_output

    for p in paths:
        if p is not None and not is_stdout(p):
            check_output(p, overwrite=overwrite)


def check_image_folder(folder: Path | None, *, overwrite: bool) -> None:
    """Refuse an output folder that already holds images (for commands whose file names are known only while they
    run: sub-images, saved SR images), unless ``overwrite``."""
    from ..errors import OutputExistsError
    from ..imageio import list_images

    if folder is not None and not overwrite and folder.is_dir() and list_images(folder, recursive=True):
        raise OutputExistsError(folder, "already holds images")


def write_json_output(path: Path | str, payload: Any, *, overwrite: bool) -> str:
    """Write ``payload`` as JSON to ``path`` (atomically) or to standard output for ``-``; returns where."""
    if is_stdout(path):
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        sys.stdout.flush()
        return "standard output"
    from ..files import write_json

    return str(write_json(path, payload, overwrite=overwrite))


def table_console(*, stderr: bool = False) -> Console:
    """A rich console for tables and summaries. When the stream is not a terminal (a pipe, a file, CI logs) rich
    would fold every table to 80 columns: give it room instead (``COLUMNS`` still wins)."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if (stream.isatty() or os.environ.get("COLUMNS")) else 1000
    return Console(stderr=stderr, width=width, soft_wrap=width is not None, highlight=False)


def need_model(model: str | None, weights: Path | None) -> None:
    if model is None and weights is None:
        raise typer.BadParameter("give --model NAME and/or --weights FILE (`effsr zoo` lists the models)",
                                 param_hint="'--model' / '--weights'")


def check_model(name: str) -> str:
    """The display name of ``-m NAME`` (the architecture or weights name as the zoo spells it; a weights file's stem),
    or :class:`effsr.errors.UnknownModelError` with the closest names, before anything loads."""
    if Path(name).suffix in (".pth", ".pt", ".safetensors", ".ckpt") or os.sep in name:
        return Path(name).stem  # a file given as -m: effsr.load reads it as weights
    from ..models import resolve_model_name

    spec, record = resolve_model_name(name)
    return record.name if record is not None else spec.name


def load_model(model: str | None, weights: Path | None, *, scale: int | None = None,
               device: str | None = "cpu") -> nn.Module:
    """``effsr.load`` with the CLI's ``--scale``: the zoo record (or the file's model) of that scale."""
    import effsr

    kwargs = {"scale": scale} if scale is not None else {}
    return effsr.load(model, weights, device=device, **kwargs)


def prepare(net: nn.Module, *, backend: str, device: str, threads: int | None = None, precision: str | None = None,
            compile: bool = False, calibration: Path | None = None) -> nn.Module:
    """``effsr.deploy.prepare``; a combination the engine cannot run (fp16 on onnxruntime, compile without the fast
    backend, bf16 on a CPU without BF16) is a usage error naming the flags."""
    from ..deploy import prepare as prepare_engine

    try:
        return prepare_engine(net, backend, device=device, threads=threads, precision=precision, compile=compile,
                              calibration=calibration)
    except (ValueError, NotImplementedError) as exc:
        if isinstance(exc, UsageError):
            raise
        raise InvalidValueError(f"cannot run --backend {backend} --precision {precision}"
                                f"{' --compile' if compile else ''}: {exc}") from exc
