"""Weight resolution, verified download, safe loading and the safetensors round trip."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from pathlib import Path

import pytest
import torch

import effsr
from effsr.weights import (
    WeightsError,
    WeightsRecord,
    read_effsr_metadata,
    read_state_dict,
    resolve_weights,
    save_safetensors,
    unwrap_state_dict,
)


def _record(tmp: Path, payload: bytes, url: str) -> WeightsRecord:
    return WeightsRecord(
        name="toy",
        model="rlfn",
        file="toy.pth",
        url=url,
        sha256=hashlib.sha256(payload).hexdigest(),
        wrapper_key=None,
    )


@pytest.fixture()
def http_root(tmp_path: Path):
    """A loopback HTTP server serving tmp_path/www (never the internet)."""
    root = tmp_path / "www"
    root.mkdir()
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_resolution_order_and_verified_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, http_root) -> None:
    root, base = http_root
    payload = b"weights-bytes" * 100
    (root / "toy.pth").write_bytes(payload)
    rec = _record(tmp_path, payload, f"{base}/toy.pth")
    cache = tmp_path / "cache"
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    monkeypatch.setenv("EFFSR_CACHE", str(cache))
    monkeypatch.setenv("EFFSR_WEIGHTS_DIR", str(mirror))

    # 4. nothing local: download, verified, into the cache
    got = resolve_weights(rec)
    assert got == cache / "toy.pth" and got.read_bytes() == payload
    # 3. now the cache answers without the server
    (root / "toy.pth").unlink()
    assert resolve_weights(rec) == cache / "toy.pth"
    # 2. the mirror wins over the cache
    (mirror / "toy.pth").write_bytes(payload)
    assert resolve_weights(rec) == mirror / "toy.pth"
    # 1. an explicit path wins over everything
    explicit = tmp_path / "explicit.pth"
    explicit.write_bytes(b"x")
    assert resolve_weights(rec, path=explicit) == explicit


def test_download_with_wrong_sha256_is_discarded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, http_root) -> None:
    root, base = http_root
    (root / "toy.pth").write_bytes(b"tampered")
    rec = _record(tmp_path, b"original", f"{base}/toy.pth")
    monkeypatch.setenv("EFFSR_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EFFSR_WEIGHTS_DIR", raising=False)
    with pytest.raises(WeightsError, match="sha256"):
        resolve_weights(rec)
    assert not (tmp_path / "cache" / "toy.pth").exists()
    assert not list((tmp_path / "cache").glob("*.part"))


def test_file_url_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src.pth"
    src.write_bytes(b"abc" * 10)
    rec = _record(tmp_path, src.read_bytes(), src.as_uri())
    monkeypatch.setenv("EFFSR_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EFFSR_WEIGHTS_DIR", raising=False)
    assert resolve_weights(rec).read_bytes() == src.read_bytes()


def test_mirror_with_wrong_sha_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "toy.pth").write_bytes(b"bad")
    monkeypatch.setenv("EFFSR_WEIGHTS_DIR", str(mirror))
    with pytest.raises(WeightsError, match="sha256"):
        resolve_weights(_record(tmp_path, b"good", "http://127.0.0.1:9/none"))


def test_no_download_when_disabled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EFFSR_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EFFSR_WEIGHTS_DIR", raising=False)
    with pytest.raises(WeightsError, match="not found"):
        resolve_weights(_record(tmp_path, b"x", "http://127.0.0.1:9/none"), download=False)


def test_unwrap_and_module_prefix() -> None:
    t = torch.zeros(2)
    assert list(unwrap_state_dict({"params_ema": {"module.a": t}, "params": {"b": t}})) == ["a"]
    assert list(unwrap_state_dict({"params": {"b": t}})) == ["b"]
    assert list(unwrap_state_dict({"state_dict": {"module.c": t}})) == ["c"]
    assert list(unwrap_state_dict({"params_ema": {"a": t}, "params": {"b": t}}, "params")) == ["b"]
    with pytest.raises(WeightsError):
        unwrap_state_dict({"params": {"b": t}}, "params_ema")
    with pytest.raises(WeightsError):
        unwrap_state_dict([1, 2])


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    """A checkpoint that needs arbitrary unpickling is rejected, not executed."""

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, path)
    with pytest.raises(WeightsError, match="weights-only"):
        read_state_dict(path)


def test_corrupt_file_clear_error(tmp_path: Path) -> None:
    for name in ("junk.pth", "junk.safetensors"):
        p = tmp_path / name
        p.write_bytes(b"\x00not a checkpoint")
        with pytest.raises(WeightsError, match=name):
            read_state_dict(p)


def test_safetensors_round_trip(tmp_path: Path) -> None:
    model = effsr.load("rlfn")
    path = save_safetensors(model.state_dict(), tmp_path / "rlfn.safetensors", model="rlfn", kwargs={})
    assert read_effsr_metadata(path) == {"model": "rlfn", "kwargs": {}}
    sd = read_state_dict(path)
    for k, v in model.state_dict().items():
        assert torch.equal(sd[k], v)
    again = effsr.load(str(path))  # no model name: rebuilt from the metadata
    x = torch.rand(1, 3, 20, 24)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))
    # a bare safetensors file (no effsr metadata) is detected from its keys
    bare = save_safetensors(model.state_dict(), tmp_path / "bare.safetensors")
    assert read_effsr_metadata(bare) is None
    assert type(effsr.load(str(bare))).__name__ == type(model).__name__


def test_strict_load_error_names_keys_and_architecture(weights_dir: Path) -> None:
    with pytest.raises(WeightsError) as info:
        effsr.load("rlfn", weights_dir / "team31_agdn.pth")
    msg = str(info.value)
    assert "missing keys" in msg and "unexpected keys" in msg
    assert "conv_1.weight" in msg  # an RLFN key absent from the AGDN file
    assert "looks like 'agdn'" in msg


def test_conflicting_weight_determined_argument_raises(weights_dir: Path) -> None:
    with pytest.raises(ValueError, match="num_features"):
        effsr.load("mdrn_s", weights_dir / "mdrn-s.pth", num_features=56)
    with pytest.raises(ValueError, match="scale"):
        effsr.load("rlfn", scale=2)


def test_unknown_model_suggests_close_names() -> None:
    with pytest.raises(KeyError, match="rlfn"):
        effsr.get_spec("rlnf")
