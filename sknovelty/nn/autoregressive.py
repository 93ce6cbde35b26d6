"""Masked autoregressive layers for a latent vector (LSA, sec. 3.1, eq. 6).

The estimator ``h`` maps a code ``z`` in ``[0, 1]^d`` to ``d`` categorical distributions,
the ``i``-th depending on ``z_<i`` only (eq. 3). Each Masked Fully Connection (MFC) is a
single matrix product with a fixed connectivity mask over the flattened
``(feature, channel)`` layout: no loop over latent dimensions.
"""

import torch
from torch import nn
from torch.nn import functional as F

from .blocks import LEAKY_SLOPE


def mfc_mask(n_features, in_channels, out_channels, mask_type):
    """Connectivity of eq. 6 as a boolean ``(d*co, d*ci)`` matrix.

    Output feature ``i`` sees input feature ``j`` when ``j < i`` (type ``"A"``) or
    ``j <= i`` (type ``"B"``). Flat index = ``feature * channels + channel``.
    """
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    i = torch.arange(n_features).repeat_interleave(out_channels)[:, None]
    j = torch.arange(n_features).repeat_interleave(in_channels)[None, :]
    return j < i if mask_type == "A" else j <= i


def _zero_masked_weights(module, incompatible_keys=None):
    with torch.no_grad():
        module.masked_layer.weight.mul_(module.mask)


class MaskedFullyConnected(nn.Module):
    """MFC layer: ``(n, d, ci) -> (n, d, co)`` with the autoregressive mask of eq. 6.

    Whenever autograd records, the weight is multiplied by the mask in the forward pass
    (``W * M``), so masked entries get exactly zero gradient and no optimiser can move them.
    They are zeroed at initialisation and after ``load_state_dict``, hence stay zero for good,
    and inference (no autograd) uses ``W`` directly: the same numbers without a 26-million
    element multiplication per batch at the paper's size.
    """

    def __init__(self, n_features, in_channels, out_channels, mask_type):
        super().__init__()
        self.n_features, self.out_channels = n_features, out_channels
        self.linear = nn.Linear(n_features * in_channels, n_features * out_channels)
        # a float mask multiplies faster than a boolean one (no dtype promotion per step)
        mask = mfc_mask(n_features, in_channels, out_channels, mask_type)
        self.register_buffer("mask", mask.to(self.linear.weight.dtype), persistent=False)
        _zero_masked_weights(self)
        self.register_load_state_dict_post_hook(_zero_masked_weights)

    @property
    def masked_layer(self):
        return self.linear

    def forward(self, h):
        weight = self.linear.weight
        if torch.is_grad_enabled() and weight.requires_grad:
            weight = weight * self.mask
        out = F.linear(h.flatten(1), weight, self.linear.bias)
        return out.view(h.shape[0], self.n_features, self.out_channels)


class AutoregressiveEstimator(nn.Module):
    """``h(z)``: MFC-A(1->c0), MFC-B layers, MFC-B(->n_bins) logits of shape ``(n, d, B)``.

    Intermediate layers are LeakyReLU activated; the output is left as logits (the softmax of
    eq. 11 is applied inside the loss, as a log-softmax).
    """

    def __init__(self, n_features, channels=(32, 32, 32, 32), n_bins=100):
        super().__init__()
        widths = (1, *channels, n_bins)
        self.layers = nn.ModuleList(
            MaskedFullyConnected(n_features, ci, co, "A" if k == 0 else "B")
            for k, (ci, co) in enumerate(zip(widths[:-1], widths[1:]))
        )
        self.act = nn.LeakyReLU(LEAKY_SLOPE)

    def forward(self, z):
        h = z.unsqueeze(-1)
        for layer in self.layers[:-1]:
            h = self.act(layer(h))
        return self.layers[-1](h)


# ------------------------------------------------------------------------- codes in time (video)
def msc_mask(n_features, in_channels, out_channels, mask_type):
    """Connectivity of a Masked Stacked Convolution as a float ``(d*co, ci, 2, d)`` kernel mask.

    Output group ``i`` (channels ``i*co .. i*co+co-1``) is the CPD of latent dimension i. Its
    kernel has two rows: time t-1 sees every dimension, time t dimensions ``j < i`` (type
    ``"A"``) or ``j <= i`` (``"B"``). The row for time t+1 of the paper's 3-row kernel is
    always zero and is left out.
    """
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    i = torch.arange(n_features).repeat_interleave(out_channels)[:, None]
    j = torch.arange(n_features)[None, :]
    now = (j < i) if mask_type == "A" else (j <= i)
    mask = torch.ones(n_features * out_channels, in_channels, 2, n_features)
    mask[:, :, 1, :] = now[:, None, :].float()
    return mask


class MaskedStackedConvolution(nn.Module):
    """MSC layer (LSA's video estimator): ``(n, ci, T, d) -> (n, co, T, d)``.

    The paper runs one convolution of kernel (3, d) per latent dimension i and stacks their
    outputs; here the d convolutions are one convolution with ``d*co`` output channels and
    the kernel mask of :func:`msc_mask`: one masked product per layer, as for
    :class:`MaskedFullyConnected` (and masked the same way).
    """

    def __init__(self, n_features, in_channels, out_channels, mask_type):
        super().__init__()
        self.n_features, self.out_channels = n_features, out_channels
        self.conv = nn.Conv2d(in_channels, n_features * out_channels, (2, n_features))
        self.register_buffer("mask", msc_mask(n_features, in_channels, out_channels, mask_type),
                             persistent=False)
        _zero_masked_weights(self)
        self.register_load_state_dict_post_hook(_zero_masked_weights)

    @property
    def masked_layer(self):
        return self.conv

    def forward(self, h):
        n, _, t, d = h.shape
        weight = self.conv.weight
        if torch.is_grad_enabled() and weight.requires_grad:
            weight = weight * self.mask
        out = F.conv2d(F.pad(h, (0, 0, 1, 0)), weight, self.conv.bias)   # one step of past
        return out.view(n, d, self.out_channels, t).permute(0, 2, 3, 1)


class SpatioTemporalEstimator(nn.Module):
    """``h(z)`` for codes in time ``z (n, T, d)``: MSC-A(1->c0), MSC-B layers, MSC-B(->B).

    The CPD of ``z[t, i]`` depends on ``z[t-k, :]`` for ``1 <= k <= len(channels) + 1`` and on
    ``z[t, :i]``. Returns logits of shape ``(n, T*d, B)``, time-major (the layout of
    ``z.flatten(1)``), so the LLK of the image model applies unchanged.
    """

    def __init__(self, n_features, channels=(4, 4, 4, 4), n_bins=100):
        super().__init__()
        widths = (1, *channels, n_bins)
        self.layers = nn.ModuleList(
            MaskedStackedConvolution(n_features, ci, co, "A" if k == 0 else "B")
            for k, (ci, co) in enumerate(zip(widths[:-1], widths[1:]))
        )
        self.act = nn.LeakyReLU(LEAKY_SLOPE)

    def forward(self, z):
        h = z.unsqueeze(1)                                   # (n, 1, T, d)
        for layer in self.layers[:-1]:
            h = self.act(layer(h))
        logits = self.layers[-1](h)                          # (n, B, T, d)
        return logits.permute(0, 2, 3, 1).flatten(1, 2)      # (n, T*d, B)
