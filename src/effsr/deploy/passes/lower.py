"""Lowering: ``nn.Conv2d`` to :class:`~effsr.deploy.ops.FusedConv2d` (one module per call, explicit reflect
padding), activation modules to functions, the pixel shuffle to the NCHW writer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..ops import FusedConv2d, pixel_shuffle_nchw
from .graph import BuildContext, new_name


def normalize(gm: fx.GraphModule, ctx: BuildContext) -> int:
    """nn.Conv2d -> FusedConv2d, activation modules -> functions, pixel shuffle -> the NCHW writer.

    One FusedConv2d module per call (explicit reflect padding), also inside opaque modules. Returns the number of
    nodes and opaque-module convs converted."""
    activations = {nn.ReLU: torch.relu, nn.Sigmoid: torch.sigmoid, nn.SiLU: F.silu}
    fired = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module":
            continue
        mod = gm.get_submodule(node.target)
        fired += 1
        if type(mod) is nn.Conv2d:
            conv = _fused_from_conv(mod)
            if conv is None:
                fired -= 1
                continue
            name = new_name(gm, "fconv")
            gm.add_submodule(name, conv)
            node.target = name
        elif type(mod) in activations:
            node.op, node.target = "call_function", activations[type(mod)]
        elif type(mod) is nn.GELU and mod.approximate == "none":
            node.op, node.target = "call_function", F.gelu
        elif type(mod) is nn.LeakyReLU:
            node.op, node.target = "call_function", F.leaky_relu
            node.args = (node.args[0], float(mod.negative_slope))
        elif type(mod) is nn.PixelShuffle:
            node.op, node.target = "call_function", pixel_shuffle_nchw
            node.args = (node.args[0], int(mod.upscale_factor))
        else:
            fired -= 1
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and node.target is F.pixel_shuffle:
            node.target = pixel_shuffle_nchw
            fired += 1
        elif node.op == "call_module":
            fired += _convert_convs_inside(gm.get_submodule(node.target))
    gm.graph.lint()
    return fired


def _convert_convs_inside(module: nn.Module) -> int:
    """Inside an opaque (untraceable) module, swap every ``nn.Conv2d`` for an equivalent :class:`FusedConv2d`
    (no fusion, but pre-packed oneDNN weights and explicit padding); returns how many."""
    if isinstance(module, (nn.Conv2d, FusedConv2d)) or type(module).__module__.startswith("torch.nn"):
        return 0
    converted = 0
    for name, child in list(module.named_children()):
        if type(child) is nn.Conv2d:
            conv = _fused_from_conv(child)
            if conv is not None:
                setattr(module, name, conv)
                converted += 1
        else:
            converted += _convert_convs_inside(child)
    return converted


def _fused_from_conv(conv: nn.Conv2d) -> FusedConv2d | None:
    k = conv.kernel_size
    if isinstance(conv.padding, str):
        if conv.padding == "valid":
            padding = [0, 0]
        else:  # 'same' with stride 1: symmetric only for odd effective kernels
            totals = [d * (kk - 1) for d, kk in zip(conv.dilation, k, strict=True)]
            if any(t % 2 for t in totals):
                return None
            padding = [t // 2 for t in totals]
    else:
        padding = list(conv.padding)
    reflect = None
    if conv.padding_mode != "zeros":
        if conv.padding_mode != "reflect":
            return None
        reflect = (padding[1], padding[1], padding[0], padding[0])
        padding = [0, 0]
        if not any(reflect):
            reflect = None
    return FusedConv2d(conv.weight, conv.bias, stride=conv.stride, padding=padding, dilation=conv.dilation,
                       groups=conv.groups, reflect_pad=reflect)
