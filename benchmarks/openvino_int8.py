"""The PSNR cost of OpenVINO int8 (NNCF post-training quantization) under several settings: which layers stay in
float, NNCF's preset, the overflow fix. Quality only (dB, deterministic); no timing.

    python benchmarks/openvino_int8.py                                  # rlfn, lsanet, span on Set5
    python benchmarks/openvino_int8.py --models rlfn --sets set5,set14 --json int8.json

For each model: the fp32 eager forward's PSNR (RGB and Y, the NTIRE protocol of :mod:`effsr.evaluate`) on each
set, then for each setting the int8 engine's (``effsr.deploy.openvino.OpenVinoEngine``, calibrated on the default
8 B100 LR crops of :mod:`effsr.deploy.calibration`) and its cost against fp32 in dB. The rows go to
docs/deploy.md ("OpenVINO"). The CPU flags are not checked here (``$EFFSR_CPU_FLAGS`` is set to VNNI's), so the
figures can be measured on a CPU without VNNI: the int8 kernels then differ (AVX2 ``vpmaddubsw``, whose int16 sums
saturate: NNCF's overflow fix exists for them), so state the machine with the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict

os.environ.setdefault("EFFSR_CPU_FLAGS", "avx512_vnni")

import torch  # noqa: E402

import effsr  # noqa: E402
from effsr.deploy.openvino import INT8_GROUPS, Int8Settings, OpenVinoEngine  # noqa: E402
from effsr.evaluate import fp32_reference, quality_cost  # noqa: E402
from effsr.runtime import cpu_name  # noqa: E402

SETTINGS: dict[str, Int8Settings] = {
    # overflow_fix None (the engine's default) is chosen by the CPU (openvino.overflow_fix_for_this_cpu); the rows
    # that compare it name it.
    "plain (all int8, performance)": Int8Settings(preset="performance", keep_float=()),
    "plain (all int8, mixed)": Int8Settings(keep_float=()),
    "first conv + upsampler float": Int8Settings(keep_float=("first_conv", "upsampler")),
    "first conv + upsampler + gates float": Int8Settings(keep_float=("first_conv", "upsampler", "gates")),
    "as above, overflow fix on every layer": Int8Settings(keep_float=("first_conv", "upsampler", "gates"),
                                                          overflow_fix="enable"),
    "as above, no overflow fix": Int8Settings(keep_float=("first_conv", "upsampler", "gates"),
                                              overflow_fix="disable"),
    "only conv inputs int8, ends float, overflow fix": Int8Settings(keep_float=INT8_GROUPS, overflow_fix="enable"),
    "only conv inputs int8, ends float, NNCF's overflow fix (first layer)": Int8Settings(
        keep_float=INT8_GROUPS, overflow_fix="first_layer"),
    "only conv inputs int8, ends float, no overflow fix": Int8Settings(keep_float=INT8_GROUPS,
                                                                      overflow_fix="disable"),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="rlfn,lsanet,span")
    p.add_argument("--sets", default="set5")
    p.add_argument("--settings", default=",".join(str(i) for i in range(len(SETTINGS))),
                   help="indices into SETTINGS (comma-separated)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    chosen = [list(SETTINGS.items())[int(i)] for i in args.settings.split(",")]
    rows = []
    print(f"# {cpu_name()}, {args.threads} thread(s)")
    for name in args.models.split(","):
        model = effsr.load(name)
        for set_name in args.sets.split(","):
            ref = fp32_reference(model, [set_name], model_name=name)
            for label, settings in chosen:
                t0 = time.perf_counter()
                engine = OpenVinoEngine(model, device=torch.device("cpu"), threads=args.threads, precision="int8",
                                        int8_settings=settings, verify=False)
                (c,) = quality_cost(model, [set_name], backend="openvino", precision="int8", model_name=name,
                                    reference=ref, engine=engine)
                row = {"model": name, "set": set_name, "setting": label, "settings": asdict(settings),
                       "kept_float": len(engine.kept_float), "psnr_rgb_fp32": c.psnr_rgb_fp32,
                       "psnr_rgb_int8": c.psnr_rgb, "cost_rgb_db": c.cost_rgb_db,
                       "cost_y_db": c.cost_y_db, "seconds": time.perf_counter() - t0}
                rows.append(row)
                print(f"{name:8s} {set_name:6s} {label:40s} kept {row['kept_float']:3d}  fp32 {c.psnr_rgb_fp32:.3f}"
                      f"  int8 {c.psnr_rgb:.3f}  cost RGB {row['cost_rgb_db']:.3f} dB  Y {row['cost_y_db']:.3f}"
                      f" dB  ({row['seconds']:.0f} s)", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": cpu_name(), "threads": args.threads, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
