"""``effsr profile``: parameters, MACs (three named counters), activations, #conv, peak memory, runtime, NTIRE score.

Flags are parsed here; every number comes from :mod:`effsr.profile` (conventions documented there) and the score from
:mod:`effsr.ntire` (one year's rules: ``--ntire 2024|2025|2026``, default the latest). ``--harness-dir DIR`` times a
dataset folder the way the official harness does (it was ``--ntire DIR`` before the year flag took the name).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from ..errors import InvalidValueError, UsageError
from . import app, options


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
        raise InvalidValueError(
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
        "runtime_device": payload["device"]["device"],
        "weights": {"runtime": r.weight_runtime, "flops": r.weight_flops, "params": r.weight_params},
        "organisers_gpu": r.gpu,
        "psnr_gate_db": {r.gate_datasets[0]: r.psnr_gate_valid_db, r.gate_datasets[1]: r.psnr_gate_test_db},
        "source": r.source,
    }


def _score_label(payloads: list[dict[str, Any]]) -> tuple[str, str]:
    """The score column's header and the caption's note. The challenge ranks runtimes measured on its GPU
    (``effsr.ntire``: the organisers' GPU of each year); a score from CPU runtimes follows the formula but is not
    that ranking."""
    if all(str(p["device"]["device"]).startswith("cuda") for p in payloads):
        return "score", "runtimes on this GPU"
    return "score (CPU rt)", "runtimes on this CPU, so a CPU-runtime score: the challenge ranks GPU runtimes"


def _rules_caption(year: int, runtime_key: str, note: str) -> str:
    from ..ntire import rules

    r = rules(year)
    return (
        f"NTIRE {r.year} score vs {r.baseline.model.upper()} measured here: {r.formula()}, lower is better, "
        f"{r.baseline.model.upper()} = 7.389; rt = {runtime_key}, FLOPs = MACs fvcore; {note}. The organisers ranked "
        f"on an {r.gpu} and required PSNR >= {r.psnr_gate_valid_db:.2f} dB on {r.gate_datasets[0]} and "
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
        header, note = _score_label([payload])
        rows.append((f"NTIRE {score['year']} {header}", f"{score['final']:.3f}",
                     f"runtime {score['runtime']:.3f}, FLOPs {score['flops']:.3f}, params {score['params']:.3f} "
                     f"vs {score['baseline']} (rt {score['baseline_runtime_ms']:.2f} ms here)"))
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if score is not None:
        console.print(_rules_caption(score["year"], score["runtime_used"], _score_label([payload])[1]))
    skipped = ", ".join(f"{k} x{v}" for k, v in payload["fvcore_unsupported"].items())
    console.print(f"fvcore skipped (counted as 0): {skipped or 'none'}")


def _print_all(console: Console, payloads: list[dict[str, Any]], runtime_key: str, year: int | None) -> None:
    h, w = payloads[0]["lr_size"]
    header, note = _score_label(payloads)
    table = Table(
        title=f"effsr profile at LR {h}x{w} on {payloads[0]['device']['name']}",
        caption=_rules_caption(year, runtime_key, note) if year is not None else None,
    )
    for col in ("model", "params", "MACs fvcore (G)", "+'same' (G)", "conv hooks (G)", "torch (G)",
                "acts (M)", "#conv", "mem (MiB)", "runtime (ms)", header):
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
    model: options.Models = None,
    weights: options.Weights = None,
    scale: options.Scale = None,
    lr_size: options.LrSize = "256x256",
    device: options.Device = "cpu",
    runs: int = typer.Option(20, "--runs", min=1, help="Timed forwards (after the warm-up)."),
    warmup: int = typer.Option(5, "--warmup", min=0, help="Untimed forwards before timing."),
    json_file: options.Json = None,
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
    threads: options.Threads = None,
    overwrite: options.Overwrite = False,
) -> None:
    """Profile models: params, MACs (fvcore / conv hooks / torch), activations, #conv, memory, runtime, NTIRE score;
    several models (-m a,b or --all-models) share one table."""
    from ..models import get_spec, list_models, resolve_model_name
    from ..ntire import rules
    from ..profile import lr_images, profile_model
    from ..runtime import set_threads
    from ..sizes import parse_image_size
    from ..tiling import tiling_of

    size = parse_image_size(lr_size, square=True)
    names = options.split_list(model)
    year = parse_ntire_year(ntire) if ntire is not None else rules().year
    baseline = rules(year).baseline.model
    options.check_outputs([json_file], overwrite=overwrite)
    set_threads(threads)
    if harness_dir is not None:
        try:
            lr_images(harness_dir)  # fail before the long measurements when the folder holds no images
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise InvalidValueError(f"--harness-dir: {exc}") from None
    console = options.table_console(stderr=options.is_stdout(json_file))
    harness = harness_dir is not None
    # The challenge ranks by the harness's mean per-image runtime; without --harness-dir the median at --lr-size.
    runtime_key = "harness mean per image" if harness else f"median at {size[0]}x{size[1]}"

    def measure(name: str | None, wpath: Path | None = None, display: str | None = None) -> dict[str, Any]:
        net = options.load_model(name, wpath, scale=scale if name != baseline or wpath else None, device=device)
        payload = profile_model(net, display or str(name), lr_size=size, runs=runs, warmup=warmup,
                                ntire_dir=harness_dir).to_json()
        del net
        return payload

    if all_models and (names or weights is not None):
        raise UsageError("--all-models profiles every zoo model; drop --model/--weights")
    if not all_models and len(names) <= 1:
        options.need_model(names[0] if names else None, weights)
        net = options.load_model(names[0] if names else None, weights, scale=scale, device=device)
        name = options.check_model(names[0]) if names else Path(str(weights)).stem
        min_size = tiling_of(net).min_size
        if min(size) < min_size:
            raise InvalidValueError(f"--lr-size {lr_size} is below {name}'s minimum LR size {min_size}x{min_size}")
        payload = profile_model(net, name, lr_size=size, runs=runs, warmup=warmup, ntire_dir=harness_dir).to_json()
        del net
        if score:
            # The score compares runtimes, which only means something on one machine: the baseline is measured here.
            base = payload if name == baseline and weights is None else measure(baseline)
            _add_score(payload, base, year, harness, runtime_key)
        _print_single(console, payload)
        if json_file is not None:
            options.write_json_output(json_file, payload, overwrite=overwrite)
        return

    if weights is not None:
        raise UsageError(f"--weights goes with one --model, got {', '.join(names)}")
    names = [n for n in list_models() if get_spec(n).weights] if all_models else [options.check_model(n) for n in names]
    min_sizes = {}
    for n in names:
        spec, rec = resolve_model_name(n)
        record = rec if rec is not None else spec.default_weights
        min_sizes[n] = tiling_of(spec.builder(**(dict(record.kwargs) if record else {}))).min_size
    too_small = [n for n, m in min_sizes.items() if min(size) < m]
    if too_small:
        raise InvalidValueError(f"--lr-size {lr_size} is below the minimum LR size of {', '.join(too_small)}")
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
        options.write_json_output(json_file, payloads, overwrite=overwrite)
