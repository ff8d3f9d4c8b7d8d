"""int8: the candidate stacks compared on quality, everything quantized (plain post-training quantization).

* torch.ao FX, x86 backend (effsr's choice): ``prepare_int8(model, policy="none")``;
* onnxruntime QDQ: the model's ONNX export (``effsr.deploy.onnx``) through ``onnxruntime.quantization.quantize_static``
  (QDQ format, per-channel int8 weights, uint8 activations, MinMax calibration) on the same calibration images;
* torch.ao PT2E with the X86InductorQuantizer: not measured; PyTorch 2.13 no longer ships it (it moved to torchao, not
  a dependency here) and its int8 kernels only come through torch.compile/inductor (minutes per input shape here).

Each is scored on Set5 (full images, official protocol) against the float32 eager forward. One thread; quality only.

    EFFSR_WEIGHTS_DIR=../shared/weights nice .venv/bin/python benchmarks/int8_candidates.py --models rlfn,span

Writes benchmarks/results/int8_candidates.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "int8_candidates.json"


def ort_qdq(model, images, threads: int = 1):  # type: ignore[no-untyped-def]
    """An onnxruntime session of the statically quantized QDQ model (dynamic H/W), as a float NCHW callable."""
    import numpy as np
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from effsr.deploy.onnx import _deploy_copy, dynamic_onnx_bytes

    data = dynamic_onnx_bytes(_deploy_copy(model), (64, 64))
    if data is None:
        raise RuntimeError("no dynamic ONNX export for this model")

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "f.onnx", Path(tmp) / "q.onnx"
        src.write_bytes(data)
        sess = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name

        class NamedReader(CalibrationDataReader):
            def __init__(self) -> None:
                self.it = iter([{name: img.numpy()} for img in images])

            def get_next(self):  # type: ignore[no-untyped-def]
                return next(self.it, None)

        quantize_static(str(src), str(dst), NamedReader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        qsess = ort.InferenceSession(dst.read_bytes(), opts, providers=["CPUExecutionProvider"])

    class Session(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            from effsr.tiling import tiling_of

            self.tiling = tiling_of(model)

        def forward(self, x):  # type: ignore[no-untyped-def]
            (y,) = qsess.run(None, {name: np.ascontiguousarray(x.float().numpy())})
            return torch.from_numpy(y)

    return Session()


def main(argv: list[str] | None = None) -> int:
    import torch

    from effsr.deploy.calibration import calibration_images
    from effsr.deploy.quantize import prepare_int8
    from effsr.evaluate import fp32_reference, quality_cost
    from effsr.models import load_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="rlfn,span")
    ap.add_argument("--json", type=Path, default=OUT)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    images = calibration_images()
    out = json.loads(args.json.read_text()) if args.json.is_file() else {}
    for name in args.models.split(","):
        model = load_model(name)
        ref = fp32_reference(model, ["set5"], model_name=name)
        row = {}
        builds = {"torch.ao FX x86": lambda m=model: prepare_int8(m, policy="none"),
                  "onnxruntime QDQ": lambda m=model: ort_qdq(m, images)}
        for cand, build in builds.items():
            try:
                (c,) = quality_cost(model, ["set5"], precision="int8", model_name=name, reference=ref, engine=build())
                row[cand] = {"cost_rgb_db": c.cost_rgb_db, "cost_y_db": c.cost_y_db}
            except Exception as exc:  # a candidate that cannot quantize this model is a result too
                row[cand] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            print(name, cand, row[cand], flush=True)
        out[name] = row
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
