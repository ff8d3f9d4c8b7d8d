"""Process-level settings for CPU inference that must be made before PyTorch (and its OpenMP runtime) loads.

PyTorch's Linux CPU wheels run their intra-op parallel regions on GNU OpenMP (libgomp). Between two regions the
worker threads spin for ``GOMP_SPINCOUNT`` iterations and then sleep on a futex; libgomp reads the variable once,
when it is loaded, and in this process layout it falls back to its short "throttled" spin (measured: a forward
behaves exactly as with ``GOMP_SPINCOUNT=1000``). An SR network of the challenge runs 40-400 small parallel
regions per forward, so the second core is put to sleep and woken up again between nearly every pair of
operators. With a spin of 300,000 iterations (libgomp's documented default for an unthrottled process; about 5 ms
of spinning after the last region here) RLFN's fast path at LR 256x256 on the 2-core CPU went from a median of
99.9 ms to 94.1 ms (benchmarks/RESULTS.md, "OpenMP spin"). Outputs are unchanged: it only decides how threads wait.

:func:`configure_openmp` sets the variable in ``os.environ`` when it can still take effect (PyTorch not yet
imported) and the user has not chosen a wait policy; the ``effsr`` command line calls it first thing, and
``effsr bench`` starts its ``fast`` workers with :func:`openmp_env`. Python API users who want the same set
``GOMP_SPINCOUNT=300000`` in the environment before importing torch.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

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
