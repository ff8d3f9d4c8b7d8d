"""Recipes: every shipped config validates; misspelt keys name themselves (at any depth, on one line); --set
overrides are typed; stages may name their own data."""

from __future__ import annotations

from pathlib import Path

import pytest

from effsr.models import get_spec
from effsr.train.preflight import published_weights
from effsr.train.recipe import RecipeError, apply_overrides, load_recipe, parse_recipe

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
SEED_MODELS = {"agdn", "lsanet", "ifadnet", "mdrn", "msn", "smoke"}


def _minimal(**extra: object) -> dict:
    return {
        "model": "rlfn",
        "train_data": [{"hr": "/data/HR"}],
        "stages": [{"iters": 10, "patch_size": 64, "batch_size": 2, "lr": 1e-3}],
        **extra,
    }


def test_every_seed_recipe_is_shipped() -> None:
    assert {p.stem for p in CONFIGS} >= SEED_MODELS


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_config_validates(path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.name
    get_spec(recipe.model).builder(**recipe.model_args)  # the constructor accepts the recipe's arguments
    if recipe.uses_teacher:
        # A teacher has weights in the zoo, or a record of where they are published (SAFMN-L).
        assert recipe.teacher is not None
        assert get_spec(recipe.teacher).weights or published_weights(recipe.teacher), "a teacher needs weights"
    assert "effsr train configs/" in path.read_text().split("\n\n")[0], "header comment shows the exact command"
    for st in recipe.stages:
        assert st.iters > 0 and st.patch_size % recipe.scale == 0
    if path.stem == "mdrn":
        assert [s.loss for s in recipe.stages] == ["l1", "charbonnier", "mse"]
        assert [s.patch_size for s in recipe.stages] == sorted(s.patch_size for s in recipe.stages)
    if path.stem in ("lsanet", "ifadnet"):  # their factsheets: "the large version of SAFMN" as teacher
        assert recipe.teacher == "safmn_l" and all(s.distill_weight > 0 for s in recipe.stages)


def test_misspelt_keys_are_named_with_suggestions(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as err:
        parse_recipe(_minimal(val_evry=5))
    assert "unknown key 'val_evry'" in str(err.value) and "'val_every'" in str(err.value)
    data = _minimal()
    data["stages"][0]["bach_size"] = 4
    with pytest.raises(RecipeError) as err:
        parse_recipe(data)
    assert "unknown key 'stages.0.bach_size'" in str(err.value) and "'batch_size'" in str(err.value)
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        "model: rlfn\ntrain_data: [{hr: /x, lr_dir: /y}]\n"
        "stages: [{iters: 1, patch_size: 64, batch_size: 1, lr: 1}]\n"
    )
    with pytest.raises(RecipeError, match=r"unknown key 'train_data\.0\.lr_dir'.*'lr'"):
        load_recipe(cfg)
    with pytest.raises(RecipeError, match="missing key 'model'"):
        parse_recipe({k: v for k, v in _minimal().items() if k != "model"})


def test_set_overrides_are_typed_and_validated(tmp_path: Path) -> None:
    cfg = tmp_path / "r.yaml"
    cfg.write_text(
        "model: rlfn\ntrain_data: [{hr: /x}]\n"
        "stages: [{iters: 10, patch_size: 64, batch_size: 2, lr: 1e-3},"
        " {iters: 5, patch_size: 96, batch_size: 2, lr: 1e-4}]\n"
    )
    r = load_recipe(cfg, ["stages.1.lr=2e-5", "stages.*.batch_size=8", "deterministic=true", "val_data=~/sets/Set5",
                          "model_args.num_blocks=2"])
    assert r.name == "r"
    assert r.stages[1].lr == 2e-5 and isinstance(r.stages[1].lr, float)
    assert [s.batch_size for s in r.stages] == [8, 8]
    assert r.deterministic is True and r.model_args == {"num_blocks": 2}
    assert r.val_data == str(Path("~/sets/Set5").expanduser())
    with pytest.raises(RecipeError, match="'seed'"):
        load_recipe(cfg, ["seed=abc"])
    with pytest.raises(RecipeError, match=r"unknown key 'stages\.0\.learning_rate'"):
        load_recipe(cfg, ["stages.0.learning_rate=1"])
    with pytest.raises(RecipeError, match="out of range"):
        load_recipe(cfg, ["stages.5.lr=1"])
    with pytest.raises(RecipeError, match="key=value"):
        apply_overrides({}, ["lr"])
    with pytest.raises(RecipeError, match="milestones"):
        load_recipe(cfg, ["stages.0.milestones=[20]"])


def test_environment_expansion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EFFSR_DATA", "/mnt/sr")
    r = parse_recipe(_minimal(train_data=[{"hr": "${EFFSR_DATA}/DIV2K/HR", "lr": "$EFFSR_DATA/DIV2K/X4"}]))
    assert (r.train_data[0].hr, r.train_data[0].lr) == ("/mnt/sr/DIV2K/HR", "/mnt/sr/DIV2K/X4")
    monkeypatch.delenv("EFFSR_DATA")
    r = parse_recipe(_minimal(val_data="${EFFSR_DATA}/Set5"))
    assert r.val_data is not None and r.val_data.endswith("/Set5") and "$" not in r.val_data
    monkeypatch.delenv("NO_SUCH_VAR_XYZ", raising=False)
    with pytest.raises(RecipeError, match="NO_SUCH_VAR_XYZ"):
        parse_recipe(_minimal(val_data="${NO_SUCH_VAR_XYZ}/Set5"))


def test_distillation_needs_a_teacher() -> None:
    data = _minimal()
    data["stages"][0]["distill_weight"] = 0.5
    with pytest.raises(RecipeError, match="teacher"):
        parse_recipe(data)
    assert parse_recipe({**data, "teacher": "mdrn"}).uses_teacher


def test_errors_are_one_line_and_hint_at_any_depth() -> None:
    data = _minimal()
    data["stages"][0]["bach_size"] = 4
    data["stages"][0]["train_data"] = [{"hrr": "/x"}]
    data["val_evry"] = 1
    with pytest.raises(RecipeError) as err:
        parse_recipe(data)
    msg = str(err.value)
    assert "\n" not in msg
    assert "unknown key 'stages.0.bach_size' (did you mean 'batch_size'" in msg
    assert "unknown key 'stages.0.train_data.0.hrr' (did you mean 'hr'" in msg
    assert "missing key 'stages.0.train_data.0.hr'" in msg
    assert "unknown key 'val_evry' (did you mean 'val_every'" in msg


def test_stages_may_name_their_own_data() -> None:
    data = _minimal(val_data="/sets/Set5")
    data["stages"].append({"iters": 5, "patch_size": 64, "batch_size": 2, "lr": 1e-4,
                           "train_data": [{"name": "B", "hr": "/b/HR", "limit": 7}], "val_data": "/sets/Set14"})
    r = parse_recipe(data)
    assert [s.hr for s in r.stage_train_data(0)] == ["/data/HR"]  # the top level
    assert [(s.name, s.hr, s.limit) for s in r.stage_train_data(1)] == [("B", "/b/HR", 7)]
    assert (r.stage_val_data(0), r.stage_val_data(1)) == ("/sets/Set5", "/sets/Set14")
    # With every stage's own data there is no need for a top-level train_data ...
    data.pop("train_data")
    data["stages"][0]["train_data"] = [{"hr": "/a/HR"}]
    assert [s.hr for s in parse_recipe(data).stage_train_data(0)] == ["/a/HR"]
    # ... but a stage with none anywhere is refused, naming it.
    del data["stages"][0]["train_data"]
    with pytest.raises(RecipeError, match=r"stages\.0 \(''\) has no train_data"):
        parse_recipe(data)
    # --set reaches a stage's data like any other key.
    data["stages"][0]["train_data"] = [{"hr": "/a/HR"}]
    r = parse_recipe(apply_overrides(data, ["stages.1.train_data.0.limit=3", "stages.0.val_data=/v"]))
    assert r.stage_train_data(1)[0].limit == 3 and r.stage_val_data(0) == "/v"
