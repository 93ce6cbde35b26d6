"""LTG: an autoencoder trained with learned pseudo anomalies (Astrid, Zaheer, Aouada, Lee).

An autoencoder F learns to reconstruct normal data X^N (eq. 2) and, with probability ``p``
per sample, to reconstruct X^N from a pseudo anomaly ``X^P = X^N + dX`` (eq. 1, 3, 4), so it
learns *not* to reconstruct what lies off the normal data. The noise ``dX = G(X^N)`` comes
from a generator G, trained against F, that looks for the noisiest pseudo anomalies F still
reconstructs well: ``||F(X^P) - X^P||^2 - lam * ||dX||^2`` (eq. 6-7). X^P is clipped to the
input range and dX recomputed as ``X^P - X^N`` (sec. 4.2). ``noise="gaussian"`` replaces G by
``N(0, sigma)`` noise (eq. 5), ``noise="none"`` is the paper's baseline (p = 0).
"""

import math
import numbers
from typing import NamedTuple

import numpy as np
import torch
from skorch.callbacks import Callback
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn
from torch.nn import functional as F

from .base import BaseDeepDetector
from .engine import AdversarialNet, DetectorNet
from .nn.blocks import scale_channels
from .nn.layout import channels_last
from .nn import random

__all__ = ["PseudoAnomalyDetector", "LTGLoss", "LTGModule", "NoiseMonitor", "psnr"]

F_SLOPE = 0.2  # LeakyReLU of the video networks (tables 3-4)


# ---------------------------------------------------------------------------- image networks
def _pad_to(size, multiple=16):
    return max(2 * multiple, math.ceil(size / multiple) * multiple)


class ImageAutoencoder(nn.Module):
    """Tables 5 (F) and 6 (G): 3x3 stride-2 convs (padding 0) + BN + ReLU with ``channels``
    ``(c1, ..., ck)``; transposed 3x3 stride-2 convs ``ck -> ck -> c(k-1) ... -> c2`` + BN +
    ReLU; a 4x4 stride-2 transposed conv ``c2 -> C``; then ``out`` (sigmoid for F, tanh for
    G). This chain maps sizes that are multiples of 16 onto themselves, so inputs are
    zero-padded to such a size and the output cropped back (MNIST: 28 -> 32 -> 28)."""

    def __init__(self, image_shape, channels, out):
        super().__init__()
        c, self.h, self.w = image_shape
        self.padded = (_pad_to(self.h), _pad_to(self.w))
        widths, layers = (c, *channels), []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(a, b, 3, stride=2), nn.BatchNorm2d(b), nn.ReLU()]
        dec = (channels[-1], *channels[::-1][:-1])
        for a, b in zip(dec[:-1], dec[1:]):
            layers += [nn.ConvTranspose2d(a, b, 3, stride=2), nn.BatchNorm2d(b), nn.ReLU()]
        layers.append(nn.ConvTranspose2d(dec[-1], c, 4, stride=2))
        self.net = nn.Sequential(*layers)
        self.out = out

    def forward(self, x):
        ph, pw = self.padded[0] - self.h, self.padded[1] - self.w
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        y = self.net(channels_last(x))
        return self.out(y[:, :, ph // 2: ph // 2 + self.h, pw // 2: pw // 2 + self.w])


# ---------------------------------------------------------------------------- video networks
class VideoAutoencoder(nn.Module):
    """Tables 3 (F) and 4 (G) on clips ``(n, C, T, H, W)``: 3x3x3 convs (padding 1), stride
    (1, 2, 2) first and 2 after, + BN + LeakyReLU(0.2); the mirrored transposed convs (output
    padding chosen to restore each size; BN + LeakyReLU except after the last), then ``out``
    (tanh for F, 2 tanh for G)."""

    def __init__(self, clip_shape, channels, out):
        super().__init__()
        c, t, h, w = clip_shape
        strides = [(1, 2, 2)] + [(2, 2, 2)] * (len(channels) - 1)
        widths, layers, sizes, size = (c, *channels), [], [], (t, h, w)
        for a, b, s in zip(widths[:-1], widths[1:], strides):
            sizes.append(size)
            layers += [nn.Conv3d(a, b, 3, stride=s, padding=1), nn.BatchNorm3d(b),
                       nn.LeakyReLU(F_SLOPE)]
            size = tuple((d - 1) // st + 1 for d, st in zip(size, s))
        rev = widths[::-1]
        for i, (s, target) in enumerate(zip(strides[::-1], sizes[::-1])):
            op = tuple(tgt - ((d - 1) * st + 1) for tgt, d, st in zip(target, size, s))
            layers.append(nn.ConvTranspose3d(rev[i], rev[i + 1], 3, stride=s, padding=1,
                                             output_padding=op))
            if i < len(strides) - 1:
                layers += [nn.BatchNorm3d(rev[i + 1]), nn.LeakyReLU(F_SLOPE)]
            size = target
        self.net = nn.Sequential(*layers)
        self.out = out

    def forward(self, x):
        return self.out(self.net(x))


# ---------------------------------------------------------------------------- vector networks
class VectorAutoencoder(nn.Module):
    """A fully connected pair for vectors: dense + BN + ReLU layers ``channels``, mirrored."""

    def __init__(self, n_features, channels, out):
        super().__init__()
        widths, layers = (n_features, *channels), []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()]
        rev = widths[::-1]
        for i, (a, b) in enumerate(zip(rev[:-1], rev[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(rev) - 2:
                layers += [nn.BatchNorm1d(b), nn.ReLU()]
        self.net, self.out = nn.Sequential(*layers), out

    def forward(self, x):
        return self.out(self.net(x))


class Scaled(nn.Module):
    """``scale * f(x)`` for an activation ``f`` (G's ``2 * tanh`` on video)."""

    def __init__(self, fn, scale=1.0):
        super().__init__()
        self.fn, self.scale = fn, scale

    def forward(self, x):
        return self.scale * self.fn(x)


DEFAULT_CHANNELS = {  # (F, G) widths of the paper's appendix
    1: ((256, 128, 64), (128, 64)),
    3: ((64, 128, 128, 256), (64, 128, 128)),
    4: ((96, 128, 256, 256), (96, 128, 256)),
}


def build_networks(sample_shape, width=1.0):
    """F and G for vectors, images or clips, and the value range the data is mapped to."""
    rank = len(sample_shape)
    f_ch, g_ch = (scale_channels(c, width) for c in DEFAULT_CHANNELS[rank])
    if rank == 1:
        return (VectorAutoencoder(sample_shape[0], f_ch, nn.Sigmoid()),
                VectorAutoencoder(sample_shape[0], g_ch, nn.Tanh()), (0.0, 1.0))
    if rank == 3:
        return (ImageAutoencoder(sample_shape, f_ch, nn.Sigmoid()),
                ImageAutoencoder(sample_shape, g_ch, nn.Tanh()), (0.0, 1.0))
    return (VideoAutoencoder(sample_shape, f_ch, nn.Tanh()),
            VideoAutoencoder(sample_shape, g_ch, Scaled(torch.tanh, 2.0)), (-1.0, 1.0))


# ---------------------------------------------------------------------------- model and loss
class LTGOutput(NamedTuple):
    x: torch.Tensor          # X^N mapped to the network range
    rec: torch.Tensor        # F(input): input is X^P for the pseudo-anomalous rows, else X^N
    selected: torch.Tensor   # bool (n,): rows that were replaced by pseudo anomalies
    pseudo: torch.Tensor     # X^P of the selected rows (clipped)
    delta: torch.Tensor      # dX = X^P - X^N of the selected rows


class LTGModule(nn.Module):
    """F and G (``adversary``). In training mode each row becomes ``X^P`` with probability
    ``p``; the noise is ``G(X^N)`` (``"learned"``), ``sigma * N(0, 1)`` (``"gaussian"``) or
    absent (``"none"``). In eval mode F reconstructs its input."""

    def __init__(self, sample_shape, input_range, noise="learned", p=0.5, sigma=0.5, width=1.0):
        super().__init__()
        self.reconstructor, generator, self.range = build_networks(sample_shape, width)
        self.noise, self.p, self.sigma = noise, p, sigma
        self.generator = generator if noise == "learned" else None
        low, high = input_range
        lo, hi = self.range
        self.register_buffer("scale", torch.tensor((hi - lo) / max(high - low, 1e-12)))
        self.register_buffer("shift", torch.tensor(lo - low * (hi - lo) / max(high - low, 1e-12)))

    @property
    def adversary(self):
        return self.generator

    def to_range(self, x):
        return x * self.scale + self.shift

    def from_range(self, x):
        return (x - self.shift) / self.scale

    def make_pseudo(self, x):
        """``X^P = clip(X^N + dX)`` and the recomputed ``dX = X^P - X^N`` (eq. 4, 6, sec. 4.2)."""
        delta = self.generator(x) if self.noise == "learned" else self.sigma * random.randn_like(x)
        pseudo = x.add(delta).clamp(*self.range)
        return pseudo, pseudo - x

    def forward(self, x):
        x = self.to_range(x)
        n = len(x)
        if self.training and self.noise != "none" and self.p > 0:
            selected = random.rand(n, device=x.device) < self.p
        else:
            selected = torch.zeros(n, dtype=torch.bool, device=x.device)
        if not selected.any():
            return LTGOutput(x, self.reconstructor(x), selected, x[:0], x[:0])
        # G sees the whole batch (BatchNorm statistics of a full batch, never of one row);
        # the selected rows become pseudo anomalies
        pseudo, delta = self.make_pseudo(x)
        pseudo, delta = pseudo[selected], delta[selected]
        inputs = x.clone()
        inputs[selected] = pseudo
        return LTGOutput(x, self.reconstructor(inputs), selected, pseudo, delta)


def _per_sample_mean(e):
    return e.flatten(1).mean(1)


def psnr(mse, peak=1.0):
    """``10 log10(peak^2 / mse)`` (per frame, as the video protocol of the paper)."""
    return 10 * torch.log10(peak ** 2 / mse.clamp(min=1e-12))


class LTGLoss(nn.Module):
    """F's loss (eq. 2-3): squared error to X^N for every row, normal or pseudo anomalous,
    averaged over T x C x H x W and the batch. G's loss (eq. 7) on the pseudo-anomalous rows:
    ``mean(||F(X^P) - X^P||^2 - lam * ||dX||^2)`` with the same per-element averaging.

    ``per_sample`` gives ``rec`` (mean squared error per sample) and, for clips, ``frame_rec``
    (that of frame ``score_frame``) and ``psnr`` (of that frame: ``10 log10(1 / mse)`` on the
    [-1, 1] range; higher = more normal, as in the paper).
    """

    def __init__(self, lam=5.0, score_frame=8):
        super().__init__()
        self.lam, self.score_frame = lam, score_frame

    def per_sample(self, out, x):
        err = (out.rec - out.x).square()
        terms = {"rec": _per_sample_mean(err)}
        if err.ndim == 5:
            terms["frame_rec"] = _per_sample_mean(err[:, :, self.score_frame])
            terms["psnr"] = psnr(terms["frame_rec"])
        return terms

    def per_pixel(self, out, x):
        """Squared errors scaled so that each map sums to its ``per_sample`` term."""
        err = (out.rec - out.x).square()
        maps = {"rec": err / err[0].numel()}
        if err.ndim == 5:
            frame = torch.zeros_like(err)
            frame[:, :, self.score_frame] = err[:, :, self.score_frame] / err[0, :, 0].numel()
            maps["frame_rec"] = frame
        return maps

    def forward(self, out, x):
        return (out.rec - out.x).square().mean()

    def adversary_loss(self, out, x):
        if not out.selected.any():
            return out.rec.sum() * 0.0
        rec_pseudo = out.rec[out.selected]
        per_row = (_per_sample_mean((rec_pseudo - out.pseudo).square())
                   - self.lam * _per_sample_mean(out.delta.square()))
        return per_row.mean()


class NoiseMonitor(Callback):
    """Record the mean squared noise ``||dX||^2 / (T C H W)`` of the pseudo anomalies per
    epoch (``delta_sq`` in the history; fig. 8 of the paper)."""

    def on_epoch_begin(self, net, **kwargs):
        self.values_ = []

    def on_batch_end(self, net, batch=None, training=None, y_pred=None, **kwargs):
        if training and y_pred is not None and len(y_pred.delta):
            self.values_.append(y_pred.delta.detach().square().mean())

    def on_epoch_end(self, net, **kwargs):
        if self.values_:
            net.history.record("delta_sq", float(torch.stack(self.values_).mean()))
        # device tensors must not outlive the epoch: the callback is pickled with the model,
        # and a CUDA tensor kept here would stop a CUDA-fitted model loading without a GPU
        self.values_ = []

    def on_train_end(self, net, **kwargs):
        self.values_ = []  # also when training was interrupted mid-epoch


# ---------------------------------------------------------------------------- estimator
class PseudoAnomalyDetector(BaseDeepDetector):
    """LTG: autoencoder trained with learned (or Gaussian) pseudo anomalies.

    Vectors ``(n, d)``, images ``(n, C, H, W)`` (or flat rows with ``image_shape``) and video
    clips ``(n, 1, T, H, W)``. The data are mapped from their training range to [0, 1]
    (vectors, images: F ends in a sigmoid) or [-1, 1] (clips: tanh), the ranges of the paper.
    Training: F (``optimizer_``) on eq. 2-3; with ``noise="learned"`` G
    (``adversary_optimizer_``, same Adam settings) on eq. 7 from the same forward pass, every
    step (:class:`~sknovelty.engine.AdversarialNet`). ``net_.history`` holds ``train_loss`` (F),
    ``adversary_loss`` (G) and ``delta_sq`` (mean squared noise).

    The novelty score is the reconstruction error (min-max scaled on held-out normal rows):
    ``rec``, the mean squared error over the sample, for vectors and images; for clips
    ``frame_rec``, that of frame ``score_frame`` only (the 9th of 16, eq. 8-9 of the paper,
    which ranks clips as its PSNR does). ``score_components`` also gives ``psnr`` of that
    frame: with :func:`sknovelty.video.video_frame_scores` (``frame_offset=score_frame``) and
    :func:`sknovelty.video.frame_auroc` it gives the paper's per-video normalised protocol.

    Parameters
    ----------
    noise : {"learned", "gaussian", "none"}, default="learned"
    p : float in [0, 1], default=0.5
        Probability that a training sample is replaced by its pseudo anomaly.
    lam : float or "auto", default="auto"
        Weight of the noise amplitude in G's loss (eq. 7). "auto" takes the paper's values:
        0.1 for clips, 5 for images and vectors.
    sigma : float, default=0.5
        Standard deviation of the Gaussian noise (``noise="gaussian"``), in the network range.
    width : float, default=1.0
        Multiplies every channel count of F and G (the paper's sizes at 1.0).
    score_frame : int, default=8
        Frame of a clip that is scored (the 9th of 16); must be < the clip length.
    epochs : int, default=30
    batch_size : int or "auto", default="auto"
        64, or fewer so that an epoch keeps 6 batches on small training sets, and 8 on
        video clips (see :class:`~sknovelty.base.BaseDeepDetector`), as for LSA, the AE,
        OLED and the CAE; see :ref:`design-batch-size-auto`.
    learning_rate : float, default=1e-3
        The paper's rate for images; the paper trains video at 1e-4 with more epochs than
        the default ``epochs`` (see :ref:`design-ltg-learning-rate`).
    validation_fraction, contamination, device, random_state, verbose, image_shape, callbacks,
    n_jobs, score_batch_size, precision
        See :class:`~sknovelty.base.BaseDeepDetector`.

    Attributes
    ----------
    net_, normalization_, offset_, input_range_, sample_shape_, device_, n_features_in_
        As in :class:`~sknovelty.base.BaseDeepDetector`.

    Notes
    -----
    Images whose sides are not multiples of 16 are zero-padded (in the [0, 1] range) before
    F and G and cropped after, since the 3x3 stride-2 chains of tables 5-6 map only such
    sizes onto themselves.

    Departure from the paper: the paper updates G and F in turns (its fig. 2); here both
    gradients come from one forward pass and are taken before either player steps, so F
    learns from the noise of the G before G's update (half the forward passes; G is updated
    on the rows that were turned into pseudo anomalies).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sknovelty import PseudoAnomalyDetector
    >>> X, y = load_digits(return_X_y=True)
    >>> det = PseudoAnomalyDetector(width=0.125, epochs=2, image_shape=(1, 8, 8),
    ...                             random_state=0).fit(X[y == 0] / 16)
    >>> det.pseudo_anomalies(X[:2] / 16).shape
    (2, 1, 8, 8)
    """

    _sample_ranks = (1, 3, 4)
    _score_maps = True

    def __init__(self, noise="learned", p=0.5, lam="auto", sigma=0.5, width=1.0, score_frame=8, *,
                 epochs=30, batch_size="auto", learning_rate=1e-3, validation_fraction=0.1,
                 contamination=0.1, device="auto", random_state=None, verbose=0,
                 image_shape=None, callbacks=None, n_jobs=None,
                 score_batch_size="auto", precision="float32"):
        self.noise = noise
        self.p = p
        self.lam = lam
        self.sigma = sigma
        self.width = width
        self.score_frame = score_frame
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
        "noise": [StrOptions({"learned", "gaussian", "none"})],
        "p": [Interval(numbers.Real, 0, 1, closed="both")],
        "lam": [Interval(numbers.Real, 0, None, closed="left"), StrOptions({"auto"})],
        "sigma": [Interval(numbers.Real, 0, None, closed="left")],
        "width": [Interval(numbers.Real, 0, None, closed="neither")],
        "score_frame": [Interval(numbers.Integral, 0, None, closed="left")],
    }

    @property
    def _net_class(self):
        return AdversarialNet if self.noise == "learned" else DetectorNet

    def _check_hyperparameters(self):
        pass

    def _clips(self):
        return len(self.sample_shape_) == 4

    @property
    def _novelty_terms(self):
        return ("frame_rec",) if self._clips() else ("rec",)

    def _build_module(self, sample_shape, input_range):
        if len(sample_shape) == 4 and sample_shape[1] < 2:
            raise ValueError(f"clips need at least 2 frames, got samples of shape {sample_shape}")
        if len(sample_shape) == 4 and self.score_frame >= sample_shape[1]:
            raise ValueError(f"score_frame={self.score_frame} needs clips of more than "
                             f"{self.score_frame} frames, got samples of shape {sample_shape}")
        return LTGModule(sample_shape, input_range, self.noise, self.p, self.sigma, self.width)

    def _build_criterion(self, sample_shape):
        lam = self.lam if self.lam != "auto" else (0.1 if len(sample_shape) == 4 else 5.0)
        return LTGLoss(lam, self.score_frame)

    def _method_callbacks(self):
        return [("noise_monitor", NoiseMonitor())] if self.noise != "none" else []

    def pseudo_anomalies(self, X):
        """Pseudo anomalies ``X^P = clip(X + dX)`` for ``X`` in the input's units.

        ``dX`` is G's noise (in eval mode) for ``noise="learned"``, Gaussian noise for
        ``"gaussian"``, drawn from a generator seeded by ``random_state`` (an int repeats the
        same noise at every call; torch's global generator is left as it was).

        Parameters
        ----------
        X : array-like of the fitted sample shape, or flat rows with ``image_shape``
            Samples to perturb, in the input's units.

        Returns
        -------
        ndarray of the shape of the validated ``X`` (samples as images/clips when so fitted)

        Raises
        ------
        ValueError
            With ``noise="none"``, which makes no pseudo anomalies.

        See Also
        --------
        score_samples : Normality scores (higher = more normal) of samples.
        score_maps : Where in each sample its reconstruction error lies.
        """
        check_is_fitted(self)
        if self.noise == "none":
            raise ValueError('noise="none" makes no pseudo anomalies')
        module = self.net_.module_
        # Gaussian noise: seeded by random_state, so that a call repeats (drawn from a
        # generator of its own, never torch's global one)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        device = torch.device(self.device_)
        generators = {"cpu": torch.Generator().manual_seed(seed),
                      device.type: torch.Generator(device=device).manual_seed(seed)}
        with random.fit_generators(generators):
            return self._map_chunks(
                self._validate_X(X, reset=False),
                lambda xb: module.from_range(module.make_pseudo(module.to_range(xb))[0]))
