"""The zoo stays honest: every record's facts are recomputed from the model and the file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

import effsr
from effsr.models import all_weight_records, get_spec, list_models
from effsr.weights import read_state_dict

from ..conftest import require

SEED_AND_REFERENCE = ["rlfn", "agdn", "lsanet", "ifadnet", "mdrn_s", "mdrn", "msn", "span", "safmnpp"]
RECORDS = all_weight_records()


def _sha256_lines(weights_dir: Path) -> dict[str, str]:
    out = {}
    for line in require(weights_dir / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        out[name.lstrip("*")] = digest
    return out


def test_every_cli_model_is_registered() -> None:
    assert set(SEED_AND_REFERENCE) <= set(list_models())
    for name in SEED_AND_REFERENCE:
        assert get_spec(name).default_weights is not None, name
    assert get_spec("mdrn").default_weights.scale == 4


def test_every_shared_weight_file_has_a_record(weights_dir: Path) -> None:
    files = {r.file for r in RECORDS}
    assert set(_sha256_lines(weights_dir)) <= files


@pytest.mark.parametrize("record", RECORDS, ids=[r.name for r in RECORDS])
def test_record_facts(record, weights_dir: Path) -> None:
    # sha256 equals the published checksum and the file
    sums = _sha256_lines(weights_dir)
    assert record.sha256 == sums[record.file]
    path = require(weights_dir / record.file)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == record.sha256
    # the URL is pinned to a commit (40 hex digits) and ends with the file name
    assert record.url.endswith("/" + record.file)
    assert any(len(part) == 40 and all(c in "0123456789abcdef" for c in part) for part in record.url.split("/"))
    assert record.source and record.licence
    # the parameter count is recomputed from the built model, and the file has exactly those tensors
    model = get_spec(record.model).builder(**dict(record.kwargs))
    n_params = sum(p.numel() for p in model.state_dict().values() if p.dtype.is_floating_point)
    sd = read_state_dict(path, record.wrapper_key)
    assert sum(t.numel() for t in sd.values()) == record.params
    assert n_params == record.params
    assert getattr(model, "scale", None) == record.scale


@pytest.mark.parametrize("record", RECORDS, ids=[r.name for r in RECORDS])
def test_detect_architecture_of_every_file(record, weights_dir: Path) -> None:
    sd = read_state_dict(require(weights_dir / record.file), record.wrapper_key)
    name, kwargs = effsr.detect_architecture(sd)
    assert name == record.model
    built = get_spec(name).builder(**kwargs)
    assert {k: tuple(v.shape) for k, v in built.state_dict().items()} == {k: tuple(v.shape) for k, v in sd.items()}
    # loading by file alone gives the same model class and scale
    model = effsr.load(str(weights_dir / record.file))
    assert model.scale == record.scale
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_min_size_declared() -> None:
    for name in SEED_AND_REFERENCE:
        model = effsr.build_model(name)
        spec = model.tiling  # effsr.tiling.TilingSpec, declared by the architecture
        assert isinstance(spec.min_size, int) and spec.min_size >= 1
        assert isinstance(model.scale, int) and spec.scale == model.scale
        x = torch.rand(1, 3, spec.min_size, spec.min_size)
        model.eval()
        with torch.no_grad():
            y = model(x)
        assert y.shape == (1, 3, spec.min_size * model.scale, spec.min_size * model.scale)
