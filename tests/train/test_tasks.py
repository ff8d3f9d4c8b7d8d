"""Losses, schedules, EMA and the tasks (supervised and distillation with a frozen zoo teacher)."""

from __future__ import annotations

import math

import pytest
import torch

import effsr
from effsr.train.ema import ModelEMA
from effsr.train.losses import charbonnier_loss, get_loss
from effsr.train.recipe import Stage
from effsr.train.schedule import lr_at
from effsr.train.tasks import DistillTask, SRTask

TINY_RLFN = {"num_features": 8, "mid_channels": 8, "esa_channels": 4, "num_blocks": 1}


def test_losses() -> None:
    a = torch.tensor([0.0, 1.0, 3.0])
    b = torch.tensor([1.0, 1.0, 1.0])
    assert get_loss("l1")(a, b).item() == pytest.approx(1.0)
    assert get_loss("mse")(a, b).item() == pytest.approx(5 / 3)
    assert get_loss("L2") is get_loss("mse")
    assert charbonnier_loss(a, b).item() == pytest.approx(1.0, abs=1e-6)
    assert charbonnier_loss(a, a).item() == pytest.approx(1e-6)  # sqrt(eps): smooth at zero
    with pytest.raises(ValueError, match="charbonnier"):
        get_loss("charbonier")


def test_schedules() -> None:
    st = Stage(iters=1000, patch_size=64, batch_size=1, lr=2e-3, milestones=[100, 500], gamma=0.5)
    assert [lr_at(st, i) for i in (0, 99, 100, 499, 500, 999)] == [2e-3, 2e-3, 1e-3, 1e-3, 5e-4, 5e-4]
    cos = Stage(iters=100, patch_size=64, batch_size=1, lr=1e-3, schedule="cosine", eta_min=1e-5, warmup_iters=10)
    assert lr_at(cos, 0) == pytest.approx(1e-3 / 10)
    assert lr_at(cos, 50) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5)
    assert lr_at(cos, 99) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * 0.99)))


def test_ema_follows_the_basicsr_formula() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    ema = ModelEMA(model, 0.9)
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    assert torch.allclose(ema.module.weight, 0.9 * before["weight"] + 0.1 * model.weight)
    assert all(not p.requires_grad for p in ema.module.parameters())


def test_sr_task_returns_a_loss_dict() -> None:
    torch.manual_seed(0)
    model = effsr.build_model("rlfn", **TINY_RLFN)
    batch = {"lr": torch.rand(2, 3, 16, 16), "hr": torch.rand(2, 3, 64, 64)}
    out = SRTask(model, get_loss("l1"), pixel_weight=2.0)(batch)
    assert set(out) == {"loss", "pixel"}
    assert out["loss"].item() == pytest.approx(2.0 * out["pixel"].item())
    assert out["loss"].requires_grad and not out["pixel"].requires_grad


def test_distillation_teacher_is_frozen_and_loss_terms_present() -> None:
    """MDRN full x4 (official weights) teaches a tiny RLFN: the teacher never changes and never records a graph."""
    torch.manual_seed(0)
    teacher = effsr.load("mdrn", scale=4)
    teacher.train()  # whatever state it comes in, the task puts it in eval mode
    student = effsr.build_model("rlfn", **TINY_RLFN)
    task = DistillTask(student, teacher, get_loss("l1"), get_loss("l1"), pixel_weight=1.0, distill_weight=0.5)
    task.train()
    assert student.training and not teacher.training
    snapshot = {k: v.clone() for k, v in teacher.state_dict().items()}
    seen: list[tuple[bool, bool]] = []
    teacher.register_forward_hook(lambda m, i, o: seen.append((torch.is_grad_enabled(), o.requires_grad)))
    opt = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=1e-2)
    student_before = [p.clone() for p in student.parameters()]
    for step in range(3):
        g = torch.Generator().manual_seed(step)
        batch = {"lr": torch.rand(2, 3, 16, 16, generator=g), "hr": torch.rand(2, 3, 64, 64, generator=g)}
        out = task(batch)
        assert set(out) == {"loss", "pixel", "distill"}
        assert out["distill"].item() > 0
        assert out["loss"].item() == pytest.approx(out["pixel"].item() + 0.5 * out["distill"].item(), rel=1e-6)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert seen == [(False, False)] * 3  # run under no_grad, output carries no graph
    assert not teacher.training
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    assert all(torch.equal(v, snapshot[k]) for k, v in teacher.state_dict().items())
    assert any(not torch.equal(a, b) for a, b in zip(student_before, student.parameters(), strict=True))
    with pytest.raises(ValueError, match="scale"):
        DistillTask(effsr.build_model("rlfn", scale=2, **TINY_RLFN), teacher, get_loss("l1"), get_loss("l1"))
