"""Learning tests on real digits: bounds that a broken model cannot reach."""

import numpy as np
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


SEEDS = (0, 1, 2)


def _lsa_aurocs(split, seed):
    X_train, X_test, y_test = split
    det = LatentAutoregressiveDetector(**{**SMALL, "random_state": seed}).fit(X_train)
    terms = det.score_components(X_test)
    return (auroc(y_test, det.score_samples(X_test)), auroc(y_test, -terms["rec"]),
            auroc(y_test, -terms["llk"]))


@pytest.fixture(scope="module")
def lsa_runs(split):
    return [_lsa_aurocs(split, seed) for seed in SEEDS]


@pytest.fixture(scope="module")
def non_autoregressive_runs(split):
    # control: if every CPD may see its own code value, the estimator can copy it, and the
    # LLK loses the information an autoregressive estimator extracts
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(autoregressive, "mfc_mask", lambda d, ci, co, mask_type:
                   autoregressive.torch.ones(d * co, d * ci, dtype=bool))
        return [_lsa_aurocs(split, seed) for seed in SEEDS]


def test_lsa_separates_a_held_out_digit(lsa_runs):
    # measured NS 0.98-0.995 and REC 0.986-0.997 over the seeds, with 1 and 2 threads on an
    # AMD EPYC; a model that learned nothing sits near 0.5
    for ns, rec, _ in lsa_runs:
        assert ns > 0.9 and rec > 0.9


def test_the_llk_beats_a_non_autoregressive_control(lsa_runs, non_autoregressive_runs):
    # the margin is measured here, on the same splits and seeds, instead of an absolute bound
    # tuned on one machine: LLK AUROC mean over 3 seeds 0.873 vs control 0.621 (2 threads),
    # 0.873 vs 0.679 (1 thread), AMD EPYC; the control is noisy per seed (0.44-0.78, and
    # 0.825 for seed 0 on an AVX-512 machine), hence the mean and a margin of 0.1
    llk = np.mean([run[2] for run in lsa_runs])
    control = np.mean([run[2] for run in non_autoregressive_runs])
    assert llk > 0.75, llk  # informative on its own: chance is 0.5
    assert llk - control >= 0.1, (llk, control)


@pytest.mark.parametrize("model", [
    AutoencoderDetector(latent_dim=16, epochs=30, batch_size=32, random_state=0, device="cpu"),
    WhitenedOneClassSVM(n_components=16), WhitenedKDE(n_components=16),
], ids=["ae", "ocsvm", "kde"])
def test_baselines_separate_a_held_out_digit(split, model):
    X_train, X_test, y_test = split
    X_train, X_test = (X_train.reshape(len(X_train), -1), X_test.reshape(len(X_test), -1)) \
        if not isinstance(model, AutoencoderDetector) else (X_train, X_test)
    # measured AUROC (AMD EPYC, 1 / 2 threads): AE 0.990 / 0.993, OC-SVM 0.992, KDE 0.994
    # (float64, thread-independent); chance is 0.5
    assert auroc(y_test, model.fit(X_train).score_samples(X_test)) > 0.9
