"""In-place element-wise ops: activations, ``a + b``, ``a * b``, ``a - b``, ``a / b``, ``a ** b`` run in place on ``a``
when ``a`` is a dead temporary of full shape."""

from __future__ import annotations

import operator

import torch
import torch.fx as fx

from ..ops import gelu_dense_
from .graph import ADD, MUL, BuildContext, is_fresh, is_number, meta_dtype, meta_shape, unary_of

_INPLACE_UNARY = {"gelu": gelu_dense_, "relu": torch.relu_, "sigmoid": torch.sigmoid_}


def inplace_elementwise(gm: fx.GraphModule, ctx: BuildContext) -> int:
    """Activations and ``a + b``, ``a * b``, ``a - b``, ``a / b``, ``a ** b`` in place on a dead temporary ``a``."""
    fired = 0
    for node in list(gm.graph.nodes):
        if node.op == "call_method" and node.target == "pow" and len(node.args) == 2 and not node.kwargs:
            a, b = node.args
            if is_fresh(gm, a) and len(a.users) == 1 and is_number(b):
                node.target = "pow_"
                fired += 1
            continue
        if node.op != "call_function":
            continue
        unary = unary_of(node)
        if unary is not None and unary[0] in _INPLACE_UNARY:
            src = node.args[0]
            if is_fresh(gm, src) and len(src.users) == 1:
                node.target, node.args, node.kwargs = _INPLACE_UNARY[unary[0]], (src,), {}
                fired += 1
            continue
        if node.target in (operator.sub, torch.sub, operator.truediv, torch.div, operator.pow, torch.pow) and (
                not node.kwargs and len(node.args) == 2):
            a, b = node.args
            if (is_fresh(gm, a) and len(a.users) == 1 and a is not b and meta_shape(a) is not None
                    and meta_shape(a) == meta_shape(node) and meta_dtype(a) == meta_dtype(node)
                    and (isinstance(b, fx.Node) or is_number(b))):
                node.op = "call_method"
                node.target = {operator.sub: "sub_", torch.sub: "sub_", operator.truediv: "div_", torch.div: "div_",
                               operator.pow: "pow_", torch.pow: "pow_"}[node.target]
                fired += 1
            continue
        if node.target in ADD + MUL and not node.kwargs and len(node.args) == 2:
            for a, b in (node.args, node.args[::-1]):
                if not (is_fresh(gm, a) and len(a.users) == 1 and a is not b):
                    continue
                if meta_shape(a) is None or meta_shape(a) != meta_shape(node) or meta_dtype(a) != meta_dtype(node):
                    continue
                if not (isinstance(b, fx.Node) or is_number(b)):
                    continue
                node.op = "call_method"
                node.target = "add_" if node.target in ADD else "mul_"
                node.args = (a, b)
                fired += 1
                break
    gm.graph.lint()
    return fired
