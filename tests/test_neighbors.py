"""NearestNeighborDetector: scores by hand, the held-out reference, scores independent of
blocking, separation on MNIST-5k, and model files."""

import math
import warnings

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sknovelty import NearestNeighborDetector, io, load
from sknovelty import neighbors as neighbors_module
from sknovelty.metrics import auroc

#: four training points of the plane (the hand-computed examples below)
SQUARE = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [3.0, 0.0]])


def _quiet(fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # in-sample reference warnings
        return fn(*args)


# ---------------------------------------------------------------- scores by hand
@pytest.mark.parametrize("k, expected", [
    # (0, 2): distances 2, sqrt 5, 1, sqrt 13; (0.5, 0): 0.5, 0.5, sqrt 1.25, 2.5
    (1, [-1.0, -0.5]),
    (2, [-(1.0 + 2.0) / 2, -0.5]),
])
def test_scores_are_minus_the_mean_distance_to_the_k_nearest(k, expected):
    det = NearestNeighborDetector(n_neighbors=k, validation_fraction=0).fit(SQUARE)
    np.testing.assert_allclose(det.score_samples([[0.0, 2.0], [0.5, 0.0]]), expected, rtol=1e-15)
    # leave-one-out reference: each training point against the three others
    loo = {1: [-1.0, -1.0, -1.0, -2.0],
           2: [-1.0, -(1 + math.sqrt(2)) / 2, -(1 + math.sqrt(2)) / 2, -2.5]}[k]
    np.testing.assert_allclose(det.reference_scores_, np.sort(loo), rtol=1e-15)
    assert not det.reference_held_out_
    # a training point scored as a new sample is at distance 0 from itself
    assert det.score_samples(SQUARE[:1])[0] == -{1: 0.0, 2: 0.5}[k]


def test_cosine_distance_is_one_minus_the_cosine_similarity():
    # (1, 2): cosine 2 / sqrt 5 with (0, 3), 3 / sqrt 10 with (1, 1), the nearest
    det = NearestNeighborDetector(n_neighbors=1, metric="cosine", validation_fraction=0)
    det.fit(np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]]))
    np.testing.assert_allclose(det.score_samples([[5.0, 5.0], [1.0, 0.0], [1.0, 2.0]]),
                               [0.0, 0.0, -(1 - 3 / math.sqrt(10))], atol=1e-15)


def test_images_and_clips_are_flattened_and_uint8_pixels_scaled():
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, (30, 1, 6, 6)).astype(np.uint8)
    det = NearestNeighborDetector(random_state=0).fit(images)
    flat = NearestNeighborDetector(random_state=0).fit(images.reshape(30, -1) / 255.0)
    assert det.sample_shape_ == (1, 6, 6) and det.n_features_in_ == 1
    assert_array_equal(det.score_samples(images),
                       flat.score_samples(images.reshape(30, -1) / 255.0))
    clips = rng.rand(12, 1, 3, 4, 4).astype(np.float32)
    det = NearestNeighborDetector(n_neighbors=1, random_state=0).fit(clips)
    assert det.sample_shape_ == (1, 3, 4, 4) and det.score_samples(clips[:2]).shape == (2,)


def test_too_few_rows_is_a_clear_error_that_changes_nothing():
    det = NearestNeighborDetector(n_neighbors=3, random_state=0).fit(SQUARE)
    before = dict(vars(det))
    with pytest.raises(ValueError, match="needs at least 4 normal samples .* n_samples = 3"):
        det.fit(SQUARE[:3])
    with pytest.raises(ValueError, match="needs at least 4 normal samples .* n_samples = 3"):
        det.set_params(validation_fraction=0).fit(SQUARE[:3])
    assert {k: v for k, v in vars(det).items() if k != "validation_fraction"} == {
        k: v for k, v in before.items() if k != "validation_fraction"}
    assert all(vars(det)[k] is v for k, v in before.items() if k != "validation_fraction")


# ---------------------------------------------------------------- reference and p-values
def test_the_reference_is_held_out_and_the_pvalues_are_conformal():
    rng = np.random.RandomState(0)
    X = rng.randn(60, 5)
    y = np.where(np.arange(60) < 40, 1, -1)  # the last 20 rows are anomalies: not used
    det = NearestNeighborDetector(validation_fraction=0.25, random_state=3).fit(X, y)
    rows = det.model_.rows.astype(np.float64)
    assert len(rows) == 30 and det.reference_held_out_
    indexed = [i for i in range(40) if (np.float32(X[i]) == rows).all(axis=1).any()]
    held_out = sorted(set(range(40)) - set(indexed))
    assert len(indexed) == 30 and len(held_out) == 10
    assert_array_equal(det.reference_scores_, np.sort(det.score_samples(X[held_out])))
    assert det.offset_ == np.percentile(det.reference_scores_, 10)
    s = det.score_samples(X)
    expected = (1 + (det.reference_scores_[None, :] <= s[:, None]).sum(1)) / 11
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a held-out reference: no warning
        assert_array_equal(det.predict_pvalues(X), expected)
    # the split follows random_state
    same = NearestNeighborDetector(validation_fraction=0.25, random_state=3).fit(X, y)
    other = NearestNeighborDetector(validation_fraction=0.25, random_state=4).fit(X, y)
    assert_array_equal(same.model_.rows, det.model_.rows)
    assert not np.array_equal(other.model_.rows, det.model_.rows)


def test_an_in_sample_reference_warns():
    det = NearestNeighborDetector(validation_fraction=0).fit(SQUARE)
    with pytest.warns(UserWarning, match="p-values are too small"):
        det.predict_pvalues(SQUARE)


# ---------------------------------------------------------------- blocking
def test_scores_do_not_depend_on_blocks_threads_or_row_order(monkeypatch):
    rng = np.random.RandomState(0)
    X = rng.rand(300, 64).astype(np.float32)
    X[1] = X[0]  # an exact duplicate: distance 0, and ties
    Q = np.r_[rng.rand(200, 64).astype(np.float32), X[:20]]
    det = NearestNeighborDetector(n_neighbors=3, validation_fraction=0).fit(X)
    expected = det.score_samples(Q)
    # the exact distances: sum of squared differences, in float64
    direct = np.sqrt(((Q[:, None].astype(np.float64) - X[None].astype(np.float64)) ** 2).sum(-1))
    np.testing.assert_allclose(-np.sort(direct, axis=1)[:, :3].mean(1), expected,
                               rtol=1e-14, atol=0)
    assert expected[-20] == -np.sort(direct[-20])[:3].mean()  # the duplicate: 0 and 0 exactly
    alone = np.array([det.score_samples(Q[i:i + 1])[0] for i in range(len(Q))])
    assert_array_equal(alone, expected)
    assert_array_equal(det.set_params(n_jobs=1).score_samples(Q), expected)
    assert_array_equal(det.set_params(n_jobs=2).score_samples(Q), expected)
    monkeypatch.setattr(neighbors_module, "QUERY_VALUES", 64 * 7)  # distance blocks of 1 row
    monkeypatch.setattr(NearestNeighborDetector, "_block_rows", lambda self: 13)
    assert_array_equal(det.score_samples(Q), expected)
    monkeypatch.undo()
    shuffled = NearestNeighborDetector(n_neighbors=3, validation_fraction=0).fit(X[::-1])
    assert_array_equal(shuffled.score_samples(Q), expected)
    assert_array_equal(shuffled.reference_scores_, det.reference_scores_)


def test_a_memmap_is_scored_in_blocks_as_a_whole(tmp_path, monkeypatch):
    rng = np.random.RandomState(1)
    det = NearestNeighborDetector(random_state=0).fit(rng.rand(50, 16))
    Q = rng.rand(100, 16).astype(np.float32)
    expected = det.score_samples(Q)
    memmap = np.lib.format.open_memmap(tmp_path / "q.npy", mode="w+", dtype=np.float32,
                                       shape=Q.shape)
    memmap[:] = Q
    memmap.flush()
    seen = []
    score_block = NearestNeighborDetector._score_block
    monkeypatch.setattr(NearestNeighborDetector, "_block_rows", lambda self: 32)
    monkeypatch.setattr(NearestNeighborDetector, "_score_block",
                        lambda self, X: seen.append(len(X)) or score_block(self, X))
    assert_array_equal(det.score_samples(np.load(tmp_path / "q.npy", mmap_mode="r")), expected)
    assert seen == [25, 25, 25, 25]  # 4 blocks of at most 32 rows, of equal size


# ---------------------------------------------------------------- a real data set
def test_separates_a_held_out_mnist_class():
    from sknovelty.datasets import load_mnist_5k

    X, y = load_mnist_5k()
    ones = X[y == 1]
    novel = np.concatenate([X[y == d][:50] for d in range(10) if d != 1])
    X_test = np.r_[ones[400:], novel]
    labels = np.r_[np.ones(len(ones) - 400), -np.ones(len(novel))]
    det = NearestNeighborDetector(random_state=0).fit(ones[:400])
    result = auroc(labels, det.score_samples(X_test))
    control = auroc(labels, np.zeros(len(X_test)))  # a constant score: chance
    # the margin: 10 standard errors of the AUROC of these sample sizes at chance (Hanley and
    # McNeil 1982); measured: 0.993 against 0.5 here
    n1, n0 = len(ones) - 400, len(novel)
    margin = 10 * math.sqrt((n1 + n0 + 1) / (12 * n1 * n0))
    assert control == 0.5 and result > control + margin and result > 0.95, (result, margin)


# ---------------------------------------------------------------- model files
@pytest.mark.parametrize("params, shape", [({}, (40, 6)),
                                           ({"metric": "cosine", "n_neighbors": 3}, (40, 1, 4, 4)),
                                           ({"validation_fraction": 0}, (40, 6))])
def test_save_and_load_round_trip_bit_identically(tmp_path, params, shape):
    rng = np.random.RandomState(0)
    X = rng.rand(*shape).astype(np.float32)
    det = NearestNeighborDetector(random_state=0, **params).fit(X)
    _quiet(det.set_false_alarm_rate, 0.25)
    path = tmp_path / "knn.safetensors"
    det.save(path)
    Q = rng.rand(*shape)
    for other in (load(path), NearestNeighborDetector.load(path)):
        assert type(other) is NearestNeighborDetector and other.get_params() == det.get_params()
        assert_array_equal(other.score_samples(Q), det.score_samples(Q))
        assert_array_equal(other.reference_scores_, det.reference_scores_)
        assert other.reference_held_out_ == det.reference_held_out_
        assert other.offset_ == det.offset_ and other.false_alarm_rate_ == 0.25
        assert other.sample_shape_ == det.sample_shape_
        assert_array_equal(other.model_.rows, det.model_.rows)
        assert other.model_.rows.dtype == np.float32
        assert_array_equal(_quiet(other.predict_pvalues, Q), _quiet(det.predict_pvalues, Q))


def test_a_pipeline_with_the_detector_round_trips(tmp_path):
    rng = np.random.RandomState(0)
    X = rng.rand(40, 6)
    pipe = make_pipeline(StandardScaler(), NearestNeighborDetector(random_state=0)).fit(X)
    io.save(pipe, tmp_path / "pipe.safetensors")
    again = load(tmp_path / "pipe.safetensors")
    assert_array_equal(again.score_samples(X), pipe.score_samples(X))
