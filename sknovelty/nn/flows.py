"""Glow (Kingma and Dhariwal, 2018): a normalizing flow of K steps per level over L levels.

One step is ActNorm -> invertible 1x1 convolution (LU form) -> affine coupling. Each level
but the last starts with a squeeze (2x2 space-to-channel) and ends by splitting off half of
the channels, which are scored under a Gaussian whose mean and scale come from the other half
(the learned prior of Glow). Every layer maps ``x -> (y, logdet)`` with ``logdet`` the
per-sample log |det dy/dx|, and has an exact ``inverse``.

Inputs are ``(n, C, H, W)``; vectors are ``(n, d, 1, 1)`` (levels then do not squeeze).
"""

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ActNorm", "InvertibleConv1x1", "AffineCoupling", "FlowStep", "Glow", "squeeze",
           "unsqueeze"]

LOG_2PI = math.log(2 * math.pi)


def _spatial(x):
    return x.shape[2] * x.shape[3]


class ActNorm(nn.Module):
    """Per-channel affine ``y = (x + b) * exp(s)``, initialised from the first batch so that
    ``y`` has zero mean and unit variance per channel (data-dependent init)."""

    def __init__(self, channels):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.logs = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def _init(self, x):
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        std = x.std(dim=(0, 2, 3), keepdim=True, correction=0) if x.numel() > x.shape[1] else torch.ones_like(mean)
        self.bias.copy_(-mean)
        self.logs.copy_(-torch.log(std.clamp(min=1e-3)))
        self.initialized.fill_(True)

    def forward(self, x):
        if self.training and not self.initialized:
            self._init(x)
        y = (x + self.bias) * torch.exp(self.logs)
        return y, _spatial(x) * self.logs.sum().expand(len(x))

    def inverse(self, y):
        return y * torch.exp(-self.logs) - self.bias


class InvertibleConv1x1(nn.Module):
    """1x1 convolution with ``W = P L (U + diag(sign * exp(log_s)))`` (LU form): log |det W|
    is ``sum(log_s)``, so ``logdet = H * W * sum(log_s)``. Initialised from a random rotation."""

    def __init__(self, channels):
        super().__init__()
        w = torch.linalg.qr(torch.randn(channels, channels))[0]
        p, lower, upper = torch.linalg.lu(w)
        s = torch.diagonal(upper)
        self.register_buffer("p", p)
        self.register_buffer("sign_s", torch.sign(s))
        self.register_buffer("l_mask", torch.tril(torch.ones(channels, channels), -1))
        self.register_buffer("eye", torch.eye(channels))
        self.lower = nn.Parameter(lower)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(torch.log(s.abs()))

    def weight(self):
        lower = self.lower * self.l_mask + self.eye
        upper = self.upper * self.l_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.p @ lower @ upper

    def forward(self, x):
        w = self.weight()
        return F.conv2d(x, w[:, :, None, None]), _spatial(x) * self.log_s.sum().expand(len(x))

    def inverse(self, y):
        w_inv = torch.linalg.inv(self.weight().double()).to(y.dtype)
        return F.conv2d(y, w_inv[:, :, None, None])


class _ZeroConv(nn.Conv2d):
    """A 3x3 convolution initialised to zero, scaled by ``exp(3 * logs)`` (Glow's last layers):
    every coupling starts as the identity."""

    def __init__(self, in_channels, out_channels):
        super().__init__(in_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)
        self.logs = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x):
        return super().forward(x) * torch.exp(3 * self.logs)


class AffineCoupling(nn.Module):
    """``y_a = x_a``, ``y_b = (x_b + t(x_a)) * sigmoid(h(x_a) + 2)``: the scale is bounded in
    (0, 1), which keeps training stable; ``logdet = sum log sigmoid(h + 2)``."""

    def __init__(self, channels, hidden):
        super().__init__()
        self.n_a = channels // 2
        n_b = channels - self.n_a
        self.net = nn.Sequential(
            nn.Conv2d(self.n_a, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1), nn.ReLU(), _ZeroConv(hidden, 2 * n_b))

    def _shift_log_scale(self, x_a):
        h = self.net(x_a)
        # log sigmoid computed directly: finite even where sigmoid underflows to 0
        return h[:, 0::2], F.logsigmoid(h[:, 1::2] + 2.0)

    def forward(self, x):
        x_a, x_b = x[:, : self.n_a], x[:, self.n_a:]
        shift, log_scale = self._shift_log_scale(x_a)
        y_b = (x_b + shift) * log_scale.exp()
        return torch.cat([x_a, y_b], 1), log_scale.flatten(1).sum(1)

    def inverse(self, y):
        y_a, y_b = y[:, : self.n_a], y[:, self.n_a:]
        shift, log_scale = self._shift_log_scale(y_a)
        return torch.cat([y_a, y_b * (-log_scale).exp() - shift], 1)


class FlowStep(nn.Module):
    """ActNorm -> invertible 1x1 conv -> affine coupling."""

    def __init__(self, channels, hidden):
        super().__init__()
        self.layers = nn.ModuleList([ActNorm(channels), InvertibleConv1x1(channels),
                                     AffineCoupling(channels, hidden)])

    def forward(self, x):
        logdet = x.new_zeros(len(x))
        for layer in self.layers:
            x, ld = layer(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, y):
        for layer in reversed(self.layers):
            y = layer.inverse(y)
        return y


def squeeze(x):
    """``(n, C, H, W) -> (n, 4C, H/2, W/2)`` (H and W even)."""
    n, c, h, w = x.shape
    x = x.view(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(n, 4 * c, h // 2, w // 2)


def unsqueeze(x):
    n, c, h, w = x.shape
    x = x.view(n, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(n, c // 4, 2 * h, 2 * w)


def _gaussian_logp(x, mean, logs):
    return (-0.5 * (LOG_2PI + 2 * logs + (x - mean) ** 2 * torch.exp(-2 * logs))).flatten(1).sum(1)


class Glow(nn.Module):
    """Multi-scale Glow over ``(C, H, W)`` inputs: ``log_prob(x)`` per sample (eq. 7 of ITAE:
    the prior's log density plus the sum of the log-determinants).

    ``n_levels`` levels of ``n_steps`` steps. A level squeezes first when the spatial size
    allows it (H and W at least 2); every level but the last splits off half of its channels
    under a learned Gaussian prior conditioned on the other half (unless fewer than 2 would
    remain). The last level's
    output is standard normal. Inputs whose H or W is odd at a squeeze lose their last row or
    column (documented crop; use even sizes to avoid it).
    """

    def __init__(self, shape, n_levels=2, n_steps=4, hidden=64):
        super().__init__()
        c, h, w = shape
        self.levels = nn.ModuleList()
        self.squeezes, self.crops, self.priors = [], [], nn.ModuleDict()
        for level in range(n_levels):
            do_squeeze = h >= 2 and w >= 2
            crop = (h % 2, w % 2) if do_squeeze else (0, 0)
            if do_squeeze:
                h, w, c = h // 2, w // 2, 4 * c
            self.crops.append(crop)
            self.squeezes.append(do_squeeze)
            if c < 2:
                raise ValueError(f"Glow needs at least 2 channels after squeezing, got {c}")
            self.levels.append(nn.ModuleList([FlowStep(c, hidden) for _ in range(n_steps)]))
            # split off half of the channels, unless the next level would keep fewer than 2
            if level < n_levels - 1 and c - c // 2 >= 2:
                self.priors[str(level)] = _ZeroConv(c - c // 2, 2 * (c // 2))
                c = c - c // 2
        self.out_shape = (c, h, w)

    @staticmethod
    def _halves(x):
        keep = x.shape[1] - x.shape[1] // 2
        return x[:, :keep], x[:, keep:]

    def forward(self, x):
        """``x -> (log p(x), z)`` with ``z`` the last level's output."""
        logp = x.new_zeros(len(x))
        for i, steps in enumerate(self.levels):
            ch, cw = self.crops[i]
            if ch or cw:
                x = x[:, :, : x.shape[2] - ch, : x.shape[3] - cw]
            if self.squeezes[i]:
                x = squeeze(x)
            for step in steps:
                x, ld = step(x)
                logp = logp + ld
            if str(i) in self.priors:
                x, out = self._halves(x)
                h = self.priors[str(i)](x)
                logp = logp + _gaussian_logp(out, h[:, 0::2], h[:, 1::2])
        return logp + _gaussian_logp(x, torch.zeros_like(x), torch.zeros_like(x)), x

    def log_prob(self, x):
        return self.forward(x)[0]

    def inverse(self, z, split_offs):
        """Invert: ``z`` of the last level and the split-off halves (``split_offs[level]``)."""
        x = z
        for i in reversed(range(len(self.levels))):
            if str(i) in self.priors:
                x = torch.cat([x, split_offs[i]], 1)
            for step in reversed(self.levels[i]):
                x = step.inverse(x)
            if self.squeezes[i]:
                x = unsqueeze(x)
        return x

    def encode(self, x):
        """``x -> (z, split_offs)``, the inputs :meth:`inverse` needs (even sizes, no crop)."""
        outs = {}
        for i, steps in enumerate(self.levels):
            if self.squeezes[i]:
                x = squeeze(x)
            for step in steps:
                x, _ = step(x)
            if str(i) in self.priors:
                x, outs[i] = self._halves(x)
        return x, outs
