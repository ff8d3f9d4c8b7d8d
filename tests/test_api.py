"""``effsr.upscale``: a path, a PIL image, a numpy array or a tensor in; the same kind out, equal to the library path.

SPAN (official weights, no minimum size) on tiny images, eager backend so the values equal
``effsr.infer.upscale`` exactly; the README's Python examples are executed as written.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

import effsr
from effsr.errors import InvalidValueError, OutputExistsError
from effsr.imageio import read_image, tensor_to_uint8, uint8_to_tensor
from effsr.infer import upscale as upscale_tensor
from effsr.weights import save_safetensors

REPO = Path(__file__).resolve().parents[1]
RGB = np.random.default_rng(3).integers(0, 256, (10, 14, 3), dtype=np.uint8)
KW = {"model": "span", "backend": "eager"}


@pytest.fixture(scope="module")
def span() -> torch.nn.Module:
    return effsr.load("span")


def test_numpy_in_numpy_out(span, weights_dir: Path) -> None:
    expected = tensor_to_uint8(upscale_tensor(span, uint8_to_tensor(RGB)))
    out = effsr.upscale(RGB, **KW)
    assert out.dtype == np.uint8 and out.shape == (40, 56, 3) and np.array_equal(out, expected)
    deep = effsr.upscale(RGB.astype(np.uint16) * 257, **KW)  # 16-bit stays 16-bit
    assert deep.dtype == np.uint16 and np.abs(deep.astype(np.int64) // 257 - expected).max() <= 1
    gray = effsr.upscale(RGB[..., 0], **KW)
    assert gray.shape == (40, 56) and gray.dtype == np.uint8
    assert effsr.upscale(RGB[..., :1], **KW).shape == (40, 56, 1)
    rgba = effsr.upscale(np.dstack([RGB, np.full(RGB.shape[:2], 200, np.uint8)]), **KW)
    assert rgba.shape == (40, 56, 4) and (rgba[..., 3] == 200).all()  # a constant alpha stays constant
    as_float = effsr.upscale(RGB / 255.0, **KW)
    assert as_float.dtype == np.float32 and as_float.min() >= 0 and as_float.max() <= 1
    assert np.abs(np.round(as_float * 255) - expected).max() <= 1


def test_pil_and_path_in(span, weights_dir: Path, tmp_path: Path) -> None:
    expected = tensor_to_uint8(upscale_tensor(span, uint8_to_tensor(RGB)))
    out = effsr.upscale(PILImage.fromarray(RGB), **KW)
    assert isinstance(out, PILImage.Image) and out.mode == "RGB" and np.array_equal(np.asarray(out), expected)
    assert effsr.upscale(PILImage.fromarray(RGB).convert("L"), **KW).mode == "L"
    assert effsr.upscale(PILImage.fromarray(RGB).convert("RGBA"), **KW).mode == "RGBA"
    assert effsr.upscale(PILImage.fromarray(RGB).convert("P"), **KW).size == (56, 40)
    src = tmp_path / "a.png"
    PILImage.fromarray(RGB).save(src)
    out = effsr.upscale(src, **KW)  # a path without output=: a PIL image
    assert isinstance(out, PILImage.Image) and np.array_equal(np.asarray(out), expected)
    written = effsr.upscale(str(src), output=tmp_path / "b.png", **KW)
    assert written == tmp_path / "b.png" and np.array_equal(np.asarray(PILImage.open(written)), expected)
    with pytest.raises(OutputExistsError, match="is an input file"):
        effsr.upscale(src, output=src, **KW)  # never over an input without overwrite=True
    with pytest.raises(OutputExistsError):
        effsr.upscale(src, output=written, **KW)
    assert read_image(src).width == 14


def test_tensor_in_tensor_out(span, weights_dir: Path) -> None:
    x = uint8_to_tensor(RGB)
    out = effsr.upscale(x, **KW)
    assert out.shape == (1, 3, 40, 56) and out.dtype == torch.float32
    assert torch.equal(out, upscale_tensor(span, x).clamp(0, 1))
    assert effsr.upscale(x[0], **KW).shape == (3, 40, 56)
    gray = effsr.upscale(x[:, :1].repeat(2, 1, 1, 1), **KW)
    assert gray.shape == (2, 1, 40, 56)
    out.add_(0)  # an ordinary tensor, not an inference-mode one
    # A built module is used as it is; another scale through a weights name.
    assert effsr.upscale(x, model=span).shape == (1, 3, 40, 56)
    assert effsr.upscale(x, model="mdrn_x3", backend="eager").shape == (1, 3, 30, 42)


def test_bad_inputs_are_typed_errors(weights_dir: Path) -> None:
    with pytest.raises(InvalidValueError, match="PIL image"):
        effsr.upscale([1, 2, 3], **KW)
    with pytest.raises(InvalidValueError, match="path input"):
        effsr.upscale(RGB, output="x.png", **KW)
    with pytest.raises(InvalidValueError, match="effsr.upscale"):  # the tensor contract points at the one-liner
        upscale_tensor(torch.nn.Identity(), RGB)
    with pytest.raises(KeyError, match="rlfm"):  # UnknownModelError is a KeyError, with no stray quotes
        effsr.upscale(RGB, model="rlfm")


def _readme_python_blocks() -> list[str]:
    text = (REPO / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_python_examples_run(weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ```python block of README.md runs as written, in a folder holding the files it names: photo.png and
    runs/smoke/final.safetensors (what `effsr train configs/smoke.yaml` writes; here SPAN's weights)."""
    blocks = _readme_python_blocks()
    assert len(blocks) >= 3, "README.md should show the Python API"
    monkeypatch.chdir(tmp_path)
    PILImage.fromarray(RGB).save("photo.png")
    save_safetensors(effsr.load("span").state_dict(), "runs/smoke/final.safetensors", model="span",
                     kwargs={"scale": 4})
    for i, code in enumerate(blocks):
        exec(compile(code, f"README.md python block {i + 1}", "exec"), {"__name__": f"readme_{i}"})
    assert Path("photo_x4.png").is_file()
