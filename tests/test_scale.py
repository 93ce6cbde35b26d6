"""Beyond one process: scoring data larger than memory, the scoring chunk and precision, and
searches on a Dask cluster."""

import pickle
import re
import tracemalloc
import warnings

import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal
from sklearn.model_selection import GridSearchCV

from sknovelty import _device, _scoring
from sknovelty._device import resolve_device
from sknovelty._scoring import STREAM_ROWS
from sknovelty.datasets import load_mnist_5k
from sknovelty.metrics import auroc_scorer
from sknovelty.registry import ESTIMATORS

from .conftest import assert_bfloat16_keeps_the_ranking, assert_same_scores_up_to_rounding, samples

DEEP = [name for name, entry in ESTIMATORS.items() if entry.deep]


@pytest.fixture(scope="module")
def mnist_ae():
    X, y = load_mnist_5k()
    return ESTIMATORS["AE"].tiny().fit(X[y == 0][:200]), X[:300]


def test_scoring_streams_a_memmap_with_bounded_memory(tmp_path, mnist_ae, monkeypatch):
    det, X = mnist_ae
    monkeypatch.setattr(_scoring, "STREAM_ROWS", 4096)  # blocks of 4,096 rows: a fast test
    n = 20_000  # MNIST-sized rows: 63 MB on disk (a sparse file: all but the first rows zero)
    path = tmp_path / "big.f32"
    big = np.memmap(path, dtype=np.float32, mode="w+", shape=(n, *X.shape[1:]))
    big[:len(X)] = X
    big.flush()
    del big
    big = np.memmap(path, dtype=np.float32, mode="r", shape=(n, *X.shape[1:]))
    tracemalloc.start()
    try:
        scores = det.score_samples(big)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # bound: an eighth of the array. Loading it whole costs at least a quarter (the
    # finiteness check's boolean copy; a float32 copy the whole); streamed, the boolean copy
    # of one block (a twentieth here) plus 8 bytes per row per score array
    peak_mb, whole_mb = peak / 1e6, big.nbytes / 1e6
    assert peak < big.nbytes / 8, f"peak {peak_mb:.1f} MB for a {whole_mb:.0f} MB array"
    assert scores.shape == (n,) and np.isfinite(scores).all()
    # ==: blocks are whole scoring chunks, so every row meets the same chunk neighbours (the
    # rows after len(X) are zeros, as the zero padding of X's last chunk)
    assert_array_equal(scores[:len(X)], det.score_samples(X))


def test_streamed_scoring_still_names_a_bad_row(mnist_ae):
    det, X = mnist_ae
    rows = np.zeros((STREAM_ROWS + 10, *X.shape[1:]), dtype=np.float32)
    rows[STREAM_ROWS + 3, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        det.score_samples(rows)


@pytest.mark.parametrize("name", DEEP)
def test_the_scoring_chunk_changes_no_score_beyond_rounding(name, digits, clips):
    X = samples(name, digits, clips, 70)
    det = ESTIMATORS[name].tiny(score_batch_size=7).fit(X)
    before = det.score_samples(X)
    for size in (1, 64, "auto"):
        # rtol 1e-5, atol 1e-5 of the score range: float32 kernels (GEMM, convolutions) block
        # rows differently for other chunk sizes (measured up to ~1e-6 relative); the
        # normalisation constants were fixed at fit, so only the raw terms can move
        after = det.set_params(score_batch_size=size).score_samples(X)
        assert_same_scores_up_to_rounding(det, X, after, before)
    # "auto" on the CPU: 256 rows of samples this small (images, object rows); clips of
    # 8 x 16 x 16 hold 2,048 values, so 256 * 784 // 2048 = 98 rows
    assert det._score_batch_size() == min(256, 256 * 784 // X[0].size)


def test_auto_scoring_chunk_follows_the_device_and_the_sample_size():
    det = ESTIMATORS["AE"].tiny(batch_size=16)
    for device, shape, rows in [("cuda:0", (1, 28, 28), 1024), ("cpu", (1, 28, 28), 256),
                                ("cpu", (5,), 256), ("cpu", (1, 16, 64, 64), 16),
                                ("cuda", (1, 16, 64, 64), 16), ("cuda", (3, 16, 256, 256), 16)]:
        det.device_, det.sample_shape_ = device, shape
        # the rows of 256 (CPU) or 1024 (CUDA) MNIST images' values, at most 256 / 1024 rows,
        # at least batch_size
        assert det._score_batch_size() == rows, (device, shape)
    det.set_params(score_batch_size=5)
    assert det._score_batch_size() == 5


@pytest.mark.parametrize("native", [True, False], ids=["native-bf16", "no-bf16"])
def test_bfloat16_falls_back_with_a_message_where_it_brings_nothing(digits, native, monkeypatch):
    # both branches on every machine: the CPU's own answer is replaced by each one in turn
    # (on a CPU without native kernels the "native" branch scores in emulated bfloat16)
    monkeypatch.setattr(_device, "bf16_native", lambda device: native)
    X = digits[0][:60]
    det = ESTIMATORS["AE"].tiny(precision="bfloat16")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        det.fit(X)
    precision_warnings = [w for w in caught if "bfloat16" in str(w.message)]
    if native:
        assert det.precision_ == "bfloat16" and not precision_warnings
        assert np.isfinite(det.score_samples(X)).all()
    else:
        assert len(precision_warnings) == 1
        assert re.search("neither AVX512-BF16 nor AMX.*float32", str(precision_warnings[0].message))
        assert det.precision_ == "float32"
        assert_array_equal(det.score_samples(X),
                           ESTIMATORS["AE"].tiny().fit(X).score_samples(X))


def test_bf16_native_reads_the_cpu_flags(monkeypatch):
    # the detection itself, for each kind of CPU, whatever this one is
    for flags, expected in [({"avx2"}, False), ({"avx2", "avx512_bf16"}, True),
                            ({"amx_bf16", "amx_tile"}, True), (set(), False)]:
        monkeypatch.setattr(_device, "_cpu_flags", lambda: frozenset(flags))
        assert _device.bf16_native("cpu") is expected


@pytest.mark.parametrize("name", DEEP)
def test_bfloat16_scoring_keeps_the_ranking(name, digits, clips):
    # bfloat16 forward passes (emulated where the CPU has no native kernels: the same
    # rounding, only slower); the terms are computed in float32 from float32 outputs
    X = samples(name, digits, clips, 80)
    det = ESTIMATORS[name].tiny().fit(X)
    exact, exact_terms = det.score_samples(X), det._streamed_components(X)
    det._emulate_bf16 = True
    det.set_params(precision="bfloat16")
    det.precision_ = det._resolve_precision()
    assert det.precision_ == "bfloat16"
    approx = det.score_samples(X)
    assert np.isfinite(approx).all() and approx.dtype == np.float64
    assert not np.array_equal(approx, exact)  # the forward pass did run in bfloat16
    assert_bfloat16_keeps_the_ranking(det, X, exact_terms, det._streamed_components(X))


def test_models_pickled_before_the_scoring_parameters_score_as_then(digits):
    X = digits[0][:60]
    det = ESTIMATORS["AE"].tiny(score_batch_size=16).fit(X)  # the tiny batch_size is 16
    state = dict(det.__getstate__())
    for key in ("score_batch_size", "precision", "precision_"):
        state.pop(key)
    old = type(det).__new__(type(det))
    old.__setstate__(state)
    assert (old.score_batch_size, old.precision, old.precision_) == (16, "float32", "float32")
    assert_array_equal(old.score_samples(X), det.score_samples(X))


def _tensors_outside_the_net(obj, path="model", seen=None):
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return [path]
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in _tensors_outside_the_net(v, f"{path}[{k!r}]", seen)]
    if isinstance(obj, (list, tuple)):
        return [p for i, v in enumerate(obj) for p in _tensors_outside_the_net(v, f"{path}[{i}]", seen)]
    return []


@pytest.mark.parametrize("name", DEEP)
def test_fitted_models_keep_tensors_only_in_the_skorch_net(name, digits, clips):
    # what comes back from a cluster worker is a pickle: device tensors live in net_ only,
    # which skorch pickles through CPU blobs (and maps to the CPU where CUDA is missing)
    X = samples(name, digits, clips, 60)
    det = ESTIMATORS[name].tiny().fit(X)
    outside = {k: v for k, v in vars(det).items() if k != "net_"}
    assert _tensors_outside_the_net(outside) == []
    assert_array_equal(pickle.loads(pickle.dumps(det)).score_samples(X), det.score_samples(X))


def test_auto_device_is_the_first_gpu_the_process_sees(monkeypatch):
    # a Dask worker started with CUDA_VISIBLE_DEVICES=<its GPU> sees that GPU as cuda:0;
    # "auto" then means "cuda", i.e. the current device of the worker's process
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"


def test_grid_search_on_a_dask_cluster_equals_the_local_search(digits):
    distributed = pytest.importorskip("distributed")
    from joblib import parallel_backend

    X, y = digits
    X, labels = X[:400], np.where(y[:400] == 0, 1, -1)
    # n_jobs=1: one torch thread per fit, here and on the workers, so the fits are the same
    base = ESTIMATORS["LSA"].tiny(n_jobs=1)
    grid = {"lam": [0.1, 1.0], "n_bins": [4, 8]}
    local = GridSearchCV(base, grid, cv=2, scoring=auroc_scorer, n_jobs=1).fit(X, labels)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster), parallel_backend("dask"):
        remote = GridSearchCV(base, grid, cv=2, scoring=auroc_scorer, n_jobs=-1).fit(X, labels)
    # ==: the same fits (same seed, one thread each, this CPU) give the same scores
    assert_array_equal(remote.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"])
    assert remote.best_params_ == local.best_params_
    assert_array_equal(remote.best_estimator_.score_samples(X), local.best_estimator_.score_samples(X))
