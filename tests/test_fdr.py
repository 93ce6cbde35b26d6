"""Flagging a batch with false-discovery control: ``select_anomalies`` (Benjamini-Hochberg on
conformal p-values, marginal or calibration-conditional, Bates et al. 2023) and every
detector's ``predict_fdr``.

* BH by hand on small vectors, against ``scipy.stats.false_discovery_control``, and its
  edge cases and input errors.
* The calibration-conditional p-values by hand (Simes and DKWM maps).
* ``nonconform`` (the library that ships this for PyOD detectors): its formulas, reproduced
  here from its 2.0.0 source (nonconform needs Python >= 3.12, so it is read, not run, on
  older interpreters), give the same p-values and selections on the same scores; where
  nonconform is installed, the package itself is compared.
* A simulation: the realised false-discovery rate over many draws of Gaussian scores stays
  at or below alpha (within 3 standard errors of the mean measured over the draws).
* ``predict_fdr`` equals ``select_anomalies(predict_pvalues(X))`` on a fitted detector, and
  warns when the reference is in-sample.
"""

import math
import warnings

import numpy as np
import pytest
from scipy.stats import false_discovery_control

from sknovelty import WhitenedKDE, select_anomalies
from sknovelty.registry import ESTIMATORS
from sknovelty.thresholds import conditional_pvalues


def conformal_pvalues(reference, scores):
    """The p-values of ``ThresholdMixin.predict_pvalues`` from normality scores."""
    below = np.searchsorted(np.sort(reference), scores, side="right")
    return (1.0 + below) / (len(reference) + 1.0)


# ------------------------------------------------------------------ Benjamini-Hochberg
def test_bh_by_hand():
    # sorted: .01 .025 .03 .04 .2 .5 against 0.1 j / 6 = .0167 .0333 .05 .0667 .0833 .1:
    # the largest j with p_(j) <= 0.1 j / 6 is 4, so the four smallest are flagged
    p = np.array([0.01, 0.04, 0.03, 0.2, 0.5, 0.025])
    assert select_anomalies(p, 0.1).tolist() == [True, True, True, False, False, True]
    # step-up: p_(1) = .04 misses 0.1 / 3, but p_(3) = .09 <= 0.1, so all three are flagged
    assert select_anomalies([0.04, 0.05, 0.09], 0.1).all()
    assert not select_anomalies([0.04, 0.07, 0.11], 0.1).any()
    # a p-value equal to its threshold (3 * 0.1 / 10 is 0.30000000000000004 in floats)
    assert select_anomalies([0.03] * 3 + [0.9] * 7, 0.1).sum() == 3
    # ties at the cut are all flagged
    assert select_anomalies([0.02, 0.02, 0.5], 0.05).tolist() == [True, True, False]


def test_bh_matches_scipy_on_conformal_pvalues():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n, m = rng.integers(5, 300), rng.integers(1, 60)
        # grid p-values of a conformal test (many ties), a share of them small
        i = np.where(rng.random(m) < 0.3, rng.integers(1, 4, m), rng.integers(1, n + 2, m))
        p = i / (n + 1)
        alpha = rng.choice([0.01, 0.05, 0.1, 0.2, 0.5])
        np.testing.assert_array_equal(select_anomalies(p, alpha),
                                      false_discovery_control(p, method="bh") <= alpha)


def test_bh_does_not_depend_on_the_order():
    rng = np.random.default_rng(1)
    p = rng.random(50) ** 3
    order = rng.permutation(50)
    np.testing.assert_array_equal(select_anomalies(p, 0.2)[order], select_anomalies(p[order], 0.2))


def test_edge_cases():
    empty = select_anomalies([], 0.1)
    assert empty.dtype == bool and empty.shape == (0,)
    assert select_anomalies(np.ones(5), 0.5).sum() == 0
    assert select_anomalies([0.05], 0.1).tolist() == [True]  # one test: p <= alpha
    assert select_anomalies([0.1], 0.1).tolist() == [True]
    assert select_anomalies([0.11], 0.1).tolist() == [False]
    # every p-value at most alpha: all flagged
    assert select_anomalies([0.1, 0.02, 0.07], 0.1).all()
    # the conditional methods on an empty batch
    assert select_anomalies([], 0.1, method="conditional-simes", n_calibration=10).shape == (0,)


@pytest.mark.parametrize("kwargs, match", [
    ({"alpha": 0.0}, "alpha must be"), ({"alpha": 1.0}, "alpha must be"),
    ({"alpha": 1.5}, "alpha must be"), ({"alpha": True}, "alpha must be"),
    ({"alpha": "0.1"}, "alpha must be"), ({"alpha": np.nan}, "alpha must be"),
    ({"pvalues": [0.0, 0.5]}, r"\(0, 1\]"), ({"pvalues": [0.5, 1.01]}, r"\(0, 1\]"),
    ({"pvalues": [-0.1]}, r"\(0, 1\]"),
    ({"pvalues": [0.5, np.nan]}, "NaN or infinite"), ({"pvalues": [np.inf]}, "NaN or infinite"),
    ({"pvalues": [[0.1, 0.2]]}, "1-D"), ({"pvalues": 0.1}, "1-D"),
    ({"pvalues": ["a", "b"]}, "numbers"),
    ({"method": "by"}, "method must be one of"),
    ({"method": "conditional-simes"}, "needs n_calibration"),
    ({"method": "conditional-simes", "n_calibration": 0}, "n_calibration"),
    ({"method": "conditional-simes", "n_calibration": 9.5}, "n_calibration"),
    ({"method": "conditional-dkwm", "n_calibration": 9, "delta": 0}, "delta must be"),
    # 0.25 is not a multiple of 1 / 10: these p-values were not computed against 9 scores
    ({"method": "conditional-simes", "n_calibration": 9, "pvalues": [0.25]}, "not split-conformal"),
])
def test_invalid_input(kwargs, match):
    args = {"pvalues": [0.1, 0.5], "alpha": 0.1, **kwargs}
    with pytest.raises(ValueError, match=match):
        select_anomalies(args.pop("pvalues"), args.pop("alpha"), **args)


# ------------------------------------------------------------------ calibration-conditional
def test_conditional_pvalues_by_hand():
    # n = 4 reference scores, k = n // 2 = 2, delta = 0.1: a_1 = 0 and, for j >= 2,
    # a_j = delta^(1/2) (j (j - 1) / (4 * 3))^(1/2); the rank i p-value i / 5 becomes
    # b_i = 1 - a_{5 - i}, and h(1) = 1
    a = {1: 0.0, **{j: math.sqrt(0.1 * j * (j - 1) / 12) for j in (2, 3, 4)}}
    expected = [1 - a[4], 1 - a[3], 1 - a[2], 1 - a[1], 1.0]
    p = np.arange(1, 6) / 5
    np.testing.assert_allclose(conditional_pvalues(p, 4, delta=0.1), expected, rtol=1e-12)
    eps = math.sqrt(math.log(2 / 0.1) / 8)
    np.testing.assert_allclose(conditional_pvalues(p, 4, delta=0.1, method="dkwm"),
                               np.minimum(1, p + eps), rtol=1e-12)
    # larger: never below the marginal p-value, nondecreasing in it
    p = np.arange(1, 1002) / 1001
    for method in ("simes", "dkwm"):
        q = conditional_pvalues(p, 1000, method=method)
        assert (q >= p).all() and (np.diff(q) >= 0).all() and q[-1] == 1
    with pytest.raises(ValueError, match="method must be"):
        conditional_pvalues(p, 1000, method="asymptotic")


# ------------------------------------------------------------------ nonconform
# nonconform 2.0.0 (PyPI), read from its wheel: anomaly scores (large = anomalous);
# scoring.calculate_p_val: p = (1 + #{calibration >= s}) / (n + 1); select(): BH as
# scipy.stats.false_discovery_control(p, method="bh") <= alpha
# (_internal/p_value_selection.adjusted_p_values); ConditionalEmpirical(method="simes") /
# "dkwm": _internal/conditional_calibration.calibrate_conditional_p_values, the maps of
# Bates et al.'s code (compute_aseq, betainv_generic). Reproduced here:
def _nonconform_pvalues(test_anomaly, calibration_anomaly):
    ranks = len(calibration_anomaly) - np.searchsorted(np.sort(calibration_anomaly),
                                                       test_anomaly, side="left")
    return (1.0 + ranks) / (1.0 + len(calibration_anomaly))


def _nonconform_simes(p, n, delta, *, exact_index=False):
    k = max(1, int(n / 2))
    fac1 = np.log(delta) / k - np.mean(np.log(np.arange(n - k + 1, n + 1)))
    fac2 = np.convolve(np.log(np.arange(1, n + 1)), np.repeat(1.0, k) / k, "valid")
    aseq = np.concatenate([np.zeros(k - 1), np.exp(fac2 + fac1)])
    if exact_index:  # the index floor((n + 1) (1 - p)) in exact arithmetic
        idx = n + 1 - np.rint(p * (n + 1)).astype(int)
    else:
        idx = np.floor((n + 1) * (1.0 - p)).astype(int)
    return 1.0 - aseq[np.clip(idx, 1, n) - 1]


def _scores(seed, n=300, m=80):
    rng = np.random.default_rng(seed)
    reference = rng.normal(size=n)
    test = np.concatenate([rng.normal(size=m - 10), rng.normal(-3.0, 1.0, size=10)])
    return reference, test


@pytest.mark.parametrize("seed", range(5))
def test_same_pvalues_and_selections_as_nonconform(seed):
    reference, test = _scores(seed)
    n = len(reference)
    p = conformal_pvalues(reference, test)
    # sknovelty's normality scores are nonconform's anomaly scores negated
    np.testing.assert_array_equal(p, _nonconform_pvalues(-test, -reference))
    for alpha in (0.05, 0.1, 0.2):
        np.testing.assert_array_equal(select_anomalies(p, alpha),
                                      false_discovery_control(p, method="bh") <= alpha)
    ours = conditional_pvalues(p, n, delta=0.05)
    # the same map, up to nonconform's floating-point index: floor((n + 1) (1 - p)) comes
    # out one below the exact n + 1 - i for about one grid point in five, which gives a
    # larger (more conservative) p-value; with the exact index the two agree
    np.testing.assert_allclose(ours, _nonconform_simes(p, n, 0.05, exact_index=True),
                               rtol=1e-12)
    theirs = _nonconform_simes(p, n, 0.05)
    assert (theirs >= ours - 1e-12).all()
    same_index = np.floor((n + 1) * (1.0 - p)) == n + 1 - np.rint(p * (n + 1))
    np.testing.assert_allclose(ours[same_index], theirs[same_index], rtol=1e-12)
    np.testing.assert_array_equal(
        select_anomalies(p, 0.1, method="conditional-simes", n_calibration=n),
        false_discovery_control(ours, method="bh") <= 0.1)
    eps = np.sqrt(np.log(2.0 / 0.05) / (2.0 * n))
    np.testing.assert_allclose(conditional_pvalues(p, n, method="dkwm"),
                               np.minimum(1.0, p + eps), rtol=1e-12)


def test_nonconform_package():
    nonconform = pytest.importorskip("nonconform")  # needs Python >= 3.12
    from nonconform._internal.p_value_selection import adjusted_p_values
    from nonconform.scoring import ConditionalEmpirical, calculate_p_val

    reference, test = _scores(7)
    n = len(reference)
    p = conformal_pvalues(reference, test)
    np.testing.assert_array_equal(p, calculate_p_val(-test, -reference))
    for alpha in (0.05, 0.1, 0.2):
        np.testing.assert_array_equal(
            select_anomalies(p, alpha),
            adjusted_p_values(p, method="bh", n_calibration=n) <= alpha)
    theirs = ConditionalEmpirical(method="simes", delta=0.05).compute_p_values(-test, -reference)
    ours = conditional_pvalues(p, n, delta=0.05)
    assert (theirs >= ours - 1e-12).all(), nonconform.__name__
    same_index = np.floor((n + 1) * (1.0 - p)) == n + 1 - np.rint(p * (n + 1))
    np.testing.assert_allclose(ours[same_index], theirs[same_index], rtol=1e-12)
    theirs = ConditionalEmpirical(method="dkwm", delta=0.05).compute_p_values(-test, -reference)
    np.testing.assert_allclose(conditional_pvalues(p, n, method="dkwm"), theirs, rtol=1e-12)


# ------------------------------------------------------------------ simulation
def simulate_fdr(method, *, draws=2000, n_ref=1000, n_normal=40, n_anomalies=10, shift=3.0,
                 alpha=0.1, seed=0):
    """Realised false-discovery proportion and power of ``select_anomalies`` over ``draws``
    draws of Gaussian normality scores: ``n_ref`` reference scores N(0, 1), a batch of
    ``n_normal`` normal N(0, 1) and ``n_anomalies`` anomalies N(-shift, 1)."""
    rng = np.random.default_rng(seed)
    fdp, power = np.empty(draws), np.empty(draws)
    for d in range(draws):
        reference = rng.normal(size=n_ref)
        batch = np.concatenate([rng.normal(size=n_normal),
                                rng.normal(-shift, 1.0, size=n_anomalies)])
        flagged = select_anomalies(conformal_pvalues(reference, batch), alpha, method=method,
                                   n_calibration=n_ref)
        false = flagged[:n_normal].sum()
        fdp[d] = false / max(flagged.sum(), 1)
        power[d] = flagged[n_normal:].mean()
    return fdp, power


@pytest.mark.parametrize("method", ["marginal", "conditional-simes"])
def test_realised_fdr_stays_at_or_below_alpha(method):
    alpha = 0.1
    fdp, power = simulate_fdr(method, alpha=alpha)
    fdr, se = fdp.mean(), fdp.std(ddof=1) / np.sqrt(len(fdp))
    # BH on PRDS p-values: FDR <= alpha * n_normal / n (0.08 here), on average over the
    # reference sets; the conditional p-values are more conservative still
    assert fdr <= alpha + 3 * se, (fdr, se)
    assert power.mean() > 0.1, power.mean()
    if method == "marginal":
        assert fdr <= alpha * 40 / 50 + 3 * se, (fdr, se)


def test_conditional_method_controls_the_fdr_of_each_reference_set():
    # method="conditional-simes": for all but a share delta of the reference sets, the FDR
    # given the reference set is at most alpha. Measured for 40 reference sets, each with
    # the FDR estimated over 150 batches (1000 reference scores, 40 normal + 10 anomalies).
    rng = np.random.default_rng(3)
    alpha, delta, n_ref = 0.1, 0.05, 1000
    exceed = []
    for _ in range(40):
        reference = rng.normal(size=n_ref)
        fdp = np.empty(150)
        for b in range(150):
            batch = np.concatenate([rng.normal(size=40), rng.normal(-3.0, 1.0, size=10)])
            flagged = select_anomalies(conformal_pvalues(reference, batch), alpha,
                                       method="conditional-simes", n_calibration=n_ref,
                                       delta=delta)
            fdp[b] = flagged[:40].sum() / max(flagged.sum(), 1)
        se = fdp.std(ddof=1) / np.sqrt(len(fdp))
        exceed.append(fdp.mean() > alpha + 3 * se)
    assert np.mean(exceed) <= delta, np.mean(exceed)


def test_conditional_selection_is_the_more_conservative():
    # same draws (same seed): the conditional p-values are at least the marginal ones, so
    # BH flags a subset of what it flags on the marginal p-values
    fdp_m, power_m = simulate_fdr("marginal", draws=300)
    fdp_c, power_c = simulate_fdr("conditional-simes", draws=300)
    assert power_c.mean() <= power_m.mean() and fdp_c.mean() <= fdp_m.mean()


# ------------------------------------------------------------------ predict_fdr
@pytest.fixture(scope="module")
def fitted_ae():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5)).astype(np.float32)
    det = ESTIMATORS["AE"].tiny(random_state=0, validation_fraction=0.3).fit(X)
    batch = np.concatenate([rng.normal(size=(30, 5)), rng.normal(4.0, 1.0, size=(10, 5))])
    return det, batch.astype(np.float32)


@pytest.mark.parametrize("method", ["marginal", "conditional-simes", "conditional-dkwm"])
def test_predict_fdr_is_select_anomalies_of_the_pvalues(fitted_ae, method):
    det, batch = fitted_ae
    assert det.reference_held_out_
    for alpha in (0.05, 0.2, 0.5):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a held-out reference: no warning
            labels = det.predict_fdr(batch, alpha=alpha, method=method)
        flagged = select_anomalies(det.predict_pvalues(batch), alpha, method=method,
                                   n_calibration=len(det.reference_scores_))
        np.testing.assert_array_equal(labels, np.where(flagged, -1, 1))
        assert labels.dtype.kind == "i" and set(np.unique(labels)) <= {-1, 1}


def test_predict_fdr_validates_before_scoring(fitted_ae):
    det, batch = fitted_ae
    with pytest.raises(ValueError, match="alpha must be"):
        det.predict_fdr(batch, alpha=0)
    with pytest.raises(ValueError, match="method must be one of"):
        det.predict_fdr(batch, method="bonferroni")


def test_predict_fdr_warns_with_an_in_sample_reference():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 3))
    det = WhitenedKDE().fit(X)
    with pytest.warns(UserWarning, match="false-discovery rate is not controlled") as record:
        det.predict_fdr(X[:10])
    assert record[0].filename == __file__  # the warning names the caller's line
    det.calibrate(rng.normal(size=(100, 3)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        det.predict_fdr(X[:10])


def test_every_detector_has_predict_fdr():
    for entry in ESTIMATORS.values():
        assert callable(getattr(entry.cls, "predict_fdr", None)), entry.cls
