"""The base estimator every sknovelty detector derives from.

It owns everything that is not the paper: input validation and shapes, devices, threads,
seeding, batching, score normalisation and the decision threshold, and persistence. The
training itself runs in :mod:`sknovelty.engine`. A method is a subclass that writes its
hyperparameters in ``__init__`` (stored as given, scikit-learn's rule) and supplies:

Required
    ``_build_module(sample_shape, input_range)``
        Its network(s) as one ``nn.Module`` for samples of ``sample_shape`` whose training
        values span ``input_range = (min, max)``. Example (LSA):
        ``return LSAModule(sample_shape, self.latent_dim, ...)``.
    ``_build_criterion(sample_shape)``
        An ``nn.Module`` following :class:`~sknovelty.engine.DetectorCriterion`: ``forward(
        output, x)`` is the training loss, ``per_sample(output, x)`` the paper's novelty terms
        per sample (a dict of 1-D tensors, higher = more novel). Example:
        ``return LSALoss(self.lam)``.

Optional (class attributes)
    ``_sample_ranks``
        Per-sample ranks accepted: 1 vectors, 3 images, 4 clips. Example: ``(1, 3)``.
    ``_novelty_terms``
        The terms ``score_samples`` adds up after normalisation. Example: ``("rec", "llk")``.
    ``_normalization``
        ``"minmax"`` or ``"zscore"``, with constants from held-out normal rows.
    ``_net_class``
        The engine net: ``DetectorNet`` (one player), ``AdversarialNet`` (the module has an
        ``adversary``, the criterion an ``adversary_loss``) or ``TwoStageNet`` (the module has
        ``stages`` and ``stage``); see the Protocols in :mod:`sknovelty.engine`. A property
        when it depends on a hyperparameter (LTG: ``noise="none"`` has no adversary).
    ``_fitted_attributes``
        Extra fitted JSON attributes that ``save`` stores. Example: ``(*base, "mask_")``.

Optional (hooks)
    ``_check_hyperparameters()``
        Checks ``_parameter_constraints`` cannot express. Example: ``n_bins >= 2``.
    ``_net_kwargs()``
        Keyword arguments of the engine net. Example: ``{"optimizer__betas": (0.5, 0.9)}``.
    ``_method_callbacks()``
        ``(name, callback)`` pairs training needs. Example: ``[("noise", NoiseMonitor())]``.
    ``_finalize_fit()``
        Fitted attributes to set once training has ended (MMP: a collapse check).
    ``_combine(terms)``
        How the normalised terms make ``score_samples`` (default: minus their sum).

Detectors register themselves by class name when defined (``__init_subclass__``), so that
``sknovelty.load`` finds them without importing anything named in a file.
"""

import contextlib
import copy
import functools
import math
import numbers
import os
import threading
import warnings

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state
from sklearn.utils._available_if import available_if
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import (_num_samples, check_consistent_length, check_is_fitted,
                                      column_or_1d, validate_data)
from skorch.helper import predefined_split
from skorch.history import History

from . import io
from ._checks import check_positive_ints
from .exceptions import (InputRangeWarning, InputScaleWarning, PrecisionWarning,
                         SimpleInputWarning)
from .engine import (BatchIterator, DetectorNet, DivergenceGuard, EpochProgressBar, TensorData,
                     TrainingDivergedError, exact_cudnn)
from .metrics import auroc, code_length
from .nn.layout import plain_strides
from .nn.random import fit_generators

__all__ = ["BaseDeepDetector", "ThresholdMixin", "TrainingDivergedError", "bf16_native", "c_ordered",
           "check_positive_ints", "resolve_device", "torch_threads"]


#: Training data up to this many bytes is moved to the device once, before the first epoch,
#: so that no host-to-device copy happens inside the training loop.
DEVICE_DATA_LIMIT = 1 << 30

#: Adam's fused kernel (one pass over all parameters) runs on CPU from torch 2.4 on.
_FUSED_ADAM = ({"optimizer__fused": True}
               if tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 4) else {})

#: Scoring validates, converts and scores at most about this many rows at a time (a multiple of
#: the scoring chunk), so that a memory-mapped or otherwise sliceable X of any length is
#: streamed rather than loaded whole.
STREAM_ROWS = 16384

#: ``score_batch_size="auto"``: per device type, the most rows per scoring chunk and the input
#: values a chunk may hold (256 and 1024 MNIST images; ``benchmarks/throughput.py``)
AUTO_SCORE_BATCH = {"cuda": (1024, 1024 * 784), "cpu": (256, 256 * 784)}

_RANK_NAMES = {1: "vectors (n, d)", 3: "images (n, C, H, W)", 4: "video clips (n, C, T, H, W)"}


def resolve_device(device):
    """``"auto"`` -> ``"cuda"`` when available, else ``"cpu"``; other strings are checked.

    Only ``"cpu"`` and CUDA devices (``"cuda"``, ``"cuda:1"``...) are accepted: other torch
    device types (``"meta"``, ``"mps"``, ``"xla"``, ``"lazy"``...) are a ``ValueError``, as
    is CUDA where it is not available.
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a valid torch device string") from exc
    if parsed.type not in ("cpu", "cuda"):
        raise ValueError(f"device={device!r} is not supported: sknovelty runs on 'cpu' or "
                         "'cuda' devices ('auto' picks one)")
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available; "
                         "use device='cpu' or 'auto'")
    return str(parsed)


def c_ordered(X):
    """``X`` as a float32 array with plain C-order strides, copied only when it has other ones.

    ``np.ascontiguousarray`` is not enough: numpy calls an array C-contiguous whatever the
    stride of an axis of size 1, and ``frames[:, None]`` gives its channel axis a stride of 0.
    Such an array (and numpy's fancy indexing of it) becomes a torch tensor that also counts
    as channels-last, and oneDNN's multithreaded convolutions on CPU then corrupt memory
    (``benchmarks/upstream_onednn_c1_conv.py``). Every array the estimators hand to torch
    passes through here.
    """
    X = np.asarray(X, dtype=np.float32)
    if X.strides != tuple(X.itemsize * s for s in plain_strides(X.shape)):
        X = X.copy(order="C")
    return X


@functools.cache
def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            return frozenset(next((line.split(":", 1)[1].split() for line in f
                                   if line.startswith("flags")), ()))
    except OSError:  # not Linux: no flags to read
        return frozenset()


def bf16_native(device):
    """Whether ``device`` has native bfloat16 matrix kernels: a CUDA device that supports
    bfloat16, or a CPU with AVX512-BF16 or AMX (read from ``/proc/cpuinfo``; other systems
    count as without)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())


def _float32(output):
    """A module's output (a tensor, or tuples / named tuples / lists / dicts of them) with
    every floating-point tensor in float32."""
    if isinstance(output, torch.Tensor):
        return output.float() if output.is_floating_point() else output
    if isinstance(output, tuple) and hasattr(output, "_fields"):
        return type(output)(*(_float32(v) for v in output))
    if isinstance(output, (tuple, list)):
        return type(output)(_float32(v) for v in output)
    if isinstance(output, dict):
        return {k: _float32(v) for k, v in output.items()}
    return output


#: Held while a fit seeds torch's global generator and builds its networks from it (module
#: initialisation has no other source of randomness); the generator is restored afterwards.
_GLOBAL_RNG_LOCK = threading.RLock()


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


def resolve_precision(estimator, stacklevel):
    """``estimator.precision`` on ``estimator.device_``: ``"bfloat16"`` only where it is
    native (:func:`bf16_native`; tests emulate it with ``_emulate_bf16``); elsewhere
    ``"float32"`` with a :class:`~sknovelty.exceptions.PrecisionWarning`."""
    if estimator.precision == "float32":
        return "float32"
    if bf16_native(estimator.device_) or getattr(estimator, "_emulate_bf16", False):
        return "bfloat16"
    where = ("this GPU has no bfloat16 support" if estimator.device_.startswith("cuda")
             else "this CPU has neither AVX512-BF16 nor AMX")
    warnings.warn(f"precision='bfloat16' brings nothing here ({where}): "
                  f"{type(estimator).__name__} computes in float32", PrecisionWarning,
                  stacklevel=stacklevel)
    return "float32"


def score_in_row_blocks(X, block, score_block):
    """``score_block`` (rows -> 1-D scores) applied to ``X`` in blocks of at most ``block``
    rows, each a slice of ``X`` (a memmap is read a block at a time), of equal size (none much
    smaller than the others); ``X`` that is not array-like goes whole to ``score_block``,
    whose validation says why."""
    try:
        n = _num_samples(X)
    except TypeError:
        n = None
    if n is None or n <= block:
        return score_block(X)
    n_blocks = -(-n // block)
    bounds = [n * i // n_blocks for i in range(n_blocks + 1)]
    return np.concatenate([score_block(X[start:stop])
                           for start, stop in zip(bounds[:-1], bounds[1:])])


def resolve_n_jobs(n_jobs):
    """The thread count an integer ``n_jobs`` asks for: itself when positive, ``-1`` all
    CPUs, ``-2`` all but one, and so on (scikit-learn's convention), at least 1."""
    return n_jobs if n_jobs > 0 else max((os.cpu_count() or 1) + 1 + n_jobs, 1)


@contextlib.contextmanager
def torch_threads(n_jobs):
    """Run the block with ``n_jobs`` torch intra-op threads, then restore the caller's setting.

    ``None`` keeps the calling thread's current count; ``-1`` means all CPUs, ``-2`` all but
    one, and so on (scikit-learn's convention). The count is set in the calling thread in
    every case: torch's OpenMP and MKL counts are then the thread's own, so that another
    thread changing its count (the main thread's setting is the default of threads that
    never set one) cannot change this block's mid-way, and float32 results with it.
    """
    before = torch.get_num_threads()
    n = before if n_jobs is None else resolve_n_jobs(n_jobs)
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def seeded_build(seed, device):
    """Context in which torch's global generators are seeded with ``seed`` (for building
    networks), under a process-wide lock and restored afterwards; yields a function that
    returns generators continuing the seeded streams, for the training that follows
    (:func:`sknovelty.nn.random.fit_generators`), so that training draws nothing from the
    global generators."""
    device = torch.device(device)
    cuda = [device.index or 0] if device.type == "cuda" else []
    with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)

        def continuing():
            generators = {"cpu": torch.Generator()}
            generators["cpu"].set_state(torch.get_rng_state())
            if cuda:
                generators["cuda"] = torch.Generator(device=device)
                generators["cuda"].set_state(torch.cuda.get_rng_state(device))
            return generators

        yield continuing


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
    elif len(shape) in (3, 4) and shape[-1] in (1, 3, 4) and shape[0] not in (1, 3, 4):
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


class ThresholdMixin:
    """The decision threshold, conformal p-values and false-alarm rates of every detector.

    ``decision_function`` is ``score_samples - offset_`` and ``predict`` its sign, for the
    deep detectors and the whitened baselines alike (each sets ``offset_`` at fit from
    ``contamination``).

    Every sknovelty estimator keeps, at ``fit``, the sorted normality scores of normal rows
    in ``reference_scores_``: the held-out rows (``validation_fraction``) for the deep
    detectors, the training rows for the whitened baselines (``reference_held_out_`` says
    which). From them:

    * :meth:`predict_pvalues` gives each sample the split-conformal p-value of the hypothesis
      "this sample is normal": ``p(x) = (1 + #{r in reference : r <= s(x)}) / (n_ref + 1)``,
      with ``s = score_samples``. Small p-values mean novel.
    * :meth:`set_false_alarm_rate` sets ``offset_`` so that ``predict`` flags exactly the
      samples with ``p(x) <= rate``.

    **Guarantee.** If the reference rows were not used for training and a new sample is
    exchangeable with them (a normal sample from the same distribution), then
    ``P(p(x) <= a) <= a`` for every ``a`` (Vovk et al., *Algorithmic Learning in a Random
    World*, 2005; Bates et al., "Testing for outliers with conformal p-values", Ann. Statist.
    2023). The probability is over the draw of the reference rows and of ``x``: for one
    fitted model the false-alarm rate on new normal data scatters around ``a`` by about
    ``sqrt(a (1 - a) / n_ref)``. Each p-value is valid on its own; p-values of several
    samples scored against the same reference are dependent (positively), so for many tests
    use a procedure that allows it (e.g. Benjamini-Hochberg, which Bates et al. show valid
    here). Reference rows seen in training score more normal than new normal rows do, so
    with them (``reference_held_out_ = False``) the p-values are too small and a warning
    says so: pass normal rows the model never saw to :meth:`calibrate`.
    """

    def decision_function(self, X):
        """``score_samples(X) - offset_``: negative for outliers.

        Parameters
        ----------
        X : array-like of the fitted sample shape (or flat rows of as many values)
            Samples to score.

        Returns
        -------
        ndarray of shape (n,)

        See Also
        --------
        score_samples : The normality scores before the shift.
        predict : The sign of the decision function as +1 / -1 labels.
        set_false_alarm_rate : Set ``offset_`` from a target false-alarm rate.
        """
        return self.score_samples(X) - self.offset_

    def predict(self, X):
        """+1 for inliers, -1 for outliers.

        Parameters
        ----------
        X : array-like of the fitted sample shape (or flat rows of as many values)
            Samples to classify.

        Returns
        -------
        ndarray of int of shape (n,)
            +1 where ``decision_function(X) >= 0``, -1 elsewhere.

        See Also
        --------
        decision_function : The scores whose sign gives the labels.
        predict_pvalues : Conformal p-values instead of hard labels.
        set_false_alarm_rate : Set the threshold from a target false-alarm rate.
        """
        return np.where(self.decision_function(X) >= 0, 1, -1)

    def _set_reference_scores(self, scores, held_out):
        self.reference_scores_ = np.sort(np.asarray(scores, dtype=np.float64))
        self.reference_held_out_ = bool(held_out)

    def _warn_in_sample(self, consequence):
        if not self.reference_held_out_:
            warnings.warn(
                f"the reference scores of this {type(self).__name__} come from its training "
                f"rows, which score more normal than new normal rows: {consequence}. Call "
                "calibrate(X_normal) with normal rows it was not trained on",
                UserWarning, stacklevel=3)

    def _reference(self):
        check_is_fitted(self)
        reference = getattr(self, "reference_scores_", None)
        if reference is None:
            raise NotFittedError(
                f"this {type(self).__name__} was saved or pickled by an sknovelty version "
                "without reference scores: call calibrate(X_normal) with normal rows it was "
                "not trained on before asking for p-values or a false-alarm rate")
        return reference

    def predict_pvalues(self, X):
        """Conformal p-values of "the sample is normal" (small = novel).

        Parameters
        ----------
        X : array-like of the fitted sample shape
            Samples to test.

        Returns
        -------
        ndarray of shape (n,)
            ``(1 + #{r in reference_scores_ : r <= s(x)}) / (len(reference_scores_) + 1)``
            with ``s = score_samples``, in ``[1 / (n_ref + 1), 1]``. For a normal sample
            exchangeable with the reference rows, ``P(p <= a) <= a`` (see the class notes).

        Warns
        -----
        UserWarning
            When the reference rows were used for training (``reference_held_out_`` is
            False): then the p-values are too small.

        See Also
        --------
        set_false_alarm_rate : The threshold that flags the samples with ``p <= rate``.
        calibrate : Replace the reference scores by those of fresh normal rows.
        """
        reference = self._reference()
        self._warn_in_sample("the p-values are too small")
        below = np.searchsorted(reference, self.score_samples(X), side="right")
        return (1.0 + below) / (len(reference) + 1.0)

    def predict_fdr(self, X, alpha=0.1, method="marginal", delta=0.05):
        """Flag a batch as +1 / -1, keeping the false-discovery rate at most ``alpha``.

        Benjamini-Hochberg on the conformal p-values of :meth:`predict_pvalues`
        (:func:`sknovelty.thresholds.select_anomalies`): the expected share of normal samples
        among those labelled -1 is at most ``alpha``. Unlike :meth:`predict` (one threshold
        for every sample), the threshold depends on the whole batch: pass together the
        samples to be screened together.

        Guarantee, under the assumptions of the class notes (reference rows not trained on,
        normal samples exchangeable with them, samples of the batch independent): with
        ``method="marginal"`` the false-discovery rate is at most ``alpha`` on average over
        the draw of the reference rows (Bates et al. 2023, Section 2); with
        ``"conditional-simes"`` or ``"conditional-dkwm"`` it is at most ``alpha`` for the
        reference set at hand, except with probability ``delta`` (Section 3), at a cost in
        flagged anomalies. With ``n_ref`` reference scores, a batch of ``m`` samples needs
        ``n_ref >= m / alpha - 1`` for a single anomaly to be flagged alone.

        Parameters
        ----------
        X : array-like of the fitted sample shape
            The batch of samples to screen.
        alpha : float in (0, 1), default=0.1
            The target false-discovery rate.
        method : {"marginal", "conditional-simes", "conditional-dkwm"}, default="marginal"
            See :func:`~sknovelty.thresholds.select_anomalies`.
        delta : float in (0, 1), default=0.05
            Conditional methods: the probability, over the reference rows, that the
            guarantee fails. Ignored by ``"marginal"``.

        Returns
        -------
        ndarray of int of shape (n,)
            -1 for the samples selected as anomalies, +1 for the others (as :meth:`predict`).

        Warns
        -----
        UserWarning
            When the reference rows were used for training (``reference_held_out_`` is
            False): then the p-values are too small and the false-discovery rate is not
            controlled.

        See Also
        --------
        predict_pvalues : The p-values the selection is made from.
        sknovelty.thresholds.select_anomalies : The same selection from any p-values.
        calibrate : Make held-out normal rows the reference.
        """
        from .thresholds import _check_selection, select_anomalies

        reference = self._reference()
        _check_selection(alpha, method, len(reference), delta)  # before scoring X
        self._warn_in_sample("the p-values are too small and the false-discovery rate is "
                             "not controlled")
        # the p-values of predict_pvalues, computed here so that the warning names the caller
        below = np.searchsorted(reference, self.score_samples(X), side="right")
        pvalues = (1.0 + below) / (len(reference) + 1.0)
        flagged = select_anomalies(pvalues, alpha, method=method, n_calibration=len(reference),
                                   delta=delta)
        return np.where(flagged, -1, 1)

    def set_false_alarm_rate(self, rate):
        """Set ``offset_`` so that ``predict`` flags a share of at most ``rate`` of normal data.

        A sample is then an outlier (``predict`` -1, ``decision_function`` < 0) exactly when
        its p-value (:meth:`predict_pvalues`) is at most ``rate``, so under the assumption of
        the class notes the expected false-alarm rate on new normal data is at most ``rate``.
        ``offset_`` becomes the ``k``-th smallest reference score with
        ``k = floor(rate * (n_ref + 1))``. Scores do not change; ``contamination`` is not
        used afterwards (refitting sets ``offset_`` from it again).

        Parameters
        ----------
        rate : float in (0, 1)
            Target false-alarm rate: the share of normal samples flagged as novel.

        Returns
        -------
        self

        Warns
        -----
        UserWarning
            When the reference rows were used for training (``reference_held_out_`` is
            False): then far more than ``rate`` of new normal samples are flagged.

        Raises
        ------
        ValueError
            If ``rate`` is not in (0, 1), or is below ``1 / (n_ref + 1)``: then no threshold
            keeps the guarantee (use more reference rows, see :meth:`calibrate`).

        See Also
        --------
        predict_pvalues : The p-values the threshold is equivalent to.
        """
        reference = self._reference()
        if not (isinstance(rate, numbers.Real) and 0 < rate < 1):
            raise ValueError(f"rate must be a float in (0, 1), got {rate!r}")
        n = len(reference)
        k = math.floor(rate * (n + 1) + 1e-9)  # flag s < r_(k): p <= k / (n + 1) <= rate
        if k < 1:
            raise ValueError(f"a false-alarm rate of {rate} needs at least "
                             f"{math.ceil(1 / rate) - 1} reference scores; this "
                             f"{type(self).__name__} has {n}: calibrate it on more normal rows")
        self._warn_in_sample("far more than this rate of new normal samples will be flagged")
        self.offset_ = float(reference[k - 1])
        self.false_alarm_rate_ = float(rate)
        return self

    def calibrate(self, X, y=None):
        """Score fresh normal rows and make them the reference of p-values and thresholds.

        Split-conformal calibration: ``X`` must be normal rows that the model was not trained
        on (e.g. a held-out part of the normal data). Replaces ``reference_scores_`` (and
        sets ``reference_held_out_`` to True); if :meth:`set_false_alarm_rate` was called,
        ``offset_`` is recomputed for the same rate. The fitted model itself does not change.

        Parameters
        ----------
        X : array-like of the fitted sample shape
            Normal samples not used in ``fit``.
        y : array-like of shape (n,) with values in {+1, -1}, optional
            When given, only the rows labelled +1 are used.

        Returns
        -------
        self

        See Also
        --------
        predict_pvalues : The p-values computed against the new reference scores.
        set_false_alarm_rate : The threshold taken from the new reference scores.
        """
        check_is_fitted(self)
        scores = normal_rows(self.score_samples(X), y)
        if len(scores) < 1:
            raise ValueError("calibrate needs at least one normal row")
        self._set_reference_scores(scores, held_out=True)
        if hasattr(self, "false_alarm_rate_"):
            self.set_false_alarm_rate(self.false_alarm_rate_)
        return self


class BaseDeepDetector(ThresholdMixin, io.ModelFileMixin, OutlierMixin, BaseEstimator):
    """Base class of the deep novelty detectors (not used directly).

    Subclasses list all their parameters in ``__init__`` (scikit-learn convention); the
    common ones are documented here and repeated in each subclass.

    Parameters
    ----------
    epochs : int
        Number of passes over the training data.
    batch_size : int or "auto"
        Mini-batch size for training. ``"auto"`` (the default of LSA, the AE, OLED and the
        CAE): 64, or fewer when the training rows would make fewer than 6 batches of 64 (then
        ``n_train // 6``, at least 8), so that small training sets still get as many
        optimizer steps per epoch as MNIST-5k's ~360 rows do. ``batch_size_`` holds the size
        used.
    score_batch_size : int or "auto"
        Rows per forward pass when scoring (and when fixing the normalisation at the end of
        ``fit``); memory stays bounded by it, whatever the number of samples scored. X is
        also validated and converted in blocks of about 16,384 rows, so a ``numpy.memmap``
        (or any array-like that slices by rows) is streamed, never loaded whole. ``"auto"``:
        up to 1024 rows on CUDA and 256 on the CPU, fewer for large samples (at most the
        input values of 1024 / 256 MNIST images per chunk), never fewer than ``batch_size``.
        The chunk is fixed whatever the number of rows scored (the last is zero-padded), so
        scoring a handful of rows costs one whole chunk. A sample's score does not depend on
        the chunk size beyond float32 rounding (~1e-7 relative: some kernels block rows
        differently).
    precision : "float32" or "bfloat16"
        Precision of the networks' forward passes when scoring (training stays float32).
        ``"bfloat16"`` runs them under ``torch.autocast`` (the novelty terms are still
        computed in float32 from the outputs): faster on GPUs and on CPUs with AVX512-BF16
        or AMX; on other CPUs it brings nothing, so scoring stays float32 and ``fit`` warns.
        ``precision_`` holds the precision in use.
    learning_rate : float
        Adam learning rate.
    validation_fraction : float in [0, 1)
        Share of the (normal) training rows held out: the normalisation constants of the score
        (except LSA's, see its ``normalize_on``) and ``offset_`` are computed on it, and skorch
        reports ``valid_loss`` on it (so ``EarlyStopping`` works). With 0 they are computed on
        the training rows.
    contamination : float in (0, 0.5]
        Expected share of outliers: ``offset_`` is the ``100 * contamination`` percentile of the
        held-out scores.
    device : str
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    random_state : int, RandomState instance or None
        Seeds weight initialisation, the validation split and the batch order. Fitting twice
        with the same integer on CPU gives identical scores.
    verbose : int
        0 silent; 1 a progress bar over the epochs with the last epoch's losses
        (:class:`~sknovelty.engine.EpochProgressBar`, on standard error); 2 skorch's table,
        one line per epoch.
    image_shape : tuple (C, H, W) or None
        Interpret flat rows ``(n, C*H*W)`` as images, so images pass through scikit-learn
        pipelines as 2-D arrays.
    callbacks : list of skorch callbacks or None
        Extra skorch callbacks (e.g. ``EarlyStopping``, ``ProgressBar``,
        :class:`~sknovelty.engine.EveryOptimizerLRScheduler`: skorch's ``LRScheduler`` for
        every player and stage), copied at every fit.
    n_jobs : int or None
        Number of torch intra-op (CPU) threads during ``fit`` and scoring; the caller's
        setting is restored afterwards. ``None`` uses torch's current setting, ``-1`` all
        CPUs. Training results depend on the thread count (float32 kernels split their sums
        differently, and the differences grow over training), so set it to the same value
        wherever results must agree: e.g. ``n_jobs=1`` makes a ``GridSearchCV(n_jobs=1)``
        and a ``GridSearchCV(n_jobs=2)`` (whose workers run one thread each) find the same
        scores. See the user guide's reproducibility section.

    Attributes
    ----------
    batch_size_ : int
        The training batch size used (``batch_size`` resolved).
    simple_input_auroc_ : float
        For images and clips: the AUROC with which the fitted model tells the held-out
        normal rows from their flat versions (each replaced by its per-channel mean); NaN
        for vectors. ``fit`` warns (:class:`~sknovelty.exceptions.SimpleInputWarning`) when
        it is clearly below 0.5 (:meth:`_simple_input_threshold`): the flat inputs score as
        more normal than normal data, so novel inputs simpler than the training data may go
        unnoticed.
    complexity_correlation_ : float
        For images and clips: the Spearman correlation, over the held-out normal rows,
        between the novelty score and the input's zlib code length
        (:func:`~sknovelty.metrics.code_length`); NaN for vectors.
    """

    _parameter_constraints: dict = {
        "epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "learning_rate": [Interval(numbers.Real, 0, None, closed="neither")],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="left")],
        "contamination": [Interval(numbers.Real, 0, 0.5, closed="right")],
        "device": [str],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "image_shape": [None, tuple, list],
        "callbacks": [None, list],
        "n_jobs": [None, Interval(numbers.Integral, None, -1, closed="right"),
                   Interval(numbers.Integral, 1, None, closed="left")],
        "score_batch_size": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None,
                                                            closed="left")],
        "precision": [StrOptions({"float32", "bfloat16"})],
    }

    #: per-sample ranks the method supports: 1 vectors, 3 images, 4 clips.
    _sample_ranks = (1, 3)
    #: names of the per-sample terms the novelty score adds up (after normalisation).
    _novelty_terms = ("rec",)
    #: the skorch net class that trains the module (``AdversarialNet`` for two players).
    _net_class = DetectorNet

    #: how ``normalization_`` scales each term: ``"minmax"`` (t - min) / (max - min) or
    #: ``"zscore"`` (t - mean) / std, with the constants from the held-out rows.
    _normalization = "minmax"

    def _net_kwargs(self):
        """Keyword arguments of the skorch net that override or extend the defaults
        (optimizer settings, schedules, ``max_epochs``)."""
        return {}

    def _method_callbacks(self):
        """``(name, callback)`` pairs the method's training needs (before the user's)."""
        return []

    def _finalize_fit(self):
        """Set method-specific fitted attributes once training has ended."""

    # ------------------------------------------------------------------ method hooks
    def _build_module(self, sample_shape, input_range):
        raise NotImplementedError

    def _build_criterion(self, sample_shape):
        raise NotImplementedError

    def _check_hyperparameters(self):
        """Validate method-specific parameters that ``_parameter_constraints`` cannot express."""

    # ------------------------------------------------------------------ input handling
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

    # ------------------------------------------------------------------ fitting
    def _make_net(self, module, *, train_split=None, generator=None):
        kwargs = dict(
            module=module, criterion=self._build_criterion(self.sample_shape_),
            optimizer=torch.optim.Adam, lr=self.learning_rate, **_FUSED_ADAM,
            max_epochs=self.epochs, batch_size=self.batch_size_,
            iterator_train=BatchIterator, iterator_train__shuffle=True,
            iterator_train__generator=generator, iterator_valid=BatchIterator,
            train_split=train_split,
            callbacks=[("divergence_guard", DivergenceGuard()), *self._method_callbacks()]
            + ([("progress_bar", EpochProgressBar(type(self).__name__))] if self.verbose == 1 else [])
            + copy.deepcopy(list(self.callbacks or [])),
            device=self.device_, verbose=int(self.verbose >= 2),
        )
        return self._net_class(**{**kwargs, **self._net_kwargs()})

    @unchanged_on_failure
    def fit(self, X, y=None):
        """Train on normal data.

        A fit that raises leaves the estimator exactly as it was before the call.

        Parameters
        ----------
        X : array-like of shape (n, d), (n, C, H, W), (n, C, T, H, W) or (n, C*H*W) with
            ``image_shape``
            Normal training samples.
        y : array-like of shape (n,) with values in {+1, -1}, optional
            When given, only the rows labelled +1 (normal) are used, so that
            ``cross_val_score(det, X, y, scoring="roc_auc")`` on labelled data trains on the
            normal rows of each fold. Labels other than +1/-1 are ignored with a warning.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            For invalid input or hyperparameters.
        TrainingDivergedError
            When the training loss becomes NaN or infinite, or the fitted model gives
            (nearly) one score to every held-out row (:func:`check_score_spread`).
        KeyboardInterrupt
            On Ctrl-C (SIGINT) during training, with the estimator left as it was.

        See Also
        --------
        score_samples : Normality scores of new samples once fitted.
        calibrate : Replace the held-out reference scores by those of fresh normal rows.
        save : Write the fitted estimator to a model file.
        """
        self._validate_params()
        with torch_threads(self.n_jobs):
            return self._fit(X, y)

    def _fit(self, X, y):
        self._check_hyperparameters()
        X = normal_rows(self._validate_X(X, reset=True), y)
        n = len(X)
        n_val = math.ceil(self.validation_fraction * n) if self.validation_fraction > 0 else 0
        if n - n_val < 2:
            raise ValueError(f"{type(self).__name__} needs at least {2 + (n_val > 0)} normal "
                             f"samples to fit (2 to train, 1 held out); got n_samples = {n}")
        self.device_ = resolve_device(self.device)
        self.precision_ = self._resolve_precision()
        self.batch_size_ = self._resolve_batch_size(n - n_val)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        order = np.random.RandomState(seed).permutation(n)
        to_dev = self.device_ if X.nbytes <= DEVICE_DATA_LIMIT else "cpu"
        self.input_range_ = (float(X[order[n_val:]].min()), float(X[order[n_val:]].max()))
        warn_on_tiny_scale(X, type(self).__name__)
        X_train = torch.from_numpy(c_ordered(X[order[n_val:]])).to(to_dev)
        X_val = torch.from_numpy(c_ordered(X[order[:n_val]])).to(to_dev) if n_val else None
        with seeded_build(seed, self.device_) as continuing:
            module = self._build_module(self.sample_shape_, self.input_range_)
            self.net_ = self._make_net(
                module,
                train_split=predefined_split(TensorData(X_val)) if n_val else None,
                generator=torch.Generator().manual_seed(seed),
            )
            generators = continuing()
        with fit_generators(generators), exact_cudnn():
            self.net_.fit(TensorData(X_train))
        self.net_.train_split = None  # do not keep (or pickle) the held-out rows
        self.net_.module_.eval()
        self._finalize_fit()
        X_norm = X_train.cpu().numpy() if self._normalize_on_training_rows() and n_val else None
        self._set_reference((X_val if n_val else X_train).cpu().numpy(), held_out=n_val > 0,
                            X_norm=X_norm)
        return self

    def _normalize_on_training_rows(self):
        """Whether the normalisation constants of the novelty terms come from the training
        rows rather than the held-out ones (``offset_`` and the p-value reference always come
        from the held-out rows)."""
        return False

    #: parameters added with a default other than the old behaviour: ``{name: value that
    #: reproduces models saved or pickled before the parameter existed}``
    _former_defaults = {}

    #: ``batch_size="auto"``: the largest batch, and the fewest batches an epoch should have
    AUTO_BATCH = (64, 6)

    def _resolve_batch_size(self, n_train):
        """The training batch size: ``batch_size``, or for ``"auto"`` 64 unless the
        ``n_train`` rows would make fewer than 6 such batches (then ``n_train // 6``, >= 8).

        OLED on 180 texture patches, 20 epochs of 3 batches (60 Adam steps) left R
        undertrained: AUROC 0.70 where 4x the steps at the same compute gave 0.83
        (``benchmarks/results/oled_diagnosis_textures.md``).
        """
        if self.batch_size != "auto":
            return self.batch_size
        largest, min_batches = self.AUTO_BATCH
        if n_train is None or math.ceil(n_train / largest) >= min_batches:
            return largest
        return max(8, n_train // min_batches)

    def _set_reference(self, X_ref, held_out, X_norm=None):
        """Fix normalisation constants (of every term), ``offset_`` and the reference scores
        of p-values on held-out normal rows (the training rows when ``held_out`` is False).
        With ``X_norm`` the normalisation constants come from those rows instead."""
        terms = self._raw_components(X_ref)
        norm_terms = terms if X_norm is None else self._raw_components(X_norm)
        if self._normalization == "zscore":
            self.normalization_ = {k: (float(v.mean()), float(v.std()))
                                   for k, v in norm_terms.items()}
        else:
            self.normalization_ = {k: (float(v.min()), float(v.max()))
                                   for k, v in norm_terms.items()}
        scores = self._combine(terms)
        check_score_spread(scores, X_ref, type(self).__name__)
        self.offset_ = float(np.percentile(scores, 100 * self.contamination))
        self._set_reference_scores(scores, held_out)
        self._check_complexity(X_ref, terms, scores)

    #: ``fit`` warns when ``simple_input_auroc_`` is below this chance level by more than
    #: ``SIMPLE_INPUT_SIGMAS`` standard errors (:meth:`_simple_input_threshold`)
    SIMPLE_INPUT_WARNING = 0.5
    SIMPLE_INPUT_SIGMAS = 3.0

    def _check_complexity(self, X_ref, terms, scores):
        """Measure, on the reference rows (held-out normal rows), whether inputs simpler than
        the normal data look normal to the fitted model; warn when they look *more* normal.

        Only for images and clips (NaN for vectors and for fewer than 2 rows):

        - ``simple_input_auroc_``: the AUROC with which ``score_samples`` tells the reference
          rows (normal) from their flat versions (each replaced by its per-channel mean, an
          input no normal sample looks like). Below 0.5 the flat inputs score as more normal than
          the normal data; clearly below it (:meth:`_simple_input_threshold`: 3 standard
          errors under 0.5) ``fit`` warns: novel inputs simpler than the training data
          (smoother, less textured) will be missed.
        - ``complexity_correlation_``: the Spearman correlation between the reference rows'
          novelty scores and their zlib code lengths (:func:`~sknovelty.metrics.code_length`);
          no warning.

        Measured on the robustness suite's image sets (``benchmarks/results/robustness.md``):
        on its photographs, whose novel patches (a moon surface, a microscope cell) zlib
        compresses to ~43% of the bytes, every method but the complexity-corrected flow
        ranks the novelties as more normal (AUROC 0.05-0.23), and the AE's
        ``simple_input_auroc_`` is 0.06-0.09 (3 seeds). The correlation misses that failure
        for some methods (OLED: -0.15 on photos) and fires on sets where the methods work,
        so it does not warn. For the AE the flat probe fires on the photographs, on the
        faces (whose non-face patches are simpler too, but differ enough otherwise that the
        methods still reach 0.82-0.97) and on the textures (2 or 3 of 3 seeds, with 1 or 2
        threads), where flat patches would indeed go unnoticed, though the suite's texture
        anomalies are more complex than the normal patches; never on the digits
        (``benchmarks/results/simple_input_check.md``).
        A warning, not an error: novel inputs as complex as the normal ones, or more, are
        still found.
        """
        self.simple_input_auroc_ = self.complexity_correlation_ = float("nan")
        if len(self.sample_shape_) < 3 or len(X_ref) < 2:
            return
        X_ref = X_ref.reshape(len(X_ref), *self.sample_shape_)
        self.complexity_correlation_ = self._complexity_correlation(X_ref, terms, scores)
        flat = np.broadcast_to(X_ref.mean(axis=tuple(range(2, X_ref.ndim)), keepdims=True),
                               X_ref.shape)
        flat_scores = self._combine(self._raw_components(np.ascontiguousarray(flat)))
        labels = np.r_[np.ones(len(scores)), -np.ones(len(flat_scores))]
        self.simple_input_auroc_ = auroc(labels, np.r_[scores, flat_scores])
        if self.simple_input_auroc_ < self._simple_input_threshold(len(scores)):
            warnings.warn(
                f"{type(self).__name__}: flat images (each held-out normal row replaced by "
                "its mean) score as more normal than the normal rows themselves (AUROC "
                f"{self.simple_input_auroc_:.2f}), so novel inputs simpler than the training "
                "data (smoother, less textured) may go unnoticed (Serra et al., ICLR 2020). "
                "FlowDensityDetector's default score_type='complexity' corrects for input "
                "complexity. Silence with warnings.filterwarnings('ignore', "
                "category=sknovelty.exceptions.SimpleInputWarning).", SimpleInputWarning,
                stacklevel=5)

    def _simple_input_threshold(self, n):
        """``fit`` warns when ``simple_input_auroc_`` is below this: ``SIMPLE_INPUT_WARNING``
        (chance, 0.5) minus ``SIMPLE_INPUT_SIGMAS`` standard errors of the AUROC of ``n``
        rows against ``n`` flat rows when both score alike (Hanley and McNeil 1982:
        ``sqrt((2n + 1) / (12 n^2))``), so that only a probe clearly below chance warns."""
        return self.SIMPLE_INPUT_WARNING - self.SIMPLE_INPUT_SIGMAS * math.sqrt(
            (2 * n + 1) / (12 * n * n))

    def _complexity_correlation(self, X_ref, terms, scores):
        """Spearman correlation of the reference rows' novelty scores with their code lengths
        (NaN when either is constant)."""
        length = code_length(X_ref, *self.input_range_)
        if np.ptp(length) == 0 or np.ptp(scores) == 0:
            return float("nan")
        return float(spearmanr(-scores, length)[0])

    # ------------------------------------------------------------------ scoring
    def _map_chunks(self, X, fn):
        """Apply ``fn`` (tensor batch -> tensor or dict of tensors) to validated float32 ``X``.

        Every call sees exactly ``score_batch_size`` rows (the last chunk is zero-padded), so a
        sample's result does not depend on what else is processed with it (up to the float32
        rounding of some small matrix kernels, which can differ with a row's position in the
        chunk by ~1e-7); memory stays bounded by the chunk. Results are gathered on the device
        in the dtype ``fn`` returns and copied to the host once.
        """
        device, n, size = self.net_.device, len(X), self._score_batch_size()
        with warnings.catch_warnings():  # a read-only array (a memmap): only read here
            warnings.filterwarnings("ignore", "The given NumPy array is not writable")
            X = torch.from_numpy(X)
        out = {}
        with torch.inference_mode(), exact_cudnn(), torch_threads(self.n_jobs):
            for start in range(0, n, size):
                xb = X[start:start + size]
                k = len(xb)
                if k < size:
                    xb = torch.cat([xb, xb.new_zeros((size - k, *xb.shape[1:]))])
                result = fn(xb.to(device))
                for name, value in (result.items() if isinstance(result, dict) else [(None, result)]):
                    if name not in out:
                        out[name] = value.new_empty((n, *value.shape[1:]))
                    out[name][start:start + k] = value[:k]
        out = {name: value.cpu().numpy() for name, value in out.items()}
        return out[None] if list(out) == [None] else out

    def _score_batch_size(self):
        if self.score_batch_size != "auto":
            return self.score_batch_size
        rows, values = AUTO_SCORE_BATCH["cuda" if str(self.device_).startswith("cuda") else "cpu"]
        # never below the training batch (it fits in memory with gradients besides)
        # models pickled before batch_size_ existed had an int batch_size
        train_batch = getattr(self, "batch_size_", None) or self._resolve_batch_size(None)
        return max(train_batch, min(rows, values // math.prod(self.sample_shape_)))

    def _resolve_precision(self):
        """The scoring precision on ``device_``: ``"bfloat16"`` only where it is native."""
        return resolve_precision(self, stacklevel=5)

    def _forward(self, xb):
        """The module's forward pass at the scoring precision, its outputs in float32."""
        if self.precision_ == "float32":
            return self.net_.module_(xb)
        with torch.autocast(xb.device.type, dtype=torch.bfloat16):
            return _float32(self.net_.module_(xb))

    def _raw_components(self, X):
        """Per-sample novelty terms (float64) for validated float32 ``X``."""
        criterion = self.net_.criterion_
        out = self._map_chunks(X, lambda xb: {name: value.double() for name, value in
                                              criterion.per_sample(self._forward(xb), xb).items()})
        bad = [name for name, value in out.items() if not np.isfinite(value).all()]
        if bad:
            raise ValueError(f"non-finite {', '.join(bad)} terms: the input is far outside the "
                             "range seen in training (rescale X)")
        return out

    def _normalized(self, name, values):
        """A term scaled by its held-out constants (see ``_normalization``)."""
        a, b = self.normalization_[name]
        if self._normalization == "zscore":
            return (values - a) / (b if b > 0 else 1.0)
        return (values - a) / (b - a if b > a else 1.0)

    def _combine(self, terms):
        """Minus the sum of the normalised novelty terms (higher = more normal)."""
        novelty = np.zeros(len(next(iter(terms.values()))))
        for name in self._novelty_terms:
            novelty += self._normalized(name, terms[name])
        return -novelty

    def score_components(self, X):
        """The paper's raw novelty terms per sample (higher = more novel).

        Parameters
        ----------
        X : array-like of the fitted sample shape, or flat rows with ``image_shape``
            Samples to score.

        Returns
        -------
        dict of str -> ndarray of shape (n,)
            Each novelty term of the method, by name, before normalisation.

        See Also
        --------
        score_samples : The normality score the normalised terms make.
        score_maps : Where in each sample the terms come from (methods with maps).
        """
        check_is_fitted(self)
        return self._streamed_components(X)

    def _streamed_components(self, X):
        """``_raw_components`` of ``X``, validated and scored in blocks of rows.

        A block is a whole number of scoring chunks, so every sample meets the same chunk
        neighbours as when ``X`` is scored at once: the results are identical.
        """
        try:
            n = _num_samples(X)
        except TypeError:  # not array-like: validation says why
            n = None
        size = self._score_batch_size()
        block = size * max(1, STREAM_ROWS // size)
        if n is None or n <= block:
            return self._raw_components(self._validate_X(X, reset=False))
        parts = [self._raw_components(self._validate_X(X[start:start + block], reset=False))
                 for start in range(0, n, block)]
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    #: whether the criterion has ``per_pixel(output, x)``: per-value maps of the novelty terms
    #: (a dict of tensors shaped like x, each summing over a sample to its ``per_sample`` term)
    _score_maps = False

    def _scale(self, name):
        """The divisor of a term in its normalisation (``_normalized`` is affine in it)."""
        a, b = self.normalization_[name]
        if self._normalization == "zscore":
            return b if b > 0 else 1.0
        return b - a if b > a else 1.0

    def _combine_maps(self, maps):
        """The anomaly map: the mapped novelty terms, each divided by its normalisation scale."""
        names = [name for name in self._novelty_terms if name in maps]
        return sum(maps[name] / self._scale(name) for name in names)

    @available_if(lambda self: self._score_maps)
    def score_maps(self, X):
        """Anomaly maps: where in each sample the novelty score comes from (higher = more novel).

        The per-value error the method's score is made of (reconstruction error for LSA, the
        autoencoder and LTG; the error of the nearest prediction for MMP; the error of the
        score named by ``score_type`` for OLED and the context autoencoder; the absolute
        reconstruction error for ITAE), each term divided by its normalisation scale. Except
        for ITAE (whose score takes the maximum over patches), a sample's map sums to its
        spatial novelty terms up to the constant shift of the normalisation, so sorting
        samples by ``score_maps(X).sum`` over the sample axes sorts them as
        ``score_samples`` does when every term has a map. LSA's latent term (LLK) has no
        spatial form and is not in its maps.

        Parameters
        ----------
        X : array-like of the fitted sample shape, or flat rows with ``image_shape``
            Samples to map.

        Returns
        -------
        ndarray of float32, of the shape of ``X``
            For clips ``(n, C, T, H, W)`` a map per frame; for vectors, per feature.

        See Also
        --------
        score_samples : The scores the maps explain.
        sknovelty.plotting.plot_anomaly_map : Overlay a map on its image.
        """
        check_is_fitted(self)
        shape = np.shape(X)
        criterion = self.net_.criterion_
        maps = self._map_chunks(self._validate_X(X, reset=False),
                                lambda xb: criterion.per_pixel(self._forward(xb), xb))
        return np.asarray(self._combine_maps(maps), dtype=np.float32).reshape(shape)

    def score_samples(self, X):
        """Normality score: minus the normalised novelty score (higher = more normal).

        Parameters
        ----------
        X : array-like of the fitted sample shape, or flat rows with ``image_shape``
            Samples to score.

        Returns
        -------
        ndarray of shape (n,)

        See Also
        --------
        decision_function : The scores shifted by ``offset_``, negative for outliers.
        score_components : The raw novelty terms the score is made of.
        predict_pvalues : Conformal p-values of the scores against the reference scores.
        """
        check_is_fitted(self)
        return self._combine(self._streamed_components(X))


    # ------------------------------------------------------------------ persistence
    # save(path) and load(path, device=None) come from io.ModelFileMixin
    _file_kind = "deep"

    #: fitted attributes (JSON-serialisable) that ``save`` stores besides the weights.
    _fitted_attributes = ("n_features_in_", "sample_shape_", "input_range_", "normalization_",
                          "offset_", "device_", "reference_scores_", "reference_held_out_")
    #: fitted attributes ``save`` stores when present (files of older versions lack the
    #: reference scores; ``false_alarm_rate_`` exists after ``set_false_alarm_rate``)
    _optional_fitted_attributes = ("reference_scores_", "reference_held_out_",
                                   "false_alarm_rate_", "batch_size_", "complexity_correlation_",
                                   "simple_input_auroc_", "feature_names_in_")

    def _restore(self, fitted, module_state, criterion_state, history):
        """Rebuild the fitted state from what :func:`sknovelty.io.load` read from a file.

        The fitted values are checked first (:func:`sknovelty.io._check_deep_fitted`: finite,
        sorted, consistent, within the size limits); the networks are then built within an
        allocation budget tied to the weights' size, and must have exactly the file's
        tensors (keys, shapes and dtypes) before any is loaded. Raises ``ValueError`` for a
        damaged or edited file.
        """
        fitted = io._check_deep_fitted(self, fitted)
        for name, value in fitted.items():
            setattr(self, name, value)
        if "batch_size_" not in fitted:  # files of older versions: batch_size was an int
            self.batch_size_ = self._resolve_batch_size(None)
        try:
            self.device_ = resolve_device(self.device)
        except ValueError:
            warnings.warn(f"device={self.device!r} is not available here; loading on CPU",
                          UserWarning, stacklevel=3)
            self.device_ = "cpu"
        self.precision_ = self._resolve_precision()

        def build():
            with torch.random.fork_rng(devices=[]), torch.device("cpu"):
                module = self._build_module(self.sample_shape_, self.input_range_)
                return module, self._build_criterion(self.sample_shape_)

        module, criterion = io.build_within_budget(build, (module_state, criterion_state),
                                                   f"networks of {type(self).__name__}")
        io.check_state(module, module_state, "module", type(self).__name__)
        io.check_state(criterion, criterion_state, "criterion", type(self).__name__)
        self._load_state(module, module_state, "module")
        self.net_ = self._make_net(module).initialize()
        self._load_state(self.net_.criterion_, criterion_state, "criterion")
        self.net_.history = History(history)
        self.net_.module_.eval()

    def _load_state(self, target, state, what):
        # load_state_dict raises RuntimeError for missing, unexpected or mis-shaped entries;
        # for a model file that means the file does not match its own parameters
        try:
            target.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(f"the saved {what} weights do not fit the {what} of "
                             f"{type(self).__name__} built from the saved parameters: {exc}") from exc

    def __setstate__(self, state):
        super().__setstate__(state)
        # pickled before these parameters existed: score as it did then
        self.__dict__.setdefault("precision", "float32")
        self.__dict__.setdefault("score_batch_size", self.batch_size)
        for name, value in self._former_defaults.items():
            self.__dict__.setdefault(name, value)
        if "net_" in self.__dict__:
            # skorch maps CUDA tensors to the CPU when CUDA is missing: follow it.
            self.device_ = str(self.net_.device)
            self.precision_ = self._resolve_precision()
