"""Flagging a batch of samples with false-discovery control, from conformal p-values.

:func:`select_anomalies` applies the Benjamini-Hochberg procedure to the split-conformal
p-values that every detector gives (:meth:`ThresholdMixin.predict_pvalues`;
:meth:`ThresholdMixin.predict_fdr` does both steps), either as they are
(FDR control on average over the reference rows) or after the calibration-conditional
adjustment of :func:`conditional_pvalues` (FDR control for this reference set, with
probability ``1 - delta``). Both follow Bates, Candès, Lei, Romano and Sesia, "Testing for
outliers with conformal p-values", Ann. Statist. 51(1), 2023 (arXiv:2104.08279).

Its functions take p-values from anywhere (numpy arrays in, numpy arrays out).
:class:`ThresholdMixin`, which every sknovelty estimator inherits, gives the p-values, the
decision threshold and ``predict_fdr``.
"""

import math
import numbers
import warnings

import numpy as np
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from ._validation import normal_rows

__all__ = ["ThresholdMixin", "conditional_pvalues", "select_anomalies"]

#: the values of ``method`` of :func:`select_anomalies` and of ``predict_fdr``
METHODS = ("marginal", "conditional-simes", "conditional-dkwm")


def _check_alpha(alpha, name="alpha"):
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 < alpha < 1:
        raise ValueError(f"{name} must be a float in (0, 1), got {alpha!r}")
    return float(alpha)


def _check_pvalues(pvalues):
    p = np.asarray(pvalues)
    if p.dtype == object or not (np.issubdtype(p.dtype, np.number) or p.dtype == bool):
        raise ValueError(f"pvalues must be numbers, got an array of dtype {p.dtype}")
    p = p.astype(np.float64, copy=False)
    if p.ndim != 1:
        raise ValueError(f"pvalues must be 1-D (one p-value per sample), got shape {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError("pvalues contains NaN or infinite values")
    if p.size and not (p.min() > 0 and p.max() <= 1):
        raise ValueError("pvalues must lie in (0, 1] (a conformal p-value is at least "
                         f"1 / (n_calibration + 1)); got values in [{p.min():.4g}, {p.max():.4g}]")
    return p


def _check_n_calibration(n_calibration):
    if (isinstance(n_calibration, bool) or not isinstance(n_calibration, numbers.Integral)
            or n_calibration < 1):
        raise ValueError("the calibration-conditional methods need n_calibration, the number "
                         f"of reference scores (an int >= 1), got {n_calibration!r}")
    return int(n_calibration)


def _check_selection(alpha, method, n_calibration, delta):
    """Validate the arguments of :func:`select_anomalies` but the p-values; return alpha."""
    alpha = _check_alpha(alpha)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method != "marginal":
        if n_calibration is None:
            raise ValueError(f"method={method!r} needs n_calibration, the number of "
                             "reference scores the p-values were computed against")
        _check_n_calibration(n_calibration)
        _check_alpha(delta, "delta")
    return alpha


def _simes_a(n, k, delta):
    """``a_j``, ``j = 1..n``, of the Simes bound: ``0`` for ``j < k``, else
    ``delta^(1/k) * (prod_{l=j-k+1}^{j} l / prod_{l=n-k+1}^{n} l)^(1/k)``, in logs."""
    log_l = np.log(np.arange(1, n + 1, dtype=np.float64))
    window = np.convolve(log_l, np.ones(k), mode="valid")  # sum over j-k+1..j, for j = k..n
    a = np.zeros(n)
    a[k - 1:] = np.exp((math.log(delta) + window - window[-1]) / k)
    return a


def conditional_pvalues(pvalues, n_calibration, *, delta=0.05, method="simes"):
    """Calibration-conditional conformal p-values (Bates et al. 2023, Section 3).

    A split-conformal p-value ``p = (1 + R) / (n + 1)`` (``R`` of the ``n`` reference scores
    at or below the sample's) is valid on average over the draw of the reference rows; for
    one fixed reference set the false-alarm rate at a level ``t`` can exceed ``t``. This map
    ``p -> h(p)`` makes the p-values valid for the reference set at hand: with probability
    at least ``1 - delta`` over the draw of the reference rows, ``P(h(p(X)) <= t | reference)
    <= t`` for every ``t`` at once, for a normal ``X``; and given the reference set, the
    p-values of independent test samples are independent. (Bates et al.: if ``U_(1) <= ...
    <= U_(n)`` are ``n`` sorted uniforms and ``P(U_(i) <= b_i for all i) >= 1 - delta``, then
    ``h(i / (n + 1)) = b_i`` for ``i <= n`` and ``h(1) = 1`` has that property.)

    * ``"simes"`` (the paper's recommended choice, with ``k = n // 2``): ``b_i = 1 -
      a_{n+1-i}`` with ``a_j = 0`` for ``j < k`` and, for ``j >= k``,
      ``a_j = delta^(1/k) * (j (j-1) ... (j-k+1) / (n (n-1) ... (n-k+1)))^(1/k)``
      (the Simes inequality applied to the order statistics of uniforms).
    * ``"dkwm"``: ``h(p) = min(1, p + sqrt(log(2 / delta) / (2 n)))``, from the
      Dvoretzky-Kiefer-Wolfowitz inequality with Massart's constant. Simple, but it adds
      ``0.043`` to every p-value at ``n = 1000``, ``delta = 0.05``, and so rarely rejects
      anything in a batch of more than a few samples.

    These are the maps of the authors' reference code (``cccpv.utils_calib``
    ``betainv_simes`` with ``simes_kden=2``, and the DKWM branch of ``calibrate_ccv``),
    which ``nonconform`` 2.0 reuses in ``ConditionalEmpirical``. One difference: they find
    the index ``n + 1 - i`` as ``floor((n + 1) (1 - p))`` in floating point, which for about
    one grid point in five comes out one below the exact integer and so gives a slightly
    larger (more conservative) p-value; here the rank is recovered exactly.

    Parameters
    ----------
    pvalues : array-like of shape (n_samples,)
        Split-conformal p-values against ``n_calibration`` reference scores, as
        :meth:`ThresholdMixin.predict_pvalues` gives them: each must be
        ``i / (n_calibration + 1)`` for an integer ``i`` in ``1..n_calibration + 1``.
    n_calibration : int
        The number of reference scores (``len(reference_scores_)``).
    delta : float in (0, 1), default=0.05
        The probability, over the draw of the reference rows, that the guarantee fails.
    method : {"simes", "dkwm"}, default="simes"
        Which bound on the calibration scores' empirical distribution to use.

    Returns
    -------
    ndarray of shape (n_samples,)
        The adjusted p-values, in ``(0, 1]``, each at least the given one.

    Raises
    ------
    ValueError
        If a p-value is not on the grid ``i / (n_calibration + 1)``, or an argument is
        out of range.

    See Also
    --------
    select_anomalies : Benjamini-Hochberg on these (``method="conditional-simes"``).

    Examples
    --------
    >>> import numpy as np
    >>> from sknovelty.thresholds import conditional_pvalues
    >>> p = np.array([1, 5, 50, 100]) / 100        # against 99 reference scores
    >>> conditional_pvalues(p, 99).round(4)
    array([0.0593, 0.1114, 0.7355, 1.    ])
    >>> conditional_pvalues(p, 99, method="dkwm").round(4)
    array([0.1465, 0.1865, 0.6365, 1.    ])
    """
    p = _check_pvalues(pvalues)
    n = _check_n_calibration(n_calibration)
    delta = _check_alpha(delta, "delta")
    if method not in ("simes", "dkwm"):
        raise ValueError(f"method must be 'simes' or 'dkwm', got {method!r}")
    i = np.rint(p * (n + 1))
    if p.size and (np.abs(p * (n + 1) - i).max() > 1e-6 or i.min() < 1):
        raise ValueError(
            f"pvalues are not split-conformal p-values against n_calibration={n} reference "
            f"scores (multiples of 1 / {n + 1}): pass the n_calibration they were computed "
            "with (len(reference_scores_))")
    if method == "dkwm":
        return np.minimum(1.0, p + math.sqrt(math.log(2.0 / delta) / (2.0 * n)))
    a = _simes_a(n, max(1, n // 2), delta)
    i = i.astype(np.int64)
    out = np.ones_like(p)  # h(1) = 1: the samples scoring above every reference score
    inside = i <= n
    out[inside] = 1.0 - a[n - i[inside]]  # b_i = 1 - a_{n+1-i}, a stored from index 0
    return out


def select_anomalies(pvalues, alpha=0.1, *, method="marginal", n_calibration=None,
                     delta=0.05):
    """Flag a batch of samples as anomalies, controlling the false-discovery rate.

    The Benjamini-Hochberg (BH) step-up procedure on the p-values of "the sample is
    normal": with ``p_(1) <= ... <= p_(m)`` the sorted p-values of the ``m`` samples and
    ``k = max{j : p_(j) <= alpha j / m}``, the ``k`` samples with the smallest p-values are
    flagged (none if no such ``j``). Ties at ``p_(k)`` are all flagged, and the result does
    not depend on the order of the samples.

    **What is controlled.** The false-discovery rate ``FDR = E[V / max(R, 1)]``, with ``R``
    the number of flagged samples and ``V`` the number of normal samples among them: the
    expected share of false alarms among the flagged samples (Benjamini and Hochberg, 1995).
    It says nothing about one batch: the share in a given batch scatters around its mean.

    ``method="marginal"``: BH on the conformal p-values as they are. Their dependence
    through the shared reference scores is positive (PRDS, Bates et al. 2023, Section 2),
    so ``FDR <= alpha * m0 / m <= alpha`` (``m0`` normal samples among ``m``), where the
    expectation is over the draw of the reference rows *and* of the batch: for one fixed
    reference set the FDR may be above ``alpha``.

    ``method="conditional-simes"`` or ``"conditional-dkwm"``: BH on
    :func:`conditional_pvalues` (Bates et al. 2023, Section 3): with probability at least
    ``1 - delta`` over the draw of the reference rows, the FDR given the reference set
    is at most ``alpha``. Fewer samples are flagged; Simes (the authors' recommendation)
    loses little power when the reference set is large, DKWM a lot.

    **Assumptions** (as for the p-values themselves): the reference scores come from normal
    rows that the model was not trained on (``reference_held_out_``; see
    :meth:`ThresholdMixin.calibrate`); the normal samples of the batch are
    drawn from the same distribution as those rows, independently of each other and of
    them; the anomalies are independent of each other (any distribution); the score
    function does not depend on the batch; ``alpha`` and ``method`` are chosen before
    looking at the result. With ``n`` reference scores no p-value is below
    ``1 / (n + 1)``, so a batch of ``m`` samples needs ``n >= m / alpha - 1`` reference
    scores for a single anomaly to be flaggable alone.

    Parameters
    ----------
    pvalues : array-like of shape (m,)
        p-values in ``(0, 1]`` of the samples of one batch; small means novel.
    alpha : float in (0, 1), default=0.1
        The target false-discovery rate.
    method : {"marginal", "conditional-simes", "conditional-dkwm"}, default="marginal"
        BH on the marginal conformal p-values, or on their calibration-conditional
        adjustment (see :func:`conditional_pvalues`).
    n_calibration : int, optional
        The number of reference scores the p-values were computed against; needed by the
        conditional methods (``len(reference_scores_)``).
    delta : float in (0, 1), default=0.05
        Conditional methods: the probability, over the reference rows, that the guarantee
        fails. Ignored by ``"marginal"``.

    Returns
    -------
    ndarray of bool of shape (m,)
        True for the samples flagged as anomalies, in the order of ``pvalues``
        (``np.flatnonzero`` gives their indices).

    Raises
    ------
    ValueError
        If ``pvalues`` is not 1-D, not finite or outside ``(0, 1]``, if ``alpha`` or
        ``delta`` is not in ``(0, 1)``, if ``method`` is unknown, or if a conditional
        method lacks ``n_calibration`` or gets p-values not on its grid.

    See Also
    --------
    ThresholdMixin.predict_fdr : Scores, p-values and this selection in one
        call, on a fitted detector.
    ThresholdMixin.predict_pvalues : The conformal p-values.
    conditional_pvalues : The calibration-conditional adjustment.

    References
    ----------
    Y. Benjamini and Y. Hochberg, "Controlling the false discovery rate: a practical and
    powerful approach to multiple testing", J. R. Stat. Soc. B 57(1), 1995.

    S. Bates, E. Candès, L. Lei, Y. Romano and M. Sesia, "Testing for outliers with
    conformal p-values", Ann. Statist. 51(1), 2023.

    Examples
    --------
    >>> import numpy as np
    >>> from sknovelty import select_anomalies
    >>> p = np.array([0.001, 0.008, 0.039, 0.041, 0.6, 0.9])
    >>> select_anomalies(p, alpha=0.1)          # BH thresholds: 0.1 * j / 6
    array([ True,  True,  True,  True, False, False])
    >>> select_anomalies(p, alpha=0.05)         # 0.039 > 0.05 * 3 / 6 = 0.025
    array([ True,  True, False, False, False, False])
    >>> p = np.array([1, 2, 70, 100]) / 1000    # against 999 reference scores
    >>> select_anomalies(p, alpha=0.1)
    array([ True,  True,  True,  True])
    >>> select_anomalies(p, alpha=0.1, method="conditional-simes", n_calibration=999)
    array([ True,  True, False, False])
    """
    alpha = _check_selection(alpha, method, n_calibration, delta)
    p = _check_pvalues(pvalues)
    if method != "marginal":
        p = conditional_pvalues(p, n_calibration, delta=delta,
                                method=method.removeprefix("conditional-"))
    m = p.size
    selected = np.zeros(m, dtype=bool)
    if m == 0:
        return selected
    ordered = np.sort(p)
    # the largest j with p_(j) <= alpha j / m; a relative tolerance keeps a p-value equal to
    # its threshold (up to rounding, e.g. 3 * 0.1 / 10) on the flagged side
    thresholds = alpha * np.arange(1, m + 1) / m
    below = np.flatnonzero(ordered <= thresholds * (1 + 1e-12))
    if below.size:
        selected = p <= ordered[below[-1]]
    return selected


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
