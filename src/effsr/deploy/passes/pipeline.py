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
from ..ops import onednn_packs
from ..reparam import cast_plain_tensors, reparameterize_model
from .channels import pad_channels
from .convs import merge_separable_depthwise, split_chunked_convs, split_concat_convs
from .fold import fold_constants, fold_scalars_into_convs
from .fusion import fuse_conv_add, fuse_conv_mul, fuse_conv_unary
from .graph import BuildContext, finish, propagate_shapes
from .inplace import inplace_elementwise
from .lower import normalize
from .native import native_esa, native_pixel_shuffle
from .pack import pack_weights
from .statistics import fuse_layer_norms, rewrite_reductions
from .trace import trace_with_leaves

# The environment variable with pass names to leave out (comma-separated), added to ``disable_passes``.
DISABLE_ENV = "EFFSR_DISABLE_PASSES"


@dataclass(frozen=True)
class Pass:
    """One named graph rewrite: ``run(graph, context)`` rewrites in place and returns how often it fired.

    ``stage``: ``"graph"`` (before the shape propagation), ``"shaped"`` (after it) or ``"packed"`` (on the
    channels-last graph in the compute dtype). The name, family (module) and summary (first docstring line) are
    read from the function."""

    run: Callable[[fx.GraphModule, BuildContext], int]
    stage: str

    @property
    def name(self) -> str:
        return self.run.__name__

    @property
    def family(self) -> str:
        return self.run.__module__.rsplit(".", 1)[-1]

    @property
    def summary(self) -> str:
        first = (self.run.__doc__ or "").strip().splitlines()[0]
        return first.replace("``", "").removesuffix(".")


_STAGES = (
    ("graph", (normalize, fold_constants, fuse_layer_norms, fold_constants, merge_separable_depthwise,
               fold_scalars_into_convs, fold_constants, rewrite_reductions)),
    ("shaped", (split_concat_convs, split_chunked_convs, fuse_conv_add, fuse_conv_unary, fuse_conv_mul,
                inplace_elementwise, pad_channels)),
    ("packed", (pack_weights, native_esa, native_pixel_shuffle)),
)
PIPELINE: tuple[Pass, ...] = tuple(Pass(fn, stage) for stage, fns in _STAGES for fn in fns)
PASS_NAMES: tuple[str, ...] = tuple(dict.fromkeys(p.name for p in PIPELINE))
NATIVE_PASSES: tuple[str, ...] = tuple(p.name for p in PIPELINE if p.family == "native")


def _applies(p: Pass, ctx: BuildContext, packed: bool) -> bool:
    """Whether the hardware and dtype allow ``p`` (the packed stage: oneDNN on CPU in a dtype it packs correctly
    here; native kernels: float32)."""
    if p.stage != "packed":
        return True
    if p.name == "pack_weights":  # oneDNN, in a dtype it computes correctly here (ops.onednn_packs)
        return ctx.device.type == "cpu" and onednn_packs(ctx.dtype)
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
