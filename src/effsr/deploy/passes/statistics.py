"""Statistics: LayerNorm written element-wise over channels becomes one ``F.layer_norm`` on the NHWC view;
``x.sum(3).sum(2)`` becomes one ``x.sum((2, 3))``; the unfold-based local variance becomes two average pools."""

from __future__ import annotations

import torch
import torch.fx as fx
import torch.nn.functional as F

from ..ops import channel_layer_norm_1e6, window_variance
from .graph import BuildContext


def _ln_channels_first(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    mu = x.mean(1, keepdim=True)
    s = (x - mu).pow(2).mean(1, keepdim=True)
    x = (x - mu) / torch.sqrt(s + 1e-6)
    return w * x + b


def _ln_channels_first_fused(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return channel_layer_norm_1e6(x, w, b)


def _ln_last(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    mu = x.mean(-1, keepdim=True)
    var = x.var(-1, keepdim=True, unbiased=False)
    return (x - mu) / torch.sqrt(var + 1e-5) * w + b


def _ln_last_fused(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), w, b, 1e-5)


# (pattern, replacement): LayerNorm spelled element-wise, as MSN (channels-first, eps 1e-6, specs/MSN.md section 3)
# and AGDN (last dim, biased variance, eps 1e-5, specs/AGDN.md section 3.5) write it.
_LAYER_NORM_PATTERNS = ((_ln_channels_first, _ln_channels_first_fused), (_ln_last, _ln_last_fused))


def fuse_layer_norms(gm: fx.GraphModule, ctx: BuildContext) -> int:
    """LayerNorm written element-wise (MSN over channels, AGDN over the last dim) -> one ``F.layer_norm`` call.

    The patterns are the two spellings above; returns how many were replaced."""
    from torch.fx import subgraph_rewriter

    fired = 0
    for pattern, replacement in _LAYER_NORM_PATTERNS:
        fired += len(subgraph_rewriter.replace_pattern(gm, pattern, replacement))
    gm.graph.lint()
    return fired


# Kept as one call when the replacement above is traced (torch.fx.wrap works on module-level names).
torch.fx.wrap("channel_layer_norm_1e6")


def _method_or_function(node: fx.Node, name: str) -> bool:
    if node.op == "call_method":
        return node.target == name
    return node.op == "call_function" and node.target is getattr(torch, name, None)


def rewrite_reductions(gm: fx.GraphModule, ctx: BuildContext) -> int:
    """``x.sum(3).sum(2)`` -> ``x.sum((2, 3))``; the variance of ``unfold``-ed windows -> two average pools.

    ``x.sum(3, keepdim=True).sum(2, keepdim=True)`` becomes one ``x.sum((2, 3), keepdim=True)`` (on channels-last
    tensors the W-then-H order is a strided reduction ~5x slower), and the local variance over ``unfold``-ed windows
    becomes :func:`~effsr.deploy.ops.window_variance`. Both change only the float summation order. Returns how many
    reductions were rewritten."""
    fired = 0
    for node in list(gm.graph.nodes):
        if _method_or_function(node, "sum") and len(node.args) == 2 and node.kwargs == {"keepdim": True}:
            src = node.args[0]
            if (isinstance(src, fx.Node) and _method_or_function(src, "sum") and len(src.args) == 2
                    and src.kwargs == {"keepdim": True} and len(src.users) == 1
                    and {src.args[1], node.args[1]} == {2, 3}):
                node.args = (src.args[0], (2, 3))
                gm.graph.erase_node(src)
                fired += 1
        elif _method_or_function(node, "var"):
            fired += _rewrite_window_variance(gm, node)
    gm.graph.eliminate_dead_code()
    gm.graph.lint()
    return fired


def _rewrite_window_variance(gm: fx.GraphModule, node: fx.Node) -> bool:
    kwargs = dict(node.kwargs)
    args = list(node.args)
    dims = kwargs.pop("dim", args[1] if len(args) > 1 else None)
    unbiased = kwargs.pop("unbiased", args[2] if len(args) > 2 else True)
    if kwargs.pop("keepdim", False) or kwargs or len(args) > 3 or not isinstance(unbiased, bool):
        return False
    if not isinstance(dims, (tuple, list)) or sorted(dims) != [-2, -1]:
        return False
    u2 = args[0]
    if not (isinstance(u2, fx.Node) and u2.op == "call_method" and u2.target == "unfold" and len(u2.users) == 1):
        return False
    u1 = u2.args[0]
    if not (isinstance(u1, fx.Node) and u1.op == "call_method" and u1.target == "unfold" and len(u1.users) == 1):
        return False
    (_, d1, k1, s1), (_, d2, k2, s2) = u1.args, u2.args
    if not (d1 == 2 and d2 == 3 and k1 == k2 and s1 == s2 and all(isinstance(v, int) for v in (k1, s1))):
        return False
    with gm.graph.inserting_before(node):
        new = gm.graph.call_function(window_variance, (u1.args[0], k1, s1, unbiased))
    node.replace_all_uses_with(new)
    gm.graph.erase_node(node)
    gm.graph.erase_node(u2)
    gm.graph.erase_node(u1)
    return True
