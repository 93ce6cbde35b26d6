"""The smaller items of issue 33 (item 8): aspect weights, PatchwiseDetector's shapes, the
flow's size check, streamed scoring of the whitened baselines, and their global RNG."""

import math
import tracemalloc

import numpy as np
import pytest
import torch
from sklearn.svm import OneClassSVM

from sknovelty import (FlowDensityDetector, PatchwiseDetector, WhitenedKDE,
                       WhitenedOneClassSVM, baselines)
from sknovelty.itae import _glow_training_bytes
from sknovelty.mmp_ams import MultiAspectDetector, pack_objects
from sknovelty.nn.flows import Glow


# ---------------------------------------------------------------- MultiAspectDetector weights
@pytest.fixture(scope="module")
def objects():
    rng = np.random.RandomState(0)
    crops = rng.uniform(size=(40, 1, 8, 8)).astype(np.float32)
    return pack_objects(crops, crops, crops[:, 0], rng.randint(2, size=40),
                        rng.uniform(size=(40, 4)), n_classes=2)


def _ams(**params):
    return MultiAspectDetector(crop_shape=(1, 8, 8), channels=(4, 8), latent_dim=8, state_dim=8,
                               state_layers=1, mask_grid=2, epochs=1, random_state=0,
                               device="cpu", **params)


@pytest.mark.parametrize("weights, match", [
    ({"F": float("nan")}, r"aspect_weights\['F'\] must be a finite number >= 0, got nan"),
    ({"O": float("inf")}, r"aspect_weights\['O'\] must be a finite number >= 0, got inf"),
    ({"C": -1.0}, r"aspect_weights\['C'\] must be a finite number >= 0"),
    ({"F": "1"}, r"aspect_weights\['F'\] must be a finite number"),
    ({"F": None}, r"aspect_weights\['F'\] must be a finite number"),
    ({"speed": 1.0}, r"aspect_weights names aspects not in aspects: 'speed' "
                     r"\(aspects: \('F', 'O', 'C', 'location'\)\)"),
    ({"F": 0, "O": 0, "C": 0, "location": 0.0}, "at least one aspect a positive weight"),
])
def test_aspect_weights_are_validated_at_fit(objects, weights, match):
    det = _ams(aspect_weights=weights)
    with pytest.raises(ValueError, match=match):
        det.fit(objects)
    assert not hasattr(det, "net_")


def test_aspect_weights_zero_for_some_aspects_still_fit(objects):
    det = _ams(aspects=("F", "location"), aspect_weights={"F": 0.0, "location": np.float32(2)})
    scores = det.fit(objects).score_samples(objects[:5])
    assert np.isfinite(scores).all()
    with pytest.raises(ValueError, match="at least one aspect a positive weight"):
        _ams(aspects=("F",), aspect_weights={"F": 0}).fit(objects)


# ---------------------------------------------------------------- PatchwiseDetector shapes
@pytest.fixture(scope="module")
def images():
    return np.random.RandomState(0).normal(0.5, 0.05, size=(30, 1, 16, 16)).astype(np.float32)


def _patchwise(**params):
    return PatchwiseDetector(WhitenedKDE(n_components=4), patch_size=8, **params)


def test_patchwise_takes_flat_rows_and_images_whichever_it_was_fitted_on(images):
    flat = images.reshape(len(images), -1)
    on_images = _patchwise().fit(images)
    on_rows = _patchwise(image_shape=(1, 16, 16)).fit(flat)
    expected = on_images.score_samples(images)
    for det in (on_images, on_rows):
        for X in (images, flat):  # "the fitted sample shape (or flat rows of as many values)"
            np.testing.assert_array_equal(det.score_samples(X), expected)
            assert det.patch_scores(X).shape == (30, 2, 2)
            assert det.score_maps(X).shape == (30, 1, 16, 16)


def test_patchwise_names_a_channel_mismatch(images):
    rgb = np.repeat(images, 3, axis=1)
    for det in (_patchwise().fit(images),
                _patchwise(image_shape=(1, 16, 16)).fit(images.reshape(30, -1))):
        with pytest.raises(ValueError, match=r"X has samples of shape \(3, 16, 16\) \(3 "
                                             r"channels\), but PatchwiseDetector was fitted on "
                                             r"samples of shape \(1, 16, 16\) \(1 channels\)$"):
            det.score_samples(rgb)
        with pytest.raises(ValueError, match=r"X has rows of 768 values, but PatchwiseDetector "
                                             r"was fitted on samples of shape \(1, 16, 16\) "
                                             r"\(256 values\)"):
            det.score_samples(rgb.reshape(30, -1))
        with pytest.raises(ValueError, match=r"X has samples of shape \(1, 16, 8\)"):
            det.score_samples(images[..., :8])
        with pytest.raises(ValueError, match="Expected 2D array"):
            det.score_samples(images[0, 0, 0])


def test_patchwise_image_shape_must_match_images_at_fit(images):
    with pytest.raises(ValueError, match=r"X has samples of shape \(1, 16, 16\), but "
                                         r"image_shape=\(4, 8, 8\)"):
        _patchwise(image_shape=(4, 8, 8)).fit(images)
    with pytest.raises(ValueError, match="image_shape must be"):
        _patchwise(image_shape=(256,)).fit(images.reshape(30, -1))
    with pytest.raises(ValueError, match=r"image_shape=\(1, 16, 16\) needs 256 columns, but X has 200"):
        _patchwise(image_shape=(1, 16, 16)).fit(images.reshape(30, -1)[:, :200])


def test_patchwise_on_vectors_keeps_the_column_check(images):
    det = _patchwise().fit(images.reshape(30, -1))
    with pytest.raises(ValueError, match="X has 200 features, but PatchwiseDetector is "
                                         "expecting 256 features"):
        det.score_samples(images.reshape(30, -1)[:, :200])


# ---------------------------------------------------------------- the flow's size
@pytest.mark.parametrize("shape, n_levels, n_steps, hidden", [
    ((7, 1, 1), 2, 3, 5), ((96, 1, 1), 2, 8, 64), ((2, 1, 1), 3, 2, 4),
    ((3, 17, 15), 3, 2, 6), ((1, 28, 28), 2, 8, 64), ((5, 1, 9), 2, 2, 3),
])
def test_glow_size_estimate_counts_the_built_network(shape, n_levels, n_steps, hidden):
    glow = Glow(shape, n_levels, n_steps, hidden)
    params = sum(p.numel() for p in glow.parameters())
    buffers = sum(b.numel() for b in glow.buffers())
    assert _glow_training_bytes(shape, n_levels, n_steps, hidden) == 4 * (4 * params + buffers)


def test_flow_refuses_a_network_too_large_before_allocating():
    X = np.zeros((10, 200_000), dtype=np.float32)
    X[:, :3] = np.random.RandomState(0).rand(10, 3)
    det = FlowDensityDetector(device="cpu", epochs=1, random_state=0)
    with pytest.raises(ValueError, match=r"200000 features would need about 18\.7 TiB .* "
                                         r"MAX_NETWORK_BYTES = 4 GiB\. Reduce the dimension "
                                         r"first \(e\.g\. make_pipeline\(PCA"):
        det.fit(X)
    assert not hasattr(det, "net_")
    # the limit is the estimate's: at the defaults, 2,737 features fit under it and 2,738 not
    assert _glow_training_bytes((2737, 1, 1), 2, 8, 64) <= FlowDensityDetector.MAX_NETWORK_BYTES
    assert _glow_training_bytes((2738, 1, 1), 2, 8, 64) > FlowDensityDetector.MAX_NETWORK_BYTES


def test_flow_size_limit_is_a_class_attribute(monkeypatch):
    X = np.random.RandomState(0).normal(size=(40, 4)).astype(np.float32)
    params = dict(n_steps=1, hidden_channels=4, epochs=1, dequantize=False, device="cpu",
                  random_state=0)
    needed = _glow_training_bytes((4, 1, 1), 2, 1, 4)
    monkeypatch.setattr(FlowDensityDetector, "MAX_NETWORK_BYTES", needed - 1)
    with pytest.raises(ValueError, match="would need about 0.0 GiB"):
        FlowDensityDetector(**params).fit(X)
    monkeypatch.setattr(FlowDensityDetector, "MAX_NETWORK_BYTES", needed)
    FlowDensityDetector(**params).fit(X)


# ---------------------------------------------------------------- whitened baselines
@pytest.fixture(scope="module")
def memmap(tmp_path_factory):
    path = tmp_path_factory.mktemp("memmap") / "X.npy"
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(12_000, 64))
    X[:] = np.random.RandomState(0).normal(size=X.shape)
    X.flush()
    del X
    return np.load(path, mmap_mode="r")


@pytest.mark.parametrize("cls", [WhitenedKDE, WhitenedOneClassSVM])
def test_whitened_scoring_streams_a_memmap(cls, memmap, monkeypatch):
    det = cls(n_components=8).fit(np.array(memmap[:300]))
    at_once = det.score_samples(np.array(memmap))  # 12,000 rows: one block at the default
    monkeypatch.setattr(baselines, "STREAM_ROWS", 1000)
    assert det._block_rows() == 1000
    tracemalloc.start()
    try:
        streamed = det.score_samples(memmap)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the float64 whitening and both scorers treat each row alone: blocks change a score by
    # float64 rounding at most (float32 X whitened in float32 differed by 1e-7 between blocks
    # of 1000 and all rows). Exact on AVX512 machines; on an AVX2-only AMD EPYC one row of
    # the uneven blocks below came out 1.7e-15 relative off (the BLAS kernel takes another
    # path for some rows of a block of another size): 1e-12 relative, far below a defect
    np.testing.assert_allclose(streamed, at_once, rtol=1e-12, atol=0)
    # read whole (before issue 33), the float32 copy, finiteness mask and whitening of all
    # 12,000 rows peaked at 1.25 times X's 2.9 MiB; in blocks of 1,000 rows, 0.24 times
    assert peak < memmap.nbytes / 2, f"peak {peak / 2 ** 20:.1f} MiB"
    # uneven blocks: 12,000 rows in 7 slices of 1714-1715, none of a few rows
    monkeypatch.setattr(baselines, "STREAM_ROWS", 1800)
    np.testing.assert_allclose(det.score_samples(memmap), at_once, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(det.predict(memmap), np.where(at_once >= det.offset_, 1, -1))


def test_whitened_block_rows_bound_the_values_per_block():
    det = WhitenedKDE(n_components=2).fit(np.random.RandomState(0).normal(size=(10, 1000)))
    assert det._block_rows() == 256 * baselines.STREAM_ROWS // 1000
    det.sample_shape_ = (3, 512, 512)
    assert det._block_rows() == 5
    det.sample_shape_ = (3, 4096, 4096)
    assert det._block_rows() == 4  # blocks of equal size hold 2 rows or more


def test_whitened_scoring_errors_are_those_of_one_block(memmap, monkeypatch):
    det = WhitenedKDE(n_components=8).fit(np.array(memmap[:300]))
    monkeypatch.setattr(baselines, "STREAM_ROWS", 1000)
    with pytest.raises(ValueError, match="X has 63 features"):
        det.score_samples(memmap[:, :63])
    X = np.array(memmap[:3000])
    X[2500, 3] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        det.score_samples(X)


@pytest.mark.parametrize("cls", [WhitenedOneClassSVM, WhitenedKDE])
def test_whitened_fit_leaves_numpy_global_rng_alone(cls):
    X = np.random.RandomState(0).normal(size=(80, 6))
    np.random.seed(123)
    before = np.random.get_state()
    torch_before = torch.get_rng_state()
    det = cls(n_components=4).fit(X)
    after = np.random.get_state()
    assert before[0] == after[0] and before[2:] == after[2:]
    np.testing.assert_array_equal(before[1], after[1])
    assert torch.equal(torch_before, torch.get_rng_state())
    if cls is WhitenedOneClassSVM:
        # the fixed libsvm seed changes nothing: the same model as OneClassSVM's own fit
        Z = det.pca_.transform(X)
        plain = OneClassSVM(nu=det.nu, gamma=det.gamma).fit(Z)
        np.testing.assert_array_equal(det.model_.score_samples(Z), plain.score_samples(Z))
        np.testing.assert_array_equal(det.model_.support_, plain.support_)
        assert math.isfinite(det.offset_)
