"""What a lower precision (or another backend) costs in quality: PSNR in dB, RGB and Y, per model, path and set,
against the float32 eager forward of the same model (``effsr.evaluate.quality_cost``, the challenge protocol of
``effsr eval``).

    python benchmarks/lowp_quality.py --paths fast:bf16 --json benchmarks/results/lowp_quality_bf16.json \\
        --markdown /tmp/lowp_bf16.md                             # the seven models on Set5, Set14 and B100
    python benchmarks/lowp_quality.py --models rlfn,span --paths fast:bf16,fast:int8,openvino:int8 --sets Set5

A path is ``backend:precision``. One this environment cannot run (a backend not installed, bf16 on a CPU without
AVX-512 BF16 or AMX, int8 without VNNI) is reported as such in the JSON and the table, and the others go on.
``$EFFSR_CPU_FLAGS`` replaces the CPU's flags (``effsr.deploy.precision``): on a CPU without native bfloat16 it
lets bfloat16 run anyway, without pre-packed oneDNN kernels (``effsr.deploy.ops.onednn_packs``), in the same
arithmetic (bfloat16 weights and activations, float32 accumulation) but not at the same speed; the JSON records the
flags in effect. The float32 eager reference is computed once per model
and set, in this process. One thread by default (deterministic, and polite on a shared machine); no timing.
Not part of the test suite (seven models on the three full sets take tens of minutes on one core).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

SEVEN = ("rlfn", "agdn", "lsanet", "ifadnet", "mdrn_s", "msn", "span")
ALL_PATHS = ("fast:bf16", "fast:int8", "openvino:fp32", "openvino:bf16", "openvino:int8")


def parse_paths(text: str) -> list[tuple[str, str]]:
    """``fast:bf16,openvino:int8`` -> [("fast", "bf16"), ("openvino", "int8")]; a malformed one raises."""
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        backend, sep, precision = part.partition(":")
        if not sep or not backend or not precision:
            raise ValueError(f"a path is backend:precision (fast:bf16), got {part!r}")
        out.append((backend, precision))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(SEVEN), help="comma-separated zoo names (default: the six seed "
                                                                "models and SPAN)")
    ap.add_argument("--paths", default=",".join(ALL_PATHS), help="backend:precision, comma-separated")
    ap.add_argument("--sets", default="Set5,Set14,B100", help="dataset names or folders, comma-separated")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, help="write every cost (and every unavailable path) as JSON")
    ap.add_argument("--markdown", type=Path, help="write the table as markdown")
    ap.add_argument("--overwrite", action="store_true", help="replace existing --json / --markdown files")
    args = ap.parse_args(argv)
    from effsr.files import check_output, write_json, write_text

    for path in (args.json, args.markdown):
        if path is not None:
            check_output(path, overwrite=args.overwrite)  # before the long run
    # The JSON is rewritten after each set of each model: an interrupted run keeps what it finished.
    report = run(models=[m.strip() for m in args.models.split(",") if m.strip()], paths=parse_paths(args.paths),
                 sets=[s.strip() for s in args.sets.split(",") if s.strip()], threads=args.threads,
                 log=lambda msg: print(msg, file=sys.stderr, flush=True),
                 on_progress=lambda rep: args.json and write_json(args.json, rep, overwrite=True))
    text = render(report)
    print(text)
    if args.json:
        write_json(args.json, report, overwrite=True)
    if args.markdown:
        write_text(args.markdown, text + "\n", overwrite=args.overwrite)
    return 0


def run(*, models: list[str], paths: list[tuple[str, str]], sets: list[str], threads: int = 1,
        log=lambda msg: None, on_progress=lambda report: None) -> dict:
    """Every (model, path) cost on ``sets``; unavailable paths are recorded with the reason. Sets are the outer loop
    (every model on the first set, then the next), and ``on_progress`` gets the report so far after each set of
    each model, so a long run leaves its finished part behind."""
    import torch

    from effsr.bench import machine_name
    from effsr.deploy import prepare
    from effsr.deploy.precision import CPU_FLAGS_ENV, cpu_feature_flags
    from effsr.errors import EffsrError
    from effsr.evaluate import fp32_reference, quality_cost
    from effsr.models import load_model
    from effsr.runtime import set_threads

    set_threads(threads)
    started = time.time()
    flags = os.environ.get(CPU_FLAGS_ENV)
    report = {
        "machine": machine_name(),
        "date": datetime.date.today().isoformat(),
        "threads": threads,
        "torch": torch.__version__,
        "cpu_flags_override": flags,
        "native_bf16": "avx512_bf16" in cpu_feature_flags() if flags is None else None,
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "sets": sets,
        "paths": [f"{b}:{p}" for b, p in paths],
        "seconds": 0.0,
        "costs": [],
        "unavailable": [],
    }
    refused: set[tuple[str, str, str]] = set()
    for set_name in sets:
        for model_name in models:
            model = load_model(model_name)
            reference = None
            for backend, precision in paths:
                label = f"{model_name} {backend}:{precision}"
                if (model_name, backend, precision) in refused:
                    continue
                try:
                    engine = prepare(model, backend, threads=threads, precision=precision)
                except (EffsrError, ImportError, NotImplementedError, ValueError) as exc:
                    log(f"{label}: not available ({type(exc).__name__}: {exc})")
                    refused.add((model_name, backend, precision))
                    report["unavailable"].append({"model": model_name, "backend": backend, "precision": precision,
                                                  "reason": f"{type(exc).__name__}: {exc}"})
                    continue
                if reference is None:
                    reference = fp32_reference(model, [set_name], model_name=model_name)
                t0 = time.time()
                for c in quality_cost(model, [set_name], backend=backend, precision=precision,
                                      model_name=model_name, reference=reference, engine=engine):
                    report["costs"].append(c.to_dict())
                    log(f"{label} {c.dataset}: RGB {c.psnr_rgb_fp32:.4f} -> {c.psnr_rgb:.4f} dB "
                        f"(cost {c.cost_rgb_db:+.4f}, Y {c.cost_y_db:+.4f}; {time.time() - t0:.0f} s)")
                del engine
            report["seconds"] = round(time.time() - started, 1)
            on_progress(report)
    return report


def render(report: dict) -> str:
    """The markdown table of a report (``run`` or a ``--json`` file), with the paths that could not run."""
    from effsr.evaluate import QualityCost

    fields = QualityCost.__dataclass_fields__
    costs = [QualityCost(**{k: v for k, v in c.items() if k in fields}) for c in report["costs"]]
    from effsr.evaluate import quality_cost_markdown

    lines = [f"Machine: {report['machine']}; {report['threads']} thread(s); {report['date']}. PSNR cost = float32 "
             "eager PSNR minus the path's (dB; positive: the path loses), challenge protocol (effsr eval), mean over "
             "each set's images."]
    if report.get("cpu_flags_override"):
        lines.append(f"CPU flags overridden ($EFFSR_CPU_FLAGS={report['cpu_flags_override']}): the CPU lacks "
                     "native kernels for some precisions, which ran without them (the same arithmetic: bfloat16 "
                     "weights and activations, float32 accumulation; not the same speed).")
    lines.append("")
    lines.append(quality_cost_markdown(costs) if costs else "(no path ran)")
    refused: dict[tuple[str, str], list[str]] = {}
    for u in report.get("unavailable", []):
        refused.setdefault((f"{u['backend']}:{u['precision']}", u["reason"]), []).append(u["model"])
    for (path, reason), models in refused.items():
        lines.append(f"\n{path} not available here for {', '.join(models)}: {reason}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
