import numpy as np
import pytest

from sknovelty import AutoencoderDetector, LatentAutoregressiveDetector

TINY_NET = dict(latent_dim=4, hidden_dim=8, conv_channels=(4, 8), epochs=2, batch_size=16,
                random_state=0, device="cpu")


def tiny_lsa(**kw):
    return LatentAutoregressiveDetector(**{**TINY_NET, "n_bins": 8, "estimator_channels": (4, 4), **kw})


def tiny_ae(**kw):
    return AutoencoderDetector(**{**TINY_NET, **kw})


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


TINY_MASKED = dict(channels=(4, 8), latent_dim=4, epochs=2, batch_size=16, random_state=0,
                   device="cpu")


def tiny_oled(**kw):
    from sknovelty import AdversarialMaskingDetector

    return AdversarialMaskingDetector(**{**TINY_MASKED, "mask_channels": (4,), **kw})


def tiny_cae(**kw):
    from sknovelty import ContextAutoencoderDetector

    return ContextAutoencoderDetector(**{**TINY_MASKED, **kw})


def tiny_mmp(**kw):
    from sknovelty import MaskedMultiPredictionDetector

    return MaskedMultiPredictionDetector(**{"n_predictions": 3, "channels": (4, 8), "latent_dim": 4,
                                            "state_dim": 4, "state_layers": 2, "patch_size": 2,
                                            "mask_ratio": 0.5, "epochs": 2, "batch_size": 16,
                                            "random_state": 0, "device": "cpu", **kw})


def tiny_ltg(**kw):
    from sknovelty import PseudoAnomalyDetector

    return PseudoAnomalyDetector(**{"width": 0.0625, "epochs": 2, "batch_size": 16,
                                    "random_state": 0, "device": "cpu", **kw})


def tiny_flow(**kw):
    from sknovelty import FlowDensityDetector

    return FlowDensityDetector(**{"n_levels": 2, "n_steps": 2, "hidden_channels": 8, "epochs": 2,
                                  "batch_size": 16, "random_state": 0, "device": "cpu", **kw})


def tiny_itae(**kw):
    from sknovelty import TwoPathFlowDetector

    return TwoPathFlowDetector(**{"width": 0.0625, "epochs": 2, "flow_epochs": 2, "n_steps": 1,
                                  "flow_hidden": 4, "batch_size": 4, "random_state": 0,
                                  "device": "cpu", **kw})


@pytest.fixture(scope="session")
def clips():
    """Small random clips (n, C, T, H, W) for the video estimators."""
    return np.random.RandomState(0).rand(20, 1, 8, 16, 16).astype(np.float32)
