"""oneDNN post-op fusion: ``conv + tensor`` (in place into a dead residual), ``act(conv)`` and ``conv * gate``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.fx as fx

from ..ops import FusedConv2d
from .graph import (
    ADD,
    MUL,
    BuildContext,
    conv_of,
    dead_after,
    is_fresh,
    meta_dtype,
    meta_shape,
    new_name,
    spatial_index,
    unary_of,
)


def fuse_conv_add(gm: fx.GraphModule, ctx: BuildContext) -> int:
    """``conv(x) + other`` -> one oneDNN conv with a binary-add post-op (in place into ``other`` when it is dead)."""
    fired = 0
    for node in _binary_ops(gm, ADD):
        for conv_node, other in (node.args, node.args[::-1]):
            conv = conv_of(gm, conv_node)
            if conv is None or conv.binary or conv.unary or len(conv_node.users) != 1 or len(conv_node.args) != 1:
                continue
            if not isinstance(other, fx.Node) or other.op == "get_attr":
                continue
            shape = meta_shape(conv_node)
            if shape is None or shape != meta_shape(other) or meta_dtype(conv_node) != meta_dtype(other):
                continue
            conv.binary = "add"
            x = conv_node.args[0]
            # In place only into a dead temporary that the conv's input cannot be a view of: the input is itself
            # a fresh tensor, or the reflect pad copies it first.
            conv.inplace = bool(is_fresh(gm, other) and dead_after(other, node) and other is not x
                                and (is_fresh(gm, x) or conv.reflect_pad is not None))
            _take_place_of(gm, node, conv_node, (x, other))  # ``other`` may be computed after the conv
            fired += 1
            break
    gm.graph.lint()
    return fired


def _binary_ops(gm: fx.GraphModule, targets: tuple[Any, ...]) -> Iterator[fx.Node]:
    """The nodes ``a op b`` with ``op`` one of ``targets`` (positional operands only), in graph order; the graph may
    be rewritten while iterating."""
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and node.target in targets and not node.kwargs and len(node.args) == 2:
            yield node


def _take_place_of(gm: fx.GraphModule, op: fx.Node, conv_node: fx.Node, args: tuple) -> None:
    """The conv that now fuses the binary ``op`` replaces it: it moves to just before ``op`` (its second input may
    be computed after the conv in the original order), reads ``args``, and ``op`` is gone."""
    op.prepend(conv_node)
    conv_node.args = args
    op.replace_all_uses_with(conv_node)
    gm.graph.erase_node(op)


def fuse_conv_unary(gm: fx.GraphModule, ctx: BuildContext) -> int:
    """``act(conv(...))`` -> one oneDNN conv with the activation as post-op (ReLU, LeakyReLU, sigmoid, SiLU, GELU)."""
    fired = 0
    for node in list(gm.graph.nodes):
        unary = unary_of(node) if node.op == "call_function" else None
        if unary is None:
            continue
        src = node.args[0]
        conv = conv_of(gm, src)
        if conv is None or conv.unary or len(src.users) != 1:
            continue
        conv.unary, conv.unary_scalars = unary
        node.replace_all_uses_with(src)
        gm.graph.erase_node(node)
        fired += 1
    gm.graph.lint()
    return fired


def compose_pointwise(first: FusedConv2d, second: FusedConv2d) -> FusedConv2d:
    """``second(first(x))`` as one convolution when ``second`` is a plain 1x1 conv and ``first`` has no post-ops:
    weight ``W2 @ W1`` and bias ``W2 @ b1 + b2``, computed in float64. ``second``'s own post-ops are kept."""
    w2 = second.weight.double()[:, :, 0, 0]
    weight = torch.einsum("om,mikl->oikl", w2, first.weight.double())
    bias = torch.zeros(second.out_channels, dtype=torch.float64, device=w2.device)
    if first.bias is not None:
        bias += w2 @ first.bias.double()
    if second.bias is not None:
        bias += second.bias.double()
    dtype = first.weight.dtype
    return FusedConv2d(weight.to(dtype), bias.to(dtype), stride=first.stride, padding=first.padding,
                       dilation=first.dilation, groups=1, reflect_pad=first.reflect_pad).with_post_ops_of(second)


def fuse_conv_mul(gm: fx.GraphModule, ctx: BuildContext) -> int:
    """``conv(x) * gate`` -> one oneDNN conv with a binary-mul post-op (the ESA's ``c5(s) * sigmoid(...)``).

    The product is computed as the conv writes its output, so the conv's own output is never stored (RLFN's and
    LSANet's ESA).

    The gate must be ready before the conv runs. In the ESA it is computed from the conv's output itself, through
    a 1x1 conv (``conv1``); that 1x1 conv is composed with the first one (``conv1(c5(s)) = conv1'(s)``, an identity
    of linear maps) so that the gate reads ``s`` directly. Composition is only done where it costs no MACs: the
    first conv is 1x1 and has no more input than output channels.
    """
    fired = 0
    for node in _binary_ops(gm, MUL):
        for y, gate in (node.args, node.args[::-1]):
            conv = conv_of(gm, y)
            if (conv is None or conv.binary or conv.unary or len(y.args) != 1 or not isinstance(gate, fx.Node)
                    or gate is y or meta_shape(y) is None or meta_shape(y) != meta_shape(gate)
                    or meta_dtype(y) != meta_dtype(gate)):
                continue
            shape_reads = [u for u in y.users if u.op == "call_function" and u.target is getattr
                           and u.args[1:] == ("shape",) and all(spatial_index(g) for g in u.users)]
            others = [u for u in y.users if u is not node and u not in shape_reads]
            second = [conv_of(gm, u) for u in others]
            composable = conv.is_pointwise() and conv.weight.shape[1] <= conv.out_channels
            if shape_reads and not conv.is_pointwise():
                continue
            if others and not composable:
                continue
            if any(c is None or not c.is_pointwise() or u.args[0] is not y or y in u.args[1:]
                   for c, u in zip(second, others, strict=True)):
                continue
            src = y.args[0]
            for u in shape_reads:  # a 1x1 conv keeps the spatial size: read it from its input
                u.args = (src, *u.args[1:])
            for c, u in zip(second, others, strict=True):
                name = new_name(gm, "fconv")
                gm.add_submodule(name, compose_pointwise(conv, c))
                u.target = name
                u.args = (src, *u.args[1:])
            conv.binary, conv.inplace = "mul", False  # oneDNN's in-place form only adds
            _take_place_of(gm, node, y, (src, gate))  # the gate is computed before the conv now
            fired += 1
            break
    gm.graph.lint()
    return fired
