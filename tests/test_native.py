"""effsr.deploy.native: the hand-written ESA and pixel-shuffle kernels equal the PyTorch operators they replace.

Each kernel is checked against PyTorch's own operators on random maps with odd sizes (pixel-block remainders,
interpolation edges, pooling windows that do not tile), batches and every compiled width; the engine tests
(tests/test_engine.py) then check RLFN's whole deploy graph against the eager forward with the official weights.
The kernels reorder float sums, use FMA and Cephes' expf: 1e-5 on values of order 1 bounds that (measured ~2e-6),
far below the engine's 5e-4 contract. Copies (the pixel shuffle, the residual add) must be bit-exact.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import effsr
from effsr.deploy import build_deploy_graph, native, prepare
from effsr.deploy.checks import example_image
from effsr.deploy.passes import NATIVE_PASSES

CL = torch.channels_last
TOL = native.SELF_CHECK_TOLERANCE

pytestmark = pytest.mark.usefixtures("one_thread")


ARCHES = [native.NATIVE_ARCH, native.AVX2_ARCH] if native.cpu_lanes() == 16 else [native.NATIVE_ARCH]


@pytest.fixture(scope="module", params=ARCHES)
def lib(request: pytest.FixtureRequest) -> object:
    """The kernels for this CPU (``-march=native``) and, on AVX-512 machines, the AVX2 build as well.

    Only a CPU for which no kernels exist may skip; a failed build or self-check fails.
    """
    if request.param == native.NATIVE_ARCH:
        lib = native.library()
        if lib is None:
            reason = native.unavailable_reason() or ""
            if reason.startswith(("the CPU has neither", "no kernels for")):
                pytest.skip(f"native kernels do not exist for this CPU: {reason}")
            pytest.fail(f"native kernels unavailable: {reason}")
        assert lib.effsr_native_lanes() == native.cpu_lanes()
        yield lib
        return
    lib, reason = native.load(request.param)
    assert lib is not None, reason
    assert lib.effsr_native_lanes() == 8
    with pytest.MonkeyPatch.context() as mp:  # the modules call whatever library the engine holds
        mp.setitem(native._state, "lib", lib)
        yield lib


def _no_fallback(monkeypatch: pytest.MonkeyPatch, *modules: nn.Module) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the PyTorch fallback ran instead of the native kernel")

    for m in modules:
        monkeypatch.setattr(m, "_fallback", refuse)


def _randomize(*convs: nn.Conv2d, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for conv in convs:
            fan_in = conv.weight[0].numel()
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) / fan_in**0.5)
            conv.bias.copy_(torch.randn(conv.bias.shape, generator=g) * 0.1)


def _maps(*shapes: tuple[int, ...], seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g).contiguous(memory_format=CL) for s in shapes]


@pytest.mark.parametrize("channels", native.CHANNELS)
@pytest.mark.parametrize("size", [(17, 23), (8, 8), (5, 41)])
def test_tail_equals_torch(lib: object, channels: int, size: tuple[int, int], monkeypatch) -> None:
    f = native.GATE_CHANNELS
    conv_f, conv4, c5 = nn.Conv2d(f, f, 1), nn.Conv2d(f, channels, 1), nn.Conv2d(channels, channels, 1)
    _randomize(conv_f, conv4, c5)
    tail = native.EsaTail(conv_f, conv4, c5)
    h, w = size
    s, c1, c3 = _maps((2, channels, h, w), (2, f, h, w), (2, f, max(1, h // 6), max(1, w // 5)))
    with torch.inference_mode():
        up = F.interpolate(c3, size=(h, w), mode="bilinear", align_corners=False)
        ref = c5(s) * torch.sigmoid(conv4(conv_f(c1) + up))
        _no_fallback(monkeypatch, tail)
        got = tail(s, c1, c3)
    assert got.shape == ref.shape and got.is_contiguous(memory_format=CL)
    err = (got - ref).abs().max().item()
    assert err <= TOL, f"C={channels} {size}: {err:.2e}"


def test_tail_sigmoid_saturates_like_torch(lib: object) -> None:
    """Gate pre-activations far outside [-88, 88] (exp over- and underflow) give exactly 0 and 1, as torch does."""
    f, c = native.GATE_CHANNELS, 16
    conv_f, conv4, c5 = nn.Conv2d(f, f, 1), nn.Conv2d(f, c, 1), nn.Conv2d(c, c, 1)
    _randomize(conv_f, conv4, c5)
    with torch.no_grad():
        conv4.bias.copy_(torch.tensor([200.0, -200.0] * 8))
    tail = native.EsaTail(conv_f, conv4, c5)
    s, c1, c3 = _maps((1, c, 9, 9), (1, f, 9, 9), (1, f, 2, 2))
    with torch.inference_mode():
        got, ref = tail(s, c1, c3), tail._fallback(s, c1, c3)
    assert torch.isfinite(got).all()
    assert (got - ref).abs().max().item() <= TOL


@pytest.mark.parametrize("channels", native.CHANNELS)
def test_head_adds_in_place_and_projects(lib: object, channels: int) -> None:
    conv1 = nn.Conv2d(channels, native.GATE_CHANNELS, 1)
    _randomize(conv1)
    head = native.EsaHead(conv1)
    a, x = _maps((3, channels, 7, 13), (3, channels, 7, 13))  # 273 pixels: not a multiple of the 8-pixel block
    ref_s = a + x
    with torch.inference_mode():
        ref_c1 = conv1(ref_s)
        target = a.clone(memory_format=CL)
        s, c1 = head(target, x)
    assert s.data_ptr() == target.data_ptr(), "s must be written in place into a"
    assert torch.equal(s, ref_s), "the residual add is one float add per element: bit-exact"
    assert (c1 - ref_c1).abs().max().item() <= TOL


@pytest.mark.parametrize("size", [(64, 64), (37, 61), (20, 23)])
def test_low_branch_equals_torch(lib: object, size: tuple[int, int], monkeypatch) -> None:
    f = native.GATE_CHANNELS
    conv2, conv3 = nn.Conv2d(f, f, 3, stride=2), nn.Conv2d(f, f, 3, padding=1)
    _randomize(conv2, conv3)
    low = native.EsaLow(conv2, conv3, pool_kernel=7, pool_stride=3)
    (c1,) = _maps((2, f, *size))
    with torch.inference_mode():
        ref = conv3(F.max_pool2d(conv2(c1), 7, 3))
        _no_fallback(monkeypatch, low)
        got = low(c1)
    assert got.shape == ref.shape
    assert (got - ref).abs().max().item() <= TOL


def test_low_branch_too_small_raises_like_torch(lib: object) -> None:
    f = native.GATE_CHANNELS
    low = native.EsaLow(nn.Conv2d(f, f, 3, stride=2), nn.Conv2d(f, f, 3, padding=1), 7, 3)
    (c1,) = _maps((1, f, 12, 12))  # conv2 gives 5x5, smaller than the 7x7 pool window
    with torch.inference_mode(), pytest.raises(RuntimeError):
        low(c1)


@pytest.mark.parametrize("r", [2, 3, 4])
def test_pixel_shuffle_is_bit_exact(lib: object, r: int) -> None:
    (x,) = _maps((2, 3 * r * r, 5, 7))
    got = native.pixel_shuffle_nchw(x, r)
    assert got.is_contiguous()
    assert torch.equal(got, F.pixel_shuffle(x, r))


def test_unsuitable_inputs_take_the_torch_path(lib: object) -> None:
    """Non-channels-last or float64 inputs give the PyTorch operators' result (and never reach the kernel)."""
    f, c = native.GATE_CHANNELS, 32
    conv_f, conv4, c5 = nn.Conv2d(f, f, 1), nn.Conv2d(f, c, 1), nn.Conv2d(c, c, 1)
    _randomize(conv_f, conv4, c5)
    tail = native.EsaTail(conv_f, conv4, c5)
    s, c1, c3 = (t.contiguous() for t in _maps((1, c, 9, 10), (1, f, 9, 10), (1, f, 3, 3)))  # NCHW
    conv1 = nn.Conv2d(c, f, 1)
    head = native.EsaHead(conv1)
    with torch.inference_mode():
        assert torch.equal(tail(s, c1, c3), tail._fallback(s, c1, c3))
        got_s, got_c1 = head(s.clone(), s)
        assert torch.equal(got_s, s + s) and torch.equal(got_c1, conv1(s + s))
        view = s.contiguous(memory_format=CL)[:, :, :, ::2]  # a strided view: not the kernel's layout
        got_s, got_c1 = head(view.clone(), view)
        assert torch.equal(got_s, view + view) and torch.equal(got_c1, conv1(view + view))
    y = torch.randn(1, 16, 3, 3)
    assert torch.equal(native.pixel_shuffle_nchw(y, 4), F.pixel_shuffle(y, 4))


def test_rlfn_deploy_graph_uses_the_kernels(lib: object, weights_dir: Path) -> None:
    model = effsr.load("rlfn")
    fast = prepare(model, "fast", tune_malloc=False)
    kinds = [type(m).__name__ for m in fast.graph.modules()]
    assert kinds.count("EsaTail") == kinds.count("EsaHead") == kinds.count("EsaLow") == 4
    x = example_image(3, 52, 45)
    with torch.inference_mode():
        err = (fast(x) - model(x)).abs().max().item()
    assert err <= 5e-5
    plain = build_deploy_graph(model, x.contiguous(memory_format=CL), disable_passes=NATIVE_PASSES)
    assert not any(type(m).__module__ == native.__name__ for m in plain.modules())


def _fresh_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native, "_state", {})


def test_without_a_compiler_the_engine_keeps_onednn(monkeypatch, tmp_path, weights_dir: Path) -> None:
    _fresh_state(monkeypatch)
    monkeypatch.setenv("EFFSR_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no c++ / g++ either
    assert native.library() is None
    if native.cpu_lanes():
        assert native.unavailable_reason() == "no C++ compiler found ($CXX, c++, g++)"
    model = effsr.load("rlfn")
    fast = prepare(model, "fast", tune_malloc=False)
    assert fast.fused and not any(type(m).__module__ == native.__name__ for m in fast.graph.modules())
    x = example_image(3, 40, 40)
    with torch.inference_mode():
        assert (fast(x) - model(x)).abs().max().item() <= 5e-5


def test_disabled_by_environment(monkeypatch) -> None:
    _fresh_state(monkeypatch)
    monkeypatch.setenv("EFFSR_NATIVE", "0")
    assert native.library() is None
    assert native.unavailable_reason() == "disabled by EFFSR_NATIVE"


def test_a_failing_build_is_reported_not_raised(monkeypatch, tmp_path) -> None:
    if native._compiler() is None:
        pytest.fail("this test needs a C++ compiler to call with broken flags")
    _fresh_state(monkeypatch)
    monkeypatch.setenv("EFFSR_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "_COMPILE_FLAGS", ("-DEFFSR_BROKEN", "-include", "no/such/header.h", "-shared"))
    if not native.cpu_lanes():
        pytest.skip("the build is attempted only on CPUs with kernels (AVX-512F or AVX2 + FMA)")
    assert native.library() is None
    assert "failed" in (native.unavailable_reason() or "")
    assert not list(tmp_path.rglob("*.so")), "a failed build must leave no library behind"


def test_build_is_cached_and_atomic(lib: object, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("EFFSR_KERNEL_CACHE", str(tmp_path))
    cxx = native._compiler()
    first = native._build(cxx)
    stamp = first.stat().st_mtime_ns
    second = native._build(cxx)
    assert first == second and second.stat().st_mtime_ns == stamp, "the second call must reuse the build"
    assert [p.name for p in first.parent.iterdir()] == [first.name], "no temporary files left behind"
    assert first.is_relative_to(tmp_path) and os.access(first, os.R_OK)


def test_a_read_only_cache_falls_back_to_the_temporary_directory(lib: object, monkeypatch, tmp_path) -> None:
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    monkeypatch.setenv("EFFSR_KERNEL_CACHE", str(blocked / "kernels"))  # mkdir fails: a file is in the way
    monkeypatch.setattr(native.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    built = native._build(native._compiler())
    assert built.is_relative_to(tmp_path / "tmp") and built.exists()
