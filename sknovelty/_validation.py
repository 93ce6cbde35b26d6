"""Input validation and the guards around ``fit`` that every sknovelty estimator shares.

Samples and their shapes (:func:`validate_samples`), pixel scales, labels
(:func:`normal_rows`), the checks of a fit's input scale and of its scores' spread, and
:func:`unchanged_on_failure`, which leaves an estimator as it was when its ``fit`` raises.
"""

import functools
import math
import numbers
import warnings

import numpy as np
from sklearn.utils.validation import check_consistent_length, column_or_1d, validate_data

from ._device import c_ordered
from .engine import TrainingDivergedError
from .exceptions import InputRangeWarning, InputScaleWarning

__all__ = ["ANY_RANK", "RANK_INPUTS", "SampleValidationMixin", "check_score_spread", "normal_rows", "pixel_scale",
           "unchanged_on_failure", "validate_samples", "warn_on_tiny_scale"]

#: the kind of sample of each rank (axes of one sample): the words of the registry's ``inputs``
RANK_INPUTS = {1: "vectors", 3: "images", 4: "clips"}
#: the same ranks as error messages name them
_RANK_NAMES = {1: "vectors (n, d)", 3: "images (n, C, H, W)", 4: "video clips (n, C, T, H, W)"}
#: ``_sample_ranks`` of an estimator that flattens samples of any rank
ANY_RANK = range(1, 65)


def unchanged_on_failure(fit):
    """Decorate ``fit`` so that a fit that raises (an error, a diverged training, Ctrl-C)
    leaves the estimator exactly as it was before the call, then re-raises."""
    @functools.wraps(fit)
    def guarded(self, *args, **kwargs):
        before = dict(self.__dict__)
        try:
            return fit(self, *args, **kwargs)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(before)
            raise

    return guarded


def validate_samples(estimator, X, *, reset, ranks):
    """``X`` as C-ordered float32 samples ``(n, *shape)``, for ``estimator``'s ``fit``
    (``reset``: the shape comes from ``X`` and ``estimator.image_shape``) or scoring (the
    shape is ``estimator.sample_shape_``; flat rows of as many values are accepted).

    Checks what scikit-learn's ``validate_data`` checks (and sets ``n_features_in_`` at fit),
    that samples have one of the per-sample ``ranks`` (1 vectors, 3 images, 4 clips), that
    images are not channels-last, and that values fit in float32. Images of an unsigned
    integer dtype are scaled to [0, 1] by the dtype's range (:func:`pixel_scale`).
    """
    name = type(estimator).__name__
    fitted = None if reset else tuple(int(s) for s in estimator.sample_shape_)
    # scikit-learn's column check compares axis 1, which for images is the channel axis (and
    # a matching flat row is fine): at scoring, samples of several axes are compared whole
    # below, with a message that names both shapes
    check_columns = reset or len(fitted) == 1 or np.ndim(X) < 2
    given_dtype = getattr(X, "dtype", None)
    X = validate_data(estimator, X, reset=reset, allow_nd=True, ensure_2d=check_columns,
                      dtype=[np.float64, np.float32])
    if reset:
        shape = _sample_shape(X, estimator.image_shape, ranks, name)
    else:
        shape = fitted
        if X.shape[1:] != shape and not (X.ndim == 2 and X.shape[1] == math.prod(shape)):
            if len(shape) >= 3 and X.ndim == len(shape) + 1 and X.shape[2:] == shape[1:]:
                raise ValueError(f"X has samples of shape {X.shape[1:]} ({X.shape[1]} "
                                 f"channels), but {name} was fitted on samples of shape "
                                 f"{shape} ({shape[0]} channels)")
            if X.ndim == 2:
                raise ValueError(f"X has rows of {X.shape[1]} values, but {name} was fitted "
                                 f"on samples of shape {shape} ({math.prod(shape)} values)")
            raise ValueError(f"X has samples of shape {X.shape[1:]}, but {name} was fitted "
                             f"on samples of shape {shape}")
    scale = pixel_scale(given_dtype, shape)
    if scale is not None:
        X = X / scale
    with np.errstate(over="ignore"):
        X = c_ordered(X.reshape((len(X), *shape)))
    if not np.isfinite(X).all():
        raise ValueError("X contains values too large for float32 (|x| > 3.4e38)")
    return X


def _sample_shape(X, image_shape, ranks, name):
    """The per-sample shape of validated ``X`` at fit (``image_shape`` for flat rows)."""
    shape = tuple(X.shape[1:])
    if image_shape is not None:
        image = tuple(image_shape)
        if len(image) != 3 or not all(isinstance(s, numbers.Integral) and s > 0 for s in image):
            raise ValueError(f"image_shape must be (C, H, W) with positive ints, got {image_shape!r}")
        image = tuple(int(s) for s in image)
        if X.ndim == 2 and X.shape[1] != math.prod(image):
            raise ValueError(f"image_shape={image} needs {math.prod(image)} columns, "
                             f"but X has {X.shape[1]}")
        if X.ndim > 2 and shape != image:
            raise ValueError(f"X has samples of shape {shape}, but image_shape={image}")
        shape = image
    elif (len(shape) in (3, 4) and shape[-1] in (1, 3, 4) and shape[0] not in (1, 3, 4)
          and shape[-2] != shape[-1]):
        # (the last test spares channels-first samples of 1 x 1, 3 x 3 or 4 x 4 pixels, such
        # as the patches of feature maps PatchwiseDetector passes on: a channels-last image
        # as wide as its channel count is no image)
        axes = (0, len(shape), *range(1, len(shape)))
        raise ValueError(
            f"X has samples of shape {shape}, which looks channels-last ({shape[-1]} "
            f"channels); sknovelty takes channels first, {_RANK_NAMES[len(shape)]}: pass "
            f"X.transpose{axes}, or set image_shape={shape} if the first axis really holds "
            "the channels")
    if len(shape) not in ranks:
        accepted = ", ".join(_RANK_NAMES[r] for r in ranks)
        raise ValueError(f"{name} accepts {accepted}; got X of shape {X.shape}")
    return shape


def pixel_scale(dtype, sample_shape):
    """The divisor that brings images of an integer ``dtype`` to [0, 1]: the dtype's largest
    value for unsigned integers (255 for uint8); ``None`` for floats, booleans and vectors.

    Signed integer images are refused: their scale is ambiguous.
    """
    if dtype is None or len(sample_shape) < 3:
        return None
    dtype = np.dtype(dtype)
    if dtype.kind == "u":
        return float(np.iinfo(dtype).max)
    if dtype.kind == "i":
        raise ValueError(f"images of dtype {dtype} have no known pixel scale: pass floats in "
                         "[0, 1] (e.g. X / 255), or an unsigned integer dtype (e.g. "
                         "X.astype(np.uint8) for 0-255 pixels), which is scaled by its range")
    return None


#: ``fit`` raises when the held-out rows, at least ``MIN_DISTINCT_ROWS`` distinct ones, get
#: no more than one distinct score per ``DISTINCT_SCORE_SHARE`` of them
MIN_DISTINCT_ROWS, DISTINCT_SCORE_SHARE = 10, 3


def check_score_spread(scores, X_ref, name):
    """Raise :class:`TrainingDivergedError` when a fitted model gives (nearly) one score to
    every held-out row: at least ``MIN_DISTINCT_ROWS`` distinct rows, and at most one distinct
    score per ``DISTINCT_SCORE_SHARE`` distinct rows. Such a model cannot rank anything (a
    learning rate so large that the network saturates, or inputs so small that float32 loses
    them)."""
    rows = len(np.unique(np.asarray(X_ref).reshape(len(X_ref), -1), axis=0))
    distinct = len(np.unique(scores))
    if rows >= MIN_DISTINCT_ROWS and distinct <= max(1, rows // DISTINCT_SCORE_SHARE):
        raise TrainingDivergedError(
            f"the fitted {name} gives {distinct} distinct score(s) to {rows} distinct held-out "
            "rows: it cannot rank samples. Standardise X (e.g. StandardScaler; images as "
            "floats in [0, 1]) and, for a deep detector, keep learning_rate small (the default)")


def warn_on_tiny_scale(X, name):
    """Warn (:class:`InputScaleWarning`) when the training values spread by less than
    ``TINY_SPREAD``, where float32 networks start to lose the signal."""
    spread = float(np.std(X, dtype=np.float64)) if X.size else 0.0
    if 0 < spread < TINY_SPREAD:
        warnings.warn(f"the training values of this {name} spread by only {spread:.2g} "
                      "(standard deviation): float32 networks lose such small differences. "
                      "Standardise X (e.g. StandardScaler)", InputScaleWarning, stacklevel=4)


#: :func:`warn_on_tiny_scale`'s limit on the standard deviation of the training values
TINY_SPREAD = 1e-6


def normal_rows(X, y):
    """The rows labelled +1 when ``y`` holds +1/-1 outlier labels; all rows otherwise (with a warning)."""
    if y is None:
        return X
    y = column_or_1d(y)
    check_consistent_length(X, y)
    labels = set(np.unique(y).tolist())
    if not labels <= {1, -1}:
        warnings.warn(f"y holds labels {sorted(labels, key=str)[:5]} other than +1 (normal) "
                      "and -1 (anomaly); it is ignored and every row is used for training",
                      UserWarning, stacklevel=3)
        return X
    if 1 not in labels:
        raise ValueError("y marks no row as normal (+1): there is nothing to train on")
    return X[y == 1]


class SampleValidationMixin:
    """``_validate_X`` of :class:`~sknovelty.base.BaseDeepDetector`: :func:`validate_samples`
    with the detector's ``_sample_ranks``; at fit it sets ``sample_shape_``, at scoring it
    warns (:class:`~sknovelty.exceptions.InputRangeWarning`) when the values reach far beyond
    the fitted range."""

    def _validate_X(self, X, reset):
        X = validate_samples(self, X, reset=reset, ranks=self._sample_ranks)
        if reset:
            self.sample_shape_ = tuple(X.shape[1:])
        elif len(X):
            self._warn_outside_fitted_range(X)
        return X

    #: scoring warns when its values reach beyond the fitted range by more than this many
    #: times the fitted range's width (pixels in 0-255 scored by a model fitted on [0, 1])
    RANGE_WARNING = 1.0

    def _warn_outside_fitted_range(self, X):
        low, high = getattr(self, "input_range_", (None, None))
        if low is None or not high > low:
            return
        beyond = max(float(X.max()) - high, low - float(X.min()))
        if beyond > self.RANGE_WARNING * (high - low):
            warnings.warn(
                f"{type(self).__name__} was fitted on values in [{low:.4g}, {high:.4g}], but "
                f"X reaches {beyond:.4g} beyond that range: scores so far outside it say little. "
                "Scale X as the training data was (images: floats in [0, 1], or an integer "
                "dtype such as uint8, which is scaled by its range)",
                InputRangeWarning, stacklevel=4)
