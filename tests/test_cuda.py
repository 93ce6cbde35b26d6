"""CUDA paths of every deep estimator: fit on the GPU, score, pickle, save there and load on the CPU.

These tests skip without CUDA (the CI machine has none); ``benchmarks/gpu_check.py`` runs the
same paths at default settings on a GPU machine and records timings.
"""

import pickle

import numpy as np
import pytest
import torch

from sknovelty import load

from sknovelty.registry import ESTIMATORS

from .conftest import (assert_bfloat16_keeps_the_ranking, assert_same_scores_up_to_rounding,
                       samples, tiny_ltg)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

DEEP = [name for name, entry in ESTIMATORS.items() if entry.deep]


@pytest.mark.parametrize("name", DEEP)
def test_cuda_fit_score_pickle_and_load_on_cpu(name, digits, clips, tmp_path):
    entry = ESTIMATORS[name]
    X_train = samples(name, digits, clips, 80, normal=True)
    X_test = samples(name, digits, clips, 40)
    det = entry.tiny(device="cuda").fit(X_train)
    assert det.device_.startswith("cuda")
    assert all(p.is_cuda for p in det.net_.module_.parameters())
    scores = det.score_samples(X_test)
    assert scores.dtype == np.float64 and np.isfinite(scores).all()
    # exact: the same weights on the same GPU with exact_cudnn's deterministic, non-TF32
    # kernels, so scoring again (and scoring an unpickled copy there) is the same computation
    np.testing.assert_array_equal(det.score_samples(X_test), scores)  # scoring changes nothing
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(det)).score_samples(X_test), scores)
    det.save(tmp_path / "gpu.pt")
    cpu = load(tmp_path / "gpu.pt", device="cpu")
    assert not any(p.is_cuda for p in cpu.net_.module_.parameters())
    cpu_scores = cpu.score_samples(X_test)
    # continuous scores agree to float32 rounding; discrete steps inside some scores (LSA's
    # bins, OLED's top-k mask, MMP's nearest prediction) may flip for a few rows
    close = np.isclose(cpu_scores, scores, rtol=1e-3, atol=1e-3 * np.ptp(scores))
    assert close.mean() >= 0.9


def test_cuda_and_cpu_fits_learn_the_same_thing(digits):
    """Same seed, same data: a CUDA fit and a CPU fit rank the test set alike."""
    from scipy.stats import spearmanr

    X, y = digits
    gpu = tiny_ltg(device="cuda", epochs=3).fit(X[y == 0])
    cpu = tiny_ltg(device="cpu", epochs=3).fit(X[y == 0])
    # different kernels make the two trainings drift apart from the first step, so only the
    # learned ranking can agree: a rank correlation, not a tolerance. Not measured on this
    # CPU-only machine: record the value the next time a GPU runs this
    assert spearmanr(gpu.score_samples(X[:200]), cpu.score_samples(X[:200]))[0] > 0.9


@pytest.mark.parametrize("name", DEEP)
def test_cuda_scores_in_bfloat16_and_in_large_chunks(name, digits, clips):
    entry = ESTIMATORS[name]
    X_train = samples(name, digits, clips, 80, normal=True)
    X_test = samples(name, digits, clips, 200)
    det = entry.tiny(device="cuda").fit(X_train)
    # "auto" on CUDA: 1024 rows of samples this small (images, object rows); clips of
    # 8 x 16 x 16 hold 2,048 values, so 1024 * 784 // 2048 = 392 rows
    assert det._score_batch_size() == min(1024, 1024 * 784 // X_test[0].size)
    exact = det.score_samples(X_test)
    # another chunk: float32 rounding only (kernels block rows differently), see test_scale
    small = det.set_params(score_batch_size=16).score_samples(X_test)
    assert_same_scores_up_to_rounding(det, X_test, small, exact)
    small_terms = det._streamed_components(X_test)
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    det.set_params(precision="bfloat16")
    det.precision_ = det._resolve_precision()  # what fit would resolve: native here
    assert det.precision_ == "bfloat16"
    fast = det.score_samples(X_test)
    assert np.isfinite(fast).all() and not np.array_equal(fast, small)
    # as for the CPU's emulated bfloat16 (test_scale)
    assert_bfloat16_keeps_the_ranking(det, X_test, small_terms, det._streamed_components(X_test))


@pytest.mark.parametrize("name", DEEP)
def test_cuda_pvalues_thresholds_and_maps_follow_the_model_to_the_cpu(name, digits, clips,
                                                                      tmp_path):
    entry = ESTIMATORS[name]
    X_train = samples(name, digits, clips, 80, normal=True)
    X_test = samples(name, digits, clips, 50)
    det = entry.tiny(device="cuda").fit(X_train)
    rate = max(0.3, 1.01 / (len(det.reference_scores_) + 1))  # ITAE: 2 reference clips
    det.set_false_alarm_rate(rate)
    det.save(tmp_path / "m.safetensors")
    cpu = load(tmp_path / "m.safetensors", device="cpu")
    np.testing.assert_array_equal(cpu.reference_scores_, det.reference_scores_)
    assert cpu.offset_ == det.offset_ and cpu.false_alarm_rate_ == rate
    # p-values count reference scores below a score: a rounding-size move of a score can
    # change the count by one where it lies within rounding of a reference score
    step = 1 / (len(det.reference_scores_) + 1)
    np.testing.assert_allclose(cpu.predict_pvalues(X_test), det.predict_pvalues(X_test),
                               atol=step + 1e-12)
    if hasattr(det, "score_maps"):
        maps = det.score_maps(X_test)
        assert maps.shape == X_test.shape and np.isfinite(maps).all()
        np.testing.assert_allclose(cpu.score_maps(X_test), maps, rtol=1e-4,
                                   atol=1e-5 * maps.max())
