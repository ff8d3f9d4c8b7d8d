"""The deploy graph: trace the re-parameterized model, run the graph passes in order, pre-pack.

Why these rewrites (measured with ``torch.profiler`` on the seed models at LR 256x256, benchmarks/RESULTS.md): the
challenge models run 40-430 small convolutions, and in an eager forward most of the time goes to (1) fresh 7-60 MB
allocations that glibc serves with ``mmap`` and the kernel zero-fills page by page, (2) the NCHW depth-wise kernel,
an order of magnitude slower than the channels-last one, (3) reflect-padding copies and (4) separate element-wise
passes (bias, GELU, residual adds, LayerNorm written as ten tensor ops). The passes below remove or fuse these.

Passes (each proven by tests/test_engine.py, on small random modules and on every zoo model; none changes what is
computed, only how, so outputs differ from the eager forward by float rounding only):

1. re-parameterization (:func:`effsr.deploy.reparameterize_model`) and constant folding (the RGB mean moved to the
   device, ``w[:, None, None]`` views, anything that does not depend on the input);
2. every ``nn.Conv2d`` becomes a :class:`FusedConv2d` with explicit reflect padding and pre-packed oneDNN weights; a
   reflect-padded depth-wise ``kx1`` conv followed by a reflect-padded depth-wise ``1xk`` conv (MSN's separable
   BSConv) becomes one reflect pad and one ``kxk`` depth-wise conv (the ``1xk`` conv commutes with the row padding);
3. scalar multiplications before a convolution (RLFN's ``x * 255``) and scalar scaling or constant per-channel
   offsets after a convolution and pixel shuffle (the ``/ 255`` and ``+ mean`` of the outputs) fold into its weights;
4. ``conv(cat([a, b, ...]))`` becomes ``conv_a(a) + conv_b(b) + ...`` accumulated in place (no concatenation copy),
   and ``conv(x).chunk(n)`` becomes ``n`` convs (through a depth-wise conv to the 1x1 conv that feeds it);
5. ``conv + tensor`` and then ReLU / LeakyReLU / sigmoid / SiLU / GELU become oneDNN post-ops, written in place
   into the residual buffer when it is dead afterwards;
6. LayerNorm written element-wise over channels (AGDN, MSN) becomes one ``F.layer_norm`` on the channels-last view;
   ``x.sum(3).sum(2)`` becomes ``x.sum((2, 3))``; the unfold-based local variance becomes :func:`window_variance`;
7. element-wise ops whose input is a dead temporary run in place; the pixel shuffle writes NCHW output directly;
8. ``conv(s) * gate`` becomes one conv with oneDNN's binary-mul post-op (the ESA's ``c5(s) * sigmoid(...)``): the
   gate's own 1x1 conv on ``c5(s)`` is composed with ``c5`` so that it reads ``s`` (a product of linear maps);
9. feature maps just under a multiple of 16 channels (RLFN's 46) are widened with zero channels: oneDNN's kernels
   block output channels by 16, and a 48 -> 46 conv ran slower than a 48 -> 48 one;
10. on the packed float32 CPU graph, the ESA's glue (residual add + first 1x1 conv; the low-resolution branch; the
   upsampling, 1x1 convs, sigmoid and gated ``c5``) and the pixel shuffle run in effsr's native kernels
   (:mod:`effsr.deploy.native`) where they are available; otherwise the graph of passes 1-9 runs unchanged.

The global statistics of CCA and AGDN's windowed attention (TLC) are computed as the model computes them, over the
whole input: only their float summation order may differ. Submodules that take Python decisions from the input size
(the TLC) are kept as opaque calls, so one deploy graph serves every input size.
"""

from __future__ import annotations

import torch
import torch.fx as fx
from torch import nn

from .. import native as kernels
from ..ops import FusedConv2d
from ..reparam import cast_plain_tensors, reparameterize_model
from .channels import pad_channels
from .convs import merge_separable_depthwise, split_chunked_convs, split_concat_convs
from .fold import fold_constants, fold_scalars_into_convs
from .fusion import fuse_conv_add, fuse_conv_mul, fuse_conv_unary
from .graph import finish, propagate_shapes
from .inplace import inplace_elementwise
from .lower import normalize
from .native import fuse_esa_native
from .pack import pack_convs
from .statistics import fuse_layer_norms, rewrite_reductions
from .trace import trace_with_leaves


def build_deploy_graph(model: nn.Module, example: torch.Tensor, *, dtype: torch.dtype = torch.float32,
                       fuse_gelu: bool = True, pack: bool = True, native: bool = True) -> fx.GraphModule:
    """The deploy graph of ``model`` (a new module; ``model`` is not modified). See the module docstring.

    ``native``: on the packed float32 CPU graph, run the ESA's glue through effsr's native kernels
    (:mod:`effsr.deploy.native`, pass 10) where they are available.
    """
    device = example.device
    m = reparameterize_model(model).eval().requires_grad_(False).to(device)
    gm = trace_with_leaves(m)
    normalize(gm)
    fold_constants(gm, device, torch.float32)
    fuse_layer_norms(gm)
    fold_constants(gm, device, torch.float32)
    merge_separable_depthwise(gm)
    fold_scalars_into_convs(gm)
    fold_constants(gm, device, torch.float32)
    rewrite_reductions(gm)
    # One shape propagation serves the rest: the rewrites below keep every surviving node's output shape.
    propagate_shapes(gm, example)
    split_concat_convs(gm)
    split_chunked_convs(gm)
    fuse_conv_add(gm)
    fuse_conv_unary(gm, fuse_gelu=fuse_gelu)
    fuse_conv_mul(gm)
    inplace_elementwise(gm)
    pad_channels(gm)
    finish(gm)
    gm = gm.to(device=device, dtype=dtype)
    cast_plain_tensors(gm, device, dtype)
    gm = gm.to(memory_format=torch.channels_last)
    if pack and device.type == "cpu" and torch.backends.mkldnn.is_available() and dtype in (torch.float32,
                                                                                              torch.bfloat16):
        pack_convs(gm, example.to(dtype).contiguous(memory_format=torch.channels_last))
        for mod in gm.modules():  # convs inside opaque (untraceable) modules pack on their first call
            if isinstance(mod, FusedConv2d) and mod.packed is None:
                mod.pack_on_first_call = True
        if native and dtype == torch.float32 and kernels.library() is not None:
            fuse_esa_native(gm)
    return gm
