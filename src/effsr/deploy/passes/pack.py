"""Weight pre-packing: every conv's weight reordered for oneDNN once, for the input shape it sees."""

from __future__ import annotations

import torch
import torch.fx as fx

from .graph import conv_of, meta_shape


def pack_convs(gm: fx.GraphModule, example: torch.Tensor) -> None:
    """Pre-pack every conv weight for the input shape it sees on the example (from the shape propagation)."""
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
