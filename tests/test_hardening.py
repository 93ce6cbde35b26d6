"""A fit that does not finish changes nothing; threads cannot change results; degenerate
training signals fail loudly (interrupts, concurrent fits, tiny scales, huge learning rates)."""

import json
import threading
import warnings

import numpy as np
import pytest
import torch
from joblib import parallel_backend
from numpy.testing import assert_array_equal
from sklearn.model_selection import StratifiedKFold, cross_validate

from sknovelty.exceptions import InputScaleWarning, TrainingDivergedError
from sknovelty.metrics import auroc_scorer
from sknovelty.registry import ESTIMATORS

from ._subprocess import run_python

DEEP = [name for name, entry in ESTIMATORS.items() if entry.deep]
VECTORS = [name for name, entry in ESTIMATORS.items() if "vectors" in entry.inputs]


# ---------------------------------------------------------------- interrupts
def test_an_interrupted_refit_keeps_the_fitted_model_and_the_interrupt_reaches_the_caller():
    """A real SIGINT, sent by the child process to itself in the middle of a refit (deep
    detectors: at the end of the refit's second epoch; the others: when they set offset_ from
    the scores they computed, the last step of every fit), for every registry entry.

    The child installs Python's own SIGINT handler first: a process started in the
    background by a non-interactive shell (``pytest ... &``) inherits SIGINT ignored, and a
    Ctrl-C that cannot arrive tests nothing (the deep refits would then train all 1,000
    epochs and return)."""
    out = run_python("""
        import json, os, signal, time, warnings
        signal.signal(signal.SIGINT, signal.default_int_handler)
        import numpy as np
        from skorch.callbacks import Callback
        from sknovelty.registry import ESTIMATORS
        from tests.conftest import object_rows
        warnings.simplefilter("ignore")

        class SigintAt(Callback):
            def __init__(self, epoch): self.epoch = epoch
            def on_epoch_end(self, net, **kwargs):
                if len(net.history) == self.epoch:
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(1)  # the interrupt arrives here at the latest

        rng = np.random.RandomState(0)
        data = {"vectors": rng.randn(64, 6).astype(np.float32),
                "clips": rng.rand(16, 1, 4, 8, 8).astype(np.float32),
                "objects": object_rows(64)}
        percentile = np.percentile

        def interrupted(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGINT); time.sleep(1)
            return percentile(*args, **kwargs)

        report = {}
        for name, entry in ESTIMATORS.items():
            X = next(data[kind] for kind in data if kind in entry.inputs)
            est = entry.tiny().fit(X)
            before = dict(vars(est))
            scores = est.score_samples(X)
            if entry.deep:
                est.set_params(epochs=1000, callbacks=[SigintAt(2)])
            else:
                np.percentile = interrupted
            try:
                est.fit(X[::-1].copy())
                outcome = "returned"
            except KeyboardInterrupt:
                outcome = "KeyboardInterrupt"
            finally:
                np.percentile = percentile
            same = {k: vars(est).get(k) is v for k, v in before.items()
                    if k not in ("epochs", "callbacks")}
            report[name] = dict(outcome=outcome, same=all(same.values()),
                                changed=[k for k, v in same.items() if not v],
                                extra=sorted(set(vars(est)) - set(before)),
                                scores=bool(np.array_equal(est.score_samples(X), scores)))
        print(json.dumps(report))
    """, timeout=600)
    report = json.loads(out.strip().splitlines()[-1])
    assert set(report) == set(ESTIMATORS)
    for name, row in report.items():
        assert row["outcome"] == "KeyboardInterrupt", name
        assert row["same"] and not row["extra"], (name, row)
        assert row["scores"], name


def test_a_diverging_refit_keeps_the_fitted_model():
    X = np.random.RandomState(0).randn(64, 6).astype(np.float32)
    est = ESTIMATORS["LSA"].tiny().fit(X)
    before, scores = dict(vars(est)), est.score_samples(X)
    with pytest.raises(TrainingDivergedError):
        est.set_params(learning_rate=1e30).fit(X)
    assert all(vars(est)[k] is v for k, v in before.items() if k != "learning_rate")
    assert_array_equal(est.score_samples(X), scores)


# ---------------------------------------------------------------- threads
def _images(n=120, seed=0):
    return np.random.RandomState(seed).rand(n, 1, 8, 8).astype(np.float32)


# estimators whose training draws random numbers (noise, masks, pseudo anomalies) and one
# whose training draws none (its initialisation still does)
THREADED = {"AE-noise": ("AE", {"noise_std": 0.2}), "CAE": ("CAE", {}),
            "LTG-gauss": ("LTG", {"noise": "gaussian"}), "LSA": ("LSA", {})}


@pytest.mark.parametrize("case", list(THREADED))
def test_fits_in_threads_equal_the_serial_fit(case):
    name, params = THREADED[case]
    X = _images()

    def fit():
        est = ESTIMATORS[name].tiny(n_jobs=1, epochs=3, **params).fit(X[:100])
        return est.score_samples(X[100:])

    serial = fit()
    results = [None, None]
    threads = [threading.Thread(target=lambda k=k: results.__setitem__(k, fit())) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got in results:
        assert_array_equal(got, serial)


def test_a_fit_in_another_thread_leaves_this_threads_generator_alone():
    """While a denoising autoencoder trains in a background thread (drawing noise every
    batch), the main thread's draws from torch's global generator are the undisturbed
    stream."""
    training = threading.Event()

    from skorch.callbacks import Callback

    class Started(Callback):
        def on_epoch_begin(self, net, **kwargs):
            training.set()

    est = ESTIMATORS["AE"].tiny(noise_std=0.2, epochs=40, callbacks=[Started()])
    background = threading.Thread(target=est.fit, args=(_images(),))
    background.start()
    assert training.wait(60)
    torch.manual_seed(1234)
    draws = []
    while background.is_alive():
        draws.append(torch.rand(1))
    background.join()
    assert len(draws) > 10  # the draws and the training did overlap
    torch.manual_seed(1234)
    expected = torch.rand(len(draws))
    assert torch.equal(torch.cat(draws), expected)


def test_cross_validate_on_threads_equals_serial():
    rng = np.random.RandomState(0)
    X = np.r_[rng.randn(90, 6), rng.randn(30, 6) + 2].astype(np.float32)
    y = np.r_[np.ones(90), -np.ones(30)]
    est = ESTIMATORS["LSA"].tiny(n_jobs=1, epochs=3)
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    serial = cross_validate(est, X, y, cv=cv, scoring=auroc_scorer, n_jobs=1)["test_score"]
    with parallel_backend("threading", n_jobs=3):
        threaded = cross_validate(est, X, y, cv=cv, scoring=auroc_scorer)["test_score"]
    assert np.isfinite(serial).all()
    assert_array_equal(threaded, serial)


def test_a_scoring_at_another_thread_count_waits_for_a_running_fit():
    X = _images()
    reference = ESTIMATORS["AE"].tiny(n_jobs=1, epochs=4).fit(X).score_samples(X)
    scorer = ESTIMATORS["AE"].tiny(n_jobs=2).fit(X)
    expected = scorer.score_samples(X)
    stop, got = threading.Event(), []

    def score_repeatedly():
        while not stop.is_set():
            got.append(scorer.score_samples(X))

    other = threading.Thread(target=score_repeatedly)
    other.start()
    try:
        fitted = ESTIMATORS["AE"].tiny(n_jobs=1, epochs=4).fit(X)
    finally:
        stop.set()
        other.join()
    assert_array_equal(fitted.score_samples(X), reference)
    for scores in got:
        assert_array_equal(scores, expected)


# ---------------------------------------------------------------- degenerate training
@pytest.mark.parametrize("name", VECTORS)
def test_inputs_too_small_for_float32_fail_loudly(name):
    """Rows of 1e-30: a detector that cannot tell them apart in float32 says so; one whose
    scores do not depend on the scale (the OC-SVM on whitened rows, the nearest neighbours'
    float64 distances) ranks them. Never a model that gives every row one score."""
    rng = np.random.RandomState(0)
    X = rng.randn(200, 10) * 1e-30
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputScaleWarning)
        try:
            det = ESTIMATORS[name].tiny().fit(X)
        except TrainingDivergedError as exc:
            assert "distinct score" in str(exc)
            return
    assert len(np.unique(det.score_samples(X))) > len(X) // 2


def test_tiny_input_scale_warns():
    X = np.random.RandomState(0).randn(200, 10) * 1e-10
    with pytest.warns(InputScaleWarning, match="StandardScaler"):
        with pytest.raises(TrainingDivergedError):
            ESTIMATORS["AE"].tiny(epochs=5).fit(X)


@pytest.mark.parametrize("name,lr", [("AE", 1e6), ("LSA", 1e6), ("LSA", 1e30)])
def test_a_huge_learning_rate_raises_training_diverged(name, lr):
    X = np.random.RandomState(0).randn(200, 10).astype(np.float32)
    with pytest.raises(TrainingDivergedError):
        ESTIMATORS[name].tiny(epochs=5, learning_rate=lr).fit(X)


def test_lsa_on_inputs_near_the_float32_limit_raises_training_diverged():
    X = np.random.RandomState(0).randn(64, 10).astype(np.float32) * 1e38
    with pytest.raises(TrainingDivergedError):
        ESTIMATORS["LSA"].tiny(epochs=2).fit(X)


# ---------------------------------------------------------------- pixel scale and layout
IMAGES = [name for name, entry in ESTIMATORS.items() if "images" in entry.inputs]


@pytest.fixture(scope="module")
def pixels():
    """scikit-learn's 8x8 digits 3 (normal) and 5 (novel) as uint8 pixels, 0-255 (small
    images: every registry entry fits them in about a second, a patchwise KDE too)."""
    from sknovelty.datasets import load_digits_images

    X, y = load_digits_images()
    uint8 = np.rint(X * 255).astype(np.uint8)
    return uint8[y == 3][:80], uint8[y == 5][:20]


@pytest.mark.parametrize("name", IMAGES)
def test_uint8_images_are_scaled_by_their_range(name, pixels):
    normal, novel = pixels
    X_test = np.r_[normal[60:], novel]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from_uint8 = ESTIMATORS[name].tiny().fit(normal[:60])
        from_float = ESTIMATORS[name].tiny().fit(normal[:60] / 255.0)
    # the same float32 values go in: the same model, the same scores
    if ESTIMATORS[name].deep:
        assert from_uint8.input_range_ == from_float.input_range_
    assert_array_equal(from_uint8.score_samples(X_test), from_float.score_samples(X_test / 255.0))
    # and uint8 rows are scaled at scoring too, whatever the model was fitted on
    assert_array_equal(from_float.score_samples(X_test), from_float.score_samples(X_test / 255.0))


@pytest.mark.parametrize("name", [n for n in IMAGES if ESTIMATORS[n].deep])
def test_scoring_far_outside_the_fitted_range_warns(name, pixels):
    from sknovelty.exceptions import InputRangeWarning

    normal, _ = pixels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det = ESTIMATORS[name].tiny().fit(normal[:60] / 255.0)
    with pytest.warns(InputRangeWarning, match="beyond that range"):
        det.score_samples(normal[60:].astype(np.float32))  # 0-255 as floats
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputRangeWarning)
        det.score_samples(normal[60:] / 255.0)


def test_signed_integer_images_are_refused_with_what_to_do(pixels):
    with pytest.raises(ValueError, match="uint8"):
        ESTIMATORS["AE"].tiny().fit(pixels[0].astype(np.int64))


@pytest.mark.parametrize("name", [n for n in IMAGES if ESTIMATORS[n].deep])
def test_channels_last_images_are_refused_with_the_transpose(name):
    X = np.random.RandomState(0).rand(40, 12, 12, 3).astype(np.float32)
    with pytest.raises(ValueError, match=r"channels-last.*transpose\(0, 3, 1, 2\)"):
        ESTIMATORS[name].tiny().fit(X)


def test_small_square_channels_first_samples_are_not_taken_for_channels_last():
    """Patches of feature maps (11 channels, 1 x 1 or 3 x 3 pixels, as PatchwiseDetector cuts
    them) end in an axis of 1 or 3, yet a channels-last image as wide as its channel count
    is no image: they are accepted, while 12 x 12 x 3 images are still refused."""
    from sknovelty import NearestNeighborDetector

    rng = np.random.RandomState(0)
    for shape in [(11, 1, 1), (11, 3, 3), (40, 4, 4)]:
        det = NearestNeighborDetector().fit(rng.rand(30, *shape).astype(np.float32))
        assert det.sample_shape_ == shape
    with pytest.raises(ValueError, match="channels-last"):
        NearestNeighborDetector().fit(rng.rand(30, 12, 12, 3).astype(np.float32))


def test_channels_last_clips_are_refused_and_image_shape_overrides():
    clips = np.random.RandomState(0).rand(12, 6, 8, 8, 1).astype(np.float32)
    with pytest.raises(ValueError, match=r"transpose\(0, 4, 1, 2, 3\)"):
        ESTIMATORS["AE"].tiny().fit(clips)
    X = np.random.RandomState(0).rand(40, 8, 8, 3).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det = ESTIMATORS["AE"].tiny(image_shape=(8, 8, 3)).fit(X)  # the user says so
    assert det.sample_shape_ == (8, 8, 3)


# ---------------------------------------------------------------- warnings
def test_every_warning_has_a_class_of_its_own():
    import sknovelty.exceptions as exc

    for name in exc.__all__:
        cls = getattr(exc, name)
        if issubclass(cls, Warning):
            assert issubclass(cls, exc.SknoveltyWarning) and issubclass(cls, UserWarning)


def test_the_simple_input_warning_needs_a_probe_clearly_below_chance():
    det = ESTIMATORS["AE"].tiny()
    # 3 standard errors of the AUROC of n against n rows under chance (Hanley-McNeil)
    for n, threshold in [(20, 0.5 - 3 * np.sqrt(41 / 4800)), (100, 0.5 - 3 * np.sqrt(201 / 120000))]:
        assert det._simple_input_threshold(n) == pytest.approx(threshold, rel=1e-12)
    assert 0.2 < det._simple_input_threshold(20) < 0.25 < 0.35 < det._simple_input_threshold(400)


def test_early_stopping_still_ends_training_without_an_interrupt():
    """skorch's callbacks stop training by raising KeyboardInterrupt themselves: that must
    still end the fit normally (only a real SIGINT reaches the caller)."""
    from skorch.callbacks import EarlyStopping

    X = np.random.RandomState(0).randn(64, 6).astype(np.float32)
    est = ESTIMATORS["AE"].tiny(epochs=200, callbacks=[EarlyStopping(patience=1, threshold=10)])
    est.fit(X)
    assert len(est.net_.history) < 200
