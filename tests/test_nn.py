"""The mathematics of the building blocks: autoregressive masks, LLK, REC, block shapes."""

import pickle

import numpy as np
import pytest
import torch

from sknovelty.lsa import LSALoss, latent_nll, quantize, reconstruction_error
from sknovelty.nn import AutoregressiveEstimator, MaskedFullyConnected, build_autoencoder
from sknovelty.nn.autoregressive import DiscretizedLogisticMixture


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
    for weight in layer.parameters():
        torch.nn.init.uniform_(weight, 0.5, 1.0)
    dep = _dependence(layer, d, ci)
    i, j = np.indices((d, d))
    allowed = j < i if mask_type == "A" else j <= i
    assert not dep[~allowed].any(), "an output depends on a current/future input"
    assert dep[allowed].all(), "an allowed connection is missing"


@pytest.mark.parametrize("n_components", [None, 3])
def test_estimator_cpd_i_depends_only_on_previous_codes(n_components):
    torch.manual_seed(0)
    d = 5
    est = AutoregressiveEstimator(d, channels=(4, 4), n_bins=7, n_components=n_components)
    est = est.double()
    z = torch.rand(1, d, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(est, z)[0]  # (d, B, 1, d)
    dep = (jac.abs().sum(dim=(1, 2)) > 0).numpy()
    i, j = np.indices((d, d))
    assert not dep[j >= i].any()
    assert dep[j < i].all()
    # the first CPD comes from the biases alone: every input term of it is an exact zero
    # (masked weight 0 times a finite value), so any summation order gives the same numbers
    assert torch.equal(est(torch.rand(3, d, dtype=torch.float64))[:, 0],
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
    # exact: the changed feature only meets zero weights, whose products are exact zeros, and
    # both calls run the same GEMM on the same shapes
    assert torch.equal(layer(h), layer(h2))


def test_masked_weights_stay_zero_so_inference_matches_the_masked_product():
    torch.manual_seed(0)
    layer = MaskedFullyConnected(5, 3, 2, "B")
    opt = torch.optim.Adam(layer.parameters(), lr=0.1, weight_decay=0.01)
    for _ in range(5):
        opt.zero_grad()
        layer(torch.randn(8, 5, 3)).square().sum().backward()
        opt.step()
    for diag, mask in zip(layer.diag, layer._masks()):   # the stored blocks, not W * M
        assert torch.count_nonzero(diag * (1 - mask)) == 0
    h = torch.randn(4, 5, 3)
    with torch.inference_mode():
        fast = layer(h)
    # exact: with the masked weights at zero, W * mask is bit-identical to W, so both paths
    # run the same GEMM on the same numbers
    assert torch.equal(fast, layer(h).detach())
    # a state dict with nonzero masked weights is made autoregressive again on loading
    state = {k: torch.ones_like(v) for k, v in layer.state_dict().items()}
    layer.load_state_dict(state)
    assert all(torch.equal(diag, mask) for diag, mask in zip(layer.diag, layer._masks()))
    assert all(torch.equal(off, torch.ones_like(off)) for off in layer.off)


def _dense_mfc(layer, h):
    """The MFC of eq. 6 as one product with the dense masked matrix."""
    out = torch.nn.functional.linear(h.flatten(1), layer.weight * layer.mask, layer.bias)
    return out.view(h.shape[0], layer.n_features, layer.out_channels)


@pytest.mark.parametrize("d, ci, co, mask_type", [(64, 8, 5, "B"), (13, 3, 2, "A"), (2, 1, 3, "A")])
def test_block_rows_compute_the_dense_masked_product(d, ci, co, mask_type):
    torch.manual_seed(0)
    layer = MaskedFullyConnected(d, ci, co, mask_type).double()
    h = torch.randn(7, d, ci, dtype=torch.float64, requires_grad=True)
    out = layer(h)
    dense = _dense_mfc(layer, h)
    # float64, the same products summed in another order: rounding ~1e-16 relative
    torch.testing.assert_close(out, dense, rtol=1e-12, atol=1e-12)
    wrt = [h, *layer.parameters()]
    grads = torch.autograd.grad(out.square().sum(), wrt)
    dense_grads = torch.autograd.grad(dense.square().sum(), wrt)
    for got, want in zip(grads, dense_grads):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # the triangle of blocks: with g groups, (g + 1) / (2 g) of the dense square is stored
    g = len(layer.rows)
    assert g == min(8, d)
    n_weights = sum(p.numel() for p in [*layer.diag, *layer.off])
    groups = np.diff(np.round(np.arange(g + 1) * d / g))
    assert n_weights == ci * co * sum(a * b for i, a in enumerate(groups) for b in groups[:i + 1])


def test_a_mask_that_is_not_triangular_is_kept_as_one_block(monkeypatch):
    from sknovelty.nn import autoregressive
    monkeypatch.setattr(autoregressive, "mfc_mask", lambda d, ci, co, mask_type:
                        torch.ones(d * co, d * ci, dtype=bool))
    layer = MaskedFullyConnected(4, 2, 3, "A")
    assert len(layer.rows) == 1 and len(layer.off) == 0
    h = torch.randn(5, 4, 2)
    h2 = h.clone()
    h2[:, 3] += 1.0   # the last feature now reaches every output
    assert not torch.isclose(layer(h), layer(h2)).any()


def test_the_former_dense_layout_loads_from_a_state_dict_and_a_pickle():
    # models saved before the block layout hold linear.weight (d*co, d*ci) and linear.bias
    torch.manual_seed(0)
    layer = MaskedFullyConnected(9, 2, 3, "B")
    dense = {"linear.weight": torch.randn(27, 18) * layer.mask, "linear.bias": torch.randn(27)}
    h = torch.randn(4, 9, 2)
    want = torch.nn.functional.linear(h.flatten(1), dense["linear.weight"],
                                      dense["linear.bias"]).view(4, 9, 3)
    layer.load_state_dict(dense)
    with torch.no_grad():   # float32, another summation order: default tolerance (~1e-5)
        torch.testing.assert_close(layer(h), want)
    with pytest.raises(RuntimeError, match="size mismatch|Missing|Unexpected"):
        layer.load_state_dict({"linear.weight": torch.randn(27, 19), "linear.bias": torch.randn(27)})

    # a pickle of the former layout: the module's attributes as that version wrote them
    old = MaskedFullyConnected.__new__(MaskedFullyConnected)
    torch.nn.Module.__init__(old)
    old.n_features, old.out_channels = 9, 3
    old.linear = torch.nn.Linear(18, 27)
    with torch.no_grad():
        old.linear.weight.copy_(dense["linear.weight"])
        old.linear.bias.copy_(dense["linear.bias"])
    old.register_buffer("mask", layer.mask, persistent=False)
    restored = pickle.loads(pickle.dumps(old))
    assert "linear" not in dict(restored.named_children())
    with torch.no_grad():
        torch.testing.assert_close(restored(h), want)
        assert torch.equal(restored.weight, dense["linear.weight"])


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
    # float32 log-softmax against float64 numpy: rounding ~1e-7 relative on a value ~1.5
    assert latent_nll(logits, z).item() == pytest.approx(expected, rel=1e-6)


def test_interpolated_latent_nll_is_a_differentiable_density_equal_to_the_bin_nll_at_centres():
    # B = 4 bins with centres 0.125, 0.375, 0.625, 0.875; one CPD
    logits = torch.tensor([[[0.0, 1.0, 2.0, -1.0]]])
    p = np.exp([0.0, 1.0, 2.0, -1.0]) / np.exp([0.0, 1.0, 2.0, -1.0]).sum()
    # z = 0.45 lies 0.3 of the way from centre 1 to centre 2: -log(0.7 p1 + 0.3 p2)
    z = torch.tensor([[0.45]], requires_grad=True)
    nll = latent_nll(logits, z, "interpolated")
    # float32 against float64: ~1e-7 relative
    assert nll.item() == pytest.approx(-np.log(0.7 * p[1] + 0.3 * p[2]), rel=1e-6)
    nll.backward()
    # d/dz = -B (p2 - p1) / (0.7 p1 + 0.3 p2): toward the likelier bin 2 (float32: 1e-5)
    assert z.grad.item() == pytest.approx(-4 * (p[2] - p[1]) / (0.7 * p[1] + 0.3 * p[2]),
                                          rel=1e-5)
    # at the bin centres and in the end half-bins it is the bin NLL of supp. eq. 11
    at = torch.tensor([[0.125], [0.375], [0.625], [0.875], [0.05], [0.99]])
    rows = logits.expand(len(at), 1, 4)
    assert torch.allclose(latent_nll(rows, at, "interpolated"), latent_nll(rows, at), atol=1e-5)
    # B p(z) integrates to 1 over [0, 1] (trapezoid rule on a fine grid: error ~1e-6)
    grid = torch.linspace(0, 1, 100_001)[:, None]
    density = 4 * torch.exp(-latent_nll(logits.expand(len(grid), 1, 4), grid, "interpolated"))
    assert torch.trapezoid(density, grid[:, 0]).item() == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ValueError, match="target"):
        latent_nll(logits, z, "nearest")


def _logistic_cdf(x, mu, s):
    return 1 / (1 + np.exp(-(x - mu) / s))


def test_logistic_mixture_cpd_equals_hand_computed_bin_masses():
    """Two components on B = 4 bins: each bin's mass is the mixture's CDF difference over the
    bin, the outer bins reaching to -inf and +inf; all masses here are far above MIN_MASS."""
    k, n_bins = 2, 4
    head = DiscretizedLogisticMixture(n_bins, k).double()
    logit_pi, mu_raw, log_s_raw = [0.3, -0.2], [0.05, -0.1], [0.2, -0.4]
    params = torch.tensor([[logit_pi + mu_raw + log_s_raw]], dtype=torch.float64)
    # the head's documented offsets: mu_j + (j + 1/2) / K, log s_j - log K
    pi = np.exp(logit_pi) / np.exp(logit_pi).sum()
    mu = np.array(mu_raw) + (np.arange(k) + 0.5) / k
    s = np.exp(np.array(log_s_raw) - np.log(k))
    edges = np.array([-np.inf, 0.25, 0.5, 0.75, np.inf])
    cdf = sum(pi[j] * _logistic_cdf(edges, mu[j], s[j]) for j in range(k))
    expected = np.log(np.diff(cdf))
    got = head(params)[0, 0].numpy()
    # float64 throughout: the only error is rounding in log-sigmoid differences (~1e-15)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("scale", [0.0, 3.0, 30.0])
def test_logistic_mixture_cpd_is_normalised_with_finite_gradients(scale):
    """Sharp and wide components alike: B masses sum to 1 and every gradient is finite (bins
    whose mass underflows are read from the density, which keeps their gradients finite)."""
    torch.manual_seed(0)
    head = DiscretizedLogisticMixture(100, 5)
    params = (torch.randn(64, 3, 15) * scale).requires_grad_(True)
    log_p = head(params)
    # the density stands in for masses < 1e-5: at most B * 1e-5 = 1e-3 off in the sum
    torch.testing.assert_close(log_p.exp().sum(-1), torch.ones(64, 3), rtol=0, atol=1e-3)
    target = quantize(torch.rand(64, 3), 100)
    latent_nll(log_p, (target + 0.5) / 100).sum().backward()
    assert torch.isfinite(log_p).all() and torch.isfinite(params.grad).all()
    assert params.grad.abs().sum() > 0


def test_an_estimator_pickled_before_the_cpd_head_existed_still_scores():
    torch.manual_seed(0)
    est = AutoregressiveEstimator(5, channels=(4, 4), n_bins=7)
    z = torch.rand(3, 5)
    expected = est(z)
    del est._modules["head"]   # the layout of a pickle written before `head`
    again = pickle.loads(pickle.dumps(est))
    assert torch.equal(again(z), expected)


def test_lsa_loss_is_eq4_batch_mean():
    x = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    x_rec = torch.tensor([[0.0, 0.0], [1.0, 1.0]])  # rec = 5 and 2
    logits = torch.zeros(2, 2, 4)  # uniform: llk = 2 ln 4 per sample
    z = torch.full((2, 2), 0.3)
    terms = LSALoss(0.5).per_sample((x_rec, z, logits), x)
    assert reconstruction_error(x_rec, x).tolist() == [5.0, 2.0]  # exact: sums of small integers
    # float32 log(4) and sums against float64: ~1e-7 relative
    assert terms["llk"].tolist() == pytest.approx([2 * np.log(4)] * 2, rel=1e-6)
    assert LSALoss(0.5)((x_rec, z, logits), x).item() == pytest.approx(3.5 + 0.5 * 2 * np.log(4), rel=1e-6)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 8, 8), (1, 5, 7), (12,)])
def test_autoencoder_shapes(shape):
    enc, dec = build_autoencoder(shape, latent_dim=6, hidden_dim=8, conv_channels=(4, 8))
    x = torch.rand(3, *shape)
    z = enc(x)
    assert z.shape == (3, 6) and bool(((z >= 0) & (z <= 1)).all())
    assert dec(z).shape == x.shape


@pytest.mark.parametrize("size", [3, 4, 7])
def test_residual_shortcuts_are_the_stride_2_pointwise_convolutions(size):
    # the shortcuts avoid oneDNN's stride-2 1x1 kernels (which corrupt memory in
    # channels-last layout) by subsampling / zero insertion around a stride-1 1x1 conv; they
    # must compute what the stride-2 convolutions of the paper's block compute
    from torch.nn import functional as F

    from sknovelty.nn import ResidualDown2d, ResidualUp2d

    torch.manual_seed(0)
    down, up = ResidualDown2d(3, 5).double(), ResidualUp2d(5, 3).double()
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    main = down.bn2(down.f2(down.act(down.bn1(down.f1(x)))))
    expected = F.conv2d(x, down.f3.weight, stride=2)
    # float64 on both sides: only the summation order over 3 channels may differ
    torch.testing.assert_close(down.shortcut(x, main), expected, rtol=1e-12, atol=1e-12)
    z = torch.randn(2, 5, size, size, dtype=torch.float64)
    main = up.bn2(up.f2(up.act(up.bn1(up.f1(z)))))
    expected = F.conv_transpose2d(z, up.f3.weight, stride=2, output_padding=1)
    torch.testing.assert_close(up.shortcut(z, main), expected, rtol=1e-12, atol=1e-12)


def test_residual_blocks_in_channels_last_are_deterministic():
    # the stride-2 1x1 kernels gave different results for identical calls at such small sizes
    # (benchmarks/upstream_onednn_c1_conv.py); the blocks must not use them
    from sknovelty.nn import ResidualDown2d, ResidualUp2d

    torch.manual_seed(0)
    net = torch.nn.Sequential(ResidualDown2d(4, 8), ResidualUp2d(8, 2))
    x0 = torch.rand(16, 4, 4, 4).contiguous(memory_format=torch.channels_last)
    runs = []
    for _ in range(10):
        x = x0.clone().requires_grad_(True)
        net.zero_grad()
        y = net(x)
        y.square().sum().backward()
        runs.append(torch.cat([y.detach().flatten(), x.grad.flatten()]
                              + [p.grad.flatten() for p in net.parameters()]))
    # exact: the same computation in the same process and thread count
    assert all(torch.equal(runs[0], r) for r in runs[1:])
