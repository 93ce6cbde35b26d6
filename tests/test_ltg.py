"""LTG: autoencoder trained with learned / Gaussian pseudo anomalies."""

import pickle

import numpy as np
import pytest
import torch

from sknovelty import PseudoAnomalyDetector, load
from sknovelty.ltg import (ImageAutoencoder, LTGLoss, LTGModule, LTGOutput, build_networks)
from sknovelty.metrics import auroc

from .conftest import tiny_ltg


# ---------------------------------------------------------------- networks
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 8, 8), (2, 17, 40)])
def test_image_networks_keep_the_shape(shape):
    f = ImageAutoencoder(shape, (4, 8, 8, 16), torch.nn.Sigmoid())
    g = ImageAutoencoder(shape, (4, 8, 8), torch.nn.Tanh())
    x = torch.rand(2, *shape)
    assert f(x).shape == x.shape and g(x).shape == x.shape
    assert (f(x) >= 0).all() and (g(x).abs() <= 1).all()


@pytest.mark.parametrize("shape", [(1, 16, 32, 32), (1, 8, 12, 20), (1, 5, 9, 9)])
def test_video_networks_keep_the_shape(shape):
    f, g, value_range = build_networks(shape, width=0.0625)
    x = torch.rand(2, *shape) * 2 - 1
    assert f(x).shape == x.shape and g(x).shape == x.shape
    assert value_range == (-1.0, 1.0)
    assert g(x).abs().max() <= 2 and g(x).abs().max() > 0  # 2 * tanh: noise in [-2, 2]
    # the paper's layer list: 4 conv + 4 transposed conv in F, 3 + 3 in G
    assert sum(isinstance(m, torch.nn.Conv3d) for m in f.modules()) == 4
    assert sum(isinstance(m, torch.nn.ConvTranspose3d) for m in g.modules()) == 3


# ---------------------------------------------------------------- losses and pseudo anomalies
def test_reconstructor_target_is_the_normal_input_for_pseudo_anomalies():
    torch.manual_seed(0)
    module = LTGModule((6,), (0.0, 1.0), noise="gaussian", p=1.0, sigma=0.3).train()
    x = torch.rand(5, 6)
    out = module(x)
    assert out.selected.all()
    # with p = 1 every row is replaced: the reconstruction is F(X^P), not F(X^N). Exact: F
    # applied again to the same values in the same shape, process and thread count
    torch.testing.assert_close(out.rec, module.reconstructor(out.pseudo), rtol=0, atol=0)
    assert not torch.allclose(out.rec, module.reconstructor(out.x))
    crit = LTGLoss()
    # F saw X^P but is scored against X^N (eq. 3); exact: the loss is this very expression
    torch.testing.assert_close(crit(out, x), (out.rec - out.x).square().mean(), rtol=0, atol=0)
    assert not torch.allclose(out.pseudo, out.x)
    # F's gradient with X^N as target differs from one with X^P as target
    g_n = torch.autograd.grad(crit(out, x), list(module.reconstructor.parameters()), retain_graph=True)
    g_p = torch.autograd.grad((out.rec - out.pseudo).square().mean(), list(module.reconstructor.parameters()))
    assert not torch.allclose(g_n[0], g_p[0])


def test_generator_loss_equals_eq7_by_hand():
    x = torch.tensor([[0.0, 0.5], [1.0, 1.0]])
    pseudo = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    rec = torch.tensor([[0.5, 1.0], [0.0, 0.0]])  # F(X^P) for both rows
    out = LTGOutput(x, rec, torch.tensor([True, True]), pseudo, pseudo - x)
    lam = 2.0
    # row 0: ||F - X^P||^2 / 2 = 0.125 ; ||dX||^2 / 2 = 0.125 -> 0.125 - 0.25
    # row 1: (1 + 0) / 2 = 0.5        ; (0 + 1) / 2 = 0.5    -> 0.5 - 1.0
    expected = ((0.125 - 2 * 0.125) + (0.5 - 2 * 0.5)) / 2
    # dyadic inputs: float32 computes these values exactly; rel=1e-6 is only a float32 margin
    assert LTGLoss(lam=lam).adversary_loss(out, x).item() == pytest.approx(expected, rel=1e-6)
    # F's loss compares with X^N: (0.25 + 0.25 + 1 + 1) / 4
    assert LTGLoss(lam=lam)(out, x).item() == pytest.approx(0.625, rel=1e-6)


@pytest.mark.parametrize("noise", ["learned", "gaussian"])
def test_clipping_keeps_pseudo_anomalies_in_range_and_delta_is_recomputed(noise):
    torch.manual_seed(0)
    module = LTGModule((1, 16, 16), (0.0, 1.0), noise=noise, p=1.0, sigma=3.0, width=0.125).train()
    x = torch.rand(4, 1, 16, 16)
    out = module(x)
    assert out.pseudo.min() >= 0 and out.pseudo.max() <= 1
    # exact: delta is recomputed by this very subtraction after clipping
    torch.testing.assert_close(out.delta, out.pseudo - out.x, rtol=0, atol=0)
    video = LTGModule((1, 4, 8, 8), (0.0, 1.0), noise=noise, p=1.0, sigma=3.0, width=0.0625).train()
    out = video(torch.rand(3, 1, 4, 8, 8))
    assert out.pseudo.min() >= -1 and out.pseudo.max() <= 1  # video range [-1, 1]


def test_each_sample_becomes_pseudo_anomalous_with_probability_p():
    torch.manual_seed(0)
    module = LTGModule((3,), (0.0, 1.0), noise="gaussian", p=0.3).train()
    shares = [module(torch.rand(200, 3)).selected.float().mean().item() for _ in range(20)]
    # 4000 Bernoulli(0.3) draws: standard error 0.007, so 0.03 is > 4 standard errors (no
    # float rounding involved); p ignored (0 or 1) or applied per batch would be far off
    assert np.mean(shares) == pytest.approx(0.3, abs=0.03)
    assert not module.eval()(torch.rand(10, 3)).selected.any()


# ---------------------------------------------------------------- estimator
def test_p_zero_equals_the_plain_autoencoder(digits):
    X, y = digits
    base = tiny_ltg(noise="none").fit(X[y == 0])
    p0 = tiny_ltg(noise="learned", p=0.0).fit(X[y == 0])
    g0 = tiny_ltg(noise="gaussian", p=0.0).fit(X[y == 0])
    # exact: with p = 0 no row is selected, so F runs the very ops of the plain autoencoder
    # (same seed, same batches, same initialisation); G's step gets a zero loss and F's
    # gradients an exact +0 (measured: identical with 1 and 2 threads)
    np.testing.assert_array_equal(p0.score_samples(X[:50]), base.score_samples(X[:50]))
    np.testing.assert_array_equal(g0.score_samples(X[:50]), base.score_samples(X[:50]))


def test_learned_noise_trains_both_players_and_records_curves(digits):
    X, y = digits
    det = tiny_ltg(epochs=3).fit(X[y == 0])
    h = det.net_.history
    for key in ("train_loss", "adversary_loss", "delta_sq"):
        assert len(h[:, key]) == 3
    pseudo = det.pseudo_anomalies(X[:10])
    assert pseudo.shape == (10, 1, 8, 8) and pseudo.min() >= 0 and pseudo.max() <= 1
    assert not np.allclose(pseudo, X[:10])
    with pytest.raises(ValueError, match="no pseudo anomalies"):
        tiny_ltg(noise="none").fit(X[y == 0]).pseudo_anomalies(X[:2])


def test_video_clips_score_the_ninth_frame():
    rng = np.random.RandomState(0)
    clips = rng.rand(24, 1, 16, 16, 16).astype(np.float32)
    det = tiny_ltg(batch_size=8).fit(clips)
    assert det.net_.criterion_.lam == 0.1  # lam="auto": the paper's video value
    comps = det.score_components(clips[:5])
    assert set(comps) == {"rec", "frame_rec", "psnr"}
    # frame_rec is the squared error of frame 9 (index 8) alone, in the [-1, 1] network range
    module = det.net_.module_
    with torch.no_grad():
        x = module.to_range(torch.from_numpy(clips[:5]))
        err = (module.reconstructor(x) - x).square()
    # 5 clips here, a chunk of 8 in scoring: the 3D convolutions may pick other kernels for
    # another batch size (exact here). Rounding is ~1e-6 relative on positive errors; frame 8
    # against another frame or the whole clip differs by > 1e-3 (next line)
    np.testing.assert_allclose(comps["frame_rec"], err[:, :, 8].mean((1, 2, 3)).numpy(), rtol=1e-4)
    assert not np.allclose(comps["frame_rec"], comps["rec"], rtol=1e-3)
    # float32 log10 in the model vs float64 here: measured 7e-8 relative
    np.testing.assert_allclose(comps["psnr"], 10 * np.log10(1 / comps["frame_rec"]), rtol=1e-5)
    # the novelty score is that frame's error, min-max scaled on the held-out clips: the same
    # float64 terms (same rows, same process) scaled in float64, ~1e-16 relative
    lo, hi = det.normalization_["frame_rec"]
    np.testing.assert_allclose(det.score_samples(clips[:5]), -(comps["frame_rec"] - lo) / (hi - lo),
                               rtol=1e-5)
    assert det.pseudo_anomalies(clips[:2]).shape == (2, 1, 16, 16, 16)
    with pytest.raises(ValueError, match="score_frame=8"):
        tiny_ltg().fit(clips[:, :, :8])
    assert tiny_ltg(score_frame=3).fit(clips[:, :, :8]).net_.criterion_.score_frame == 3


def test_lam_auto_takes_the_image_value_for_images(digits):
    X, y = digits
    assert tiny_ltg().fit(X[y == 0][:60]).net_.criterion_.lam == 5.0
    assert tiny_ltg(lam=0.7).fit(X[y == 0][:60]).net_.criterion_.lam == 0.7


@pytest.mark.parametrize("noise", ["learned", "gaussian", "none"])
def test_determinism_and_round_trips(noise, digits, tmp_path):
    X, y = digits
    det = tiny_ltg(noise=noise).fit(X[y == 1][:80])
    expected = det.score_samples(X[:40])
    # exact: the same seed runs the same computation in the same process and thread count,
    # and the round trips restore bit-identical weights
    np.testing.assert_array_equal(tiny_ltg(noise=noise).fit(X[y == 1][:80]).score_samples(X[:40]),
                                  expected)
    det.save(tmp_path / "m.pt")
    for other in (pickle.loads(pickle.dumps(det)), load(tmp_path / "m.pt")):
        np.testing.assert_array_equal(other.score_samples(X[:40]), expected)


def test_ltg_separates_a_held_out_digit(digits):
    X, y = digits
    train, test = X[y == 0][:150], np.r_[X[y == 0][150:], X[y != 0][::8]]
    labels = np.r_[np.ones((y == 0).sum() - 150), -np.ones(len(X[y != 0][::8]))]
    det = PseudoAnomalyDetector(width=0.25, epochs=30, batch_size=32, random_state=0,
                                device="cpu").fit(train)
    # measured AUROC 1.0 with 1 and 2 threads on an AMD EPYC; chance is 0.5
    assert auroc(labels, det.score_samples(test)) > 0.95


def test_gaussian_pseudo_anomalies_repeat_with_the_seed_and_leave_torch_rng_alone(digits):
    X, y = digits
    det = tiny_ltg(noise="gaussian", epochs=1).fit(X[y == 0][:40])
    state = torch.random.get_rng_state()
    first = det.pseudo_anomalies(X[:5])
    assert torch.equal(torch.random.get_rng_state(), state)
    np.testing.assert_array_equal(det.pseudo_anomalies(X[:5]), first)
    assert not np.array_equal(first, X[:5])  # noise was added
    other = det.set_params(random_state=1).pseudo_anomalies(X[:5])
    assert not np.array_equal(other, first)
