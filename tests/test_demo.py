"""``make demo``'s pictures: the side-by-side crop (bicubic | model | ground truth, labelled) and the quality-vs-cost
plot built from the leaderboard and the complexity JSON. (The whole demo runs the zoo; ``make demo`` is its test.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from effsr import demo


def test_side_by_side_picture(tmp_path: Path) -> None:
    flat = np.full((200, 240, 3), 128, np.uint8)
    detailed = flat.copy()
    detailed[120:200, 150:230] = np.random.default_rng(0).integers(0, 256, (80, 80, 3), dtype=np.uint8)
    corner = demo._detail_crop(detailed)
    y, x = corner
    assert 120 - demo.CROP < y <= 120 and 150 - demo.CROP < x <= 150  # the crop lands on the textured part
    path = demo.side_by_side([("bicubic 20.00 dB", flat), ("model 21.00 dB", detailed), ("ground truth", detailed)],
                             corner, tmp_path / "sbs.png", note="PSNR RGB")
    with PILImage.open(path) as im:
        w, h = im.size
        assert im.format == "PNG" and w == 3 * 2 * demo.CROP + 4 * 8 and h > 2 * demo.CROP
        arr = np.asarray(im.convert("RGB"))
    band = arr[:28]  # the labels are drawn in the band above the crops
    assert (band < 100).any() and (band == 255).any()


def test_quality_vs_cost_plot_from_the_complexity_json(tmp_path: Path) -> None:
    rows = [{"model": m, "params": p, "macs_fvcore": macs, "lr_size": [256, 256]}
            for m, p, macs in (("rlfn", 317_180, 19_670_000_000), ("span", 151_000, 9_900_000_000))]
    (tmp_path / "complexity.json").write_text(json.dumps(rows))
    path = demo._plot(tmp_path, {"rlfn": 30.1, "span": 30.0, "absent": 1.0}, tmp_path / "complexity.json")
    assert path == tmp_path / "quality_vs_cost.png"
    with PILImage.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 400
