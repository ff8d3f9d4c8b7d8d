"""SAFMN-L, the LSANet / IFADNet teacher: the facts of ../shared/specs/SAFMN-L.md (weights not mirrored here)."""

from __future__ import annotations

import re

import pytest
import torch

import effsr
from effsr.models import all_weight_records, get_spec
from effsr.profile import fvcore_counts
from effsr.train.preflight import published_weights

from ..conftest import ASSETS, require


def _spec_state_dict() -> dict[str, tuple[int, ...]]:
    """The 'Complete state_dict' listing of specs/SAFMN-L.md section 2: key -> shape."""
    text = require(ASSETS / "specs" / "SAFMN-L.md").read_text(encoding="utf-8")
    block = text.split("### Complete state_dict", 1)[1].split("```")[1]
    out = {}
    for line in block.strip().splitlines():
        key, shape = re.fullmatch(r"(\S+) \[([\d, ]+)\]", line.strip()).groups()  # type: ignore[union-attr]
        out[key] = tuple(int(v) for v in shape.split(","))
    return out


def test_keys_shapes_and_parameters_match_the_spec() -> None:
    model = effsr.build_model("safmn_l")
    expected = _spec_state_dict()
    assert len(expected) == 292  # the spec's count
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected
    assert sum(p.numel() for p in model.parameters()) == 5_600_816  # specs/SAFMN-L.md section 1
    assert effsr.detect_architecture(model.state_dict()) == ("safmn_l", {
        "scale": 4, "in_channels": 3, "out_channels": 3, "num_features": 128, "num_blocks": 16, "ffn_scale": 2.0})


def test_fvcore_macs_at_lr_256() -> None:
    """365.13 G with the project's fvcore counter: conv 365.03 G + nearest upsample 0.10 G (spec section 5)."""
    model = effsr.build_model("safmn_l").eval().requires_grad_(False)
    with torch.no_grad():
        macs, _, by_operator, _ = fvcore_counts(model, torch.rand(1, 3, 256, 256))
    assert round(macs / 1e9, 2) == 365.13
    assert round(by_operator["conv"] / 1e9, 2) == 365.03
    assert round(by_operator["upsample_nearest2d"] / 1e9, 2) == 0.10


def test_min_size_and_odd_sizes() -> None:
    model = effsr.build_model("safmn_l", num_features=8, num_blocks=1).eval()
    assert (model.tiling.min_size, model.tiling.stride_period) == (8, 8)  # the level-3 pool to (h // 8, w // 8)
    with torch.no_grad():
        for h, w in ((8, 8), (13, 21)):
            assert model(torch.rand(1, 3, h, w)).shape == (1, 3, 4 * h, 4 * w)


def test_the_published_weights_are_recorded_not_mirrored() -> None:
    """The record names the hub, the file and the sha256 of specs/SAFMN-L.md section 1; the zoo holds no copy."""
    (record,) = published_weights("safmn_l")
    assert record.file == "SAFMN_L_DF2K_x4.pth"
    assert record.sha256 == "51732de198284e2baea8b9598438ec1411af3b98fae12a6b6c87d7ebec07219d"
    assert "huggingface.co/Meloo/SAFMN" in record.url and record.url.endswith("/" + record.file)
    assert record.wrapper_key == "params" and record.params == 5_600_816
    assert get_spec("safmn_l").builder(**dict(record.kwargs)).scale == record.scale == 4
    assert not get_spec("safmn_l").weights and record not in all_weight_records()
    with pytest.raises(effsr.weights.WeightsError, match="no published weights"):
        effsr.load("safmn_l")
