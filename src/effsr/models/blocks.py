"""Building blocks shared by two or more architectures.

Each block is described in ``shared/specs/README.md`` section 3; the pitfalls it cites (padding modes,
reduction order) are the ones that break bit-exactness with the official code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# DIV2K RGB mean used by the BasicSR-family models (specs/README.md section 3, "Mean shift").
# Kept as a plain tensor, never a registered buffer, so official state_dicts load strictly (pitfall 5).
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


def rgb_mean_tensor(mean: tuple[float, float, float] = DIV2K_RGB_MEAN) -> torch.Tensor:
    """The 1x3x1x1 float32 mean tensor, built the way the official code builds it."""
    return torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)


class BSConvU(nn.Module):
    """Blueprint-separable convolution (unconstrained): 1x1 point-wise (no bias), then depth-wise kxk.

    The depth-wise half is reflect-padded (specs/README.md pitfall 7). Keys: ``pw.weight``,
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


# --- shared blocks added by the MDRN/MSN implementation (ECCA, CCA) go below this line ---


# --- shared blocks added by the LSANet/IFADNet implementation (RepBlock) go below this line ---
