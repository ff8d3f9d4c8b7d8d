"""Where the shared assets live: ``$EFFSR_ASSETS``, else ``../shared`` beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path


def assets_dir() -> Path:
    """The shared assets folder (specs, weights, data, reference).

    ``$EFFSR_ASSETS`` wins; otherwise ``../shared`` relative to the working directory, then relative to
    the source checkout (for editable installs run from elsewhere).
    """
    env = os.environ.get("EFFSR_ASSETS")
    if env:
        return Path(env).expanduser()
    cwd_guess = Path.cwd().parent / "shared"
    if cwd_guess.is_dir():
        return cwd_guess
    return Path(__file__).resolve().parents[3] / "shared"


def data_root() -> Path:
    """Benchmark data root: ``$EFFSR_DATA`` or ``<assets>/data``."""
    env = os.environ.get("EFFSR_DATA")
    return Path(env).expanduser() if env else assets_dir() / "data"


def weights_mirror() -> Path:
    return assets_dir() / "weights"
