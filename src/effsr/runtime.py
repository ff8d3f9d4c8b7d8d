"""Process-wide settings for CPU inference, all in one place: OpenMP spin, intra-op threads, glibc malloc tuning.

Nothing here imports torch at module level: the OpenMP setting must be made before PyTorch (and its OpenMP runtime)
loads, and the ``effsr`` command line imports this module first.

**OpenMP spin.** PyTorch's Linux CPU wheels run their intra-op parallel regions on GNU OpenMP (libgomp). Between
two regions the worker threads spin for ``GOMP_SPINCOUNT`` iterations and then sleep on a futex; libgomp reads the
variable once, when it is loaded, and in this process layout it falls back to its short "throttled" spin
(measured: a forward behaves exactly as with ``GOMP_SPINCOUNT=1000``). An SR network of the challenge runs 40-400
small parallel regions per forward, so the second core is put to sleep and woken up again between nearly every pair
of operators. With a spin of 300,000 iterations (libgomp's documented default for an unthrottled process; about 5 ms
of spinning after the last region here) RLFN's fast path at LR 256x256 on the 2-core CPU went from a median of
99.9 ms to 94.1 ms (benchmarks/RESULTS.md, "OpenMP spin"). Outputs are unchanged: it only decides how threads wait.

:func:`configure_openmp` sets the variable in ``os.environ`` when it can still take effect (PyTorch not yet
imported) and the user has not chosen a wait policy; the ``effsr`` command line calls it first thing, and
``effsr bench`` starts its ``fast`` workers with :func:`openmp_env`. Python API users who want the same set
``GOMP_SPINCOUNT=300000`` in the environment before importing torch.

**Threads.** :func:`set_threads` sets PyTorch's intra-op threads (``effsr.deploy.prepare(threads=...)``);
:func:`single_thread` runs preparation and checking work on one thread.

**Memory.** :func:`tune_glibc_malloc` keeps freed memory in the heap (the fast backend's ``tune_malloc``).

**The machine.** :func:`cpu_name` and :func:`cpu_flags` read what the CPU is (benchmark and profile reports, the
native kernels' build key); :func:`onednn_isa_cap` what the environment lets oneDNN use of it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import platform
import subprocess
import sys
from collections.abc import Iterator, Mapping

# libgomp's documented default spin count (GCC manual, "GOMP_SPINCOUNT"): 300,000 when the process is not throttled.
OPENMP_SPIN_COUNT = 300_000
# Variables with which a user (or a launcher) already chose how OpenMP threads wait: never override them.
_USER_WAIT_VARIABLES = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")


def openmp_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (default ``os.environ``) plus ``GOMP_SPINCOUNT``, unless a wait policy is already set there."""
    base = dict(os.environ if env is None else env)
    if not any(var in base for var in _USER_WAIT_VARIABLES):
        base["GOMP_SPINCOUNT"] = str(OPENMP_SPIN_COUNT)
    return base


def configure_openmp() -> bool:
    """Set ``GOMP_SPINCOUNT`` for this process if it can still take effect; returns whether it did.

    It cannot once ``torch`` is imported (libgomp has read its environment), and is left alone when the user set
    ``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY``.
    """
    if "torch" in sys.modules or any(var in os.environ for var in _USER_WAIT_VARIABLES):
        return False
    os.environ["GOMP_SPINCOUNT"] = str(OPENMP_SPIN_COUNT)
    return True


def set_threads(threads: int | None) -> None:
    """Set PyTorch's CPU intra-op threads (process-wide) when ``threads`` is given; ``None`` leaves them alone."""
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
    import torch

    torch.set_num_threads(threads)


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run the block with one intra-op thread (restored afterwards): for preparation and checking work whose speed
    does not matter, where on a busy machine an OpenMP team waiting for a descheduled thread makes each small op
    take milliseconds."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def tune_glibc_malloc() -> bool:
    """Make glibc keep freed memory for reuse instead of unmapping it (process-wide; returns whether it applied).

    An SR forward allocates and frees hundreds of feature maps of several MB. glibc serves blocks above its dynamic
    mmap threshold (at most 32 MiB) with fresh ``mmap`` calls and trims the heap top after frees, so every forward
    page-faults (and the kernel zero-fills) its working set again: about 200,000 faults per forward, a third of MSN's
    eager time at 256x256 and 40% of RLFN's fast path at 640x360 (48-channel maps of 44 MB) here. ``M_MMAP_MAX = 0``
    serves every block from the heap, a 2 GiB ``M_TRIM_THRESHOLD`` keeps it and a 64 MiB ``M_TOP_PAD`` grows it in
    large steps: later forwards reuse warm memory. The price: the process keeps its heap at the peak it reached
    (RLFN at 640x360: peak RSS 585 MB instead of 518 MB). Does nothing (returns False) outside glibc.
    """
    if _MALLOC_STATE["tuned"] is not None:
        return bool(_MALLOC_STATE["tuned"])
    ok = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            # mallopt parameter numbers from glibc's malloc.h; the value is a C int, so the largest threshold is
            # 2**31 - 1 bytes (a larger Python int would be silently truncated by ctypes, to 0 for 2**32 multiples).
            m_trim_threshold, m_top_pad, m_mmap_max = -1, -2, -4
            ok = (bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
                  and bool(libc.mallopt(m_top_pad, 64 * 2**20)))
        except (OSError, AttributeError):
            ok = False
    _MALLOC_STATE["tuned"] = ok
    return ok


_MALLOC_STATE: dict[str, bool | None] = {"tuned": None}


def _cpuinfo_field(key: str) -> str | None:
    """The value of the first ``key : value`` line of ``/proc/cpuinfo`` (Linux), else None."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                name, sep, value = line.partition(":")
                if sep and name.strip() == key:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    """The CPU model name: ``/proc/cpuinfo`` (x86), else ``lscpu`` (ARM hosts list it there), else ``platform``."""
    name = _cpuinfo_field("model name")
    if name:
        return name
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine()


# Environment variables with which oneDNN (inside PyTorch and OpenVINO) is capped to an instruction set
# (oneDNN's "CPU dispatcher control" guide; tests/conftest.py sets the first).
ONEDNN_ISA_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
# The oneDNN ISA names of that guide below which there are no VNNI dot products.
ONEDNN_ISAS_WITHOUT_VNNI = ("SSE41", "AVX", "AVX2", "AVX512_CORE")


def onednn_isa_cap() -> str | None:
    """The ISA oneDNN is capped to by the environment (upper case), or None when it may use all of the CPU."""
    for name in ONEDNN_ISA_VARIABLES:
        value = os.environ.get(name, "").strip().upper()
        if value and value not in ("ALL", "DEFAULT"):
            return value
    return None


def cpu_flags() -> str:
    """The CPU's feature flags as ``/proc/cpuinfo`` lists them (space-separated), else ``platform.processor()``."""
    return _cpuinfo_field("flags") or platform.processor()
