"""Deep SVDD: the paper's conditions against a trivial solution, its loss and centre, and
learning on real digits against a control measured in the same test."""

import numpy as np
import pytest
import torch
from torch import nn

from sknovelty.datasets import one_class_split
from sknovelty.metrics import auroc
from sknovelty.svdd import DeepSVDDDetector, DeepSVDDModule, SVDDLoss


@pytest.mark.parametrize("sample_shape", [(1, 8, 8), (3, 7, 9), (12,)])
def test_no_layer_has_a_bias_or_affine_normalisation(sample_shape):
    # sec. 3.3: a bias lets phi map everything onto c; so does a learnable BN shift
    module = DeepSVDDModule(sample_shape, 5, (4, 2), (6, 3))
    names = [name for name, _ in module.named_parameters()]
    assert names and all(name.endswith("weight") for name in names), names
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(norms) == 2 and not any(m.affine for m in norms)
    assert "center" not in names  # c is fixed, not trained
    assert module(torch.rand(4, *sample_shape))[0].shape == (4, 5)


def test_the_loss_is_the_mean_squared_distance_to_the_centre():
    phi = torch.tensor([[1.0, 2.0], [0.0, -1.0], [3.0, 0.5]])
    center = torch.tensor([0.5, 1.0])
    by_hand = np.array([0.25 + 1.0, 0.25 + 4.0, 6.25 + 0.25])  # ||phi_i - c||^2 (eq. 4)
    loss = SVDDLoss()
    # float32 sums of a few values of order 1: exact to a few ulp, hence rtol 1e-6
    np.testing.assert_allclose(loss.per_sample((phi, center), None)["dist"], by_hand, rtol=1e-6)
    np.testing.assert_allclose(float(loss((phi, center), None)), by_hand.mean(), rtol=1e-6)


def test_the_centre_is_the_mean_of_an_initial_pass_away_from_zero():
    torch.manual_seed(0)
    X = torch.rand(50, 1, 8, 8)
    module = DeepSVDDModule((1, 8, 8), 16, (4, 2), ())
    reference = DeepSVDDModule((1, 8, 8), 16, (4, 2), ())
    reference.load_state_dict(module.state_dict())
    module.fix_center(X, batch_size=20)   # batches 20, 20, 10: BN uses each batch's statistics
    with torch.no_grad():
        reference.train()
        mean = torch.cat([reference.phi(X[a:b]) for a, b in ((0, 20), (20, 40), (40, 50))]).mean(0)
    eps = 0.1
    expected = torch.where(mean.abs() >= eps, mean, torch.where(mean < 0, -eps, eps))
    # float32 sums in another order: a few ulp of values of order 1
    torch.testing.assert_close(module.center, expected, rtol=1e-5, atol=1e-6)
    assert (module.center.abs() >= eps).all()
    for m in module.modules():   # the pass leaves no trace in the running statistics
        if isinstance(m, nn.BatchNorm2d):
            assert m.num_batches_tracked == 0 and torch.equal(m.running_mean,
                                                              torch.zeros_like(m.running_mean))


def test_fit_fixes_the_centre_on_the_training_rows_and_training_keeps_it():
    X = np.random.RandomState(0).rand(40, 6).astype(np.float32)
    det = DeepSVDDDetector(latent_dim=4, hidden_dims=(8,), epochs=3, validation_fraction=0.25,
                           random_state=0, device="cpu")
    seen = []
    original = DeepSVDDModule.fix_center

    def spy(module, X_train, batch_size, eps=0.1):
        seen.append(X_train.clone())
        original(module, X_train, batch_size, eps)
        seen.append(module.center.clone())

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(DeepSVDDModule, "fix_center", spy)
        det.fit(X)
    rows, center = seen
    # the training rows: all but the 10 that fit's seeded permutation holds out
    seed = int(np.random.RandomState(0).randint(np.iinfo(np.int32).max))
    held_out = np.random.RandomState(seed).permutation(len(X))[:10]
    training = np.delete(X, held_out, axis=0)
    assert sorted(map(tuple, rows.numpy().tolist())) == sorted(map(tuple, training.tolist()))
    # training moves phi, never c
    torch.testing.assert_close(det.net_.module_.center, center, rtol=0, atol=0)


@pytest.fixture(scope="module")
def split(digits):
    X, y = digits
    return one_class_split(X, y, normal_class=3, test_size=0.3, random_state=0)


def test_deep_svdd_separates_a_held_out_digit_better_than_its_untrained_network(split):
    # the control is the same network, centre and normalisation without learning (a learning
    # rate of 1e-12): it scores by distance in a random bias-free projection, which already
    # separates digits somewhat. Measured AUROC (AMD EPYC, 2 threads), seeds 0 / 1 / 2: trained
    # 0.936 / 0.951 / 0.931, control 0.852 / 0.883 / 0.879; the margin asked for (0.03) is
    # under the smallest of those gaps (0.052)
    X_train, X_test, y_test = split
    params = dict(epochs=30, learning_rate=1e-3, random_state=0, device="cpu")
    trained = auroc(y_test, DeepSVDDDetector(**params).fit(X_train).score_samples(X_test))
    control = auroc(y_test, DeepSVDDDetector(**{**params, "learning_rate": 1e-12})
                    .fit(X_train).score_samples(X_test))
    assert trained > 0.9, trained
    assert trained - control >= 0.03, (trained, control)


def test_a_model_file_takes_any_epoch_milestone(tmp_path):
    # lr_milestones are epoch numbers, not sizes: the model file's size limit must not refuse
    # them (the class lists them in _unbounded_params)
    from sknovelty import load, save

    X = np.random.RandomState(0).rand(40, 6).astype(np.float32)
    det = DeepSVDDDetector(latent_dim=4, hidden_dims=(8,), epochs=2, lr_milestones=(5000,),
                           random_state=0, device="cpu").fit(X)
    save(det, tmp_path / "svdd.safetensors")
    again = load(tmp_path / "svdd.safetensors")
    assert again.get_params()["lr_milestones"] == (5000,)
    np.testing.assert_array_equal(again.score_samples(X), det.score_samples(X))
