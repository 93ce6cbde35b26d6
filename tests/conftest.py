import os

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from sknovelty.registry import ESTIMATORS

# SKNOVELTY_TEST_THREADS=1 runs the suite with one torch thread and one BLAS thread: results
# of float32 kernels depend on the thread count, so CI runs the suite a second time this
# way as a cheap stand-in for another machine (see .ci/run).
_THREADS = os.environ.get("SKNOVELTY_TEST_THREADS")
if _THREADS:
    torch.set_num_threads(int(_THREADS))
    threadpool_limits(int(_THREADS))


def _test_id(name):
    """A registry name as a test id and in ``tiny_<id>``: "OC-SVM" -> "ocsvm"."""
    return name.lower().replace("-", "")


# tiny_<id>(**params) for every registry entry (tiny_lsa, tiny_ae, tiny_ocsvm, ...): the
# estimator at the registry's tiny configuration (small networks, 2 epochs, CPU, seed 0),
# ``params`` overriding it
def _tiny(name):
    def factory(**params):
        return ESTIMATORS[name].tiny(**params)

    factory.__name__ = factory.__qualname__ = "tiny_" + _test_id(name)
    return factory


globals().update({"tiny_" + _test_id(name): _tiny(name) for name in ESTIMATORS})


def object_rows(n=60, seed=0, novel=False):
    """``n`` object rows for the detectors whose ``inputs`` are ``"objects"``: the layout of
    :func:`sknovelty.mmp_ams.pack_objects` at the registry's tiny configuration (8 x 8 grey
    crops, 2 classes). Crops are digits (0, or 1 with ``novel``), their future the same
    digit a pixel to the right, their flow the difference, classes and boxes drawn at random."""
    from sknovelty.datasets import load_digits_images
    from sknovelty.mmp_ams import pack_objects

    X, y = load_digits_images()
    rng = np.random.RandomState(seed)
    crops = X[y == int(novel)][rng.randint(0, (y == int(novel)).sum(), size=n)]
    futures = np.roll(crops, 1, axis=-1)
    flows = np.abs(futures - crops)[:, 0]
    return pack_objects(crops, futures, flows, rng.randint(2, size=n), rng.uniform(size=(n, 4)),
                        n_classes=2)


def samples(name, digits, clips, n=60, normal=False):
    """Samples that registry entry ``name`` takes: ``n`` ``digits`` images (n, 1, 8, 8) if
    it takes images, else the ``clips`` fixture (all 20: clip models fit slowly), else ``n``
    object rows (``object_rows``). ``normal``: of digit 0 only (else the first ``n`` of all
    digits; object rows of digits 0 and 1)."""
    inputs = ESTIMATORS[name].inputs
    if "images" in inputs:
        X, y = digits
        return X[y == 0][:n] if normal else X[:n]
    if "clips" in inputs:
        return clips
    if "objects" in inputs:
        return object_rows(n) if normal else np.r_[object_rows(n // 2, seed=1),
                                                   object_rows(n - n // 2, seed=1, novel=True)]
    raise AssertionError(f"no test samples for {name}'s inputs {inputs}")


@pytest.fixture(scope="session")
def digits():
    from sknovelty.datasets import load_digits_images

    return load_digits_images()


@pytest.fixture(scope="session")
def blobs():
    rng = np.random.RandomState(0)
    return rng.normal(size=(120, 5)).astype(np.float32)


@pytest.fixture(scope="session")
def fitted_lsa(blobs):
    return tiny_lsa(epochs=3).fit(blobs)


@pytest.fixture(scope="session")
def clips():
    """Small random clips (n, C, T, H, W) for the video estimators."""
    return np.random.RandomState(0).rand(20, 1, 8, 16, 16).astype(np.float32)


def _kind(entry):
    """The kind of samples the generic tests give an entry: images where it takes them, else
    its first kind (clips, object rows)."""
    return "images" if "images" in entry.inputs else entry.inputs[0]


#: Every registered estimator as ``pytest.param(factory, training data kind, id=...)``, for
#: the promises all of them keep: "images" are ``digits`` images (n, 1, 8, 8), "clips" the
#: ``clips`` fixture (n, 1, 8, 16, 16), for estimators that take clips only, "objects" the
#: rows of ``object_rows``. The whitened baselines flatten whatever they get.
ESTIMATOR_FACTORIES = [pytest.param(_tiny(name), _kind(entry), id=_test_id(name))
                       for name, entry in ESTIMATORS.items()]


@pytest.fixture(scope="session", params=list(ESTIMATORS))
def every_fitted(request, digits, clips):
    """``(name, fitted estimator, X_train, X_test)`` for each registered estimator at its tiny
    configuration, fitted once per session (on digit 0: 60 images, flattened for the
    estimators without a network; ITAE on ``clips``; MMP-AMS on 60 ``object_rows``). Tests
    that change the model work on a copy."""
    name = request.param
    entry = ESTIMATORS[name]
    kind = _kind(entry)
    if kind == "clips":
        X_train, X_test = clips, clips[:4]  # ITAE scores slowly: a few clips are enough
    elif kind == "objects":
        X_train = samples(name, digits, clips, 60, normal=True)
        X_test = samples(name, digits, clips, 30)
    else:
        X, y = digits
        if not entry.deep:
            X = X.reshape(len(X), -1)
        X_train, X_test = X[y == 0][:60], X[:30]
    return name, entry.tiny().fit(X_train), X_train, X_test


def assert_same_scores_up_to_rounding(det, X, got, expected):
    """Scores of the same fitted ``det`` computed two ways (another scoring chunk, another
    device), equal up to float32 rounding of the raw novelty terms.

    GEMM and convolution kernels block rows differently per chunk size: a raw term moves by up
    to ~1e-6 of its magnitude (measured), allowed here up to 1e-5. The normalisation divides a
    term by its held-out range (or std), which amplifies that rounding when the range is tiny
    next to the term itself: a 2-epoch LSA on an H200 had an LLK of 7.6954 +- 0.0001 nats on
    its held-out rows, so a rounding of 5e-7 nats moved scores by 0.0023. So each score may
    move by 1e-5 of the score range plus, per term, 1e-5 of the term's magnitude over its
    normalisation scale.
    """
    tol = 1e-5 * np.ptp(expected)
    weight = max(1.0, float(getattr(det, "lambda_l", 1.0)))  # ITAE weighs its NLL term
    for name in det._novelty_terms:
        magnitude = max(abs(v) for v in det.normalization_[name])
        tol += 1e-5 * weight * magnitude / det._scale(name)
    bad = np.abs(got - expected) > tol + 1e-5 * np.abs(expected)
    assert not bad.any(), (f"{bad.sum()} of {len(bad)} scores differ by more than rounding "
                           f"({tol:.2g}): {got[bad][:5]} vs {expected[bad][:5]}")


def assert_bfloat16_keeps_the_ranking(det, X, exact, approx):
    """``approx``: the raw novelty terms of ``X`` scored in bfloat16, ``exact`` in float32.

    bfloat16 keeps 8 bits of mantissa (~0.4% per value, compounded through the layers). A term
    that varies over X by more than 2% of its magnitude must keep its ranking (rank
    correlation > 0.8: the ranking is what AUROC reads). A term that varies less carries
    nothing bfloat16 can resolve (a 2-epoch LSA's LLK on an H200: a spread of 0.001 nats on
    7.7, which bfloat16 scrambled to a rank correlation of 0.18); it must stay within 5% of
    its magnitude.
    """
    for name in det._novelty_terms:
        a, b = exact[name], approx[name]
        assert np.isfinite(b).all()
        magnitude, spread = np.abs(a).max(), np.ptp(a)
        if spread > 0.02 * magnitude:
            rank = np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1]
            assert rank > 0.8, (name, rank)
        else:
            assert np.abs(a - b).max() <= 0.05 * magnitude, (name, np.abs(a - b).max(), magnitude)
