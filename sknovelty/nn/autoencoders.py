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
from .blocks import LEAKY_SLOPE, ResidualDown2d, ResidualDown3d, ResidualUp2d, ResidualUp3d
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


#: LSA's video autoencoder (UCSD Ped2 crops of 8 x 32 x 32, ``notes/lsa.md``): five 3-D down
#: blocks with these channels and (T, H, W) strides; the decoder mirrors them
VIDEO_CHANNELS = (8, 12, 18, 27, 40)
VIDEO_STRIDES = ((1, 2, 2), (2, 1, 1), (1, 2, 2), (2, 1, 1), (1, 2, 2))


def _video_grid(clip_shape):
    """``(T', H', W')`` after the down blocks: each strided axis is divided, rounding up."""
    t, h, w = clip_shape[1:]
    for st, sh, sw in VIDEO_STRIDES:
        t, h, w = -(-t // st), -(-h // sh), -(-w // sw)
    return t, h, w


class VideoEncoder(nn.Module):
    """``(n, C, T, H, W) -> z (n, T', latent_dim)``: LSA's video encoder.

    Five residual down blocks whose main-path convolutions are causal in time
    (:class:`~sknovelty.nn.blocks.CausalConv3d`), then one linear map + sigmoid shared by all
    time steps: ``z[:, t]`` is computed from the features of step t alone, so it depends on
    frames up to ``4 t`` (the blocks' temporal strides multiply to 4) and never on later ones.
    """

    def __init__(self, clip_shape, latent_dim):
        super().__init__()
        widths = (clip_shape[0], *VIDEO_CHANNELS)
        self.blocks = nn.Sequential(*(ResidualDown3d(a, b, s) for a, b, s in
                                      zip(widths[:-1], widths[1:], VIDEO_STRIDES)))
        _, h, w = _video_grid(clip_shape)
        self.head = nn.Sequential(nn.Linear(VIDEO_CHANNELS[-1] * h * w, latent_dim), nn.Sigmoid())

    def forward(self, x):
        f = self.blocks(x)                                    # (n, c, T', h, w)
        return self.head(f.transpose(1, 2).flatten(2))        # (n, T', d)


class VideoDecoder(nn.Module):
    """``z (n, T', latent_dim) -> (n, C, T, H, W)``: a time-shared linear map to the encoder's
    last grid (+ BN + LeakyReLU), residual up blocks mirroring the encoder, a 1x1x1 conv
    (linear output); cropped to the clip's size."""

    def __init__(self, clip_shape, latent_dim):
        super().__init__()
        self.c, *self.size = clip_shape
        _, self.h, self.w = _video_grid(clip_shape)
        top = VIDEO_CHANNELS[-1]
        self.expand = nn.Linear(latent_dim, top * self.h * self.w)
        self.norm = nn.Sequential(nn.BatchNorm3d(top), nn.LeakyReLU(LEAKY_SLOPE))
        widths = (*VIDEO_CHANNELS[::-1], max(VIDEO_CHANNELS[0] // 2, 1))
        self.blocks = nn.Sequential(*(ResidualUp3d(a, b, s) for a, b, s in
                                      zip(widths[:-1], widths[1:], VIDEO_STRIDES[::-1])))
        self.out = nn.Conv3d(widths[-1], self.c, 1, bias=False)

    def forward(self, z):
        n, t = z.shape[:2]
        grid = self.expand(z).view(n, t, -1, self.h, self.w).transpose(1, 2)
        x = self.out(self.blocks(self.norm(grid)))
        T, H, W = self.size
        return x[:, :, :T, :H, :W]


def build_autoencoder(sample_shape, latent_dim, hidden_dim, conv_channels):
    """Encoder and decoder for vectors ``(d,)``, images ``(C, H, W)`` or clips
    ``(C, T, H, W)`` (the video architecture is fixed: ``hidden_dim`` and ``conv_channels``
    apply to vectors and images)."""
    if len(sample_shape) == 4:
        return VideoEncoder(sample_shape, latent_dim), VideoDecoder(sample_shape, latent_dim)
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
    """Validate the convolutional widths shared by LSA and the plain autoencoder baseline
    (their ``_parameter_constraints`` bound ``latent_dim`` and ``hidden_dim``)."""
    check_positive_ints("conv_channels", est.conv_channels)
