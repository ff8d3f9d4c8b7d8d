"""effsr.deploy.passes on the zoo: the ordered, named pass list with per-pass counts, and the graph it builds.

* ``effsr bench --explain`` prints the pass list with per-pass counts for every zoo model (built at LR 32x32).
* The counts of the zoo models (``tests/pass_counts.json``) are those of the graph that was checked node for node
  and bit for bit against the single-file engine the pipeline replaced: a change that alters the deploy graph has
  to change them on purpose.
* The native passes can be left out like any other. (Each pass on small random modules, leaving each out, and the
  per-pass check: tests/test_engine.py.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import effsr
from effsr.cli import app
from effsr.deploy import FP32_TOLERANCE, build_deploy_graph, native
from effsr.deploy.checks import example_image
from effsr.deploy.passes import NATIVE_PASSES, PASS_NAMES, PIPELINE
from effsr.models import get_spec, list_models

ZOO = [name for name in list_models() if get_spec(name).weights]
STATUSES = ("ran", "disabled", "not applicable")
COUNTS_FILE = Path(__file__).with_name("pass_counts.json")
EXPECTED_COUNTS: dict[str, dict[str, int]] = json.loads(COUNTS_FILE.read_text())["counts"]

pytestmark = pytest.mark.usefixtures("one_thread")


def _expected(name: str) -> dict[str, int]:
    counts = {p: EXPECTED_COUNTS[name].get(p, 0) for p in PASS_NAMES}
    if native.library() is None:  # no kernels for this CPU: the native passes do not apply
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
    assert set(EXPECTED_COUNTS) <= set(ZOO)
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


def test_native_passes_can_be_disabled_on_rlfn(weights_dir: Path) -> None:
    model = effsr.load("rlfn")
    x = example_image(3, 40, 36)
    if native.library() is None:
        graph = build_deploy_graph(model, x)
        assert all(r.status == "not applicable" for r in graph.pass_report.records if r.name in NATIVE_PASSES)
        return
    for name in NATIVE_PASSES:
        graph = build_deploy_graph(model, x, disable_passes=(name,))
        assert graph.pass_report.fired(name) == 0 and graph.pass_report.disabled == (name,)
        with torch.inference_mode():
            err = float((graph(x.contiguous(memory_format=torch.channels_last)) - model(x)).abs().max())
        assert err <= 5e-5, name


def test_the_rgb_mean_is_a_buffer_that_leaves_the_state_dict_alone(weights_dir: Path) -> None:
    """blocks.register_mean: a non-persistent buffer, so it moves and casts with the model (no cast per forward,
    hence no fold_constants work on it above) and official weights keep loading strictly."""
    for name in ("mdrn_s", "msn", "agdn", "lsanet", "ifadnet", "span"):
        model = effsr.load(name)
        buffers = dict(model.named_buffers())
        key = "rgb_mean" if name == "span" else "mean"
        assert key in buffers and not any("mean" in k for k in model.state_dict()), name
        assert model.double().get_buffer(key).dtype == torch.float64
