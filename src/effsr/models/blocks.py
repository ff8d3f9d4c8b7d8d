"""Building blocks shared by two or more architectures.

Each block is described in ``shared/specs/README.md`` section 3; the quirks it cites from section 5 of that file
(padding modes, reduction order) are the ones that break bit-exactness with the official code.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

# DIV2K RGB mean used by the BasicSR-family models (specs/README.md section 3, "Mean shift").
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


def rgb_mean_tensor(mean: tuple[float, float, float] = DIV2K_RGB_MEAN) -> torch.Tensor:
    """The 1x3x1x1 float32 mean tensor, built the way the official code builds it."""
    return torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)


def register_mean(module: nn.Module, name: str = "mean", mean: tuple[float, float, float] = DIV2K_RGB_MEAN) -> None:
    """Give ``module`` the RGB mean as a *non-persistent* buffer ``name``.

    It moves and casts with the module (``.to(device)``, ``.half()``), so ``forward`` uses it as it is, and it is
    no state_dict entry: a persistent buffer would make strict loading of the official weights fail
    (../shared/specs/README.md section 5: the official code keeps the mean as a plain tensor attribute).
    """
    module.register_buffer(name, rgb_mean_tensor(mean), persistent=False)


class BSConvU(nn.Module):
    """Blueprint-separable convolution (unconstrained): 1x1 point-wise (no bias), then depth-wise kxk.

    The depth-wise half is reflect-padded (specs/README.md section 5). Keys: ``pw.weight``,
    ``dw.weight``, ``dw.bias``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        padding: int | None = None,
        padding_mode: str = "reflect",
    ) -> None:
        super().__init__()
        if padding is None:
            padding = (kernel_size - 1) // 2
        self.pw = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.dw = nn.Conv2d(
            out_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            groups=out_channels,
            bias=True,
            padding_mode=padding_mode,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dw(self.pw(x))


class ESA(nn.Module):
    """RLFN-style enhanced spatial attention (RLFN, LSANet, IFADNet).

    conv1 1x1 -> conv2 3x3 stride 2 no padding -> max-pool k7 s3 p0 -> conv3 3x3 -> bilinear to HxW
    (size given, align_corners=False) -> + conv_f(conv1 out) -> conv4 1x1 -> sigmoid -> gate the input.
    """

    def __init__(self, esa_channels: int, num_features: int) -> None:
        super().__init__()
        f = esa_channels
        self.conv1 = nn.Conv2d(num_features, f, 1)
        self.conv_f = nn.Conv2d(f, f, 1)
        self.conv2 = nn.Conv2d(f, f, 3, stride=2, padding=0)
        self.conv3 = nn.Conv2d(f, f, 3, padding=1)
        self.conv4 = nn.Conv2d(f, num_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1_ = self.conv1(x)
        c1 = self.conv2(c1_)
        v_max = F.max_pool2d(c1, kernel_size=7, stride=3)
        c3 = F.interpolate(self.conv3(v_max), size=x.shape[2:], mode="bilinear", align_corners=False)
        m = torch.sigmoid(self.conv4(c3 + self.conv_f(c1_)))
        return x * m


class PixelShuffleUpsampler(nn.Sequential):
    """3x3 conv to out_channels * scale^2, then PixelShuffle: keys ``0.weight``/``0.bias``."""

    def __init__(self, num_features: int, out_channels: int, scale: int) -> None:
        super().__init__(
            nn.Conv2d(num_features, out_channels * scale * scale, 3, padding=1),
            nn.PixelShuffle(scale),
        )


class UpsampleOneStep(nn.Module):
    """The BasicSR-family upsampler wrapper whose keys read ``upsampleOneStep.0.*``."""

    def __init__(self, num_features: int, out_channels: int, scale: int) -> None:
        super().__init__()
        self.upsampleOneStep = PixelShuffleUpsampler(num_features, out_channels, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsampleOneStep(x)


def _spatial_mean(x: torch.Tensor) -> torch.Tensor:
    """Per-channel mean over HxW as "sum over W, then over H, then divide by H*W".

    specs/README.md section 5: this order (not a single ``mean((2, 3))``) is what makes MDRN/MSN bit-exact;
    a plain mean moves the output by up to 1.4e-5 (MDRN-S) / 7e-5 (MSN).
    """
    return x.sum(3, keepdim=True).sum(2, keepdim=True) / (x.shape[2] * x.shape[3])


def _spatial_std(x: torch.Tensor) -> torch.Tensor:
    """Per-channel *population* standard deviation over HxW, same reduction order as the mean (specs/README.md
    section 5)."""
    mu = _spatial_mean(x)
    var = (x - mu).pow(2).sum(3, keepdim=True).sum(2, keepdim=True) / (x.shape[2] * x.shape[3])
    return var.pow(0.5)


class CCA(nn.Module):
    """Contrast channel attention (specs/README.md section 3, specs/MDRN.md section 3).

    s = sigma + mu per channel (sigma population std, mu from adaptive average pooling as in the official code),
    then 1x1 C -> C // reduction, ReLU, 1x1 back, sigmoid, and the input is multiplied by that gate.
    Keys: ``conv_du.0.*``, ``conv_du.2.*``.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The additive mean term comes from adaptive average pooling, the std from the W-then-H sums
        # (specs/README.md section 5).
        s = _spatial_std(x) + F.adaptive_avg_pool2d(x, 1)
        return x * self.conv_du(s)


class ECCA(nn.Module):
    """Enhanced CCA of MDRN/MSN: 1x1 conv, GELU, CCA, depth-wise 3x3 conv, + input (specs/MDRN.md section 3).

    Both convs are declared with ``padding='same'`` (zero padding: 0 for the 1x1, 1 for the 3x3) as in the official
    code; fvcore skips such convs, and effsr's profiler reproduces that artefact (specs/README.md section 1), so the
    declaration must stay 'same'. Keys: ``body.0.*``, ``body.2.conv_du.{0,2}.*``, ``body.3.*``.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 1, padding="same"),
            nn.GELU(),
            CCA(channels, reduction),
            nn.Conv2d(channels, channels, 3, padding="same", groups=channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


def local_variance(x: torch.Tensor, kernel_size: int = 7, stride: int = 3, padding: int = 1) -> torch.Tensor:
    """Strided local variance map of the MDRN/MSN multi-branch ESA (specs/README.md section 3, "LocalVar").

    Reflect-pad by ``padding``, take ``kernel_size`` windows every ``stride`` pixels, and return the *unbiased*
    per-channel variance of each window (divides by k*k - 1; specs/README.md section 5).
    """
    padded = F.pad(x, (padding, padding, padding, padding), mode="reflect")
    if torch.onnx.is_in_onnx_export():
        # The TorchScript ONNX exporter cannot export ``unfold`` on a tensor of traced size. Gather the same windows
        # by strided slicing, in the same row-major order; the result is bit-identical (tests/models/test_mdrn_msn.py).
        k, s = kernel_size, stride
        oh = (padded.shape[2] - k) // s + 1
        ow = (padded.shape[3] - k) // s + 1
        rows, cols = s * (oh - 1) + 1, s * (ow - 1) + 1
        taps = [padded[..., i : i + rows : s, j : j + cols : s] for i in range(k) for j in range(k)]
        return torch.var(torch.stack(taps, dim=-1), dim=-1, unbiased=True)
    windows = padded.unfold(2, kernel_size, stride).unfold(3, kernel_size, stride)
    return torch.var(windows, dim=(-1, -2), unbiased=True)


# MDRN and MSN (specs/MDRN.md section 2, specs/MSN.md section 2): the ESA works on num_features // 4 channels, the
# CCA MLP on num_features // 16.
ESA_RATIO = 4
CCA_REDUCTION = 16

ConvFactory = Callable[..., nn.Module]  # (in_channels, out_channels, kernel_size, *, stride=1) -> a conv block


class NestedResidual(nn.Module):
    """``body.0(x) + x``: the attention of AGDN, MDRN and MSN nested as ``esa.body.0`` in the official keys
    (../shared/specs/README.md section 5), plus the raw input."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.body = nn.Sequential(inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


class MultiLevelESA(nn.Module):
    """The multi-level ESA of MDRN ("MDSA", specs/MDRN.md section 3) and MSN (specs/MSN.md section 3).

    Four stride-2 ``conv`` branches from ``conv1``: three max-pools (k3 s3 p1, k5 s3 p0, k7 s3 p1) and a 7x7
    stride-3 unbiased local variance added to the k7 branch (../shared/specs/README.md section 5), each through
    ``conv -> GELU -> conv``, bilinear back to the input size, summed left to right with ``conv_f(conv1(x))``, then
    ``conv4`` and a sigmoid. MDRN's ``conv`` is :class:`BSConvU` (1/2 resolution); MSN's is its separable BSConvU
    with the stride in both halves (1/4 resolution), and MSN first normalises the input with ``norm`` (key ``ln``)
    and gates the *normalised* tensor. Returns only the gated tensor; :class:`NestedResidual` adds the input.
    """

    def __init__(self, num_features: int, esa_channels: int, *, conv: ConvFactory = BSConvU,
                 norm: Callable[[int], nn.Module] | None = None) -> None:
        super().__init__()
        f = esa_channels
        self.ln = norm(num_features) if norm is not None else None
        self.conv1 = nn.Conv2d(num_features, f, 1)
        self.conv_f = nn.Conv2d(f, f, 1)
        # Branch order matches the official key numbering: 0 -> k3 pool, 1 -> k5 pool, 2 -> k7 pool, 3 -> variance.
        self.conv2_0 = conv(f, f, 3, stride=2)
        self.conv2_1 = conv(f, f, 3, stride=2)
        self.conv2_2 = conv(f, f, 3, stride=2)
        self.conv2_3 = conv(f, f, 3, stride=2)
        self.conv_max_0 = conv(f, f, 3)
        self.conv_max_1 = conv(f, f, 3)
        self.conv_max_2 = conv(f, f, 3)
        self.conv3_0 = conv(f, f, 3)
        self.conv3_1 = conv(f, f, 3)
        self.conv3_2 = conv(f, f, 3)
        self.conv4 = nn.Conv2d(f, num_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        xn = x if self.ln is None else self.ln(x)
        c1_ = self.conv1(xn)
        p0 = F.max_pool2d(self.conv2_0(c1_), kernel_size=3, stride=3, padding=1)
        p1 = F.max_pool2d(self.conv2_1(c1_), kernel_size=5, stride=3, padding=0)
        p2 = F.max_pool2d(self.conv2_2(c1_), kernel_size=7, stride=3, padding=1)
        v3 = local_variance(self.conv2_3(c1_), kernel_size=7, stride=3, padding=1)
        a0 = self.conv3_0(F.gelu(self.conv_max_0(p0)))
        a1 = self.conv3_1(F.gelu(self.conv_max_1(p1)))
        a2 = self.conv3_2(F.gelu(self.conv_max_2(p2 + v3)))
        # Bilinear with the size given; summed left to right, then + conv_f (float order matters).
        u0 = F.interpolate(a0, size=size, mode="bilinear", align_corners=False)
        u1 = F.interpolate(a1, size=size, mode="bilinear", align_corners=False)
        u2 = F.interpolate(a2, size=size, mode="bilinear", align_corners=False)
        m = torch.sigmoid(self.conv4(((u0 + u1) + u2) + self.conv_f(c1_)))
        return xn * m


def distill(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The feature distillation of an RFDN-style block (AGDN's AGDB, MDRN's and MSN's EADB): three steps of a 1x1
    ``c*_d`` to half the channels with GELU and a residual ``c*_r`` with GELU, then ``c4`` and GELU, the four
    halves concatenated and fused by the 1x1 ``c5`` (specs/MDRN.md section 3, specs/AGDN.md section 3.2)."""
    d1 = F.gelu(block.c1_d(x))
    r1 = F.gelu(block.c1_r(x) + x)  # residual before the activation
    d2 = F.gelu(block.c2_d(r1))
    r2 = F.gelu(block.c2_r(r1) + r1)
    d3 = F.gelu(block.c3_d(r2))
    r3 = F.gelu(block.c3_r(r2) + r2)
    r4 = F.gelu(block.c4(r3))
    return block.c5(torch.cat([d1, d2, d3, r4], dim=1))


class EADB(nn.Module):
    """Enhanced attention distillation block of MDRN (specs/MDRN.md section 3) and MSN (its "MDAB", the same wiring
    with separable BSConvUs, specs/MSN.md section 3).

    :func:`distill` with ``conv`` for ``c*_r`` and ``c4``, then the :class:`MultiLevelESA` (with ``norm`` for MSN)
    nested as ``esa.body.0``, the :class:`ECCA` and the block input added.
    """

    def __init__(self, num_features: int, *, conv: ConvFactory = BSConvU,
                 norm: Callable[[int], nn.Module] | None = None) -> None:
        super().__init__()
        c, d = num_features, num_features // 2
        self.c1_d = nn.Conv2d(c, d, 1)
        self.c1_r = conv(c, c, 3)
        self.c2_d = nn.Conv2d(c, d, 1)
        self.c2_r = conv(c, c, 3)
        self.c3_d = nn.Conv2d(c, d, 1)
        self.c3_r = conv(c, c, 3)
        self.c4 = conv(c, d, 3)
        self.c5 = nn.Conv2d(4 * d, c, 1)
        self.esa = NestedResidual(MultiLevelESA(c, c // ESA_RATIO, conv=conv, norm=norm))
        self.cca = ECCA(c, CCA_REDUCTION)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cca(self.esa(distill(self, x))) + x


# Fixed 3x3 masks of the RepBlock edge branches (specs/LSANet.md section 4), applied as cross-correlation and
# identical for every channel. Each sums to 0, so the merged bias receives only the learnable ``bias``.
EDGE_MASKS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "sobel_x": ((1.0, 0.0, -1.0), (2.0, 0.0, -2.0), (1.0, 0.0, -1.0)),
    "sobel_y": ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0)),
    "laplacian": ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0)),
}


class EdgeConv3x3(nn.Module):
    """One edge branch of :class:`RepBlock`: a 1x1 conv, then a fixed edge mask scaled per channel.

    Keys (specs/LSANet.md section 4): ``k0`` [Cout, Cin, 1, 1] and ``b0`` [Cout] (the 1x1 conv), ``scale``
    [Cout, 1, 1, 1] and ``bias`` [Cout] (learnable), ``mask`` [Cout, 1, 3, 3] (fixed, stored as a
    non-trainable Parameter so it appears in ``parameters()`` and the state_dict; specs/README.md section 5).
    """

    def __init__(self, kind: str, in_channels: int, out_channels: int) -> None:
        super().__init__()
        if kind not in EDGE_MASKS:
            raise ValueError(f"unknown edge mask '{kind}' (known: {', '.join(EDGE_MASKS)})")
        self.kind = kind
        conv0 = nn.Conv2d(in_channels, out_channels, 1)  # PyTorch's default init for the 1x1 weight and bias
        self.k0 = nn.Parameter(conv0.weight.detach().clone())
        self.b0 = nn.Parameter(conv0.bias.detach().clone())
        # Small random start (as in the official training code) so the branch begins close to a no-op.
        self.scale = nn.Parameter(torch.randn(out_channels, 1, 1, 1) * 1e-3)
        self.bias = nn.Parameter(torch.randn(out_channels) * 1e-3)
        mask = torch.tensor(EDGE_MASKS[kind], dtype=torch.float32).expand(out_channels, 1, 3, 3).clone()
        self.mask = nn.Parameter(mask, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y0 = F.pad(F.conv2d(x, self.k0, self.b0), (1, 1, 1, 1))
        # The border holds b0 (the 1x1 conv's answer to a zero-padded input), not 0: this is what makes the
        # merged, zero-padded 3x3 conv exact at image borders (specs/README.md section 5).
        b0 = self.b0.view(1, -1, 1, 1)
        y0[:, :, 0:1, :] = b0
        y0[:, :, -1:, :] = b0
        y0[:, :, :, 0:1] = b0
        y0[:, :, :, -1:] = b0
        return F.conv2d(y0, self.scale * self.mask, self.bias, groups=self.mask.shape[0])

    def equivalent_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The 3x3 kernel [Cout, Cin, 3, 3] and bias [Cout] of one zero-padded conv that equals this branch."""
        k = self.scale * self.mask  # [Cout, 1, 3, 3]
        return k * self.k0, self.bias + self.b0 * k.sum(dim=(1, 2, 3))


class RepBlock(nn.Module):
    """Re-parameterizable 3x3 conv of LSANet / IFADNet (specs/LSANet.md section 4).

    ``separable=True``: a :class:`BSConvU` (reflect-padded depth-wise half) in both forms, keys
    ``rbr_reparam.pw/.dw``. Otherwise the training form (``deploy=False``) is the plain sum of six branches:
    3x3 conv (``rbr_3x3_branch``), 1x1 expand to 2*Cin then 3x3 without biases
    (``rbr_1x1_3x3_branch_1x1`` / ``_3x3``), identity, and Sobel-x / Sobel-y / Laplacian edge branches
    (``rbr_conv1x1_{sbx,sby,lpl}_branch``); the deploy form is one zero-padded 3x3 conv ``rbr_reparam``.
    :meth:`reparameterize` turns the training form into the deploy form in place.
    """

    # Training-form submodules, in state_dict order; the last three are the edge branches.
    _BRANCHES = (
        "rbr_3x3_branch",
        "rbr_1x1_3x3_branch_1x1",
        "rbr_1x1_3x3_branch_3x3",
        "rbr_conv1x1_sbx_branch",
        "rbr_conv1x1_sby_branch",
        "rbr_conv1x1_lpl_branch",
    )

    def __init__(self, in_channels: int, out_channels: int, *, separable: bool = False, deploy: bool = False) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.separable = separable
        self.deploy = deploy
        if separable:
            self.rbr_reparam: nn.Module = BSConvU(in_channels, out_channels, 3)
        elif deploy:
            self.rbr_reparam = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        else:
            if in_channels != out_channels:
                raise ValueError("the identity branch of a multi-branch RepBlock needs in_channels == out_channels")
            self.rbr_3x3_branch = nn.Conv2d(in_channels, out_channels, 3, padding=1)
            self.rbr_1x1_3x3_branch_1x1 = nn.Conv2d(in_channels, 2 * in_channels, 1, bias=False)
            self.rbr_1x1_3x3_branch_3x3 = nn.Conv2d(2 * in_channels, out_channels, 3, padding=1, bias=False)
            self.rbr_conv1x1_sbx_branch = EdgeConv3x3("sobel_x", in_channels, out_channels)
            self.rbr_conv1x1_sby_branch = EdgeConv3x3("sobel_y", in_channels, out_channels)
            self.rbr_conv1x1_lpl_branch = EdgeConv3x3("laplacian", in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deploy or self.separable:
            return self.rbr_reparam(x)
        return (
            self.rbr_3x3_branch(x)
            + self.rbr_1x1_3x3_branch_3x3(self.rbr_1x1_3x3_branch_1x1(x))
            + x
            + self.rbr_conv1x1_sbx_branch(x)
            + self.rbr_conv1x1_sby_branch(x)
            + self.rbr_conv1x1_lpl_branch(x)
        )

    @torch.no_grad()
    def equivalent_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Merged 3x3 kernel and bias of the training form, accumulated in float64 (specs/LSANet.md section 4)."""
        if self.deploy or self.separable:
            raise RuntimeError("equivalent_kernel_bias() needs the multi-branch training form")
        f64 = torch.float64
        kernel = self.rbr_3x3_branch.weight.to(f64).clone()
        bias = self.rbr_3x3_branch.bias.to(f64).clone()
        # 1x1 -> 3x3 (no biases): K[o, i] += sum_m W3[o, m] * W1[m, i], per 3x3 tap.
        w1 = self.rbr_1x1_3x3_branch_1x1.weight.to(f64)[:, :, 0, 0]
        kernel += torch.einsum("omhw,mi->oihw", self.rbr_1x1_3x3_branch_3x3.weight.to(f64), w1)
        # Identity: a 1 at the centre tap of each channel's own kernel.
        idx = torch.arange(self.out_channels, device=kernel.device)
        kernel[idx, idx, 1, 1] += 1.0
        for name in self._BRANCHES[3:]:
            branch: EdgeConv3x3 = getattr(self, name)
            k, b = branch.equivalent_kernel_bias()
            kernel += k.to(f64)
            bias += b.to(f64)
        return kernel, bias

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Replace the branches by one 3x3 conv ``rbr_reparam`` (in place; a no-op in deploy form)."""
        if self.deploy or self.separable:
            self.deploy = True
            return
        ref = self.rbr_3x3_branch.weight
        kernel, bias = self.equivalent_kernel_bias()
        conv = nn.utils.skip_init(
            nn.Conv2d, self.in_channels, self.out_channels, 3, padding=1, device=ref.device, dtype=ref.dtype
        )
        conv.weight.copy_(kernel.to(ref.dtype))
        conv.bias.copy_(bias.to(ref.dtype))
        conv.requires_grad_(ref.requires_grad)
        for name in self._BRANCHES:
            delattr(self, name)
        self.rbr_reparam = conv
        self.deploy = True


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor, computed on the NCHW tensor (MSN, SAFMN-L).

    mu = mean_c(x), s = mean_c((x - mu)^2) (biased), x_hat = w * (x - mu) / sqrt(s + eps) + b, in this order as in
    the official code (specs/MSN.md section 3, specs/SAFMN-L.md section 3: eps 1e-6 in both). Keys: ``weight``,
    ``bias``. AGDN's LayerNorm is a different one (channels-last, eps 1e-5: ``agdn.py``).
    """

    def __init__(self, channels: int, *, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(1, keepdim=True)
        s = (x - mu).pow(2).mean(1, keepdim=True)
        x = (x - mu) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]
