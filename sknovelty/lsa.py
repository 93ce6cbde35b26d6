"""LSA: Latent Space Autoregression for Novelty Detection (Abati et al., CVPR 2019).

An autoencoder (encoder f, decoder g) and an autoregressive density estimator h on its
sigmoid-bounded latent code are trained jointly on normal data (eq. 2-4). A sample is novel
when it is poorly reconstructed (REC) or when its code is surprising under h (LLK); the novelty
score adds both after min-max normalisation on a reference set of normal data (eq. 9-10).
"""

import numbers

import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn
from torch.nn import functional as F

from ._checks import check_positive_ints
from .base import BaseDeepDetector
from .nn import (AutoregressiveEstimator, SpatioTemporalEstimator, build_autoencoder,
                 check_autoencoder_parameters, reconstruction_error)


class LSAModule(nn.Module):
    """f, g and h of eq. 2: ``x -> (x_rec, z, logits)`` with ``logits`` of shape ``(n, d, B)``.

    For clips the code is ``(T', d)`` and h is the masked stacked convolution estimator
    (MSC): ``z`` is returned flat, time-major, ``(n, T' d)``, with logits ``(n, T' d, B)``.
    """

    def __init__(self, sample_shape, latent_dim, hidden_dim, conv_channels,
                 estimator_channels, n_bins, n_components=None):
        super().__init__()
        self.encoder, self.decoder = build_autoencoder(sample_shape, latent_dim, hidden_dim,
                                                       conv_channels)
        estimator = (SpatioTemporalEstimator if len(sample_shape) == 4
                     else AutoregressiveEstimator)
        self.estimator = estimator(latent_dim, estimator_channels, n_bins, n_components)

    def forward(self, x):
        z = self.encoder(x)
        return self.decoder(z), z.flatten(1), self.estimator(z)


def quantize(z, n_bins):
    """Bin index of each code value: linear quantisation of [0, 1] into B bins (supp. sec. 7).

    A non-finite code (a diverged fit) gets bin 0 rather than an out-of-range index, so the
    loss becomes NaN and the fit raises ``TrainingDivergedError``.
    """
    return (z * n_bins).floor().nan_to_num_(0.0).clamp_(0, n_bins - 1).long()


LLK_TARGETS = ("bin", "interpolated")


def latent_nll(logits, z, target="bin"):
    """``-log h(z)`` per sample, summed over the d CPDs.

    ``target="bin"`` is the cross-entropy of supp. eq. 11: each CPD is scored at the bin that
    holds ``z_i``. The bins are computed from a detached ``z`` (no straight-through estimate);
    the LLK still reaches the encoder through the estimator's input, as in the official code. A
    log-softmax replaces the official code's probability clamp at 2.2e-16, which caps each
    CPD's NLL at about 36 nats.

    ``target="interpolated"`` (a departure) reads each CPD as a piecewise-linear
    density: the probabilities of the two bins whose centres ``(k + 1/2) / B`` enclose ``z_i``,
    mixed linearly by the position of ``z_i`` between them (the end half-bins take their bin's
    value). It equals the bin NLL at every bin centre, and it is differentiable in ``z``, so
    the encoder also receives the LLK's gradient directly: ``-B (p_k+1 - p_k) / p(z_i)``, a
    pull toward the likelier neighbour.
    """
    n_bins = logits.shape[-1]
    if target == "bin":
        bins = quantize(z.detach(), n_bins)
        return F.cross_entropy(logits.transpose(1, 2), bins, reduction="none").sum(1)
    if target != "interpolated":
        raise ValueError(f"target must be one of {LLK_TARGETS}, got {target!r}")
    log_p = logits.float().log_softmax(-1)
    position = (z.float() * n_bins - 0.5).clamp(0, n_bins - 1)  # in units of bins, from centre 0
    lower = position.detach().floor().clamp(max=n_bins - 2)
    # the weight of the upper bin, kept off exact 0 and 1 so that the log below has a finite
    # gradient when one of the two bins underflows (changes the density by at most 1e-6)
    w = (position - lower).clamp(1e-6, 1 - 1e-6)
    lower = lower.long().unsqueeze(-1)
    log_lo = log_p.gather(-1, lower).squeeze(-1)
    log_hi = log_p.gather(-1, lower + 1).squeeze(-1)
    return -torch.logaddexp(log_lo + torch.log1p(-w), log_hi + torch.log(w)).sum(1)


class LSALoss(nn.Module):
    """Eq. 4: ``E[ ||x - x_rec||^2 + lam * (-log h(z)) ]`` (batch mean).

    ``target`` chooses the LLK's form (:func:`latent_nll`).
    """

    def __init__(self, lam=1.0, target="bin"):
        super().__init__()
        self.lam = lam
        self.target = target

    def per_sample(self, output, x):
        x_rec, z, logits = output
        return {"rec": reconstruction_error(x_rec, x),
                "llk": latent_nll(logits, z, self.target)}

    def per_pixel(self, output, x):
        """REC per value (the latent term has no spatial form)."""
        return {"rec": (x - output[0]).square()}

    def forward(self, output, x):
        terms = self.per_sample(output, x)
        return (terms["rec"] + self.lam * terms["llk"]).mean()


class LatentAutoregressiveDetector(BaseDeepDetector):
    """Latent Space Autoregression (LSA) novelty detector.

    An autoencoder with a sigmoid-bounded latent code ``z`` in ``[0, 1]^d`` and an
    autoregressive estimator ``h`` of ``p(z) = prod_i p(z_i | z_<i)`` (eq. 3) made of Masked
    Fully Connected layers (eq. 6: type A first, then type B), each CPD a softmax over
    ``n_bins`` quantisation bins. Training minimises eq. 4,
    ``||x - x_rec||^2 + lam * (-log h(z))`` with the LLK of supplementary eq. 11. The novelty
    score is eq. 9: ``norm(REC) + norm(LLK)`` with min-max constants (eq. 10) fixed at the end
    of fit on the training rows (``normalize_on``); ``score_samples`` returns its negative
    (higher = more normal). ``offset_`` and the p-value reference come from held-out rows.

    Images ``(n, C, H, W)`` (or flat rows with ``image_shape``) use the official MNIST
    architecture: residual down blocks ``conv_channels``, FC ``hidden_dim``, FC ``latent_dim``
    + sigmoid, and the mirrored decoder. Vectors ``(n, d)`` use the fully connected form of the
    same model (the paper's semantic-feature setting, sec. 4.3). Video clips
    ``(n, C, T, H, W)`` use the paper's video model (sec. 4, UCSD Ped2 on 8 x 32 x 32 crops):
    five 3-D residual down blocks (channels 8, 12, 18, 27, 40) whose main-path convolutions are
    causal in time, a time-shared linear map + sigmoid to a code of shape ``(T / 4, d)``, the
    mirrored decoder, and for h the masked stacked convolution estimator (MSC, type A then B):
    the CPD of dimension i at time t sees all dimensions at earlier times and dimensions < i
    at t (``sknovelty.nn.SpatioTemporalEstimator``). ``hidden_dim`` and ``conv_channels`` do
    not apply to clips; the paper's video estimator has ``estimator_channels=(4, 4, 4, 4)``.
    Clip scores become frame scores with :func:`sknovelty.video.clip_to_frame_scores`.

    Parameters
    ----------
    lam : float, default=1.0
        Weight of the LLK term in the loss (lambda of eq. 4), the paper's 1. Other weights
        move the LLK term, not the novelty score; see :ref:`design-lsa-lam`.
    n_bins : int, default=100
        Number of quantisation bins B of each CPD.
    llk_target : {"bin", "interpolated"}, default="bin"
        How the LLK reads a CPD at a code value ``z_i``. ``"bin"`` is the paper's (supp.
        eq. 11): the probability of the bin that holds ``z_i``, with the bin detached from the
        graph as in the official code. ``"interpolated"`` (a departure) mixes the two nearest
        bins linearly, a piecewise-linear density that is differentiable in ``z``: the encoder
        then also gets the LLK's gradient directly, and can move codes toward likelier bins.
        It detects worse: the encoder gathers its codes onto a few bins and loses
        reconstruction; see :func:`sknovelty.lsa.latent_nll` and
        :ref:`design-lsa-llk-target`.
    cpd : {"categorical", "logistic_mixture"}, default="categorical"
        The form of each CPD of h. ``"categorical"`` is the paper's: B free logits, a softmax
        (supp. eq. 11). ``"logistic_mixture"`` (a departure) is a mixture of
        ``cpd_components`` logistics discretised to the same B bins, the output head of
        PixelCNN++ (:class:`sknovelty.nn.DiscretizedLogisticMixture`). Neighbouring bins
        share its 3K parameters, so a CPD learnt from a few hundred codes is smooth. It gives
        a better density of held-out normal codes but not a better detector; see
        :ref:`design-lsa-cpd`.
    cpd_components : int, default=5
        Number of logistics K per CPD when ``cpd="logistic_mixture"``; unused otherwise.
    latent_dim : int, default=64
        Size d of the latent code.
    estimator_channels : tuple of int, default=(32, 32, 32, 32)
        Channels of the MFC layers: MFC-A(1 -> c0), MFC-B(c_k -> c_k+1), MFC-B(c_last -> B).
    hidden_dim : int, default=64
        Width of the dense layer between the convolutional part (or the input vector) and the
        code, in encoder and decoder.
    conv_channels : tuple of int, default=(32, 64)
        Output channels of the residual down blocks (images only); each halves H and W.
    normalize_on : {"train", "held_out"}, default="train"
        The normal rows whose REC and LLK give the min-max constants of eq. 10 (the set S of
        eq. 9): the training rows (a departure), or the ``validation_fraction`` rows held out,
        the paper's S (sec. 4.1: a 10% validation split, ~600 rows per MNIST class) and the
        default of earlier versions (a model file or pickle saved without this parameter
        gets ``"held_out"``). On small training sets the held-out rows are few: their min and max are noisy
        and can put NS below its own REC term, which the more numerous training rows avoid;
        see :ref:`design-lsa-normalize-on`. Costs one scoring pass over the training rows at
        the end of fit. Training itself does not depend on it.
    epochs : int, default=50
    batch_size : int or "auto", default="auto"
        64, or fewer on training sets of fewer than ~384 rows so that an epoch keeps 6
        batches, and 8 on video clips (see :class:`~sknovelty.base.BaseDeepDetector`): with
        too few Adam steps the autoencoder stays undertrained; see
        :ref:`design-batch-size-auto`.
    learning_rate : float, default=1e-3
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
    net_ : skorch.NeuralNet
        The trained skorch net; ``net_.module_`` is the ``LSAModule``, ``net_.history``
        the per-epoch losses.
    normalization_ : dict
        ``{"rec": (min, max), "llk": (min, max)}`` (eq. 10) on the rows ``normalize_on``
        names.
    offset_ : float
        Threshold on ``score_samples`` (see ``contamination``).
    sample_shape_ : tuple
        Shape of one sample as seen by the network.
    device_ : str
        The device the model lives on.
    n_features_in_ : int
    batch_size_ : int
        The training batch size used.
    simple_input_auroc_, complexity_correlation_ : float
        Images and clips only (NaN for vectors): how well the model tells held-out normal
        rows from their flat versions (``fit`` warns when it is clearly below 0.5: simpler
        novel inputs would look normal), and how closely the rows' novelty scores follow their compressed size
        (Spearman). See :class:`~sknovelty.base.BaseDeepDetector`.

    Notes
    -----
    Differences from the paper, by choice: eq. 10 prints ``L - max`` in the numerator; the
    official code (and this class) uses ``L - min``, which only shifts all scores by a
    constant. The paper trains MNIST with batch 256, lr 1e-4 for many epochs on 6,000 images per
    class; the defaults here (batch 64, lr 1e-3, 50 epochs) are tuned to small training
    sets and a CPU budget; see :ref:`design-lsa-training`. The constants of
    eq. 10 come from the training rows rather than the held-out ones (``normalize_on``).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sknovelty import LatentAutoregressiveDetector
    >>> X, y = load_digits(return_X_y=True)
    >>> det = LatentAutoregressiveDetector(latent_dim=16, epochs=5, image_shape=(1, 8, 8),
    ...                                    random_state=0).fit(X[y == 0] / 16)
    >>> sorted(det.score_components(X[:3] / 16))
    ['llk', 'rec']
    >>> det.predict(X[:3] / 16).shape
    (3,)
    """

    _novelty_terms = ("rec", "llk")
    _score_maps = True
    _sample_ranks = (1, 3, 4)

    def __init__(self, lam=1.0, n_bins=100, llk_target="bin", cpd="categorical",
                 cpd_components=5, latent_dim=64,
                 estimator_channels=(32, 32, 32, 32), hidden_dim=64, conv_channels=(32, 64), *,
                 normalize_on="train", epochs=50, batch_size="auto",
                 learning_rate=1e-3, validation_fraction=0.1, contamination=0.1, device="auto",
                 random_state=None, verbose=0, image_shape=None, callbacks=None, n_jobs=None,
                 score_batch_size="auto", precision="float32"):
        self.lam = lam
        self.n_bins = n_bins
        self.llk_target = llk_target
        self.cpd = cpd
        self.cpd_components = cpd_components
        self.latent_dim = latent_dim
        self.estimator_channels = estimator_channels
        self.hidden_dim = hidden_dim
        self.conv_channels = conv_channels
        self.normalize_on = normalize_on
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
        "lam": [Interval(numbers.Real, 0, None, closed="left")],
        "n_bins": [Interval(numbers.Integral, 2, None, closed="left")],
        "llk_target": [StrOptions(set(LLK_TARGETS))],
        "cpd": [StrOptions({"categorical", "logistic_mixture"})],
        "cpd_components": [Interval(numbers.Integral, 1, None, closed="left")],
        "latent_dim": [Interval(numbers.Integral, 1, None, closed="left")],
        "estimator_channels": [tuple, list],
        "hidden_dim": [Interval(numbers.Integral, 1, None, closed="left")],
        "conv_channels": [tuple, list],
        "normalize_on": [StrOptions({"train", "held_out"})],
    }

    #: models saved before ``normalize_on`` existed took the constants from the held-out rows
    _former_defaults = {"normalize_on": "held_out"}

    def _normalize_on_training_rows(self):
        return self.normalize_on == "train"

    def _check_hyperparameters(self):
        check_positive_ints("estimator_channels", self.estimator_channels)
        check_autoencoder_parameters(self)

    def _build_module(self, sample_shape, input_range):
        return LSAModule(sample_shape, self.latent_dim, self.hidden_dim, tuple(self.conv_channels),
                         tuple(self.estimator_channels), self.n_bins,
                         self.cpd_components if self.cpd == "logistic_mixture" else None)

    def _build_criterion(self, sample_shape):
        return LSALoss(self.lam, self.llk_target)
