"""Baselines the papers compare against, as ready scikit-learn outlier detectors.

(The context autoencoder of OLED's ablation, :class:`~sknovelty.ContextAutoencoderDetector`,
lives in ``oled.py``: it is OLED with random instead of learned masks, and shares its
reconstructor, losses and scores.)

* :class:`AutoencoderDetector`: LSA's autoencoder without the density estimator, scored by
  reconstruction error (the DAE row of LSA's table 1 when ``noise_std > 0``).
* :class:`WhitenedOneClassSVM` and :class:`WhitenedKDE`: OC-SVM and a Gaussian kernel density
  estimate on PCA-whitened features, as LSA (sec. 4.1) uses them. scikit-learn's
  ``KernelDensity`` is a density estimator, not an outlier detector; the wrapper adds
  ``decision_function``/``predict`` and a contamination threshold.
"""

import numbers

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.decomposition import PCA
from sklearn.neighbors import KernelDensity
from sklearn.svm import OneClassSVM
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from . import io
from ._scoring import STREAM_ROWS, score_in_row_blocks
from ._validation import (ANY_RANK, check_score_spread, normal_rows, pixel_scale,
                          unchanged_on_failure)
from .base import BaseDeepDetector
from .nn import build_autoencoder, check_autoencoder_parameters, reconstruction_error
from .nn import random
from .thresholds import ThresholdMixin


class AutoencoderModule(nn.Module):
    """LSA's encoder and decoder alone; Gaussian input noise while training if ``noise_std > 0``."""

    def __init__(self, sample_shape, latent_dim, hidden_dim, conv_channels, noise_std=0.0):
        super().__init__()
        self.encoder, self.decoder = build_autoencoder(sample_shape, latent_dim, hidden_dim,
                                                       conv_channels)
        self.noise_std = noise_std

    def forward(self, x):
        if self.training and self.noise_std > 0:
            x = x + self.noise_std * random.randn_like(x)
        return (self.decoder(self.encoder(x)),)


class ReconstructionLoss(nn.Module):
    """Mean over the batch of ``||x - x_rec||^2`` (the REC term of LSA's eq. 4 alone)."""

    def per_sample(self, output, x):
        return {"rec": reconstruction_error(output[0], x)}

    def per_pixel(self, output, x):
        return {"rec": (x - output[0]).square()}

    def forward(self, output, x):
        return self.per_sample(output, x)["rec"].mean()


class AutoencoderDetector(BaseDeepDetector):
    """Autoencoder novelty detector scored by reconstruction error.

    The networks are those of :class:`~sknovelty.LatentAutoregressiveDetector` (same encoder,
    decoder and parameters) without the autoregressive estimator; the novelty score is the
    squared reconstruction error, min-max scaled on held-out normal data.

    Parameters
    ----------
    latent_dim : int, default=64
    hidden_dim : int, default=64
    conv_channels : tuple of int, default=(32, 64)
        As in :class:`~sknovelty.LatentAutoregressiveDetector`.
    noise_std : float, default=0.0
        Standard deviation of Gaussian noise added to training inputs (a denoising autoencoder
        when > 0; the target stays the clean input).
    batch_size : int or "auto", default="auto"
        As in :class:`~sknovelty.LatentAutoregressiveDetector`: 64, or fewer so that an epoch
        keeps 6 batches on small training sets.
    epochs, learning_rate, validation_fraction, contamination, device,
    random_state, verbose, image_shape, callbacks,
    n_jobs, score_batch_size, precision
        See :class:`~sknovelty.base.BaseDeepDetector`.

    Attributes
    ----------
    net_, normalization_, offset_, sample_shape_, device_, n_features_in_
        As in :class:`~sknovelty.LatentAutoregressiveDetector`.
    batch_size_, simple_input_auroc_, complexity_correlation_
        As in :class:`~sknovelty.LatentAutoregressiveDetector`.

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sknovelty import AutoencoderDetector
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> X = StandardScaler().fit_transform(X)
    >>> det = AutoencoderDetector(latent_dim=8, epochs=5, random_state=0).fit(X[y == 1])
    >>> det.score_samples(X[:2]).shape
    (2,)
    """

    _score_maps = True
    _sample_ranks = (1, 3, 4)

    def __init__(self, latent_dim=64, hidden_dim=64, conv_channels=(32, 64), noise_std=0.0, *,
                 epochs=50, batch_size="auto", learning_rate=1e-3, validation_fraction=0.1,
                 contamination=0.1, device="auto", random_state=None, verbose=0,
                 image_shape=None, callbacks=None, n_jobs=None,
                 score_batch_size="auto", precision="float32"):
        self.latent_dim = latent_dim
        self.hidden_dim = hidden_dim
        self.conv_channels = conv_channels
        self.noise_std = noise_std
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
        "latent_dim": [Interval(numbers.Integral, 1, None, closed="left")],
        "hidden_dim": [Interval(numbers.Integral, 1, None, closed="left")],
        "conv_channels": [tuple, list],
        "noise_std": [Interval(numbers.Real, 0, None, closed="left")],
    }

    def _check_hyperparameters(self):
        check_autoencoder_parameters(self)

    def _build_module(self, sample_shape, input_range):
        return AutoencoderModule(sample_shape, self.latent_dim, self.hidden_dim,
                                 tuple(self.conv_channels), self.noise_std)

    def _build_criterion(self, sample_shape):
        return ReconstructionLoss()


class _WhitenedDetector(ThresholdMixin, io.ModelFileMixin, OutlierMixin, BaseEstimator):
    """PCA whitening followed by a classic scorer; ``offset_`` from the training scores.

    The reference scores of p-values are the training rows' (``reference_held_out_`` is
    False, and ``predict_pvalues`` warns): call ``calibrate`` with held-out normal rows.

    ``save`` / ``load`` store the PCA's and the scorer's fitted arrays (``io.ModelFileMixin``).
    """

    _file_kind = "whitened"

    #: samples of any rank are flattened (vectors, images, clips and others)
    _sample_ranks = ANY_RANK

    _parameter_constraints: dict = {
        "n_components": [None, Interval(numbers.Integral, 1, None, closed="left"),
                         Interval(numbers.Real, 0, 1, closed="neither")],
        "contamination": [Interval(numbers.Real, 0, 0.5, closed="right")],
    }

    @unchanged_on_failure
    def fit(self, X, y=None):
        """Fit PCA whitening and the scorer on ``X`` (flattened).

        As for the deep detectors, values must fit in float32, and a fit that raises leaves
        the estimator exactly as it was before the call.

        Parameters
        ----------
        X : array-like of shape (n, ...)
            Training samples (vectors, or samples of more axes such as images).
        y : array-like of shape (n,) with values in {+1, -1}, optional
            With ``y`` in {+1, -1}, only the +1 (normal) rows are used, as for the deep
            detectors.

        Returns
        -------
        self

        See Also
        --------
        score_samples : Normality scores of new samples once fitted.
        calibrate : Replace the training rows' reference scores by those of held-out rows.
        save : Write the fitted estimator to a model file.
        """
        self._validate_params()
        given_dtype = getattr(X, "dtype", None)
        X = validate_data(self, X, allow_nd=True)
        scale = pixel_scale(given_dtype, X.shape[1:])  # integer images: to [0, 1]
        if scale is not None:
            X = X / scale
        with np.errstate(over="ignore"):
            if not np.isfinite(X.astype(np.float32)).all():
                raise ValueError("X contains values too large for float32 (|x| > 3.4e38)")
        sample_shape = tuple(int(s) for s in X.shape[1:])
        X = normal_rows(X.reshape(len(X), -1), y)
        if len(X) < 2:  # after the labels: PCA of one row is NaN
            raise ValueError(f"{type(self).__name__} needs at least 2 normal samples to fit; "
                             f"got n_samples = {len(X)}")
        n_components = self.n_components
        if isinstance(n_components, numbers.Integral):
            # n centred rows span at most n - 1 directions: whitening an n-th one would
            # divide by a variance of ~1e-14 and blow other points' scores up
            n_components = min(n_components, len(X) - 1, X.shape[1])
        # finite float32 values whose squares are not (|x| > 1.8e19) overflow the covariance
        # of float32 rows: NaN components, or an eigensolver that does not converge
        with np.errstate(over="ignore", invalid="ignore"):
            try:
                self.pca_ = PCA(n_components=n_components, whiten=True, random_state=0).fit(X)
                Z = self._whiten(X)
            except np.linalg.LinAlgError:
                Z = None
        if Z is None or not np.isfinite(Z).all():
            raise ValueError("X holds values too large for PCA whitening: their covariance "
                             "overflows (rescale X, e.g. StandardScaler)")
        self.model_ = self._make_model().fit(Z)
        scores = self._raw_score(Z)
        check_score_spread(scores, X, type(self).__name__)
        self.offset_ = float(np.percentile(scores, 100 * self.contamination))
        self._set_reference_scores(scores, held_out=False)
        self.sample_shape_ = sample_shape
        return self

    def _block_rows(self):
        """Rows per scoring block: ``STREAM_ROWS`` (``sknovelty._scoring``), fewer for samples of
        more than 256 values, so that a block holds at most ``256 * STREAM_ROWS`` values (4 M:
        32 MB as float64), but at least 4 rows (blocks of equal size then hold 2 or more:
        numpy multiplies a single row by another routine, whose floats can differ)."""
        n_values = max(1, int(np.prod(self.sample_shape_)))
        return max(4, min(STREAM_ROWS, 256 * STREAM_ROWS // n_values))

    def _whiten(self, X):
        """PCA whitening of flat rows, in float64 whatever X's dtype.

        So that a row's whitened values do not depend on the rows scored with it: measured
        with numpy's OpenBLAS (AMD EPYC), the float64 product gave every row the same floats
        for any block of 2 rows or more, while the float32 one took other kernels for blocks
        under about 2000 rows of 64 x 8 (1e-7 apart, which the KDE's log-density of far rows
        can turn into tens of nats).
        """
        return self.pca_.transform(X.reshape(len(X), -1).astype(np.float64, copy=False))

    def score_samples(self, X):
        """Normality score (higher = more normal).

        ``X`` is validated, whitened and scored in blocks of at most 16384 rows
        (``sknovelty._scoring.STREAM_ROWS``) and about 4 million values, so a memory-mapped ``X``
        of any length is streamed rather than read whole. The whitening is computed in
        float64 (whatever ``X``'s dtype), where a row's result does not depend on the rows
        around it: the scores are those of scoring ``X`` at once.

        Parameters
        ----------
        X : array-like
            ``X`` holds samples of the fitted shape, or flat rows of as many values.

        Returns
        -------
        ndarray of shape (n,)

        See Also
        --------
        decision_function : The scores shifted by ``offset_``, negative for outliers.
        predict_pvalues : Conformal p-values of the scores against the reference scores.
        """
        check_is_fitted(self)
        return score_in_row_blocks(X, self._block_rows(), self._score_block)

    def _score_block(self, X):
        """``score_samples`` of rows all validated and scored at once."""
        shape = tuple(self.sample_shape_)  # a list once loaded from a model file's JSON
        given_dtype = getattr(X, "dtype", None)
        # For images and clips n_features_in_ counts channels, and scikit-learn's check of it
        # would misreport a mis-shaped X ("X has 8 features, but ... is expecting 1"): it runs
        # for vectors only (and for X of rank < 2, to reject them); the shape check covers the rest.
        X = validate_data(self, X, allow_nd=True, reset=False,
                          ensure_2d=len(shape) == 1 or np.ndim(X) < 2)
        if X.shape[1:] not in (shape, (int(np.prod(shape)),)):
            raise ValueError(f"X has samples of shape {X.shape[1:]}, but {type(self).__name__} "
                             f"was fitted on samples of shape {shape}")
        scale = pixel_scale(given_dtype, shape)
        if scale is not None:
            X = X / scale
        with np.errstate(over="ignore"):
            if not np.isfinite(X.astype(np.float32)).all():
                raise ValueError("X contains values too large for float32 (|x| > 3.4e38)")
        scores = self._raw_score(self._whiten(X))
        if not np.isfinite(scores).all():  # e.g. KDE's log-density, -inf far enough away
            raise ValueError("non-finite scores: X is far outside the range seen in training "
                             "(rescale X)")
        return scores


class WhitenedOneClassSVM(_WhitenedDetector):
    """One-class SVM on PCA-whitened features (the baseline of LSA, section 4.1).

    Parameters
    ----------
    n_components : int, float in (0, 1) or None, default=32
        PCA components kept (int, capped at n_samples - 1 and n_features), or share of
        variance (float).
    nu : float, default=0.1
    gamma : "scale", "auto" or float, default="scale"
    contamination : float, default=0.1
        ``offset_`` is this percentile of the training scores.

    Attributes
    ----------
    pca_ : PCA
    model_ : OneClassSVM
    offset_ : float
    sample_shape_ : tuple
        Shape of one training sample (images are flattened for PCA).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sknovelty import WhitenedOneClassSVM
    >>> X, y = load_digits(return_X_y=True)
    >>> WhitenedOneClassSVM(n_components=16).fit(X[y == 0]).predict(X[:3]).shape
    (3,)
    """

    _parameter_constraints = {
        **_WhitenedDetector._parameter_constraints,
        "nu": [Interval(numbers.Real, 0, 1, closed="right")],
        "gamma": [StrOptions({"scale", "auto"}), Interval(numbers.Real, 0, None, closed="neither")],
    }

    def __init__(self, n_components=32, nu=0.1, gamma="scale", contamination=0.1):
        self.n_components = n_components
        self.nu = nu
        self.gamma = gamma
        self.contamination = contamination

    def _make_model(self):
        model = OneClassSVM(nu=self.nu, gamma=self.gamma)
        # OneClassSVM has no random_state parameter, and its fit draws libsvm's seed from
        # numpy's global generator (the attribute it leaves at None): a fixed seed keeps fit
        # off that generator. libsvm uses the seed only for probability estimates, which a
        # one-class SVM does not make, so the fitted model is the same.
        model.random_state = 0
        return model

    def _raw_score(self, Z):
        return self.model_.score_samples(Z)


class WhitenedKDE(_WhitenedDetector):
    """Gaussian kernel density estimate on PCA-whitened features (the baseline of LSA, section 4.1).

    ``score_samples`` is the log-density under the KDE fitted to the training data.

    Parameters
    ----------
    n_components : int, float in (0, 1) or None, default=32
        PCA components kept (int, capped at n_samples - 1 and n_features), or share of
        variance (float).
    bandwidth : float, "scott" or "silverman", default="scott"
    contamination : float, default=0.1

    Attributes
    ----------
    pca_ : PCA
    model_ : KernelDensity
    offset_ : float
    sample_shape_ : tuple
        Shape of one training sample (images are flattened for PCA).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sknovelty import WhitenedKDE
    >>> X, y = load_digits(return_X_y=True)
    >>> WhitenedKDE(n_components=16).fit(X[y == 0]).score_samples(X[:3]).shape
    (3,)
    """

    _parameter_constraints = {
        **_WhitenedDetector._parameter_constraints,
        "bandwidth": [StrOptions({"scott", "silverman"}),
                      Interval(numbers.Real, 0, None, closed="neither")],
    }

    def __init__(self, n_components=32, bandwidth="scott", contamination=0.1):
        self.n_components = n_components
        self.bandwidth = bandwidth
        self.contamination = contamination

    def _make_model(self):
        return KernelDensity(kernel="gaussian", bandwidth=self.bandwidth)

    def _raw_score(self, Z):
        return self.model_.score_samples(Z)
