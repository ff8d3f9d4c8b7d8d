"""EFDN: Edge-enhanced Feature Distillation Network (NTIRE 2023 ESR winner; NTIRE 2025 ESR baseline, team 00).

Paper: Y. Wang, "Edge-enhanced Feature Distillation Network for Efficient Super-Resolution", CVPR Workshops (NTIRE)
2022, arXiv:2204.08759. NTIRE 2025 ESR ``README.md`` (baseline): 0.276 M parameters, 16.70 G FLOPs (fvcore, LR
256x256), DIV2K_LSDIR valid / test PSNR 26.93 / 27.01 dB, 16.69 ms on an RTX A6000; the official code measures
276,192 parameters, 16.7035 G, 111.12 M activations, 65 convs (``shared/official/README.md``: all match the log).
Official code and weights: ``Amazingren/NTIRE2025_ESR`` @ b69fb668c0362deb696eecbfdebfaa5c2fcdfcb4,
``models/team00_EFDN.py``, ``model_zoo/team00_EFDN.pth``. Licence: MIT (the repository's root ``LICENSE``; the model
file states none). Written from the official file read as facts and ``shared/official/README.md`` (no official code
copied); each behaviour marked below as an official quirk is one of its "Traps".

Official quirk: the forward ends with ``clamp(0, 1)`` (the network's own output is clamped); each cell adds its
residual after the attention; its ESA has a max-pool k7 s3 after an unpadded stride-2 3x3 conv, then ``conv_max``,
``conv3``, ``conv3_`` (ReLU between) and a bilinear resize back (align_corners False). The shipped weights are the
deploy form: each EDBB is one 3x3 ``rep_conv`` with a PReLU. The official file also holds the training-time EDBB (a
3x3, a 1x1 and three edge branches of fixed Sobel-x / Sobel-y / Laplacian masks, optionally a 1x1-3x3 branch and an
identity, summed before the PReLU); ``EFDN(deploy=False)`` builds it and :meth:`EFDN.reparameterize` merges it into
the deploy form. Input 0..1, no mean shift.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..tiling import TilingSpec
from ._registry import ModelSpec, StateDict, count_numbered, model_zoo_record, register_model, upsampler_scale
from .blocks import EdgeConv3x3

# Official EFDN: the ESA works at a quarter of the feature width (n_feats // 4).
_ESA_RATIO = 4


class EfdnESA(nn.Module):
    """EFDN's enhanced spatial attention.

    conv1 1x1 -> conv2 3x3 stride 2 no padding -> max-pool k7 s3 -> ReLU(conv_max) -> ReLU(conv3) -> conv3_ ->
    bilinear to HxW (size given, align_corners False) -> + conv_f(conv1 out) -> conv4 1x1 -> sigmoid -> gate the input.
    The ReLU is a module, as in the official block (the 2023 conv-hook counter counts ReLU module outputs).
    """

    def __init__(self, num_features: int) -> None:
        super().__init__()
        f = num_features // _ESA_RATIO
        self.conv1 = nn.Conv2d(num_features, f, 1)
        self.conv_f = nn.Conv2d(f, f, 1)
        self.conv_max = nn.Conv2d(f, f, 3, padding=1)
        self.conv2 = nn.Conv2d(f, f, 3, stride=2, padding=0)
        self.conv3 = nn.Conv2d(f, f, 3, padding=1)
        self.conv3_ = nn.Conv2d(f, f, 3, padding=1)
        self.conv4 = nn.Conv2d(f, num_features, 1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1_ = self.conv1(x)
        v_max = F.max_pool2d(self.conv2(c1_), kernel_size=7, stride=3)
        c3 = self.conv3_(self.relu(self.conv3(self.relu(self.conv_max(v_max)))))
        c3 = F.interpolate(c3, size=x.shape[2:], mode="bilinear", align_corners=False)
        return x * torch.sigmoid(self.conv4(c3 + self.conv_f(c1_)))


class Conv1x1PReLU(nn.Module):
    """A 1x1 conv with bias, then a per-channel PReLU (the official ``conv`` class; keys ``conv1x1``, ``act``)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.conv1x1 = nn.Conv2d(num_features, num_features, 1)
        self.act = nn.PReLU(num_parameters=num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv1x1(x))


class Conv1x1Conv3x3(nn.Module):
    """The EDBB's optional 1x1 -> 3x3 branch (official ``SeqConv3x3('conv1x1-conv3x3')``, keys ``k0 b0 k1 b1``).

    The 1x1 output is padded with its own bias ``b0`` (not zeros) before the unpadded 3x3, so that the merged conv
    is a zero-padded 3x3 exactly, also at the borders.
    """

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int) -> None:
        super().__init__()
        conv0 = nn.Conv2d(in_channels, mid_channels, 1)
        conv1 = nn.Conv2d(mid_channels, out_channels, 3)
        self.k0 = nn.Parameter(conv0.weight.detach().clone())
        self.b0 = nn.Parameter(conv0.bias.detach().clone())
        self.k1 = nn.Parameter(conv1.weight.detach().clone())
        self.b1 = nn.Parameter(conv1.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y0 = F.conv2d(x, self.k0, self.b0)
        b0 = self.b0.view(1, -1, 1, 1).expand(y0.shape[0], -1, y0.shape[2] + 2, y0.shape[3] + 2)
        padded = b0.clone()
        padded[:, :, 1:-1, 1:-1] = y0
        return F.conv2d(padded, self.k1, self.b1)

    def equivalent_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The 3x3 kernel and bias of the one zero-padded conv that equals this branch."""
        kernel = torch.einsum("omhw,mi->oihw", self.k1, self.k0[:, :, 0, 0])
        return kernel, self.b1 + torch.einsum("omhw,m->o", self.k1, self.b0)


class EDBB(nn.Module):
    """Edge-enhanced diverse branch block (official ``EDBB`` with its defaults: PReLU, no identity, no 1x1-3x3).

    Deploy form (``deploy=True``, the shipped one, the official ``EDBB_deploy``): ``PReLU(rep_conv(x))``.
    Training form: ``PReLU(rep_conv(x) + conv1x1(x) + sobel_x(x) + sobel_y(x) + laplacian(x) [+ x] [+ 1x1-3x3(x)])``
    with the edge branches of ``blocks.EdgeConv3x3`` (the official ``SeqConv3x3`` ones: same keys and masks).
    :meth:`reparameterize` merges the branches into ``rep_conv`` (in place).
    """

    _EDGES = (("conv1x1_sbx", "sobel_x"), ("conv1x1_sby", "sobel_y"), ("conv1x1_lpl", "laplacian"))

    def __init__(self, in_channels: int, out_channels: int, *, deploy: bool = True, with_idt: bool = False,
                 with_13: bool = False) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.deploy = deploy
        self.with_idt = with_idt and in_channels == out_channels
        self.with_13 = with_13
        self.rep_conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        if not deploy:
            self.conv1x1 = nn.Conv2d(in_channels, out_channels, 1)
            if with_13:
                # Official depth_multiplier default (None -> 1.0): the middle width equals out_channels.
                self.conv1x1_3x3 = Conv1x1Conv3x3(in_channels, out_channels, out_channels)
            for name, kind in self._EDGES:
                setattr(self, name, EdgeConv3x3(kind, in_channels, out_channels))
        self.act = nn.PReLU(num_parameters=out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.rep_conv(x)
        if not self.deploy:
            y = y + self.conv1x1(x)
            for name, _ in self._EDGES:
                y = y + getattr(self, name)(x)
            if self.with_idt:
                y = y + x
            if self.with_13:
                y = y + self.conv1x1_3x3(x)
        return self.act(y)

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Merge every branch into ``rep_conv`` and drop them (in place; a no-op in deploy form)."""
        if self.deploy:
            return
        f64 = torch.float64
        kernel = self.rep_conv.weight.to(f64).clone()
        bias = self.rep_conv.bias.to(f64).clone()
        kernel[:, :, 1:2, 1:2] += self.conv1x1.weight.to(f64)
        bias += self.conv1x1.bias.to(f64)
        branches: list[Any] = [getattr(self, name) for name, _ in self._EDGES]
        if self.with_13:
            branches.append(self.conv1x1_3x3)
        for branch in branches:
            k, b = branch.equivalent_kernel_bias()
            kernel += k.to(f64)
            bias += b.to(f64)
        if self.with_idt:
            idx = torch.arange(self.out_channels, device=kernel.device)
            kernel[idx, idx, 1, 1] += 1.0
        self.rep_conv.weight.copy_(kernel.to(self.rep_conv.weight.dtype))
        self.rep_conv.bias.copy_(bias.to(self.rep_conv.bias.dtype))
        for name in ("conv1x1", "conv1x1_3x3", *(n for n, _ in self._EDGES)):
            if hasattr(self, name):
                delattr(self, name)
        self.deploy = True


class Cell(nn.Module):
    """One EFDN cell: ``o1 = conv1(x)``, ``o2 = conv2(o1)``, ``o3 = conv3(o2)``; four 1x1 ``branch`` convs halve each
    of ``[x, o1, o2, o3]``, ``fuse`` (1x1) joins them, then the ESA and the residual ``+ x``."""

    def __init__(self, num_features: int, *, deploy: bool = True) -> None:
        super().__init__()
        self.conv1 = Conv1x1PReLU(num_features)
        self.conv2 = EDBB(num_features, num_features, deploy=deploy)
        self.conv3 = EDBB(num_features, num_features, deploy=deploy)
        self.fuse = nn.Conv2d(num_features * 2, num_features, 1)
        self.att = EfdnESA(num_features)
        self.branch = nn.ModuleList(nn.Conv2d(num_features, num_features // 2, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = self.conv1(x)
        out2 = self.conv2(out1)
        out3 = self.conv3(out2)
        parts = [branch(t) for branch, t in zip(self.branch, (x, out1, out2, out3), strict=True)]
        return self.att(self.fuse(torch.cat(parts, dim=1))) + x


class EFDN(nn.Module):
    """EFDN: 3x3 head, four cells with local 1x1 fusions, long skip, 3x3 conv + PixelShuffle, output clamped to [0,1].

    Cells 2-4 read fusions of earlier cell outputs: ``f2 = local_fuse[0](cat[c1, c2])``, ``c3 = cell3(f2)``,
    ``f3 = local_fuse[1](cat[c2, c3])``, ``c4 = cell4(f3)``, ``f4 = local_fuse[2](cat[c2, c4])``; then ``f4 + head``.
    """

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 3,
        out_channels: int = 3,
        num_features: int = 48,
        deploy: bool = True,
    ) -> None:
        super().__init__()
        self.scale = int(scale)
        # The ESA's stride-2 unpadded conv then its 7x7 max-pool need LR >= 15x15, as RLFN's (specs/README.md,
        # section 5); the stride-2 conv then the stride-3 max-pool repeat every 6 LR pixels.
        self.tiling = TilingSpec(scale=self.scale, min_size=15, stride_period=6)
        self.deploy = deploy
        self.head = nn.Conv2d(in_channels, num_features, 3, padding=1)
        self.cells = nn.ModuleList(Cell(num_features, deploy=deploy) for _ in range(4))
        self.local_fuse = nn.ModuleList(nn.Conv2d(num_features * 2, num_features, 1) for _ in range(3))
        self.tail = nn.Sequential(
            nn.Conv2d(num_features, out_channels * self.scale * self.scale, 3, padding=1),
            nn.PixelShuffle(self.scale),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out0 = self.head(x)
        out1 = self.cells[0](out0)
        out2 = self.cells[1](out1)
        out3 = self.cells[2](self.local_fuse[0](torch.cat([out1, out2], dim=1)))
        out4 = self.cells[3](self.local_fuse[1](torch.cat([out2, out3], dim=1)))
        out = self.local_fuse[2](torch.cat([out2, out4], dim=1)) + out0
        # Official quirk: the network clamps its own output.
        return self.tail(out).clamp(0, 1)

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Merge every EDBB into its deploy form, in place (idempotent)."""
        for module in self.modules():
            if isinstance(module, EDBB):
                module.reparameterize()
        self.deploy = True


def efdn(*, scale: int = 4, in_channels: int = 3, out_channels: int = 3, num_features: int = 48,
         deploy: bool = True) -> EFDN:
    """Build an EFDN (defaults: the NTIRE 2025 baseline, 48 channels, 4 cells, x4, deploy form)."""
    return EFDN(scale=scale, in_channels=in_channels, out_channels=out_channels, num_features=num_features,
                deploy=deploy)


def detect_efdn(state_dict: StateDict) -> dict[str, Any] | None:
    """Constructor kwargs from the keys/shapes of an EFDN state_dict (either form), or None."""
    needed = ("head.weight", "cells.0.conv1.conv1x1.weight", "cells.0.conv2.rep_conv.weight",
              "cells.0.att.conv_max.weight", "local_fuse.0.weight", "tail.0.weight")
    if not all(k in state_dict for k in needed):
        return None
    num_features, in_channels = (int(n) for n in state_dict["head.weight"].shape[:2])
    # out_channels is taken equal to in_channels (RGB), as the official constructor's use.
    scale = upsampler_scale(int(state_dict["tail.0.weight"].shape[0]), in_channels)
    if count_numbered(state_dict, "cells.", 0) != 4 or scale is None:
        return None
    return {"scale": scale, "in_channels": in_channels, "out_channels": in_channels, "num_features": num_features,
            "deploy": "cells.0.conv2.conv1x1.weight" not in state_dict}


_REPO = "Amazingren/NTIRE2025_ESR"
_COMMIT = "b69fb668c0362deb696eecbfdebfaa5c2fcdfcb4"

EFDN_NTIRE2025 = model_zoo_record(
    _REPO,
    _COMMIT,
    "team00_EFDN.pth",
    name="efdn_ntire2025",
    model="efdn",
    sha256="71069f10ef234cd123f45ac8e69099f0a1fdc0c16afcfe2189e50071d47ce477",
    wrapper_key=None,  # bare state_dict, deploy form
    kwargs={"scale": 4, "in_channels": 3, "out_channels": 3, "num_features": 48, "deploy": True},
    params=276_192,
    licence="MIT",
    scale=4,
    description="EFDN (NTIRE 2023 ESR winner, NTIRE 2025 ESR baseline, team 00), 48 ch, deploy form; "
    "Set5 x4 RGB PSNR 30.18 dB",
)

register_model(
    ModelSpec(
        name="efdn",
        builder=efdn,
        weights=(EFDN_NTIRE2025,),
        detect=detect_efdn,
        description="Edge-enhanced Feature Distillation Network (re-parameterizable EDBBs, ESA), clamps its output",
        weight_determined=("scale", "in_channels", "out_channels", "num_features", "deploy"),
    )
)
