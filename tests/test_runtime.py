"""effsr.runtime: the command line sets OpenMP's spin before torch loads, and never overrides a user's choice."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from effsr.runtime import OPENMP_SPIN_COUNT, openmp_env

PROBE = (
    "import json, os, sys; import effsr.cli; "
    "print(json.dumps({'torch_loaded_early': 'torch' in sys.modules, 'spin': os.environ.get('GOMP_SPINCOUNT')}))"
)


def _probe(**env: str) -> dict:
    base = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**base, **env}, capture_output=True, text=True,
                         check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cli_sets_spin_before_torch_loads() -> None:
    got = _probe()
    assert got == {"torch_loaded_early": False, "spin": str(OPENMP_SPIN_COUNT)}


def test_user_choice_wins() -> None:
    assert _probe(GOMP_SPINCOUNT="1000")["spin"] == "1000"
    assert _probe(OMP_WAIT_POLICY="passive")["spin"] is None
    assert openmp_env({"OMP_WAIT_POLICY": "active"}) == {"OMP_WAIT_POLICY": "active"}
    assert openmp_env({})["GOMP_SPINCOUNT"] == str(OPENMP_SPIN_COUNT)


def test_package_attributes_load_lazily() -> None:
    import effsr

    assert callable(effsr.load) and "rlfn" in effsr.list_models()
    assert {"load", "build_model", "list_models"} <= set(dir(effsr))


def test_threads_knob_validates_and_restores() -> None:
    import pytest
    import torch

    from effsr.runtime import set_threads, single_thread

    before = torch.get_num_threads()
    try:
        set_threads(1)
        assert torch.get_num_threads() == 1
        set_threads(None)  # leaves them alone
        assert torch.get_num_threads() == 1
        for bad in (0, -2, 1.5, True):
            with pytest.raises(ValueError, match="threads"):
                set_threads(bad)  # type: ignore[arg-type]
    finally:
        torch.set_num_threads(before)
    with single_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_one_cpu_reader_for_name_and_flags(monkeypatch) -> None:
    from effsr import runtime

    assert isinstance(runtime.cpu_name(), str) and runtime.cpu_name()
    lines = "processor\t: 0\nvmx flags\t: ept\nflags\t\t: fpu sse avx2 fma\nmodel name\t: Some CPU @ 2.0GHz\n"
    import io

    monkeypatch.setattr("builtins.open", lambda *a, **k: io.StringIO(lines))
    assert runtime.cpu_name() == "Some CPU @ 2.0GHz"
    assert runtime.cpu_flags() == "fpu sse avx2 fma"  # the "flags" line, not "vmx flags"
