"""PatchwiseDetector: patches, aggregation, maps, and the meta-estimator contract."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from sknovelty import PatchwiseDetector, WhitenedKDE
from sknovelty.metrics import auroc, auroc_scorer
from sknovelty.patches import patch_starts

from .conftest import tiny_ae, tiny_oled


class MeanScorer:
    """A stub patch detector: the score of a patch is minus its mean (known by hand)."""

    def fit(self, X, y=None):
        self.shape_ = X.shape[1:]
        return self

    def score_samples(self, X):
        return -X.reshape(len(X), -1).mean(1)

    def get_params(self, deep=True):
        return {}

    def set_params(self, **params):
        return self


def test_patch_starts_cover_every_pixel():
    assert patch_starts(30, 30, 30).tolist() == [0]
    assert patch_starts(100, 30, 30).tolist() == [0, 30, 60, 70]
    assert patch_starts(10, 3, 2).tolist() == [0, 2, 4, 6, 7]
    with pytest.raises(ValueError, match="larger than the sample"):
        patch_starts(8, 9, 1)


def test_patches_are_the_slices_and_scores_aggregate_them():
    rng = np.random.RandomState(0)
    X = rng.uniform(size=(3, 2, 7, 9)).astype(np.float32)
    det = PatchwiseDetector(MeanScorer(), patch_size=4, stride=3).fit(X)
    rows, cols = det.patch_starts_
    assert rows.tolist() == [0, 3] and cols.tolist() == [0, 3, 5]
    expected = np.array([[[-X[k, :, r:r + 4, c:c + 4].mean() for c in cols] for r in rows]
                         for k in range(3)])
    # float32 means of the same values in another order: float32 rounding (~1e-7)
    np.testing.assert_allclose(det.patch_scores(X), expected, rtol=1e-6)
    np.testing.assert_allclose(det.score_samples(X), expected.reshape(3, -1).min(1), rtol=1e-6)
    mean = clone(det).set_params(aggregate="mean").fit(X)
    np.testing.assert_allclose(mean.score_samples(X), expected.reshape(3, -1).mean(1), rtol=1e-6)
    # maps: a pixel takes the largest novelty (minus score) of the patches over it
    maps = det.score_maps(X)
    assert maps.shape == (3, 1, 7, 9)
    assert maps[0, 0, 0, 0] == pytest.approx(-expected[0, 0, 0])        # one patch
    assert maps[0, 0, 3, 3] == pytest.approx(max(-expected[0, r, c] for r in (0, 1)
                                                 for c in (0, 1)))     # four patches
    # vectors: windows of consecutive features; flat rows with image_shape: the same images
    V = X.reshape(3, -1)[:, :10]
    vec = PatchwiseDetector(MeanScorer(), patch_size=4, stride=2).fit(V)
    np.testing.assert_allclose(vec.patch_scores(V)[:, 1], -V[:, 2:6].mean(1), rtol=1e-6)
    assert vec.score_maps(V).shape == V.shape
    flat = PatchwiseDetector(MeanScorer(), patch_size=4, stride=3,
                             image_shape=(2, 7, 9)).fit(X.reshape(3, -1))
    np.testing.assert_array_equal(flat.score_samples(X.reshape(3, -1)), det.score_samples(X))


def _textures(rng, n, size=16):
    """Smooth stripes with random phase: every patch looks alike."""
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1, 1))
    cols = np.arange(size)[None, None, None, :]
    X = 0.5 + 0.2 * np.sin(cols * 0.8 + phase) + 0.02 * rng.normal(size=(n, 1, size, size))
    return X.astype(np.float32)


def test_a_pasted_square_is_found_and_located():
    rng = np.random.RandomState(0)
    X = _textures(rng, 120)
    det = PatchwiseDetector(WhitenedKDE(n_components=6), patch_size=4, stride=2).fit(X)
    normal, odd = _textures(rng, 30), _textures(rng, 30)
    tops, lefts = rng.randint(0, 12, size=30), rng.randint(0, 12, size=30)
    for k, (t, c) in enumerate(zip(tops, lefts)):
        odd[k, 0, t:t + 4, c:c + 4] = 1.0
    y = np.r_[np.ones(30), -np.ones(30)]
    # measured 1.0: a bright square is far from every stripe patch; chance is 0.5
    assert auroc(y, det.score_samples(np.r_[normal, odd])) > 0.9
    # the most novel patch overlaps the square, so the map peaks inside it (measured: 30 of
    # 30); a map that ignored where the patches lie would peak there about 1 time in 5
    maps = det.score_maps(odd)[:, 0]
    peak_in_square = [maps[k, t:t + 4, c:c + 4].max() == maps[k].max()
                      for k, (t, c) in enumerate(zip(tops, lefts))]
    assert np.mean(peak_in_square) > 0.8


def test_meta_estimator_contract():
    rng = np.random.RandomState(0)
    X = _textures(rng, 40, size=8)
    det = PatchwiseDetector(WhitenedKDE(n_components=4), patch_size=4)
    params = det.get_params()
    assert params["estimator__n_components"] == 4 and params["patch_size"] == 4
    det.set_params(estimator__bandwidth=0.5)
    assert det.estimator.bandwidth == 0.5
    fitted = det.fit(X)
    assert fitted.estimator_ is not det.estimator          # a clone is fitted
    assert not hasattr(det.estimator, "pca_")
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.score_samples(X), fitted.score_samples(X))
    # a search over the wrapped detector's parameters, with the +1/-1 labels of cross-validation
    odd = X[:20].copy()
    odd[:, 0, :4, :4] = 1.0
    Xy, y = np.r_[X, odd], np.r_[np.ones(40), -np.ones(20)]
    search = GridSearchCV(PatchwiseDetector(WhitenedKDE(n_components=4), patch_size=4),
                          {"estimator__bandwidth": [0.5, 1.0]}, scoring=auroc_scorer,
                          cv=StratifiedKFold(2, shuffle=True, random_state=0))
    search.fit(Xy, y)
    assert set(search.cv_results_["param_estimator__bandwidth"]) == {0.5, 1.0}
    # every fold has both labels, so every fold is scored (a bright square: measured 1.0)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    with pytest.raises(ValueError, match="larger than the sample"):
        PatchwiseDetector(WhitenedKDE(), patch_size=9).fit(X)
    with pytest.raises(ValueError, match="fitted on samples of shape"):
        fitted.score_samples(X[:, :, :6, :6])


def test_deep_detectors_on_patches():
    """OLED on patches, as in its UCSD experiment (tiny networks), and an autoencoder."""
    rng = np.random.RandomState(0)
    X = _textures(rng, 24, size=16)
    for inner in (tiny_oled(), tiny_ae()):
        det = PatchwiseDetector(inner, patch_size=8).fit(X)
        assert det.estimator_.sample_shape_ == (1, 8, 8)
        assert det.score_samples(X[:3]).shape == (3,) and det.predict(X[:3]).shape == (3,)
        assert det.score_maps(X[:2]).shape == (2, 1, 16, 16)
