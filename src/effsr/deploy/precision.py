"""Compute precisions: their names, which backend runs which, and whether this machine has the kernels for them.

A precision is a command-line name (``fp32``, ``fp16``, ``bf16``, ``int8``). The float ones map to a torch dtype
(:data:`FLOAT_DTYPES`); ``int8`` is a quantized graph (:mod:`effsr.deploy.quantize`, :mod:`effsr.deploy.openvino`)
whose input and output stay float32.

:func:`check_precision` is asked before any engine is built, so that a choice this machine cannot run fast is one
clear line (:class:`effsr.errors.PrecisionError`, exit status 2) instead of a silent slow path:

* ``bf16`` on CPU needs native bfloat16 arithmetic: AVX-512 BF16 (``avx512_bf16``) or AMX (``amx_bf16``); without
  them oneDNN converts bfloat16 to float32 around float32 arithmetic (its data-types guide,
  https://oneapi-src.github.io/oneDNN/dev_guide_data_types.html), slower than fp32 itself;
* ``int8`` on CPU needs VNNI dot products: AVX-512 VNNI (``avx512_vnni``), AVX-VNNI (``avx_vnni``) or AMX
  (``amx_int8``); without them int8 convolutions are no faster than fp32;
* ``fp16`` is a CUDA precision. On CPU it runs (the float16 path is tested there) but without fast kernels, so it
  is allowed with a warning that says so: the documented fallback, not a silent one;
* on CUDA, ``fp16`` and ``bf16`` run on the eager and fast backends; ``int8`` is CPU only.

``$EFFSR_CPU_FLAGS`` (space- or comma-separated) replaces the flags read from ``/proc/cpuinfo``: it lets a test or a
user see what a CPU without BF16 or VNNI would be told.
"""

from __future__ import annotations

import logging
import os

import torch

from ..errors import PrecisionError

log = logging.getLogger(__name__)

# Every precision by its command-line name, in the order tables list them.
PRECISION_NAMES = ("fp32", "fp16", "bf16", "int8")
# The float precisions' torch dtypes (int8 graphs take and return float32).
FLOAT_DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# Which precisions each backend runs (on some device; check_precision adds the device's and CPU's conditions).
BACKEND_PRECISIONS: dict[str, tuple[str, ...]] = {
    "eager": ("fp32", "fp16", "bf16"),
    "fast": ("fp32", "fp16", "bf16", "int8"),
    "onnxruntime": ("fp32",),
    "openvino": ("fp32", "bf16", "int8"),
}
# The CPU flags (as /proc/cpuinfo names them) that give native kernels for a precision; any one suffices.
CPU_FLAGS_NEEDED: dict[str, tuple[str, ...]] = {
    "bf16": ("avx512_bf16", "amx_bf16"),
    "int8": ("avx512_vnni", "avx_vnni", "amx_int8"),
}
CPU_FLAGS_ENV = "EFFSR_CPU_FLAGS"


def precision_name(precision: str | torch.dtype) -> str:
    """The command-line name of a precision given by name or by torch dtype; unknown ones raise PrecisionError."""
    if isinstance(precision, torch.dtype):
        for name, dtype in FLOAT_DTYPES.items():
            if dtype == precision:
                return name
    elif isinstance(precision, str) and precision.strip().lower() in PRECISION_NAMES:
        return precision.strip().lower()
    raise PrecisionError(f"unknown precision {precision!r}; choose from {', '.join(PRECISION_NAMES)}")


def cpu_feature_flags() -> frozenset[str]:
    """This CPU's feature flags (``$EFFSR_CPU_FLAGS`` if set, else ``/proc/cpuinfo``), lower case."""
    text = os.environ.get(CPU_FLAGS_ENV)
    if text is None:
        return real_cpu_flags()
    return frozenset(f.lower() for f in text.replace(",", " ").split())


def real_cpu_flags() -> frozenset[str]:
    """This CPU's feature flags as ``/proc/cpuinfo`` lists them, ignoring ``$EFFSR_CPU_FLAGS``: for choices that
    change the numbers (which kernels run), not only what a user is told."""
    from ..runtime import cpu_flags

    return frozenset(cpu_flags().lower().split())


def cpu_supports(precision: str, flags: frozenset[str] | None = None) -> bool:
    """Whether this CPU has native kernels for ``precision`` (fp32 and fp16 always "run"; see the module doc)."""
    needed = CPU_FLAGS_NEEDED.get(precision_name(precision))
    if needed is None:
        return True
    have = cpu_feature_flags() if flags is None else flags
    return any(f in have for f in needed)


def check_precision(precision: str | torch.dtype, backend: str, device: str | torch.device = "cpu",
                    flags: frozenset[str] | None = None) -> str:
    """The precision's name if ``backend`` on ``device`` runs it at native speed here, else PrecisionError (one line
    saying what to choose instead). fp16 on CPU passes with a warning (no fast kernels; the module docstring)."""
    name = precision_name(precision)
    dev = torch.device(device)
    allowed = BACKEND_PRECISIONS.get(backend)
    if allowed is not None and name not in allowed:
        runs = [b for b, ps in BACKEND_PRECISIONS.items() if name in ps]
        raise PrecisionError(f"the {backend} backend runs {', '.join(allowed)}, not {name}; "
                             f"use --backend {' or '.join(runs)} for {name}")
    if dev.type == "cuda":
        if name == "int8":
            raise PrecisionError("int8 runs on CPU only; on CUDA use --precision fp16 or bf16")
        return name
    if name == "fp16":
        log.warning("fp16 on CPU has no fast kernels and runs slower than fp32; use --precision bf16 (CPUs with "
                    "AVX-512 BF16 or AMX) or fp32")
        return name
    if not cpu_supports(name, flags):
        needed = " or ".join(CPU_FLAGS_NEEDED[name])
        raise PrecisionError(f"--precision {name} needs a CPU with {needed} (this one has none of them, so {name} "
                             f"would run slower than fp32); use --precision fp32")
    return name
