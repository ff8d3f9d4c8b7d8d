"""Explicit re-parameterization: merge multi-branch training blocks into their deploy form.

Following timm's ``utils/model.py::reparameterize_model``: the merge works on a deep copy by default, calls
``reparameterize()`` on every submodule that defines it, and never fuses inside ``forward`` (DESIGN.md).
It knows no architecture: any ``nn.Module`` works, and one without re-parameterizable blocks comes back unchanged.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def reparameterize_model(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Return ``model`` in deploy form.

    With ``inplace=False`` (the default) the given model is left untouched and a converted deep copy is
    returned. Every module (the root included) with a callable ``reparameterize`` attribute is converted;
    ``reparameterize()`` must be idempotent, so calling this twice is harmless.
    """
    if not inplace:
        model = copy.deepcopy(model)
    # Collect first: reparameterize() replaces submodules, which must not happen while iterating modules().
    targets = [m for m in model.modules() if callable(getattr(m, "reparameterize", None))]
    for module in targets:
        module.reparameterize()
    return model


def cast_plain_tensors(model: nn.Module, device: torch.device, dtype: torch.dtype) -> None:
    """Move plain tensor attributes with the module (a foreign model may keep constants that way; the zoo keeps its
    RGB mean as a non-persistent buffer, which moves by itself)."""
    for mod in model.modules():
        for name, value in list(vars(mod).items()):
            if isinstance(value, torch.Tensor) and not isinstance(value, nn.Parameter) and not name.startswith("_"):
                new = value.to(device=device, dtype=dtype if value.is_floating_point() else value.dtype)
                setattr(mod, name, new)
