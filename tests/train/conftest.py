"""Fixtures for running the shipped recipes small: Set5 as every stage's data, and a stand-in SAFMN-L teacher."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import effsr
from effsr.weights import save_safetensors

# A SAFMN with 8 channels and one block: the real architecture, small enough for a test (the x4 SAFMN-L weights
# are not available here; ../shared/weights/SOURCES.md).
TINY_SAFMN = {"scale": 4, "num_features": 8, "num_blocks": 1, "ffn_scale": 2.0}


@pytest.fixture(scope="session")
def stand_in_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny ``safmn_l`` saved with effsr metadata (so ``teacher_weights`` rebuilds it)."""
    torch.manual_seed(0)
    model = effsr.build_model("safmn_l", **TINY_SAFMN)
    path = tmp_path_factory.mktemp("teacher") / "safmn_tiny.safetensors"
    return save_safetensors(model.state_dict(), path, model="safmn_l", kwargs=TINY_SAFMN)


@pytest.fixture
def tiny_run(data_dir: Path) -> list[str]:
    """``--set`` overrides that shrink any shipped recipe to seconds: Set5 for every stage, 64-pixel HR patches,
    batch 2, one iteration per stage, no validation, CPU, no loader workers."""
    set5 = f"{{name: Set5, hr: {data_dir / 'Set5' / 'HR'}, lr: {data_dir / 'Set5' / 'LR_bicubic' / 'X4'}}}"
    return [
        f"--set=train_data=[{set5}]", f"--set=stages.*.train_data=[{set5}]",
        "--set=stages.*.iters=1", "--set=stages.*.milestones=[]", "--set=stages.*.patch_size=64",
        "--set=stages.*.batch_size=2", "--set=val_data=null", "--set=device=cpu", "--set=workers=0",
        "--set=cache_images=8", "--set=ckpt_every=100",
    ]
