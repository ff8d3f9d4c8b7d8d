"""The recipes ship in the wheel; ``effsr recipes`` lists, shows and copies them; ``effsr train --recipe NAME``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from typer.testing import CliRunner

from effsr.cli import app
from effsr.recipes import list_recipes, load_packaged_recipe, recipe_text
from effsr.train.recipe import load_recipe

REPO = Path(__file__).resolve().parents[2]
SHIPPED = {"agdn", "lsanet", "ifadnet", "mdrn", "msn", "rlfn", "smoke"}


def test_the_wheel_carries_the_recipes(tmp_path: Path) -> None:
    src = tmp_path / "checkout"  # a copy, so the build leaves nothing in the checkout
    src.mkdir()
    for item in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / item, src / item)
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(src)], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("effsr-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"effsr/recipes/{n}.yaml" for n in SHIPPED} <= names
    assert "effsr/recipes/__init__.py" in names and "effsr/cli/recipes.py" in names


def test_list_show_and_copy(tmp_path: Path) -> None:
    assert set(list_recipes()) == SHIPPED
    listing = CliRunner().invoke(app, ["recipes"])
    assert listing.exit_code == 0
    for name in SHIPPED:
        assert f"\n{name} " in "\n" + listing.stdout
    assert "mdrn      model mdrn_s    3 stage(s): l1_p384, charbonnier_p384, l2_p480" in listing.stdout
    shown = CliRunner().invoke(app, ["recipes", "show", "agdn"])
    assert shown.exit_code == 0 and shown.stdout == recipe_text("agdn")

    # Copy out, refuse to overwrite (the edited file is kept), overwrite on request.
    first = CliRunner().invoke(app, ["recipes", "copy", "mdrn", str(tmp_path)])
    target = tmp_path / "mdrn.yaml"
    assert first.exit_code == 0 and first.stdout.strip() == f"wrote {target}"
    assert load_recipe(target) == load_packaged_recipe("mdrn")
    target.write_text(target.read_text().replace("iters: 650000", "iters: 1000"))
    again = CliRunner().invoke(app, ["recipes", "copy", "mdrn", str(target)])
    assert again.exit_code == 2
    assert again.stderr.strip() == f"error: {target} exists; pass --overwrite to replace it"
    assert "iters: 1000\n" in target.read_text()
    forced = CliRunner().invoke(app, ["recipes", "copy", "mdrn", str(target), "--overwrite"])
    assert forced.exit_code == 0 and target.read_text() == recipe_text("mdrn")
    unknown = CliRunner().invoke(app, ["recipes", "copy", "mdrm"])
    assert unknown.exit_code == 2 and "no shipped recipe 'mdrm' (did you mean mdrn" in unknown.stderr


def test_train_a_shipped_recipe_by_name(tiny_run: list[str], tmp_path: Path) -> None:
    tiny = ["--set=model_args={num_features: 8, mid_channels: 8, esa_channels: 4, num_blocks: 1}", "--set=threads=null"]
    run = tmp_path / "smoke"
    result = CliRunner().invoke(app, ["train", "--recipe", "smoke", *tiny_run, *tiny, "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert (run / "final.safetensors").is_file() and load_recipe(run / "recipe.yaml").name == "smoke"
    both = CliRunner().invoke(app, ["train", str(REPO / "configs" / "smoke.yaml"), "--recipe", "smoke"])
    assert both.exit_code == 2 and both.stderr.count("\n") == 1 and "not both" in both.stderr
