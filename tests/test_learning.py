"""Learning tests on real digits: bounds that a broken model cannot reach."""

import pytest

import sknovelty.nn.autoregressive as autoregressive
from sknovelty import AutoencoderDetector, LatentAutoregressiveDetector, WhitenedKDE, WhitenedOneClassSVM
from sknovelty.datasets import one_class_split
from sknovelty.metrics import auroc

SMALL = dict(latent_dim=64, estimator_channels=(8, 8), n_bins=100, epochs=30, batch_size=32,
             random_state=0, device="cpu")


@pytest.fixture(scope="module")
def split(digits):
    X, y = digits
    return one_class_split(X, y, normal_class=3, test_size=0.3, random_state=0)


def _lsa_aurocs(split):
    X_train, X_test, y_test = split
    det = LatentAutoregressiveDetector(**SMALL).fit(X_train)
    terms = det.score_components(X_test)
    return (auroc(y_test, det.score_samples(X_test)), auroc(y_test, -terms["rec"]),
            auroc(y_test, -terms["llk"]))


def test_lsa_separates_a_held_out_digit_and_its_llk_is_informative(split):
    ns, rec, llk = _lsa_aurocs(split)
    # measured: NS 0.984, REC 0.98, LLK 0.863 (chance is 0.5)
    assert ns > 0.95 and rec > 0.95
    assert llk > 0.8


def test_the_llk_bound_catches_a_non_autoregressive_estimator(split, monkeypatch):
    # control: if every CPD may see its own code value, the estimator copies it and the LLK
    # stops ranking anomalies, so the bound in the test above fails
    monkeypatch.setattr(autoregressive, "mfc_mask",
                        lambda d, ci, co, mask_type: autoregressive.torch.ones(d * co, d * ci, dtype=bool))
    _, _, llk = _lsa_aurocs(split)
    assert llk < 0.8


@pytest.mark.parametrize("model", [
    AutoencoderDetector(latent_dim=16, epochs=30, batch_size=32, random_state=0, device="cpu"),
    WhitenedOneClassSVM(n_components=16), WhitenedKDE(n_components=16),
], ids=["ae", "ocsvm", "kde"])
def test_baselines_separate_a_held_out_digit(split, model):
    X_train, X_test, y_test = split
    X_train, X_test = (X_train.reshape(len(X_train), -1), X_test.reshape(len(X_test), -1)) \
        if not isinstance(model, AutoencoderDetector) else (X_train, X_test)
    assert auroc(y_test, model.fit(X_train).score_samples(X_test)) > 0.9
