"""Convolution algebra: MSN's separable reflect-padded depth-wise pair merged into one conv; ``conv(cat([a, b]))``
split into accumulated convs; ``conv(x).chunk(n)`` split into ``n`` convs."""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx as fx

from ..ops import FusedConv2d
from .graph import BuildContext, conv_of, meta_shape, new_name


def merge_separable_depthwise(gm: fx.GraphModule, ctx: BuildContext) -> int:
    """Reflect-padded depth-wise ``kx1`` then ``1xk`` convs (MSN) -> one reflect pad and one ``kxk`` depth-wise conv.

    Exact: the ``1xk`` conv works along rows, so it commutes with the first conv's reflection of rows, and the two
    reflections together are the reflection of both axes. The kernel is the outer product of the two kernels and the
    bias ``b2 + b1 * sum(w2)``, computed in float64.
    """
    fired = 0
    for node in list(gm.graph.nodes):
        second = conv_of(gm, node)
        if second is None or len(node.args) != 1:
            continue
        src = node.args[0]
        first = conv_of(gm, src)
        if first is None or len(src.users) != 1 or len(src.args) != 1:
            continue
        if not (first.is_depthwise() and second.is_depthwise() and first.out_channels == second.out_channels):
            continue
        if first.binary or first.unary or second.binary or second.unary:
            continue
        if first.stride != [1, 1] or second.stride != [1, 1] or first.dilation != [1, 1] or second.dilation != [1, 1]:
            continue
        (kh, kw1), (kh2, kw) = first.weight.shape[2:], second.weight.shape[2:]
        if kw1 != 1 or kh2 != 1 or first.padding != [0, 0] or second.padding != [0, 0]:
            continue
        ph, pw = (kh - 1) // 2, (kw - 1) // 2
        if first.reflect_pad != (0, 0, ph, ph) or second.reflect_pad != (pw, pw, 0, 0):
            continue
        w1 = first.weight.double()[:, 0, :, 0]  # [C, kh]
        w2 = second.weight.double()[:, 0, 0, :]  # [C, kw]
        weight = (w1[:, :, None] * w2[:, None, :]).unsqueeze(1)
        bias = torch.zeros(second.out_channels, dtype=torch.float64, device=w1.device)
        if second.bias is not None:
            bias += second.bias.double()
        if first.bias is not None:
            bias += first.bias.double() * w2.sum(1)
        merged = FusedConv2d(weight.to(first.weight.dtype), bias.to(first.weight.dtype), stride=[1, 1],
                             padding=[0, 0], dilation=[1, 1], groups=first.groups, reflect_pad=(pw, pw, ph, ph))
        name = new_name(gm, "fconv")
        gm.add_submodule(name, merged)
        node.target = name
        node.args = (src.args[0],)
        gm.graph.erase_node(src)
        fired += 1
    gm.graph.lint()
    return fired


def _cat_inputs(node: Any) -> list[fx.Node] | None:
    """The inputs of ``torch.cat(inputs, dim=1)`` (channel concatenation), else None."""
    if not (isinstance(node, fx.Node) and node.op == "call_function" and node.target is torch.cat):
        return None
    tensors = node.args[0] if node.args else node.kwargs.get("tensors")
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    if dim != 1 or not isinstance(tensors, (list, tuple)) or not all(isinstance(t, fx.Node) for t in tensors):
        return None
    return list(tensors)


def split_concat_convs(gm: fx.GraphModule, ctx: BuildContext) -> int:
    """``conv(cat([a, b, ...], dim=1))`` -> ``conv_a(a) + conv_b(b) + ...``, accumulated in place.

    The weight is sliced by input channels; the partial convs accumulate through oneDNN's add post-op.

    Convolution is linear in its input channels (zero or reflect padding act per channel), so the sum equals the
    conv of the concatenation up to float summation order. A channel concatenation of channels-last tensors is a
    strided copy that costs more than the partial convs' extra accumulator traffic, and the concatenated tensor
    (224 channels at the end of MDRN) is never allocated.
    """
    fired = 0
    for node in list(gm.graph.nodes):
        conv = conv_of(gm, node)
        if conv is None or conv.groups != 1 or conv.binary or conv.unary or len(node.args) != 1:
            continue
        cat = node.args[0]
        parts = _cat_inputs(cat)
        if parts is None or len(parts) < 2 or len(cat.users) != 1:
            continue
        widths = [(meta_shape(p) or (0, 0))[1] for p in parts]
        if any(w <= 0 for w in widths) or sum(widths) != conv.weight.shape[1]:
            continue
        acc = None
        offset = 0
        with gm.graph.inserting_before(node):
            for i, (part, width) in enumerate(zip(parts, widths, strict=True)):
                piece = FusedConv2d(conv.weight[:, offset:offset + width], conv.bias if i == 0 else None,
                                    stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=1,
                                    reflect_pad=conv.reflect_pad)
                offset += width
                name = new_name(gm, "fconv")
                gm.add_submodule(name, piece)
                if acc is None:
                    acc = gm.graph.call_module(name, (part,))
                else:
                    piece.binary, piece.inplace = "add", True  # the accumulator is a fresh, private tensor
                    acc = gm.graph.call_module(name, (part, acc))
                acc.meta = dict(node.meta)
        node.replace_all_uses_with(acc)
        gm.graph.erase_node(node)
        gm.graph.erase_node(cat)
        fired += 1
    gm.graph.lint()
    return fired


def _chunk_widths(node: fx.Node, channels: int) -> list[int] | None:
    """Channel widths of ``x.chunk(n, dim=1)`` / ``x.split(sizes, dim=1)``, else None."""
    if node.op != "call_method" or node.target not in ("chunk", "split") or len(node.args) < 2:
        return None
    dim = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)
    if dim != 1 or set(node.kwargs) - {"dim"}:
        return None
    arg = node.args[1]
    if node.target == "chunk":
        if not isinstance(arg, int) or arg < 1 or channels % arg:
            return None  # uneven chunks: not worth the special cases
        return [channels // arg] * arg
    if isinstance(arg, int):
        return [arg] * (channels // arg) + ([channels % arg] if channels % arg else [])
    return list(arg) if isinstance(arg, (list, tuple)) and sum(arg) == channels else None


def _slice_conv(conv: FusedConv2d, lo: int, hi: int, *, depthwise_input: bool) -> FusedConv2d:
    """The output channels ``lo:hi`` of ``conv`` as a conv of their own (for a depth-wise conv, of input channels
    ``lo:hi`` too)."""
    groups = hi - lo if depthwise_input else conv.groups
    return FusedConv2d(conv.weight[lo:hi], None if conv.bias is None else conv.bias[lo:hi], stride=conv.stride,
                       padding=conv.padding, dilation=conv.dilation, groups=groups, reflect_pad=conv.reflect_pad)


def split_chunked_convs(gm: fx.GraphModule, ctx: BuildContext) -> int:
    """``conv(x).chunk(n, dim=1)`` -> ``n`` convs, one per chunk (each output channel computed exactly as before).

    A channel slice of a channels-last tensor is a strided view that every later element-wise op walks slowly (and
    that oneDNN cannot fuse into); separate convs give contiguous outputs and free activation fusion. For a
    depth-wise conv (Restormer's gated FFN: 1x1 expand -> depth-wise 3x3 -> chunk) the split goes through to the
    1x1 conv before it, which is split by output channels too.
    """
    fired = 0
    for node in list(gm.graph.nodes):
        conv = conv_of(gm, node)
        if conv is None or conv.binary or conv.unary or len(node.args) != 1 or len(node.users) != 1:
            continue
        chunk = next(iter(node.users))
        widths = _chunk_widths(chunk, conv.out_channels)
        if widths is None or not all(u.op == "call_function" and u.target is operator.getitem
                                     and isinstance(u.args[1], int) for u in chunk.users):
            continue
        src = node.args[0]
        inputs: list[Any]
        if conv.is_depthwise():
            feeder = conv_of(gm, src)
            if feeder is None or feeder.groups != 1 or feeder.binary or feeder.unary or len(src.users) != 1:
                continue  # a depth-wise split would need channel slices of an arbitrary input
            inputs = []
            with gm.graph.inserting_before(node):
                lo = 0
                for width in widths:
                    piece = _slice_conv(feeder, lo, lo + width, depthwise_input=False)
                    name = new_name(gm, "fconv")
                    gm.add_submodule(name, piece)
                    new = gm.graph.call_module(name, src.args)
                    new.meta = _sliced_meta(src, lo, lo + width)
                    inputs.append(new)
                    lo += width
        else:
            inputs = [src] * len(widths)
        outputs = []
        with gm.graph.inserting_before(node):
            lo = 0
            for width, inp in zip(widths, inputs, strict=True):
                piece = _slice_conv(conv, lo, lo + width, depthwise_input=conv.is_depthwise())
                name = new_name(gm, "fconv")
                gm.add_submodule(name, piece)
                new = gm.graph.call_module(name, (inp,))
                new.meta = _sliced_meta(node, lo, lo + width)
                outputs.append(new)
                lo += width
        for user in list(chunk.users):
            user.replace_all_uses_with(outputs[user.args[1]])
            gm.graph.erase_node(user)
        gm.graph.erase_node(chunk)
        gm.graph.erase_node(node)
        if conv.is_depthwise():
            gm.graph.erase_node(src)
        fired += 1
    gm.graph.lint()
    return fired


def _sliced_meta(node: fx.Node, lo: int, hi: int) -> dict[str, Any]:
    """The node's shape metadata with channels ``lo:hi`` (enough for the later passes: shape and dtype)."""
    from torch.fx.passes.shape_prop import TensorMetadata

    meta = dict(node.meta)
    tm = meta.get("tensor_meta")
    if isinstance(tm, TensorMetadata):
        shape = torch.Size((tm.shape[0], hi - lo, *tm.shape[2:]))
        meta["tensor_meta"] = tm._replace(shape=shape)
    return meta
