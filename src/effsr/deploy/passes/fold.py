"""Constant folding: everything that does not depend on the input, and scalar scaling / constant channel offsets
around a convolution (RLFN's ``x * 255`` and ``/ 255``, the ``+ mean`` after the pixel shuffle) folded into its
weights."""

from __future__ import annotations

import math
import operator
from typing import Any

import torch
import torch.fx as fx

from ..ops import FusedConv2d, pixel_shuffle_nchw
from .graph import ADD, MUL, BuildContext, conv_of, fetch_attr, is_number, new_name, replace_with_value


def fold_constants(gm: fx.GraphModule, ctx: BuildContext) -> int:
    """Evaluate what does not depend on the input (the RGB mean's cast, weight views) into constants.

    The input's device and dtype read in ``forward`` are those of the deploy graph (float32 while rewriting; the
    graph is cast to the compute dtype afterwards). Returns how many nodes were folded."""
    device, dtype = ctx.device, torch.float32
    consts: dict[fx.Node, Any] = {}
    fired = 0
    for node in list(gm.graph.nodes):
        if node.op == "get_attr":
            consts[node] = fetch_attr(gm, node.target)
            continue
        if node.op == "call_function" and node.target is getattr and len(node.args) == 2:
            src, attr = node.args
            if isinstance(src, fx.Node) and src.op == "placeholder" and attr in ("device", "dtype"):
                replace_with_value(gm, node, device if attr == "device" else dtype)
                fired += 1
            continue
        if node.op not in ("call_function", "call_method"):
            continue
        if node.op == "call_method" and str(node.target).endswith("_"):
            continue
        inputs = node.all_input_nodes
        if not inputs or not all(n in consts for n in inputs):
            continue
        args = fx.node.map_arg(node.args, lambda n: consts[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: consts[n])
        try:
            with torch.no_grad():
                if node.op == "call_function":
                    value = node.target(*args, **kwargs)
                else:
                    value = getattr(args[0], node.target)(*args[1:], **kwargs)
        except Exception:
            continue
        if isinstance(value, torch.Tensor):
            name = new_name(gm, "_const")
            gm.register_buffer(name, value.detach().clone())
            with gm.graph.inserting_before(node):
                new = gm.graph.get_attr(name)
            node.replace_all_uses_with(new)
            gm.graph.erase_node(node)
            consts[new] = value
            fired += 1
        elif value is None or isinstance(value, (int, float, bool, torch.device, torch.dtype)):
            replace_with_value(gm, node, value)
            fired += 1
    gm.graph.eliminate_dead_code()
    gm.graph.lint()
    return fired


def fold_scalars_into_convs(gm: fx.GraphModule, ctx: BuildContext) -> int:
    """``x * 255`` before a conv, ``/ 255`` and ``+ mean`` after a conv (and pixel shuffle) -> its weights and bias.

    ``conv(s * x) = conv'(x)`` with ``w' = s * w`` (zero or reflect padding commute with scaling);
    ``shuffle(conv(x)) / s`` and ``shuffle(conv(x)) + c`` move into the conv's weight and bias, with output channel
    ``c`` of the shuffle reading conv channels ``c * r * r ... c * r * r + r * r - 1``.
    """
    fired = 0
    changed = True
    while changed:
        changed = False
        for node in list(gm.graph.nodes):
            if node.op != "call_function":
                continue
            if _fold_input_scale(gm, node) or _fold_output_affine(gm, node):
                changed = True
                fired += 1
                break
    gm.graph.lint()
    return fired


def _scalar_factor(node: fx.Node) -> tuple[fx.Node, float] | None:
    """(tensor node, factor) when ``node`` multiplies or divides a tensor node by a Python number."""
    a, b = (node.args + (None, None))[:2]
    if node.target in MUL and not node.kwargs:
        if isinstance(a, fx.Node) and is_number(b):
            return a, float(b)
        if isinstance(b, fx.Node) and is_number(a):
            return b, float(a)
    if node.target in (operator.truediv, torch.div) and not node.kwargs and isinstance(a, fx.Node) and is_number(b):
        return a, 1.0 / float(b) if float(b) != 0 else math.inf
    return None


def _fold_input_scale(gm: fx.GraphModule, node: fx.Node) -> bool:
    sf = _scalar_factor(node)
    if sf is None or node.target in (operator.truediv, torch.div):  # only an exact multiplication folds forward
        return False
    src, factor = sf
    users = list(node.users)
    convs = [conv_of(gm, u) for u in users]
    if not users or any(c is None for c in convs):
        return False
    if any(u.args[0] is not node or node in u.args[1:] for u in users):
        return False
    for conv in convs:
        conv.weight.mul_(factor)
    node.replace_all_uses_with(src)
    gm.graph.erase_node(node)
    return True


def _producer_conv(gm: fx.GraphModule, node: Any) -> tuple[FusedConv2d, int] | None:
    """(conv, shuffle factor) if ``node`` is a conv without post-ops, possibly through one pixel shuffle, and every
    intermediate has this single use."""
    if not isinstance(node, fx.Node) or len(node.users) != 1:
        return None
    r = 1
    if node.op == "call_function" and node.target is pixel_shuffle_nchw:
        r = int(node.args[1])
        node = node.args[0]
        if not isinstance(node, fx.Node) or len(node.users) != 1:
            return None
    conv = conv_of(gm, node)
    if conv is None or conv.binary or conv.unary:
        return None
    return conv, r


def _fold_output_affine(gm: fx.GraphModule, node: fx.Node) -> bool:
    sf = _scalar_factor(node)
    if sf is not None:
        prod = _producer_conv(gm, sf[0])
        if prod is None or not math.isfinite(sf[1]):
            return False
        conv, _ = prod
        conv.weight.mul_(sf[1])
        if conv.bias is not None:
            conv.bias.mul_(sf[1])
        node.replace_all_uses_with(sf[0])
        gm.graph.erase_node(node)
        return True
    if node.target not in ADD + (operator.sub, torch.sub) or node.kwargs or len(node.args) != 2:
        return False
    a, b = node.args
    sign = 1.0
    if node.target in (operator.sub, torch.sub):
        sign = -1.0
    elif isinstance(a, fx.Node) and a.op == "get_attr":
        a, b = b, a
    prod = _producer_conv(gm, a)
    if prod is None:
        return False
    conv, r = prod
    if is_number(b):
        offset = torch.full((conv.out_channels // (r * r),), float(b), dtype=torch.float64)
    elif isinstance(b, fx.Node) and b.op == "get_attr":
        value = fetch_attr(gm, b.target)
        if not isinstance(value, torch.Tensor) or value.dim() != 4 or value.shape[0] != 1 or value.shape[2:] != (1, 1):
            return False
        if value.shape[1] * r * r != conv.out_channels:
            return False
        offset = value.detach().double().reshape(-1)
    else:
        return False
    per_conv_channel = (sign * offset).to(conv.weight.device).repeat_interleave(r * r)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(per_conv_channel)
    conv.bias = (bias + per_conv_channel).to(conv.weight.dtype)
    node.replace_all_uses_with(a)
    gm.graph.erase_node(node)
    return True
