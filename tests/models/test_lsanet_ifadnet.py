"""LSANet and IFADNet: spec test vectors, parameter counts, strict loading and detection of both forms.

Golden numbers come from shared/specs/LSANet.md and IFADNet.md (sections 1, 4 and 6).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import effsr
from effsr.models import get_spec
from effsr.models.blocks import EdgeConv3x3, RepBlock
from effsr.models.ifadnet import IFADNet, detect_ifadnet
from effsr.models.lsanet import LSANet, detect_lsanet
from effsr.weights import read_state_dict

from ..conftest import make_test_vector, require

NAMES = ["lsanet", "ifadnet"]
CLASSES = {"lsanet": LSANet, "ifadnet": IFADNet}

# Spec section 6: output of the official weights on the README section 4 test vector (40x48 -> 160x192).
TEST_VECTOR = {
    "lsanet": {
        "sum": 46015.8915,
        "abs_sum": 47830.2618,
        "pixels": {
            (0, 0): [0.031441, 0.407392, -0.064133],
            (-1, -1): [0.39299, 0.776168, 0.334993],
            (77, 101): [0.381964, 0.981891, 0.374009],
        },
    },
    "ifadnet": {
        "sum": 46078.6016,
        "abs_sum": 47703.6294,
        "pixels": {
            (0, 0): [-0.057667, 0.544547, -0.066143],
            (-1, -1): [0.344024, 0.816562, 0.355161],
            (77, 101): [0.545373, 1.16496, 0.482659],
        },
    },
}

# Spec sections 1 and 4 (deploy / training form; the training count includes the fixed masks).
PARAMS = {"lsanet": (138_492, 325_116, 5_832), "ifadnet": (162_972, 442_908, 8_748)}
NUM_KEYS = {"lsanet": 93, "ifadnet": 81}


def _weights_file(name: str, weights_dir: Path) -> Path:
    return require(weights_dir / get_spec(name).default_weights.file)


def _num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def official() -> dict[str, torch.nn.Module]:
    return {}


def _official(name: str, cache: dict[str, torch.nn.Module], weights_dir: Path) -> torch.nn.Module:
    if name not in cache:
        _weights_file(name, weights_dir)
        cache[name] = effsr.load(name)
    return cache[name]


@pytest.mark.parametrize("name", NAMES)
def test_test_vector(name: str, official, weights_dir: Path) -> None:
    model = _official(name, official, weights_dir)
    with torch.no_grad():
        y = model(make_test_vector())
    assert tuple(y.shape) == (1, 3, 160, 192)
    ref = TEST_VECTOR[name]
    # The spec's sums carry ~1e-3 of summation-order noise (float32 vs float64 accumulation over 92,160 values).
    assert y.double().sum().item() == pytest.approx(ref["sum"], abs=5e-3)
    assert y.double().abs().sum().item() == pytest.approx(ref["abs_sum"], abs=5e-3)
    for (h, w), values in ref["pixels"].items():
        # Pixels are printed with 6 significant digits: allow the rounding plus the project's 1e-5 target.
        assert torch.allclose(y[0, :, h, w], torch.tensor(values), atol=1e-5, rtol=0), (h, w)


@pytest.mark.parametrize("name", NAMES)
def test_param_counts(name: str) -> None:
    deploy, training, masks = PARAMS[name]
    assert get_spec(name).default_weights.params == deploy
    assert _num_params(effsr.build_model(name, deploy=True)) == deploy
    train_model = effsr.build_model(name)  # training form is the default for a new model
    assert _num_params(train_model) == training
    mask_params = [p for n, p in train_model.named_parameters() if n.endswith(".mask")]
    assert sum(p.numel() for p in mask_params) == masks
    assert all(not p.requires_grad for p in mask_params)


@pytest.mark.parametrize("name", NAMES)
def test_strict_loading(name: str, official, weights_dir: Path) -> None:
    path = _weights_file(name, weights_dir)
    sd = read_state_dict(path, "params_ema")
    assert len(sd) == NUM_KEYS[name]
    for model in (_official(name, official, weights_dir), effsr.load(name, path), effsr.load(weights=path)):
        assert isinstance(model, CLASSES[name])
        assert model.deploy is True
        assert model.scale == 4 and model.tiling.min_size == 15
        assert list(model.state_dict()) == list(sd)
        for k, v in model.state_dict().items():
            assert torch.equal(v, sd[k]), k
    # The mean is a non-persistent buffer (blocks.register_mean): never a state_dict entry.
    assert "mean" in dict(model.named_buffers()) and "mean" not in model.state_dict()
    with pytest.raises(ValueError, match="deploy"):
        effsr.load(name, path, deploy=False)


@pytest.mark.parametrize("name", NAMES)
def test_detection_of_both_forms(name: str, weights_dir: Path) -> None:
    expected = {"scale": 4, "in_channels": 3, "out_channels": 3, "num_features": 36, "num_blocks": 6}
    shipped = read_state_dict(_weights_file(name, weights_dir), "params_ema")
    assert effsr.detect_architecture(shipped) == (name, {**expected, "deploy": True})
    training = effsr.build_model(name).state_dict()
    assert any(".rbr_3x3_branch." in k for k in training)
    assert effsr.detect_architecture(training) == (name, {**expected, "deploy": False})
    # Each detector rejects the other architecture's keys.
    other = detect_ifadnet if name == "lsanet" else detect_lsanet
    assert other(shipped) is None and other(training) is None


def test_training_form_keys() -> None:
    """Spec section 4 table: one even-block RepBlock in training form, and the odd-block BSConvU form."""
    sd = effsr.build_model("lsanet").state_dict()
    shapes = {k[len("B2.c2_r.") :]: tuple(v.shape) for k, v in sd.items() if k.startswith("B2.c2_r.")}
    edge = {"k0": (36, 36, 1, 1), "b0": (36,), "scale": (36, 1, 1, 1), "bias": (36,), "mask": (36, 1, 3, 3)}
    expected = {
        "rbr_3x3_branch.weight": (36, 36, 3, 3),
        "rbr_3x3_branch.bias": (36,),
        "rbr_1x1_3x3_branch_1x1.weight": (72, 36, 1, 1),
        "rbr_1x1_3x3_branch_3x3.weight": (36, 72, 3, 3),
        **{f"rbr_conv1x1_{b}_branch.{k}": s for b in ("sbx", "sby", "lpl") for k, s in edge.items()},
    }
    assert shapes == expected
    assert [k for k in sd if k.startswith("B1.c2_r.")] == [
        "B1.c2_r.rbr_reparam.pw.weight",
        "B1.c2_r.rbr_reparam.dw.weight",
        "B1.c2_r.rbr_reparam.dw.bias",
    ]
    # Fixed masks (spec section 4), identical for every channel.
    sbx = sd["B2.c2_r.rbr_conv1x1_sbx_branch.mask"]
    assert torch.equal(sbx[5, 0], torch.tensor([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]]))
    assert torch.equal(sd["B2.c2_r.rbr_conv1x1_sby_branch.mask"][0, 0], sbx[0, 0].t())
    lpl = sd["B2.c2_r.rbr_conv1x1_lpl_branch.mask"]
    assert torch.equal(lpl[35, 0], torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]))


def test_edge_branch_pads_with_b0() -> None:
    """specs/README.md §5: the 1x1 output is padded with its own bias b0, not zeros (checked on a zero input)."""
    torch.manual_seed(0)
    branch = EdgeConv3x3("sobel_x", 4, 4)
    with torch.no_grad():
        branch.scale.normal_()
        y = branch(torch.zeros(1, 4, 5, 6))
    # A constant map convolved with a zero-sum mask gives just the bias, borders included.
    assert torch.allclose(y, branch.bias.view(1, 4, 1, 1).expand_as(y), atol=1e-6)


def test_repblock_needs_square_for_identity() -> None:
    with pytest.raises(ValueError, match="in_channels == out_channels"):
        RepBlock(8, 16)


@pytest.mark.parametrize("name", NAMES)
def test_training_form_backward(name: str) -> None:
    torch.manual_seed(0)
    model = effsr.build_model(name, num_features=8, num_blocks=2)
    model(torch.rand(1, 3, 16, 17)).square().mean().backward()
    scale = model.B2.c2_r.rbr_conv1x1_lpl_branch.scale
    assert scale.grad is not None and scale.grad.abs().sum() > 0
    assert model.B2.c2_r.rbr_conv1x1_lpl_branch.mask.grad is None
