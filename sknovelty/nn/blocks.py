"""Residual down- and up-sampling blocks (LSA, fig. 1ii; official code facts in notes/lsa.md).

Each block computes ``act(BN(f2(act(BN(f1(x))))) + BN(f3(x)))``: a two-convolution main
path and a strided shortcut. Convolutions carry no bias (BatchNorm follows each of them);
the activation is LeakyReLU with slope 0.01.
"""

from torch import nn

LEAKY_SLOPE = 0.01


class _ResidualStep(nn.Module):
    """``act(bn2(f2(act(bn1(f1(x))))) + bn3(f3(x)))`` for given convolutions f1, f2, f3."""

    def __init__(self, f1, f2, f3, out_channels):
        super().__init__()
        self.f1, self.bn1 = f1, nn.BatchNorm2d(out_channels)
        self.f2, self.bn2 = f2, nn.BatchNorm2d(out_channels)
        self.f3, self.bn3 = f3, nn.BatchNorm2d(out_channels)
        self.act = nn.LeakyReLU(LEAKY_SLOPE)

    def forward(self, x):
        main = self.bn2(self.f2(self.act(self.bn1(self.f1(x)))))
        return self.act(main + self.bn3(self.f3(x)))


class ResidualDown2d(_ResidualStep):
    """Halve the spatial size: 3x3 stride-2 conv, 3x3 conv; 1x1 stride-2 shortcut."""

    def __init__(self, in_channels, out_channels):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1, bias=False),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False),
            out_channels,
        )


class ResidualUp2d(_ResidualStep):
    """Double the spatial size: 5x5 stride-2 transposed conv, 3x3 conv; 1x1 transposed shortcut."""

    def __init__(self, in_channels, out_channels):
        super().__init__(
            nn.ConvTranspose2d(in_channels, out_channels, 5, stride=2, padding=2,
                               output_padding=1, bias=False),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.ConvTranspose2d(in_channels, out_channels, 1, stride=2, output_padding=1,
                               bias=False),
            out_channels,
        )


def scale_channels(channels, width):
    """Channel counts multiplied by ``width`` (rounded, at least 1): the paper's sizes at 1.0."""
    return tuple(max(1, int(round(c * width))) for c in channels)
