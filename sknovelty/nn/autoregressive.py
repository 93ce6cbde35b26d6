"""Masked autoregressive layers for a latent vector (LSA, sec. 3.1, eq. 6).

The estimator ``h`` maps a code ``z`` in ``[0, 1]^d`` to ``d`` categorical distributions,
the ``i``-th depending on ``z_<i`` only (eq. 3). Each Masked Fully Connection (MFC) is a
matrix product with a fixed connectivity mask over the flattened ``(feature, channel)``
layout, computed as a few block rows of the triangle (no loop over latent dimensions).
"""

import math

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


#: Number of feature groups of an MFC layer: its weight is stored as the blocks on and below
#: the diagonal of a (groups x groups) block matrix, 9/16 of the dense square at 8 groups.
MFC_GROUPS = 8


def feature_groups(n_features, n_groups=MFC_GROUPS):
    """Boundaries ``[0, ..., n_features]`` of ``min(n_groups, n_features)`` contiguous groups."""
    n_groups = max(1, min(n_groups, n_features))
    return [round(k * n_features / n_groups) for k in range(n_groups + 1)]


class MaskedFullyConnected(nn.Module):
    """MFC layer: ``(n, d, ci) -> (n, d, co)`` with the autoregressive mask of eq. 6.

    Mathematically one product with the ``(d*co, d*ci)`` matrix ``W * M`` (:func:`mfc_mask`),
    stored and computed as block rows: the features are cut into :data:`MFC_GROUPS`
    contiguous groups, and the outputs of group ``k`` are one product of the inputs of the
    groups before it (an unmasked block, ``off[k - 1]``; group 0 has none) plus one of the
    inputs of group ``k`` (the diagonal block ``diag[k]``, masked). The blocks above the
    diagonal, zero under the mask, are neither stored nor multiplied: about half of the
    parameters, of the products and of the optimiser's work at the paper's size. A mask that is not block lower-triangular (a test's
    control) is kept as one block.

    Whenever autograd records, a diagonal block is multiplied by its mask in the forward pass,
    so its masked entries get exactly zero gradient and no optimiser can move them. They are
    zeroed at initialisation and after ``load_state_dict``, hence stay zero for good, and
    inference (no autograd) uses the blocks directly. The initial values are those of an
    ``nn.Linear(d*ci, d*co)`` times the mask, drawn as before the block layout; a state dict
    or a pickle of the former dense layout (``linear.weight``, ``linear.bias``) loads into it.
    """

    def __init__(self, n_features, in_channels, out_channels, mask_type):
        super().__init__()
        self.n_features, self.in_channels, self.out_channels = (n_features, in_channels,
                                                                out_channels)
        mask = mfc_mask(n_features, in_channels, out_channels, mask_type)
        dense = nn.Linear(n_features * in_channels, n_features * out_channels)
        self._build_blocks(mask, dense.weight.detach(), dense.bias.detach())
        self.register_load_state_dict_post_hook(_zero_masked_blocks)

    def _build_blocks(self, mask, weight, bias):
        bounds = feature_groups(self.n_features)
        ci, co = self.in_channels, self.out_channels
        rows = [(a * co, b * co) for a, b in zip(bounds[:-1], bounds[1:])]
        cols = [(a * ci, b * ci) for a, b in zip(bounds[:-1], bounds[1:])]
        if any(mask[r0:r1, c1:].any() for (r0, r1), (_, c1) in zip(rows, cols)):
            rows, cols = [(0, mask.shape[0])], [(0, mask.shape[1])]
        self.rows, self.cols = rows, cols
        weight = weight * mask
        self.diag = nn.ParameterList(nn.Parameter(weight[r0:r1, c0:c1].clone())
                                     for (r0, r1), (c0, c1) in zip(rows, cols))
        # group 0 has no earlier inputs: its off-diagonal block has no columns
        self.off = nn.ParameterList(nn.Parameter(weight[r0:r1, :c0].clone())
                                    for (r0, r1), (c0, _) in zip(rows[1:], cols[1:]))
        self.bias = nn.Parameter(bias.clone())
        for k, ((r0, r1), (c0, c1)) in enumerate(zip(rows, cols)):
            self.register_buffer(f"mask_{k}", mask[r0:r1, c0:c1].to(weight.dtype),
                                 persistent=False)

    def _masks(self):
        return [getattr(self, f"mask_{k}") for k in range(len(self.rows))]

    @property
    def mask(self):
        """The full ``(d*co, d*ci)`` connectivity as 0/1 floats (built on each access)."""
        mask = self.bias.new_zeros(self.rows[-1][1], self.cols[-1][1])
        for (r0, r1), (c0, c1), m in zip(self.rows, self.cols, self._masks()):
            mask[r0:r1, :c0] = 1
            mask[r0:r1, c0:c1] = m
        return mask

    @property
    def weight(self):
        """The dense ``(d*co, d*ci)`` matrix ``W * M`` the blocks hold (built on each access,
        differentiable in the blocks)."""
        weight = self.bias.new_zeros(self.rows[-1][1], self.cols[-1][1])
        blocks = zip(self.rows, self.cols, self._masks())
        for k, ((r0, r1), (c0, c1), mask) in enumerate(blocks):
            weight[r0:r1, c0:c1] = self.diag[k] * mask
            if k:
                weight[r0:r1, :c0] = self.off[k - 1]
        return weight

    def forward(self, h):
        x = h.flatten(1)
        recording = torch.is_grad_enabled()
        outputs = []
        blocks = zip(self.rows, self.cols, self._masks())
        for k, ((r0, r1), (c0, c1), mask) in enumerate(blocks):
            diag = self.diag[k]
            if recording and diag.requires_grad:
                diag = diag * mask
            out = F.linear(x[:, c0:c1], diag, self.bias[r0:r1])
            if k:   # + the inputs of the earlier groups
                out = torch.addmm(out, x[:, :c0], self.off[k - 1].t())
            outputs.append(out)
        out = outputs[0] if len(outputs) == 1 else torch.cat(outputs, 1)
        return out.view(h.shape[0], self.n_features, self.out_channels)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        weight = state_dict.pop(prefix + "linear.weight", None)
        bias = state_dict.pop(prefix + "linear.bias", None)
        if weight is not None and bias is not None:   # the former dense layout
            if weight.shape == self.mask.shape and bias.shape == self.bias.shape:
                for k, ((r0, r1), (c0, c1)) in enumerate(zip(self.rows, self.cols)):
                    state_dict[f"{prefix}diag.{k}"] = weight[r0:r1, c0:c1]
                    if k:
                        state_dict[f"{prefix}off.{k - 1}"] = weight[r0:r1, :c0]
                state_dict[prefix + "bias"] = bias
            else:   # let the usual check report the mismatch
                state_dict[prefix + "linear.weight"] = weight
                state_dict[prefix + "linear.bias"] = bias
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def __setstate__(self, state):
        super().__setstate__(state)
        linear = self._modules.get("linear")
        if linear is not None:   # pickled with the former dense layout
            del self._modules["linear"]
            mask = self._buffers.pop("mask").bool()
            self._non_persistent_buffers_set.discard("mask")
            self.in_channels = linear.in_features // self.n_features
            self._build_blocks(mask, linear.weight.detach(), linear.bias.detach())
            self._load_state_dict_post_hooks.clear()
            self.register_load_state_dict_post_hook(_zero_masked_blocks)


def _zero_masked_blocks(module, incompatible_keys=None):
    with torch.no_grad():
        for diag, mask in zip(module.diag, module._masks()):
            diag.mul_(mask)


class DiscretizedLogisticMixture(nn.Module):
    """A CPD over B bins of ``[0, 1]`` from a mixture of K logistics: ``(..., 3K) -> (..., B)``.

    The output head of PixelCNN++ (Salimans et al., ICLR 2017, sec. 2.1, eq. 2), a departure
    from LSA's B free logits per CPD. Component j has weight ``pi_j``, mean
    ``mu_j`` and scale ``s_j``; bin k (edges ``k / B`` and ``(k + 1) / B``) holds
    ``sum_j pi_j [sigma(((k+1)/B - mu_j) / s_j) - sigma((k/B - mu_j) / s_j)]``, with the outer
    edges at -inf and +inf, so the B masses sum to 1. Neighbouring bins share the 3K
    parameters, so a CPD learnt from a few hundred codes is smooth where a 100-way softmax
    is not. Where a component's mass in a bin underflows (< 1e-5), its density at the bin
    centre times the bin width stands in (as in PixelCNN++), which keeps every gradient finite.

    The input's last axis is ``(logit pi_1..K, mu_1..K, log s_1..K)``. Means start spread over
    the bin range (``mu_j`` is offset by ``(j + 1/2) / K``), scales at ``1 / K`` (``log s`` is
    offset by ``-log K`` and floored at -7). Returns log-probabilities, usable wherever B
    logits are (``log_softmax`` leaves them unchanged up to rounding).
    """

    #: a bin's mass below this is read from the density at its centre instead
    MIN_MASS = 1e-5

    def __init__(self, n_bins, n_components):
        super().__init__()
        self.n_bins, self.n_components = n_bins, n_components
        self.register_buffer("edges", torch.arange(1, n_bins) / n_bins, persistent=False)
        self.register_buffer("centres", (torch.arange(n_bins) + 0.5) / n_bins,
                             persistent=False)
        self.register_buffer("mu_offset", ((torch.arange(n_components) + 0.5) / n_components
                                           ).unsqueeze(-1), persistent=False)

    def forward(self, params):
        k = self.n_components
        if params.dtype in (torch.float16, torch.bfloat16):
            params = params.float()  # CDF differences need float32 (autocast gives half)
        params = params.unsqueeze(-1)                                       # (..., 3K, 1)
        logit_pi, mu, log_s = params[..., :k, :], params[..., k:2 * k, :], params[..., 2 * k:, :]
        mu = mu + self.mu_offset
        log_s = (log_s - math.log(k)).clamp(min=-7.0)
        inv_s = torch.exp(-log_s)
        # log CDF of each component at the B + 1 edges (the outer ones at -inf and +inf)
        t = (self.edges - mu) * inv_s                                       # (..., K, B-1)
        inf = t.new_full((*t.shape[:-1], 1), math.inf)
        log_cdf = F.logsigmoid(torch.cat([-inf, t, inf], dim=-1))           # (..., K, B+1)
        log_upper, log_lower = log_cdf[..., 1:], log_cdf[..., :-1]
        # log(F(upper) - F(lower)), floored so that the unused branch of `where` stays finite
        log_mass = log_upper + torch.log(
            (-torch.expm1(log_lower - log_upper)).clamp(min=1e-30))
        u = (self.centres - mu) * inv_s                                     # (..., K, B)
        log_density = -u - log_s - 2 * F.softplus(-u) - math.log(self.n_bins)
        log_mass = torch.where(log_mass > math.log(self.MIN_MASS), log_mass, log_density)
        return torch.logsumexp(logit_pi.log_softmax(-2) + log_mass, dim=-2)  # (..., B)


def _cpd_head(n_bins, n_components):
    """Output width of the last masked layer and the head after it (None: B logits)."""
    if n_components is None:
        return n_bins, nn.Identity()
    return 3 * n_components, DiscretizedLogisticMixture(n_bins, n_components)


class _HeadedEstimator(nn.Module):
    """Estimators pickled before the CPD head existed (B logits, no ``head``) get one."""

    def __setstate__(self, state):
        super().__setstate__(state)
        if "head" not in self._modules:
            self.head = nn.Identity()


class AutoregressiveEstimator(_HeadedEstimator):
    """``h(z)``: MFC-A(1->c0), MFC-B layers, MFC-B(->n_bins) logits of shape ``(n, d, B)``.

    Intermediate layers are LeakyReLU activated; the output is left as logits (the softmax of
    eq. 11 is applied inside the loss, as a log-softmax). With ``n_components`` set, the last
    layer gives 3K numbers per CPD and :class:`DiscretizedLogisticMixture` turns them into B
    log-probabilities (a departure; the paper's CPD is the B-way softmax).
    """

    def __init__(self, n_features, channels=(32, 32, 32, 32), n_bins=100, n_components=None):
        super().__init__()
        n_out, self.head = _cpd_head(n_bins, n_components)
        widths = (1, *channels, n_out)
        self.layers = nn.ModuleList(
            MaskedFullyConnected(n_features, ci, co, "A" if k == 0 else "B")
            for k, (ci, co) in enumerate(zip(widths[:-1], widths[1:]))
        )
        self.act = nn.LeakyReLU(LEAKY_SLOPE)

    def forward(self, z):
        h = z.unsqueeze(-1)
        for layer in self.layers[:-1]:
            h = self.act(layer(h))
        return self.head(self.layers[-1](h))


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

    The kernel spans the whole code (width d), so the convolution has one output column: it
    is computed as a matrix product of each time step's two rows ``(z[t-1], z[t])``, unfolded
    to ``2*ci*d`` numbers, with the ``(d*co, 2*ci*d)`` kernel matrix. That is the same sum as
    ``conv2d`` (up to float rounding), about 3x faster forward and backward on a CPU at the
    video estimator's output layer (``ci=4, d=64, co=100``), where a 2-D convolution with
    6,400 output channels of one column runs far below the machine's matmul speed.
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
        rows = F.pad(h, (0, 0, 1, 0)).unfold(2, 2, 1)         # (n, ci, t, d, 2): one step of past
        rows = rows.permute(0, 2, 1, 4, 3).reshape(n * t, -1)  # (n*t, ci*2*d), the kernel's order
        out = torch.addmm(self.conv.bias, rows, weight.flatten(1).t())   # (n*t, d*co)
        return out.view(n, t, d, self.out_channels).permute(0, 3, 1, 2)


class SpatioTemporalEstimator(_HeadedEstimator):
    """``h(z)`` for codes in time ``z (n, T, d)``: MSC-A(1->c0), MSC-B layers, MSC-B(->B).

    The CPD of ``z[t, i]`` depends on ``z[t-k, :]`` for ``1 <= k <= len(channels) + 1`` and on
    ``z[t, :i]``. Returns logits of shape ``(n, T*d, B)``, time-major (the layout of
    ``z.flatten(1)``), so the LLK of the image model applies unchanged. ``n_components`` as
    for :class:`AutoregressiveEstimator`.
    """

    def __init__(self, n_features, channels=(4, 4, 4, 4), n_bins=100, n_components=None):
        super().__init__()
        n_out, self.head = _cpd_head(n_bins, n_components)
        widths = (1, *channels, n_out)
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
        return self.head(logits.permute(0, 2, 3, 1).flatten(1, 2))   # (n, T*d, B)
