"""Weight pre-packing: every conv's weight reordered for oneDNN once, for the input shape it sees."""

from __future__ import annotations

import torch
import torch.fx as fx

from ..ops import FusedConv2d
from .graph import BuildContext, conv_of, meta_shape


def pack_weights(gm: fx.GraphModule, ctx: BuildContext) -> int:
    """Every conv weight pre-packed for oneDNN once, for the input shape it sees on the example.

    The shapes come from the shape propagation; convs inside opaque (untraceable) modules pack on their first call.
    Returns the number of convs packed or deferred."""
    example = ctx.example.to(ctx.dtype).contiguous(memory_format=torch.channels_last)
    shapes: dict[str, tuple[int, ...]] = {}
    for node in gm.graph.nodes:
        conv = conv_of(gm, node)
        if conv is not None:
            shapes[node.target] = meta_shape(node.args[0]) or tuple(example.shape)
    for name, shape in shapes.items():
        conv = gm.get_submodule(name)
        if conv.reflect_pad is not None:
            left, right, top, bottom = conv.reflect_pad
            shape = (*shape[:2], shape[2] + top + bottom, shape[3] + left + right)
        conv.pack(shape)
    deferred = [m for m in gm.modules() if isinstance(m, FusedConv2d) and m.packed is None]
    for mod in deferred:
        mod.pack_on_first_call = True
    return len(shapes) + len(deferred)
