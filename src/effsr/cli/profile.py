"""``effsr profile``: parameters, MACs (three named counters), activations, #conv, peak memory and runtime.

Flags are parsed here; every number comes from :mod:`effsr.profile` (conventions documented there).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from . import app

_BASELINE = "rlfn"  # NTIRE 2024 ESR baseline (Amazingren/NTIRE2024_ESR README.md)


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


def _print_single(console: Console, payload: dict[str, Any]) -> None:
    h, w = payload["lr_size"]
    table = Table(title=f"effsr profile: {payload['model']} at LR {h}x{w} on {payload['device']['name']}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_column("convention")
    rt = payload["runtime_ms"]
    rows = [
        ("params", f"{payload['params']:,}", "sum of numel of model.parameters()"),
        ("MACs fvcore (G)", _g(payload["macs_fvcore"]), "NTIRE 2024 FLOPs: fvcore FlopCountAnalysis total"),
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
        rows.append(("NTIRE runtime (ms/img)", f"{n['mean_ms']:.2f} (median {n['median_ms']:.2f})",
                     f"{len(n['images'])} images of {n['data_dir']}, no warm-up, cudnn.benchmark off"))
        rows.append(("NTIRE peak memory (MiB)", f"{n['peak_memory_mib']:.1f}", n["memory_method"]))
    for row in rows:
        table.add_row(*row)
    console.print(table)
    skipped = ", ".join(f"{k} x{v}" for k, v in payload["fvcore_unsupported"].items())
    console.print(f"fvcore skipped (counted as 0): {skipped or 'none'}")


def _print_all(console: Console, payloads: list[dict[str, Any]], runtime_key: str) -> None:
    h, w = payloads[0]["lr_size"]
    table = Table(
        title=f"effsr profile --all-models at LR {h}x{w} on {payloads[0]['device']['name']}",
        caption=(
            f"NTIRE 2024 score vs RLFN: 0.7 exp(2 rt/rt_RLFN) + 0.15 exp(2 MACs/MACs_RLFN) + 0.15 exp(2 p/p_RLFN), "
            f"lower is better, RLFN = 7.389; rt = {runtime_key}, MACs = fvcore"
        ),
    )
    for col in ("model", "params", "MACs fvcore (G)", "+'same' (G)", "conv hooks (G)", "torch (G)",
                "acts (M)", "#conv", "mem (MiB)", "runtime (ms)", "score"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for p in payloads:
        rt = p["runtime_ms"]
        runtime = f"{rt['median']:.2f} ±{rt['iqr']:.2f}"
        if "ntire" in p:
            runtime += f" / {p['ntire']['mean_ms']:.2f}"
        score = p.get("ntire2024_score")
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
    ntire: Path | None = typer.Option(
        None, "--ntire", help="Dataset folder: also time one forward per LR image as the NTIRE harness does."
    ),
    all_models: bool = typer.Option(False, "--all-models", help="Every zoo model, one table, NTIRE 2024 score."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="torch CPU threads (default: torch's own)."),
) -> None:
    """Profile a model: params, MACs (fvcore / conv hooks / torch), activations, #conv, memory, runtime."""
    import torch

    import effsr

    from ..models import get_spec, list_models
    from ..profile import lr_images, ntire2024_score, profile_model
    from ..tiling import tiling_of

    size = parse_lr_size(lr_size)
    _check_device(device)
    if threads is not None:
        torch.set_num_threads(threads)
    if ntire is not None:
        try:
            lr_images(ntire)  # fail before the long measurements when the folder holds no images
        except FileNotFoundError as exc:
            raise typer.BadParameter(str(exc)) from None
    console = Console()

    if not all_models:
        if model is None and weights is None:
            raise typer.BadParameter("give --model NAME and/or --weights FILE, or --all-models")
        net = effsr.load(model, weights, device=device)
        name = get_spec(model).name if model else Path(weights).stem  # type: ignore[arg-type]
        min_size = tiling_of(net).min_size
        if min(size) < min_size:
            raise typer.BadParameter(f"--lr-size {lr_size} is below {name}'s minimum LR size {min_size}x{min_size}")
        payload = profile_model(net, name, lr_size=size, runs=runs, warmup=warmup, ntire_dir=ntire).to_json()
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
        net = effsr.load(n, device=device)
        payloads.append(profile_model(net, n, lr_size=size, runs=runs, warmup=warmup, ntire_dir=ntire).to_json())
        del net
    # The challenge ranks by the harness's mean per-image runtime; without --ntire the median at --lr-size stands in.
    runtime_key = "NTIRE mean per image" if ntire is not None else f"median at {size[0]}x{size[1]}"

    def rt(p: dict[str, Any]) -> float:
        return p["ntire"]["mean_ms"] if ntire is not None else p["runtime_ms"]["median"]

    base = next((p for p in payloads if p["model"] == _BASELINE), None)
    if base is not None:
        for p in payloads:
            s = ntire2024_score(
                rt(p), p["macs_fvcore"], p["params"],
                baseline_runtime_ms=rt(base), baseline_macs=base["macs_fvcore"], baseline_params=base["params"],
            )
            p["ntire2024_score"] = {
                "final": s.score_final, "runtime": s.score_runtime, "flops": s.score_flops, "params": s.score_params,
                "runtime_used": runtime_key, "baseline": _BASELINE,
            }
    _print_all(console, payloads, runtime_key)
    if json_file is not None:
        _write_json(json_file, payloads)


def _write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
