"""The training recipes shipped with effsr (package data, so an installed wheel carries them).

``agdn``, ``lsanet``, ``ifadnet``, ``mdrn`` (MDRN-S) and ``msn`` are the seed models' factsheet recipes; ``rlfn``
the NTIRE 2024 baseline; ``smoke`` a from-scratch run sized for a 2-core CPU. Each file's header says where every
value comes from. In a checkout, ``configs/<name>.yaml`` are links to these files (one source of truth).

``effsr train --recipe NAME`` trains one; ``effsr recipes`` lists them and ``effsr recipes copy NAME`` writes one
out to edit.
"""

from __future__ import annotations

import difflib
import os
from importlib import resources
from pathlib import Path

import yaml

from ..errors import OutputExistsError
from ..files import write_text
from ..train.recipe import Recipe, RecipeError, load_recipe_text

__all__ = ["copy_recipe", "list_recipes", "load_packaged_recipe", "recipe_summary", "recipe_text"]

_SUFFIX = ".yaml"


def list_recipes() -> list[str]:
    """Names of the shipped recipes, sorted."""
    return sorted(p.name[: -len(_SUFFIX)] for p in resources.files(__name__).iterdir() if p.name.endswith(_SUFFIX))


def recipe_text(name: str) -> str:
    """The YAML text of a shipped recipe; an unknown name raises :class:`RecipeError` with the closest names."""
    known = list_recipes()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.4)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise RecipeError(f"no shipped recipe '{name}'{hint}; shipped: {', '.join(known)}")
    return (resources.files(__name__) / f"{name}{_SUFFIX}").read_text(encoding="utf-8")


def recipe_summary(name: str) -> str:
    """What a recipe trains: its header's first paragraph up to the first colon (``AGDN (NTIRE 2024 ESR ...)``)."""
    words: list[str] = []
    for line in recipe_text(name).splitlines():
        text = line.lstrip("#").strip()
        if not line.startswith("#") or not text:
            break
        words.append(text)
    return " ".join(words).split(": ", 1)[0]


def load_packaged_recipe(name: str, overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate a shipped recipe (as :func:`effsr.train.recipe.load_recipe` does a file)."""
    return load_recipe_text(recipe_text(name), overrides, source=f"recipe '{name}'", name=name)


def copy_recipe(name: str, dest: str | os.PathLike[str] | None = None, *, overwrite: bool = False) -> Path:
    """Write a shipped recipe to ``dest`` (a file, or a folder to hold ``<name>.yaml``; default ``./<name>.yaml``).

    An existing file is kept unless ``overwrite``: :class:`~effsr.errors.OutputExistsError` (a ``FileExistsError``)
    says so. The file is written atomically (:func:`effsr.files.write_text`).
    """
    text = recipe_text(name)
    target = Path(dest).expanduser() if dest is not None else Path(f"{name}{_SUFFIX}")
    if target.is_dir():
        target = target / f"{name}{_SUFFIX}"
    if target.exists() and not overwrite:
        raise OutputExistsError(target, hint="pass --overwrite to replace it")
    yaml.safe_load(text)  # never write out a file that does not parse
    return write_text(target, text)
