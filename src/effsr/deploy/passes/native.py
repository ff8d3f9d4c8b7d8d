"""Native kernels: the ESA's glue (RLFN) and the pixel shuffle through :mod:`effsr.deploy.native`."""

from __future__ import annotations

import operator
from typing import Any

import torch.fx as fx
import torch.nn.functional as F

from .. import native as kernels
from ..ops import FusedConv2d, pixel_shuffle_nchw
from .graph import BuildContext, conv_of, finish, new_name


def native_esa(gm: fx.GraphModule, ctx: BuildContext) -> int:
    """The ESA's glue (head, low branch, gated tail) in effsr's native kernels (:mod:`effsr.deploy.native`).

    Returns the number of native modules put in.

    Tail: ``c5(s) * sigmoid(conv4(conv_f(c1) + interpolate(c3, size=s.shape[2:], bilinear)))``, as the earlier
    passes leave it (conv_f with an add post-op, conv4 with a sigmoid, c5 with a mul post-op), becomes one
    :class:`~effsr.deploy.native.EsaTail`. Head: ``s = a.add_(x)`` read by a 1x1 conv to 16 channels becomes one
    :class:`~effsr.deploy.native.EsaHead` that returns ``s`` and that conv's output. Both only where the widths have
    a kernel; both fall back to the same PyTorch operators at run time on inputs the kernel does not take.
    """
    graph = gm.graph
    fired = 0
    for node in list(graph.nodes):
        c5 = conv_of(gm, node)
        if c5 is None or not (c5.is_pointwise() and c5.binary == "mul" and c5.unary is None and len(node.args) == 2):
            continue
        s, gate = node.args
        conv4 = conv_of(gm, gate)
        if conv4 is None or not (conv4.is_pointwise() and conv4.binary is None and conv4.unary == "sigmoid"
                                 and len(gate.users) == 1 and len(gate.args) == 1):
            continue
        t = gate.args[0]
        conv_f = conv_of(gm, t)
        if conv_f is None or not (conv_f.is_pointwise() and conv_f.binary == "add" and conv_f.unary is None
                                  and len(t.users) == 1 and len(t.args) == 2):
            continue
        c1, up = t.args
        if not (isinstance(up, fx.Node) and up.op == "call_function" and up.target is F.interpolate
                and len(up.users) == 1 and len(up.args) == 1 and _interpolates_to_size_of(up, s)):
            continue
        c, f = c5.out_channels, conv_f.out_channels
        if not (c in kernels.CHANNELS and f == kernels.GATE_CHANNELS and tuple(c5.weight.shape[:2]) == (c, c)
                and tuple(conv4.weight.shape[:2]) == (c, f) and tuple(conv_f.weight.shape[:2]) == (f, f)):
            continue
        name = new_name(gm, "esa_tail")
        gm.add_submodule(name, kernels.EsaTail(conv_f, conv4, c5))
        with graph.inserting_before(node):
            fused = graph.call_module(name, (s, c1, up.args[0]))
        fused.meta = dict(node.meta)
        node.replace_all_uses_with(fused)
        for dead in (node, gate, t, up):
            graph.erase_node(dead)
        fired += 1 + _fuse_esa_low_branch(gm, fused)
    for node in list(graph.nodes):
        if not (node.op == "call_method" and node.target == "add_" and len(node.args) == 2 and not node.kwargs
                and all(isinstance(a, fx.Node) for a in node.args)):
            continue
        readers = [u for u in node.users if (conv := conv_of(gm, u)) is not None and conv.is_pointwise()
                   and conv.binary is None and conv.unary is None and len(u.args) == 1
                   and conv.out_channels == kernels.GATE_CHANNELS and conv.weight.shape[1] in kernels.CHANNELS]
        if len(readers) != 1:
            continue
        conv1_node = readers[0]
        name = new_name(gm, "esa_head")
        gm.add_submodule(name, kernels.EsaHead(gm.get_submodule(conv1_node.target)))
        with graph.inserting_before(node):
            head = graph.call_module(name, node.args)
            s = graph.call_function(operator.getitem, (head, 0))
            c1 = graph.call_function(operator.getitem, (head, 1))
        s.meta, c1.meta = dict(node.meta), dict(conv1_node.meta)
        conv1_node.replace_all_uses_with(c1)
        graph.erase_node(conv1_node)
        node.replace_all_uses_with(s)
        graph.erase_node(node)
        fired += 1
    graph.lint()
    finish(gm)
    return fired


def native_pixel_shuffle(gm: fx.GraphModule, ctx: BuildContext) -> int:
    """The NCHW-writing pixel shuffle as one native copy (:func:`effsr.deploy.native.pixel_shuffle_nchw`).

    It falls back to the PyTorch one on inputs it does not take. Returns how many."""
    fired = 0
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target is pixel_shuffle_nchw:
            node.target = kernels.pixel_shuffle_nchw
            fired += 1
    gm.graph.lint()
    finish(gm)
    return fired


def _plain_conv3x3(conv: FusedConv2d | None, stride: int, padding: int) -> bool:
    """A 3x3 conv, 16 -> 16 channels, one group, zero padding ``padding``, stride ``stride``, no post-ops."""
    return conv is not None and (
        tuple(conv.weight.shape) == (kernels.GATE_CHANNELS, kernels.GATE_CHANNELS, 3, 3)
        and conv.stride == [stride, stride] and conv.padding == [padding, padding] and conv.dilation == [1, 1]
        and conv.groups == 1 and conv.reflect_pad is None and conv.binary is None and conv.unary is None)


def _fuse_esa_low_branch(gm: fx.GraphModule, tail: fx.Node) -> bool:
    """The tail's ``c3 = conv3(max_pool2d(conv2(c1)))`` (RLFN's ESA) -> one :class:`~effsr.deploy.native.EsaLow`."""
    _, c1, c3 = tail.args
    conv3 = conv_of(gm, c3)
    if not (_plain_conv3x3(conv3, 1, 1) and len(c3.users) == 1 and len(c3.args) == 1):
        return False
    pool = c3.args[0]
    if not (isinstance(pool, fx.Node) and pool.op == "call_function" and pool.target is F.max_pool2d
            and len(pool.users) == 1):
        return False
    args = dict(zip(("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
                    pool.args, strict=False))
    args.update(pool.kwargs)
    square = {k: (v[0] if isinstance(v, (tuple, list)) and len(set(v)) == 1 else v) for k, v in args.items()}
    kernel = square.get("kernel_size")
    stride = square.get("stride") or kernel
    if not (isinstance(kernel, int) and isinstance(stride, int) and square.get("padding", 0) == 0
            and square.get("dilation", 1) == 1 and not square.get("ceil_mode", False)
            and not square.get("return_indices", False)):
        return False
    down = square["input"]
    conv2 = conv_of(gm, down)
    if not (conv2 is not None and len(down.users) == 1 and len(down.args) == 1 and down.args[0] is c1
            and conv2.stride[0] == conv2.stride[1] and _plain_conv3x3(conv2, conv2.stride[0], 0)):
        return False
    name = new_name(gm, "esa_low")
    gm.add_submodule(name, kernels.EsaLow(conv2, conv3, kernel, stride))
    graph = gm.graph
    with graph.inserting_before(c3):
        fused = graph.call_module(name, (c1,))
    fused.meta = dict(c3.meta)
    c3.replace_all_uses_with(fused)
    for dead in (c3, pool, down):
        graph.erase_node(dead)
    return True


def _interpolates_to_size_of(up: fx.Node, ref: Any) -> bool:
    """``F.interpolate(x, size=ref.shape[2:], mode="bilinear", align_corners=False)``, as traced."""
    kw = up.kwargs
    if not (kw.get("mode") == "bilinear" and kw.get("align_corners") is False and kw.get("scale_factor") is None
            and not kw.get("antialias") and not kw.get("recompute_scale_factor")):
        return False
    size = kw.get("size")
    if not (isinstance(size, fx.Node) and size.op == "call_function" and size.target is operator.getitem
            and size.args[1] == slice(2, None)):
        return False
    shape = size.args[0]
    if isinstance(shape, fx.Node) and shape.op == "call_function" and shape.target is getattr:
        return shape.args == (ref, "shape")
    return isinstance(shape, fx.Node) and shape.op == "call_method" and shape.target == "size" and (
        shape.args == (ref,))
