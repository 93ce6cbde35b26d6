"""ITAE + NF: implicit two-path autoencoder and normalizing flows (Cho et al., 2022).

:class:`TwoPathFlowDetector` is the paper's model for video clips: a static path on every
tau-th frame and a dynamic path on all frames, fused by lateral connections into one decoder
(table 1), then one Glow per path on the pooled latents (sec. 3.3); score eq. 12-14.
:class:`FlowDensityDetector` is a Glow (``sknovelty.nn.flows``) fitted by maximum likelihood
(eq. 10-11) on vectors or images; on raw frames it is the "NF on frames" row of table 3.
"""

import math
import numbers
import warnings
from typing import NamedTuple

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn
from torch.nn import functional as F

from .base import BaseDeepDetector
from .engine import TwoStageNet
from .metrics import code_length
from .nn.blocks import scale_channels
from .nn.flows import Glow
from .nn import random

__all__ = ["FlowDensityDetector", "FlowModule", "code_length", "NLLLoss", "TwoPathFlowDetector", "ITAEModule",
           "ITAELoss", "TwoPathEncoder", "ms_ssim", "gradient_loss"]


class FlowModule(nn.Module):
    """``x -> log p(x)`` under Glow, for x mapped from the training range to [0, 1].

    With ``dequantize`` (images), training inputs get uniform noise of one 256th of the range,
    the usual dequantisation of 8-bit pixels (without it, constant pixels such as MNIST's
    background give an unbounded density).
    """

    def __init__(self, sample_shape, input_range, n_levels, n_steps, hidden, dequantize):
        super().__init__()
        self.vector = len(sample_shape) == 1
        shape = (sample_shape[0], 1, 1) if self.vector else tuple(sample_shape)
        self.flow = Glow(shape, n_levels, n_steps, hidden)
        low, high = input_range
        self.register_buffer("low", torch.tensor(low))
        self.register_buffer("span", torch.tensor(max(high - low, 1e-12)))
        self.dequantize = dequantize
        self.n_dims = math.prod(shape)

    def forward(self, x):
        x = (x - self.low) / self.span
        if self.vector:
            x = x[:, :, None, None]
        if self.training and self.dequantize:
            x = x + random.rand_like(x) / 256
        return (self.flow.log_prob(x),)


class NLLLoss(nn.Module):
    """Mean negative log-likelihood per dimension (eq. 11); ``nll`` per sample for scoring."""

    def __init__(self, n_dims):
        super().__init__()
        self.n_dims = n_dims

    def per_sample(self, output, x):
        return {"nll": -output[0]}

    def forward(self, output, x):
        return -output[0].mean() / self.n_dims


def _glow_levels(shape, n_levels):
    """``(channels, H, W, prior)`` of each level of ``Glow(shape, n_levels, ...)``, with
    ``prior`` the channels the level splits off (0 for none), following its constructor."""
    c, h, w = shape
    levels = []
    for level in range(n_levels):
        if h >= 2 and w >= 2:
            h, w, c = h // 2, w // 2, 4 * c
        split = c // 2 if level < n_levels - 1 and c - c // 2 >= 2 else 0
        levels.append((c, h, w, split))
        c -= split
    return levels


def _glow_training_bytes(shape, n_levels, n_steps, hidden):
    """Bytes a ``Glow(shape, n_levels, n_steps, hidden)`` holds while training, without
    building it: its float32 parameters four times (weights, gradients and Adam's two
    moments) plus its buffers. Activations (which grow with the batch size) come on top.

    A flow step over C channels holds five C x C matrices (the 1x1 convolution's two LU
    factors, permutation, mask and identity) and a level's prior a 3x3 convolution from C/2
    to C channels, so vectors of d features, which a level does not squeeze, cost about
    ``512 d^2`` bytes at the default 2 levels of 8 steps (plus terms linear in d).
    Measured at d = 1000 (1 epoch, CPU), the fit's peak memory growth was 1.4 times this.

    Parameters
    ----------
    shape : tuple (C, H, W)
        Input shape of the flow (vectors of d features: ``(d, 1, 1)``).
    n_levels, n_steps, hidden : int
        As for :class:`~sknovelty.nn.flows.Glow`.

    Returns
    -------
    int
    """
    params = buffers = 0
    for c, _, _, split in _glow_levels(shape, n_levels):
        n_a, n_b = c // 2, c - c // 2
        step_params = (2 * c                                  # ActNorm
                       + 2 * c * c + c                         # 1x1 conv: L, U, log s
                       + 9 * n_a * hidden + hidden             # coupling: 3x3 conv
                       + hidden * hidden + hidden              # 1x1 conv
                       + 9 * hidden * 2 * n_b + 2 * 2 * n_b)   # zero conv, its bias and logs
        params += n_steps * step_params
        buffers += n_steps * (1 + 3 * c * c + c)              # initialized, P, masks, signs
        if split:
            rest = c - split
            params += 9 * rest * 2 * split + 2 * 2 * split     # the prior's zero conv
    return 4 * (4 * params + buffers)


class FlowDensityDetector(BaseDeepDetector):
    """Glow density on vectors or images; novelty = negative log-likelihood or its
    complexity-corrected form.

    A likelihood model gives simple inputs (smooth, low-contrast, compressible) a high
    likelihood even when it never saw anything like them, so plain NLL can rank such
    novelties as *more* normal than the training data (Nalisnick et al., ICLR 2019).
    ``score_type="complexity"`` subtracts the input's complexity, as Serra et al. (ICLR 2020,
    eq. 3) propose: S(x) = -log2 p(x) - L(x), both in bits per dimension, with L(x) the code
    length under a generic lossless compressor (:func:`code_length`). S(x) is a likelihood
    ratio against a universal model: it asks how much better than a compressor the flow does
    on x. It is the default: chosen by the mean AUROC of the two scores over the sets of
    ``sknovelty.datasets.SUITE``, where the NLL ranked novel inputs as more normal on some
    image sets and S did not, at a small cost where the NLL was right; see
    :ref:`design-flow-score-type`. For vectors the code length of a few bytes is nearly
    constant and S ranks like the NLL. ``fit`` warns when ``score_type="nll"`` and the
    held-out normal rows' NLL tracks their code length closely (Spearman correlation
    ``complexity_correlation_`` at least 0.8), the sign that simpler inputs will look more
    normal; the NLL can also fail with a weaker correlation, so the warning does not catch
    every such failure.

    Parameters
    ----------
    n_levels : int, default=2
        Levels L of the multi-scale architecture (each squeezes when the size allows).
    n_steps : int, default=8
        Flow steps K per level (ActNorm, invertible 1x1 conv, affine coupling).
    hidden_channels : int, default=64
        Width of the coupling networks.
    dequantize : bool, default=True
        Add uniform noise of 1/256 of the input range to training inputs (pixel data).
    score_type : {"nll", "complexity"}, default="complexity"
        The novelty term: ``"nll"``, the negative log-likelihood, or ``"complexity"``, the
        NLL in bits per dimension of the 8-bit quantised input minus its zlib code length
        (Serra et al., eq. 3). The input is mapped from the training range to [0, 1] for both.
    epochs : int, default=30
    batch_size : int, default=64
    learning_rate : float, default=1e-3
    validation_fraction, contamination, device, random_state, verbose, image_shape, callbacks,
    n_jobs, score_batch_size, precision
        See :class:`~sknovelty.base.BaseDeepDetector`.

    Attributes
    ----------
    net_, normalization_, offset_, input_range_, sample_shape_, device_, n_features_in_
        As in :class:`~sknovelty.base.BaseDeepDetector`. ``score_components(X)`` has
        ``"nll"``, the negative log-likelihood in nats (inputs mapped to [0, 1]),
        ``"code_length"``, L(x) in bits per dimension, and ``"complexity"``, S(x) in bits per
        dimension, whatever ``score_type`` is.
    complexity_correlation_ : float
        Spearman correlation of NLL and code length over the held-out normal rows (nan when
        either is constant there).
    simple_input_auroc_ : float
        As in :class:`~sknovelty.base.BaseDeepDetector` (images only).

    Notes
    -----
    Size: a flow step over C channels holds C x C matrices (its invertible 1x1 convolution),
    and vectors of d features are d channels, so the network grows as d^2: about
    ``512 d^2`` bytes while training at the default 2 levels of 8 steps (weights, gradients,
    Adam's two moments and buffers, float32; activations and the autograd graph come on
    top). ``fit`` computes this from the parameters before building anything and raises
    ``ValueError`` above ``MAX_NETWORK_BYTES`` (4 GiB: at most 2,737 features at the
    defaults; 200,000 would need 19 TiB); reduce such vectors first (e.g. with PCA in a
    pipeline). Images are squeezed to few channels and stay far below it (3 x 256 x 256:
    5 MiB).

    Examples
    --------
    >>> import numpy as np
    >>> from sknovelty import FlowDensityDetector
    >>> X = np.random.RandomState(0).normal(size=(200, 4))
    >>> det = FlowDensityDetector(n_steps=2, hidden_channels=8, epochs=3, dequantize=False,
    ...                           random_state=0).fit(X)
    >>> det.score_components(X[:2])["nll"].shape
    (2,)
    """

    #: models saved before ``score_type`` existed scored by the NLL
    _former_defaults = {"score_type": "nll"}

    #: ``fit`` warns (``score_type="nll"``) at this Spearman correlation of NLL and code length
    COMPLEXITY_WARNING = 0.8

    def __init__(self, n_levels=2, n_steps=8, hidden_channels=64, dequantize=True,
                 score_type="complexity", *,
                 epochs=30,
                 batch_size=64, learning_rate=1e-3, validation_fraction=0.1, contamination=0.1,
                 device="auto", random_state=None, verbose=0, image_shape=None, callbacks=None, n_jobs=None,
                 score_batch_size="auto", precision="float32"):
        self.n_levels = n_levels
        self.n_steps = n_steps
        self.hidden_channels = hidden_channels
        self.dequantize = dequantize
        self.score_type = score_type
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.validation_fraction = validation_fraction
        self.contamination = contamination
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.image_shape = image_shape
        self.callbacks = callbacks
        self.n_jobs = n_jobs
        self.score_batch_size = score_batch_size
        self.precision = precision

    _parameter_constraints = {
        **BaseDeepDetector._parameter_constraints,
        "n_levels": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_steps": [Interval(numbers.Integral, 1, None, closed="left")],
        "hidden_channels": [Interval(numbers.Integral, 1, None, closed="left")],
        "dequantize": ["boolean"],
        "score_type": [StrOptions({"nll", "complexity"})],
    }

    @property
    def _novelty_terms(self):
        return (self.score_type,)

    #: ``fit`` (and ``load``) raise ``ValueError`` for a network whose state while training
    #: (weights, gradients, Adam's moments and buffers: ``_glow_training_bytes``) would
    #: exceed this many bytes (4 GiB; see the Notes)
    MAX_NETWORK_BYTES = 4 * 2 ** 30

    def _build_module(self, sample_shape, input_range):
        if len(sample_shape) == 1 and sample_shape[0] < 2:
            raise ValueError("FlowDensityDetector needs at least 2 features (the coupling "
                             "layers split them in two); got n_features = 1")
        shape = (sample_shape[0], 1, 1) if len(sample_shape) == 1 else tuple(sample_shape)
        needed = _glow_training_bytes(shape, self.n_levels, self.n_steps, self.hidden_channels)
        if needed > self.MAX_NETWORK_BYTES:
            widest = max(c for c, _, _, _ in _glow_levels(shape, self.n_levels))
            size = (f"{needed / 2 ** 40:,.1f} TiB" if needed >= 2 ** 40
                    else f"{needed / 2 ** 30:,.1f} GiB")
            what = (f"{sample_shape[0]} features" if len(sample_shape) == 1
                    else f"samples of shape {tuple(sample_shape)}")
            raise ValueError(
                f"{type(self).__name__} on {what} would need about {size} "
                f"for its network while training (weights, gradients, Adam's moments; the "
                f"1x1 convolutions hold C x C matrices, C = {widest} "
                f"channels at the widest level), more than MAX_NETWORK_BYTES = "
                f"{self.MAX_NETWORK_BYTES / 2 ** 30:g} GiB. Reduce the dimension first (e.g. "
                "make_pipeline(PCA(n_components=256), FlowDensityDetector())), or lower "
                "n_steps, n_levels or hidden_channels; to allow it anyway, raise "
                f"{type(self).__name__}.MAX_NETWORK_BYTES.")
        return FlowModule(sample_shape, input_range, self.n_levels, self.n_steps,
                          self.hidden_channels, self.dequantize and len(sample_shape) == 3)

    def _build_criterion(self, sample_shape):
        return NLLLoss(math.prod(sample_shape))

    def _raw_components(self, X):
        """NLL (nats) from the flow, then L(x) and S(x) = NLL in bits/dim + 8 - L(x).

        The flow's density is over inputs mapped to [0, 1]; the probability of the 8-bit bin
        of x is about p(x) / 256^D, whence the 8 bits per dimension added to NLL / (D ln 2).
        """
        terms = super()._raw_components(X)
        n_dims = math.prod(self.sample_shape_)
        terms["code_length"] = code_length(X, *self.input_range_)
        terms["complexity"] = terms["nll"] / (n_dims * math.log(2)) + 8 - terms["code_length"]
        return terms

    def _complexity_correlation(self, X_ref, terms, scores):
        """The NLL (not the score) against the code length, both already among the terms;
        for vectors too (``fit`` warns on it only for ``score_type="nll"``)."""
        nll, length = terms["nll"], terms["code_length"]
        if len(X_ref) < 3 or np.ptp(nll) == 0 or np.ptp(length) == 0:
            return float("nan")
        return float(spearmanr(nll, length)[0])

    def _check_complexity(self, X_ref, terms, scores):
        """The base's flat-input probe, then a warning when ``score_type="nll"`` and the NLL
        tracks the code length (the complexity score already subtracts L)."""
        super()._check_complexity(X_ref, terms, scores)
        if len(self.sample_shape_) < 3:   # the base measures images only
            self.complexity_correlation_ = self._complexity_correlation(X_ref, terms, scores)
        if self.score_type == "nll" and self.complexity_correlation_ >= self.COMPLEXITY_WARNING:
            warnings.warn(
                f"{type(self).__name__}: the NLL of held-out normal rows tracks their "
                f"compressed size (Spearman {self.complexity_correlation_:.2f}), so inputs "
                "simpler than the training data may score as more normal than it. Consider "
                "score_type='complexity' (NLL minus the code length, Serra et al. 2020).",
                UserWarning, stacklevel=5)

    _fitted_attributes = (*BaseDeepDetector._fitted_attributes, "complexity_correlation_")


# ============================================================================ ITAE (two paths)
def _conv_bn(a, b, kernel, stride):
    pad = tuple(k // 2 for k in kernel)
    return nn.Sequential(nn.Conv3d(a, b, kernel, stride=stride, padding=pad), nn.BatchNorm3d(b),
                         nn.ReLU())


STATIC = ((96, (1, 3, 3), (1, 2, 2)), (128, (1, 3, 3), (1, 2, 2)), (256, (3, 3, 3), 1),
          (256, (3, 3, 3), 1))
DYNAMIC = ((12, (5, 3, 3), (1, 2, 2)), (16, (3, 3, 3), (1, 2, 2)), (32, (3, 3, 3), 1),
           (32, (3, 3, 3), 1))


class TwoPathEncoder(nn.Module):
    """ITAE's encoders (table 1). The static path sees every ``tau``-th frame (T / tau frames),
    the dynamic path all T frames with fewer channels; lateral (5, 1, 1) convolutions with
    temporal stride ``tau`` carry dynamic features into the static path after each of the
    first three layers and at the end, where both are concatenated for the decoder. With
    ``two_path=False`` only the static path runs, on all T frames (a one-path autoencoder)."""

    def __init__(self, in_channels, width=1.0, tau=4, two_path=True):
        super().__init__()
        self.tau = tau if two_path else 1
        self.two_path = two_path
        static_w = scale_channels([c for c, _, _ in STATIC], width)
        dyn_w = scale_channels([c for c, _, _ in DYNAMIC], width)
        self.static, self.dynamic, self.lateral = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        a_s, a_d = in_channels, in_channels
        for i, ((_, ks, ss), (_, kd, sd)) in enumerate(zip(STATIC, DYNAMIC)):
            self.static.append(_conv_bn(a_s, static_w[i], ks, ss))
            a_s = static_w[i]
            if two_path:
                self.dynamic.append(_conv_bn(a_d, dyn_w[i], kd, sd))
                a_d = dyn_w[i]
                self.lateral.append(nn.Conv3d(dyn_w[i], 2 * dyn_w[i], (5, 1, 1),
                                              stride=(self.tau, 1, 1), padding=(2, 0, 0)))
                if i < 3:
                    a_s += 2 * dyn_w[i]
        self.out_channels = static_w[-1] + (2 * dyn_w[-1] if two_path else 0)
        self.static_channels, self.dynamic_channels = static_w[-1], dyn_w[-1]

    def forward(self, x):
        """``x -> (fused, static, dynamic)``; ``dynamic`` is None for one path."""
        s = x[:, :, :: self.tau]
        d = x if self.two_path else None
        for i, conv in enumerate(self.static):
            s = conv(s)
            if self.two_path:
                d = self.dynamic[i](d)
                if i < 3:
                    s = torch.cat([s, self.lateral[i](d)], 1)
        fused = torch.cat([s, self.lateral[3](d)], 1) if self.two_path else s
        return fused, s, d


class ITAEDecoder(nn.Module):
    """Table 1's decoder: (3, 3, 3) transposed convs 256 (stride 1), 128 and 96 (stride 2 in
    space, and in time to undo the static path's frame sampling), then to the input channels
    (stride 1); BN + ReLU between, sigmoid output (frames in [0, 1]). No skip connections."""

    def __init__(self, in_channels, out_shape, width=1.0, tau=4):
        super().__init__()
        c, t, h, w = out_shape
        t_strides = {1: (1, 1), 2: (2, 1), 4: (2, 2)}[tau]
        widths = scale_channels((256, 128, 96), width)
        sizes = [(math.ceil(t / tau), math.ceil(h / 4), math.ceil(w / 4))]
        sizes.append((sizes[0][0] * t_strides[0], math.ceil(h / 2), math.ceil(w / 2)))
        sizes.append((t, h, w))
        layers = [nn.ConvTranspose3d(in_channels, widths[0], 3, padding=1), nn.BatchNorm3d(widths[0]),
                  nn.ReLU()]
        for i, ts in enumerate(t_strides):
            stride = (ts, 2, 2)
            op = tuple(tgt - ((d - 1) * st + 1) for tgt, d, st in zip(sizes[i + 1], sizes[i], stride))
            layers += [nn.ConvTranspose3d(widths[i], widths[i + 1], 3, stride=stride, padding=1,
                                          output_padding=op), nn.BatchNorm3d(widths[i + 1]), nn.ReLU()]
        layers += [nn.ConvTranspose3d(widths[2], c, 3, padding=1), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z)


def _gaussian_window(size, sigma=1.5):
    g = torch.exp(-((torch.arange(size) - size // 2) ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim(x, y, data_range=1.0, window=11):
    """Multi-scale SSIM of image batches ``(n, C, H, W)`` (Wang et al., 2003), per image.

    Uses as many of the five scales as the image size allows for the Gaussian window (at
    least one); the scale weights are renormalised to those used.
    """
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    win = min(window, min(x.shape[-2:]))
    win -= 1 - win % 2
    levels = 1
    while levels < 5 and min(x.shape[-2:]) // 2 ** levels >= win:
        levels += 1
    weights = torch.tensor(MS_SSIM_WEIGHTS[:levels], device=x.device)
    weights = weights / weights.sum()
    kernel = _gaussian_window(win).to(x).expand(x.shape[1], 1, win, win).contiguous()
    values = []
    for level in range(levels):
        conv = lambda v: F.conv2d(v, kernel, groups=x.shape[1])  # noqa: E731
        mx, my = conv(x), conv(y)
        sxx, syy, sxy = conv(x * x) - mx ** 2, conv(y * y) - my ** 2, conv(x * y) - mx * my
        cs = (2 * sxy + c2) / (sxx + syy + c2)
        if level < levels - 1:
            values.append(cs.flatten(1).mean(1).clamp(min=1e-6))
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        else:
            ssim = ((2 * mx * my + c1) / (mx ** 2 + my ** 2 + c1)) * cs
            values.append(ssim.flatten(1).mean(1).clamp(min=1e-6))
    return torch.prod(torch.stack(values, 1) ** weights, 1)


def gradient_loss(x, y):
    """Difference of absolute image gradients (Liu et al., 2018), mean over pixels."""
    gx = lambda v: (v[..., :, 1:] - v[..., :, :-1]).abs()  # noqa: E731
    gy = lambda v: (v[..., 1:, :] - v[..., :-1, :]).abs()  # noqa: E731
    return (gx(x) - gx(y)).abs().mean() + (gy(x) - gy(y)).abs().mean()


def _frames(v):
    """(n, C, T, H, W) -> (n * T, C, H, W)."""
    n, c, t, h, w = v.shape
    return v.transpose(1, 2).reshape(n * t, c, h, w)


#: Gaussian noise added to the flows' inputs while they train (see ``ITAEModule._nll``).
LATENT_JITTER = 0.01


class ITAEOutput(NamedTuple):
    x: torch.Tensor
    rec: torch.Tensor
    nll_static: torch.Tensor    # per clip, or None
    nll_dynamic: torch.Tensor   # per clip, or None


class ITAEModule(nn.Module):
    """ITAE (encoders, decoder) and the two flows on its pooled latents (sec. 3.3).

    The static flow sees, per static time step, the channel max and mean of the static
    features plus the input frame resized to the feature size; the dynamic flow the channel
    max and mean of the dynamic features per frame. A clip's NLL is the mean over its time
    steps. ``stage`` 1 trains (and validates) the autoencoder alone; 2, the default and the
    stage after fitting, trains the flows on frozen (detached) features and scores with all.
    """

    def __init__(self, clip_shape, input_range, width, tau, two_path, flows, n_levels, n_steps,
                 flow_hidden):
        super().__init__()
        c, t, h, w = clip_shape
        if two_path and t % tau:
            raise ValueError(f"clips of {t} frames cannot be sampled every tau={tau} frames")
        low, high = input_range
        self.register_buffer("low", torch.tensor(low))
        self.register_buffer("span", torch.tensor(max(high - low, 1e-12)))
        self.encoder = TwoPathEncoder(c, width, tau, two_path)
        self.decoder = ITAEDecoder(self.encoder.out_channels, clip_shape, width,
                                   self.encoder.tau)
        self.feature_size = (math.ceil(h / 4), math.ceil(w / 4))
        self.stage = 2
        self.use_flows = flows
        if flows:
            self.flow_static = Glow((3, *self.feature_size), n_levels, n_steps, flow_hidden)
            self.flow_dynamic = (Glow((2, *self.feature_size), n_levels, n_steps, flow_hidden)
                                 if two_path else None)

    @property
    def stages(self):
        """What :class:`~sknovelty.engine.TwoStageNet` trains in stage 1 and in stage 2."""
        flows = [f for f in (getattr(self, "flow_static", None), getattr(self, "flow_dynamic", None))
                 if f is not None]
        return nn.ModuleList([self.encoder, self.decoder]), nn.ModuleList(flows)

    def _pooled(self, features):
        """(n, C, T', h, w) -> (n * T', 2, h, w): channel max and mean per time step."""
        f = _frames(features)
        return torch.cat([f.amax(1, keepdim=True), f.mean(1, keepdim=True)], 1)

    def _nll(self, flow, inputs, n):
        if self.training:
            # dequantisation of the latents: ReLU features are often exactly equal (zero, or
            # max = mean), a degenerate density whose NLL would run to -inf in training
            inputs = inputs + LATENT_JITTER * random.randn_like(inputs)
        return -flow.log_prob(inputs).view(n, -1).mean(1)

    def forward(self, x):
        x = (x - self.low) / self.span
        if self.stage == 2 and self.training:
            with torch.no_grad():
                fused, s, d = self.encoder(x)
                rec = self.decoder(fused)
        else:
            fused, s, d = self.encoder(x)
            rec = self.decoder(fused)
        nll_s = nll_d = None
        if self.use_flows and self.stage == 2:
            n = len(x)
            intensity = F.adaptive_avg_pool2d(_frames(x[:, :, :: self.encoder.tau]).mean(1, keepdim=True),
                                              self.feature_size)
            nll_s = self._nll(self.flow_static, torch.cat([self._pooled(s.detach()), intensity], 1), n)
            if self.flow_dynamic is not None:
                nll_d = self._nll(self.flow_dynamic, self._pooled(d.detach()), n)
            else:
                nll_d = torch.zeros_like(nll_s)
        return ITAEOutput(x, rec, nll_s, nll_d)


class ITAELoss(nn.Module):
    """Stage 1: ``L2 + (1 - MS-SSIM) + L_grad`` (eq. 8-9) over all frames. Stage 2: the flows'
    NLL (eq. 10-11) per latent dimension. ``per_sample`` gives eq. 12's patch error ``rec``
    (per frame the largest mean absolute error over sliding ``patch`` x ``patch`` windows,
    averaged over the clip's frames), ``nll_static``, ``nll_dynamic`` and their sum ``nll``."""

    def __init__(self, patch=8, flow_dims=1):
        super().__init__()
        self.patch, self.stage, self.flow_dims = patch, 1, flow_dims

    def per_frame(self, out):
        """Eq. 12 for each frame of each clip, ``(n, T)``: the largest mean absolute error
        over the frame's sliding ``patch`` x ``patch`` windows."""
        err = _frames((out.x - out.rec).abs()).mean(1, keepdim=True)  # (n T, 1, H, W)
        k = min(self.patch, *err.shape[-2:])
        return F.avg_pool2d(err, k, stride=1).flatten(1).amax(1).view(len(out.x), -1)

    def per_sample(self, out, x):
        terms = {"rec": self.per_frame(out).mean(1)}
        if out.nll_static is not None:
            terms.update(nll_static=out.nll_static, nll_dynamic=out.nll_dynamic,
                         nll=out.nll_static + out.nll_dynamic)
        return terms

    def per_pixel(self, out, x):
        """The absolute reconstruction error averaged over channels (the error ``rec`` pools
        into patches and takes the maximum of), repeated over the channels."""
        return {"rec": (out.x - out.rec).abs().mean(1, keepdim=True).expand_as(out.x)}

    def forward(self, out, x):
        if self.stage == 2:
            return (out.nll_static + out.nll_dynamic).mean() / self.flow_dims
        a, b = _frames(out.x), _frames(out.rec)
        return ((a - b).square().mean() + (1 - ms_ssim(a, b)).mean() + gradient_loss(a, b))


class TwoPathFlowDetector(BaseDeepDetector):
    """ITAE + NF: implicit two-path video autoencoder with normalizing flows on its latents.

    Clips ``(n, C, T, H, W)`` (see :func:`sknovelty.video.frames_to_clips`), mapped to [0, 1]
    by the training range. Stage 1 (``epochs``) trains the autoencoder on L2 + MS-SSIM +
    gradient loss (eq. 8-9); stage 2 (``flow_epochs``) trains one Glow per path on the frozen
    latents (eq. 10-11). The novelty score is eq. 14: the patch reconstruction error
    (eq. 12) plus ``lambda_l`` times the flows' NLL, each min-max scaled on held-out normal
    clips (the paper normalises the NLL per video; use :func:`sknovelty.video.frame_auroc`
    on the components for that protocol). A clip's patch error is the mean of its frames';
    :meth:`score_frames` keeps each frame's own, the paper's frame score.

    Parameters
    ----------
    two_path : bool, default=True
        False gives the one-path autoencoder of the ablation (the static path on all frames).
    flows : bool, default=True
        False trains and scores the autoencoder alone (``rec``).
    tau : {1, 2, 4}, default=4
        Frame sampling of the static path.
    width : float, default=1.0
        Multiplies every channel count of table 1.
    lambda_l : float, default=0.5
        Weight of the NLL in the score (eq. 14; the paper picks it from 0.1 ... 1.0).
    patch_size : int, default=8
        N of the N x N sliding patches of eq. 12.
    n_levels, n_steps, flow_hidden : int, default=2, 4, 32
        Glow's levels L, steps K per level and coupling width.
    flow_epochs : int, default=10
    epochs : int, default=20
        Autoencoder epochs (stage 1).
    batch_size : int, default=8
    learning_rate : float, default=1e-3
        Adam's learning rate of stage 1 (the paper: 1e-3 on UCSD).
    flow_learning_rate : float or None, default=None
        Adam's learning rate of stage 2; None uses ``learning_rate`` (the paper: 5e-4 on
        UCSD, with a cosine-annealing schedule not applied here).
    validation_fraction, contamination, device, random_state, verbose, callbacks, n_jobs,
    score_batch_size, precision
        See :class:`~sknovelty.base.BaseDeepDetector`.

    Notes
    -----
    Departures from the paper: Glow with ``n_steps=4, n_levels=2`` (the paper: K = 32,
    L = 3, L = 1 on UCSD) and ``width`` scaled channels keep CPU runs small; ``rec`` is
    min-max scaled like the NLL (the paper adds the raw patch error to the per-video
    normalised NLL, so ``lambda_l`` is not on the paper's scale). ``net_.history``'s
    ``valid_loss`` is the reconstruction loss for ``epochs`` epochs, then the flows' NLL per
    dimension: an ``EarlyStopping`` callback should not watch it across the switch. Training
    runs in :class:`~sknovelty.engine.TwoStageNet`: stage 1 steps ``optimizer_``, stage 2
    ``second_optimizer_``; ``on_grad_computed`` callbacks (e.g. gradient clipping) see the
    gradients of both stages; skorch's ``LRScheduler`` schedules ``optimizer_`` only,
    :class:`~sknovelty.engine.EveryOptimizerLRScheduler` each stage's optimizer in its own
    epochs.

    Examples
    --------
    >>> import numpy as np
    >>> from sknovelty import TwoPathFlowDetector
    >>> clips = np.random.RandomState(0).rand(12, 1, 8, 16, 16)
    >>> det = TwoPathFlowDetector(width=0.125, epochs=1, flow_epochs=1, n_steps=1,
    ...                           flow_hidden=4, random_state=0).fit(clips)
    >>> sorted(det.score_components(clips[:2]))
    ['nll', 'nll_dynamic', 'nll_static', 'rec']
    """

    _sample_ranks = (4,)
    _score_maps = True

    def __init__(self, two_path=True, flows=True, tau=4, width=1.0, lambda_l=0.5, patch_size=8,
                 n_levels=2, n_steps=4, flow_hidden=32, flow_epochs=10, *, epochs=20,
                 batch_size=8, learning_rate=1e-3, flow_learning_rate=None, validation_fraction=0.1,
                 contamination=0.1, device="auto", random_state=None, verbose=0, image_shape=None,
                 callbacks=None, n_jobs=None,
                 score_batch_size="auto", precision="float32"):
        self.two_path = two_path
        self.flows = flows
        self.tau = tau
        self.width = width
        self.lambda_l = lambda_l
        self.patch_size = patch_size
        self.n_levels = n_levels
        self.n_steps = n_steps
        self.flow_hidden = flow_hidden
        self.flow_epochs = flow_epochs
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.flow_learning_rate = flow_learning_rate
        self.validation_fraction = validation_fraction
        self.contamination = contamination
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.image_shape = image_shape
        self.callbacks = callbacks
        self.n_jobs = n_jobs
        self.score_batch_size = score_batch_size
        self.precision = precision

    _parameter_constraints = {
        **BaseDeepDetector._parameter_constraints,
        "two_path": ["boolean"],
        "flows": ["boolean"],
        "tau": [Options(numbers.Integral, {1, 2, 4})],
        "width": [Interval(numbers.Real, 0, None, closed="neither")],
        "lambda_l": [Interval(numbers.Real, 0, None, closed="left")],
        "patch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_levels": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_steps": [Interval(numbers.Integral, 1, None, closed="left")],
        "flow_hidden": [Interval(numbers.Integral, 1, None, closed="left")],
        "flow_epochs": [Interval(numbers.Integral, 0, None, closed="left")],
        "flow_learning_rate": [Interval(numbers.Real, 0, None, closed="neither"), None],
    }

    _net_class = TwoStageNet

    @property
    def _novelty_terms(self):
        return ("rec", "nll") if self.flows and self.flow_epochs > 0 else ("rec",)

    def _net_kwargs(self):
        flows = self.flows and self.flow_epochs > 0
        return {"first_stage_epochs": self.epochs, "second_lr": self.flow_learning_rate,
                "max_epochs": self.epochs + (self.flow_epochs if flows else 0)}

    def _build_module(self, sample_shape, input_range):
        return ITAEModule(sample_shape, input_range, self.width, self.tau, self.two_path,
                          self.flows and self.flow_epochs > 0, self.n_levels, self.n_steps,
                          self.flow_hidden)

    def _build_criterion(self, sample_shape):
        _, _, h, w = sample_shape
        # the NLLs are per time step: 3 (static) + 2 (dynamic) pooled channels of h/4 x w/4
        dims = (3 + (2 if self.two_path else 0)) * math.ceil(h / 4) * math.ceil(w / 4)
        return ITAELoss(self.patch_size, dims)

    def _combine(self, terms):
        novelty = self._normalized("rec", terms["rec"])
        if "nll" in self._novelty_terms:
            novelty = novelty + self.lambda_l * self._normalized("nll", terms["nll"])
        return -novelty

    def score_frames(self, X):
        """Normality of each frame of each clip: eq. 14 with the frame's own patch error.

        The paper scores frame ``t`` by the patch error of that frame (eq. 12) plus
        ``lambda_l`` times the NLL of its clip; ``score_samples`` scores a clip by the mean of
        its frames' patch errors. Here each frame keeps its own error (scaled as in
        ``score_samples``), so a clip's mean over its frames equals its ``score_samples``,
        and :func:`sknovelty.video.video_frame_scores` averages each frame's scores over the
        clips that hold it, as the paper does (sec. 3.4).

        Parameters
        ----------
        X : array-like of shape (n, C, T, H, W)
            Clips to score.

        Returns
        -------
        ndarray of shape (n, T)
            Higher means more normal.

        See Also
        --------
        score_samples : A score per clip.
        sknovelty.video.video_frame_scores : From clips to frame scores of whole videos.

        Examples
        --------
        >>> import numpy as np
        >>> from sknovelty import TwoPathFlowDetector
        >>> clips = np.random.RandomState(0).rand(12, 1, 8, 16, 16)
        >>> det = TwoPathFlowDetector(width=0.125, epochs=1, flows=False,
        ...                           random_state=0).fit(clips)
        >>> det.score_frames(clips[:2]).shape
        (2, 8)
        """
        terms = self._frame_terms(X)
        # a clip's NLL applies to each of its frames: (n, 1) against the frames' (n, T)
        return self._combine({name: value if name == "rec" else value[:, None]
                              for name, value in terms.items()})

    def _frame_terms(self, X):
        """The raw terms of each frame: ``rec`` ``(n, T)``, each frame's patch error (eq. 12),
        and with flows ``nll`` ``(n,)``, its clip's NLL; float64."""
        check_is_fitted(self)
        criterion = self.net_.criterion_

        def frame_terms(xb):
            out = self._forward(xb)
            terms = {"rec": criterion.per_frame(out).double()}
            if out.nll_static is not None:
                terms["nll"] = (out.nll_static + out.nll_dynamic).double()
            return terms

        raw = self._map_chunks(self._validate_X(X, reset=False), frame_terms)
        if not all(np.isfinite(value).all() for value in raw.values()):
            raise ValueError("non-finite frame terms: the input is far outside the range seen "
                             "in training (rescale X)")
        return raw
