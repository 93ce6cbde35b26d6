"""The mathematics of the building blocks: autoregressive masks, LLK, REC, block shapes."""

import numpy as np
import pytest
import torch

from sknovelty.lsa import LSALoss, latent_nll, quantize, reconstruction_error
from sknovelty.nn import AutoregressiveEstimator, MaskedFullyConnected, build_autoencoder


def _dependence(layer_fn, d, ci):
    """dep[i, j] = True when some output channel of feature i has a nonzero gradient w.r.t. feature j."""
    h = torch.randn(1, d, ci, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(layer_fn, h)  # (1, d, co, 1, d, ci)
    return (jac[0].abs().sum(dim=(1, 2, 4)) > 0).numpy()  # (d_out, d_in)


@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_mfc_is_autoregressive(mask_type):
    torch.manual_seed(0)
    d, ci, co = 6, 3, 2
    layer = MaskedFullyConnected(d, ci, co, mask_type).double()
    # fill every weight, masked ones included, with nonzero values: the mask must still hold
    torch.nn.init.uniform_(layer.linear.weight, 0.5, 1.0)
    dep = _dependence(layer, d, ci)
    i, j = np.indices((d, d))
    allowed = j < i if mask_type == "A" else j <= i
    assert not dep[~allowed].any(), "an output depends on a current/future input"
    assert dep[allowed].all(), "an allowed connection is missing"


def test_estimator_cpd_i_depends_only_on_previous_codes():
    torch.manual_seed(0)
    d = 5
    est = AutoregressiveEstimator(d, channels=(4, 4), n_bins=7).double()
    z = torch.rand(1, d, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(est, z)[0]  # (d, B, 1, d)
    dep = (jac.abs().sum(dim=(1, 2)) > 0).numpy()
    i, j = np.indices((d, d))
    assert not dep[j >= i].any()
    assert dep[j < i].all()
    # the first CPD comes from the biases alone
    assert torch.allclose(est(torch.rand(3, d, dtype=torch.float64))[:, 0],
                          est(torch.rand(3, d, dtype=torch.float64))[:, 0])


def test_mask_survives_optimizer_steps():
    torch.manual_seed(0)
    layer = MaskedFullyConnected(4, 2, 2, "A")
    opt = torch.optim.Adam(layer.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        layer(torch.randn(8, 4, 2)).square().sum().backward()
        opt.step()
    h = torch.randn(1, 4, 2)
    h2 = h.clone()
    h2[0, 3] += 10.0  # the last feature feeds no output of a type-A layer
    assert torch.equal(layer(h), layer(h2))


def test_masked_weights_stay_zero_so_inference_matches_the_masked_product():
    torch.manual_seed(0)
    layer = MaskedFullyConnected(5, 3, 2, "B")
    opt = torch.optim.Adam(layer.parameters(), lr=0.1, weight_decay=0.01)
    for _ in range(5):
        opt.zero_grad()
        layer(torch.randn(8, 5, 3)).square().sum().backward()
        opt.step()
    assert torch.count_nonzero(layer.linear.weight * (1 - layer.mask)) == 0
    h = torch.randn(4, 5, 3)
    with torch.inference_mode():
        fast = layer(h)
    assert torch.equal(fast, layer(h).detach())
    # a state dict with nonzero masked weights is made autoregressive again on loading
    state = {k: torch.ones_like(v) for k, v in layer.state_dict().items()}
    layer.load_state_dict(state)
    assert torch.equal(layer.linear.weight, layer.mask)


def test_quantize_covers_the_unit_interval():
    z = torch.tensor([[0.0, 0.099, 0.1, 0.5, 0.999, 1.0]])
    assert quantize(z, 10).tolist() == [[0, 0, 1, 5, 9, 9]]


def test_latent_nll_equals_hand_computed_cross_entropy():
    # d = 2 codes, B = 3 bins
    logits = torch.tensor([[[0.0, 1.0, 2.0], [3.0, 0.0, -1.0]]])
    z = torch.tensor([[0.5, 0.1]])  # bins 1 and 0
    p0 = np.exp([0.0, 1.0, 2.0]) / np.exp([0.0, 1.0, 2.0]).sum()
    p1 = np.exp([3.0, 0.0, -1.0]) / np.exp([3.0, 0.0, -1.0]).sum()
    expected = -np.log(p0[1]) - np.log(p1[0])
    assert latent_nll(logits, z).item() == pytest.approx(expected, rel=1e-6)


def test_lsa_loss_is_eq4_batch_mean():
    x = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    x_rec = torch.tensor([[0.0, 0.0], [1.0, 1.0]])  # rec = 5 and 2
    logits = torch.zeros(2, 2, 4)  # uniform: llk = 2 ln 4 per sample
    z = torch.full((2, 2), 0.3)
    terms = LSALoss(0.5).per_sample((x_rec, z, logits), x)
    assert reconstruction_error(x_rec, x).tolist() == [5.0, 2.0]
    assert terms["llk"].tolist() == pytest.approx([2 * np.log(4)] * 2)
    assert LSALoss(0.5)((x_rec, z, logits), x).item() == pytest.approx(3.5 + 0.5 * 2 * np.log(4))


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 8, 8), (1, 5, 7), (12,)])
def test_autoencoder_shapes(shape):
    enc, dec = build_autoencoder(shape, latent_dim=6, hidden_dim=8, conv_channels=(4, 8))
    x = torch.rand(3, *shape)
    z = enc(x)
    assert z.shape == (3, 6) and bool(((z >= 0) & (z <= 1)).all())
    assert dec(z).shape == x.shape
