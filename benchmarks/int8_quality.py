"""int8: the quality cost of effsr's int8 path (fast backend) per seed model and SPAN, on Set5, Set14 and B100.

For every model: the float-layer policy is searched (``effsr.deploy.quantize.search_policy``: calibrated on the
default set, 8 B100 LR crops, to the fidelity target), the int8 engine and the float32 eager forward are scored on
the full images of each set with the official protocol (``effsr.evaluate``: uint8 in and out, border = scale), and
the cost is fp32 minus int8 in dB (RGB and Y). Set5 is also scored with nothing kept float, the plain post-training
quantization, for comparison. One thread, deterministic: quality numbers, no timings.

    EFFSR_WEIGHTS_DIR=../shared/weights nice .venv/bin/python benchmarks/int8_quality.py            # all, search
    ... --models rlfn,span --sets set5                                                           # a subset
    ... --write-policies      # also store the searched policies in src/effsr/deploy/int8_policies.json

Writes benchmarks/results/int8_quality.json (merged with what it already holds, by model). Not a test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "int8_quality.json"
MODELS = ("rlfn", "agdn", "lsanet", "ifadnet", "mdrn_s", "msn", "span")
SETS = ("set5", "set14", "b100")


def main(argv: list[str] | None = None) -> int:
    import torch

    from effsr.deploy.quantize import DEFAULT_FIDELITY_DB, prepare_int8, stored_policies
    from effsr.evaluate import fp32_reference, quality_cost
    from effsr.models import load_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--policy", default="search", choices=("search", "stored", "none"))
    ap.add_argument("--target-db", type=float, default=DEFAULT_FIDELITY_DB)
    ap.add_argument("--no-baseline", action="store_true", help="skip the nothing-float Set5 comparison")
    ap.add_argument("--json", type=Path, default=OUT)
    ap.add_argument("--write-policies", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    results = json.loads(args.json.read_text()) if args.json.is_file() else {"models": {}}
    for name in [m for m in args.models.split(",") if m]:
        model = load_model(name)
        t0 = time.perf_counter()
        policy = None if args.policy == "stored" else args.policy
        engine = prepare_int8(model, policy=policy, target_db=args.target_db)
        prep_s = time.perf_counter() - t0
        sets = [s for s in args.sets.split(",") if s]
        ref = fp32_reference(model, sets, model_name=name)
        row: dict = {"policy_source": engine.policy_source, "float_nodes": engine.float_nodes,
                     "layers": engine.layers, "example_fidelity_db": engine.fidelity_db,
                     "activation_bits": engine.activation_bits,
                     "search": engine.search.as_dict() if engine.search else None,
                     "prepare_s_not_a_timing": round(prep_s, 1), "sets": {}}
        costs = quality_cost(model, sets, backend="fast", precision="int8", model_name=name, reference=ref,
                             engine=engine)
        for ds_name, c in zip(sets, costs, strict=True):
            row["sets"][ds_name] = {
                "fp32_psnr_rgb": c.psnr_rgb_fp32, "fp32_psnr_y": c.psnr_y_fp32,
                "int8_psnr_rgb": c.psnr_rgb, "int8_psnr_y": c.psnr_y,
                "cost_rgb_db": c.cost_rgb_db, "cost_y_db": c.cost_y_db,
            }
            if ds_name == "set5" and not args.no_baseline:
                plain = prepare_int8(model, policy="none")
                (p,) = quality_cost(model, [ds_name], backend="fast", precision="int8", model_name=name,
                                    reference=ref, engine=plain)
                row["sets"][ds_name]["all_int8_cost_rgb_db"] = p.cost_rgb_db
                row["sets"][ds_name]["all_int8_cost_y_db"] = p.cost_y_db
                row["all_int8_layers"] = plain.layers
            print(f"{name} {ds_name}: cost RGB {row['sets'][ds_name]['cost_rgb_db']:.4f} dB, "
                  f"Y {row['sets'][ds_name]['cost_y_db']:.4f} dB ({len(engine.float_nodes)} float nodes, "
                  f"{engine.layers})", flush=True)
        results["models"][name] = row
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n")
        if args.write_policies and engine.search is not None:
            write_policy(name, engine, stored_policies())
    return 0


def write_policy(name: str, engine, policies: dict) -> None:  # type: ignore[no-untyped-def]
    from effsr.deploy import quantize

    arch = engine.info["architecture"]
    policies = dict(policies)
    bits = engine.activation_bits
    policies[name if bits == 7 else f"{name}@{bits}bit"] = {
        "architecture": arch[0], "kwargs": arch[1], "activation_bits": bits, "float_nodes": engine.float_nodes,
        "search": engine.search.as_dict(), "calibration": engine.info["calibration"]}
    payload = {"_comment": "The zoo's int8 float-layer policies: torch.fx node names of the deploy graph kept in "
                           "float32, searched by benchmarks/int8_quality.py --write-policies on the official weights "
                           "(effsr.deploy.quantize.search_policy). Keys are zoo model names, with @8bit for a policy "
                           "searched on 8-bit activations (a VNNI CPU); an entry applies to a model whose detected "
                           "architecture and constructor arguments equal its own, on its activation grid "
                           "(activation_bits, 7 when absent) or a finer one.",
               "policies": policies}
    quantize._POLICY_FILE.write_text(json.dumps(payload, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
