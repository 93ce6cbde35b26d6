"""Any detector on patches: fit on the patches of normal images, score an image by its worst patch.

OLED's UCSD experiment (Jewell et al., WACV 2022, sec. 4) scores video frames through 30x30
patches; any image detector of this library (or any scikit-learn outlier detector with
``score_samples``) can be run that way with :class:`PatchwiseDetector`.
"""

import numbers

import numpy as np
from sklearn.base import BaseEstimator, MetaEstimatorMixin, OutlierMixin, clone
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from . import io
from ._validation import normal_rows, unchanged_on_failure, validate_samples
from .thresholds import ThresholdMixin
from .video import clip_starts

__all__ = ["PatchwiseDetector", "patch_starts"]


def patch_starts(size, patch_size, stride):
    """First index of each patch along an axis of ``size`` values.

    ``0, stride, 2 stride, ...`` plus ``size - patch_size`` when the stride would leave the
    last values out, so every value lies in at least one patch when ``stride <= patch_size``.

    Parameters
    ----------
    size : int
        Values along the axis (pixels of a row or column, features of a vector).
    patch_size : int
        Values per patch, at most ``size``.
    stride : int
        Distance between the starts of neighbouring patches.

    Returns
    -------
    ndarray of shape (n_patches,)

    See Also
    --------
    PatchwiseDetector : Cuts samples into the patches that start here.
    sknovelty.video.clip_starts : The same rule for clips of a video.

    Examples
    --------
    >>> from sknovelty.patches import patch_starts
    >>> patch_starts(10, 4, 4).tolist()
    [0, 4, 6]
    """
    if size < patch_size:
        raise ValueError(f"patch_size={patch_size} is larger than the sample ({size} values "
                         "along an axis)")
    return clip_starts(size, patch_size, stride)


class PatchwiseDetector(ThresholdMixin, io.ModelFileMixin, MetaEstimatorMixin, OutlierMixin,
                        BaseEstimator):
    """Fit a detector on the patches of normal images; score an image by its patches.

    Images ``(n, C, H, W)`` (or flat rows with ``image_shape``) are cut into
    ``patch_size`` x ``patch_size`` patches every ``stride`` pixels (the last row and column of
    patches lie flush with the border, so every pixel is covered); vectors ``(n, d)`` into
    windows of ``patch_size`` consecutive features. A clone of ``estimator`` is fitted on all
    patches of the normal training samples; a sample's normality score aggregates its
    patches' scores: their minimum (``aggregate="max"``: the most novel patch decides, OLED's
    frame score) or their mean.

    OLED's UCSD experiment is ``PatchwiseDetector(AdversarialMaskingDetector(channels=(32, 64,
    128), latent_dim=128, gamma=50.0), patch_size=30)`` on grey frames (``notes/oled.md``: the
    official code's networks for 30x30 patches, with gamma 50; its encoder strides only the
    first layer where this library's strides all but the last, and it trains 400 epochs with
    batch 1024).

    PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR
    2022) is this detector on the local features of a pretrained network, one location per
    patch: ``make_pipeline(PretrainedEmbedding(stage=[3, 4], pooling="local"),
    PatchwiseDetector(NearestNeighborDetector(n_neighbors=1, max_samples=0.1),
    patch_size=1))`` (its memory bank: a coreset of a tenth of the training locations; see
    :ref:`design-embedding-patches`).

    Parameters
    ----------
    estimator : estimator with ``fit`` and ``score_samples``
        The patch detector (higher score = more normal); cloned at ``fit``.
    patch_size : int, default=30
        Side of a square patch in pixels (window length for vectors).
    stride : int or None, default=None
        Pixels between neighbouring patches; None means ``patch_size`` (tiles).
    aggregate : {"max", "mean"}, default="max"
        How patch novelty makes a sample's: the largest (the score is the lowest patch score)
        or the mean.
    contamination : float in (0, 0.5], default=0.1
        Share of the training samples that ``offset_`` (and so ``predict``) marks as outliers.
    image_shape : tuple (C, H, W) or None, default=None
        Shape of each sample when ``X`` holds flat rows of images (images passed as
        ``(n, C, H, W)`` must have this shape). Once fitted, ``X`` may hold samples of the
        fitted shape or flat rows of as many values, whichever ``fit`` was given.

    Attributes
    ----------
    estimator_ : estimator
        The clone of ``estimator`` fitted on the training patches.
    patch_starts_ : tuple of ndarray
        First row and first column of each patch (one array for vectors).
    sample_shape_ : tuple
        Shape of one sample: ``(C, H, W)`` or ``(d,)``.
    offset_ : float
        Threshold on ``score_samples`` from ``contamination`` on the training samples.
    reference_scores_ : ndarray
        Sorted scores of the training samples (in-sample: ``reference_held_out_`` is False;
        :meth:`calibrate` with unseen normal samples before trusting p-values).
    reference_held_out_ : bool
    n_features_in_ : int

    See Also
    --------
    sknovelty.AdversarialMaskingDetector : OLED, whose UCSD experiment scores patches.
    sknovelty.PretrainedEmbedding : With ``pooling="local"``, the features PatchCore scores.
    sknovelty.video.frames_to_clips : Frames of a video as samples.

    Notes
    -----
    Memory: ``fit`` and scoring hold all patches of the samples passed (about
    ``(patch_size / stride)^2`` times the samples' size).

    ``save`` / ``load`` (and :func:`sknovelty.io.save` / :func:`sknovelty.load`) store the
    detector in a model file without pickle when ``estimator`` is one of sknovelty's
    estimators, or a Pipeline of them and of the scikit-learn transformers of
    :data:`sknovelty.io.TRANSFORMERS`: the wrapped detector's file entries under the prefixes
    ``estimator.`` (the template) and ``estimator_.`` (the fitted clone), see
    :mod:`sknovelty.io`. Other wrapped estimators: pickle or joblib.

    Examples
    --------
    >>> import numpy as np
    >>> from sknovelty import PatchwiseDetector, WhitenedKDE
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(0.5, 0.05, size=(60, 1, 16, 16))
    >>> det = PatchwiseDetector(WhitenedKDE(n_components=4), patch_size=8).fit(X)
    >>> odd = X[:1].copy(); odd[0, 0, 2:6, 10:14] = 1.0        # a bright square
    >>> det.patch_scores(np.r_[X[:1], odd]).shape              # (samples, rows, columns)
    (2, 2, 2)
    >>> bool(det.score_samples(odd)[0] < det.score_samples(X[:1])[0])
    True
    >>> int(np.unravel_index(det.score_maps(odd)[0, 0].argmax(), (16, 16))[1]) >= 8
    True
    """

    _parameter_constraints = {
        "estimator": [HasMethods(["fit", "score_samples"])],
        "patch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "stride": [None, Interval(numbers.Integral, 1, None, closed="left")],
        "aggregate": [StrOptions({"max", "mean"})],
        "contamination": [Interval(numbers.Real, 0, 0.5, closed="right")],
        "image_shape": [None, tuple, list],
    }

    def __init__(self, estimator, patch_size=30, stride=None, aggregate="max", contamination=0.1,
                 image_shape=None):
        self.estimator = estimator
        self.patch_size = patch_size
        self.stride = stride
        self.aggregate = aggregate
        self.contamination = contamination
        self.image_shape = image_shape

    #: samples are vectors (windows of features) or images (square patches)
    _sample_ranks = (1, 3)

    # ------------------------------------------------------------------ shapes
    def _samples(self, X, reset):
        """Validated float32 samples of shape ``(n, *sample_shape)``: vectors, images, or flat
        rows with ``image_shape`` at ``fit``; once fitted, samples of ``sample_shape_`` or flat
        rows of as many values (``sknovelty._validation.validate_samples``, as the detectors)."""
        return validate_samples(self, X, reset=reset, ranks=self._sample_ranks)

    def _patches(self, X):
        """``(n * n_patches, C, p, p)`` patches (or ``(n * n_patches, p)`` windows)."""
        p = self.patch_size
        if X.ndim == 2:
            idx = self.patch_starts_[0][:, None] + np.arange(p)     # (P, p)
            return X[:, idx].reshape(-1, p)
        rows = self.patch_starts_[0][:, None] + np.arange(p)         # (R, p)
        cols = self.patch_starts_[1][:, None] + np.arange(p)         # (K, p)
        patches = X[:, :, rows[:, None, :, None], cols[None, :, None, :]]  # (n, C, R, K, p, p)
        return np.ascontiguousarray(patches.transpose(0, 2, 3, 1, 4, 5)).reshape(
            -1, X.shape[1], p, p)

    def _patch_starts(self, sample_shape):
        """Where the patches of samples of ``sample_shape`` start, per spatial axis."""
        stride = self.patch_size if self.stride is None else self.stride
        spatial = sample_shape[1:] if len(sample_shape) == 3 else sample_shape
        return tuple(patch_starts(s, self.patch_size, stride) for s in spatial)

    def _grid(self):
        return tuple(len(s) for s in self.patch_starts_)

    # ------------------------------------------------------------------ fit and score
    @unchanged_on_failure
    def fit(self, X, y=None):
        """Fit a clone of ``estimator`` on the patches of the normal samples of ``X``.

        Parameters
        ----------
        X : array-like of shape (n, C, H, W), (n, d), or flat rows with ``image_shape``
            Training samples.
        y : array-like of shape (n,) with values in {+1, -1}, optional
            With ``y`` in {+1, -1}, only the +1 (normal) samples are used.

        Returns
        -------
        self

        See Also
        --------
        score_samples : Normality scores of new samples once fitted.
        calibrate : Reference scores from normal samples not used in ``fit``.
        """
        self._validate_params()
        X = normal_rows(self._samples(X, reset=True), y)
        if len(X) < 1:
            raise ValueError(f"{type(self).__name__} needs at least 1 normal sample")
        self.sample_shape_ = tuple(X.shape[1:])
        self.patch_starts_ = self._patch_starts(self.sample_shape_)
        self.estimator_ = clone(self.estimator).fit(self._patches(X))
        scores = self._aggregate(self._patch_scores(X))
        self.offset_ = float(np.percentile(scores, 100 * self.contamination))
        self._set_reference_scores(scores, held_out=False)
        return self

    def _patch_scores(self, X):
        scores = np.asarray(self.estimator_.score_samples(self._patches(X)), dtype=np.float64)
        return scores.reshape(len(X), *self._grid())

    def _aggregate(self, patch_scores):
        flat = patch_scores.reshape(len(patch_scores), -1)
        return flat.min(1) if self.aggregate == "max" else flat.mean(1)

    def patch_scores(self, X):
        """The wrapped detector's normality score of every patch (higher = more normal).

        Parameters
        ----------
        X : array-like of the fitted sample shape (or flat rows of as many values)
            Samples to score.

        Returns
        -------
        ndarray of shape (n, n_rows, n_cols) for images, (n, n_windows) for vectors
            Patch ``(i, j)`` starts at row ``patch_starts_[0][i]``, column
            ``patch_starts_[1][j]``.

        See Also
        --------
        score_samples : The patches' scores aggregated per sample.
        score_maps : The patches' novelty spread back over the pixels.
        """
        check_is_fitted(self)
        return self._patch_scores(self._samples(X, reset=False))

    def score_samples(self, X):
        """Normality score per sample: the lowest (or mean) score of its patches.

        Parameters
        ----------
        X : array-like of the fitted sample shape (or flat rows of as many values)
            Samples to score.

        Returns
        -------
        ndarray of shape (n,)
            Higher = more normal.

        See Also
        --------
        patch_scores : The score of every patch.
        decision_function : The scores shifted by ``offset_``, negative for outliers.
        """
        return self._aggregate(self.patch_scores(X))

    def score_maps(self, X):
        """Where each sample is novel: each pixel gets the novelty of the patches holding it.

        A patch's novelty is minus its score; a pixel takes the largest novelty of the patches
        that cover it (``aggregate="max"``) or their mean (``"mean"``).

        Parameters
        ----------
        X : array-like of the fitted sample shape (or flat rows of as many values)
            Samples to map.

        Returns
        -------
        ndarray of shape (n, 1, H, W) for images, (n, d) for vectors

        See Also
        --------
        patch_scores : The scores the map is made of.
        sknovelty.plotting.plot_anomaly_map : Draw a map over its image.
        """
        novelty = -self.patch_scores(X)
        n, p = len(novelty), self.patch_size
        spatial = self.sample_shape_[1:] if len(self.sample_shape_) == 3 else self.sample_shape_
        worst = self.aggregate == "max"
        out = np.full((n, *spatial), -np.inf if worst else 0.0)
        count = np.zeros(spatial)
        # one pass per patch position (vectorised over samples); positions are few
        for index in np.ndindex(*self._grid()):
            region = (slice(None),) + tuple(slice(s[i], s[i] + p)
                                            for s, i in zip(self.patch_starts_, index))
            value = novelty[(slice(None), *index)].reshape((n,) + (1,) * len(spatial))
            if worst:
                np.maximum(out[region], value, out=out[region])
            else:
                out[region] += value
            count[region[1:]] += 1
        if not worst:
            out /= count
        return out[:, None] if len(self.sample_shape_) == 3 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags

    # ------------------------------------------------------------------ persistence
    # save(path) and load(path, device=None) come from io.ModelFileMixin; the file holds the
    # wrapped estimators under prefixes of their own (io's "composite" layout)
    _file_kind = "patchwise"


# declaring _file_kind marks a base of ModelFileMixin, which registers only its subclasses
io.register(PatchwiseDetector, "patchwise")
