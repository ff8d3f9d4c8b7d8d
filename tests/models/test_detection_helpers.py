"""The two helpers every architecture's state_dict detector uses (effsr.models._registry)."""

from __future__ import annotations

import torch

from effsr.models._registry import count_numbered, upsampler_scale


def test_count_numbered_blocks() -> None:
    t = torch.zeros(1)
    assert count_numbered({"B1.w": t, "B2.w": t, "B2.b": t, "B10x.w": t}, "B") == 2
    assert count_numbered({"B1.w": t, "B3.w": t}, "B") is None  # a gap
    assert count_numbered({"c1.w": t}, "B") is None
    assert count_numbered({"feats.0.w": t, "feats.1.w": t}, "feats.", first=0) == 2
    assert count_numbered({"block_1.w": t, "blockx_2.w": t}, "block_") == 1


def test_upsampler_scale() -> None:
    assert upsampler_scale(48, 3) == 4 and upsampler_scale(27, 3) == 3 and upsampler_scale(12, 3) == 2
    assert upsampler_scale(50, 3) is None and upsampler_scale(3, 3) == 1 and upsampler_scale(2, 3) is None
