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


# ---------------------------------------------------------------- coreset memory bank
def test_greedy_coreset_is_farthest_first_and_within_twice_the_best_radius():
    """On small sets, by brute force: each choice is the row farthest from those chosen,
    the reported radii are the true ones, and the final radius is at most twice the best
    any ``m`` rows achieve (Gonzalez's bound)."""
    from itertools import combinations

    rng = np.random.RandomState(0)
    for trial in range(20):
        P = rng.normal(size=(9, 3)) * rng.uniform(0.1, 10)
        m = 1 + trial % 4
        chosen, sq_radius = neighbors_module.greedy_coreset(P, m, start=trial % 9)
        assert chosen[0] == trial % 9 and len(set(chosen)) == m and np.isinf(sq_radius[0])
        D = np.linalg.norm(P[:, None] - P[None], axis=2)
        for i in range(1, m):
            to_chosen = D[:, chosen[:i]].min(axis=1)
            # ties within rounding may go either way
            assert to_chosen[chosen[i]] >= to_chosen.max() * (1 - 1e-5)
            np.testing.assert_allclose(np.sqrt(sq_radius[i]), to_chosen[chosen[i]],
                                       rtol=1e-4, atol=1e-6 * D.max())
        final = D[:, chosen].min(axis=1).max()
        best = min(D[:, list(c)].min(axis=1).max() for c in combinations(range(9), m))
        assert final <= 2 * best * (1 + 1e-5) + 1e-6 * D.max()


def test_greedy_coreset_skips_only_rows_that_cannot_come_nearer():
    """The triangle-inequality shortcut changes no choice: on clustered rows (where it skips
    the most) the chosen rows and radii are those of the plain farthest-first loop."""
    rng = np.random.RandomState(4)
    P = rng.normal(size=(40, 16)).repeat(50, axis=0) + 0.2 * rng.normal(size=(2000, 16))
    chosen, sq_radius = neighbors_module.greedy_coreset(P, 150, start=7)
    nearest, plain, radii = np.full(len(P), np.inf), [7], [np.inf]
    for i in range(150):
        nearest = np.minimum(nearest, np.sqrt(((P - P[plain[-1]]) ** 2).sum(axis=1)))
        if i < 149:
            plain.append(int(np.argmax(nearest)))
            radii.append(nearest.max() ** 2)
    assert_array_equal(chosen, plain)
    # the same float64 differences, summed in another order: 1e-12 relative
    np.testing.assert_allclose(sq_radius, radii, rtol=1e-12)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_a_coreset_bank_moves_a_1nn_score_by_at_most_its_radius(metric):
    """With n_neighbors=1, the distance to the kept rows is at most the distance to the
    nearest training row plus ``coreset_radius_`` (triangle inequality), and at least it."""
    rng = np.random.RandomState(1)
    X = rng.normal(size=(600, 8)).astype(np.float32)
    Q = rng.normal(size=(50, 8)) * 1.5
    full = NearestNeighborDetector(n_neighbors=1, metric=metric, random_state=0).fit(X)
    core = NearestNeighborDetector(n_neighbors=1, metric=metric, max_samples=60,
                                   random_state=0).fit(X)
    assert len(core.model_.rows) == 60 and full.coreset_radius_ == 0.0
    # the radius is the largest distance of a training row to the bank, measured exactly
    kept = {r.tobytes() for r in core.model_.rows}
    assert all(r.tobytes() in {x.tobytes() for x in full.model_.rows} for r in core.model_.rows)
    to_bank = NearestNeighborDetector(n_neighbors=1, metric=metric, validation_fraction=0
                                      ).fit(core.model_.rows + 0)  # an index of the bank
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        others = np.array([r for r in full.model_.rows if r.tobytes() not in kept])
    radius = -to_bank.score_samples(others).min()
    if metric == "cosine":  # scores are (1 - cos) = |u - v|^2 / 2 between unit rows
        radius = math.sqrt(2 * radius)
    np.testing.assert_allclose(core.coreset_radius_, radius, rtol=1e-12)
    gap = full.score_samples(Q) - core.score_samples(Q)
    if metric == "cosine":  # compare distances |u - v|, not (1 - cos)
        gap = np.sqrt(-2 * core.score_samples(Q)) - np.sqrt(-2 * full.score_samples(Q))
    # float64 distances of float32 rows: 1e-12 is far above their rounding
    assert (gap >= -1e-12).all() and (gap <= core.coreset_radius_ + 1e-12).all()
    assert gap.max() > 0  # the bank is smaller, and it shows


def test_max_samples_sizes_the_bank_and_keeps_the_reference_in_sample_rules():
    rng = np.random.RandomState(2)
    X = rng.normal(size=(100, 5)).astype(np.float32)
    whole = NearestNeighborDetector(random_state=0).fit(X)
    for m in (90, 500, 1.0):  # 90 held-in rows after 10 held out: all kept, same as None
        same = NearestNeighborDetector(max_samples=m, random_state=0).fit(X)
        assert_array_equal(same.model_.rows, whole.model_.rows)
        assert same.coreset_radius_ == 0.0
    assert len(NearestNeighborDetector(max_samples=0.25, random_state=0).fit(X)
               .model_.rows) == math.ceil(0.25 * 90)
    # without a held-out part: each row against the kept rows other than itself
    det = _quiet(NearestNeighborDetector(n_neighbors=2, validation_fraction=0, max_samples=10,
                                         random_state=0).fit, X)
    bank = det.model_.rows.astype(np.float64)
    D = np.linalg.norm(X[:, None].astype(np.float64) - bank[None], axis=2)
    D[D == 0] = np.inf  # a kept row is not its own neighbour
    expected = np.sort(-np.sort(D, axis=1)[:, :2].mean(axis=1))
    np.testing.assert_allclose(det.reference_scores_, expected, rtol=1e-12)
    with pytest.raises(ValueError, match="max_samples=1 keeps 1 rows; n_neighbors=2"):
        NearestNeighborDetector(max_samples=1).fit(X)
    # a share too small for n_neighbors keeps the rows it needs (here 3 of 100, no held-out)
    small = _quiet(NearestNeighborDetector(n_neighbors=2, validation_fraction=0,
                                           max_samples=0.001, random_state=0).fit, X)
    assert len(small.model_.rows) == 3 and np.isfinite(small.reference_scores_).all()
    for bad in (0, -3, 0.0, 1.5):
        with pytest.raises(ValueError, match="max_samples"):
            NearestNeighborDetector(max_samples=bad).fit(X)


def test_a_coreset_detector_round_trips_and_old_files_load_with_radius_zero(tmp_path):
    rng = np.random.RandomState(3)
    X = rng.rand(300, 6).astype(np.float32)
    det = NearestNeighborDetector(max_samples=40, random_state=0).fit(X)
    det.save(tmp_path / "core.safetensors")
    again = load(tmp_path / "core.safetensors")
    assert again.coreset_radius_ == det.coreset_radius_ > 0
    assert_array_equal(again.score_samples(X), det.score_samples(X))
    # a bank larger than the size limit of other integer parameters still loads
    big = NearestNeighborDetector(max_samples=10_000, random_state=0).fit(X)
    big.save(tmp_path / "big.safetensors")
    assert load(tmp_path / "big.safetensors").max_samples == 10_000
    # a file written before max_samples has no coreset_radius_: every row was indexed
    del det.coreset_radius_
    det.save(tmp_path / "old.safetensors")
    assert load(tmp_path / "old.safetensors").coreset_radius_ == 0.0
