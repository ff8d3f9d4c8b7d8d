"""Quantization-aware fine-tuning: the ``quant: int8`` stage of ``effsr train``.

The stage trains the fake-quantized graph of the model's deploy form (re-parameterized, as int8 runs it): torch.ao's
``prepare_qat_fx`` with the x86 QAT qconfig (moving-average activation ranges, per-channel weights), the same
float-layer policy as post-training quantization (:mod:`effsr.deploy.quantize`; those nodes train without fake
quantization, so the graph converted at the end is the graph trained). At the end of the stage the trained graph is
converted to int8 and written as an int8 file, :data:`INT8_FILE` in the run folder, next to ``final.safetensors``
(the fine-tuned float deploy weights). ``effsr upscale --weights <run>/final_int8.safetensors`` runs it.

The stage trains without an EMA (an average of fake-quantized weights is not what the quantizers observed) and writes
no mid-stage checkpoints (a resumed run repeats the stage from its start, the previous stage's weights).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..deploy.quantize import QatModel, prepare_qat, save_int8

__all__ = ["INT8_FILE", "finish_qat", "start_qat"]

INT8_FILE = "final_int8.safetensors"


def start_qat(model: nn.Module, policy: str = "stored") -> QatModel:
    """The trainable fake-quantized deploy graph of ``model`` (on the CPU; move it to the training device).

    ``policy`` is the stage's ``quant_policy``: "stored" (effsr's measured float-layer policy for the architecture,
    every layer int8 without one), "none" (every layer int8) or "search".
    """
    return prepare_qat(model, policy=None if policy == "stored" else policy)


def finish_qat(qat: QatModel, path: Path) -> Path:
    """Convert the trained graph to int8 (verified against its float weights) and write the int8 file."""
    engine = qat.cpu().engine(verify=True)
    return save_int8(engine, path, overwrite=True)
