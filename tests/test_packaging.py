"""Install anywhere: the licence the package declares is shipped, and the README's install steps do not depend on
this machine's local torch wheel (PyTorch's CPU index for CPU-only machines, the default wheels for CUDA)."""

from __future__ import annotations

import re
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def test_the_mit_licence_is_shipped() -> None:
    pyproject = (REPO / "pyproject.toml").read_text()  # (tomllib is Python 3.11+; effsr supports 3.10)
    assert 'license = "MIT"\n' in pyproject and 'license-files = ["LICENSE"]\n' in pyproject
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License") and "THE SOFTWARE IS PROVIDED \"AS IS\"" in text
    assert metadata.metadata("effsr")["License-Expression"] == "MIT"


def test_readme_install_works_without_the_local_wheel() -> None:
    readme = (REPO / "README.md").read_text()
    install = readme[readme.index("## Install"):readme.index("## Weights")]
    block = re.search(r"```bash\n(.*?)```", install, flags=re.S).group(1)
    lines = [ln.split("#")[0].strip() for ln in block.splitlines() if ln.split("#")[0].strip()]
    assert f".venv/bin/pip install torch --index-url {CPU_INDEX}" in lines  # CPU only
    assert ".venv/bin/pip install torch" in lines  # CUDA: the default wheels
    assert not any("torch==" in ln for ln in lines), "no pin to this machine's local wheel"
    assert '.venv/bin/pip install -e ".[all]"' in lines


def test_make_venv_takes_the_cpu_index() -> None:
    if shutil.which("make") is None:
        pytest.fail("make is needed for the project's two commands")
    dry = subprocess.run(["make", "-n", "-B", "venv", "VENV=/nonexistent/venv", f"TORCH_INDEX={CPU_INDEX}"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert f"pip install -q --index-url {CPU_INDEX} \"torch==" in dry
    plain = subprocess.run(["make", "-n", "-B", "venv", "VENV=/nonexistent/venv"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout
    assert "--index-url" not in plain  # here the local CPU wheel is found by pip's own configuration
