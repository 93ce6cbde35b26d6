"""OLED (adversarial context masking) and the context-autoencoder baseline."""

import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.model_selection import GridSearchCV
from torch import nn

from sknovelty import AdversarialMaskingDetector, load
from sknovelty.engine import AdversarialNet
from sknovelty.metrics import auroc
from sknovelty.oled import (MaskDrift, MaskedOutput, MaskedReconstructionModule, MaskModule,
                            OLEDLoss, RandomBoxMasker, Reconstructor, ThresholdUnit, n_masked)

from .conftest import tiny_cae, tiny_oled


# ---------------------------------------------------------------- threshold unit
@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 4), h=st.integers(1, 9), w=st.integers(1, 9),
       ratio=st.floats(0.01, 0.99), levels=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_threshold_unit_hides_exactly_the_requested_share(n, h, w, ratio, levels, seed):
    # few distinct levels -> many ties; levels == 1 -> constant (e.g. all-zero) maps
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, levels, (n, 1, h, w), generator=g).float() * (levels > 1)
    for mode in ("relu", "sigmoid"):
        mask = ThresholdUnit(ratio, mode)(a)
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
        hidden = (mask == 0).flatten(1).sum(1)
        assert (hidden == n_masked(ratio, h * w)).all()
        # the hidden pixels are the highest activations
        flat, hid = a.flatten(1), (mask == 0).flatten(1)
        for i in range(n):
            if hid[i].any() and (~hid[i]).any():
                assert flat[i][hid[i]].min() >= flat[i][~hid[i]].max()


def test_threshold_unit_mnist_share_and_gradients():
    a = torch.rand(3, 1, 28, 28, requires_grad=True)  # unseeded: bounds checked over 20 seeds
    mask = ThresholdUnit(0.125, "relu")(a)
    assert ((mask == 0).flatten(1).sum(1) == 98).all()  # 12.5% of 784
    weights = torch.randn(3, 1, 28, 28)
    (g_relu,) = torch.autograd.grad((mask * weights).sum(), a)
    mask = ThresholdUnit(0.125, "sigmoid")(a)
    (g_sig,) = torch.autograd.grad((mask * weights).sum(), a)
    # eq. 2 passes (almost) nothing to MG; the sigmoid surrogate passes a usable gradient.
    # Measured over torch seeds 0-19: |g_relu| / |g_sig| <= 8.8e-7 (11x below the bound) and
    # |g_sig| >= 1267 (13x above it): orders of magnitude, not rounding
    assert g_relu.abs().sum() < 1e-5 * g_sig.abs().sum()
    assert g_sig.abs().sum() > 100


# ---------------------------------------------------------------- random boxes
def test_random_boxes_have_the_requested_area_and_a_stable_position():
    masker = RandomBoxMasker((1, 28, 28), 0.125)
    x = torch.rand(50, 1, 28, 28)
    masker.eval()
    m = masker(x)
    assert ((m == 0).flatten(1).sum(1) == 100).all()  # 10 x 10, as in the paper
    assert torch.equal(masker(x[7:9]), m[7:9])          # same sample, same square (0/1 masks)
    assert len({tuple(np.argwhere(mi[0].numpy() == 0)[0]) for mi in m}) > 10  # spread out
    masker.train()
    assert not torch.equal(masker(x), masker(x))        # fresh squares while training
    vec = RandomBoxMasker((20,), 0.25).eval()(torch.rand(6, 20))
    assert ((vec == 0).sum(1) == 5).all()


# ---------------------------------------------------------------- losses
def test_losses_equal_hand_computed_values():
    x = torch.tensor([[[[1.0, -1.0], [0.5, 0.0]]]])
    rec = torch.tensor([[[[0.5, -1.0], [0.0, 0.0]]]])
    rec_m = torch.tensor([[[[1.0, 0.0], [0.5, -0.5]]]])
    mask = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])  # hides the right column
    out = MaskedOutput(x, rec, rec_m, mask)
    crit = OLEDLoss(gamma=2.0, lam=3.0)
    # L_rec = mean(0.25, 0, 0.25, 0) ; L_mask = mean(0, 1, 0, 0.25);
    # L_cont = mean over 4 pixels of |x - R(x_m)| on the hidden column = (1 + 0.5) / 4
    # dyadic inputs: float32 computes these values exactly; rel=1e-6 is only a float32 margin,
    # a wrong term or divisor is off by > 10%
    L = crit.losses(out)
    assert L["rec"].item() == pytest.approx(0.125, rel=1e-6)
    assert L["mask"].item() == pytest.approx(0.3125, rel=1e-6)
    assert L["cont"].item() == pytest.approx(0.375, rel=1e-6)
    assert crit(out, x).item() == pytest.approx(0.3125 + 2 * 0.375 + 3 * 0.125, rel=1e-6)
    assert crit.adversary_loss(out, x).item() == pytest.approx(-(0.3125 + 2 * 0.375), rel=1e-6)
    terms = crit.per_sample(out, x)
    assert terms["rec"].item() == pytest.approx(0.5, rel=1e-6)
    assert terms["mask"].item() == pytest.approx(1.25, rel=1e-6)
    assert terms["cont"].item() == pytest.approx(1.5, rel=1e-6)


def test_masked_input_is_the_mid_value_of_the_input_range():
    module = MaskedReconstructionModule((0.0, 1.0), Reconstructor((1, 4, 4), (2,), 2),
                                        MaskModule((1, 4, 4), (2,), 0.25, "relu", 0.5)).eval()
    x = torch.rand(2, 1, 4, 4)
    out = module(x)
    # [0, 1] -> [-1, 1], mid value 0.5 -> 0; the module's affine map may round differently
    # from 2x - 1 (a few float32 ulps on values <= 1), a wrong range is off by >= 0.5
    torch.testing.assert_close(out.x, 2 * x - 1, rtol=0, atol=1e-6)
    seen = {}
    module.reconstructor.register_forward_pre_hook(lambda m, args: seen.setdefault(len(seen), args[0]))
    module(x)
    hidden = out.mask.expand_as(x) == 0
    # exact: visible pixels pass through the 0/1 mask unchanged (times 1, plus 0)
    assert (seen[1][hidden] == 0).all() and torch.equal(seen[1][~hidden], out.x[~hidden])


# ---------------------------------------------------------------- two-player engine
class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.b = nn.Parameter(torch.tensor(1.0))
        self.adversary = nn.Linear(1, 1, bias=False)
        self.adversary.weight.data.fill_(3.0)

    def forward(self, x):
        return self.b, self.adversary.weight[0, 0]


class _ToyLoss(nn.Module):
    def forward(self, out, x):  # main player minimises (b - a)^2
        return (out[0] - out[1]).square()

    def adversary_loss(self, out, x):  # adversary maximises it
        return -(out[0] - out[1]).square()

    def per_sample(self, out, x):  # sknovelty.engine.DetectorCriterion asks for novelty terms
        return {"gap": (out[0] - out[1]).square().expand(len(x))}


def test_adversarial_net_steps_both_players_from_the_same_forward_pass():
    from sknovelty.engine import BatchIterator, TensorData

    net = AdversarialNet(module=_Toy(), criterion=_ToyLoss(), optimizer=torch.optim.SGD, lr=0.1,
                         max_epochs=1, batch_size=4, iterator_train=BatchIterator, train_split=None,
                         adversary_period=1, verbose=0)
    net.fit(TensorData(torch.zeros(4, 1)))
    # d/db (b-a)^2 = 2(b-a) = -4 -> b = 1.4 ; d/da -(b-a)^2 = 2(b-a) = -4 -> a = 3.4:
    # both gradients use the values before either step (float32: 1.4 is not representable,
    # ~7e-8 relative; stepping from the other player's updated value would give 1.8 / 3.8)
    assert net.module_.b.item() == pytest.approx(1.4, rel=1e-6)
    assert net.module_.adversary.weight.item() == pytest.approx(3.4, rel=1e-6)
    assert net.history[-1, "adversary_loss"] == pytest.approx(-4.0, rel=1e-6)


def test_adversarial_gradients_have_their_parameters_memory_layout(digits):
    # autograd.grad gives a transposed convolution's weight gradient in another memory order
    # than the weight. CUDA's fused Adam rejects it (seen on an H100: OLED's fit failed); the
    # CPU's fused Adam silently applies it to the wrong elements (OLED's decoder trained that
    # way until this was fixed). LTG shares the training step (AdversarialNet); its 3D
    # convolutions got such gradients at the default width on 16x32x32 clips, not at the
    # small sizes of the tests.
    X, y = digits
    det = tiny_oled(epochs=1).fit(X[y == 0][:48])
    grads = [(n, p) for n, p in det.net_.module_.named_parameters() if p.grad is not None]
    assert any(p.dim() >= 4 for _, p in grads)
    for name, p in grads:
        assert p.grad.stride() == p.stride(), name


def test_mask_module_is_updated_only_on_every_kth_epoch(digits):
    X, y = digits
    drift = MaskDrift(X[:64])
    det = tiny_oled(epochs=4, mask_update_period=2, threshold="sigmoid", callbacks=[drift])
    det.fit(X[y == 0])
    change = det.net_.history[:, "mask_param_change"]
    # exact equalities: without an update the parameters are the same numbers, so the drift
    # is the same computation on them
    assert change[0] > 0 and change[1] == change[0]
    assert change[2] > change[1] and change[3] == change[2]  # measured 0.040 -> 0.067
    assert "adversary_loss" in det.net_.history[0] and "adversary_loss" not in det.net_.history[1]


class _MapGenerator(nn.Module):
    """An MG whose activation map is a learnable per-pixel parameter (same for every image)."""

    def __init__(self, shape):
        super().__init__()
        self.map = nn.Parameter(torch.rand(1, *shape, generator=torch.Generator().manual_seed(0)))

    def forward(self, x):
        return self.map.relu().expand(len(x), *self.map.shape[1:])


class _Half(nn.Module):
    def forward(self, x):
        return x / 2


@pytest.mark.parametrize("mode", ["sigmoid", "relu"])
def test_mask_module_update_increases_the_reconstructors_loss(mode):
    """With R(x) = x / 2, L_mask + gamma * L_cont is largest when the brightest pixels are
    hidden. MM's updates (adversary_loss) move its masks there and raise R's loss with the
    sigmoid surrogate; with eq. 2 the masks do not move (MG gets next to no gradient)."""
    masker = nn.Sequential(_MapGenerator((1, 6, 6)), ThresholdUnit(4 / 36, mode, temperature=0.5))
    module = MaskedReconstructionModule((-1.0, 1.0), _Half(), masker)
    x = torch.zeros(8, 1, 6, 6)
    bright = [(1, 1), (2, 4), (4, 2), (5, 5)]
    for r, c in bright:
        x[:, 0, r, c] = 1.0
    crit = OLEDLoss(gamma=1.0, lam=1.0)
    hidden_before = module(x).mask[0, 0] == 0
    before = -crit.adversary_loss(module(x), x).item()
    opt = torch.optim.Adam(masker.parameters(), lr=0.05)
    for _ in range(100):
        opt.zero_grad()
        crit.adversary_loss(module(x), x).backward()
        opt.step()
    hidden = module(x).mask[0, 0] == 0
    after = -crit.adversary_loss(module(x), x).item()
    if mode == "sigmoid":
        assert sorted(map(tuple, hidden.nonzero().tolist())) == bright
        assert after > before
        # L_mask = L_cont = 4 hidden ones / 36: float32 means of 0/1 masks, ~1e-7 relative
        assert after == pytest.approx((4 + 4) / 36, rel=1e-6)
    else:
        # exact: the same 0/1 mask gives the same loss computation (R(x) = x / 2 is fixed)
        assert torch.equal(hidden, hidden_before) and after == before


# ---------------------------------------------------------------- estimators
@pytest.fixture(scope="module")
def fitted_oled(digits):
    X, y = digits
    return tiny_oled(epochs=3).fit(X[y == 0])


def test_scores_components_masks_and_score_choice(fitted_oled, digits):
    X, _ = digits
    comps = fitted_oled.score_components(X[:50])
    assert sorted(comps) == ["avg", "cont", "mask", "rec"]
    # exact: avg is this very float64 expression of the same terms
    np.testing.assert_array_equal(comps["avg"], (comps["rec"] + comps["mask"] + comps["cont"]) / 3)
    # exact (here and in the loop): the same rows scored by the same weights in the same
    # process and thread count, then the same float64 arithmetic
    np.testing.assert_array_equal(fitted_oled.score_samples(X[:50]), -comps["avg"])
    for name in ("rec", "mask", "cont"):
        low, high = fitted_oled.normalization_[name]
        assert high > low
        other = pickle.loads(pickle.dumps(fitted_oled)).set_params(score_type=name)
        np.testing.assert_array_equal(other.score_samples(X[:50]), -comps[name])
    masks = fitted_oled.masks(X[:50])
    assert masks.shape == (50, 1, 8, 8) and set(np.unique(masks)) == {0.0, 1.0}
    assert ((masks == 0).sum(axis=(1, 2, 3)) == 8).all()


def test_flat_rows_with_image_shape(fitted_oled, digits):
    X, _ = digits
    flat = tiny_oled(epochs=3, image_shape=(1, 8, 8)).fit(X[digits[1] == 0].reshape(-1, 64))
    # exact: the rows are reshaped to the same C-ordered images, so both fits are the same
    # computation (same seed, same process and thread count)
    np.testing.assert_array_equal(flat.score_samples(X[:20].reshape(-1, 64)),
                                  fitted_oled.score_samples(X[:20]))


@pytest.mark.parametrize("factory", [tiny_oled, tiny_cae])
def test_determinism_and_round_trips(factory, digits, tmp_path):
    X, y = digits
    det = factory().fit(X[y == 1][:80])
    same = factory().fit(X[y == 1][:80])
    expected = det.score_samples(X[:40])
    # exact: the same seed runs the same computation in the same process and thread count
    np.testing.assert_array_equal(same.score_samples(X[:40]), expected)
    # reversed, the rows sit at other positions in the zero-padded scoring chunks, where
    # float32 kernels may round differently (exact here). The min-max scaling amplifies the
    # terms' relative rounding by their size over their held-out range (measured <= 6.3), so
    # even 1e-6 relative gives < 1e-5 on scores spanning ~1.2; 1e-4 of the span is 10x that,
    # and a row's score that depended on its neighbours would be off by far more.
    np.testing.assert_allclose(det.score_samples(X[:40][::-1])[::-1], expected, rtol=0,
                               atol=1e-4 * np.ptp(expected))
    det.save(tmp_path / "m.pt")
    # exact: bit-identical weights scoring in the same process and thread count
    for other in (pickle.loads(pickle.dumps(det)), load(tmp_path / "m.pt")):
        np.testing.assert_array_equal(other.score_samples(X[:40]), expected)
        np.testing.assert_array_equal(other.masks(X[:40]), det.masks(X[:40]))
        assert other.input_range_ == det.input_range_


def test_grid_search_over_mask_ratio(digits):
    X, y = digits
    Xs = X[:300]
    labels = np.where(y[:300] == 0, 1, -1)
    from sknovelty.metrics import auroc_scorer
    from sklearn.model_selection import StratifiedKFold

    grid = GridSearchCV(tiny_oled(epochs=1), {"mask_ratio": [0.125, 0.25]}, scoring=auroc_scorer,
                        cv=StratifiedKFold(2)).fit(Xs, labels)
    assert grid.best_params_["mask_ratio"] in (0.125, 0.25)
    assert len(grid.cv_results_["mean_test_score"]) == 2


@pytest.mark.parametrize("params, message", [
    ({"mask_ratio": 1.0}, "mask_ratio"), ({"gamma": -1.0}, "gamma"), ({"threshold": "step"}, "threshold"),
    ({"mask_channels": (4, 0)}, "mask_channels"), ({"score_type": "max"}, "score_type"),
])
def test_invalid_hyperparameters(params, message, digits):
    X, y = digits
    with pytest.raises(ValueError, match=message):
        tiny_oled(**params).fit(X[y == 0])


def test_oled_separates_a_held_out_digit(digits):
    X, y = digits
    train, test = X[y == 0][:150], np.r_[X[y == 0][150:], X[y != 0][::8]]
    labels = np.r_[np.ones((y == 0).sum() - 150), -np.ones(len(X[y != 0][::8]))]
    det = AdversarialMaskingDetector(channels=(16, 32), mask_channels=(8, 16), latent_dim=16,
                                     epochs=30, batch_size=32, random_state=0, device="cpu").fit(train)
    comps = det.score_components(test)
    # measured AUROC avg 1.0 / 0.9998 and mask 1.0 / 1.0 with 2 / 1 threads on an AMD EPYC
    # (the same with oneDNN limited to SSE4.1); chance is 0.5
    assert auroc(labels, -comps["avg"]) > 0.95
    assert auroc(labels, -comps["mask"]) > 0.9


def test_auto_batch_keeps_six_batches_per_epoch_on_small_sets(digits):
    """batch_size="auto": 64 where an epoch has at least 6 batches of 64 (MNIST-5k's ~360
    training rows: unchanged), else n_train // 6 (at least 8)."""
    det = tiny_oled(batch_size="auto")
    assert [det._resolve_batch_size(n) for n in (360, 384, 320, 180, 63, 20)] == \
        [64, 64, 53, 30, 10, 8]
    assert tiny_oled(batch_size=16)._resolve_batch_size(180) == 16
    X, y = digits
    fitted = tiny_oled(batch_size="auto", validation_fraction=0.1).fit(X[y == 0][:100])
    # 100 rows, 10 held out: 90 training rows in batches of 15, 6 per epoch
    assert fitted.batch_size_ == 15 and fitted.net_.batch_size == 15
