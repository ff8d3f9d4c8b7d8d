"""``effsr profile``: parameters, MACs (three named counters), activations, #conv, peak memory, runtime, NTIRE score.

Flags are parsed here; every number comes from :mod:`effsr.profile` (conventions documented there) and the score from
:mod:`effsr.ntire` (one year's rules: ``--ntire 2024|2025|2026``, default the latest). ``--harness-dir DIR`` times a
dataset folder the way the official harness does (it was ``--ntire DIR`` before the year flag took the name).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from . import app


def parse_lr_size(text: str) -> tuple[int, int]:
    """``"640x360"`` (W x H, as image tools and ``effsr bench`` write sizes) or ``"256"`` (square) -> (H, W)."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        if len(parts) == 1:
            h = w = int(parts[0])
        elif len(parts) == 2:
            w, h = int(parts[0]), int(parts[1])
        else:
            raise ValueError
    except ValueError:
        raise typer.BadParameter(f"expected WxH such as 256x256 or 640x360, got {text!r}") from None
    if h < 1 or w < 1:
        raise typer.BadParameter(f"LR size must be positive, got {text!r}")
    return h, w


def _check_device(device: str) -> None:
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise typer.BadParameter("--device cuda was asked but CUDA is not available")
    if not (device == "cpu" or device.startswith("cuda")):
        raise typer.BadParameter(f"--device must be cpu or cuda, got {device!r}")


def _g(n: int) -> str:
    return f"{n / 1e9:.2f}"


def _m(n: int) -> str:
    return f"{n / 1e6:.2f}"


def parse_ntire_year(text: str) -> int:
    """``--ntire 2025`` -> 2025; anything else is a one-line error that names the known years (and, for a folder,
    the flag that now times a dataset folder)."""
    from ..ntire import RULES, rules

    try:
        return rules(text).year
    except ValueError:
        hint = ""
        if Path(text).expanduser().is_dir():
            hint = "; to time a dataset folder the way the NTIRE harness does, use --harness-dir DIR"
        raise typer.BadParameter(
            f"--ntire takes a challenge year ({', '.join(map(str, RULES))}), got {text!r}{hint}"
        ) from None


def _score_runtime(payload: dict[str, Any], harness: bool) -> float:
    """The runtime the score uses: the harness's mean per image with --harness-dir, else the median at --lr-size."""
    return payload["ntire"]["mean_ms"] if harness else payload["runtime_ms"]["median"]


def _add_score(payload: dict[str, Any], base: dict[str, Any], year: int, harness: bool, runtime_key: str) -> None:
    """Put this year's score against the locally measured baseline into ``payload["ntire_score"]``."""
    from ..ntire import rules

    r = rules(year)
    rt, base_rt = _score_runtime(payload, harness), _score_runtime(base, harness)
    s = r.score(rt, payload["macs_fvcore"], payload["params"], baseline_runtime_ms=base_rt,
                baseline_macs=base["macs_fvcore"], baseline_params=base["params"])
    payload["ntire_score"] = {
        "year": r.year,
        "final": s.score_final,
        "runtime": s.score_runtime,
        "flops": s.score_flops,
        "params": s.score_params,
        "baseline": r.baseline.model,
        "baseline_runtime_ms": base_rt,
        "baseline_macs_fvcore": base["macs_fvcore"],
        "baseline_params": base["params"],
        "runtime_used": runtime_key,
        "weights": {"runtime": r.weight_runtime, "flops": r.weight_flops, "params": r.weight_params},
        "organisers_gpu": r.gpu,
        "psnr_gate_db": {r.gate_datasets[0]: r.psnr_gate_valid_db, r.gate_datasets[1]: r.psnr_gate_test_db},
        "source": r.source,
    }


def _rules_caption(year: int, runtime_key: str) -> str:
    from ..ntire import rules

    r = rules(year)
    return (
        f"NTIRE {r.year} score vs {r.baseline.model.upper()} measured here: {r.formula()}, lower is better, "
        f"{r.baseline.model.upper()} = 7.389; rt = {runtime_key}, FLOPs = MACs fvcore. The organisers ranked on an "
        f"{r.gpu} and required PSNR >= {r.psnr_gate_valid_db:.2f} dB on {r.gate_datasets[0]} and "
        f">= {r.psnr_gate_test_db:.2f} dB on {r.gate_datasets[1]} (not measured here). Rules: {r.source}"
    )


def _print_single(console: Console, payload: dict[str, Any]) -> None:
    h, w = payload["lr_size"]
    table = Table(title=f"effsr profile: {payload['model']} at LR {h}x{w} on {payload['device']['name']}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_column("convention")
    rt = payload["runtime_ms"]
    rows = [
        ("params", f"{payload['params']:,}", "sum of numel of model.parameters()"),
        ("MACs fvcore (G)", _g(payload["macs_fvcore"]), "NTIRE 2024-2026 FLOPs: fvcore FlopCountAnalysis total"),
        ("MACs fvcore + 'same' convs (G)", _g(payload["macs_fvcore_with_same_padding_convs"]),
         "fvcore with padding='same' convolutions counted"),
        ("MACs conv hooks (G)", _g(payload["macs_conv_hooks"]), "NTIRE 2023 model_summary.get_model_flops"),
        ("MACs torch (G)", _g(payload["macs_torch"]), "torch FlopCounterMode FLOPs / 2 (conv + matmul only)"),
        ("activations (M)", _m(payload["activations"]), "elements output by Conv2d modules"),
        ("#conv", str(payload["num_conv"]), "Conv2d module calls"),
        ("peak memory (MiB)", f"{payload['peak_memory_mib']:.1f}", payload["peak_memory_method"]),
        ("runtime (ms)", f"{rt['median']:.2f} (IQR {rt['iqr']:.2f})",
         f"median of {rt['runs']} after {payload['runtime_protocol']['warmup']} warm-up, "
         f"{payload['runtime_protocol']['timer']}"),
    ]
    if "ntire" in payload:
        n = payload["ntire"]
        rows.append(("harness runtime (ms/img)", f"{n['mean_ms']:.2f} (median {n['median_ms']:.2f})",
                     f"{len(n['images'])} images of {n['data_dir']}, no warm-up, cudnn.benchmark off"))
        rows.append(("harness peak memory (MiB)", f"{n['peak_memory_mib']:.1f}", n["memory_method"]))
    score = payload.get("ntire_score")
    if score is not None:
        rows.append((f"NTIRE {score['year']} score", f"{score['final']:.3f}",
                     f"runtime {score['runtime']:.3f}, FLOPs {score['flops']:.3f}, params {score['params']:.3f} "
                     f"vs {score['baseline']} (rt {score['baseline_runtime_ms']:.2f} ms here)"))
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if score is not None:
        console.print(_rules_caption(score["year"], score["runtime_used"]))
    skipped = ", ".join(f"{k} x{v}" for k, v in payload["fvcore_unsupported"].items())
    console.print(f"fvcore skipped (counted as 0): {skipped or 'none'}")


def _print_all(console: Console, payloads: list[dict[str, Any]], runtime_key: str, year: int | None) -> None:
    h, w = payloads[0]["lr_size"]
    table = Table(
        title=f"effsr profile --all-models at LR {h}x{w} on {payloads[0]['device']['name']}",
        caption=_rules_caption(year, runtime_key) if year is not None else None,
    )
    for col in ("model", "params", "MACs fvcore (G)", "+'same' (G)", "conv hooks (G)", "torch (G)",
                "acts (M)", "#conv", "mem (MiB)", "runtime (ms)", "score"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for p in payloads:
        rt = p["runtime_ms"]
        runtime = f"{rt['median']:.2f} ±{rt['iqr']:.2f}"
        if "ntire" in p:
            runtime += f" / {p['ntire']['mean_ms']:.2f}"
        score = p.get("ntire_score")
        table.add_row(
            p["model"], f"{p['params']:,}", _g(p["macs_fvcore"]), _g(p["macs_fvcore_with_same_padding_convs"]),
            _g(p["macs_conv_hooks"]), _g(p["macs_torch"]), _m(p["activations"]), str(p["num_conv"]),
            f"{p['peak_memory_mib']:.1f}", runtime, f"{score['final']:.3f}" if score else "-",
        )
    console.print(table)


@app.command("profile")
def profile_cmd(
    model: str | None = typer.Option(None, "--model", "-m", help="Model name (see `effsr zoo`)."),
    weights: Path | None = typer.Option(None, "--weights", "-w", help="Weights file (.pth or .safetensors)."),
    lr_size: str = typer.Option("256x256", "--lr-size", help="LR input WxH, e.g. 640x360."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    runs: int = typer.Option(20, "--runs", min=1, help="Timed forwards (after the warm-up)."),
    warmup: int = typer.Option(5, "--warmup", min=0, help="Untimed forwards before timing."),
    json_file: Path | None = typer.Option(None, "--json", help="Write the raw numbers as JSON to this file."),
    ntire: str | None = typer.Option(
        None, "--ntire", metavar="YEAR",
        help="Challenge rules to score with: 2024 (RLFN), 2025 (EFDN) or 2026 (SPAN); default: the latest.",
    ),
    harness_dir: Path | None = typer.Option(
        None, "--harness-dir", help="Dataset folder: also time one forward per LR image as the NTIRE harness does "
        "(test_demo.py); the score then uses that mean per-image runtime.",
    ),
    score: bool = typer.Option(
        True, "--score/--no-score", help="Score with the year's rules (measures the baseline model here too)."
    ),
    all_models: bool = typer.Option(False, "--all-models", help="Every zoo model, one table, with the NTIRE score."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="torch CPU threads (default: torch's own)."),
) -> None:
    """Profile a model: params, MACs (fvcore / conv hooks / torch), activations, #conv, memory, runtime, NTIRE score."""
    import torch

    import effsr

    from ..models import get_spec, list_models
    from ..ntire import rules
    from ..profile import lr_images, profile_model
    from ..tiling import tiling_of

    size = parse_lr_size(lr_size)
    year = parse_ntire_year(ntire) if ntire is not None else rules().year
    baseline = rules(year).baseline.model
    _check_device(device)
    if threads is not None:
        torch.set_num_threads(threads)
    if harness_dir is not None:
        try:
            lr_images(harness_dir)  # fail before the long measurements when the folder holds no images
        except FileNotFoundError as exc:
            raise typer.BadParameter(str(exc), param_hint="--harness-dir") from None
    console = Console()
    harness = harness_dir is not None
    # The challenge ranks by the harness's mean per-image runtime; without --harness-dir the median at --lr-size.
    runtime_key = "harness mean per image" if harness else f"median at {size[0]}x{size[1]}"

    def measure(name: str, net: Any = None) -> dict[str, Any]:
        net = effsr.load(name, device=device) if net is None else net
        return profile_model(net, name, lr_size=size, runs=runs, warmup=warmup, ntire_dir=harness_dir).to_json()

    if not all_models:
        if model is None and weights is None:
            raise typer.BadParameter("give --model NAME and/or --weights FILE, or --all-models")
        net = effsr.load(model, weights, device=device)
        name = get_spec(model).name if model else Path(weights).stem  # type: ignore[arg-type]
        min_size = tiling_of(net).min_size
        if min(size) < min_size:
            raise typer.BadParameter(f"--lr-size {lr_size} is below {name}'s minimum LR size {min_size}x{min_size}")
        payload = measure(name, net)
        if score:
            # The score compares runtimes, which only means something on one machine: the baseline is measured here.
            base = payload if name == baseline else measure(baseline)
            _add_score(payload, base, year, harness, runtime_key)
        _print_single(console, payload)
        if json_file is not None:
            _write_json(json_file, payload)
        return

    if model is not None or weights is not None:
        raise typer.BadParameter("--all-models profiles every zoo model; drop --model/--weights")
    names = [n for n in list_models() if get_spec(n).weights]
    min_sizes = {n: tiling_of(get_spec(n).builder(**dict(get_spec(n).weights[0].kwargs))).min_size for n in names}
    too_small = [n for n, m in min_sizes.items() if min(size) < m]
    if too_small:
        raise typer.BadParameter(f"--lr-size {lr_size} is below the minimum LR size of {', '.join(too_small)}")
    payloads: list[dict[str, Any]] = []
    for n in names:
        Console(stderr=True).print(f"profiling {n} ...", style="dim")
        payloads.append(measure(n))
    if score:
        base = next((p for p in payloads if p["model"] == baseline), None) or measure(baseline)
        for p in payloads:
            _add_score(p, base, year, harness, runtime_key)
    _print_all(console, payloads, runtime_key, year if score else None)
    if json_file is not None:
        _write_json(json_file, payloads)


def _write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
