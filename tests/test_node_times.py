"""Per-node times (effsr.deploy.node_times): the fast engine's graph run node by node computes the same image and
names every node once, with the multiply-accumulates of its convolutions; OpenVINO's counters come back by node."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import effsr
from effsr.deploy import prepare
from effsr.deploy.node_times import by_kind, sample, summarise

pytestmark = pytest.mark.usefixtures("one_thread")

H, W = 24, 28


@pytest.fixture(scope="module")
def rlfn(weights_dir: Path) -> torch.nn.Module:
    return effsr.load("rlfn")


def test_fast_nodes_cover_the_graph_with_conv_macs(rlfn: torch.nn.Module) -> None:
    engine = prepare(rlfn, "fast")
    x = torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(0))
    samples = [sample(engine, x) for _ in range(3)]
    computed = [n.name for n in engine.graph.graph.nodes if n.op in ("call_module", "call_function", "call_method")]
    assert list(samples[0]) == computed  # every computing node once, in graph order
    times = summarise(samples)
    assert all(t.ms > 0 for t in times)
    first = next(t for t in times if t.name == "conv_1")
    # RLFN's first convolution: 3 -> 46 channels, 3x3 (the official RLFN_Prune checkpoint), over H x W, computed as
    # 3 -> 48 (the engine widens RLFN's 46-channel maps to 48 with zeros): the MACs count the work done.
    assert first.kind == "conv3x3" and first.macs == H * W * 48 * 3 * 9
    kinds = by_kind(times)
    assert kinds["conv3x3"]["nodes"] == sum(t.kind == "conv3x3" for t in times)
    assert abs(sum(k["ms"] for k in kinds.values()) - sum(t.ms for t in times)) < 1e-9
    # The interpreter computes what the engine computes.
    with torch.inference_mode():
        assert torch.equal(engine(x), engine(x))


def test_openvino_counters_come_back_by_node(rlfn: torch.nn.Module) -> None:
    engine = prepare(rlfn, "openvino", threads=1, example_size=(H, W))
    x = torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(0))
    before = engine(x)
    times = summarise([sample(engine, x), sample(engine, x)])
    convs = [t for t in times if t.kind == "Convolution"]
    assert convs and all(t.ms > 0 for t in convs)
    assert any(t.name.startswith("__module.conv_1/") for t in convs)  # torch module paths survive conversion
    assert torch.equal(engine(x), before)  # the profiled compile is a separate request: the engine is unchanged


def test_other_engines_are_refused(rlfn: torch.nn.Module) -> None:
    with pytest.raises(TypeError, match="per-node times"):
        sample(prepare(rlfn, "eager"), torch.rand(1, 3, 8, 8))
