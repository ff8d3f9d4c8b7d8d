"""Node helpers shared by the graph passes: what a node is (a fused conv, an activation, a fresh tensor), its shape
metadata, and the clean-up after rewriting."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch.fx.passes.shape_prop import ShapeProp

from ..ops import FusedConv2d, channel_layer_norm_1e6, gelu_dense_, pixel_shuffle_nchw, window_variance


@dataclass(frozen=True)
class BuildContext:
    """What a pass may read besides the graph: where the graph runs, in which dtype, and the example input."""

    device: torch.device
    dtype: torch.dtype
    example: torch.Tensor
    native_available: bool


ADD = (operator.add, torch.add)
MUL = (operator.mul, torch.mul)


UNARY_FUNCTIONS: dict[Any, str] = {
    F.relu: "relu", torch.relu: "relu", torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", F.silu: "swish",
    F.leaky_relu: "leaky_relu", F.gelu: "gelu", torch._C._nn.gelu: "gelu",
}


def conv_of(gm: fx.GraphModule, node: Any) -> FusedConv2d | None:
    if isinstance(node, fx.Node) and node.op == "call_module":
        mod = gm.get_submodule(node.target)
        if isinstance(mod, FusedConv2d):
            return mod
    return None


def meta_shape(node: Any) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def meta_dtype(node: Any) -> torch.dtype | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return meta.dtype if meta is not None and hasattr(meta, "dtype") else None


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def unary_of(node: fx.Node) -> tuple[str, list[float]] | None:
    """(oneDNN activation name, scalars) if ``node`` is a supported activation of its first argument."""
    if node.op != "call_function" or node.target not in UNARY_FUNCTIONS:
        return None
    name = UNARY_FUNCTIONS[node.target]
    args, kwargs = node.args, dict(node.kwargs)
    if kwargs.pop("inplace", False) or (len(args) > 2 and args[2]):
        return None
    if name == "gelu":
        if kwargs.pop("approximate", "none") != "none" or len(args) > 1:
            return None
        return (name, []) if not kwargs else None
    if name == "leaky_relu":
        slope = args[1] if len(args) > 1 else kwargs.pop("negative_slope", 0.01)
        return (name, [float(slope)]) if is_number(slope) and not kwargs else None
    return (name, []) if len(args) == 1 and not kwargs else None


def new_name(gm: fx.GraphModule, prefix: str) -> str:
    i = 0
    while hasattr(gm, f"{prefix}{i}"):
        i += 1
    return f"{prefix}{i}"


def fetch_attr(gm: fx.GraphModule, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def replace_with_value(gm: fx.GraphModule, node: fx.Node, value: Any) -> None:
    for user in list(node.users):
        user.args = fx.node.map_arg(user.args, lambda n: value if n is node else n)
        user.kwargs = fx.node.map_arg(user.kwargs, lambda n: value if n is node else n)
    gm.graph.erase_node(node)


# In-place ops return their first argument: fresh exactly when that argument is.
INPLACE_METHODS = {"add_", "mul_", "sub_", "div_", "pow_"}
INPLACE_FUNCTIONS = {torch.ops.aten.gelu_, gelu_dense_, torch.relu_, torch.sigmoid_}


# Producers that always return a fresh tensor (never a view of an input): safe to overwrite once dead.
FRESH_FUNCTIONS = {
    operator.add, operator.sub, operator.mul, operator.truediv, torch.add, torch.sub, torch.mul, torch.div,
    torch.cat, F.interpolate, F.gelu, torch._C._nn.gelu, torch.sigmoid, F.silu, F.leaky_relu, torch.relu, F.relu,
    F.max_pool2d, pixel_shuffle_nchw, channel_layer_norm_1e6, F.layer_norm, window_variance,
}


def is_fresh(gm: fx.GraphModule, node: Any) -> bool:
    if not isinstance(node, fx.Node):
        return False
    if conv_of(gm, node) is not None:
        return True
    if node.op == "call_function" and node.target in FRESH_FUNCTIONS:
        return not (node.target in (F.silu, F.leaky_relu) and node.kwargs.get("inplace", False))
    if node.op == "call_function" and node.target in INPLACE_FUNCTIONS:
        return is_fresh(gm, node.args[0])
    if node.op == "call_method" and node.target in INPLACE_METHODS:
        return is_fresh(gm, node.args[0])
    return False


def dead_after(node: fx.Node, user: fx.Node) -> bool:
    """True when ``user`` is the last reader of ``node`` in graph order."""
    order = {n: i for i, n in enumerate(user.graph.nodes)}
    return all(order[u] <= order[user] for u in node.users)


def spatial_index(n: fx.Node) -> bool:
    """``shape[2:]``, ``shape[2]`` or ``shape[3]``: a read of the spatial size only."""
    if n.op != "call_function" or n.target is not operator.getitem:
        return False
    index = n.args[1]
    if isinstance(index, slice):
        return isinstance(index.start, int) and index.start >= 2 and index.step in (None, 1)
    return index in (2, 3, -1, -2)


def propagate_shapes(gm: fx.GraphModule, example: torch.Tensor) -> None:
    gm.recompile()
    with torch.inference_mode():
        ShapeProp(gm).propagate(example.contiguous(memory_format=torch.channels_last))


def finish(gm: fx.GraphModule) -> None:
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
