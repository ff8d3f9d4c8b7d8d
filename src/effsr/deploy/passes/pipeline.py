"""The deploy graph: trace the re-parameterized model, run the named graph passes in order, pre-pack.

:data:`PIPELINE` is the ordered list of passes; each has a name, the module (family) it lives in and a one-line
summary, and returns how often it fired (rewrites made). Any pass can be left out by name, for A/B measurement and
debugging: ``build_deploy_graph(..., disable_passes=("pad_channels",))``, ``effsr.deploy.prepare(...,
disable_passes=...)`` or the environment variable ``EFFSR_DISABLE_PASSES=pad_channels,fuse_conv_mul`` (read at
each build; the benchmark's worker processes inherit it). Every pass is an identity up to float summation order, so
any subset gives the same output within the float32 contract; ``README.md`` beside this file states the invariants
and why these rewrites (measured with ``torch.profiler`` on the seed models, benchmarks/RESULTS.md).

The stages between the passes are not optional: tracing (:func:`~.trace.trace_with_leaves`) before them, one shape
propagation after the passes that need no shapes, and the clean-up / cast to the compute dtype / channels-last
before the packed stage. The report of a build (:class:`PipelineReport`, ``graph.pass_report``) lists every step
with its count and whether it ran, was disabled, or did not apply (the packed stage needs a CPU with oneDNN; the
native kernels float32 and a built kernel library).

The shape follows PyTorch's ``torch/fx/passes/infra/pass_manager.py`` (passes as named callables run in order with
a lint after each) and inductor's ``fx_passes`` (one module per family of rewrites, counters per pass).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection
from dataclasses import dataclass

import torch
import torch.fx as fx
from torch import nn

from .. import native as kernels
from ..checks import FP32_TOLERANCE
from ..reparam import cast_plain_tensors, reparameterize_model
from .channels import pad_channels
from .convs import merge_separable_depthwise, split_chunked_convs, split_concat_convs
from .fold import fold_constants, fold_scalars_into_convs
from .fusion import fuse_conv_add, fuse_conv_mul, fuse_conv_unary
from .graph import finish, propagate_shapes
from .inplace import inplace_elementwise
from .lower import normalize
from .native import fuse_esa_native, native_pixel_shuffle
from .pack import pack_convs
from .statistics import fuse_layer_norms, rewrite_reductions
from .trace import trace_with_leaves

# The environment variable with pass names to leave out (comma-separated), added to ``disable_passes``.
DISABLE_ENV = "EFFSR_DISABLE_PASSES"


@dataclass(frozen=True)
class BuildContext:
    """What a pass may read besides the graph: where the graph runs, in which dtype, and the example input."""

    device: torch.device
    dtype: torch.dtype
    example: torch.Tensor
    native_available: bool


@dataclass(frozen=True)
class Pass:
    """One named graph rewrite: ``run(graph, context)`` rewrites in place and returns how often it fired."""

    name: str
    family: str  # the module of effsr.deploy.passes it lives in
    summary: str
    run: Callable[[fx.GraphModule, BuildContext], int]
    stage: str = "graph"  # "graph" (before shape propagation), "shaped" (after it) or "packed" (the CPU oneDNN graph)


def _always(ctx: BuildContext) -> bool:
    return True


NORMALIZE = Pass("normalize", "lower", "nn.Conv2d -> FusedConv2d, activation modules -> functions, NCHW pixel shuffle",
                 lambda gm, ctx: normalize(gm))
FOLD_CONSTANTS = Pass("fold_constants", "fold", "evaluate what does not depend on the input (RGB mean, views)",
                      lambda gm, ctx: fold_constants(gm, ctx.device, torch.float32))

PIPELINE: tuple[Pass, ...] = (
    NORMALIZE,
    FOLD_CONSTANTS,
    Pass("fuse_layer_norms", "statistics", "element-wise LayerNorm (AGDN, MSN) -> one layer norm on the NHWC view",
         lambda gm, ctx: fuse_layer_norms(gm)),
    FOLD_CONSTANTS,
    Pass("merge_separable_depthwise", "convs", "reflect-padded kx1 then 1xk depth-wise convs (MSN) -> one kxk conv",
         lambda gm, ctx: merge_separable_depthwise(gm)),
    Pass("fold_scalars_into_convs", "fold", "x * 255 before, / 255 and + mean after a conv (+ shuffle) -> its weights",
         lambda gm, ctx: fold_scalars_into_convs(gm)),
    FOLD_CONSTANTS,
    Pass("rewrite_reductions", "statistics", "sum(3).sum(2) -> sum((2, 3)); unfold local variance -> two avg pools",
         lambda gm, ctx: rewrite_reductions(gm)),
    Pass("split_concat_convs", "convs", "conv(cat([a, b])) -> conv_a(a) + conv_b(b), accumulated in place",
         lambda gm, ctx: split_concat_convs(gm), stage="shaped"),
    Pass("split_chunked_convs", "convs", "conv(x).chunk(n) -> n convs (through a depth-wise conv to its 1x1 feeder)",
         lambda gm, ctx: split_chunked_convs(gm), stage="shaped"),
    Pass("fuse_conv_add", "fusion", "conv + tensor -> oneDNN add post-op, in place into a dead residual",
         lambda gm, ctx: fuse_conv_add(gm), stage="shaped"),
    Pass("fuse_conv_unary", "fusion", "act(conv) -> oneDNN post-op (ReLU, LeakyReLU, sigmoid, SiLU, GELU)",
         lambda gm, ctx: fuse_conv_unary(gm), stage="shaped"),
    Pass("fuse_conv_mul", "fusion", "conv(s) * gate -> oneDNN binary-mul post-op (the ESA's gated c5)",
         lambda gm, ctx: fuse_conv_mul(gm), stage="shaped"),
    Pass("inplace_elementwise", "inplace", "element-wise ops on dead temporaries run in place",
         lambda gm, ctx: inplace_elementwise(gm), stage="shaped"),
    Pass("pad_channels", "channels", "maps just under a multiple of 16 channels (RLFN's 46) widened with zeros",
         lambda gm, ctx: pad_channels(gm), stage="shaped"),
    Pass("pack_weights", "pack", "every conv weight pre-packed for oneDNN once",
         lambda gm, ctx: pack_convs(gm, ctx.example.to(ctx.dtype).contiguous(memory_format=torch.channels_last)),
         stage="packed"),
    Pass("native_esa", "native", "the ESA's glue (head, low branch, gated tail) in effsr's native kernels",
         lambda gm, ctx: fuse_esa_native(gm), stage="packed"),
    Pass("native_pixel_shuffle", "native", "the NCHW pixel shuffle as one native copy",
         lambda gm, ctx: native_pixel_shuffle(gm), stage="packed"),
)
PASS_NAMES: tuple[str, ...] = tuple(dict.fromkeys(p.name for p in PIPELINE))
NATIVE_PASSES: tuple[str, ...] = tuple(p.name for p in PIPELINE if p.family == "native")


def _applies(p: Pass, ctx: BuildContext, packed: bool) -> bool:
    """Whether the hardware and dtype allow ``p`` (the packed stage: oneDNN on CPU; native kernels: float32)."""
    if p.stage != "packed":
        return True
    if p.name == "pack_weights":
        return (ctx.device.type == "cpu" and torch.backends.mkldnn.is_available()
                and ctx.dtype in (torch.float32, torch.bfloat16))
    return packed and p.family == "native" and ctx.dtype == torch.float32 and ctx.native_available


@dataclass(frozen=True)
class PassRecord:
    """One step of a build: the pass, how often it fired, and ``status`` ``"ran"``, ``"disabled"`` or
    ``"not applicable"`` (``fired`` is 0 unless it ran)."""

    name: str
    family: str
    summary: str
    fired: int
    status: str


@dataclass(frozen=True)
class PipelineReport:
    """What :func:`build_deploy_graph` did, step by step, and the verification it got (set by the engine)."""

    records: tuple[PassRecord, ...]
    disabled: tuple[str, ...] = ()

    def fired(self, name: str) -> int:
        """How often pass ``name`` fired over all its steps."""
        if name not in PASS_NAMES:
            raise KeyError(f"unknown pass {name!r}")
        return sum(r.fired for r in self.records if r.name == name)

    def counts(self) -> dict[str, int]:
        """Fire counts by pass name, in pipeline order (a pass that runs more than once is summed)."""
        return {name: self.fired(name) for name in PASS_NAMES}

    def lines(self) -> list[str]:
        """The steps as an aligned text table: step number, pass, family, times fired, status, summary."""
        rows = [("#", "pass", "family", "fired", "status", "what it rewrites")]
        rows += [(str(i), r.name, r.family, str(r.fired), r.status, r.summary)
                 for i, r in enumerate(self.records, start=1)]
        widths = [max(len(row[k]) for row in rows) for k in range(5)]
        return ["  ".join([row[0].rjust(widths[0]), row[1].ljust(widths[1]), row[2].ljust(widths[2]),
                           row[3].rjust(widths[3]), row[4].ljust(widths[4]), row[5]]).rstrip() for row in rows]


def resolve_disabled(disable_passes: Collection[str] = ()) -> tuple[str, ...]:
    """``disable_passes`` plus the names in ``$EFFSR_DISABLE_PASSES``, checked against :data:`PASS_NAMES`."""
    names = list(disable_passes)
    names += [n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()]
    unknown = sorted(set(names) - set(PASS_NAMES))
    if unknown:
        raise ValueError(f"unknown pass name(s) {', '.join(unknown)} (in disable_passes or ${DISABLE_ENV}); "
                         f"the passes are: {', '.join(PASS_NAMES)}")
    return tuple(n for n in PASS_NAMES if n in names)


def build_deploy_graph(model: nn.Module, example: torch.Tensor, *, dtype: torch.dtype = torch.float32,
                       disable_passes: Collection[str] = (), check_each_pass: bool = False) -> fx.GraphModule:
    """The deploy graph of ``model`` (a new module; ``model`` is not modified), with its :class:`PipelineReport`
    as ``graph.pass_report``.

    ``disable_passes``: names from :data:`PASS_NAMES` to leave out (with those of ``$EFFSR_DISABLE_PASSES``).
    ``check_each_pass`` (debugging): run ``example`` through the graph after every pass that fired and raise,
    naming the pass, when it moved the output by more than the float32 contract; slow on large models.
    """
    disabled = resolve_disabled(disable_passes)
    if check_each_pass and dtype != torch.float32:
        raise ValueError("check_each_pass compares with the float32 contract: build in float32")
    device = example.device
    ctx = BuildContext(device, dtype, example, kernels.library() is not None)
    m = reparameterize_model(model).eval().requires_grad_(False).to(device)
    reference = None
    if check_each_pass:
        with torch.inference_mode():
            reference = m(example).float()
    gm = trace_with_leaves(m)
    records: list[PassRecord] = []
    packed = False
    stage = "graph"
    for p in PIPELINE:
        if p.stage != stage:
            stage = _enter_stage(gm, p.stage, stage, ctx)
        if p.name in disabled:
            status, fired = "disabled", 0
        elif not _applies(p, ctx, packed):
            status, fired = "not applicable", 0
        else:
            status, fired = "ran", int(p.run(gm, ctx))
            packed = packed or p.name == "pack_weights"
            if reference is not None and fired:
                _check(gm, p, example, reference)
        records.append(PassRecord(p.name, p.family, p.summary, fired, status))
    if stage != "packed":
        _enter_stage(gm, "packed", stage, ctx)
    gm.pass_report = PipelineReport(tuple(records), disabled)
    return gm


def _enter_stage(gm: fx.GraphModule, new: str, old: str, ctx: BuildContext) -> str:
    """The fixed steps between the stages: shape propagation before "shaped"; clean-up, the compute dtype and
    channels-last before "packed"."""
    if old == "graph":
        # One shape propagation serves the rest: the rewrites after it keep every surviving node's output shape.
        propagate_shapes(gm, ctx.example)
    if new == "packed":
        finish(gm)
        gm.to(device=ctx.device, dtype=ctx.dtype)
        cast_plain_tensors(gm, ctx.device, ctx.dtype)
        gm.to(memory_format=torch.channels_last)
    return new


def _check(gm: fx.GraphModule, p: Pass, example: torch.Tensor, reference: torch.Tensor) -> None:
    gm.recompile()
    with torch.inference_mode():
        got = gm(example.contiguous(memory_format=torch.channels_last))
    err = float((got.float() - reference).abs().max())
    if not err <= FP32_TOLERANCE:
        raise AssertionError(f"pass {p.name} ({p.family}) moved the output by {err:.2e} (> {FP32_TOLERANCE:.0e})")
