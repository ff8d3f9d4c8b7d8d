"""The NTIRE 2025 / 2026 entries: records, strict loading, detection, re-parameterization, SPANV2's attention op,
receptive radius and tiling, minimum sizes, and ``effsr zoo``.

Golden facts come from ``shared/weights/SOURCES.md`` / ``SHA256SUMS`` (files, URLs, wrapper keys, params),
``shared/official/README.md`` (constructors, traps) and the official files' shapes; the outputs themselves are
checked against ``shared/reference`` in ``test_zoo_reference.py``, the complexity in ``tests/test_profile.py``.
Re-parameterization is proven on random weights: the training form and its merge give the same output.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

import effsr
from effsr.cli import app
from effsr.deploy import prepare, reparameterize_model
from effsr.imageio import read_rgb_uint8, uint8_to_tensor
from effsr.infer import upscale
from effsr.models import all_weight_records, get_spec, list_models
from effsr.models.dscf import DSCF, LoRAConv2d
from effsr.models.efdn import EDBB
from effsr.models.spanf import SPABV2, span_attention
from effsr.tiling import tiling_of
from effsr.weights import read_state_dict

from ..conftest import ZOO_2025_2026, make_test_vector, require

# shared/weights/SOURCES.md: (file, wrapper key, params) and the commit of the organisers' repository.
RECORDS = {
    "efdn": ("team00_EFDN.pth", None, 276_192, 2025),
    "dscf": ("team23_DSCF.pth", None, 130_828, 2025),
    "spanf": ("team24_spanf.pth", None, 148_288, 2025),
    "safmnv3": ("team19_safmnv3.pth", None, 144_672, 2025),
    "espan": ("team36_espan.pth", None, 192_272, 2025),
    "pds": ("team01_PDS.pth", None, 141_748, 2026),
    "pkdsr": ("team16_PKDSR.pth", "params_ema", 143_928, 2026),
    "disp": ("team18_DISP.pth", None, 163_792, 2026),
    "dscf_fused": ("team15_DSCF_Fused.pth", None, 125_992, 2026),
    "spanv2": ("team22_spanv2_c2.pth", None, 139_104, 2026),
}
COMMITS = {2025: "b69fb668c0362deb696eecbfdebfaa5c2fcdfcb4", 2026: "4592ce6db68b395699f13e7e2a4e3baf317ef1c6"}
# The one key layout two architectures share: DSCF's merged file is SPAN's deploy layout at 26 channels. detect_span
# reads it (it is that network); the registry knows the published file by its content and answers dscf.
SHARED_LAYOUT = {("team23_DSCF.pth", "span")}
# Models whose every conv is zero-padded and stride 1: the output at an LR pixel depends on the input within
# ``receptive_radius`` pixels (Chebyshev), exactly.
LOCAL = ("dscf", "spanf", "espan", "pds", "pkdsr", "disp", "dscf_fused", "spanv2")
# Models with a strided / pooled grid and a global statistic or a resize by size: declared period, no radius.
GLOBAL = {"efdn": 6, "safmnv3": 8}
# SAFMNv3's tiles estimate its whole-map variance: at least 96 LR pixels (safmnv3.py, tests/test_infer.py).
MIN_TILE = {"safmnv3": 96}

# Nothing here depends on the thread count; one thread avoids OpenMP stalls on a shared machine.
pytestmark = pytest.mark.usefixtures("one_thread")


def _crop(data_dir: Path, h: int, w: int) -> torch.Tensor:
    """A natural LR crop (Set14 barbara): some models amplify white noise far beyond [0,1]."""
    img = uint8_to_tensor(read_rgb_uint8(require(data_dir / "Set14" / "LR_bicubic" / "X4" / "barbara.png")))
    return img[:, :, 10 : 10 + h, 20 : 20 + w].contiguous()


def test_every_staged_2025_2026_file_is_in_the_zoo() -> None:
    assert set(ZOO_2025_2026) == set(RECORDS) and set(ZOO_2025_2026) <= set(list_models())
    for name, (file, wrapper, params, year) in RECORDS.items():
        record = get_spec(name).default_weights
        assert record is not None and record.model == name
        assert (record.file, record.wrapper_key, record.params, record.licence, record.scale) == (
            file, wrapper, params, "MIT", 4)
        repo = f"Amazingren/NTIRE{year}_ESR"
        assert record.url == f"https://github.com/{repo}/raw/{COMMITS[year]}/model_zoo/{file}"
        assert record.source.startswith(f"{repo} @ {COMMITS[year][:8]}")


@pytest.mark.parametrize("name", ZOO_2025_2026)
def test_strict_load_and_load_by_file(name: str, zoo, weights_dir: Path) -> None:
    file, wrapper, params, _ = RECORDS[name]
    model = zoo(name)
    sd = read_state_dict(require(weights_dir / file), wrapper)
    own = model.state_dict()
    assert set(own) == set(sd)  # nothing extra (no registered mean buffer), nothing missing
    assert all(torch.equal(own[k], v) for k, v in sd.items())
    assert sum(p.numel() for p in model.parameters()) == params
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    # A bare file (the wrapper found by its key) rebuilds the same architecture; so does its published name alone,
    # e.g. effsr.load("team24_spanf.pth"), found in the weights mirror (the architecture still detected from the keys).
    for given in (str(weights_dir / file), file):
        by_file = effsr.load(given)
        assert type(by_file) is type(model), given
        assert all(torch.equal(by_file.state_dict()[k], v) for k, v in sd.items())
    assert effsr.detect_architecture(sd) == (name, dict(get_spec(name).default_weights.kwargs))


def test_detectors_decline_every_other_published_file(weights_dir: Path) -> None:
    """No new detector matches an older file, no older detector a new file, and new ones not each other's."""
    new = set(ZOO_2025_2026)
    accepted = set()
    for record in all_weight_records():
        sd = read_state_dict(require(weights_dir / record.file), record.wrapper_key)
        for name in list_models():
            spec = get_spec(name)
            if name == record.model or spec.detect is None or not ({name, record.model} & new):
                continue
            if spec.detect(sd) is not None:
                accepted.add((record.file, name))
    assert accepted == SHARED_LAYOUT


@pytest.mark.parametrize(("name", "kwargs"), [
    ("efdn", {"scale": 2, "num_features": 32, "deploy": False}),
    ("dscf", {"scale": 3, "num_features": 16, "num_blocks": 4, "lora": True}),
    ("dscf_fused", {"scale": 2, "num_features": 16, "num_blocks": 3}),
    ("spanf", {"scale": 3, "num_features": 16, "num_blocks": 4}),
    ("pkdsr", {"scale": 2, "num_features": 16, "num_blocks": 3, "tail_channels": 12}),
    ("pds", {"scale": 2, "num_features": 24, "num_blocks": 4, "tail_channels": 16}),
    ("spanv2", {"scale": 2, "num_features": 16, "num_blocks": 3, "bias": True}),
    ("safmnv3", {"scale": 2, "num_features": 24, "num_blocks": 2, "ffn_scale": 2.0}),
    ("espan", {"scale": 2, "num_features": 16, "num_blocks": 3}),
    ("disp", {"scale": 3, "num_features": 16, "num_blocks": 2, "extra_convs": 2}),
])
def test_detect_other_configurations(name: str, kwargs: dict) -> None:
    """Detection reads every shape-determining argument back from a randomly initialised model."""
    found, found_kwargs = effsr.detect_architecture(effsr.build_model(name, **kwargs).state_dict())
    assert found == name
    assert {k: found_kwargs[k] for k in kwargs} == kwargs


def test_a_merged_dscf_of_other_weights_is_spans_network() -> None:
    """Only the published DSCF file is told apart from SPAN (by content); any other merged DSCF is SPAN's network."""
    torch.manual_seed(0)
    dscf = effsr.build_model("dscf").eval()
    name, kwargs = effsr.detect_architecture(dscf.state_dict())
    assert (name, kwargs["num_features"], kwargs["num_blocks"]) == ("span", 26, 6)
    span = effsr.build_model(name, **kwargs).eval()
    span.load_state_dict(dscf.state_dict())
    x = make_test_vector(20, 24)
    with torch.no_grad():
        assert torch.equal(span(x), dscf(x))


# ------------------------------------------------------------------------------------------- re-parameterization


def _spread(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Non-trivial values for the parameters that start near zero (edge scales and biases ~1e-3, LoRA B at zero), so
    that a wrong merge of any branch shows far above the tolerance."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, p in model.named_parameters():
            if key.endswith(".scale"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.25)
            elif key.endswith((".bias", ".b0", ".b1")):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            elif key.endswith(".lora_B"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    return model.eval()


@pytest.mark.parametrize(("with_idt", "with_13"), [(False, False), (True, False), (False, True), (True, True)])
def test_edbb_training_form_merges_exactly(with_idt: bool, with_13: bool) -> None:
    torch.manual_seed(1)
    block = _spread(EDBB(8, 8, deploy=False, with_idt=with_idt, with_13=with_13), seed=2)
    merged = reparameterize_model(block)
    assert merged.deploy and set(merged.state_dict()) == {"rep_conv.weight", "rep_conv.bias", "act.weight"}
    x = torch.randn(2, 8, 9, 11)  # small: every border pixel of the bias-padded 1x1-3x3 branch counts
    with torch.no_grad():
        assert (block(x) - merged(x)).abs().max().item() <= 1e-5


def test_efdn_training_form_merges_into_the_shipped_layout(weights_dir: Path) -> None:
    torch.manual_seed(3)
    train = _spread(effsr.build_model("efdn", deploy=False), seed=4)
    merged = reparameterize_model(train)
    assert not train.cells[0].conv2.deploy and merged.deploy  # on a copy
    shipped = read_state_dict(require(weights_dir / RECORDS["efdn"][0]))
    assert {k: v.shape for k, v in merged.state_dict().items()} == {k: v.shape for k, v in shipped.items()}
    x = make_test_vector()  # 40x48, above the ESA's 15-pixel minimum
    with torch.no_grad():
        y_train, y_merged = train(x), merged(x)
        assert (y_train - y_merged).abs().max().item() <= 1e-5
        # Every branch counts: without one block's Laplacian branch the output moves far beyond the tolerance.
        broken = copy.deepcopy(train)
        broken.cells[1].conv3.conv1x1_lpl.scale.zero_()
        assert (broken(x) - y_train).abs().max().item() > 1e-3
    assert reparameterize_model(merged).state_dict().keys() == merged.state_dict().keys()  # idempotent


def test_dscf_convlora_merges_into_the_shipped_layout(weights_dir: Path) -> None:
    torch.manual_seed(5)
    train = _spread(DSCF(lora=True), seed=6)
    loras = [m for m in train.modules() if isinstance(m, LoRAConv2d)]
    # The official file's layered lora_config: conv_2 and upsampler.0 at (8, 16), every SPAB conv at (2, 4).
    assert len(loras) == 2 + 6 * 3
    assert sorted({(m.rank, m.scaling) for m in loras}) == [(2, 2.0), (8, 2.0)]
    assert all(not m.weight.requires_grad and m.lora_A.requires_grad for m in loras)
    merged = reparameterize_model(train)
    assert not any(isinstance(m, LoRAConv2d) for m in merged.modules())
    shipped = read_state_dict(require(weights_dir / RECORDS["dscf"][0]))
    assert {k: v.shape for k, v in merged.state_dict().items()} == {k: v.shape for k, v in shipped.items()}
    x = make_test_vector(24, 28)
    with torch.no_grad():
        y_train, y_merged = train(x), merged(x)
        # Outputs in [0,1] units; the network sees (x - mean) * 255, so float32 rounding of the merge shows at ~1e-6.
        assert (y_train - y_merged).abs().max().item() <= 1e-5
        assert (y_train - effsr.build_model("dscf").eval()(x)).abs().max().item() > 1e-2  # the updates matter
    # A fresh update is a no-op: lora_B starts at zero.
    fresh = DSCF(lora=True).eval()
    plain = reparameterize_model(fresh)
    with torch.no_grad():
        assert torch.equal(fresh(x), plain(x))


# ------------------------------------------------------------------------------------------------- SPANV2 attention


def test_span_attention_is_the_cuda_ops_formula() -> None:
    """(x + f3) * (W f3 + b) per pixel, against a float64 matrix-vector product (the extension's per-pixel loop)."""
    g = torch.Generator().manual_seed(7)
    x, f3 = torch.randn(2, 32, 5, 7, generator=g), torch.randn(2, 32, 5, 7, generator=g)
    w, b = torch.randn(32, 32, 1, 1, generator=g) * 0.2, torch.randn(32, generator=g)
    guide = torch.einsum("oi,nihw->nohw", w[:, :, 0, 0].double(), f3.double()) + b.double().view(1, -1, 1, 1)
    expected = (x.double() + f3.double()) * guide
    assert (span_attention(x, f3, w, b).double() - expected).abs().max().item() <= 1e-5
    with pytest.raises(ValueError, match="must match"):
        span_attention(x, f3[:, :16], w, b)
    with pytest.raises(ValueError, match=r"\[C, C, 1, 1\]"):
        span_attention(x, f3, w[:16], b)


def test_spanv2_blocks_compute_span_attention(zoo, data_dir: Path) -> None:
    model = zoo("spanv2")
    blocks = [m for m in model.modules() if isinstance(m, SPABV2)]
    assert [b.has_attention for b in blocks] == [False, True, True, True, True]
    captured: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    handles = []
    for i, block in enumerate(blocks[1:], 2):
        handles.append(block.c3.register_forward_hook(lambda m, a, o, i=i: captured.__setitem__(i, (o.clone(),))))
        handles.append(block.register_forward_hook(
            lambda m, a, o, i=i: captured.__setitem__(i, (a[0].clone(), *captured[i], o.clone()))))
    try:
        with torch.no_grad():
            model(_crop(data_dir, 24, 20))
    finally:
        for h in handles:
            h.remove()
    for i, block in enumerate(blocks[1:], 2):
        x, f3, out = captured[i]
        ref = span_attention(x, f3, block.guidance_map_conv.weight, block.guidance_map_conv.bias)
        assert torch.equal(out, ref), i


# --------------------------------------------------------------------------------------- receptive radius, tiling


@pytest.mark.parametrize("name", LOCAL)
def test_receptive_radius_is_exact(name: str, zoo, data_dir: Path) -> None:
    """An LR pixel changes exactly the outputs within the declared radius: the radius is neither too small (tiles
    would be wrong) nor too large."""
    model = zoo(name)
    radius = tiling_of(model).receptive_radius
    size, c = 2 * radius + 9, radius + 4
    x = _crop(data_dir, size, size)
    bumped = x.clone()
    bumped[:, :, c, c] += 0.5
    with torch.no_grad():
        diff = (model(bumped) - model(x)).abs()
    # Max over each LR pixel's s x s output block and the channels.
    changed = F.max_pool2d(diff.amax(1, keepdim=True), model.scale)[0, 0] > 0
    rows, cols = torch.nonzero(changed, as_tuple=True)
    reach = int(torch.maximum((rows - c).abs(), (cols - c).abs()).max())
    assert reach == radius


@pytest.mark.parametrize("name", GLOBAL)
def test_global_models_declare_a_period_and_no_radius(name: str, zoo, data_dir: Path) -> None:
    model = zoo(name)
    spec = tiling_of(model)
    assert spec.receptive_radius is None and not spec.exact
    assert spec.stride_period == GLOBAL[name]
    # Every engine carries the tiling facts (SAFMNv3's 96-pixel minimum tile included) to effsr.infer.
    for backend in ("fast", "onnxruntime"):
        engine = prepare(model, backend, tune_malloc=False)
        assert tiling_of(engine) == spec
        assert (spec.stride_period, spec.min_tile) == (GLOBAL[name], MIN_TILE.get(name, 0))
    x = _crop(data_dir, 48, 48)
    bumped = x.clone()
    bumped[:, :, 2, 2] += 0.5
    with torch.no_grad():
        far = (model(bumped) - model(x)).abs()[..., -8:, -8:]  # the opposite corner, 40+ LR pixels away
    assert far.max().item() > 0


@pytest.mark.parametrize("name", LOCAL)
def test_tiles_are_exact_with_the_declared_radius(name: str, zoo, data_dir: Path) -> None:
    """README: tiling is exact (max abs 1e-5) for purely local models when the overlap covers the receptive field."""
    model = zoo(name)
    radius = tiling_of(model).receptive_radius
    x = _crop(data_dir, 5 * radius, 5 * radius + 3)  # two tiles per axis
    with torch.no_grad():
        whole = upscale(model, x, tile=0)
        # The smallest tile for this overlap; band = overlap // 4 < R, so the tiler uses the declared radius.
        tiled = upscale(model, x, tile=4 * radius, tile_overlap=2 * radius)
    assert (tiled - whole).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name", ZOO_2025_2026)
def test_min_size_runs_and_is_tight(name: str, zoo, data_dir: Path) -> None:
    model = zoo(name)
    s = tiling_of(model).min_size
    with torch.no_grad():
        y = model(_crop(data_dir, s, s + 1))
    assert tuple(y.shape) == (1, 3, 4 * s, 4 * (s + 1)) and torch.isfinite(y).all()
    if s > 1:  # the ESA's pool (EFDN) and the h // 8 adaptive pool (SAFMNv3) fail one pixel below
        with pytest.raises(RuntimeError), torch.no_grad():
            model(_crop(data_dir, s - 1, s + 1))
    # Smaller inputs still work through effsr.infer, which pads to the minimum and crops back.
    out = upscale(model, _crop(data_dir, 5, 6))
    assert tuple(out.shape) == (1, 3, 20, 24) and torch.isfinite(out).all()


# --------------------------------------------------------------------------------------------------------- effsr zoo


def test_zoo_lists_the_new_models_with_source_and_licence() -> None:
    result = CliRunner().invoke(app, ["zoo"], env={"COLUMNS": "260"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for name, (file, *_rest, year) in RECORDS.items():
        row = next((line for line in lines if f" {file} " in line), None)
        assert row is not None, file
        assert f"Amazingren/NTIRE{year}_ESR @ {COMMITS[year][:8]}" in row and "MIT" in row
        assert f" {name} " in row
