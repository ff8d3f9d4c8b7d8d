"""effsr.deploy.passes: the ordered, named pipeline; each pass reports how often it fired and can be disabled.

* ``effsr bench --explain`` prints the pass list with per-pass counts for every zoo model (built at LR 32x32).
* The counts of the zoo models are what they were when the split pipeline was checked node for node and bit for bit
  against the single-file engine it replaced: a change that alters the deploy graph has to change them on purpose.
* Leaving any one pass out keeps the output exact (passes/README.md: every pass is an identity on its own).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

import effsr
from effsr.cli import app
from effsr.deploy import FP32_TOLERANCE, build_deploy_graph, native, prepare
from effsr.deploy.checks import example_image
from effsr.deploy.ops import FusedConv2d
from effsr.deploy.passes import DISABLE_ENV, NATIVE_PASSES, PASS_NAMES, PIPELINE
from effsr.models import get_spec, list_models

ZOO = [name for name in list_models() if get_spec(name).weights]
STATUSES = ("ran", "disabled", "not applicable")

# Fire counts (summed over the steps of a pass) of each zoo model's fast graph, on a CPU with oneDNN; the native
# passes only where effsr's kernels exist for this CPU (otherwise they do not apply and fire 0 times).
EXPECTED_COUNTS: dict[str, dict[str, int]] = {
    "rlfn": {"normalize": 52, "fold_scalars_into_convs": 2, "fuse_conv_add": 5, "fuse_conv_unary": 16,
             "fuse_conv_mul": 4, "inplace_elementwise": 4, "pad_channels": 18, "pack_weights": 39, "native_esa": 12,
             "native_pixel_shuffle": 1},
    "agdn": {"normalize": 174, "fold_constants": 3, "fuse_layer_norms": 8, "fold_scalars_into_convs": 1,
             "rewrite_reductions": 16, "split_concat_convs": 5, "split_chunked_convs": 4, "fuse_conv_add": 21,
             "fuse_conv_unary": 61, "fuse_conv_mul": 4, "inplace_elementwise": 48, "pack_weights": 188,
             "native_pixel_shuffle": 1},
    "lsanet": {"normalize": 54, "fold_constants": 3, "fold_scalars_into_convs": 1, "split_concat_convs": 1,
               "fuse_conv_add": 4, "fuse_conv_unary": 22, "fuse_conv_mul": 3, "inplace_elementwise": 6,
               "pack_weights": 58, "native_pixel_shuffle": 1},
    "ifadnet": {"normalize": 46, "fold_constants": 3, "fold_scalars_into_convs": 1, "split_concat_convs": 1,
                "fuse_conv_add": 3, "fuse_conv_unary": 22, "inplace_elementwise": 10, "pack_weights": 50,
                "native_pixel_shuffle": 1},
    "mdrn_s": {"normalize": 342, "fold_constants": 3, "fold_scalars_into_convs": 1, "rewrite_reductions": 24,
               "split_concat_convs": 9, "fuse_conv_add": 41, "fuse_conv_unary": 113, "inplace_elementwise": 72,
               "pack_weights": 348, "native_pixel_shuffle": 1},
    "msn": {"normalize": 455, "fold_constants": 19, "fuse_layer_norms": 8, "merge_separable_depthwise": 81,
            "fold_scalars_into_convs": 1, "rewrite_reductions": 24, "split_concat_convs": 8, "fuse_conv_add": 41,
            "fuse_conv_unary": 113, "inplace_elementwise": 78, "pack_weights": 373, "native_pixel_shuffle": 1},
    "span": {"normalize": 23, "fold_constants": 3, "fold_scalars_into_convs": 1, "split_concat_convs": 1,
             "fuse_conv_unary": 12, "inplace_elementwise": 12, "pack_weights": 25, "native_pixel_shuffle": 1},
    "safmnpp": {"normalize": 33, "split_chunked_convs": 6, "fuse_conv_add": 6, "fuse_conv_unary": 6,
                "inplace_elementwise": 19, "pack_weights": 38, "native_pixel_shuffle": 1},
    "mdrn": {"normalize": 342, "fold_constants": 3, "fold_scalars_into_convs": 1, "rewrite_reductions": 24,
             "split_concat_convs": 9, "fuse_conv_add": 41, "fuse_conv_unary": 113, "inplace_elementwise": 72,
             "pack_weights": 348, "native_pixel_shuffle": 1},
}

pytestmark = pytest.mark.usefixtures("one_thread")


def _expected(name: str) -> dict[str, int]:
    counts = {p: EXPECTED_COUNTS[name].get(p, 0) for p in PASS_NAMES}
    if native.library() is None:
        counts.update(dict.fromkeys(NATIVE_PASSES, 0))
    return counts


_ROW = re.compile(r"^\s+(\d+)\s+(\w+)\s+(\w+)\s+(\d+)\s+(ran|disabled|not applicable)\b")
_HEAD = re.compile(r"^(\w+): fast deploy graph at LR 32x32 \(WxH\), float32, (\d+) nodes, "
                   r"max abs vs eager ([0-9.e+-]+)")


def test_explain_prints_every_pass_with_its_count_for_every_zoo_model(weights_dir: Path) -> None:
    result = CliRunner().invoke(app, ["bench", "--model", ",".join(ZOO), "--lr-size", "32x32", "--threads", "1",
                                      "--explain"])
    assert result.exit_code == 0, result.output
    sections: dict[str, list[tuple[str, int, str]]] = {}
    current = None
    for line in result.output.splitlines():
        if m := _HEAD.match(line):
            current = m.group(1)
            assert int(m.group(2)) > 0 and float(m.group(3)) <= FP32_TOLERANCE, line
            sections[current] = []
        elif (m := _ROW.match(line)) and current is not None:
            sections[current].append((m.group(2), int(m.group(4)), m.group(5)))
    assert list(sections) == ZOO, result.output
    for name, rows in sections.items():
        assert [r[0] for r in rows] == [p.name for p in PIPELINE], name  # the whole list, in order
        assert all(status in STATUSES for _, _, status in rows)
        counts = dict.fromkeys(PASS_NAMES, 0)
        for pass_name, fired, _ in rows:
            counts[pass_name] += fired
        if name in EXPECTED_COUNTS:
            assert counts == _expected(name), name


def test_explain_rejects_an_unknown_model() -> None:
    result = CliRunner().invoke(app, ["bench", "--model", "nosuchnet", "--explain"])
    assert result.exit_code != 0


class _Everything(nn.Module):
    """A small module on which every non-native pass fires (the RLFN-, MSN-, AGDN- and MDRN-shaped pieces)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.head = nn.Conv2d(3, 46, 3, padding=1)
        self.c1 = nn.Conv2d(46, 46, 3, padding=1)
        self.c5 = nn.Conv2d(46, 46, 1)
        self.a1 = nn.Conv2d(46, 16, 1)
        self.a2 = nn.Conv2d(16, 16, 3, stride=2)
        self.a4 = nn.Conv2d(16, 46, 1)
        self.pw = nn.Conv2d(46, 8, 1, bias=False)
        self.dw1 = nn.Conv2d(8, 8, (3, 1), padding=(1, 0), groups=8, padding_mode="reflect")
        self.dw2 = nn.Conv2d(8, 8, (1, 3), padding=(0, 1), groups=8, padding_mode="reflect")
        self.w = nn.Parameter(torch.rand(8) + 0.5)
        self.b = nn.Parameter(torch.rand(8))
        self.expand = nn.Conv2d(8, 16, 1, bias=False)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
        self.fuse = nn.Conv2d(16, 12, 3, padding=1)
        self.register_buffer("mean", torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x * 255.0)
        s = F.leaky_relu(self.c1(h) + h, 0.05)
        y = self.c5(s)
        c = self.a1(y)
        u = F.interpolate(F.max_pool2d(self.a2(c), 3, 2), size=y.shape[2:], mode="bilinear", align_corners=False)
        g = y * torch.sigmoid(self.a4(u + c)) + h
        t = self.dw2(self.dw1(self.pw(g)))
        mu = t.mean(1, keepdim=True)
        v = (t - mu).pow(2).mean(1, keepdim=True)
        t = (t - mu) / torch.sqrt(v + 1e-6)
        t = self.w[:, None, None] * t + self.b[:, None, None]
        t = t + t.sum(3, keepdim=True).sum(2, keepdim=True) / (t.shape[2] * t.shape[3])
        a, b = self.dw(self.expand(t)).chunk(2, dim=1)
        out = self.fuse(torch.cat([F.gelu(a), b], dim=1))
        return F.pixel_shuffle(out, 2) / 255.0 + self.mean.to(dtype=x.dtype)


def _error(module: nn.Module, graph: nn.Module, x: torch.Tensor) -> float:
    with torch.inference_mode():
        ref = module(x)
        got = graph(x.contiguous(memory_format=torch.channels_last))
    assert got.shape == ref.shape
    return float((got - ref).abs().max()) / max(1.0, float(ref.abs().max()))


def test_every_pass_can_be_disabled_and_the_output_stays_exact() -> None:
    module = _Everything().eval()
    x = example_image(3, 23, 29)
    full = build_deploy_graph(module, x)
    optional = [p for p in PASS_NAMES if p not in NATIVE_PASSES]
    fired = full.pass_report.counts()
    assert all(fired[p] > 0 for p in optional), fired  # every pass has something to do here
    assert _error(module, full, x) <= 2e-6
    for name in optional:
        graph = build_deploy_graph(module, x, disable_passes=(name,))
        report = graph.pass_report
        assert report.disabled == (name,) and report.fired(name) == 0
        assert all(r.status == "disabled" for r in report.records if r.name == name)
        assert _error(module, graph, x) <= 2e-6, name


def test_native_passes_can_be_disabled_on_rlfn(weights_dir: Path) -> None:
    model = effsr.load("rlfn")
    x = example_image(3, 40, 36)
    if native.library() is None:
        graph = build_deploy_graph(model, x)
        assert all(r.status == "not applicable" for r in graph.pass_report.records if r.name in NATIVE_PASSES)
        return
    for name in NATIVE_PASSES:
        graph = build_deploy_graph(model, x, disable_passes=(name,))
        assert graph.pass_report.fired(name) == 0
        assert _error(model, graph, x) <= 5e-5, name


def test_disabling_by_environment_and_unknown_names(monkeypatch: pytest.MonkeyPatch) -> None:
    module = _Everything().eval()
    x = example_image(3, 17, 19)
    monkeypatch.setenv(DISABLE_ENV, "pad_channels, fuse_conv_mul")
    engine = prepare(module, "fast", example_size=(17, 19), disable_passes=("inplace_elementwise",),
                     tune_malloc=False)
    assert engine.pass_report.disabled == ("fuse_conv_mul", "inplace_elementwise", "pad_channels")
    assert engine.fused and engine.max_abs_vs_eager <= FP32_TOLERANCE
    with torch.inference_mode():
        assert float((engine(x) - module(x)).abs().max()) <= 1e-5
    monkeypatch.setenv(DISABLE_ENV, "no_such_pass")
    with pytest.raises(ValueError, match="no_such_pass"):
        prepare(module, "fast", tune_malloc=False)
    monkeypatch.delenv(DISABLE_ENV)
    with pytest.raises(ValueError, match="unknown pass"):
        build_deploy_graph(module, x, disable_passes=("fuse_everything",))
    with pytest.raises(ValueError, match="fast backend"):
        prepare(module, "eager", disable_passes=("pad_channels",))


def test_each_pass_checked_on_its_own_names_the_culprit(monkeypatch: pytest.MonkeyPatch) -> None:
    """``check_each_pass`` runs the example after every pass: clean on the composite module, and a broken pass is
    named."""
    module = _Everything().eval()
    x = example_image(3, 23, 29)
    build_deploy_graph(module, x, check_each_pass=True)
    from effsr.deploy.passes import pipeline

    original = pipeline.fuse_conv_unary

    def broken(gm: torch.fx.GraphModule) -> int:
        fired = original(gm)
        for m in gm.modules():
            if isinstance(m, FusedConv2d) and m.out_channels == 12 and m.bias is not None:
                m.bias.add_(0.01)  # a wrong rewrite: the output conv's bias moved (0.01 after the folded / 255)
        return fired

    monkeypatch.setattr(pipeline, "fuse_conv_unary", broken)  # what the pipeline's step calls
    with pytest.raises(AssertionError, match="fuse_conv_unary"):
        build_deploy_graph(module, x, check_each_pass=True)
