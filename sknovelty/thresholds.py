"""Flagging a batch of samples with false-discovery control, from conformal p-values.

:func:`select_anomalies` applies the Benjamini-Hochberg procedure to the split-conformal
p-values that every detector gives (:meth:`~sknovelty.base.ThresholdMixin.predict_pvalues`;
:meth:`~sknovelty.base.ThresholdMixin.predict_fdr` does both steps), either as they are
(FDR control on average over the reference rows) or after the calibration-conditional
adjustment of :func:`conditional_pvalues` (FDR control for this reference set, with
probability ``1 - delta``). Both follow Bates, Candès, Lei, Romano and Sesia, "Testing for
outliers with conformal p-values", Ann. Statist. 51(1), 2023 (arXiv:2104.08279).

This module depends on numpy only (not on :mod:`sknovelty.base`), so that it can be used on
p-values from anywhere.
"""

import math
import numbers

import numpy as np

__all__ = ["conditional_pvalues", "select_anomalies"]

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
        :meth:`~sknovelty.base.ThresholdMixin.predict_pvalues` gives them: each must be
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
    :meth:`~sknovelty.base.ThresholdMixin.calibrate`); the normal samples of the batch are
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
    sknovelty.base.ThresholdMixin.predict_fdr : Scores, p-values and this selection in one
        call, on a fitted detector.
    sknovelty.base.ThresholdMixin.predict_pvalues : The conformal p-values.
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
