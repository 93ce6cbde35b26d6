"""A nearest-neighbour novelty detector: the distance to the closest training samples.

:class:`NearestNeighborDetector` scores a sample by minus the mean distance to its ``k``
nearest normal training samples, in whatever space ``X`` is given: pixels, or the features
of any transformer before it in a ``Pipeline`` (DN2: Bergman, Cohen and Hoshen, "Deep
Nearest Neighbor Anomaly Detection", 2020, on the embeddings of a pretrained network).

Distances are computed in float64 in two steps. A matrix product gives every squared
distance ``|q|^2 + |t|^2 - 2 q.t``: fast, but its rounding depends on the BLAS and on how
many rows are multiplied together (scikit-learn's brute-force ``NearestNeighbors``, which
computes distances so, scores a row alone slightly differently from the same row in a
batch, and puts a sample a little away from its own copy). The training rows that can be
among the ``k`` nearest under a rigorous bound on that rounding are then compared again as
``sum((q - t)^2)``, a sum whose floats depend on the two rows alone. The scores are
therefore the same, bit for bit, whatever the rows are scored with, the block sizes, the
thread count or the order of the training rows, at a cost of the same order as
``NearestNeighbors`` (see the docs' "Design decisions" page).
"""

import contextlib
import math
import numbers

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from . import io
from ._device import resolve_n_jobs
from ._scoring import STREAM_ROWS, score_in_row_blocks
from ._validation import (ANY_RANK, check_score_spread, normal_rows, unchanged_on_failure,
                          validate_samples)
from .thresholds import ThresholdMixin

__all__ = ["NearestNeighborDetector"]

#: Dimensions of the random projection in which ``max_samples`` selects its coreset (PatchCore's)
CORESET_DIMS = 128

#: Values (float64) of the largest temporary array of a query: the block of query rows, the
#: block's squared distances to every training row, the candidate differences (32 MB each).
QUERY_VALUES = 1 << 22


class _NeighborIndex:
    """The training rows (``rows``: float32, as validated, one flat row per sample) and the
    float64 arrays a query needs, all derived from ``rows`` by fixed per-row arithmetic (so
    an index rebuilt from the same rows, e.g. from a model file, queries identically)."""

    def __init__(self, rows, metric):
        self.rows = rows
        self.metric = metric
        self.points = _prepare(rows, metric)
        self.sq_norms = _row_sums_of_squares(self.points)
        self.max_norm = float(np.sqrt(self.sq_norms.max()))

    def sq_distances(self, Q, m, exclude_self=False):
        """The ``m`` smallest squared distances (ascending, shape ``(len(Q), m)``) from each
        prepared float64 row of ``Q`` to the training points; with ``exclude_self`` the
        rows of ``Q`` are the training points themselves and the smallest (each row's
        distance to itself, 0) is dropped."""
        d = Q.shape[1]
        out = np.empty((len(Q), m - exclude_self))
        block = max(1, QUERY_VALUES // max(len(self.points), d))
        for start in range(0, len(Q), block):
            out[start:start + block] = self._block(Q[start:start + block], m, exclude_self)
        return out

    def _block(self, Q, m, exclude_self):
        b, d = Q.shape
        q_sq = _row_sums_of_squares(Q)
        approx = q_sq[:, None] + self.sq_norms[None, :] - 2.0 * (Q @ self.points.T)
        kth = np.partition(approx, m - 1, axis=1)[:, m - 1]
        # |approx - exact| <= 2 gamma (|q| + |t|)^2, gamma = n u / (1 - n u) for sums of n
        # terms (Higham, "Accuracy and Stability of Numerical Algorithms", 2002, ch. 3), a
        # bound for the product's and for the exact form's rounding alike; doubled for
        # safety. Every row whose exact distance is among the m smallest has an approximate
        # one within two bounds of the m-th smallest approximate one.
        nu = (d + 4) * np.finfo(np.float64).eps / 2
        bound = 4 * nu / (1 - nu) * (np.sqrt(q_sq) + self.max_norm) ** 2
        rows, cols = np.nonzero(approx <= (kth + 2 * bound)[:, None])
        del approx
        exact = np.empty(len(rows))
        step = max(1, QUERY_VALUES // d)
        for start in range(0, len(rows), step):
            diff = Q[rows[start:start + step]] - self.points[cols[start:start + step]]
            exact[start:start + step] = _row_sums_of_squares(diff)
        counts = np.bincount(rows, minlength=b)  # each row has at least m candidates
        order = np.lexsort((exact, rows))  # by row (as found), then by distance
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        nearest = exact[order][first[:, None] + np.arange(m)[None, :]]
        return nearest[:, 1:] if exclude_self else nearest


def greedy_coreset(points, m, start=0):
    """Greedy k-center selection: ``m`` rows of ``points``, each next one the farthest (in
    Euclidean distance) from those already chosen (Gonzalez, 1985: the largest distance of a
    row to the chosen ones is at most twice the best any ``m`` rows achieve).

    Each step measures the new row's distance only to the rows it may have come nearer to:
    a row ``x`` whose nearest chosen row ``a`` lies at least ``2 d(x, a)`` from the new row
    ``c`` keeps ``a`` (triangle inequality: ``d(x, c) >= d(a, c) - d(x, a) >= d(x, a)``), so
    late steps, where every row is near a chosen one, touch few rows. The choices are those
    of the plain algorithm: the distances that decide them are sums of squared differences
    in float64, which depend on the two rows alone.

    Parameters
    ----------
    points : ndarray of shape (n, d)
    m : int
        Rows to choose, ``1 <= m <= n``.
    start : int
        The first row chosen.

    Returns
    -------
    chosen : ndarray of int of shape (m,)
        Indices in the order chosen.
    sq_radius : ndarray of shape (m,)
        Before each choice, the largest squared distance of a row to the rows chosen so
        far (``inf`` before the first): non-increasing; at the end every row lies within the
        distance of the next row that would be chosen.
    """
    points = np.ascontiguousarray(points, dtype=np.float64)
    n = len(points)
    chosen = np.empty(m, dtype=np.intp)
    sq_radius = np.empty(m)
    sq_radius[0] = np.inf
    centres = np.empty((m, points.shape[1]))  # the chosen rows, contiguous
    centre_sq = np.empty(m)                    # and their squared norms
    nearest = np.full(n, np.inf)               # distance of each row to its nearest chosen
    owner = np.zeros(n, dtype=np.intp)         # which chosen row that is (order index)
    j = int(start)
    for i in range(m):
        chosen[i] = j
        centres[i] = points[j]
        centre_sq[i] = centres[i] @ centres[i]
        if i == 0:
            rows = np.arange(n)
        else:
            # distances of the new row to the chosen ones, from one matrix-vector product,
            # lowered by far more than its float64 rounding (about d * 1e-16 of the squared
            # norms): a row is left out only when it surely cannot come nearer
            sq = centre_sq[:i] + centre_sq[i] - 2.0 * (centres[:i] @ centres[i])
            sq -= 1e-9 * (centre_sq[:i] + centre_sq[i])
            gap = np.sqrt(np.maximum(sq, 0.0))
            rows = np.flatnonzero(gap[owner] < 2.0 * nearest)
        step = max(1, QUERY_VALUES // max(1, points.shape[1]))  # bounded temporaries
        dist = np.concatenate([
            np.sqrt(_row_sums_of_squares(points[rows[k:k + step]] - centres[i]))
            for k in range(0, len(rows), step)]) if len(rows) else np.empty(0)
        closer = dist < nearest[rows]
        nearest[rows[closer]] = dist[closer]
        owner[rows[closer]] = i
        nearest[j] = 0.0
        j = int(np.argmax(nearest))
        if i + 1 < m:
            sq_radius[i + 1] = nearest[j] ** 2
    return chosen, sq_radius


def _prepare(rows, metric):
    """Flat float32 rows as the float64 points distances are measured between (unit rows
    for the cosine distance; a row of zeros stays zero)."""
    points = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
    if metric == "cosine":
        norms = np.sqrt(_row_sums_of_squares(points))
        points = points / np.where(norms > 0, norms, 1.0)[:, None]
    return np.ascontiguousarray(points)


def _row_sums_of_squares(A):
    """``(A * A).sum(axis=1)`` for a C-ordered float64 matrix: numpy's pairwise sum along
    one contiguous row, whose floats depend on that row alone."""
    return np.multiply(A, A).sum(axis=1)


class NearestNeighborDetector(ThresholdMixin, io.ModelFileMixin, OutlierMixin, BaseEstimator):
    """Novelty detection by the distance to the nearest normal training samples.

    The normality score of a sample is minus the mean distance to its ``n_neighbors``
    nearest training samples: the detector of DN2 (Bergman, Cohen and Hoshen, "Deep Nearest
    Neighbor Anomaly Detection", arXiv:2002.10445, 2020), which takes ``k = 2`` on the
    features of an ImageNet-pretrained network. Here the space is whatever ``X`` is: pixels
    (images and clips are flattened), tabular features, or the output of any transformer
    before it in a ``Pipeline``. Nothing is trained: ``fit`` stores the normal rows, and the
    model file holds them.

    As for the deep detectors, ``validation_fraction`` of the normal rows is held out of the
    index (seeded by ``random_state``): their scores are the conformal reference of
    :meth:`predict_pvalues` and ``offset_`` is their ``contamination`` percentile. With
    ``validation_fraction=0`` every row is indexed and the reference is in-sample: each
    training row is scored by its ``n_neighbors`` nearest *other* training rows
    (leave-one-out), which is still optimistic (``reference_held_out_`` is False and the
    p-values warn).

    Parameters
    ----------
    n_neighbors : int, default=2
        The ``k`` nearest training samples whose distances are averaged (DN2's default).
    metric : {"euclidean", "cosine"}, default="euclidean"
        ``"euclidean"``: the Euclidean distance of the flattened samples. ``"cosine"``: one
        minus the cosine similarity (rows are scaled to unit length first; a row of zeros
        stays zero, at distance 0.5 from every other row), common for embeddings.
    validation_fraction : float in [0, 1), default=0.1
        Share of the normal rows held out of the index as the reference of p-values and
        ``offset_``.
    contamination : float in (0, 0.5], default=0.1
        ``offset_`` is the ``100 * contamination`` percentile of the reference scores.
    max_samples : int, float or None, default=None
        Size of the memory bank: ``None`` indexes every training row (after the held-out
        ones). An int keeps at most that many rows, a float in (0, 1] that share of them
        (rounded up, and at least the rows ``n_neighbors`` needs),
        chosen by greedy coreset selection (PatchCore: Roth et al., "Towards Total Recall in
        Industrial Anomaly Detection", CVPR 2022, sec. 3.2, after Sener and Savarese, 2018):
        each next row is the one farthest from those already kept, so the kept rows cover
        the others (every training row lies within ``coreset_radius_`` of a kept one).
        Scoring then costs ``max_samples`` rows instead of all; with ``n_neighbors=1`` a
        score moves by at most ``coreset_radius_`` from the full bank's (triangle
        inequality). Rows of more than 128 values are compared, as in PatchCore, in a
        random projection to 128 dimensions (seeded by ``random_state``); that projection is
        a BLAS product, so machines may then pick different rows at near-ties (the kept rows
        are stored in a model file, and scoring is exact as always).
    random_state : int, RandomState instance or None, default=None
        Seeds which rows are held out, and the coreset selection's start and projection.
    image_shape : tuple (C, H, W) or None, default=None
        Interpret flat rows ``(n, C*H*W)`` as images (so that integer pixel rows are scaled
        by their dtype's range), as for the deep detectors.
    n_jobs : int or None, default=None
        BLAS threads of the distance computation during ``fit`` and scoring (``None``: the
        current setting, ``-1``: all CPUs). The scores do not depend on it.

    Attributes
    ----------
    model_ : object
        The index: ``model_.rows`` holds the training rows (float32, flattened).
    offset_ : float
        Threshold of ``decision_function``.
    reference_scores_ : ndarray of shape (n_ref,)
        Sorted scores of the held-out rows (or the in-sample, leave-one-out scores of the
        training rows with ``validation_fraction=0``).
    reference_held_out_ : bool
        Whether the reference rows were held out of the index.
    coreset_radius_ : float
        The largest distance (Euclidean, between the rows as compared: unit rows for
        ``metric="cosine"``) from a training row to the nearest row of the index; 0 when
        every row is indexed (``max_samples`` None or at least the rows).
    sample_shape_ : tuple
        Shape of one training sample.
    n_features_in_ : int
        As in scikit-learn (for images, the number of channels).
    feature_names_in_ : ndarray of str
        When fitted on a DataFrame with string column names.

    See Also
    --------
    WhitenedKDE : A density of PCA-whitened features, the other classic baseline.
    sklearn.neighbors.LocalOutlierFactor : A neighbour-based score relative to local density.

    Notes
    -----
    Scoring ``n`` samples against ``m`` training rows of ``d`` values takes ``O(n m d)``
    time (one matrix product) and memory bounded by blocks of about 32 MB. With
    ``max_samples``, ``m`` is the bank's size, and ``fit`` adds the selection: one step per
    kept row, each ``O(n)`` plus the distances to the rows the new one may come nearer to
    (few, once the kept rows cover the data; ``sknovelty.neighbors.greedy_coreset``).
    Samples are validated in blocks of at most 16,384 rows
    (``sknovelty._scoring.STREAM_ROWS``), so a memory-mapped ``X`` is streamed. Values must
    fit in float32, as for every sknovelty estimator; distances are computed in float64.

    Examples
    --------
    >>> import numpy as np
    >>> from sknovelty import NearestNeighborDetector
    >>> X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> det = NearestNeighborDetector(n_neighbors=2, validation_fraction=0).fit(X)
    >>> det.score_samples([[0.0, 0.0], [3.0, 4.0]])  # minus the mean of the 2 nearest distances
    array([-0.5       , -3.92409598])
    """

    _file_kind = "neighbors"  # registered below, by name, for sknovelty.load
    #: sizes nothing a load allocates (the kept rows are in the file)
    _unbounded_params = ("max_samples",)

    _parameter_constraints: dict = {
        "n_neighbors": [Interval(numbers.Integral, 1, None, closed="left")],
        "metric": [StrOptions({"euclidean", "cosine"})],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="left")],
        "contamination": [Interval(numbers.Real, 0, 0.5, closed="right")],
        "max_samples": [None, Interval(numbers.Integral, 1, None, closed="left"),
                        Interval(numbers.Real, 0, 1, closed="right")],
        "random_state": ["random_state"],
        "image_shape": [None, tuple, list],
        "n_jobs": [None, Interval(numbers.Integral, None, -1, closed="right"),
                   Interval(numbers.Integral, 1, None, closed="left")],
    }

    #: samples of any rank are flattened (the ranks of vectors, images and clips, and others,
    #: such as grey images without a channel axis, as the whitened baselines take them)
    _sample_ranks = ANY_RANK

    def __init__(self, n_neighbors=2, metric="euclidean", *, validation_fraction=0.1,
                 contamination=0.1, max_samples=None, random_state=None, image_shape=None,
                 n_jobs=None):
        self.n_neighbors = n_neighbors
        self.metric = metric
        self.validation_fraction = validation_fraction
        self.contamination = contamination
        self.max_samples = max_samples
        self.random_state = random_state
        self.image_shape = image_shape
        self.n_jobs = n_jobs

    @unchanged_on_failure
    def fit(self, X, y=None):
        """Index the normal training rows and score the held-out ones as the reference.

        A fit that raises leaves the estimator exactly as it was before the call.

        Parameters
        ----------
        X : array-like of shape (n, d), (n, C, H, W), (n, C, T, H, W) or (n, C*H*W) with
            ``image_shape``
            Normal training samples (flattened for the distance; integer pixel images are
            scaled by their dtype's range, as for the deep detectors).
        y : array-like of shape (n,) with values in {+1, -1}, optional
            When given, only the rows labelled +1 (normal) are used.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            For invalid input or parameters, or fewer normal rows than ``n_neighbors`` to
            index (plus the held-out ones).
        TrainingDivergedError
            When the reference rows, though distinct, get (nearly) one score.

        See Also
        --------
        score_samples : Normality scores of new samples once fitted.
        calibrate : Replace the reference scores by those of fresh normal rows.
        save : Write the fitted estimator to a model file.
        """
        self._validate_params()
        X = validate_samples(self, X, reset=True, ranks=self._sample_ranks)
        shape = tuple(int(s) for s in X.shape[1:])
        X = normal_rows(X.reshape(len(X), -1), y)
        n, k = len(X), self.n_neighbors
        n_val = math.ceil(self.validation_fraction * n) if self.validation_fraction > 0 else 0
        if n - n_val < k + (n_val == 0):
            raise ValueError(
                f"{type(self).__name__} needs at least {self._rows_needed()} normal "
                f"samples to fit with n_neighbors={k} and validation_fraction="
                f"{self.validation_fraction}; got n_samples = {n}")
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        rng = np.random.RandomState(seed)
        order = rng.permutation(n)
        train = np.ascontiguousarray(X[np.sort(order[n_val:])])
        keep, radius = self._coreset(train, rng)
        self.coreset_radius_ = radius
        self.model_ = self._index(train if keep is None else np.ascontiguousarray(train[keep]))
        if n_val:
            X_ref = np.ascontiguousarray(X[np.sort(order[:n_val])])
            scores = self._raw_score(X_ref)
        elif keep is None:  # leave-one-out: each row against the others
            X_ref = train
            with self._blas_threads():
                scores = self._to_scores(self.model_.sq_distances(
                    self.model_.points, k + 1, exclude_self=True))
        else:  # every row against the kept rows but itself
            X_ref = train
            with self._blas_threads():
                sq = self.model_.sq_distances(_prepare(train, self.metric), k + 1)
            kept = np.zeros(len(train), dtype=bool)
            kept[keep] = True
            # a kept row's nearest is itself (distance 0): drop it; others drop the last
            scores = self._to_scores(np.where(kept[:, None], sq[:, 1:], sq[:, :-1]))
        check_score_spread(scores, X_ref, type(self).__name__)
        self.offset_ = float(np.percentile(scores, 100 * self.contamination))
        self._set_reference_scores(scores, held_out=n_val > 0)
        self.sample_shape_ = shape
        return self

    def _coreset(self, rows, rng):
        """``(kept, radius)``: the sorted indices of the rows ``max_samples`` keeps (``None``:
        all of them) and ``coreset_radius_``."""
        n, k = len(rows), self.n_neighbors
        m = self.max_samples
        if m is None:
            return None, 0.0
        needed = k + 1 if self.validation_fraction == 0 else k
        # a share keeps at least the rows n_neighbors needs; a count is taken as given
        m = int(m) if isinstance(m, numbers.Integral) else max(math.ceil(m * n), needed)
        if m >= n:
            return None, 0.0
        if m < needed:
            raise ValueError(f"max_samples={self.max_samples!r} keeps {m} rows; "
                             f"n_neighbors={k} needs at least {needed}")
        points = _prepare(rows, self.metric)
        if points.shape[1] > CORESET_DIMS:  # Johnson-Lindenstrauss: distances kept ~
            projection = rng.standard_normal((points.shape[1], CORESET_DIMS))
            points = points @ (projection / math.sqrt(CORESET_DIMS))
        with self._blas_threads():
            kept, _ = greedy_coreset(points, m, start=int(rng.randint(n)))
        # the radius in the rows' own space (not the projection's), exactly as scored
        index = _NeighborIndex(np.ascontiguousarray(rows[kept]), self.metric)
        with self._blas_threads():
            sq = index.sq_distances(_prepare(rows, self.metric), 1)
        return np.sort(kept), float(np.sqrt(sq.max()))

    def _index(self, rows):
        """The index of the training ``rows`` (flat float32) that queries are answered from
        (``fit``, and ``load`` from the rows a model file stores)."""
        return _NeighborIndex(rows, self.metric)

    def _rows_needed(self):
        """The fewest normal rows a fit takes: ``n_neighbors`` to index and the held-out
        ones (``n_neighbors + 1`` without a held-out part: each row needs others)."""
        k, fraction = self.n_neighbors, self.validation_fraction
        if fraction == 0:
            return k + 1
        n = k + 1
        while n - math.ceil(fraction * n) < k:
            n += 1
        return n

    def _blas_threads(self):
        """BLAS threads for ``n_jobs`` during the block (no change for None)."""
        if self.n_jobs is None:
            return contextlib.nullcontext()
        return threadpool_limits(limits=resolve_n_jobs(self.n_jobs), user_api="blas")

    def _to_scores(self, sq):
        """Normality scores from the ascending squared distances ``(n, k)``."""
        distances = np.sqrt(sq) if self.metric == "euclidean" else sq / 2.0
        return -distances.mean(axis=1)

    def _raw_score(self, Z):
        """Normality scores of validated flat float32 rows ``Z``."""
        with self._blas_threads():
            points = _prepare(Z, self.metric)
            return self._to_scores(self.model_.sq_distances(points, self.n_neighbors))

    def _block_rows(self):
        """Rows validated at a time: ``STREAM_ROWS``, fewer for samples of more than 256
        values (at most ``256 * STREAM_ROWS`` values, 16 MB as float32), at least 1."""
        n_values = max(1, math.prod(self.sample_shape_))
        return max(1, min(STREAM_ROWS, 256 * STREAM_ROWS // n_values))

    def score_samples(self, X):
        """Normality score: minus the mean distance to the ``n_neighbors`` nearest training
        rows (higher = more normal).

        ``X`` is validated and scored in blocks (see the class notes), and the scores do not
        depend on the blocks: a sample scores the same alone or with any others.

        Parameters
        ----------
        X : array-like of the fitted sample shape, or flat rows of as many values
            Samples to score.

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
        X = validate_samples(self, X, reset=False, ranks=self._sample_ranks)
        return self._raw_score(X.reshape(len(X), -1))


io.register(NearestNeighborDetector, "neighbors")
