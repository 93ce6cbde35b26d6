"""Glow: invertibility, log-determinants against autograd, and the density detector."""

import pickle

import numpy as np
import pytest
import torch

from sknovelty import FlowDensityDetector, load
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
    torch.testing.assert_close(layer.inverse(y), x, atol=1e-4, rtol=0)
    torch.testing.assert_close(logdet.double(), _autograd_logdet(layer, x), atol=1e-3, rtol=1e-4)


def test_odd_channel_coupling_inverts():
    torch.manual_seed(0)
    layer = _warm(AffineCoupling(5, 8), torch.randn(3, 5, 2, 2))
    x = torch.randn(3, 5, 2, 2)
    y, logdet = layer(x)
    torch.testing.assert_close(layer.inverse(y), x, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logdet.double(), _autograd_logdet(layer, x), atol=1e-3, rtol=1e-4)


def test_squeeze_round_trip():
    x = torch.randn(2, 3, 4, 6)
    assert squeeze(x).shape == (2, 12, 2, 3)
    torch.testing.assert_close(unsqueeze(squeeze(x)), x)


@pytest.mark.parametrize("shape, levels", [((1, 4, 4), 2), ((2, 4, 4), 3), ((6, 1, 1), 2)])
def test_glow_inverts_and_its_log_density_matches_the_change_of_variables(shape, levels):
    torch.manual_seed(0)
    glow = Glow(shape, n_levels=levels, n_steps=2, hidden=8)
    x = torch.randn(3, *shape)
    glow = _warm(glow, x)
    z, outs = glow.encode(x)
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
    assert mass.item() == pytest.approx(1.0, abs=0.02)


def test_flow_detector_scores_components_and_round_trips(tmp_path):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 4)).astype(np.float32)
    det = tiny_flow(epochs=10, dequantize=False).fit(X)
    far = X[:20] * 6
    nll = det.score_components(np.r_[X[:20], far])["nll"]
    assert nll[20:].mean() > nll[:20].mean()
    assert auroc(np.r_[np.ones(20), -np.ones(20)], det.score_samples(np.r_[X[:20], far])) > 0.9
    det.save(tmp_path / "f.pt")
    for other in (pickle.loads(pickle.dumps(det)), load(tmp_path / "f.pt")):
        np.testing.assert_array_equal(other.score_samples(X[:30]), det.score_samples(X[:30]))


def test_flow_detector_on_images(digits):
    X, y = digits
    det = tiny_flow(epochs=2).fit(X[y == 0])
    assert det.score_samples(X[:10]).shape == (10,)
    with pytest.raises(ValueError, match="at least 2 features"):
        tiny_flow().fit(np.zeros((10, 1)))
