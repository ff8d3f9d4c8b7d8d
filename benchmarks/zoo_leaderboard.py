"""The zoo leaderboard of README.md (``effsr zoo`` section): every model with weights, its NTIRE year, params and FLOPs
as the challenges count them, quality on Set5 / Set14 / B100 and CPU time at LR 256x256.

Quality comes from an ``effsr eval --all-models --json`` file, CPU time from an ``effsr profile --all-models --json``
file (time nothing on a shared machine: without ``--profile`` the column says so); params and FLOPs are recounted here
(fvcore at LR 256x256, ``effsr.evaluate.model_cost``). ::

    EFFSR_WEIGHTS_DIR=../shared/weights .venv/bin/effsr eval --all-models -d set5 -d set14 -d b100 \\
        --backend eager --json benchmarks/results/zoo_eval.json --plot benchmarks/results/zoo_quality_vs_cost.png
    EFFSR_WEIGHTS_DIR=../shared/weights .venv/bin/effsr profile --all-models --lr-size 256x256 --runs 20 \\
        --warmup 5 --threads 2 --json benchmarks/results/zoo_profile.json          # a quiet machine only
    .venv/bin/python benchmarks/zoo_leaderboard.py --eval benchmarks/results/zoo_eval.json \\
        --profile benchmarks/results/zoo_profile.json --isa "AVX2 + FMA, no AVX-512" --update-readme
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE.parent / "README.md"
BEGIN = "<!-- zoo leaderboard -->"
END = "<!-- end of the zoo leaderboard -->"
DATASETS = ("set5", "set14", "b100")

# Where each model stands in the NTIRE ESR challenges (the records' sources; shared/official/README.md).
NTIRE = {
    "rlfn": "2022 winner; 2024 baseline",
    "agdn": "2024, team 31",
    "lsanet": "2024, team 44",
    "ifadnet": "2024, team 33",
    "mdrn_s": "2023, MDRN-S",
    "mdrn": "MDRN full (teacher)",
    "msn": "2024, team 28",
    "span": "2024 winner; 2026 baseline",
    "safmnpp": "2024, team 23",
    "efdn": "2023 winner; 2025 baseline",
    "dscf": "2025 1st, team 23",
    "spanf": "2025 2nd, team 24",
    "safmnv3": "2025, team 19",
    "espan": "2025, team 36",
    "pds": "2026, team 01",
    "pkdsr": "2026, team 16",
    "disp": "2026, team 18",
    "dscf_fused": "2026, team 15",
    "spanv2": "2026 1st, team 22",
}


def table(eval_rows: list[dict], profile_rows: list[dict] | None) -> str:
    from effsr import load
    from effsr.evaluate import model_cost
    from effsr.models import get_spec, list_models

    quality = {(r["model"], r["dataset"]): r["mean"] for r in eval_rows}
    times = {r["model"]: r["runtime_ms"]["median"] for r in profile_rows or []}
    head = ["model", "NTIRE", "params", "FLOPs (G)"] + [f"{d} PSNR / SSIM" for d in ("Set5", "Set14", "B100")]
    head.append("CPU ms (LR 256x256)")
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for name in (n for n in list_models() if get_spec(n).weights):
        cost = model_cost(load(name))
        cells = [f"`{name}`", NTIRE.get(name, "-"), f"{cost.params:,}", f"{cost.macs / 1e9:.2f}"]
        for d in DATASETS:
            m = quality.get((name, d))
            cells.append(f"{m['psnr_rgb']:.2f} / {m['ssim_rgb']:.4f}" if m else "-")
        cells.append(f"{times[name]:.1f}" if name in times else "(to measure)")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--eval", type=Path, required=True, help="JSON written by effsr eval --all-models --json")
    ap.add_argument("--profile", type=Path, help="JSON written by effsr profile --all-models --json (CPU time)")
    ap.add_argument("--update-readme", action="store_true", help="rewrite the table between the README markers")
    ap.add_argument("--isa", default=None, help="the profiled CPU's vector ISA, for the note (e.g. 'AVX2 + FMA')")
    args = ap.parse_args(argv)
    rows = json.loads(args.eval.read_text())
    profile = json.loads(args.profile.read_text()) if args.profile else None
    text = table(rows if isinstance(rows, list) else [rows], profile)
    if profile:
        machine = profile[0]["device"]["name"]
        runs = profile[0]["runtime_ms"]["runs"]
        threads = profile[0]["device"]["threads"]
        isa = args.isa or "ISA not recorded"
        text += (f"\n\nCPU time: eager forward at LR 256x256, median of {runs} runs after warm-up, {threads} threads, "
                 f"{machine} ({isa}), every model in the same run (`effsr profile --all-models`): the times rank "
                 f"the models; their absolute values follow the host (benchmarks/RESULTS.md, \"Speed\", has the "
                 f"fast path and the machine's dense-convolution rate).")
    else:
        text += "\n\nCPU time: to be measured on a quiet machine (`effsr profile --all-models`, see the script)."
    print(text)
    if args.update_readme:
        readme = README.read_text()
        if BEGIN not in readme or END not in readme:
            print(f"{README}: markers {BEGIN} / {END} not found", file=sys.stderr)
            return 1
        head, rest = readme.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        README.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
