"""MMP: Masked Multi-Prediction for anomaly detection (Naji et al.; sec. 3, 4.2, appendix B).

From a masked sample ``X_M = X * M`` a network produces ``n`` predictions of ``X``. Training
minimises the nearest-neighbour loss ``L_NN = min_k ||f^(k)(X_M) - X||`` (eq. 3), so that the
predictions spread over the modes of ``P(X | X_M)``, plus ``lam * L_NP`` (eq. 6), which pulls
the predictors that (almost) never won in the previous epoch towards the data (algorithm 1).
The novelty score is the nearest-neighbour error, z-scored with constants fixed on held-out
normal data (eq. 9 with one aspect).

The predictors share their parameters (sec. 4.2): a first-state predictor ``P`` gives
``h_0 = P(X_M)``, a recurrent state generator gives ``h_k = R(h_{k-1})``, and one
state-conditional network ``f(X_M, h_k)`` makes the k-th prediction, so the number of
predictions does not change the number of parameters.
"""

import math
import numbers

import numpy as np
import torch
from skorch.callbacks import Callback
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ._checks import check_positive_ints
from .base import BaseDeepDetector
from .engine import TrainingDivergedError

__all__ = ["MaskedMultiPredictionDetector", "MMPLoss", "MMPModule", "patch_mask"]


# ---------------------------------------------------------------------------- masks
def patch_mask(shape, patch_size, mask_ratio, generator):
    """A fixed spatial mask for images of ``shape = (C, H, W)``: the image is cut into a grid
    of ``patch_size`` x ``patch_size`` cells and ``round(mask_ratio * n_cells)`` cells, drawn
    with ``generator``, are hidden (0). Returns a ``(1, H, W)`` float tensor (1 = kept)."""
    _, h, w = shape
    rows, cols = math.ceil(h / patch_size), math.ceil(w / patch_size)
    n_hidden = int(round(mask_ratio * rows * cols))
    cells = torch.ones(rows * cols)
    cells[torch.randperm(rows * cols, generator=generator)[:n_hidden]] = 0.0
    grid = cells.view(rows, cols).repeat_interleave(patch_size, 0).repeat_interleave(patch_size, 1)
    return grid[:h, :w].unsqueeze(0).contiguous()


def feature_mask(n_features, mask_ratio, hidden, generator):
    """A fixed mask for vectors: the given ``hidden`` features (bool array), or
    ``round(mask_ratio * d)`` features drawn with ``generator``. Returns a ``(d,)`` float tensor."""
    mask = torch.ones(n_features)
    if hidden is not None:
        hidden = np.asarray(hidden)
        if hidden.shape != (n_features,) or not (hidden.dtype == bool or np.isin(hidden, (0, 1)).all()):
            raise ValueError(f"hidden_features must be a boolean mask of length n_features = "
                             f"{n_features} (True = hidden), got {hidden.tolist()!r}; to hide "
                             f"features by index, build the mask: np.isin(np.arange(d), indices)")
        mask[torch.as_tensor(hidden.astype(bool))] = 0.0
    else:
        n_hidden = int(round(mask_ratio * n_features))
        mask[torch.randperm(n_features, generator=generator)[:n_hidden]] = 0.0
    return mask


# ---------------------------------------------------------------------------- networks
def _conv_encoder(c, channels):
    layers, widths = [], (c, *channels)
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Conv2d(a, b, 4, stride=2, padding=1), nn.ReLU()]
    return nn.Sequential(*layers)


def _conv_size(size, n):
    for _ in range(n):
        size = size // 2
    return size


class Encoder(nn.Module):
    """``X_M -> code``: 4x4 stride-2 convs + ReLU and a dense layer (images), or dense layers
    + ReLU (vectors); no normalisation layers (a fixed mask can make inputs constant)."""

    def __init__(self, sample_shape, channels, out_dim):
        super().__init__()
        if len(sample_shape) == 3:
            c, h, w = sample_shape
            k = len(channels)
            flat = channels[-1] * max(_conv_size(h, k), 1) * max(_conv_size(w, k), 1)
            if min(_conv_size(h, k), _conv_size(w, k)) < 1:
                raise ValueError(f"images of {h}x{w} are too small for {k} stride-2 convolutions; "
                                 "use fewer channels")
            self.net = nn.Sequential(_conv_encoder(c, channels), nn.Flatten(), nn.Linear(flat, out_dim))
        else:
            layers, widths = [], (sample_shape[0], *channels)
            for a, b in zip(widths[:-1], widths[1:]):
                layers += [nn.Linear(a, b), nn.ReLU()]
            self.net = nn.Sequential(*layers, nn.Linear(widths[-1], out_dim))

    def forward(self, x):
        return self.net(x)


class StateGenerator(nn.Module):
    """R (sec. 4.2, B.2): ``h_k = h_{k-1} + MLP(h_{k-1})``, a residual stack of dense layers."""

    def __init__(self, state_dim, n_layers=7):
        super().__init__()
        layers = []
        for _ in range(n_layers - 1):
            layers += [nn.Linear(state_dim, state_dim), nn.ReLU()]
        self.mlp = nn.Sequential(*layers, nn.Linear(state_dim, state_dim))

    def forward(self, h):
        return h + self.mlp(h)


class InputSkip(nn.Module):
    """A path from ``X_M`` around the bottleneck of f to its output: a 3x3 convolution
    (images) or a dense layer (vectors) whose output is added to the decoder's logits, the
    same for all ``n`` predictions: ``(B, *in_shape) -> (B, 1, *out_shape)``."""

    def __init__(self, in_shape, out_shape):
        super().__init__()
        if len(in_shape) == 3:
            if tuple(in_shape[1:]) != tuple(out_shape[1:]):
                raise ValueError(f"a skip connection needs predictions of the input's height "
                                 f"and width, got {tuple(in_shape)} -> {tuple(out_shape)}")
            self.net = nn.Conv2d(in_shape[0], out_shape[0], 3, padding=1)
        else:
            self.net = nn.Linear(in_shape[0], out_shape[0])

    def forward(self, x_m):
        return self.net(x_m).unsqueeze(1)


class StateConditionalNetwork(nn.Module):
    """f(X_M, h): encoder, the state concatenated at the bottleneck, decoder, sigmoid output.

    Images: 4x4 stride-2 transposed convolutions mirroring the encoder (cropped to H x W).
    ``forward`` takes the code of ``X_M`` once and ``n`` states, and decodes all ``n``
    predictions in one batch: ``(B, D), (B, n, S) -> (B, n, *sample_shape)``. With
    ``skip=True`` an :class:`InputSkip` from ``X_M`` (then a third argument of ``forward``)
    is added to the logits before the sigmoid.
    """

    def __init__(self, sample_shape, channels, latent_dim, state_dim, out_shape=None, skip=False):
        super().__init__()
        in_shape = tuple(sample_shape)
        self.encoder = Encoder(sample_shape, channels, latent_dim)
        # what is predicted: the sample itself, or (MMP-AMS) another map of its size
        sample_shape = self.sample_shape = tuple(out_shape or sample_shape)
        if len(sample_shape) == 3:
            c, h, w = sample_shape
            k = len(channels)
            self.grid = (channels[-1], math.ceil(h / 2 ** k), math.ceil(w / 2 ** k))
            widths = (*channels[::-1], c)
            layers = []
            for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
                layers += [nn.ConvTranspose2d(a, b, 4, stride=2, padding=1)]
                layers += [nn.ReLU()] if i < len(widths) - 2 else []
            self.expand = nn.Sequential(nn.Linear(latent_dim + state_dim, math.prod(self.grid)), nn.ReLU())
            self.decoder = nn.Sequential(*layers)
        else:
            widths = (*channels[::-1], sample_shape[0])
            layers = []
            for a, b in zip(widths[:-1], widths[1:]):
                layers += [nn.ReLU(), nn.Linear(a, b)]
            self.grid = (channels[-1],)
            self.expand = nn.Linear(latent_dim + state_dim, channels[-1])
            self.decoder = nn.Sequential(*layers)
        self.skip = InputSkip(in_shape, sample_shape) if skip else None

    def forward(self, code, states, x_m=None):
        b, n = states.shape[:2]
        z = torch.cat([code.unsqueeze(1).expand(b, n, code.shape[1]), states], dim=2)
        out = self.decoder(self.expand(z.flatten(0, 1)).view(b * n, *self.grid))
        if len(self.sample_shape) == 3:
            out = out[:, :, : self.sample_shape[1], : self.sample_shape[2]]
        if self.skip is None:
            return torch.sigmoid(out).view(b, n, *self.sample_shape)
        return torch.sigmoid(out.reshape(b, n, *self.sample_shape) + self.skip(x_m))


class MMPModule(nn.Module):
    """``x -> (x01, predictions)``: ``x01`` is ``x`` mapped to [0, 1] by the training range,
    ``predictions`` the ``n`` outputs of ``f(X_M, h_k)``, ``h_0 = P(X_M)``, ``h_k = R(h_{k-1})``."""

    def __init__(self, sample_shape, mask, input_range, n_predictions, channels, latent_dim,
                 state_dim, state_layers, skip=False):
        super().__init__()
        low, high = input_range
        self.register_buffer("low", torch.tensor(low))
        self.register_buffer("span", torch.tensor(max(high - low, 1e-12)))
        self.register_buffer("mask", mask)
        self.n_predictions = n_predictions
        self.first_state = Encoder(sample_shape, channels, state_dim)  # P
        self.state_generator = StateGenerator(state_dim, state_layers)  # R
        self.predictor = StateConditionalNetwork(sample_shape, channels, latent_dim, state_dim,
                                                 skip=skip)  # f

    def masked(self, x):
        """``(x01, X_M)``: ``x`` mapped to [0, 1] by the training range, and its masked form."""
        x = (x - self.low) / self.span
        return x, x * self.mask

    def forward(self, x):
        x, x_m = self.masked(x)
        h, states = self.first_state(x_m), []
        for _ in range(self.n_predictions):  # the recurrence runs over predictors, not samples
            h = self.state_generator(h)
            states.append(h)
        code = self.predictor.encoder(x_m)
        return x, self.predictor(code, torch.stack(states, dim=1), x_m)


# ---------------------------------------------------------------------------- losses
class MMPLoss(nn.Module):
    """``L_NN + lam * L_NP`` (eq. 3, 6), or ``L_naive`` (eq. 5), with participation counting.

    ``errors`` are per sample and predictor: the mean squared (``"l2"``) or absolute
    (``"l1"``) difference over the features. In training mode each batch adds its
    nearest-neighbour winners to ``counts``; :meth:`end_epoch` turns them into the epoch's
    ``participation`` and marks the predictors whose share is at most ``delta`` as
    unoptimised for the next epoch (algorithm 1). During the first ``warmup_epochs`` epochs
    the loss is ``L_naive`` (the paper's pre-training, sec. 3.2).
    """

    def __init__(self, n_predictions, loss="nn_np", lam=0.1, delta=0.05, distance="l2",
                 warmup_epochs=0):
        super().__init__()
        self.loss, self.lam, self.delta, self.distance = loss, lam, delta, distance
        self.warmup_epochs = warmup_epochs
        self.epoch = 0
        self.register_buffer("counts", torch.zeros(n_predictions, dtype=torch.long))
        self.register_buffer("unoptimized", torch.zeros(n_predictions, dtype=torch.bool))
        self.register_buffer("participation", torch.zeros(n_predictions))

    def value_errors(self, x, predictions):
        """Squared or absolute difference per value: ``(B, n, *sample_shape)``."""
        diff = predictions - x.unsqueeze(1)
        return diff.square() if self.distance == "l2" else diff.abs()

    def errors(self, x, predictions):
        return self.value_errors(x, predictions).flatten(2).mean(2)  # (B, n)

    def per_sample(self, output, x):
        errors = self.errors(*output)
        return {"nn": errors.min(1).values, "per_predictor": errors}

    def per_pixel(self, output, x):
        """The nearest prediction's error per value, divided by the values per sample (so
        that a map sums to ``nn``)."""
        diff = self.value_errors(*output)
        winner = diff.flatten(2).mean(2).argmin(1)
        nearest = diff[torch.arange(len(diff), device=diff.device), winner]
        return {"nn": nearest / nearest[0].numel()}

    def forward(self, output, x):
        return self.from_errors(self.errors(*output))

    def from_errors(self, errors):
        """The training loss from a ``(B, n)`` matrix of per-predictor errors (counting each
        batch's nearest-neighbour winners in training mode)."""
        nearest, winner = errors.min(1)  # gradient reaches the nearest prediction only
        if self.training:
            self.counts += torch.bincount(winner, minlength=len(self.counts))
        if self.loss == "naive" or self.epoch < self.warmup_epochs:
            return errors.mean()  # L_naive, eq. 5
        loss = nearest.mean()  # L_NN, eq. 3
        if self.loss == "nn_np" and self.lam > 0:
            loss = loss + self.lam * (errors * self.unoptimized).sum(1).mean()  # L_NP, eq. 6
        return loss

    def end_epoch(self):
        """Participation of the finished epoch; predictors at or below ``delta`` join U."""
        total = self.counts.sum()
        if total > 0:
            self.participation = self.counts.float() / total
            self.unoptimized = self.participation <= self.delta
        self.counts.zero_()
        self.epoch += 1


class ParticipationTracker(Callback):
    """Close each epoch of :class:`MMPLoss` and record ``participation`` (a list) in the history."""

    def on_train_begin(self, net, **kwargs):
        net.criterion_.epoch = 0

    def on_epoch_end(self, net, **kwargs):
        net.criterion_.end_epoch()
        net.history.record("participation", net.criterion_.participation.tolist())
        net.history.record("n_participating", int((net.criterion_.participation > 0).sum()))


# ---------------------------------------------------------------------------- estimator
class MaskedMultiPredictionDetector(BaseDeepDetector):
    """MMP: masked multi-prediction with nearest-neighbour and non-participation losses.

    A fixed mask ``M`` hides part of every sample (images: ``round(mask_ratio * n_cells)``
    cells of a ``patch_size`` grid; vectors: the features in ``hidden_features``, e.g. the
    "future" part of a trajectory, or a random ``mask_ratio`` share of them). The network makes
    ``n_predictions`` predictions of the whole sample from ``X * M``; it is trained with
    ``L_NN + lam * L_NP`` (``loss="nn_np"``), ``L_NN`` alone (``"nn"``) or ``L_naive``
    (``"naive"``). The novelty score is the nearest-neighbour error z-scored on held-out
    normal rows (eq. 9); ``score_components`` gives the raw error (``"nn"``) and each
    predictor's error (``"per_predictor"``, shape ``(n, n_predictions)``).

    Inputs are mapped to [0, 1] with the training range (predictions end in a sigmoid, as in
    the paper's networks).

    Parameters
    ----------
    n_predictions : int, default=10
        Number of predictions n (parameter count does not depend on it).
    loss : {"nn_np", "nn", "naive"}, default="nn_np"
    lam : float, default=0.1
        Weight of the non-participation loss (paper, B.3).
    delta : float, default=0.05
        Predictors whose share of nearest-neighbour wins in an epoch is at most ``delta`` are
        optimised by ``L_NP`` in the next epoch (paper: 5%).
    warmup_epochs : int, default=0
        Epochs trained with ``L_naive`` first (the paper's pre-training of ``L_NN`` models).
    distance : {"l2", "l1"}, default="l2"
        Per-feature squared or absolute error, averaged over features, in loss and score.
    patch_size : int, default=7
        Side of the mask cells for images (a quarter of MNIST's 28 pixels, as 16 is of the
        paper's 64-pixel inputs).
    mask_ratio : float in [0, 1), default=0.75
        Share of the cells (images) or features (vectors, without ``hidden_features``) hidden.
    hidden_features : array-like of bool of shape (d,) or None, default=None
        For vectors: which features are hidden (temporal masking). Overrides ``mask_ratio``.
    channels : tuple of int, default=(32, 64, 128)
        Widths of the stride-2 4x4 convolutions (images) or dense layers (vectors) of the
        encoders; the decoder mirrors them.
    latent_dim : int, default=64
        Size of the code of ``X_M`` at the bottleneck of f.
    state_dim : int, default=128
        Size of the states h_k.
    state_layers : int, default=7
        Dense layers of R (paper: 7).
    skip_connection : bool, default=False
        Add a path from ``X_M`` around the bottleneck of f to its output (a 3x3 convolution
        for images, a dense layer for vectors, added to the logits before the sigmoid). The
        paper's f has a skip connection in its first autoencoder (B.2) whose place the text
        does not give; this is one reading of it. It passes the visible part through, so at
        ``mask_ratio=0`` f can learn the identity (the failure that masking prevents, sec.
        3.3). See :ref:`design-mmp-skip`.
    epochs : int, default=120
    batch_size : int, default=64
    learning_rate : float, default=3e-4
        Adam's step size. A larger rate can make a fit collapse (see Notes); at 3e-4, 60
        epochs undertrain some classes, hence ``epochs=120``. See :ref:`design-mmp-training`.
    validation_fraction, contamination, device, random_state, verbose, image_shape, callbacks,
    n_jobs, score_batch_size, precision
        See :class:`~sknovelty.base.BaseDeepDetector`.

    Attributes
    ----------
    participation_ : ndarray of shape (n_predictions,)
        Share of nearest-neighbour wins of each predictor in the last epoch (the history has
        it per epoch).
    mask_ : ndarray
        The fixed mask (1 kept, 0 hidden): ``(1, H, W)`` for images, ``(d,)`` for vectors.
    normalization_ : dict
        ``{"nn": (mean, std), ...}`` on the held-out normal rows (eq. 9).
    net_, offset_, input_range_, sample_shape_, device_, n_features_in_
        As in :class:`~sknovelty.base.BaseDeepDetector`.

    Notes
    -----
    No public code exists; sizes follow appendix B.2 in spirit (strided 4x4 convolutions with
    ReLU, the state concatenated at the bottleneck, sigmoid outputs, R of 7 dense layers with a
    skip connection) but f is one autoencoder, not two stacked ones, and is scaled for small
    images; its skip connection is optional (``skip_connection``, off by default, so that
    results made without it stay reproducible). The mask is drawn once per fit (from ``random_state``) and kept fixed, as the
    paper's algorithm 1 takes one mask ``M``. The paper trains MNIST 200 epochs with lr 1e-4
    and batch 128 on ~6,000 images per class; the defaults here (lr 3e-4, 120 epochs, batch 64)
    suit small training sets.

    Collapse: with ReLU units and a sigmoid output, a fit can fall into a state where every
    unit feeding the output is dead and all predictions are one constant, near-black image;
    the score then measures only the input's ink. ``fit`` detects this on the held-out rows
    and raises :class:`~sknovelty.TrainingDivergedError` instead of returning such a
    model. It happens more often at larger learning rates; see :ref:`design-mmp-training`.

    Examples
    --------
    >>> from sknovelty import MaskedMultiPredictionDetector
    >>> from sknovelty.datasets import make_roads
    >>> X, y = make_roads(n_roads=3, n_normal=300, n_anomalies=0, random_state=0)
    >>> det = MaskedMultiPredictionDetector(n_predictions=3, hidden_features=[0, 0, 1, 1],
    ...                                     channels=(16,), epochs=2, random_state=0).fit(X)
    >>> det.predict_all(X[:2]).shape
    (2, 3, 4)
    >>> det.participation_.shape
    (3,)
    """

    _novelty_terms = ("nn",)
    _normalization = "zscore"
    _score_maps = True

    def __init__(self, n_predictions=10, loss="nn_np", lam=0.1, delta=0.05, warmup_epochs=0,
                 distance="l2", patch_size=7, mask_ratio=0.75, hidden_features=None,
                 channels=(32, 64, 128), latent_dim=64, state_dim=128, state_layers=7,
                 skip_connection=False, *,
                 epochs=120, batch_size=64, learning_rate=3e-4, validation_fraction=0.1,
                 contamination=0.1, device="auto", random_state=None, verbose=0,
                 image_shape=None, callbacks=None, n_jobs=None,
                 score_batch_size="auto", precision="float32"):
        self.n_predictions = n_predictions
        self.loss = loss
        self.lam = lam
        self.delta = delta
        self.warmup_epochs = warmup_epochs
        self.distance = distance
        self.patch_size = patch_size
        self.mask_ratio = mask_ratio
        self.hidden_features = hidden_features
        self.channels = channels
        self.latent_dim = latent_dim
        self.state_dim = state_dim
        self.state_layers = state_layers
        self.skip_connection = skip_connection
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
        "n_predictions": [Interval(numbers.Integral, 1, None, closed="left")],
        "loss": [StrOptions({"nn_np", "nn", "naive"})],
        "lam": [Interval(numbers.Real, 0, None, closed="left")],
        "delta": [Interval(numbers.Real, 0, 1, closed="both")],
        "warmup_epochs": [Interval(numbers.Integral, 0, None, closed="left")],
        "distance": [StrOptions({"l2", "l1"})],
        "patch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "mask_ratio": [Interval(numbers.Real, 0, 1, closed="left")],
        "hidden_features": [None, "array-like"],
        "channels": [tuple, list],
        "latent_dim": [Interval(numbers.Integral, 1, None, closed="left")],
        "state_dim": [Interval(numbers.Integral, 1, None, closed="left")],
        "state_layers": [Interval(numbers.Integral, 1, None, closed="left")],
        "skip_connection": ["boolean"],
    }

    def _check_hyperparameters(self):
        check_positive_ints("channels", self.channels)

    def _make_mask(self, sample_shape):
        generator = torch.Generator().manual_seed(int(torch.initial_seed() % (2 ** 31)))
        if len(sample_shape) == 3:
            if self.hidden_features is not None:
                raise ValueError("hidden_features applies to vectors; images use patch_size and "
                                 "mask_ratio")
            return patch_mask(sample_shape, self.patch_size, self.mask_ratio, generator)
        if self.hidden_features is not None and len(self.hidden_features) != sample_shape[0]:
            raise ValueError(f"hidden_features has {len(self.hidden_features)} entries, but "
                             f"the samples have {sample_shape[0]} features")
        return feature_mask(sample_shape[0], self.mask_ratio, self.hidden_features, generator)

    def _build_module(self, sample_shape, input_range):
        # built under the fit's seed, so the mask follows random_state; on load the saved
        # buffer replaces it
        return MMPModule(sample_shape, self._make_mask(sample_shape), input_range,
                         self.n_predictions, tuple(self.channels), self.latent_dim,
                         self.state_dim, self.state_layers, self.skip_connection)

    def _build_criterion(self, sample_shape):
        return MMPLoss(self.n_predictions, self.loss, self.lam, self.delta, self.distance,
                       self.warmup_epochs)

    def _method_callbacks(self):
        return [("participation", ParticipationTracker())]

    def _finalize_fit(self):
        self.participation_ = self.net_.criterion_.participation.cpu().numpy().copy()

    def _set_reference(self, X_ref, held_out, X_norm=None):
        self._check_not_collapsed(X_ref)
        super()._set_reference(X_ref, held_out, X_norm)

    def _check_not_collapsed(self, X_ref):
        """Raise if every prediction ignores its input although the visible inputs differ.

        The network's units can die during training: all predictions become the same
        constant image (sigmoid saturated at 0) and the score degrades to the input's ink
        (see :ref:`design-mmp-training`). The loss stays finite, so the base's NaN check does
        not see it.
        """
        module = self.net_.module_
        out = self._map_chunks(X_ref, lambda xb: {
            "visible": module.masked(xb)[1].flatten(1),
            "pred": module(xb)[1].flatten(2)})
        if len(X_ref) < 2 or out["visible"].std(0).max() < 1e-6:
            return  # nothing to compare: constant visible inputs may give constant predictions
        if out["pred"].std(0).max() < 1e-6:
            epochs = len(self.net_.history)
            raise TrainingDivergedError(
                f"{type(self).__name__} collapsed: after {epochs} epochs all predictions are the "
                f"same for every input (dead units), so scores would only measure the input's "
                f"magnitude. Try a lower learning_rate (the paper trains at 1e-4) or another "
                f"random_state.")

    _fitted_attributes = (*BaseDeepDetector._fitted_attributes, "participation_")

    def _restore(self, fitted, module_state, criterion_state, history):
        fitted = {**fitted, "participation_": np.asarray(fitted["participation_"], dtype=np.float32)}
        super()._restore(fitted, module_state, criterion_state, history)

    @property
    def mask_(self):
        check_is_fitted(self)
        return self.net_.module_.mask.cpu().numpy()

    def predict_all(self, X):
        """The ``n_predictions`` predictions of each sample, in the input's units.

        Parameters
        ----------
        X : array-like of the fitted sample shape, or flat rows with ``image_shape``
            Samples whose hidden part is predicted.

        Returns
        -------
        ndarray of shape (n, n_predictions) + sample_shape

        See Also
        --------
        score_components : The novelty terms computed from these predictions.
        score_maps : Where in each sample the error of the nearest prediction lies.
        score_samples : The normality score made of the novelty terms.
        """
        check_is_fitted(self)
        module = self.net_.module_
        return self._map_chunks(self._validate_X(X, reset=False),
                                lambda xb: module(xb)[1] * module.span + module.low)
