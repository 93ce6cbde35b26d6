"""Scores users can act on, for every estimator: conformal p-values against the reference
scores kept at fit, ``offset_`` from a target false-alarm rate, ``calibrate`` on fresh normal
rows, and anomaly maps (``score_maps``) for the methods whose score has a spatial form."""

import pickle
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.exceptions import NotFittedError

from sknovelty import AutoencoderDetector, WhitenedKDE, load
from sknovelty.registry import ESTIMATORS

from .conftest import tiny_ae, tiny_lsa

WHITENED = tuple(name for name, entry in ESTIMATORS.items() if entry.cls._file_kind == "whitened")


@pytest.fixture
def fitted(every_fitted):
    return every_fitted


def _pvalues(det, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the whitened baselines' reference
        return det.predict_pvalues(X)


# ---------------------------------------------------------------- p-values and thresholds
def test_reference_scores_are_the_held_out_rows_scores(fitted):
    name, det, X_train, _ = fitted
    ref = det.reference_scores_
    assert np.all(np.diff(ref) >= 0)
    if "validation_fraction" not in det.get_params():  # the reference is in-sample
        assert not det.reference_held_out_ and len(ref) == len(X_train)
    else:
        assert det.reference_held_out_
        assert len(ref) == int(np.ceil(det.validation_fraction * len(X_train)))
    # contamination's offset_ is a percentile of the same scores
    assert det.offset_ == pytest.approx(np.percentile(ref, 100 * det.contamination))


def test_pvalues_follow_the_conformal_formula(fitted):
    name, det, _, X_test = fitted
    ref, s = det.reference_scores_, det.score_samples(X_test)
    expected = (1 + (ref[None, :] <= s[:, None]).sum(1)) / (len(ref) + 1)
    p = _pvalues(det, X_test)
    np.testing.assert_array_equal(p, expected)
    assert p.min() >= 1 / (len(ref) + 1) and p.max() <= 1
    order = np.argsort(s, kind="stable")
    assert np.all(np.diff(p[order]) >= 0)  # more normal, larger p-value


def test_whitened_pvalues_warn_that_the_reference_is_in_sample(digits):
    X, y = digits
    det = ESTIMATORS["KDE"].tiny().fit(X[y == 0])
    with pytest.warns(UserWarning, match="p-values are too small.*calibrate"):
        det.predict_pvalues(X[:3])
    with pytest.warns(UserWarning, match="more than this rate.*calibrate"):
        det.set_false_alarm_rate(0.2)
    det.calibrate(X[y == 0][:20])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        det.predict_pvalues(X[:3])
        det.set_false_alarm_rate(0.2)


@pytest.mark.parametrize("rate", [0.1, 0.25, 0.5])
def test_false_alarm_rate_flags_exactly_the_small_pvalues(fitted, rate):
    name, det, _, X_test = fitted
    det = pickle.loads(pickle.dumps(det))  # the module's fixture stays as fitted
    ref = det.reference_scores_
    if rate * (len(ref) + 1) < 1:
        pytest.skip("too few reference rows for this rate")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the whitened baselines' reference
        det.set_false_alarm_rate(rate)
    assert det.false_alarm_rate_ == rate and det.offset_ in ref
    # samples: the test rows and the reference values themselves (the boundary cases)
    s = np.concatenate([det.score_samples(X_test), ref])
    p = (1 + (ref[None, :] <= s[:, None]).sum(1)) / (len(ref) + 1)
    flagged = s - det.offset_ < 0
    np.testing.assert_array_equal(flagged, p <= rate)
    np.testing.assert_array_equal(det.predict(X_test) == -1, _pvalues(det, X_test) <= rate)
    # on the reference rows themselves: floor(rate (n + 1)) - 1 of n flagged, at most rate
    assert flagged[len(X_test):].sum() == int(np.floor(rate * (len(ref) + 1))) - 1


def test_thresholds_and_reference_survive_save_load_and_pickle(fitted, tmp_path):
    name, det, _, X_test = fitted
    det = pickle.loads(pickle.dumps(det))
    rate = max(0.3, 1.01 / (len(det.reference_scores_) + 1))
    det.set_false_alarm_rate(rate)
    path = tmp_path / "model.safetensors"
    det.save(path)
    device = {} if name in WHITENED else {"device": "cpu"}
    for other in (load(path, **device), pickle.loads(pickle.dumps(det))):
        np.testing.assert_array_equal(other.reference_scores_, det.reference_scores_)
        assert other.reference_held_out_ == det.reference_held_out_
        assert other.false_alarm_rate_ == rate and other.offset_ == det.offset_
        np.testing.assert_array_equal(_pvalues(other, X_test), _pvalues(det, X_test))


def test_calibrate_replaces_the_reference_and_keeps_the_rate(digits):
    X, y = digits
    normal = X[y == 0]
    det = tiny_ae().fit(normal[:60])
    before = det.score_samples(X[:10])
    det.set_false_alarm_rate(0.2)
    # labels select the normal rows, as in fit
    X_cal = np.concatenate([normal[60:], X[y == 1][:5]])
    y_cal = np.r_[np.ones(len(normal) - 60), -np.ones(5)]
    det.calibrate(X_cal, y_cal)
    np.testing.assert_array_equal(det.reference_scores_, np.sort(det.score_samples(normal[60:])))
    assert det.reference_held_out_
    k = int(np.floor(0.2 * (len(normal) - 60 + 1)))
    assert det.offset_ == det.reference_scores_[k - 1]
    np.testing.assert_array_equal(det.score_samples(X[:10]), before)  # the model is unchanged


def test_conformal_false_alarm_rate_holds_on_fresh_normal_data_and_fails_in_sample():
    """The guarantee on new normal data, averaged over 10 calibration draws (its sense); and
    why the in-sample reference warns: a KDE's training rows are far denser than new rows."""
    rng = np.random.RandomState(0)
    rate, in_sample, calibrated = 0.1, [], []
    for _ in range(10):
        X, X_cal, X_new = (rng.normal(size=(n, 4)) for n in (300, 300, 3000))
        det = WhitenedKDE(n_components=4, bandwidth=0.3).fit(X)
        with pytest.warns(UserWarning, match="calibrate"):
            det.set_false_alarm_rate(rate)
        in_sample.append(np.mean(det.predict(X_new) == -1))
        calibrated.append(np.mean(det.calibrate(X_cal).predict(X_new) == -1))
    # each draw's rate is ~ rate +- sqrt(rate (1 - rate) / 300) = 0.017; the mean of 10 draws
    # +- 0.006 around its expectation, which is at most rate: 4 of those above it
    assert np.mean(calibrated) <= rate + 4 * 0.017 / np.sqrt(10)
    assert np.mean(calibrated) >= rate - 0.04  # not conservative by much (k / (n + 1) ~ rate)
    assert np.mean(in_sample) > 3 * rate  # measured 0.81: the warning is not a formality


def test_deep_detector_pvalues_are_uniform_on_fresh_normal_rows(blobs):
    """Held-out reference (validation_fraction): the p-values of new normal rows are about
    uniform; a broken rank (or the training rows as reference) shifts them."""
    rng = np.random.RandomState(1)
    det = AutoencoderDetector(latent_dim=2, hidden_dim=8, epochs=5, batch_size=32,
                              validation_fraction=0.5, random_state=0, device="cpu")
    det.fit(rng.normal(size=(800, 5)).astype(np.float32))
    p = det.predict_pvalues(rng.normal(size=(4000, 5)).astype(np.float32))
    n_ref = len(det.reference_scores_)
    tol = 4 * np.sqrt(0.25 / n_ref)  # the reference's own sampling error dominates
    for a in (0.1, 0.5):
        assert abs(np.mean(p <= a) - a) <= tol + 0.01, a


@settings(max_examples=25, deadline=None)
@given(st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0), st.just(float("nan")),
                 st.text(max_size=3), st.none()))
def test_false_alarm_rate_outside_0_1_is_a_clear_error(rate):
    det = _KDE_FITTED
    with pytest.raises(ValueError, match="rate must be a float in"):
        det.set_false_alarm_rate(rate)


_KDE_FITTED = WhitenedKDE(n_components=2).fit(np.random.RandomState(0).normal(size=(30, 3)))


def test_too_small_a_rate_for_the_reference_is_a_clear_error():
    det = pickle.loads(pickle.dumps(_KDE_FITTED))
    with pytest.raises(ValueError, match="needs at least 99 reference scores; .* has 30"):
        det.set_false_alarm_rate(0.01)
    with pytest.raises(ValueError, match="no row as normal"):
        det.calibrate(np.zeros((3, 3)), [-1, -1, -1])


def test_models_without_reference_scores_ask_for_calibration(digits, tmp_path):
    """Files and pickles of versions before p-values load and score; p-values need calibrate."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    X, y = digits
    det = tiny_ae(epochs=1).fit(X[y == 0][:40])
    path = tmp_path / "new.safetensors"
    det.save(path)
    with safe_open(str(path), framework="pt", device="cpu") as f:
        meta, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    fitted = json.loads(meta["fitted"])
    for key in ("reference_scores_", "reference_held_out_"):
        del fitted[key]
    meta["fitted"] = json.dumps(fitted)
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata=meta)
    old = load(tmp_path / "old.safetensors")
    np.testing.assert_array_equal(old.score_samples(X[:5]), det.score_samples(X[:5]))
    for method, arg in (("predict_pvalues", X[:5]), ("set_false_alarm_rate", 0.2)):
        with pytest.raises(NotFittedError, match="calibrate"):
            getattr(old, method)(arg)
    old.calibrate(X[y == 0][40:])
    assert old.predict_pvalues(X[:5]).shape == (5,)


# ---------------------------------------------------------------- anomaly maps
def _mapped_terms(det, X):
    """The novelty terms of a deep detector that its criterion maps per value."""
    criterion = det.net_.criterion_
    maps = det._map_chunks(det._validate_X(X, reset=False),
                           lambda xb: criterion.per_pixel(det._forward(xb), xb))
    return set(maps)


def test_maps_exist_exactly_for_the_methods_with_a_spatial_score(fitted):
    """Maps exist fitted as before fit (``Entry.maps`` asks the unfitted tiny estimator); a
    deep detector has them exactly when its criterion has per-value errors (``per_pixel``):
    a flow's likelihood, MMP-AMS's aspects and the baselines without a network have no
    per-value form of their score."""
    name, det, _, _ = fitted
    assert hasattr(det, "score_maps") == ESTIMATORS[name].maps
    if ESTIMATORS[name].deep:
        assert ESTIMATORS[name].maps == hasattr(det.net_.criterion_, "per_pixel")


def test_maps_have_the_input_shape_and_sum_to_the_score(fitted):
    name, det, _, X_test = fitted
    if not ESTIMATORS[name].maps:
        pytest.skip("no maps")
    maps = det.score_maps(X_test)
    assert maps.shape == X_test.shape and np.isfinite(maps).all()
    total = maps.reshape(len(maps), -1).astype(np.float64).sum(1)
    s = det.score_samples(X_test)
    if ESTIMATORS[name].deep:  # per-value errors of the criterion, in float32
        assert maps.dtype == np.float32 and maps.min() >= 0
    if ESTIMATORS[name].deep and _mapped_terms(det, X_test) == set(det._novelty_terms):
        # every novelty term mapped (not LSA's LLK, not ITAE's NLL): a map sums to the
        # normalised novelty score up to the normalisation's constant shift, so
        # -score_samples - total is the same for every sample (float32 sums: 1e-4 relative)
        shift = -s - total
        np.testing.assert_allclose(shift, shift[0], atol=1e-4 * np.abs(total).max() + 1e-6)
    elif name == "LSA":  # the REC term alone, divided by its min-max range
        a, b = det.normalization_["rec"]
        rec = det.score_components(X_test)["rec"]
        np.testing.assert_allclose(total, rec / (b - a), rtol=1e-4)
    # a map does not depend on the other samples scored with it
    np.testing.assert_allclose(det.score_maps(X_test[:2]), maps[:2], rtol=1e-5, atol=1e-7)


def test_maps_of_flat_rows_are_flat(digits):
    X, y = digits
    flat = X.reshape(len(X), -1)
    det = tiny_ae(image_shape=(1, 8, 8)).fit(flat[y == 0][:60])
    maps = det.score_maps(flat[:5])
    assert maps.shape == (5, 64)
    np.testing.assert_array_equal(maps.reshape(5, 1, 8, 8), det.score_maps(X[:5]))


@pytest.mark.parametrize("factory", [tiny_ae, tiny_lsa], ids=["ae", "lsa"])
def test_maps_point_at_a_pasted_defect(digits, factory):
    """A bright 3x3 square pasted onto normal digits: most of each map's excess over the
    clean image's map lies inside the square (9 of 64 pixels, 14% of the area). Measured
    medians 0.87 (AE) and 0.83 (LSA) on an AMD EPYC; the bound 0.5 leaves room for another
    CPU's training while a map that ignored the square would give about 0.14."""
    X, y = digits
    det = factory(epochs=15).fit(X[y == 0])
    clean = X[y == 0][:20]
    defect = clean.copy()
    defect[:, :, 0:3, 4:7] = X.max()
    excess = det.score_maps(defect) - det.score_maps(clean)
    inside = excess[:, :, 0:3, 4:7].reshape(20, -1).sum(1)
    total = np.clip(excess, 0, None).reshape(20, -1).sum(1)
    assert np.median(inside / total) > 0.5
