"""ITAE + NF: two-path encoder, losses, two-stage training, the estimator on small clips."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from skorch.callbacks import Callback

from sknovelty import load
from sknovelty.itae import ITAEDecoder, TwoPathEncoder, gradient_loss, ms_ssim

from .conftest import tiny_itae


def test_static_path_sees_only_every_tau_th_frame():
    # seeded: at this width (1/16) about 1 random init in 200 leaves the lateral connections
    # dead (every ReLU on them off), and the last assertion then cannot hold
    torch.manual_seed(0)
    enc = TwoPathEncoder(1, width=0.0625, tau=4).eval()
    seen = []
    enc.static[0].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    x = torch.rand(2, 1, 8, 16, 16)
    enc(x)
    torch.testing.assert_close(seen[0], x[:, :, ::4], rtol=0, atol=0)  # exact: frames selected, no arithmetic
    # frames 1-3 and 5-7 reach the static path only through the lateral connections
    y = x.clone()
    y[:, :, 1] += 1.0
    s_y = enc(y)[1]
    # exact: frame 1 is not among the selected frames, so the static input is the same copy
    torch.testing.assert_close(seen[1], seen[0], rtol=0, atol=0)
    # ... and through them they do reach it: by 1e-2 at this seed, far above float32 noise
    # (a frame's change of 1.0 that never arrives leaves the output bit-identical)
    assert (s_y - enc(x)[1]).abs().max() > 1e-4


def test_patch_error_of_eq12_by_hand():
    from sknovelty.itae import ITAELoss, ITAEOutput

    x = torch.zeros(2, 1, 2, 16, 16)
    rec = torch.zeros_like(x)
    rec[0, 0, 0, 2:6, 2:6] = 0.5   # sample 0: a 4x4 blob of error 0.5 in frame 0 only
    rec[1] = 0.1                   # sample 1: error 0.1 everywhere
    terms = ITAELoss(patch=8).per_sample(ITAEOutput(x, rec, None, None), x)
    # frame score = the largest 8x8 window mean: 0.5 * 16 / 64 in frame 0, 0 in frame 1;
    # the clip's rec is the mean over its frames. float32 window means of 64 values: rounding
    # below 64 * 6e-8 relative in any summation order; a wrong window or divisor is off by 2x
    torch.testing.assert_close(terms["rec"], torch.tensor([0.0625, 0.1]), rtol=1e-5, atol=0)
    # per frame (eq. 12 as the paper scores frame t): the blob's frame, then the clean one
    torch.testing.assert_close(ITAELoss(patch=8).per_frame(ITAEOutput(x, rec, None, None)),
                               torch.tensor([[0.125, 0.0], [0.1, 0.1]]), rtol=1e-5, atol=0)


@pytest.mark.parametrize("shape, tau", [((1, 8, 16, 16), 4), ((3, 4, 12, 20), 2), ((1, 16, 32, 32), 4)])
def test_shapes_through_both_paths_and_the_decoder(shape, tau):
    enc = TwoPathEncoder(shape[0], width=0.0625, tau=tau)
    dec = ITAEDecoder(enc.out_channels, shape, width=0.0625, tau=tau)
    x = torch.rand(2, *shape)
    fused, s, d = enc(x)
    c, t, h, w = shape
    assert s.shape == (2, enc.static_channels + 0, t // tau, -(-h // 4), -(-w // 4))
    assert d.shape == (2, enc.dynamic_channels, t, -(-h // 4), -(-w // 4))
    assert fused.shape[1] == enc.out_channels and fused.shape[2] == t // tau
    assert dec(fused).shape == x.shape


def test_one_path_encoder_has_no_dynamic_path():
    enc = TwoPathEncoder(1, width=0.0625, two_path=False)
    fused, s, d = enc(torch.rand(2, 1, 8, 16, 16))
    assert d is None and len(enc.dynamic) == 0 and fused.shape[2] == 8


def test_reconstruction_losses():
    x = torch.rand(4, 1, 32, 32)
    # MS-SSIM of an image with itself is 1 up to float32 rounding of its ratios (~1e-7)
    torch.testing.assert_close(ms_ssim(x, x), torch.ones(4), rtol=0, atol=1e-5)
    noisy = (x + 0.3 * torch.randn_like(x)).clamp(0, 1)
    assert (ms_ssim(x, noisy) < 0.9).all()  # unseeded: at most 0.79 over torch seeds 0-19
    assert gradient_loss(x, x).item() == 0  # exact: the same gradients subtracted from themselves
    assert gradient_loss(x, noisy).item() > 0


class _Snapshot(Callback):
    def on_epoch_end(self, net, **kwargs):
        if len(net.history) == net.first_stage_epochs:
            self.state_ = {k: v.clone() for k, v in net.module_.stages[0].state_dict().items()}


def test_two_stage_training_freezes_the_autoencoder_in_stage_two(clips):
    det = tiny_itae(callbacks=[_Snapshot()]).fit(clips)
    snap = next(cb for _, cb in det.net_.callbacks_ if isinstance(cb, _Snapshot))  # fit's copy
    assert len(det.net_.history) == 4
    for k, v in det.net_.module_.stages[0].state_dict().items():
        # exact: stage two must not write to the autoencoder at all
        assert torch.equal(v, snap.state_[k]), k  # weights and BN statistics unchanged
    comps = det.score_components(clips[:3])
    assert set(comps) == {"rec", "nll_static", "nll_dynamic", "nll"}
    # nll is their float32 sum, the reference the float64 sum of the same float32 values: one
    # correctly rounded addition, at most 6e-8 relative to the sum
    np.testing.assert_allclose(comps["nll"], comps["nll_static"] + comps["nll_dynamic"], rtol=1e-6)
    # eq. 14: rec + lambda_l * nll, each scaled on the held-out clips
    norm = det.normalization_
    expected = -((comps["rec"] - norm["rec"][0]) / (norm["rec"][1] - norm["rec"][0])
                 + det.lambda_l * (comps["nll"] - norm["nll"][0]) / (norm["nll"][1] - norm["nll"][0]))
    # the same float64 terms (same rows, same process) combined in float64 in another
    # order: ~1e-16 relative; a wrong constant or weight is off by far more than 1e-7
    np.testing.assert_allclose(det.score_samples(clips[:3]), expected, rtol=1e-7, atol=1e-12)


class _FlowCalls(Callback):
    """Per epoch: did any training / validation batch carry flow outputs?"""

    def on_epoch_begin(self, net, **kwargs):
        self.epoch_ = {"train": False, "valid": False}

    def on_batch_end(self, net, batch=None, training=None, y_pred=None, **kwargs):
        self.epoch_["train" if training else "valid"] |= y_pred.nll_static is not None

    def on_epoch_end(self, net, **kwargs):
        self.seen_ = getattr(self, "seen_", []) + [dict(self.epoch_)]


def test_flows_run_only_in_stage_two_and_take_their_own_learning_rate(clips):
    det = tiny_itae(callbacks=[_FlowCalls()], flow_learning_rate=3e-4).fit(clips)
    calls = next(cb for _, cb in det.net_.callbacks_ if isinstance(cb, _FlowCalls))
    assert calls.seen_ == [{"train": False, "valid": False}] * 2 + [{"train": True, "valid": True}] * 2
    assert det.net_.second_optimizer_.param_groups[0]["lr"] == 3e-4
    assert det.net_.optimizer_.param_groups[0]["lr"] == det.learning_rate
    same = tiny_itae(epochs=1, flow_epochs=1).fit(clips)
    assert same.net_.second_optimizer_.param_groups[0]["lr"] == same.learning_rate


def test_without_flows_the_score_is_the_patch_error(clips):
    det = tiny_itae(flows=False).fit(clips)
    assert len(det.net_.history) == 2
    assert set(det.score_components(clips[:2])) == {"rec"}


@pytest.mark.parametrize("flows", [True, False])
def test_frame_scores_average_to_the_clip_score(clips, flows):
    det = tiny_itae(flows=flows).fit(clips)
    frames = det.score_frames(clips[:6])
    assert frames.shape == (6, clips.shape[2])
    # the clip's rec is the mean of its frames' patch errors and the scaling is affine, so
    # the frames' mean is the clip's score; float32 terms averaged in float32 for the clip
    # and in float64 here, then divided by the held-out range (rec spans ~5e-4 on these few
    # clips, see test_contract_on_clips): measured 7e-5 on scores of order 25 whose frames
    # spread over 45-100 within a clip; 1e-3 absolute
    np.testing.assert_allclose(frames.mean(axis=1), det.score_samples(clips[:6]), rtol=0,
                               atol=1e-3)
    # a frame made white (the training frames are uniform noise) loses the most normality
    novel = clips[:1].copy()
    novel[0, 0, 3] = 1.0
    drop = det.score_frames(clips[:1]) - det.score_frames(novel)
    assert drop[0].argmax() == 3 and drop[0, 3] > 0


def test_contract_on_clips(clips, tmp_path):
    det = tiny_itae()
    with pytest.raises(NotFittedError):
        det.score_samples(clips)
    assert clone(det).get_params() == det.get_params()
    det.fit(clips)
    expected = det.score_samples(clips[:6])
    # exact: the same seed runs the same computation in the same process and thread count
    np.testing.assert_array_equal(tiny_itae().fit(clips).score_samples(clips[:6]), expected)
    # reversed, the clips sit at other positions in the zero-padded scoring chunks, where
    # float32 kernels may round differently (exact here). The raw terms are compared relative
    # to their size: the score's min-max scaling divides by held-out ranges up to 570x smaller
    # than the terms (rec ~0.27 spans 5e-4 on the few held-out clips), which would amplify
    # rounding. A clip's terms that depended on its neighbours would be off by far more.
    comps = det.score_components(clips[:6])
    reversed_comps = det.score_components(clips[:6][::-1])
    for name, values in comps.items():
        np.testing.assert_allclose(reversed_comps[name][::-1], values, rtol=0,
                                   atol=1e-5 * np.abs(values).max(), err_msg=name)
    # exact: predict thresholds this very decision_function (same rows, same process)
    assert det.predict(clips[:6]).tolist() == [1 if v >= 0 else -1 for v in det.decision_function(clips[:6])]
    det.save(tmp_path / "itae.pt")
    # exact: bit-identical weights scoring in the same process and thread count
    for other in (pickle.loads(pickle.dumps(det)), load(tmp_path / "itae.pt")):
        np.testing.assert_array_equal(other.score_samples(clips[:6]), expected)
    with pytest.raises(ValueError, match="accepts video clips"):
        tiny_itae().fit(clips[:, 0, 0])
    with pytest.raises(ValueError, match="tau=4"):
        tiny_itae().fit(clips[:, :, :6])
