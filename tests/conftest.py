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
