"""effsr.deploy.reparameterize_model: merging the LSANet/IFADNet RepBlocks keeps the outputs (spec section 4).

The shipped official files are the merged form, so the merged key set must equal theirs exactly.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

import effsr
from effsr.deploy import reparameterize_model
from effsr.models import get_spec
from effsr.models.blocks import RepBlock
from effsr.weights import read_state_dict

from .conftest import make_test_vector, require

NAMES = ["lsanet", "ifadnet"]
# Spec section 4: 6 (LSANet) / 9 (IFADNet) RepBlocks are multi-branch in training form.
NUM_MULTI_BRANCH = {"lsanet": 6, "ifadnet": 9}


def _training_model(name: str, seed: int = 0) -> nn.Module:
    """A training-form model whose edge-branch scales and every bias are non-trivial, so every branch matters.

    The default init starts scale/bias at ~1e-3 (branches nearly off); scales ~ N(0, 0.25) and biases ~ N(0, 0.1)
    make a wrong merge of any branch (or of the b0-filled border) visible far above the 1e-5 tolerance.
    """
    torch.manual_seed(seed)
    model = effsr.build_model(name)
    with torch.no_grad():
        for key, p in model.named_parameters():
            if key.endswith(".scale"):
                p.normal_(0.0, 0.25)
            elif key.endswith((".bias", ".b0")):
                p.normal_(0.0, 0.1)
    return model.eval()


def _multi_branch_blocks(model: nn.Module) -> list[RepBlock]:
    return [m for m in model.modules() if isinstance(m, RepBlock) and not m.separable]


@pytest.mark.parametrize("name", NAMES)
def test_outputs_kept(name: str) -> None:
    model = _training_model(name)
    assert len(_multi_branch_blocks(model)) == NUM_MULTI_BRANCH[name]
    merged = reparameterize_model(model)
    torch.manual_seed(1)
    # The test vector plus an odd-sized batch of 2 (borders and the ESA's odd strides); 15x15 is the minimum size.
    for x in (make_test_vector(), torch.rand(2, 3, 15, 21)):
        with torch.no_grad():
            y_train, y_merged = model(x), merged(x)
        assert (y_train - y_merged).abs().max().item() <= 1e-5
    # Every branch matters: switching any one edge branch off in a single block moves the output well beyond 1e-5.
    for branch in ("sbx", "sby", "lpl"):
        ablated = copy.deepcopy(model)
        with torch.no_grad():
            getattr(ablated.B2.c4, f"rbr_conv1x1_{branch}_branch").scale.zero_()
            assert (ablated(x) - y_train).abs().max().item() > 1e-4, branch


@pytest.mark.parametrize("name", NAMES)
def test_merged_keys_equal_shipped(name: str, weights_dir: Path) -> None:
    shipped = read_state_dict(require(weights_dir / get_spec(name).default_weights.file), "params_ema")
    merged = reparameterize_model(_training_model(name)).state_dict()
    assert set(merged) == set(shipped)
    assert {k: tuple(v.shape) for k, v in merged.items()} == {k: tuple(v.shape) for k, v in shipped.items()}
    # The merged model is the deploy form: the shipped weights load into it strictly.
    deploy = reparameterize_model(_training_model(name))
    deploy.load_state_dict(shipped, strict=True)
    assert deploy.deploy is True
    assert all(m.deploy for m in deploy.modules() if isinstance(m, RepBlock))


@pytest.mark.parametrize("name", NAMES)
def test_copy_and_idempotence(name: str) -> None:
    model = _training_model(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    merged = reparameterize_model(model)
    # The original is untouched: same keys, same values, still multi-branch.
    assert merged is not model
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert model.deploy is False and len(_multi_branch_blocks(model)) == NUM_MULTI_BRANCH[name]
    # Idempotent: merging again (copy or in place, or via the model's own method) changes nothing.
    again = reparameterize_model(merged)
    merged_sd = merged.state_dict()
    for other in (again, reparameterize_model(merged, inplace=True)):
        sd = other.state_dict()
        assert list(sd) == list(merged_sd)
        assert all(torch.equal(sd[k], merged_sd[k]) for k in merged_sd)
    merged.reparameterize()
    assert all(torch.equal(merged.state_dict()[k], merged_sd[k]) for k in merged_sd)


@pytest.mark.parametrize("name", NAMES)
def test_model_method_matches_function(name: str) -> None:
    model = _training_model(name)
    expected = reparameterize_model(model).state_dict()
    assert reparameterize_model(model, inplace=True) is model
    got = model.state_dict()
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    other = _training_model(name)
    other.reparameterize()
    assert all(torch.equal(other.state_dict()[k], expected[k]) for k in expected)


def test_merged_params_keep_requires_grad() -> None:
    model = _training_model("lsanet")
    model.requires_grad_(False)
    merged = reparameterize_model(model)
    assert not any(p.requires_grad for p in merged.parameters())


def test_plain_module_unchanged() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.GELU())
    out = reparameterize_model(model)
    assert out is not model
    assert all(torch.equal(out.state_dict()[k], v) for k, v in model.state_dict().items())
    assert reparameterize_model(model, inplace=True) is model
