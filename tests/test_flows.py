"""Glow: invertibility, log-determinants against autograd, and the density detector."""

import pickle

import numpy as np
import pytest
import torch

from sknovelty import load
from sknovelty.metrics import auroc
from sknovelty.nn.flows import (ActNorm, AffineCoupling, FlowStep, Glow, InvertibleConv1x1,
                                squeeze, unsqueeze)

from .conftest import tiny_flow


def _warm(layer, x):
    """Run once in training mode (ActNorm's data-dependent init), then perturb all parameters
    so that no layer is the identity."""
    layer.train()
    layer(x)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return layer.eval()


def _autograd_logdet(fn, x):
    """log |det d fn(x) / dx| per sample via the full Jacobian (tiny inputs only)."""
    out = []
    for xi in x:
        jac = torch.autograd.functional.jacobian(lambda v: fn(v.unsqueeze(0))[0].flatten(), xi)
        out.append(torch.linalg.slogdet(jac.reshape(xi.numel(), xi.numel()).double())[1])
    return torch.stack(out)


@pytest.mark.parametrize("make", [
    lambda: ActNorm(4), lambda: InvertibleConv1x1(4), lambda: AffineCoupling(4, 8),
    lambda: FlowStep(4, 8),
])
def test_layers_invert_and_their_logdet_matches_autograd(make):
    torch.manual_seed(0)
    x = torch.randn(3, 4, 2, 3)
    layer = _warm(make(), x)
    y, logdet = layer(x)
    # float32 forward then inverse: a few roundings of ~6e-8 relative on values of order 1-10
    # (the inverse 1x1 convolution uses the inverted matrix, not the same product), so 1e-4
    # absolute is far above rounding and far below a wrong inverse (errors of order 1)
    torch.testing.assert_close(layer.inverse(y), x, atol=1e-4, rtol=0)
    # the layer's float32 log-determinant against slogdet of the float32 Jacobian in float64:
    # different computations whose rounding is ~1e-6 on values of order 1-10; a wrong term
    # (a missing scale, log|det W| per pixel) is off by order 1
    torch.testing.assert_close(logdet.double(), _autograd_logdet(layer, x), atol=1e-3, rtol=1e-4)


def test_odd_channel_coupling_inverts():
    torch.manual_seed(0)
    layer = _warm(AffineCoupling(5, 8), torch.randn(3, 5, 2, 2))
    x = torch.randn(3, 5, 2, 2)
    y, logdet = layer(x)
    # the coupling network sees the same untouched half in forward and inverse, so only the
    # float32 affine step and its inverse round (~1e-7 relative on values of order 1)
    torch.testing.assert_close(layer.inverse(y), x, atol=1e-5, rtol=1e-5)
    # float32 log-determinant vs float64 slogdet of the Jacobian, as above
    torch.testing.assert_close(logdet.double(), _autograd_logdet(layer, x), atol=1e-3, rtol=1e-4)


def test_squeeze_round_trip():
    x = torch.randn(2, 3, 4, 6)
    assert squeeze(x).shape == (2, 12, 2, 3)
    # exact: squeeze and unsqueeze only move elements, no arithmetic
    torch.testing.assert_close(unsqueeze(squeeze(x)), x, rtol=0, atol=0)


@pytest.mark.parametrize("shape, levels", [((1, 4, 4), 2), ((2, 4, 4), 3), ((6, 1, 1), 2)])
def test_glow_inverts_and_its_log_density_matches_the_change_of_variables(shape, levels):
    torch.manual_seed(0)
    glow = Glow(shape, n_levels=levels, n_steps=2, hidden=8)
    x = torch.randn(3, *shape)
    glow = _warm(glow, x)
    z, outs = glow.encode(x)
    # float32 through every step and back: rounding accumulates to ~1e-6 on values of order 1
    torch.testing.assert_close(glow.inverse(z, outs), x, atol=1e-4, rtol=0)
    # change of variables through every level: g(x) stacks the split-off halves whitened by
    # their learned priors, (out - mean(keep)) * exp(-logs(keep)), and the last level's z; g(x)
    # is standard normal, so log p(x) = log N(g(x); 0, I) + log |det dg/dx|
    assert len(glow.priors) == levels - 1  # the split priors are exercised

    def g(v):
        parts = []
        for i, steps in enumerate(glow.levels):
            if glow.squeezes[i]:
                v = squeeze(v)
            for step in steps:
                v, _ = step(v)
            if str(i) in glow.priors:
                v, out = glow._halves(v)
                h = glow.priors[str(i)](v)
                parts.append(((out - h[:, 0::2]) * torch.exp(-h[:, 1::2])).flatten(1))
        return torch.cat(parts + [v.flatten(1)], 1), None

    logdet = _autograd_logdet(g, x)
    eps = g(x)[0].double()
    expected = (-0.5 * (eps ** 2 + np.log(2 * np.pi))).sum(1) + logdet
    # glow's float32 log density against the float64 change of variables through the float32
    # Jacobian: rounding ~1e-5 on log densities of order 10-100; a missing term (a prior,
    # a level's log-determinant) is off by order 1 or more
    torch.testing.assert_close(glow.log_prob(x).double(), expected, atol=1e-3, rtol=1e-4)


def test_glow_log_prob_integrates_like_a_density_in_one_dimension_pairs():
    # a trained-from-scratch flow on 2-D data is a density: a Riemann sum over a grid ~ 1
    torch.manual_seed(0)
    glow = _warm(Glow((2, 1, 1), n_levels=1, n_steps=3, hidden=8), torch.randn(64, 2, 1, 1))
    g = torch.linspace(-12, 12, 241)
    xx, yy = torch.meshgrid(g, g, indexing="ij")
    pts = torch.stack([xx.flatten(), yy.flatten()], 1)[:, :, None, None]
    with torch.no_grad():
        mass = glow.log_prob(pts).exp().sum() * (g[1] - g[0]) ** 2
    # measured 1.00001 (1 and 2 threads): the grid error of a smooth density and float32
    # rounding are far below 0.02, a missing log-determinant or prior term is far above it
    assert mass.item() == pytest.approx(1.0, abs=0.02)


def test_flow_detector_scores_components_and_round_trips(tmp_path):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 4)).astype(np.float32)
    det = tiny_flow(epochs=10, dequantize=False).fit(X)
    far = X[:20] * 6
    nll = det.score_components(np.r_[X[:20], far])["nll"]
    # measured (1 and 2 threads): mean nll -1.6 near, 73 far; AUROC 1.0 (chance is 0.5)
    assert nll[20:].mean() > nll[:20].mean()
    assert auroc(np.r_[np.ones(20), -np.ones(20)], det.score_samples(np.r_[X[:20], far])) > 0.9
    det.save(tmp_path / "f.pt")
    # exact: bit-identical weights scoring in the same process and thread count
    for other in (pickle.loads(pickle.dumps(det)), load(tmp_path / "f.pt")):
        np.testing.assert_array_equal(other.score_samples(X[:30]), det.score_samples(X[:30]))


def test_flow_detector_on_images(digits):
    X, y = digits
    det = tiny_flow(epochs=2).fit(X[y == 0])
    assert det.score_samples(X[:10]).shape == (10,)
    with pytest.raises(ValueError, match="at least 2 features"):
        tiny_flow().fit(np.zeros((10, 1)))


def test_code_length_is_zlib_bits_per_dimension():
    import zlib

    from sknovelty.metrics import code_length

    rng = np.random.RandomState(0)
    X = np.stack([np.full(256, 0.5), rng.uniform(size=256)])
    expected = [8 * len(zlib.compress(np.full(256, 128, np.uint8).tobytes(), 9)) / 256,
                8 * len(zlib.compress(np.rint(X[1] * 255).astype(np.uint8).tobytes(), 9)) / 256]
    np.testing.assert_array_equal(code_length(X), expected)
    # the range maps to 0..255 and values outside it are clipped
    np.testing.assert_array_equal(code_length(10 * X, 0, 10), code_length(X))
    assert code_length(X)[0] < 1 < 8 < code_length(X)[1]


def _noise_images(rng, n, sigma, size=8):
    return np.clip(0.5 + sigma * rng.normal(size=(n, 1, size, size)), 0, 1).astype(np.float32)


def test_complexity_score_corrects_the_likelihood_inversion():
    """A flow fitted on noise images gives a flat grey image (simpler than any training
    image) a higher likelihood than the training images themselves: plain NLL ranks the
    novelties as the most normal samples. Serra et al.'s S(x) = NLL - L(x) ranks them right."""
    rng = np.random.RandomState(0)
    X = _noise_images(rng, 300, 0.2)
    normal = _noise_images(rng, 40, 0.2)
    flat = np.full((40, 1, 8, 8), 1, np.float32) * rng.uniform(0.45, 0.55, (40, 1, 1, 1))
    X_test, y = np.r_[normal, flat].astype(np.float32), np.r_[np.ones(40), -np.ones(40)]
    det = tiny_flow(epochs=15, score_type="complexity").fit(X)
    terms = det.score_components(X_test)
    # S(x) is exactly the NLL in bits per dimension of the 8-bit bin, minus L(x)
    np.testing.assert_allclose(terms["complexity"],
                               terms["nll"] / (64 * np.log(2)) + 8 - terms["code_length"])
    np.testing.assert_array_equal(det.score_samples(X_test),
                                  -det._normalized("complexity", terms["complexity"]))
    nll_auroc, complexity_auroc = auroc(y, -terms["nll"]), auroc(y, -terms["complexity"])
    # measured (1 and 2 threads): NLL 0.0, complexity 1.0; a flow that sees the mode of
    # its own noise as likely must invert, and L(flat) ~ 1 bit against ~8 for noise
    assert nll_auroc < 0.5 < complexity_auroc
    assert complexity_auroc - nll_auroc > 0.5


def test_flow_warns_when_its_likelihood_tracks_input_complexity(recwarn):
    rng = np.random.RandomState(0)
    # training images of every complexity, from nearly flat to loud noise (noise levels
    # spaced geometrically: measured Spearman 0.96-0.99 over seeds and sizes, against 0.81-0.86
    # for evenly spaced levels, whose near-flat images tie in code length)
    X = np.concatenate([_noise_images(rng, 30, s) for s in np.geomspace(0.004, 0.4, 10)])
    with pytest.warns(UserWarning, match="tracks their compressed size"):
        det = tiny_flow(epochs=5, score_type="nll").fit(X)
    assert det.complexity_correlation_ >= det.COMPLEXITY_WARNING
    # the corrected score has nothing to warn about; the attribute is still measured
    recwarn.clear()
    det2 = tiny_flow(epochs=5, score_type="complexity").fit(X)
    assert not [w for w in recwarn if "compressed size" in str(w.message)]
    assert det2.complexity_correlation_ >= det.COMPLEXITY_WARNING


def test_flow_files_and_pickles_from_before_the_score_parameter_keep_scoring_by_nll(tmp_path):
    """score_type="complexity" became the default; a model saved without the parameter scored by
    the NLL and must go on doing so after loading."""
    import json

    from safetensors import safe_open
    from safetensors.numpy import save_file

    rng = np.random.RandomState(0)
    X = rng.uniform(size=(60, 1, 8, 8)).astype(np.float32)
    det = tiny_flow(score_type="nll").fit(X)
    det.save(tmp_path / "new.safetensors")
    with safe_open(tmp_path / "new.safetensors", "np") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    params = json.loads(meta["params"])
    del params["score_type"]
    meta["params"] = json.dumps(params)
    save_file(tensors, tmp_path / "old.safetensors", metadata=meta)
    old = load(tmp_path / "old.safetensors")
    assert old.score_type == "nll"
    np.testing.assert_array_equal(old.score_samples(X), det.score_samples(X))
    state = det.__getstate__()
    del state["score_type"]
    unpickled = type(det).__new__(type(det))
    unpickled.__setstate__(state)
    assert unpickled.score_type == "nll"
