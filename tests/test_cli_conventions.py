"""The ``effsr`` console script behaves like the tools people already use (run for real, in subprocesses).

One-line errors with exit status 2 for usage errors and 1 for failures, ``EFFSR_DEBUG=1`` tracebacks, ``--version``,
``-h``, ``--json -`` on standard output, list flags given as ``a,b`` or repeated, full-width tables when piped, and
nothing written over an existing output without ``--overwrite``. Each ``effsr`` start imports torch (a second or
two), so the error table runs two processes at a time and the other tests batch what they check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

import effsr
from effsr.weights import save_safetensors

EFFSR = Path(sys.executable).with_name("effsr")
RGB = np.random.default_rng(5).integers(0, 256, (12, 16, 3), dtype=np.uint8)


def run_effsr(*args: str | Path, cwd: Path, env: dict[str, str] | None = None, umask: int | None = None,
              timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it (stdout and stderr kept apart)."""
    base = {k: v for k, v in os.environ.items() if k not in ("EFFSR_DEBUG", "COLUMNS", "LINES")}
    preexec = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.run([str(EFFSR), *map(str, args)], cwd=cwd, env={**base, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout, preexec_fn=preexec)


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the files the mistakes below refer to."""
    d = tmp_path_factory.mktemp("cli")
    PILImage.fromarray(RGB).save(d / "a.png")
    PILImage.fromarray(RGB).save(d / "b.png")
    data = (d / "a.png").read_bytes()
    (d / "broken.png").write_bytes(data[: len(data) // 2])
    (d / "exists.onnx").write_bytes(b"keep me")
    (d / "tiny" / "HR").mkdir(parents=True)
    hr = np.random.default_rng(6).integers(0, 256, (48, 60, 3), dtype=np.uint8)  # x3 and x4 LR above SSIM's window
    PILImage.fromarray(hr).save(d / "tiny" / "HR" / "a.png")
    (d / "LR").mkdir()
    (d / "LR" / "a.png").write_bytes(b"keep me")
    (d / "bad.yaml").write_text("model: rlfn\nlearning_rate: 1\n")
    return d


@pytest.fixture(scope="module")
def span_file(work: Path, weights_dir: Path) -> Path:
    return save_safetensors(effsr.load("span").state_dict(), work / "span.safetensors", model="span",
                            kwargs={"scale": 4})


# (arguments, exit status, words the one line must hold): at least ten everyday mistakes.
MISTAKES = [
    (["eval", "-m", "rlfm"], 2, ["unknown model 'rlfm'", "rlfn", "effsr zoo"]),
    (["export", "-w", "missing.pth", "-o", "x.onnx"], 2, ["--weights", "missing.pth", "does not exist"]),
    (["profile", "-m", "rlfn", "--device", "cuda:99"], 2, ["--device", "cuda:99"]),
    (["profile", "-m", "rlfn", "--lr-size", "64by64"], 2, ["--lr-size", "64by64", "640x360"]),
    (["export", "-m", "span", "-o", "exists.onnx"], 1, ["exists.onnx", "--overwrite"]),
    (["zoo", "--bogus"], 2, ["--bogus", "effsr zoo -h"]),
    (["upscale", "a.png", "-m", "span"], 2, ["-o", "effsr upscale -h"]),
    (["upscale", "a.png", "-o", "out", "-m", "span", "--max-memory", "lots"], 2, ["--max-memory", "lots"]),
    (["upscale", "a.png", "-o", "out", "-m", "span", "--overwrite", "--skip-existing"], 2, ["--skip-existing"]),
    (["upscale", "a.png", "-o", "out", "-m", "mdrn", "--scale", "5"], 2, ["mdrn", "scale", "mdrn_x3"]),
    (["upscale", "a.png", "-o", "out", "-m", "rlfn", "-w", "span.safetensors"], 1, ["do not fit", "span"]),
    (["upscale", "a.png", "b.png", "-o", "out.png", "-m", "span"], 2, ["out.png", "folder"]),
    (["upscale", "a.png", "-o", "a.png", "-m", "span"], 2, ["a.png", "input", "--overwrite"]),
    (["eval", "-m", "span", "nosuchset"], 2, ["nosuchset", "set5"]),
    (["eval"], 2, ["--model"]),
    (["bench", "-m", "rlfn", "--backend", "tensorrt"], 2, ["tensorrt", "onnxruntime"]),
    (["data", "degrade", "tiny/HR", "-o", "LR"], 1, ["a.png", "--overwrite"]),
    (["train", "bad.yaml"], 2, ["learning_rate"]),
]


def test_mistakes_are_one_line_with_the_right_status(work: Path, span_file: Path) -> None:
    def check(case: tuple[list[str], int, list[str]]) -> str | None:
        args, status, words = case
        res = run_effsr(*args, cwd=work)
        err = _lines(res.stderr)
        problems = []
        if res.returncode != status:
            problems.append(f"exit status {res.returncode}, expected {status}")
        if len(err) != 1 or not err[0].startswith("error: "):
            problems.append(f"stderr is not one 'error: ' line: {res.stderr!r}")
        missing = [w for w in words if w not in res.stderr]
        if missing:
            problems.append(f"the line lacks {missing}: {res.stderr!r}")
        return f"effsr {' '.join(args)}: {'; '.join(problems)}" if problems else None

    with ThreadPoolExecutor(max_workers=2) as pool:
        problems = [p for p in pool.map(check, MISTAKES) if p]
    assert not problems, "\n".join(problems)
    assert (work / "exists.onnx").read_bytes() == b"keep me"  # nothing written over an existing output
    assert (work / "LR" / "a.png").read_bytes() == b"keep me"
    assert (work / "a.png").read_bytes() == (work / "b.png").read_bytes()  # nor over an input
    assert not (work / "out").exists() and not (work / "x.onnx").exists()


def test_a_broken_image_names_the_file_and_debug_shows_the_traceback(work: Path) -> None:
    res = run_effsr("upscale", "broken.png", "-o", "out_broken", "-m", "span", cwd=work)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert any(line.startswith("error: broken.png: truncated or corrupt") for line in _lines(res.stderr))
    assert "0 image(s) written" in res.stderr and "1 failed" in res.stderr
    debug = run_effsr("eval", "-m", "rlfm", cwd=work, env={"EFFSR_DEBUG": "1"})
    assert debug.returncode == 2 and "Traceback (most recent call last)" in debug.stderr
    assert "UnknownModelError" in debug.stderr and _lines(debug.stderr)[-1].startswith("error: unknown model 'rlfm'")


def test_version_help_and_completion(work: Path) -> None:
    res = run_effsr("--version", cwd=work)
    assert res.returncode == 0 and res.stdout.strip() == f"effsr {effsr.__version__}"
    res = run_effsr("upscale", "-h", cwd=work)
    assert res.returncode == 0 and "--skip-existing" in res.stdout and "--recursive" in res.stdout
    res = run_effsr("-h", cwd=work)
    assert res.returncode == 0 and "--install-completion" in res.stdout and "upscale" in res.stdout


def test_zoo_json_on_stdout_and_a_full_width_table_when_piped(work: Path, weights_dir: Path) -> None:
    res = run_effsr("zoo", "--json", "-", cwd=work)
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)  # nothing but JSON on stdout
    names = {r["weights"] for r in rows}
    assert {"mdrn_x3", "mdrn_x4", "rlfn_ntire2024"} <= names
    assert not (work / "-").exists()
    table = run_effsr("zoo", cwd=work)  # stdout is a pipe here
    assert table.returncode == 0
    longest = max(rows, key=lambda r: len(r["source"] or ""))["source"]
    assert longest in table.stdout and max(map(len, table.stdout.splitlines())) > 120


def test_eval_lists_and_json_on_stdout(work: Path, weights_dir: Path) -> None:
    """-m a -m b and -m a,b name the same two models; --json - is the only thing on stdout."""
    repeated = run_effsr("eval", "tiny", "-m", "mdrn_x3", "-m", "span", "--backend", "eager", "--json", "-",
                         cwd=work)
    assert repeated.returncode == 0, repeated.stderr
    runs = json.loads(repeated.stdout)
    assert [(r["model"], r["dataset"]) for r in runs] == [("mdrn_x3", "tiny"), ("span", "tiny")]
    assert "| span |" in repeated.stderr  # the table moved to stderr
    commas = run_effsr("eval", "-d", "tiny", "-m", "mdrn_x3,span", "--backend", "eager", "--csv", "-", cwd=work)
    assert commas.returncode == 0, commas.stderr
    rows = _lines(commas.stdout)
    assert rows[0].startswith("model,dataset,name,psnr_rgb") and [r.split(",")[0] for r in rows[1:]] == [
        "mdrn_x3", "span"]


def test_profile_of_several_models_labels_a_cpu_score(work: Path, weights_dir: Path) -> None:
    res = run_effsr("profile", "-m", "rlfn,span", "--lr-size", "32", "--runs", "1", "--warmup", "0", "--json", "-",
                    cwd=work)
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [r["model"] for r in rows] == ["rlfn", "span"] and rows[0]["lr_size"] == [32, 32]
    assert all(r["ntire_score"]["runtime_device"] == "cpu" for r in rows)
    assert "score (CPU rt)" in res.stderr and "CPU-runtime score" in res.stderr


def test_the_cli_choices_are_the_engines_names() -> None:
    """The command line spells backends and precisions out (it parses flags before torch loads); they must stay the
    names that effsr.deploy runs."""
    from effsr.cli.options import BackendChoice, PrecisionChoice
    from effsr.deploy.backends import BACKENDS
    from effsr.deploy.precision import BACKEND_PRECISIONS, PRECISION_NAMES

    assert [c.value for c in BackendChoice] == list(BACKENDS) == list(BACKEND_PRECISIONS)
    assert [c.value for c in PrecisionChoice] == list(PRECISION_NAMES)
