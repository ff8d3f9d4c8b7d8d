"""The seed recipes hold every training value their factsheets state, and the headers quote them truly.

:data:`FACTS` is transcribed by hand from ``../shared/factsheets/*.txt``: one row per stated value, with the phrase
that states it. It is the golden source and is never derived from the recipes. Each row is checked twice: the
phrase occurs in that factsheet (whitespace-normalised), and the shipped recipe, as loaded, has the value.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from effsr.models import get_spec
from effsr.recipes import list_recipes, load_packaged_recipe, recipe_text
from effsr.train.recipe import Recipe

from ..conftest import ASSETS, require

SEEDS = {"agdn": "AGDN.txt", "lsanet": "LSANet.txt", "ifadnet": "IFADNet.txt", "mdrn": "MDRN.txt", "msn": "MSN.txt"}
HALVED_1M = (100_000, 500_000, 800_000, 900_000, 950_000)


@dataclass(frozen=True)
class Fact:
    """One value a factsheet states: ``stage`` None for the whole recipe (model, teacher)."""

    factsheet: str
    recipe: str
    stage: int | None
    key: str
    value: Any
    phrase: str


def _facts(factsheet: str, recipe: str, stage: int | None, phrase: str, **values: Any) -> list[Fact]:
    """Rows that share one phrase. Keys ``limit_X`` stand for ``limit:X`` (the subset of the source named X)."""
    return [Fact(factsheet, recipe, stage, k.replace("limit_", "limit:"), v, phrase) for k, v in values.items()]


A, L, I, M, S = "AGDN.txt", "LSANet.txt", "IFADNet.txt", "MDRN.txt", "MSN.txt"
FACTS: tuple[Fact, ...] = tuple(
    # ---- AGDN.txt, "Training strategy"
    _facts(A, "agdn", None, "The proposed AGDN has 4 AGDBs, in which the number of feature channels is set to 24.",
           num_blocks=4, num_features=24)
    + _facts(A, "agdn", 0, "1. Pretraining on the DIV2K and Flickr2K datasets.", datasets={"DIV2K", "Flickr2K"})
    + _facts(A, "agdn", 0, "HR patches of size $256 \\times 256$ are randomly cropped from HR images",
             patch_size=256)
    + _facts(A, "agdn", 0, "$256 \\times 256$ are randomly cropped from HR images, and the mini-batch size is set "
             "to 64.", batch_size=64)
    + _facts(A, "agdn", 0, "The model is trained by minimizing L1 loss function with Adam optimizer.",
             loss="l1", optimizer="adam")
    + _facts(A, "agdn", 0, "The initial learning rate is set to $2 \\times 10^{-3}$ and halved at {100k, 500k, "
             "800k, 900k, 950k}-iteration.", lr=2e-3, halved_at=HALVED_1M)
    + _facts(A, "agdn", 0, "The total number of iterations is 1000k.", iters=1_000_000)
    + _facts(A, "agdn", 1, "2. Finetuning on 800 images of DIV2K and the first 10k images of LSDIR.",
             datasets={"DIV2K", "LSDIR"}, limit_DIV2K=800, limit_LSDIR=10_000)
    + _facts(A, "agdn", 1, "HR patch size and mini-batch size are set to $384 \\times 384$ and 32, respectively.",
             patch_size=384, batch_size=32)
    + _facts(A, "agdn", 1, "The model is fine-tuned by minimizing the L2 loss function.", loss="mse")
    + _facts(A, "agdn", 1, "The initial learning rate is set to $5 \\times 10^{-4}$ and halved at 50k iteration.",
             lr=5e-4, halved_at=(50_000,))
    + _facts(A, "agdn", 1, "The total number of iterations is 100k.", iters=100_000)
    # ---- LSANet.txt, "Training Strategy"
    + _facts(L, "lsanet", None, "Three LFEM and RSAB blocks are stacked alternately in our student network, and the "
             "feature channel is 36.", num_blocks=6, num_features=36)
    + _facts(L, "lsanet", None, "During the inference phase, all branches are combined to a simplified $3 \\times 3$ "
             "convolution", training_form="multi-branch")
    + _facts(L, "lsanet", None, "which makes the large version of SAFMN [10] as teacher and the proposed network as "
             "student", teacher="safmn_l")
    + [f for s in (0, 1) for f in (
        _facts(L, "lsanet", s, "We apply two stages to train our network on DIV2K [1] and the first 10K data of "
               "LSDIR [7].", datasets={"DIV2K", "LSDIR"}, limit_LSDIR=10_000)
        + _facts(L, "lsanet", s, "We randomly augment the input with a flip and 90-degree rotation", hflip=True,
                 rot=True)
        + _facts(L, "lsanet", s, "The mini-batch size is fixed to 64 in all stages.", batch_size=64))]
    + _facts(L, "lsanet", 0, "We minimizing the L1 loss (student prediction and ground-truth) and distillation loss "
             "(student prediction and teacher prediction)", loss="l1", distill=True)
    + _facts(L, "lsanet", 0, "to optimize the student network by Adam optimizer [5] for 1000k iterations.",
             optimizer="adam", iters=1_000_000)
    + _facts(L, "lsanet", 0, "The initial learning rate is set to $2 \\times 10^{-3}$ , which will be halved at 100k, "
             "500k, 800k, 900k, 950k.", lr=2e-3, halved_at=HALVED_1M)
    + _facts(L, "lsanet", 0, "The HR patch size is 256 during this stage.", patch_size=256)
    + _facts(L, "lsanet", 1, "We initialize the weight of the student network with the pre-trained student in "
             "Stage 1.", init_from_previous_stage=True)
    + _facts(L, "lsanet", 1, "We enlarge the HR patch size to 640 and minimize MSE loss instead of L1 loss.",
             patch_size=640, loss="mse")
    # ---- IFADNet.txt, "Training Strategy"
    + _facts(I, "ifadnet", None, "Our student model IFADNet has 6 blocks(3 BFEB and 3 RFMB).", num_blocks=6)
    + _facts(I, "ifadnet", None, "The channel of our network is 36.", num_features=36)
    + _facts(I, "ifadnet", None, "For inference, the output is computed in a simplified 3×3 convolution",
             training_form="multi-branch")
    + _facts(I, "ifadnet", None, "We use the large version of pre-trained SAFMN [7] as our teacher model.",
             teacher="safmn_l")
    + [f for s in (0, 1) for f in (
        _facts(I, "ifadnet", s, "We use DIV2K [1] and the first 10K images of LS-DIR [4] to train our model.",
               datasets={"DIV2K", "LSDIR"}, limit_LSDIR=10_000)
        + _facts(I, "ifadnet", s, "The training dataset is augmented with horizontal flips and 90-degree rotations.",
                 hflip=True, rot=True))]
    + _facts(I, "ifadnet", 0, "1. Training from scratch. The HR patch size is 256.", patch_size=256)
    + _facts(I, "ifadnet", 0, "The mini-batch size is set to 64.", batch_size=64)
    + _facts(I, "ifadnet", 0, "The model is trained by minimizing L1 loss and distillation loss(also L1 loss) with "
             "Adam optimizer [2].", loss="l1", distill=True, distill_loss="l1", optimizer="adam")
    + _facts(I, "ifadnet", 0, "The initial learning rate is set to 2×10^{-3} and halved at $\\{100k, 500k, 800k, "
             "900k, 950k\\}$ -iteration.", lr=2e-3, halved_at=HALVED_1M)
    + _facts(I, "ifadnet", 0, "The total number of iterations is 1000k.", iters=1_000_000)
    + _facts(I, "ifadnet", 1, "2. Finetuning with larger patches. The HR patch size is set to 640.", patch_size=640)
    + _facts(I, "ifadnet", 1, "The model is finetuned with MSE loss.", loss="mse")
    + _facts(I, "ifadnet", 1, "Other settings are the same as in the previous step.", batch_size=64, distill=True,
             distill_loss="l1", optimizer="adam", lr=2e-3, halved_at=HALVED_1M, iters=1_000_000)
    # ---- MDRN.txt, "1.3. Training strategy" (the challenge model MDRN-S)
    + _facts(M, "mdrn", None, "The proposed MDRN has 8 EADB, in which the number of feature channels is set to 28.",
             num_blocks=8, num_features=28)
    + _facts(M, "mdrn", 0, "1. Pretraining on DIV2K [1].", datasets={"DIV2K"})
    + _facts(M, "mdrn", 0, "HR patches of size 384×384 are randomly cropped from HR images, and the mini-batch size "
             "is set to 64.", patch_size=384, batch_size=64)
    + _facts(M, "mdrn", 0, "The model is trained by minimizing L1 loss function with Adam optimizer.", loss="l1",
             optimizer="adam")
    + _facts(M, "mdrn", 0, "The initial learning rate is set to 2×10^{-3} and halved at $\\{100k, 500k, 800k, 900k, "
             "950k\\}$ -iteration. The total number of iterations is 1000k.", lr=2e-3, halved_at=HALVED_1M,
             iters=1_000_000)
    + _facts(M, "mdrn", 1, "2. Finetuning on 800 images of DIV2K and the first 10k images of LSDIR.",
             datasets={"DIV2K", "LSDIR"}, limit_DIV2K=800, limit_LSDIR=10_000)
    + _facts(M, "mdrn", 1, "HR patch size and mini-batch size are set to 384×384 and 64, respectively.",
             patch_size=384, batch_size=64)
    + _facts(M, "mdrn", 1, "is fine-tuned by minimizing Charbonnier loss function.", loss="charbonnier")
    + _facts(M, "mdrn", 1, "The initial learning rate is set to 5×10^{-4} and halved at $\\{100k, 500k, 800k, 900k, "
             "950k\\}$ -iteration. The total number of iterations is 1000k.", lr=5e-4, halved_at=HALVED_1M,
             iters=1_000_000)
    + _facts(M, "mdrn", 2, "Finetuning on 800 images of DIV2K and the first 10k images of LSDIR again.",
             datasets={"DIV2K", "LSDIR"}, limit_DIV2K=800, limit_LSDIR=10_000)
    + _facts(M, "mdrn", 2, "HR patch size and the mini-batch size are set to 480×480 and 64, respectively.",
             patch_size=480, batch_size=64)
    + _facts(M, "mdrn", 2, "The model is fine-tuned by minimizing L2 loss function.", loss="mse")
    + _facts(M, "mdrn", 2, "The initial learning rate is set to 2×10^{-4} and halved at $\\{100k, 300k, 600k\\}$ "
             "-iteration. The total number of iterations is 650k.", lr=2e-4, halved_at=(100_000, 300_000, 600_000),
             iters=650_000)
    # ---- MSN.txt, "2.2.1 Training Details"
    + _facts(S, "msn", 0, "Pretraining on DIV2K and the first 10k images of LSDIR.", datasets={"DIV2K", "LSDIR"},
             limit_LSDIR=10_000)
    + _facts(S, "msn", 0, "Pretraining on DIV2K and the first 10k images of LSDIR. HR patch size and mini-batch size "
             "are set to 384×384 and 64, respectively.", patch_size=384, batch_size=64)
    + _facts(S, "msn", 0, "The model is trained by minimizing L1 loss function with Adam optimizer.", loss="l1",
             optimizer="adam")
    + _facts(S, "msn", 0, "The initial learning rate is set to 2×10^{-3} and halved at 100k iteration. The total "
             "number of iterations is 400k.", lr=2e-3, halved_at=(100_000,), iters=400_000)
    + _facts(S, "msn", 1, "In finetun stage, HR patch size and the mini-batch size are set to 480×480 and 64, "
             "respectively.", patch_size=480, batch_size=64)
    + _facts(S, "msn", 1, "The model is fine-tuned by minimizing L2 loss function.", loss="mse")
    + _facts(S, "msn", 1, "The initial learning rate is set to 5×10^{-5} and halved at 100k iteration. The total "
             "number of iterations is 400k.", lr=5e-5, halved_at=(100_000,), iters=400_000)
)


def _normalise(text: str) -> str:
    return " ".join(text.split())


@cache
def _factsheet(name: str) -> str:
    return _normalise(require(ASSETS / "factsheets" / name).read_text(encoding="utf-8"))


@cache
def _recipe(name: str) -> Recipe:
    return load_packaged_recipe(name)


def _model_args(recipe: Recipe) -> dict[str, Any]:
    """The model's constructor arguments: the class defaults, the builder's defaults, then the recipe's model_args."""
    builder = get_spec(recipe.model).builder
    out: dict[str, Any] = {}
    for fn in (type(builder(**recipe.model_args)), builder):
        out |= {k: p.default for k, p in inspect.signature(fn).parameters.items() if p.default is not p.empty}
    return out | dict(recipe.model_args)


def value_in_recipe(recipe: Recipe, fact: Fact) -> Any:
    """The recipe's value for a fact's key, in the table's terms."""
    key = fact.key
    if key in ("num_features", "num_blocks"):
        return _model_args(recipe)[key]
    if key == "training_form":
        return "deploy" if _model_args(recipe).get("deploy") else "multi-branch"
    if key == "teacher":
        return recipe.teacher
    assert fact.stage is not None, fact
    st = recipe.stages[fact.stage]
    sources = recipe.stage_train_data(fact.stage)
    if key == "datasets":
        # A source counts as a dataset only when its folder says so too (a mislabelled source fails here).
        return {src.name for src in sources if src.name and src.name.lower() in src.hr.lower()}
    if key.startswith("limit:"):
        named = [src for src in sources if src.name == key.split(":", 1)[1]]
        return named[0].limit if len(named) == 1 else f"{len(named)} sources named so"
    if key == "loss":
        return {"l2": "mse"}.get(st.loss, st.loss)
    if key == "distill":
        return st.distill_weight > 0 and recipe.teacher is not None
    if key == "halved_at":
        return tuple(st.milestones) if st.schedule == "multistep" and st.gamma == 0.5 else None
    if key == "init_from_previous_stage":
        return fact.stage > 0 and st.init is None
    return getattr(st, key)


def _id(fact: Fact) -> str:
    where = "all" if fact.stage is None else f"s{fact.stage + 1}"
    return f"{fact.recipe}-{where}-{fact.key}"


@pytest.mark.parametrize("fact", FACTS, ids=[_id(f) for f in FACTS])
def test_the_phrase_is_in_the_factsheet(fact: Fact) -> None:
    assert SEEDS[fact.recipe] == fact.factsheet
    assert _normalise(fact.phrase) in _factsheet(fact.factsheet)


@pytest.mark.parametrize("fact", FACTS, ids=[_id(f) for f in FACTS])
def test_the_recipe_has_the_value(fact: Fact) -> None:
    assert value_in_recipe(_recipe(fact.recipe), fact) == fact.value, fact.phrase


def test_the_table_covers_every_seed_recipe_and_stage() -> None:
    assert set(SEEDS) <= set(list_recipes())
    assert len({(f.recipe, f.stage, f.key) for f in FACTS}) == len(FACTS), "one row per value"
    for name in SEEDS:
        recipe = _recipe(name)
        stages = {f.stage for f in FACTS if f.recipe == name and f.stage is not None}
        assert stages == set(range(len(recipe.stages))), name  # as many stages as the factsheet describes
        for s in stages:
            # Every factsheet states these for every stage (directly or as "the same as in the previous step").
            keys = {f.key for f in FACTS if f.recipe == name and f.stage == s}
            assert {"patch_size", "batch_size", "loss"} <= keys, (name, s)
    assert len(FACTS) == 116  # the count reported to the lead; a new row changes it on purpose


def _header(name: str) -> tuple[str, str]:
    """A recipe's header comment, split at 'Not stated': (stated part, the rest), '#' marks removed."""
    lines = []
    for line in recipe_text(name).splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    text = " ".join(lines)
    stated, sep, rest = text.partition("Not stated in the factsheet")
    assert sep, f"{name}: the header lists the values the factsheet does not state"
    return stated, rest


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_headers_quote_the_factsheets_and_nothing_stated_is_assumed(name: str) -> None:
    text = recipe_text(name)
    assert "assumed" not in text.lower(), "a value is either quoted from the factsheet or listed as not stated"
    stated, rest = _header(name)
    assert f"../shared/factsheets/{SEEDS[name]}" in stated
    quotes = re.findall(r'"([^"]+)"', stated)
    assert len(quotes) >= 2
    for q in quotes:  # what the header presents as the factsheet's words is the factsheet's words
        assert _normalise(q) in _factsheet(SEEDS[name]), q
    # Quotes in the rest may cite a sibling factsheet (LSANet borrows IFADNet's stage 2), never invented text.
    for q in re.findall(r'"([^"]+)"', rest):
        assert any(_normalise(q) in _factsheet(f) for f in SEEDS.values()), q


def test_configs_in_a_checkout_are_the_shipped_recipes() -> None:
    configs = Path(__file__).resolve().parents[2] / "configs"
    for name in list_recipes():
        assert (configs / f"{name}.yaml").read_text(encoding="utf-8") == recipe_text(name), name
