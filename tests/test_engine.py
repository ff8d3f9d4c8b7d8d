"""effsr.deploy (backends, graph passes): every backend reproduces the eager forward; every rewrite is an identity.

The float32 contract: the fast path equals the plain eager forward within 5e-4 in [0,1] units for every zoo model
with its official weights; lower precisions within their stated tolerances. Inputs are crops of real LR images
(a natural-image input: some models amplify white noise far beyond [0,1], see ``example_image``). No timing here.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import effsr
from effsr.deploy import FP32_TOLERANCE, LOW_PRECISION_TOLERANCE, build_deploy_graph, prepare
from effsr.deploy.ops import (
    FusedConv2d,
    apply_unary,
    channel_layer_norm_1e6,
    gelu_dense_,
    pixel_shuffle_nchw,
    window_variance,
)
from effsr.deploy.passes import DISABLE_ENV, NATIVE_PASSES, PASS_NAMES, pipeline, trace_with_leaves
from effsr.imageio import read_rgb_uint8, uint8_to_tensor
from effsr.tiling import TilingSpec

from .conftest import ZOO_2025_2026

ZOO = ["rlfn", "agdn", "lsanet", "ifadnet", "mdrn_s", "msn", "span", "safmnpp", "mdrn", *ZOO_2025_2026]
# (H, W): two small sizes and a non-square one; MSN needs >= 29 (specs/README.md section 5).
SIZES = [(32, 40), (48, 48), (37, 61)]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def lr_image(data_dir: Path) -> torch.Tensor:
    from tests.conftest import require

    return uint8_to_tensor(read_rgb_uint8(require(data_dir / "Set14" / "LR_bicubic" / "X4" / "baboon.png")))


def _crops(img: torch.Tensor) -> list[torch.Tensor]:
    return [img[:, :, 7 : 7 + h, 11 : 11 + w].contiguous() for h, w in SIZES]


def _max_err(a: nn.Module, b: nn.Module, inputs: list[torch.Tensor]) -> float:
    with torch.inference_mode():
        return max(float((a(x).float() - b(x).float()).abs().max()) for x in inputs)


@pytest.mark.parametrize("name", ZOO)
def test_fast_equals_eager_for_every_zoo_model(name: str, lr_image: torch.Tensor, weights_dir: Path) -> None:
    model = effsr.load(name)
    fast = prepare(model, "fast", tune_malloc=False)
    assert fast.fused, "the deploy graph fell back to the plain channels-last forward"
    assert fast.tiling == model.tiling and fast.scale == model.scale
    err = _max_err(model, fast, _crops(lr_image))
    assert err <= FP32_TOLERANCE, f"{name}: fast differs from eager by {err:.2e}"
    # In practice the rewrites only reorder float sums: far below the contract (measured <= 4e-6).
    assert err <= 5e-5


def test_eager_backend_is_the_model_itself(lr_image: torch.Tensor, weights_dir: Path) -> None:
    model = effsr.load("rlfn")
    eager = prepare(model, "eager")
    x = _crops(lr_image)[0]
    with torch.inference_mode():
        assert torch.equal(eager(x), model(x))


def test_engine_contract_batch_layout_and_input_untouched(lr_image: torch.Tensor, weights_dir: Path) -> None:
    model = effsr.load("msn")
    fast = prepare(model, "fast", tune_malloc=False)
    a, b = (lr_image[:, :, :40, :48].contiguous(), lr_image[:, :, 40:80, :48].contiguous())
    batch = torch.cat([a, b])
    before = batch.clone()
    with torch.inference_mode():
        y = fast(batch)
        ref = torch.cat([model(a), model(b)])
    assert torch.equal(batch, before)
    assert y.dtype == torch.float32 and y.is_contiguous() and y.shape == (2, 3, 160, 192)
    assert float((y - ref).abs().max()) <= FP32_TOLERANCE


@pytest.mark.parametrize(("name", "dtype"), [("lsanet", torch.bfloat16), ("msn", torch.bfloat16),
                                             ("rlfn", torch.float16)])
def test_low_precision_within_stated_tolerance(name: str, dtype: torch.dtype, lr_image: torch.Tensor,
                                               weights_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU code path of the CUDA precisions: bfloat16 / float16 compute, float32 out, within the stated bound."""
    # The arithmetic, not this host: claim native bfloat16 so that effsr.deploy.precision lets it run anywhere.
    monkeypatch.setenv("EFFSR_CPU_FLAGS", "avx2 avx512_bf16")
    model = effsr.load(name)
    low = prepare(model, "fast", precision=dtype, tune_malloc=False)
    x = _crops(lr_image)[1]
    with torch.inference_mode():
        y = low(x)
    assert y.dtype == torch.float32
    err = float((y - model(x)).abs().max())
    assert err <= LOW_PRECISION_TOLERANCE[dtype], f"{name} {dtype}: {err:.2e}"


def test_compile_option_builds_without_running(weights_dir: Path) -> None:
    """torch.compile is lazy: the engine is built (unpacked weights, for inductor) without compiling anything."""
    fast = prepare(effsr.load("rlfn"), "fast", compile=True, tune_malloc=False)
    assert all(m.packed is None for m in fast.graph.modules() if isinstance(m, FusedConv2d))


def test_onnxruntime_backend_static_and_dynamic(lr_image: torch.Tensor, weights_dir: Path) -> None:
    rlfn = effsr.load("rlfn")
    ort = prepare(rlfn, "onnxruntime", threads=1, example_size=(32, 40))
    assert ort.dynamic
    assert _max_err(rlfn, ort, _crops(lr_image)[:2]) <= FP32_TOLERANCE
    # AGDN's windowed attention depends on the input size: one static session per shape.
    agdn = effsr.load("agdn")
    ort = prepare(agdn, "onnxruntime", threads=1, example_size=(32, 40))
    assert not ort.dynamic
    assert _max_err(agdn, ort, [_crops(lr_image)[0], lr_image[:, :, :100, :100].contiguous()]) <= FP32_TOLERANCE
    assert len(ort._sessions) == 2


def test_untraceable_model_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    class DataDependent(nn.Module):
        tiling = TilingSpec(scale=2)

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 12, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            if float(y.mean()) > 0:  # input-dependent control flow at the top level: not traceable
                y = y * 2
            return F.pixel_shuffle(y, 2)

    model = DataDependent().eval()
    with caplog.at_level(logging.WARNING):
        fast = prepare(model, "fast", tune_malloc=False)
    assert not fast.fused and "graph rewrite failed" in caplog.text
    x = torch.rand(1, 3, 9, 11)
    assert _max_err(model, fast, [x]) <= 1e-5


def test_rejects_bad_arguments() -> None:
    model = nn.Conv2d(3, 3, 1)
    with pytest.raises(ValueError, match="unknown backend"):
        prepare(model, "tensorrt")
    with pytest.raises(ValueError, match="threads"):
        prepare(model, "eager", threads=0)
    with pytest.raises(ValueError, match="precision"):
        prepare(model, "eager", precision=torch.float64)
    with pytest.raises(ValueError, match="precision"):
        prepare(model, "eager", precision="fp64")
    with pytest.raises(ValueError, match="compile"):
        prepare(model, "eager", compile=True)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            prepare(model, "fast", device="cuda")


# ---- each rewrite, on small random modules --------------------------------------------------------------------


def _check(module: nn.Module, shape: tuple[int, ...], tol: float = 2e-6, disable_passes: tuple[str, ...] = (),
           **expect: int) -> nn.Module:
    torch.manual_seed(0)
    x = torch.rand(*shape)
    gm = build_deploy_graph(module.eval(), x, disable_passes=disable_passes)
    with torch.inference_mode():
        ref = module(x)
        got = gm(x.contiguous(memory_format=torch.channels_last))
    assert got.shape == ref.shape
    assert float((got - ref).abs().max()) <= tol * max(1.0, float(ref.abs().max()))
    convs = [m for m in gm.modules() if isinstance(m, FusedConv2d)]
    if "convs" in expect:
        assert len(convs) == expect["convs"]
    return gm


class _SeparableReflect(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pw = nn.Conv2d(4, 6, 1, bias=False)
        self.dw1 = nn.Conv2d(6, 6, (3, 1), padding=(1, 0), groups=6, padding_mode="reflect")
        self.dw2 = nn.Conv2d(6, 6, (1, 3), padding=(0, 1), groups=6, padding_mode="reflect")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dw2(self.dw1(self.pw(x)))


def test_separable_reflect_depthwise_merges_into_one_conv() -> None:
    """MSN's kx1 + 1xk reflect-padded depth-wise pair == one reflect pad + kxk depth-wise conv."""
    gm = _check(_SeparableReflect(), (1, 4, 9, 13), convs=2)
    dw = [m for m in gm.modules() if isinstance(m, FusedConv2d) and m.is_depthwise()]
    assert len(dw) == 1 and tuple(dw[0].weight.shape[2:]) == (3, 3) and dw[0].reflect_pad == (1, 1, 1, 1)


class _ScaledIO(nn.Module):
    """RLFN-style x255 in, /255 out, and an AGDN-style + mean after the pixel shuffle."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(3, 8, 3, padding=1)
        self.conv_out = nn.Conv2d(8, 12, 3, padding=1)
        self.mean = torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.conv_in(x * 255.0))
        return F.pixel_shuffle(self.conv_out(y), 2) / 255.0 + self.mean.to(device=x.device, dtype=x.dtype)


def test_scalars_and_channel_offsets_fold_into_convs() -> None:
    gm = _check(_ScaledIO(), (1, 3, 10, 7))
    ops = {n.target for n in gm.graph.nodes if n.op == "call_function"}
    assert not ops & {__import__("operator").mul, __import__("operator").truediv, __import__("operator").add}


class _ConcatThenConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 5, 1)
        self.b = nn.Conv2d(3, 7, 3, padding=1)
        self.fuse = nn.Conv2d(12, 6, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([F.gelu(self.a(x)), self.b(x)], dim=1)) + x.mean()


def test_conv_of_concat_splits_into_accumulated_convs() -> None:
    gm = _check(_ConcatThenConv(), (1, 3, 11, 9), convs=4)
    assert not any(n.target is torch.cat for n in gm.graph.nodes)


class _GatedFFN(nn.Module):
    """Restormer's gated FFN (AGDN's GDFN): 1x1 expand, depth-wise 3x3, chunk, GELU gate, 1x1."""

    def __init__(self) -> None:
        super().__init__()
        self.project_in = nn.Conv2d(4, 16, 1, bias=False)
        self.dwconv = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
        self.project_out = nn.Conv2d(8, 4, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t1, t2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(t1) * t2)


def test_chunked_conv_output_splits_into_convs() -> None:
    gm = _check(_GatedFFN(), (1, 4, 8, 12), convs=5)
    assert not any(n.op == "call_method" and n.target == "chunk" for n in gm.graph.nodes)


class _Residuals(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(6, 6, 3, padding=1, groups=6, padding_mode="reflect")
        self.c2 = nn.Conv2d(6, 6, 1)
        self.c3 = nn.Conv2d(6, 6, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = F.gelu(self.c1(x) + x)
        s = F.leaky_relu(self.c2(r), 0.05)
        t = torch.relu(self.c3(s) + r)
        return torch.sigmoid(self.c2(t)) * t + t


def test_conv_add_and_activation_fusions() -> None:
    gm = _check(_Residuals(), (1, 6, 9, 10))
    convs = [m for m in gm.modules() if isinstance(m, FusedConv2d)]
    assert sum(m.binary == "add" for m in convs) == 2
    assert {m.unary for m in convs} >= {"gelu", "leaky_relu", "relu", "sigmoid"}


class _GatedResidual46(nn.Module):
    """RLFN's block shape at 46 channels: a 3x3 conv with a residual, a 1x1 conv gated by an ESA-style sigmoid
    attention computed from its own output (1x1, stride-2 conv, max-pool, bilinear upsampling)."""

    def __init__(self, depthwise_reader: bool = False) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 46, 3, padding=1)
        self.c1 = nn.Conv2d(46, 46, 3, padding=1)
        self.c5 = nn.Conv2d(46, 46, 1)
        self.a1 = nn.Conv2d(46, 16, 1)
        self.a2 = nn.Conv2d(16, 16, 3, stride=2)
        self.a4 = nn.Conv2d(16, 46, 1)
        self.dw = nn.Conv2d(46, 46, 3, padding=1, groups=46) if depthwise_reader else None
        self.tail = nn.Conv2d(46, 12, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        s = F.leaky_relu(self.c1(h), 0.05) + h
        y = self.c5(s)
        c = self.a1(y)
        u = F.interpolate(F.max_pool2d(self.a2(c), 3, 2), size=y.shape[2:], mode="bilinear", align_corners=False)
        out = y * torch.sigmoid(self.a4(u + c)) + h
        if self.dw is not None:
            out = self.dw(out)
        return F.pixel_shuffle(self.tail(out), 2)


def test_gate_fuses_into_the_conv_and_46_channel_maps_widen_to_48() -> None:
    gm = _check(_GatedResidual46(), (1, 3, 23, 29), convs=7)
    shapes = sorted(tuple(m.weight.shape[:2]) for m in gm.modules() if isinstance(m, FusedConv2d))
    # head, c1, c5, a1 (composed with c5: it reads s), a2, a4, tail: every 46 became 48, with zero weights there.
    assert shapes == [(12, 48), (16, 16), (16, 48), (48, 3), (48, 16), (48, 48), (48, 48)]
    gated = [m for m in gm.modules() if isinstance(m, FusedConv2d) and m.binary == "mul"]
    assert len(gated) == 1 and tuple(gated[0].weight.shape[2:]) == (1, 1)
    assert float(gated[0].weight[46:].abs().sum()) == 0.0 and float(gated[0].weight[:, 46:].abs().sum()) == 0.0
    assert not any(n.op == "call_method" and n.target in ("mul", "mul_") for n in gm.graph.nodes)
    # The unpacked path (CUDA, torch.compile) runs the same post-ops as separate ops.
    module = _GatedResidual46().eval()
    x = torch.rand(1, 3, 23, 29)
    unpacked = build_deploy_graph(module, x, disable_passes=("pack_weights",))
    assert all(m.packed is None for m in unpacked.modules() if isinstance(m, FusedConv2d))
    with torch.inference_mode():
        err = float((unpacked(x.contiguous(memory_format=torch.channels_last)) - module(x)).abs().max())
    assert err <= 2e-6


def test_maps_that_reach_a_depthwise_conv_or_the_output_keep_their_width() -> None:
    gm = _check(_GatedResidual46(depthwise_reader=True), (1, 3, 23, 29))
    assert all(m.weight.shape[0] != 48 for m in gm.modules() if isinstance(m, FusedConv2d))
    # The map between the convs widens (only convs read it); the output keeps its 46 channels.
    gm = _check(nn.Sequential(nn.Conv2d(3, 46, 3, padding=1), nn.ReLU(), nn.Conv2d(46, 46, 1)), (1, 3, 9, 8))
    shapes = [tuple(m.weight.shape[:2]) for m in gm.modules() if isinstance(m, FusedConv2d)]
    assert shapes == [(48, 3), (46, 48)]


class _Statistics(nn.Module):
    """MSN's channel LayerNorm, AGDN's last-dim LayerNorm, CCA's W-then-H sums and the unfold local variance."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.rand(5) + 0.5)
        self.b = nn.Parameter(torch.rand(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(1, keepdim=True)
        s = (x - mu).pow(2).mean(1, keepdim=True)
        y = (x - mu) / torch.sqrt(s + 1e-6)
        y = self.w[:, None, None] * y + self.b[:, None, None]
        n, c, h, w = y.shape
        t = y.permute(0, 2, 3, 1).reshape(n, h * w, c)
        m2 = t.mean(-1, keepdim=True)
        v2 = t.var(-1, keepdim=True, unbiased=False)
        t = (t - m2) / torch.sqrt(v2 + 1e-5) * self.w + self.b
        y = t.reshape(n, h, w, c).permute(0, 3, 1, 2)
        area = y.shape[2] * y.shape[3]
        mean = y.sum(3, keepdim=True).sum(2, keepdim=True) / area
        var = (y - mean).pow(2).sum(3, keepdim=True).sum(2, keepdim=True) / area
        padded = F.pad(y, (1, 1, 1, 1), mode="reflect")
        local = torch.var(padded.unfold(2, 7, 3).unfold(3, 7, 3), dim=(-1, -2), unbiased=True)
        local = F.interpolate(local, size=y.shape[2:], mode="bilinear", align_corners=False)
        return y * var.pow(0.5) + mean + local


def test_statistics_rewrites() -> None:
    gm = _check(_Statistics(), (1, 5, 23, 26), tol=1e-5)
    targets = {n.target for n in gm.graph.nodes}
    assert F.layer_norm in targets and channel_layer_norm_1e6 in targets and window_variance in targets
    assert not any(n.op == "call_method" and n.target == "unfold" for n in gm.graph.nodes)


def test_window_variance_matches_unfold_variance() -> None:
    torch.manual_seed(1)
    x = torch.randn(2, 3, 31, 40) * 3 + 5
    for k, s in ((7, 3), (5, 3), (3, 2)):
        ref = torch.var(x.unfold(2, k, s).unfold(3, k, s), dim=(-1, -2), unbiased=True)
        assert float((window_variance(x, k, s) - ref).abs().max()) <= 1e-5 * float(ref.abs().max())


def test_pixel_shuffle_nchw_is_exact_and_contiguous() -> None:
    x = torch.randn(2, 48, 5, 7).contiguous(memory_format=torch.channels_last)
    y = pixel_shuffle_nchw(x, 4)
    assert torch.equal(y, F.pixel_shuffle(x.contiguous(), 4)) and y.is_contiguous()


def test_untraceable_submodule_becomes_an_opaque_call() -> None:
    """Input-size-dependent Python (like AGDN's TLC windows) inside a submodule: traced around, convs still packed."""

    class Windowed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = x.shape[2]
            if h > 8:  # Python control flow on the size
                return self.conv(x[:, :, :8]).sum() + x
            return self.conv(x)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Conv2d(3, 4, 3, padding=1)
            self.win = Windowed()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.win(F.gelu(self.head(x)))

    net = Net().eval()
    gm = trace_with_leaves(net)
    assert any(n.op == "call_module" and n.target == "win" for n in gm.graph.nodes)
    _check(net, (1, 3, 12, 10))


# ---- the pipeline: every pass named, counted, and each one can be left out -----------------------------------

# The small modules above with the input shape and tolerance of their own test.
SMALL_MODULES = [(_SeparableReflect, (1, 4, 9, 13), 2e-6), (_ScaledIO, (1, 3, 10, 7), 2e-6),
                 (_ConcatThenConv, (1, 3, 11, 9), 2e-6), (_GatedFFN, (1, 4, 8, 12), 2e-6),
                 (_Residuals, (1, 6, 9, 10), 2e-6), (_GatedResidual46, (1, 3, 23, 29), 2e-6),
                 (_Statistics, (1, 5, 23, 26), 1e-5)]


def test_every_pass_fires_somewhere_and_each_can_be_left_out() -> None:
    """passes/README.md: every pass is an identity on its own, so leaving any one out keeps the output exact."""
    fired_somewhere: set[str] = set()
    for cls, shape, tol in SMALL_MODULES:
        fired = {name for name, n in _check(cls(), shape, tol).pass_report.counts().items() if n}
        fired_somewhere |= fired
        for name in sorted(fired - set(NATIVE_PASSES)):
            report = _check(cls(), shape, tol, disable_passes=(name,)).pass_report
            assert report.disabled == (name,) and report.fired(name) == 0, (cls.__name__, name)
            assert all(r.status == "disabled" for r in report.records if r.name == name)
    assert set(PASS_NAMES) - set(NATIVE_PASSES) <= fired_somewhere  # the check above has covered every pass


def test_disabling_by_environment_and_unknown_names(monkeypatch: pytest.MonkeyPatch) -> None:
    module = _GatedResidual46().eval()
    x = torch.rand(1, 3, 17, 19)
    monkeypatch.setenv(DISABLE_ENV, "pad_channels, fuse_conv_mul")
    engine = prepare(module, "fast", example_size=(17, 19), disable_passes=("inplace_elementwise",),
                     tune_malloc=False)
    assert engine.pass_report.disabled == ("fuse_conv_mul", "inplace_elementwise", "pad_channels")
    assert engine.fused and engine.max_abs_vs_eager <= FP32_TOLERANCE
    assert _max_err(module, engine, [x]) <= 2e-6
    monkeypatch.setenv(DISABLE_ENV, "no_such_pass")
    with pytest.raises(ValueError, match="no_such_pass"):
        prepare(module, "fast", tune_malloc=False)
    monkeypatch.delenv(DISABLE_ENV)
    with pytest.raises(ValueError, match="unknown pass"):
        build_deploy_graph(module, x, disable_passes=("fuse_everything",))
    with pytest.raises(ValueError, match="fast backend"):
        prepare(module, "eager", disable_passes=("pad_channels",))


def test_checking_each_pass_names_the_one_that_broke_the_output(monkeypatch: pytest.MonkeyPatch) -> None:
    module = _GatedResidual46().eval()
    x = torch.rand(1, 3, 23, 29)
    build_deploy_graph(module, x, check_each_pass=True)  # every pass keeps the output

    original = pipeline.fuse_conv_unary

    def broken(gm: torch.fx.GraphModule, ctx: object) -> int:
        fired = original(gm, ctx)
        for m in gm.modules():
            if isinstance(m, FusedConv2d) and m.out_channels == 12:
                m.bias.add_(0.01)  # a wrong rewrite: the output conv's bias moved
        return fired

    broken.__name__, broken.__doc__ = original.__name__, original.__doc__
    monkeypatch.setattr(pipeline, "PIPELINE", tuple(pipeline.Pass(broken, p.stage) if p.run is original else p
                                                     for p in pipeline.PIPELINE))
    with pytest.raises(AssertionError, match="fuse_conv_unary"):
        build_deploy_graph(module, x, check_each_pass=True)


def test_gelu_on_channels_last_equals_the_nchw_forward() -> None:
    """The engine's GELU runs on the flat view of a channels-last tensor: in place, and bit for bit the value the
    NCHW eager forward computes."""
    x = torch.randn(1, 28, 19, 23, generator=torch.Generator().manual_seed(0))
    ref = F.gelu(x)
    y = x.contiguous(memory_format=torch.channels_last)
    out = gelu_dense_(y)
    assert out is y and y.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(y, ref)
    z = x.contiguous(memory_format=torch.channels_last)
    got = apply_unary(z, "gelu", [])  # out of place: the input stays
    assert torch.equal(got, ref) and torch.equal(z, x) and got.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(gelu_dense_(x.clone()), ref)  # NCHW: the plain in-place op
