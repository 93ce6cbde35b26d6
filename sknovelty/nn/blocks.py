"""Residual down- and up-sampling blocks (LSA, fig. 1ii; official code facts in notes/lsa.md).

Each block computes ``act(BN(f2(act(BN(f1(x))))) + BN(f3(x)))``: a two-convolution main
path and a strided shortcut. Convolutions carry no bias (BatchNorm follows each of them);
the activation is LeakyReLU with slope 0.01.
"""

import torch
from torch import nn
from torch.nn import functional as F

LEAKY_SLOPE = 0.01


class _ResidualStep(nn.Module):
    """``act(bn2(f2(act(bn1(f1(x))))) + bn3(shortcut(x)))`` for given convolutions f1, f2, f3."""

    def __init__(self, f1, f2, f3, out_channels, norm=nn.BatchNorm2d):
        super().__init__()
        self.f1, self.bn1 = f1, norm(out_channels)
        self.f2, self.bn2 = f2, norm(out_channels)
        self.f3, self.bn3 = f3, norm(out_channels)
        self.act = nn.LeakyReLU(LEAKY_SLOPE)

    def forward(self, x):
        main = self.bn2(self.f2(self.act(self.bn1(self.f1(x)))))
        return self.act(main + self.bn3(self.shortcut(x, main)))


# The shortcuts are 1x1 convolutions with stride 2. They run as a stride-1 1x1 convolution
# plus the subsampling (down) or zero insertion (up) that the stride means: the same numbers,
# but oneDNN's stride-2 1x1 kernels in channels-last layout read and write out of bounds on
# CPU (non-deterministic results, heap corruption, a hung process; seen with torch 2.13 on
# AMD EPYC, AVX2 and AVX-512), see benchmarks/upstream_onednn_c1_conv.py.


class ResidualDown2d(_ResidualStep):
    """Halve the spatial size: 3x3 stride-2 conv, 3x3 conv; 1x1 stride-2 shortcut."""

    def __init__(self, in_channels, out_channels):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1, bias=False),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            out_channels,
        )

    def shortcut(self, x, main):
        """The 1x1 stride-2 convolution: every other row and column, then a 1x1 convolution."""
        return self.f3(x[:, :, ::2, ::2])


class ResidualUp2d(_ResidualStep):
    """Double the spatial size: 5x5 stride-2 transposed conv, 3x3 conv; 1x1 transposed shortcut."""

    def __init__(self, in_channels, out_channels):
        super().__init__(
            nn.ConvTranspose2d(in_channels, out_channels, 5, stride=2, padding=2,
                               output_padding=1, bias=False),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.ConvTranspose2d(in_channels, out_channels, 1, bias=False),
            out_channels,
        )

    def shortcut(self, x, main):
        """The 1x1 stride-2 transposed convolution (output padding 1): the 1x1 map of each
        input pixel lands on the even rows and columns of a zero grid of ``main``'s size."""
        spread = torch.zeros_like(main)
        spread[:, :, ::2, ::2] = self.f3(x)
        return spread


# ----------------------------------------------------------------------------- video (3-D)
class CausalConv3d(nn.Module):
    """3x3x3 convolution whose output at time t sees frames t-1 and t only (LSA's video
    encoder, ``notes/lsa.md``: the taps on future frames are zero).

    A kernel of 2 x 3 x 3 on the input padded by one frame in the past (and one pixel on each
    side) is the 3x3x3 kernel with its future taps removed, not merely zeroed: no weight is
    spent on them and no gradient can revive them. With temporal stride s, output t sees
    input frames s t - 1 and s t.
    """

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, (2, 3, 3), stride=stride, bias=False)

    def forward(self, x):
        # F.pad pads the last axes first: (W left, W right, H top, H bottom, T past, T future)
        return self.conv(F.pad(x, (1, 1, 1, 1, 1, 0)))


class ResidualDown3d(_ResidualStep):
    """Divide (T, H, W) by ``stride``: causal 3x3x3 convs and a subsampling 1x1x1 shortcut."""

    def __init__(self, in_channels, out_channels, stride):
        super().__init__(
            CausalConv3d(in_channels, out_channels, stride),
            CausalConv3d(out_channels, out_channels),
            nn.Conv3d(in_channels, out_channels, 1, bias=False),
            out_channels, nn.BatchNorm3d,
        )
        self.stride = tuple(stride)

    def shortcut(self, x, main):
        """The 1x1x1 strided convolution: every ``stride``-th frame, row and column."""
        st, sh, sw = self.stride
        return self.f3(x[:, :, ::st, ::sh, ::sw])


class ResidualUp3d(_ResidualStep):
    """Multiply (T, H, W) by ``stride``: a 5x5x5 transposed conv (``notes/lsa.md``: k5 p2), a
    3x3x3 conv, and a 1x1x1 transposed shortcut (zero insertion)."""

    def __init__(self, in_channels, out_channels, stride):
        stride = tuple(stride)
        super().__init__(
            nn.ConvTranspose3d(in_channels, out_channels, 5, stride=stride, padding=2,
                               output_padding=tuple(s - 1 for s in stride), bias=False),
            nn.Conv3d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.Conv3d(in_channels, out_channels, 1, bias=False),
            out_channels, nn.BatchNorm3d,
        )
        self.stride = stride

    def shortcut(self, x, main):
        """The 1x1x1 transposed convolution with ``stride``: each input voxel's map lands on
        the first voxel of its ``stride`` cell of a zero grid of ``main``'s size."""
        spread = torch.zeros_like(main)
        st, sh, sw = self.stride
        spread[:, :, ::st, ::sh, ::sw] = self.f3(x)
        return spread


def scale_channels(channels, width):
    """Channel counts multiplied by ``width`` (rounded, at least 1): the paper's sizes at 1.0."""
    return tuple(max(1, int(round(c * width))) for c in channels)
