"""Encoders and decoders of the LSA autoencoder (f and g of eq. 2).

Images use residual down/up blocks followed by dense layers (official MNIST model:
Down 32, Down 64, FC 64, FC d + sigmoid; decoder mirrored, linear output). Vectors use the
fully connected form of the same model (the paper's semantic-feature variant, sec. 4.3).
The latent code is sigmoid-bounded to ``[0, 1]^d`` (supplementary sec. 7) so that it can be
quantised into bins.
"""

import math

from torch import nn

from .._checks import check_positive_ints
from .blocks import LEAKY_SLOPE, ResidualDown2d, ResidualUp2d
from .layout import channels_last


def _dense(in_features, out_features):
    return nn.Sequential(
        nn.Linear(in_features, out_features), nn.BatchNorm1d(out_features),
        nn.LeakyReLU(LEAKY_SLOPE),
    )


class MLPEncoder(nn.Module):
    """``(n, d_in) -> (n, latent_dim)``: FC + BN + LeakyReLU, FC + sigmoid."""

    def __init__(self, in_features, hidden_dim, latent_dim):
        super().__init__()
        self.net = nn.Sequential(_dense(in_features, hidden_dim),
                                 nn.Linear(hidden_dim, latent_dim), nn.Sigmoid())

    def forward(self, x):
        return self.net(x)


class MLPDecoder(nn.Module):
    """``(n, latent_dim) -> (n, d_out)``: FC + BN + LeakyReLU, linear FC output."""

    def __init__(self, latent_dim, hidden_dim, out_features):
        super().__init__()
        self.net = nn.Sequential(_dense(latent_dim, hidden_dim), nn.Linear(hidden_dim, out_features))

    def forward(self, z):
        return self.net(z)


def _downsampled(size, n_blocks):
    for _ in range(n_blocks):
        size = math.ceil(size / 2)
    return size


class ConvEncoder(nn.Module):
    """``(n, C, H, W) -> (n, latent_dim)``: residual down blocks, FC + BN + LReLU, FC + sigmoid."""

    def __init__(self, image_shape, conv_channels, hidden_dim, latent_dim):
        super().__init__()
        c, h, w = image_shape
        widths = (c, *conv_channels)
        self.blocks = nn.Sequential(*(ResidualDown2d(a, b) for a, b in zip(widths[:-1], widths[1:])))
        n_flat = conv_channels[-1] * _downsampled(h, len(conv_channels)) * _downsampled(w, len(conv_channels))
        self.head = nn.Sequential(nn.Flatten(), _dense(n_flat, hidden_dim),
                                  nn.Linear(hidden_dim, latent_dim), nn.Sigmoid())

    def forward(self, x):
        # channels-last runs oneDNN's fast convolution kernels (about 2x on CPU)
        return self.head(self.blocks(channels_last(x)))


class ConvDecoder(nn.Module):
    """``(n, latent_dim) -> (n, C, H, W)``: FC layers, residual up blocks, 1x1 conv (linear output).

    Up blocks double the size; the output is cropped to ``(H, W)`` when the input size is not
    a multiple of ``2 ** len(conv_channels)``.
    """

    def __init__(self, image_shape, conv_channels, hidden_dim, latent_dim):
        super().__init__()
        c, self.h, self.w = image_shape
        k = len(conv_channels)
        self.grid = (conv_channels[-1], _downsampled(self.h, k), _downsampled(self.w, k))
        self.head = nn.Sequential(_dense(latent_dim, hidden_dim),
                                  _dense(hidden_dim, math.prod(self.grid)))
        widths = (*conv_channels[::-1], max(conv_channels[0] // 2, 1))
        self.blocks = nn.Sequential(*(ResidualUp2d(a, b) for a, b in zip(widths[:-1], widths[1:])))
        self.out = nn.Conv2d(widths[-1], c, 1, bias=False)

    def forward(self, z):
        x = channels_last(self.head(z).view(z.shape[0], *self.grid))
        return self.out(self.blocks(x))[:, :, : self.h, : self.w]


def build_autoencoder(sample_shape, latent_dim, hidden_dim, conv_channels):
    """Encoder and decoder for vectors ``(d,)`` or images ``(C, H, W)``."""
    if len(sample_shape) == 1:
        return (MLPEncoder(sample_shape[0], hidden_dim, latent_dim),
                MLPDecoder(latent_dim, hidden_dim, sample_shape[0]))
    if len(sample_shape) == 3:
        return (ConvEncoder(sample_shape, conv_channels, hidden_dim, latent_dim),
                ConvDecoder(sample_shape, conv_channels, hidden_dim, latent_dim))
    raise ValueError(f"no autoencoder for samples of shape {tuple(sample_shape)}")


def reconstruction_error(x_rec, x):
    """``||x - x_rec||^2`` per sample: the reconstruction term of eq. 4."""
    return (x - x_rec).square().flatten(1).sum(1)


def check_autoencoder_parameters(est):
    """Validate the autoencoder widths shared by LSA and the plain autoencoder baseline."""
    check_positive_ints("(latent_dim, hidden_dim)", (est.latent_dim, est.hidden_dim))
    check_positive_ints("conv_channels", est.conv_channels)
