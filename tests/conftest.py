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


# tiny_<name>(**params): the estimator at the registry's tiny configuration (small networks,
# 2 epochs, CPU, seed 0), ``params`` overriding it
def _tiny(name):
    def factory(**params):
        return ESTIMATORS[name].tiny(**params)

    factory.__name__ = factory.__qualname__ = "tiny_" + name.lower().replace("-", "")
    return factory


tiny_lsa, tiny_ae, tiny_oled, tiny_cae = _tiny("LSA"), _tiny("AE"), _tiny("OLED"), _tiny("CAE")
tiny_mmp, tiny_ltg, tiny_flow, tiny_itae = _tiny("MMP"), _tiny("LTG"), _tiny("Flow"), _tiny("ITAE")
tiny_ocsvm, tiny_kde = _tiny("OC-SVM"), _tiny("KDE")


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


#: Every registered estimator as ``pytest.param(factory, training data kind, id=...)``, for
#: the promises all of them keep: "images" are ``digits`` images (n, 1, 8, 8), "clips" the
#: ``clips`` fixture (n, 1, 8, 16, 16), for estimators that take clips only. The whitened
#: baselines flatten whatever they get.
ESTIMATOR_FACTORIES = [
    pytest.param(_tiny(name), "images" if "images" in entry.inputs else "clips",
                 id=name.lower().replace("-", ""))
    for name, entry in ESTIMATORS.items()
]


@pytest.fixture(scope="session", params=list(ESTIMATORS))
def every_fitted(request, digits, clips):
    """``(name, fitted estimator, X_train, X_test)`` for each registered estimator at its tiny
    configuration, fitted once per session (on digit 0: 60 images, flattened for the whitened
    baselines; ITAE on ``clips``). Tests that change the model work on a copy."""
    name = request.param
    if "images" not in ESTIMATORS[name].inputs:
        X_train, X_test = clips, clips[:4]  # ITAE scores slowly: a few clips are enough
    else:
        X, y = digits
        if not ESTIMATORS[name].deep:
            X = X.reshape(len(X), -1)
        X_train, X_test = X[y == 0][:60], X[:30]
    return name, ESTIMATORS[name].tiny().fit(X_train), X_train, X_test


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
