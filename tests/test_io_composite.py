"""Model files of composite estimators (issue 34): PatchwiseDetector, Pipelines of sknovelty
detectors and scikit-learn transformers, and MultiAspectDetector, saved without pickle and
loaded back scoring bit-identically; what cannot be stored safely is refused at ``save`` with
a clear error. Crafted composite files are in ``test_model_files.py``."""

import json
import struct
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import (FunctionTransformer, MaxAbsScaler, MinMaxScaler, Normalizer,
                                   RobustScaler, StandardScaler)

from sknovelty import AutoencoderDetector, PatchwiseDetector, WhitenedKDE, io, load
from sknovelty.registry import ESTIMATORS

from .test_mmp_ams import _objects, _tiny as tiny_ams


def tiny_ae(**params):
    return ESTIMATORS["AE"].tiny(**{"epochs": 1, "n_jobs": 1, **params})


def _quiet(fit):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # complexity checks and in-sample reference warnings
        return fit()


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    X = pd.DataFrame(rng.rand(64, 12).astype(np.float32), columns=[f"f{i}" for i in range(12)])
    images = rng.rand(24, 1, 8, 8).astype(np.float32)
    return X, images


@pytest.fixture(scope="module")
def models(data):
    """Each composite fitted once: ``name -> (estimator, X it scores)``."""
    X, images = data
    every_transformer = Pipeline([
        ("std", StandardScaler()), ("minmax", MinMaxScaler(feature_range=(-1, 2))),
        ("robust", RobustScaler(quantile_range=(10.0, 90.0))), ("maxabs", MaxAbsScaler()),
        ("norm", Normalizer(norm="l1")), ("pca", PCA(0.95, svd_solver="full")),
        ("kde", WhitenedKDE(n_components=3))])
    variants = Pipeline([
        ("centre_only", StandardScaler(with_std=False)),
        ("scale_only", RobustScaler(with_centering=False)),
        ("pca", PCA(6, whiten=True, svd_solver="randomized", random_state=0)),
        ("nothing", StandardScaler(with_mean=False, with_std=False)),
        ("ocsvm", ESTIMATORS["OC-SVM"].tiny())])
    deep = make_pipeline(StandardScaler(), PCA(8), tiny_ae())
    patch_ae = PatchwiseDetector(tiny_ae(), patch_size=4)
    patch_pipe = PatchwiseDetector(make_pipeline(MinMaxScaler(), WhitenedKDE(n_components=2)),
                                   patch_size=5, stride=3, aggregate="mean")
    nested = Pipeline([("pre", make_pipeline(StandardScaler(), PCA(10))),
                       ("patches", PatchwiseDetector(
                           make_pipeline(StandardScaler(), tiny_ae()), patch_size=4))])
    out = {"every_transformer": (every_transformer, X), "variants": (variants, X),
           "deep": (deep, X), "patch_ae": (patch_ae, images), "patch_pipe": (patch_pipe, X),
           "nested": (nested, X)}
    for est, rows in out.values():
        _quiet(lambda: est.fit(rows))
    return out


@pytest.mark.parametrize("name", ["every_transformer", "variants", "deep", "patch_ae",
                                  "patch_pipe", "nested"])
def test_composites_round_trip_bit_identically(models, tmp_path, name):
    est, X = models[name]
    path = tmp_path / "model.safetensors"
    io.save(est, path)
    again = load(path)
    assert type(again) is type(est)
    assert repr(again) == repr(est)
    assert again.get_params(deep=True).keys() == est.get_params(deep=True).keys()
    np.testing.assert_array_equal(again.score_samples(X), est.score_samples(X))
    np.testing.assert_array_equal(again.decision_function(X), est.decision_function(X))
    if isinstance(est, Pipeline):
        for (step_name, step), (other_name, other) in zip(est.steps, again.steps):
            assert step_name == other_name and type(step) is type(other)
            for attr, value in vars(step).items():  # same fitted values, types and dtypes
                if attr.endswith("_") and isinstance(value, (np.ndarray, np.generic)):
                    got = getattr(other, attr)
                    assert type(got) is type(value) and got.dtype == value.dtype, attr
                    np.testing.assert_array_equal(got, value)


def test_patchwise_detector_keeps_everything_it_scores_with(models, tmp_path):
    est, images = models["patch_ae"]
    est = _quiet(lambda: PatchwiseDetector(tiny_ae(), patch_size=4, stride=3).fit(images))
    est.calibrate(images[:12]).set_false_alarm_rate(0.2)
    path = tmp_path / "patches.safetensors"
    est.save(path)
    again = PatchwiseDetector.load(path, device="cpu")
    for method in ("patch_scores", "score_maps", "predict", "predict_pvalues"):
        np.testing.assert_array_equal(getattr(again, method)(images), getattr(est, method)(images))
    for a, b in zip(again.patch_starts_, est.patch_starts_):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert again.false_alarm_rate_ == est.false_alarm_rate_ and again.reference_held_out_
    assert again.sample_shape_ == est.sample_shape_ and again.offset_ == est.offset_
    assert type(again.estimator) is AutoencoderDetector and not hasattr(again.estimator, "net_")
    # the fitted clone can be refitted as the original can
    assert again.estimator_.get_params() == est.estimator_.get_params()


def test_feature_names_survive_in_a_pipeline(models, tmp_path):
    est, X = models["deep"]
    path = tmp_path / "pipe.safetensors"
    io.save(est, path)
    again = load(path, device="cpu")
    np.testing.assert_array_equal(again.feature_names_in_, X.columns)
    assert again.n_features_in_ == 12
    with pytest.raises(ValueError, match="feature names"):
        again.score_samples(X[X.columns[::-1]])


def test_a_composite_file_holds_prefixed_entries_and_no_pickle(models, tmp_path):
    path = tmp_path / "nested.safetensors"
    io.save(models["nested"][0], path)
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__")
    assert meta["class"] == "Pipeline" and json.loads(meta["steps"]) == ["pre", "patches"]
    assert meta["steps.1.class"] == "PatchwiseDetector"
    assert meta["steps.1.estimator_.steps.1.class"] == "AutoencoderDetector"
    assert "steps.1.estimator.steps.1.fitted" not in meta  # the template: parameters only
    assert any(k.startswith("steps.1.estimator_.steps.1.module.") for k in header)
    assert "steps.0.steps.1.fitted.components_" in header
    assert b"\x80\x04" not in raw[8:8 + n] and b"pickle" not in raw


def test_multi_aspect_detector_round_trips(tmp_path):
    rng = np.random.RandomState(0)
    X = _objects(rng, 48)
    for params in ({}, {"aspects": ("F", "location"), "aspect_weights": {"location": 0.5}}):
        det = _quiet(lambda: tiny_ams(epochs=1, n_jobs=1, **params).fit(X))
        det.save(tmp_path / "ams.safetensors")
        again = type(det).load(tmp_path / "ams.safetensors")
        assert again.get_params() == det.get_params()
        np.testing.assert_array_equal(again.score_samples(X), det.score_samples(X))
        terms, expected = again.score_components(X), det.score_components(X)
        assert set(terms) == set(expected)
        for key in expected:
            np.testing.assert_array_equal(terms[key], expected[key])
        assert set(again.participation_) == set(det.participation_)
        for aspect, value in det.participation_.items():
            assert again.participation_[aspect].dtype == value.dtype
            np.testing.assert_array_equal(again.participation_[aspect], value)


# ---------------------------------------------------------------- refused at save
def test_what_a_model_file_cannot_hold_is_refused_at_save(data, tmp_path):
    X, _ = data
    path = tmp_path / "refused.safetensors"
    kde = WhitenedKDE(n_components=2)
    cases = [
        (make_pipeline(FunctionTransformer(np.log1p), kde), TypeError,
         r"steps\.0: a FunctionTransformer holds an arbitrary function"),
        (make_pipeline(StandardScaler(), IsolationForest(random_state=0)), TypeError,
         r"IsolationForest is not one of sknovelty's own estimators, a Pipeline or"),
        (Pipeline([("pca-1", PCA(2)), ("kde", kde)]), ValueError,
         "'pca-1' is not a Python identifier"),
        (Pipeline([("skip", "passthrough"), ("kde", kde)]), TypeError,
         "model files store estimators only"),
        (PatchwiseDetector(IsolationForest(random_state=0), patch_size=4), TypeError,
         r"estimator: .*IsolationForest is not one of"),
    ]
    for est, error, pattern in cases:
        est.fit(X)
        with pytest.raises(error, match=pattern):
            io.save(est, path)
    cached = Pipeline([("std", StandardScaler()), ("kde", kde)], memory=str(tmp_path)).fit(X)
    with pytest.raises(TypeError, match="memory=.* cannot be stored"):
        io.save(cached, path)
    with pytest.raises(NotFittedError):
        io.save(make_pipeline(StandardScaler(), kde), path)
    with pytest.raises(NotFittedError):
        PatchwiseDetector(kde, patch_size=4).save(path)
    assert not path.exists()


def test_load_of_a_class_checks_what_the_file_holds(models, tmp_path):
    path = tmp_path / "pipe.safetensors"
    io.save(models["every_transformer"][0], path)
    with pytest.raises(TypeError, match="holds a Pipeline, not a PatchwiseDetector"):
        PatchwiseDetector.load(path)
