"""OLED: One-class Learned Encoder-Decoder with adversarial context masking
(Jewell, Reza Jalali, Mercer and Saligrama, 2022).

A Reconstructor R (conv encoder, dense bottleneck, decoder; sec. 3.3) learns to reconstruct
images from which a Mask Module MM (mask generator MG + threshold unit T; sec. 3.4) hides the
share of pixels MM finds hardest to inpaint. R minimises and MM maximises eq. 8,
``L_mask + gamma * L_cont + lam * L_rec`` (eq. 5-7; MM cannot act on ``L_rec``). The novelty
scores are the three losses per image, each scaled to [0, 1] on held-out normal data, and
their average (sec. 3.6).

Facts from the official code (TensorFlow, ``notes/oled.md``) where the paper is silent:
the layer sizes, Keras BatchNorm settings, LeakyReLU slopes 0.2 (R) and 0.3 (MG), Adam
(lr 5e-4, betas 0.5/0.9), MM updated every 3rd epoch, losses as per-element means.
"""

import copy
import math
import numbers
from typing import NamedTuple

import torch
from skorch.callbacks import Callback
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn
from torch.nn import functional as F

from ._checks import check_positive_ints
from ._device import c_ordered
from .base import BaseDeepDetector
from .engine import AdversarialNet
from .nn.layout import channels_last
from .nn import random

__all__ = ["AdversarialMaskingDetector", "ContextAutoencoderDetector", "MaskDrift", "OLEDLoss", "Reconstructor",
           "MaskGenerator", "ThresholdUnit", "RandomBoxMasker"]

#: Keras' BatchNormalization epsilon. Its momentum (0.99, PyTorch's 0.01) is not kept: after
#: the few hundred steps of a small training set the running statistics would still be 30%
#: at their initial values, and scores (computed in eval mode) would be off; PyTorch's 0.1
#: converges in a few dozen steps.
_BN = dict(eps=1e-3, momentum=0.1)
R_SLOPE, MG_SLOPE = 0.2, 0.3


def _bn(n_features, rank):
    return (nn.BatchNorm2d if rank == 3 else nn.BatchNorm1d)(n_features, **_BN)


class Rescale(nn.Module):
    """Map the training input range onto [-1, 1] (sec. 3.4.3): masked pixels, set to 0
    there, take the mid value of the input range."""

    def __init__(self, input_range):
        super().__init__()
        low, high = input_range
        self.register_buffer("center", torch.tensor((low + high) / 2))
        self.register_buffer("half_range", torch.tensor(max((high - low) / 2, 1e-12)))

    def forward(self, x):
        return (x - self.center) / self.half_range


# ---------------------------------------------------------------------------- Reconstructor
class Reconstructor(nn.Module):
    """R (sec. 3.3): ``x -> x_hat``, a conv encoder, a dense bottleneck and a conv decoder.

    Images: 5x5 convs ``channels`` (stride 2 except the last) + BN + LeakyReLU(0.2), a linear
    dense code of ``latent_dim``; the decoder maps the code back to the last grid, then
    mirrors the encoder with 5x5 conv + nearest 2x upsampling + LeakyReLU(0.2) (no BN), and a
    5x5 conv to the input channels. Vectors use dense layers of the same widths.

    ``output="clip"`` clips the output to [-1, 1] as the paper states (with a straight-through
    gradient: a plain clamp passes no gradient to pixels stuck outside the range, and R then
    stops learning); ``"leaky_relu"`` ends with LeakyReLU(0.2) as the official code does.
    """

    def __init__(self, sample_shape, channels=(64, 96, 128), latent_dim=64, output="clip"):
        super().__init__()
        self.output = output
        rank, widths = len(sample_shape), (sample_shape[0], *channels)
        # decoder blocks: (in, out) widths mirror the encoder; they upsample where it strode
        strides = [2] * (len(channels) - 1) + [1]
        enc, dec = [], []
        if rank == 3:
            c, h, w = sample_shape
            self.grid = (channels[-1], _shrunk(h, len(channels) - 1), _shrunk(w, len(channels) - 1))
            self.size = (h, w)
            for a, b, s in zip(widths[:-1], widths[1:], strides):
                enc += [nn.Conv2d(a, b, 5, stride=s, padding=2), _bn(b, 3), nn.LeakyReLU(R_SLOPE)]
            for (a, b), s in zip(_mirrored(channels), strides):
                dec += [nn.Conv2d(a, b, 5, padding=2)]
                dec += [nn.Upsample(scale_factor=2, mode="nearest")] if s == 2 else []
                dec += [nn.LeakyReLU(R_SLOPE)]
            dec.append(nn.Conv2d(channels[0], c, 5, padding=2))
        else:
            self.grid, self.size = (channels[-1],), None
            for a, b in zip(widths[:-1], widths[1:]):
                enc += [nn.Linear(a, b), _bn(b, 1), nn.LeakyReLU(R_SLOPE)]
            for a, b in _mirrored(channels):
                dec += [nn.Linear(a, b), nn.LeakyReLU(R_SLOPE)]
            dec.append(nn.Linear(channels[0], sample_shape[0]))
        self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(math.prod(self.grid), latent_dim))
        self.expand = nn.Linear(latent_dim, math.prod(self.grid))
        self.decoder = nn.Sequential(*dec)

    def forward(self, x):
        if x.ndim == 4:  # channels-last runs oneDNN's fast convolutions on CPU
            x = channels_last(x)
        grid = self.expand(self.encoder(x)).view(len(x), *self.grid)
        if self.size is not None:
            grid = channels_last(grid)
        x_hat = self.decoder(grid)
        if self.size is not None:
            x_hat = x_hat[:, :, : self.size[0], : self.size[1]]
        if self.output == "leaky_relu":
            return F.leaky_relu(x_hat, R_SLOPE)
        # clipped values, identity gradient: a plain clamp stops learning at pixels whose
        # pre-activation has left [-1, 1] (most of MNIST's background sits at -1)
        return x_hat + (x_hat.clamp(-1, 1) - x_hat).detach()


def _mirrored(channels):
    """(in, out) widths of the decoder blocks that mirror encoder widths ``channels``."""
    outs = tuple(channels[::-1])
    return list(zip((channels[-1], *outs[:-1]), outs))


def _shrunk(size, n_halvings):
    for _ in range(n_halvings):
        size = math.ceil(size / 2)
    return size


# ---------------------------------------------------------------------------- Mask module
class MaskGenerator(nn.Module):
    """MG (sec. 3.4.1): a small conv autoencoder with a spatial bottleneck -> one activation
    map ``A >= 0`` per image (ReLU output), of the input's height and width.

    Images: 5x5 stride-2 convs ``channels`` + LeakyReLU(0.3) (BN after all but the first, as in
    the code), then mirrored 5x5 conv + 2x upsampling + LeakyReLU(0.3), and a 5x5 conv to one
    channel + ReLU. Vectors: dense layers of the same widths, one activation per feature.
    """

    def __init__(self, sample_shape, channels=(32, 48)):
        super().__init__()
        rank, layers = len(sample_shape), []
        widths = (sample_shape[0], *channels)
        if rank == 3:
            self.size = sample_shape[1:]
            for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
                layers += [nn.Conv2d(a, b, 5, stride=2, padding=2)]
                layers += [_bn(b, 3)] if i > 0 else []
                layers += [nn.LeakyReLU(MG_SLOPE)]
            for a, b in _mirrored(channels):
                layers += [nn.Conv2d(a, b, 5, padding=2), nn.Upsample(scale_factor=2, mode="nearest"),
                           nn.LeakyReLU(MG_SLOPE)]
            layers += [nn.Conv2d(channels[0], 1, 5, padding=2), nn.ReLU()]
        else:
            self.size = None
            for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
                layers += [nn.Linear(a, b)] + ([_bn(b, 1)] if i > 0 else []) + [nn.LeakyReLU(MG_SLOPE)]
            for a, b in _mirrored(channels):
                layers += [nn.Linear(a, b), nn.LeakyReLU(MG_SLOPE)]
            layers += [nn.Linear(channels[0], sample_shape[0]), nn.ReLU()]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        if self.size is None:
            return self.net(x)
        a = self.net(channels_last(x))
        return a[:, :, : self.size[0], : self.size[1]]


def n_masked(mask_ratio, n_pixels):
    """Number of pixels (features) hidden per sample: ``round(mask_ratio * n)``, at least 1."""
    return min(max(int(round(mask_ratio * n_pixels)), 1), n_pixels)


class ThresholdUnit(nn.Module):
    """T (sec. 3.4.2): hide the ``mask_ratio`` share of pixels with the highest activations.

    The returned mask is exactly binary (1 keep, 0 hide) and hides exactly
    ``n_masked(mask_ratio, H*W)`` pixels per image, ties broken by pixel position (a stable
    sort), so an all-zero activation map still hides the requested share. Its gradient is
    that of a continuous surrogate (straight-through: ``hard + soft - soft.detach()``):

    * ``"relu"``: eq. 2, ``relu(s - A) / (relu(s - A) + eps)`` with ``s`` the largest kept
      activation (the percentile of the code). This is the paper's form; its gradient is
      ``-eps / (s - A + eps)^2``, essentially zero, so MG learns next to nothing through it.
    * ``"sigmoid"`` (a documented deviation): ``sigmoid((s - A) / (temperature * std(A)))``
      with ``s`` midway between the last hidden and the first kept activation, which passes
      a usable gradient to MG.
    """

    def __init__(self, mask_ratio=0.125, mode="relu", temperature=0.5, eps=1e-12):
        super().__init__()
        self.mask_ratio, self.mode, self.temperature, self.eps = mask_ratio, mode, temperature, eps

    def forward(self, a):
        flat = a.flatten(1)
        k = n_masked(self.mask_ratio, flat.shape[1])
        order = torch.argsort(flat, dim=1, descending=True, stable=True)
        hard = torch.ones_like(flat).scatter_(1, order[:, :k], 0.0)
        # largest kept activation (or the smallest one when every pixel is hidden)
        kept = flat.gather(1, order[:, min(k, flat.shape[1] - 1)].unsqueeze(1))
        if self.mode == "relu":
            r = F.relu(kept - flat)
            soft = r / (r + self.eps)
        else:
            hidden = flat.gather(1, order[:, k - 1].unsqueeze(1))
            scale = self.temperature * flat.detach().std(1, correction=0, keepdim=True) + 1e-8
            soft = torch.sigmoid(((hidden + kept) / 2 - flat) / scale)
        return (hard + (soft - soft.detach())).view_as(a)


class MaskModule(nn.Module):
    """MM = T(MG(x)): a binary mask of the input's spatial shape (one channel for images)."""

    def __init__(self, sample_shape, channels, mask_ratio, threshold, temperature):
        super().__init__()
        self.generator = MaskGenerator(sample_shape, channels)
        self.threshold = ThresholdUnit(mask_ratio, threshold, temperature)

    def forward(self, x):
        return self.threshold(self.generator(x))


_PRIME = 100003


class RandomBoxMasker(nn.Module):
    """The context autoencoder's masks (sec. 4.6): one random box of ``n_masked`` area.

    Images get a ``s x s`` square with ``s = round(sqrt(mask_ratio * H * W))`` (10 x 10 on
    MNIST), vectors a window of ``n_masked`` consecutive features. Training draws the position
    from torch's (seeded) generator; at inference the position is a hash of the sample's
    values, so it is random across samples but the same for a sample wherever it is scored.
    """

    def __init__(self, sample_shape, mask_ratio):
        super().__init__()
        spatial = tuple(sample_shape[1:]) if len(sample_shape) == 3 else tuple(sample_shape)
        if len(spatial) == 2:
            side = min(max(int(round(math.sqrt(mask_ratio * math.prod(spatial)))), 1), *spatial)
            self.box = (side, side)
        else:
            self.box = (n_masked(mask_ratio, spatial[0]),)
        self.spatial = spatial
        self.register_buffer("hash_weights", torch.randint(1, 1 << 16, (math.prod(sample_shape),)))

    def forward(self, x):
        n = len(x)
        room = [s - b + 1 for s, b in zip(self.spatial, self.box)]
        if self.training:
            u = random.rand((n, len(room)), device=x.device)
        else:
            q = (x.flatten(1) * 255).round().clamp(-(1 << 15), 1 << 15).long()
            h = (q * self.hash_weights).sum(1, keepdim=True).abs() % _PRIME
            h = (h * torch.tensor([1, 7919], device=x.device)[: len(room)]) % _PRIME
            u = (h.double() / _PRIME).float()
        start = (u * torch.tensor(room, device=x.device)).long()
        inside = None
        for axis, (size, b) in enumerate(zip(self.spatial, self.box)):
            pos = torch.arange(size, device=x.device)
            hit = (pos >= start[:, axis:axis + 1]) & (pos < start[:, axis:axis + 1] + b)
            shape = [n] + [1] * len(self.spatial)
            shape[axis + 1] = size
            hit = hit.view(shape)
            inside = hit if inside is None else inside & hit
        mask = (~inside).to(x.dtype)
        return mask.unsqueeze(1) if len(self.spatial) == 2 else mask


# ---------------------------------------------------------------------------- model and losses
class MaskedOutput(NamedTuple):
    x: torch.Tensor           # input rescaled to [-1, 1]
    rec: torch.Tensor         # R(x)
    rec_masked: torch.Tensor  # R(x_m)
    mask: torch.Tensor        # 1 keep, 0 hidden; (n, 1, H, W) for images, (n, d) for vectors


class MaskedReconstructionModule(nn.Module):
    """``x -> (x, R(x), R(x_m), M)`` with ``x_m = x * M`` (eq. 3); ``adversary`` produces M."""

    def __init__(self, input_range, reconstructor, masker):
        super().__init__()
        self.rescale = Rescale(input_range)
        self.reconstructor = reconstructor
        self.masker = masker

    @property
    def adversary(self):
        """The mask producer: OLED's MM (trained by :class:`AdversarialNet`) or random boxes."""
        return self.masker

    def forward(self, x):
        x = self.rescale(x)
        mask = self.adversary(x)
        return MaskedOutput(x, self.reconstructor(x), self.reconstructor(x * mask), mask)


class OLEDLoss(nn.Module):
    """Eq. 5-8. R minimises ``L_mask + gamma * L_cont + lam * L_rec``; MM maximises
    ``L_mask + gamma * L_cont`` (``adversary_loss`` is its negative).

    As in the official code the batch losses are means over all elements: ``L_mask`` and
    ``L_rec`` of squared errors, ``L_cont`` of absolute errors inside the hidden region (zero
    elsewhere; the region is the mask itself, so MM's surrogate gradient also says which pixels
    to hide, not only how hiding changes R's input). ``per_sample`` gives the scores of sec. 3.6 before scaling: per-image sums.
    """

    def __init__(self, gamma=50.0, lam=1.0):
        super().__init__()
        self.gamma, self.lam = gamma, lam

    @staticmethod
    def _errors(out):
        hidden = 1.0 - out.mask  # exactly 0/1; differentiable for MM's surrogate gradient
        return {"rec": (out.x - out.rec).square(),
                "mask": (out.x - out.rec_masked).square(),
                "cont": ((out.x - out.rec_masked) * hidden).abs()}

    def per_sample(self, out, x):
        return {name: e.flatten(1).sum(1) for name, e in self._errors(out).items()}

    def per_pixel(self, out, x):
        """The per-value errors whose per-image sums are ``per_sample``."""
        return {name: e.expand_as(out.x) for name, e in self._errors(out).items()}

    def losses(self, out):
        """Batch means ``{"rec": L_rec, "mask": L_mask, "cont": L_cont}`` (eq. 7, 5, 6)."""
        return {name: e.mean() for name, e in self._errors(out).items()}

    def forward(self, out, x):
        L = self.losses(out)
        return L["mask"] + self.gamma * L["cont"] + self.lam * L["rec"]

    def adversary_loss(self, out, x):
        L = self.losses(out)
        return -(L["mask"] + self.gamma * L["cont"])


# ---------------------------------------------------------------------------- estimators
SCORES = ("rec", "mask", "cont", "avg")


class _MaskedReconstructionDetector(BaseDeepDetector):
    """Shared by OLED and the context autoencoder: R, the losses of eq. 5-8 and the four scores."""

    _sample_ranks = (1, 3)
    _score_maps = True
    _parameter_constraints = {
        **BaseDeepDetector._parameter_constraints,
        "mask_ratio": [Interval(numbers.Real, 0, 1, closed="neither")],
        "gamma": [Interval(numbers.Real, 0, None, closed="left")],
        "lam": [Interval(numbers.Real, 0, None, closed="left")],
        "score_type": [StrOptions(set(SCORES))],
        "latent_dim": [Interval(numbers.Integral, 1, None, closed="left")],
        "channels": [tuple, list],
        "output": [StrOptions({"clip", "leaky_relu"})],
    }

    @property
    def _novelty_terms(self):
        return ("rec", "mask", "cont") if self.score_type == "avg" else (self.score_type,)

    def _check_common(self):
        check_positive_ints("channels", self.channels)

    def _reconstructor(self, sample_shape):
        return Reconstructor(sample_shape, tuple(self.channels), self.latent_dim, self.output)

    def _build_criterion(self, sample_shape):
        return OLEDLoss(self.gamma, self.lam)

    def _net_kwargs(self):
        return {"optimizer__betas": (0.5, 0.9)}

    def _scaled(self, terms):
        """Each term scaled to [0, 1] by its held-out min and max, and their average."""
        scaled = {name: self._normalized(name, terms[name]) for name in ("rec", "mask", "cont")}
        scaled["avg"] = (scaled["rec"] + scaled["mask"] + scaled["cont"]) / 3
        return scaled

    def _combine(self, terms):
        return -self._scaled(terms)[self.score_type]

    def _combine_maps(self, maps):
        # as _scaled: the three terms are averaged for "avg"
        return super()._combine_maps(maps) / len(self._novelty_terms)

    def score_components(self, X):
        """The four scores of sec. 3.6 per sample (higher = more novel).

        ``rec``, ``mask`` and ``cont`` are the per-image losses scaled by the minimum and
        maximum on the held-out normal rows (so normal data falls mostly in [0, 1]); ``avg`` is
        their mean. ``score_samples`` is minus the one named by ``score_type``.

        Parameters
        ----------
        X : array-like of the fitted sample shape, or flat rows with ``image_shape``
            Samples to score.

        Returns
        -------
        dict with keys "rec", "mask", "cont", "avg" -> ndarray of shape (n,)

        See Also
        --------
        score_samples : Minus the score named by ``score_type``.
        score_maps : Where in each sample the score named by ``score_type`` comes from.
        masks : The masks that hide part of each sample for ``mask`` and ``cont``.
        """
        return self._scaled(super().score_components(X))

    def masks(self, X):
        """The binary masks applied to ``X`` (1 kept, 0 hidden).

        Parameters
        ----------
        X : array-like of the fitted sample shape, or flat rows with ``image_shape``
            Samples to mask.

        Returns
        -------
        ndarray of shape (n, 1, H, W) for images, (n, d) for vectors

        See Also
        --------
        score_components : The scores of sec. 3.6 (``mask`` and ``cont`` use the masked input).
        score_maps : Where in each sample the novelty score comes from.
        """
        check_is_fitted(self)
        module = self.net_.module_
        return self._map_chunks(self._validate_X(X, reset=False),
                                lambda xb: module.adversary(module.rescale(xb)))


_COMMON_DOC = """
    mask_ratio : float in (0, 1), default=0.125
        Share of pixels hidden per image (1 - t/100 with the paper's threshold t = 87.5).
    gamma : float, default=50.0
        Weight of the context loss L_cont in eq. 8 (paper sec. 4.1; the code uses 12.5 for
        MNIST, 30 for CIFAR-10 and 50 for UCSD). On full MNIST at 5 epochs, 12.5 raised
        classes 2, 4 and 7 and lowered six others: mean s_avg 0.910 against 0.934 at 50
        (``benchmarks/results/paper_oled.md``).
    lam : float, default=1.0
        Weight of the full-image reconstruction loss L_rec in eq. 8.
    score_type : {"avg", "rec", "mask", "cont"}, default="avg"
        Which score of sec. 3.6 ``score_samples`` returns (``score_components`` gives all).
    latent_dim : int, default=64
        Size of R's dense bottleneck.
    channels : tuple of int, default=(64, 96, 128)
        R's encoder convolutions (stride 2 except the last; the decoder mirrors them). For
        vectors, the widths of the dense layers.
    output : {"clip", "leaky_relu"}, default="clip"
        R's output: clipped to [-1, 1] (paper, sec. 3.3) or LeakyReLU(0.2) (official code).
"""


class AdversarialMaskingDetector(_MaskedReconstructionDetector):
    __doc__ = """OLED: a reconstructor trained against a learned mask module.

    Inputs are rescaled from their training range to [-1, 1]; hidden pixels are set to 0, the
    mid value (sec. 3.4.3). Each training step reconstructs ``x`` and the masked ``x_m`` with R
    and updates R on eq. 8; on every ``mask_update_period``-th epoch MM is updated from the
    same forward pass to maximise ``L_mask + gamma * L_cont`` (two Adam optimizers, lr 5e-4,
    betas (0.5, 0.9), in skorch's engine: :class:`~sknovelty.engine.AdversarialNet`).

    Images ``(n, C, H, W)`` (or flat rows with ``image_shape``) use the MNIST networks of the
    official code; masks are one channel, broadcast over colour channels. Vectors ``(n, d)``
    use dense networks of the same widths and mask features.

    Parameters
    ----------""" + _COMMON_DOC + """    mask_channels : tuple of int, default=(32, 48)
        MG's stride-2 convolutions (mirrored on the way up).
    mask_update_period : int, default=3
        MM is updated on epochs 0, k, 2k, ... (the official code's ``epoch % 3 == 0``).
    threshold : {"relu", "sigmoid"}, default="relu"
        Gradient surrogate of the threshold unit (see ``ThresholdUnit``): ``"relu"`` is
        the paper's eq. 2, which passes almost no gradient to MG (see
        :ref:`design-oled-threshold`); ``"sigmoid"`` is a differentiable alternative (a
        deviation from the paper). The masks themselves are exactly binary in both.
    temperature : float, default=0.5
        Width of the ``"sigmoid"`` surrogate in units of the activation map's std.
    epochs : int, default=20
    batch_size : int or "auto", default="auto"
        64, or fewer on training sets of fewer than ~384 rows so that an epoch keeps 6
        batches (see :class:`~sknovelty.base.BaseDeepDetector`): with too few Adam steps R
        stays undertrained; see :ref:`design-batch-size-auto`.
    learning_rate : float, default=5e-4
    validation_fraction : float, default=0.1
    contamination : float, default=0.1
    device : str, default="auto"
    random_state : int, RandomState instance or None, default=None
    verbose : int, default=0
    image_shape : tuple (C, H, W) or None, default=None
    callbacks : list of skorch callbacks or None, default=None
    n_jobs : int or None, default=None
    score_batch_size : int or "auto", default="auto"
    precision : {"float32", "bfloat16"}, default="float32"
        See :class:`~sknovelty.base.BaseDeepDetector` for these common parameters.

    Attributes
    ----------
    net_ : AdversarialNet
        The trained skorch net; ``net_.module_.reconstructor`` is R, ``net_.module_.adversary``
        is MM; ``net_.history`` has ``train_loss`` (R's loss) and ``adversary_loss``.
    normalization_ : dict
        ``{"rec"|"mask"|"cont": (min, max)}`` of the per-image losses on held-out normal rows.
    offset_ : float
        Threshold on ``score_samples`` (see ``contamination``).
    input_range_ : tuple
        Minimum and maximum of the training data, mapped to [-1, 1].
    sample_shape_, device_, n_features_in_
        As in :class:`~sknovelty.base.BaseDeepDetector`.

    Notes
    -----
    Choices where paper and code differ or are silent: losses are per-element means (code);
    R's output is clipped (paper; ``output="leaky_relu"`` for the code); the threshold unit
    hides exactly ``round(mask_ratio * H * W)`` pixels (the code's percentile can hide one
    more, or give 0.5 on ties); scaling constants are fixed on held-out normal rows (the code
    scales on the evaluated set); no model selection with labelled outliers (the code picks
    the best epoch on a validation set with outliers). The paper trains 300 epochs with batch
    1024; the defaults here are set for small training sets and a CPU budget.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sknovelty import AdversarialMaskingDetector
    >>> X, y = load_digits(return_X_y=True)
    >>> det = AdversarialMaskingDetector(channels=(8, 16), mask_channels=(4, 8), epochs=2,
    ...                                  image_shape=(1, 8, 8), random_state=0)
    >>> det = det.fit(X[y == 0] / 16)
    >>> sorted(det.score_components(X[:3] / 16))
    ['avg', 'cont', 'mask', 'rec']
    >>> det.masks(X[:3] / 16).shape
    (3, 1, 8, 8)
    >>> int(det.masks(X[:1] / 16).sum())   # 64 pixels, 8 hidden
    56
    """

    _net_class = AdversarialNet

    def __init__(self, mask_ratio=0.125, gamma=50.0, lam=1.0, score_type="avg", latent_dim=64,
                 channels=(64, 96, 128), output="clip", mask_channels=(32, 48),
                 mask_update_period=3, threshold="relu", temperature=0.5, *, epochs=20,
                 batch_size="auto", learning_rate=5e-4, validation_fraction=0.1, contamination=0.1,
                 device="auto", random_state=None, verbose=0, image_shape=None, callbacks=None, n_jobs=None,
                 score_batch_size="auto", precision="float32"):
        self.mask_ratio = mask_ratio
        self.gamma = gamma
        self.lam = lam
        self.score_type = score_type
        self.latent_dim = latent_dim
        self.channels = channels
        self.output = output
        self.mask_channels = mask_channels
        self.mask_update_period = mask_update_period
        self.threshold = threshold
        self.temperature = temperature
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
        **_MaskedReconstructionDetector._parameter_constraints,
        "mask_channels": [tuple, list],
        "mask_update_period": [Interval(numbers.Integral, 1, None, closed="left")],
        "threshold": [StrOptions({"relu", "sigmoid"})],
        "temperature": [Interval(numbers.Real, 0, None, closed="neither")],
    }

    def _check_hyperparameters(self):
        self._check_common()
        check_positive_ints("mask_channels", self.mask_channels)

    def _build_module(self, sample_shape, input_range):
        mm = MaskModule(sample_shape, tuple(self.mask_channels), self.mask_ratio, self.threshold,
                        self.temperature)
        return MaskedReconstructionModule(input_range, self._reconstructor(sample_shape), mm)

    def _net_kwargs(self):
        return {**super()._net_kwargs(), "adversary_period": self.mask_update_period}


class ContextAutoencoderDetector(_MaskedReconstructionDetector):
    __doc__ = """Context autoencoder (CAE): OLED's reconstructor with random square masks.

    The baseline of OLED's ablation (sec. 4.6): the same reconstructor R, the same loss (eq. 8)
    and the same four scores as :class:`~sknovelty.AdversarialMaskingDetector`, but the hidden
    region is one random square of the same area (10 x 10 on 28 x 28 MNIST) instead of the
    learned mask. At scoring time the square's position is random across samples (a hash of
    the sample, see ``sknovelty.oled.RandomBoxMasker``), as the paper masks randomly at
    test time, yet a sample always gets the same square. Vectors get a random window of
    consecutive features.

    Parameters
    ----------""" + _COMMON_DOC + """    epochs : int, default=20
    batch_size : int or "auto", default="auto"
        64, or fewer on training sets of fewer than ~384 rows so that an epoch keeps 6
        batches (see :class:`~sknovelty.base.BaseDeepDetector`): with too few Adam steps R
        stays undertrained; see :ref:`design-batch-size-auto`.
    learning_rate : float, default=5e-4
    validation_fraction, contamination, device, random_state, verbose, image_shape, callbacks,
    n_jobs, score_batch_size, precision
        See :class:`~sknovelty.base.BaseDeepDetector`.

    Attributes
    ----------
    net_, normalization_, offset_, input_range_, sample_shape_, device_, n_features_in_
        As in :class:`~sknovelty.AdversarialMaskingDetector`.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sknovelty import ContextAutoencoderDetector
    >>> X, y = load_digits(return_X_y=True)
    >>> det = ContextAutoencoderDetector(channels=(8, 16), epochs=2, image_shape=(1, 8, 8),
    ...                                  random_state=0).fit(X[y == 0] / 16)
    >>> (det.masks(X[:2] / 16) == 0).sum(axis=(1, 2, 3))   # one 3 x 3 square each
    array([9, 9])
    """

    def __init__(self, mask_ratio=0.125, gamma=50.0, lam=1.0, score_type="avg", latent_dim=64,
                 channels=(64, 96, 128), output="clip", *, epochs=20, batch_size="auto",
                 learning_rate=5e-4, validation_fraction=0.1, contamination=0.1, device="auto",
                 random_state=None, verbose=0, image_shape=None, callbacks=None, n_jobs=None,
                 score_batch_size="auto", precision="float32"):
        self.mask_ratio = mask_ratio
        self.gamma = gamma
        self.lam = lam
        self.score_type = score_type
        self.latent_dim = latent_dim
        self.channels = channels
        self.output = output
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

    def _check_hyperparameters(self):
        self._check_common()

    def _build_module(self, sample_shape, input_range):
        return MaskedReconstructionModule(input_range, self._reconstructor(sample_shape),
                                          RandomBoxMasker(sample_shape, self.mask_ratio))


class MaskDrift(Callback):
    """skorch callback measuring how much OLED's mask module moves during training.

    It records in the history, for the probe images ``X_probe`` (shaped like the training
    samples):

    * ``mask_iou`` (every epoch): mean intersection-over-union of the hidden pixels with the
      masks the untrained MM gave the same images (1.0 = the masks have not changed). Masks
      are computed on a copy of MM in training mode, so BatchNorm uses the probe's own
      statistics and the IoU reflects parameter changes only, not running averages;
    * ``mask_param_change`` (every epoch): ``||theta - theta_0|| / ||theta_0||`` over MG;
    * ``mask_grad_norm`` (epochs where MM is updated): mean over batches of the L2 norm of the
      gradient MM receives.

    Example: ``AdversarialMaskingDetector(callbacks=[MaskDrift(X[:256])])``, then
    ``det.net_.history[:, "mask_iou"]``.
    """

    def __init__(self, X_probe):
        self.X_probe = X_probe

    def _hidden(self, net):
        masker = copy.deepcopy(net.module_.masker).train()
        with torch.no_grad():
            x = torch.from_numpy(c_ordered(self.X_probe)).to(net.device)
            return masker(net.module_.rescale(x)).flatten(1) < 0.5

    def _params(self, net):
        return torch.cat([p.detach().flatten() for p in net.module_.masker.parameters()])

    def on_train_begin(self, net, **kwargs):
        self.hidden_0_, self.theta_0_ = self._hidden(net), self._params(net).clone()

    def on_epoch_begin(self, net, **kwargs):
        self.grad_norms_ = []

    def on_grad_computed(self, net, named_parameters, **kwargs):
        grads = [p.grad.flatten() for name, p in named_parameters
                 if name.startswith("masker.") and p.grad is not None]
        if grads:
            self.grad_norms_.append(torch.cat(grads).norm())

    def on_epoch_end(self, net, **kwargs):
        hidden = self._hidden(net)
        inter = (hidden & self.hidden_0_).sum(1).double()
        union = (hidden | self.hidden_0_).sum(1).double().clamp(min=1)
        net.history.record("mask_iou", float((inter / union).mean()))
        change = (self._params(net) - self.theta_0_).norm() / self.theta_0_.norm().clamp(min=1e-12)
        net.history.record("mask_param_change", float(change))
        if self.grad_norms_:
            net.history.record("mask_grad_norm", float(torch.stack(self.grad_norms_).mean()))
        self.grad_norms_ = []

    def on_train_end(self, net, **kwargs):
        # no device tensors are kept once training ends: the callback is pickled with the
        # model, and CUDA tensors here would stop a CUDA-fitted model loading without a GPU
        self.hidden_0_ = self.theta_0_ = None
        self.grad_norms_ = []
