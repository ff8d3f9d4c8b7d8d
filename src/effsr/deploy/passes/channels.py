"""Channel widening: feature maps just under a multiple of 16 channels (RLFN's 46) get zero channels."""

from __future__ import annotations

import operator

import torch
import torch.fx as fx
import torch.nn.functional as F

from ..ops import FusedConv2d
from .graph import (
    ADD,
    INPLACE_FUNCTIONS,
    MUL,
    UNARY_FUNCTIONS,
    BuildContext,
    conv_of,
    meta_shape,
    new_name,
    spatial_index,
)

# Channel padding (pad_channels): oneDNN's 3x3 kernels block output channels by 16 and run a masked tail otherwise.
# RLFN's 46-channel maps: a 48 -> 46 conv took 8.3 ms against 7.2 ms for 48 -> 48 (LR 256x256, 2 threads,
# benchmarks/RESULTS.md), so widening by 2 zero channels pays; widening 28 -> 32 or 36 -> 48 did not.
CHANNEL_BLOCK = 16
MAX_PADDING_OVERHEAD = 1 / 16


# Ops that act on each channel alone and keep zero-padded inputs finite: padded channels may hold any finite value
# (sigmoid(0) = 0.5), since every conv that reads them has zero weights there.
_PER_CHANNEL_METHODS = {"add", "add_", "mul", "mul_", "sub", "sub_"}
_PER_CHANNEL_FUNCTIONS = set(ADD) | set(MUL) | {operator.sub, torch.sub, F.interpolate, F.max_pool2d,
                                                   F.avg_pool2d} | set(UNARY_FUNCTIONS) | INPLACE_FUNCTIONS


def _padded_width(channels: int) -> int | None:
    padded = -(-channels // CHANNEL_BLOCK) * CHANNEL_BLOCK
    if padded == channels or (padded - channels) > MAX_PADDING_OVERHEAD * channels:
        return None
    return padded


def pad_channels(gm: fx.GraphModule, ctx: BuildContext) -> int:
    """Feature maps just under a multiple of 16 channels (RLFN's 46) widened with zero channels.

    The maps tied together by residual adds, products, activations and pooling form one group that is widened as a
    whole: convs producing a member get zero output channels (zero weights and bias), convs reading a member get
    zero weights for the new input channels, so every original channel is computed from the same terms (only the
    float summation order of the kernel may change) and the extra channels never reach the output. A group is left
    alone when any member is produced or read by anything else (the graph output, a pixel shuffle, a channel
    concatenation or reduction, a depth-wise conv, an opaque module). Returns the number of maps widened.
    """
    parent: dict[fx.Node, fx.Node] = {}

    def find(n: fx.Node) -> fx.Node:
        while parent.setdefault(n, n) is not n:
            n = parent[n]
        return n

    def union(a: fx.Node, b: fx.Node) -> None:
        parent[find(a)] = find(b)

    candidates = [n for n in gm.graph.nodes
                  if (shape := meta_shape(n)) is not None and len(shape) == 4 and _padded_width(shape[1])]
    members = set(candidates)
    for n in candidates:
        find(n)
        conv = conv_of(gm, n)
        if conv is not None:
            if len(n.args) > 1 and isinstance(n.args[1], fx.Node):
                union(n, n.args[1])
        elif _is_per_channel(n):
            for a in n.all_input_nodes:
                if a in members:
                    union(n, a)
    bad: set[fx.Node] = set()
    for n in candidates:
        conv = conv_of(gm, n)
        ok = conv.groups == 1 if conv is not None else _is_per_channel(n)
        for u in n.users:
            user_conv = conv_of(gm, u)
            if user_conv is not None:
                ok = ok and (user_conv.groups == 1 if u.args[0] is n else u in members)
            elif u.op == "call_function" and u.target is getattr and u.args[1:] == ("shape",):
                ok = ok and all(spatial_index(g) for g in u.users)
            else:
                ok = ok and u in members and _is_per_channel(u)
        if not ok:
            bad.add(find(n))
    # A group only joins maps of one shape (or per-channel resamplings of it), so each member widens alike.
    widened = {n: _padded_width(meta_shape(n)[1]) for n in candidates if find(n) not in bad}
    if not widened:
        return 0
    for node in gm.graph.nodes:
        conv = conv_of(gm, node)
        if conv is None:
            continue
        out_w = widened.get(node, conv.out_channels)
        in_w = widened.get(node.args[0], conv.weight.shape[1]) if conv.groups == 1 else conv.weight.shape[1]
        if (out_w, in_w) == tuple(conv.weight.shape[:2]):
            continue
        weight = conv.weight.new_zeros((out_w, in_w, *conv.weight.shape[2:]))
        weight[: conv.out_channels, : conv.weight.shape[1]] = conv.weight
        bias = None
        if conv.bias is not None:
            bias = conv.bias.new_zeros(out_w)
            bias[: conv.out_channels] = conv.bias
        new = FusedConv2d(weight, bias, stride=conv.stride, padding=conv.padding, dilation=conv.dilation,
                          groups=1, reflect_pad=conv.reflect_pad).with_post_ops_of(conv)
        name = new_name(gm, "fconv")
        gm.add_submodule(name, new)
        node.target = name
    for n, width in widened.items():
        tm = n.meta["tensor_meta"]
        n.meta["tensor_meta"] = tm._replace(shape=torch.Size((tm.shape[0], width, *tm.shape[2:])))
    gm.graph.lint()
    return len(widened)


def _is_per_channel(n: fx.Node) -> bool:
    if n.op == "call_method":
        return n.target in _PER_CHANNEL_METHODS
    return n.op == "call_function" and n.target in _PER_CHANNEL_FUNCTIONS
