"""MMP-AMS: object rows, frames to objects, the aspects and their scores."""

import numpy as np
import pytest

from sknovelty import load
from sknovelty.metrics import auroc
from sknovelty.mmp_ams import (MultiAspectDetector, make_object_samples, object_to_frame_scores,
                               pack_objects, unpack_objects)

S = 16  # crop side


def _objects(rng, n, kind="normal"):
    """Squares that move 2 pixels right (class 0, left half of the frame); `kind` breaks one
    aspect: "F" the square moves 2 pixels left, "O" the flow is four times as strong, "C" the
    class is 1, "location" the box sits at the right edge."""
    crops, futures = (np.full((n, 1, S, S), 0.2, np.float32) for _ in range(2))
    flows = np.zeros((n, S, S), np.float32)
    left, top = rng.randint(4, 8, size=n), rng.randint(2, 7, size=n)
    step = -2 if kind == "F" else 2
    for k, (c, r) in enumerate(zip(left, top)):
        crops[k, 0, r:r + 7, c:c + 7] = 1.0
        futures[k, 0, r:r + 7, c + step:c + step + 7] = 1.0
        flows[k, r:r + 7, c:c + 7] = 1.0 if kind == "O" else 0.25
    classes = np.full(n, 1 if kind == "C" else 0)
    boxes = np.c_[rng.uniform(0.1, 0.4, n), rng.uniform(0.4, 0.6, n), np.full((n, 2), 0.1)]
    if kind == "location":
        boxes[:, 0] = 0.95
    return pack_objects(crops, futures, flows, classes, boxes, n_classes=2)


def _tiny(**params):
    settings = dict(crop_shape=(1, S, S), channels=(8, 16), latent_dim=16, state_dim=16,
                    state_layers=2, epochs=25, batch_size=32, random_state=0, device="cpu")
    return MultiAspectDetector(**{**settings, **params})


def test_rows_pack_and_unpack_exactly():
    rng = np.random.RandomState(0)
    crops, fut = rng.rand(3, 2, 4, 4), rng.rand(3, 2, 4, 4)
    flows, boxes = rng.rand(3, 4, 4), rng.rand(3, 4)
    X = pack_objects(crops, fut, flows, [0, 2, 1], boxes, n_classes=3)
    assert X.shape == (3, 2 * 32 + 16 + 3 + 4)
    parts = unpack_objects(X, (2, 4, 4), 3)
    np.testing.assert_array_equal(parts["crop"], crops.astype(np.float32))
    np.testing.assert_array_equal(parts["future"], fut.astype(np.float32))
    np.testing.assert_array_equal(parts["flow"][:, 0], flows.astype(np.float32))
    assert parts["cls"].argmax(1).tolist() == [0, 2, 1]
    with pytest.raises(ValueError, match="have 87 values"):
        unpack_objects(X[:, :-1], (2, 4, 4), 3)
    with pytest.raises(ValueError, match="classes must lie"):
        pack_objects(crops, fut, flows, [0, 3, 1], boxes, n_classes=3)


def test_object_samples_from_frames_and_boxes():
    rng = np.random.RandomState(0)
    frames = rng.rand(4, 40, 60).astype(np.float32)
    flow = np.zeros((3, 40, 60, 2), np.float32)
    flow[..., 0] = 3.0                                     # 3 pixels right everywhere
    boxes = [np.array([[10, 5, 26, 21]]), np.array([[0, 0, 16, 16], [30, 20, 46, 36]]),
             np.zeros((0, 4)), np.array([[1, 1, 17, 17]])]
    classes = [np.array([1]), np.array([0, 1]), np.array([], int), np.array([0])]
    samples = make_object_samples(frames, boxes, classes, n_classes=2, crop_size=16, flow=flow)
    # the last frame has no next frame: its objects give no row
    assert samples.frame_index.tolist() == [0, 1, 1]
    parts = unpack_objects(samples.X, (1, 16, 16), 2)
    # a 16-pixel box resized to 16 pixels is the box itself, at t and at t+1
    np.testing.assert_allclose(parts["crop"][0, 0], frames[0, 5:21, 10:26], atol=1e-6)
    np.testing.assert_allclose(parts["future"][2, 0], frames[2, 20:36, 30:46], atol=1e-6)
    assert samples.flow_scale == pytest.approx(3.0)
    np.testing.assert_allclose(parts["flow"], 1.0, atol=1e-6)
    np.testing.assert_allclose(parts["box"][0], [18 / 60, 13 / 40, 16 / 60, 16 / 40], atol=1e-6)
    with pytest.raises(ValueError, match="one entry per frame"):
        make_object_samples(frames, boxes[:2], classes, n_classes=2, flow=flow)


def test_farneback_flow_sees_the_motion():
    pytest.importorskip("cv2")
    frames = np.zeros((3, 48, 48), np.float32)
    for t in range(3):
        frames[t, 16:32, 8 + 3 * t:24 + 3 * t] = 1.0       # a square moving 3 pixels a frame
    boxes = [np.array([[6, 14, 30, 34]])] * 3
    classes = [np.array([0])] * 3
    samples = make_object_samples(frames, boxes, classes, n_classes=1, crop_size=16,
                                  flow_scale=1.0)
    flow = unpack_objects(samples.X, (1, 16, 16), 1)["flow"]
    # OpenCV's estimate of a 3-pixel shift on the square's edges (clipped at the scale 1):
    # the box holds motion, where a static video holds none
    still = make_object_samples(np.repeat(frames[:1], 3, 0), boxes, classes, n_classes=1,
                                crop_size=16, flow_scale=1.0)
    assert flow.max() == 1.0 and unpack_objects(still.X, (1, 16, 16), 1)["flow"].max() < 0.05


def test_frame_scores_take_the_most_novel_object():
    frames = object_to_frame_scores([0.5, -2.0, 1.0], [0, 0, 2], 4)
    np.testing.assert_array_equal(frames, [-2.0, 1.0, 1.0, 1.0])


def test_each_aspect_finds_its_own_anomaly(tmp_path):
    rng = np.random.RandomState(0)
    det = _tiny().fit(_objects(rng, 240))
    normal = _objects(rng, 40)
    found = {}
    for kind in ("F", "O", "C", "location"):
        X = np.r_[normal, _objects(rng, 40, kind)]
        y = np.r_[np.ones(40), -np.ones(40)]
        terms = det.score_components(X)
        found[kind] = auroc(y, -terms[kind])
        # the sum of four z-scores, one of them broken: measured 0.88 for "F" (the subtlest),
        # 1.0 for the others; chance is 0.5
        assert auroc(y, det.score_samples(X)) > 0.75, kind
    # each aspect's own error finds its anomaly: measured 0.99-1.0; chance is 0.5
    assert min(found.values()) > 0.9, found
    assert set(det.participation_) == {"F", "O", "C"}
    det.save(tmp_path / "ams.safetensors")
    again = load(tmp_path / "ams.safetensors")
    np.testing.assert_array_equal(again.score_samples(normal), det.score_samples(normal))


def test_aspects_can_be_left_out_and_weighted():
    rng = np.random.RandomState(0)
    X = _objects(rng, 60)
    det = _tiny(aspects=("F", "location"), aspect_weights={"location": 0.5}, epochs=2).fit(X)
    terms = det.score_components(X[:5])
    assert sorted(terms) == ["F", "location"]
    expected = -(det._normalized("F", terms["F"]) + 0.5 * det._normalized("location", terms["location"]))
    np.testing.assert_allclose(det.score_samples(X[:5]), expected)
    with pytest.raises(ValueError, match="subset of"):
        _tiny(aspects=("F", "Z")).fit(X)
    with pytest.raises(ValueError, match="not in aspects"):
        _tiny(aspects=("F",), aspect_weights={"O": 1.0}).fit(X)


# scikit-learn's checks that need no fit on random data: parametrize_with_checks cannot run
# the others, because a row of MultiAspectDetector has a layout fixed by crop_shape and
# n_classes (pack_objects) that the checks' random matrices do not have
API_CHECKS = ["check_no_attributes_set_in_init", "check_parameters_default_constructible",
              "check_get_params_invariance", "check_set_params", "check_estimator_repr",
              "check_estimator_cloneable", "check_mixin_order", "check_valid_tag_types",
              "check_do_not_raise_errors_in_init_or_set_params"]


@pytest.mark.parametrize("check", API_CHECKS)
def test_scikit_learn_api_checks(check):
    from sklearn.utils import estimator_checks
    getattr(estimator_checks, check)("MultiAspectDetector", _tiny())


def test_the_contract_on_object_rows():
    import pickle

    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    from sknovelty.metrics import auroc_scorer

    rng = np.random.RandomState(0)
    X = _objects(rng, 60)
    det = _tiny(epochs=2).fit(X)
    assert det.n_features_in_ == X.shape[1] and not hasattr(clone(det), "net_")
    before = det.score_samples(X[:8])
    det.decision_function(X), det.predict(X), det.score_components(X)
    # scoring changes nothing, and a pickled copy scores the same
    np.testing.assert_array_equal(det.score_samples(X[:8]), before)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(det)).score_samples(X[:8]), before)
    # bad rows: a clear error, never NaN scores, and the fitted model is untouched
    bad = X[:4].copy()
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN|infinity"):
        det.score_samples(bad)
    with pytest.raises(ValueError, match="features"):
        det.score_samples(X[:4, :-1])
    with pytest.raises(ValueError, match="NaN|infinity"):
        det.fit(bad)
    np.testing.assert_array_equal(det.score_samples(X[:8]), before)
    # a search over an inner hyperparameter, scored on labelled rows
    y = np.r_[np.ones(30), -np.ones(30)]
    Xy = np.r_[X[:30], _objects(rng, 30, "location")]
    search = GridSearchCV(_tiny(epochs=1), {"aspect_weights": [None, {"location": 2.0}]},
                          scoring=auroc_scorer, cv=StratifiedKFold(2)).fit(Xy, y)
    assert search.best_params_["aspect_weights"] in (None, {"location": 2.0})
