"""Video toolkit: clips, frame scores, per-video normalisation, frame-level metrics, data."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sknovelty.datasets import load_ucsd_ped2, make_moving_shapes
from sknovelty.metrics import eer
from sknovelty.video import (clip_starts, clip_to_frame_scores, frame_auroc, frame_eer,
                             frames_to_clips, minmax_per_video, video_frame_scores)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(4, 40), t=st.integers(1, 8), stride=st.integers(1, 6))
def test_clips_cover_every_frame_and_hold_consecutive_frames(n, t, stride):
    if t > n:
        with pytest.raises(ValueError, match="shorter than clip_length"):
            clip_starts(n, t, stride)
        return
    video = np.arange(n * 2 * 3, dtype=np.float32).reshape(n, 2, 3)
    clips, starts = frames_to_clips(video, t, stride)
    assert clips.shape == (len(starts), 1, t, 2, 3)
    for i, s in enumerate(starts):
        np.testing.assert_array_equal(clips[i, 0], video[s:s + t])  # exact: copies of frames
    covered = np.zeros(n, bool)
    for s in starts:
        covered[s:s + t] = True
    assert covered.all() or stride > t  # a stride longer than the clip leaves gaps
    assert starts[0] == 0 and starts[-1] == n - t
    if stride > t and not covered.all():
        with pytest.raises(ValueError, match="in no clip"):
            clip_to_frame_scores(np.zeros(len(starts)), starts, t, n)


def test_colour_frames_become_channel_first_clips():
    video = np.random.RandomState(0).rand(10, 4, 5, 3)
    clips, _ = frames_to_clips(video, 4, 3)
    # clips are float32 copies of the float64 frames: one rounding, <= 6e-8 relative
    np.testing.assert_allclose(clips[1, :, 0], video[3].transpose(2, 0, 1), rtol=1e-6)


def test_clip_scores_to_frame_scores_by_hand():
    # 6 frames, clips of 3 with stride 2 -> starts 0, 2, 3 (the last covers frame 5)
    starts = clip_starts(6, 3, 2)
    assert starts.tolist() == [0, 2, 3]
    frame = clip_to_frame_scores([1.0, 4.0, 7.0], starts, 3, 6)
    # frame 0,1: clip0 ; frame 2: clips 0,1 ; frame 3,4: clips 1,2 ; frame 5: clip 2
    # (float64 means of small integers: exact, the default rtol=1e-7 is a mere margin)
    np.testing.assert_allclose(frame, [1, 1, 2.5, 5.5, 5.5, 7], rtol=1e-7)
    # one frame per clip (e.g. the middle one), nearest clip elsewhere
    middle = clip_to_frame_scores([1.0, 4.0, 7.0], starts, 3, 6, frame_offset=1)
    np.testing.assert_allclose(middle, [1, 1, 1, 4, 7, 7], rtol=1e-7)


def test_per_frame_clip_scores_stay_on_their_frames():
    starts = clip_starts(6, 3, 2)                        # [0, 2, 3], as above
    per_frame = np.array([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0], [100.0, 200.0, 300.0]])
    frame = clip_to_frame_scores(per_frame, starts, 3, 6)
    # frame 2: clip 0's 3rd frame and clip 1's 1st; frame 3: clip 1's 2nd and clip 2's 1st;
    # frame 4: clip 1's 3rd and clip 2's 2nd (exact float64 means, rtol a margin)
    np.testing.assert_allclose(frame, [1, 2, 6.5, 60, 115, 300], rtol=1e-7)
    # constant rows reduce to the per-clip mapping; an offset picks that frame of each clip
    np.testing.assert_allclose(clip_to_frame_scores(np.repeat([[1.0], [4.0], [7.0]], 3, 1),
                                                    starts, 3, 6), [1, 1, 2.5, 5.5, 5.5, 7])
    np.testing.assert_allclose(clip_to_frame_scores(per_frame, starts, 3, 6, frame_offset=1),
                               [2, 2, 2, 20, 200, 200])
    with pytest.raises(ValueError, match="3 frames"):
        clip_to_frame_scores(per_frame[:, :2], starts, 3, 6)


def test_per_video_normalisation_and_frame_level_metrics():
    # video A scores live on a different scale than video B: per-video min-max fixes it
    scores = [np.array([10.0, 10.5, 11.0, 12.0]), np.array([0.0, 0.5, 1.0, 2.0])]
    labels = [np.array([-1, 1, 1, 1]), np.array([-1, 1, 1, 1])]
    assert [s.tolist() for s in minmax_per_video(scores)] == [[0, 0.25, 0.5, 1], [0, 0.25, 0.5, 1]]
    assert frame_auroc(scores, labels) == 1.0
    assert frame_auroc(scores, labels, normalize=False) < 1.0
    assert frame_eer(scores, labels) == 0.0
    assert minmax_per_video([np.ones(3)])[0].tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="frame scores and"):
        frame_auroc([np.ones(3)], [np.ones(4)])


def test_eer_by_hand():
    y = np.array([1, 1, 1, 1, -1, -1, -1, -1])
    assert eer(y, np.arange(8)[::-1]) == 0.0              # perfect separation
    assert eer(y, np.arange(8)) == 1.0                    # perfectly wrong
    # one normal among the anomalies and one anomaly among the normals: EER 1/4
    s = np.array([8, 7, 6, 3, 5, 2, 1, 0])
    assert eer(y, s) == pytest.approx(0.25, rel=1e-6)  # a ratio of counts: float64 rounding only
    # random scores: measured EER 0.489 here; over 200 other seeds its standard deviation is
    # 0.0074, so 0.03 is 4 of them (RandomState is the same stream on every machine, and a
    # ratio of counts involves no float rounding)
    rng = np.random.RandomState(0)
    yy = np.where(rng.rand(4000) < 0.5, 1, -1)
    assert eer(yy, rng.rand(4000)) == pytest.approx(0.5, abs=0.03)


def test_video_frame_scores_with_a_scoring_function():
    video = np.random.RandomState(1).rand(20, 4, 4).astype(np.float32)
    (frame,) = video_frame_scores(lambda clips: -clips.mean(axis=(1, 2, 3, 4)), [video], 5, 3,
                                  batch_clips=2)
    clips, starts = frames_to_clips(video, 5, 3)
    # the same float32 clip means taken two at a time and all at once: numpy may vectorise
    # the reduction differently by array shape (~1e-7 relative on means ~0.5); a clip scored
    # with the wrong frames would be off by ~1e-2
    np.testing.assert_allclose(frame, clip_to_frame_scores(-clips.mean(axis=(1, 2, 3, 4)), starts, 5, 20),
                               rtol=1e-6)


def test_moving_shapes_are_deterministic_and_labelled():
    train, test, labels, events = make_moving_shapes(n_train=2, n_test=3, n_frames=80, size=24,
                                                     random_state=0)
    again = make_moving_shapes(n_train=2, n_test=3, n_frames=80, size=24, random_state=0)
    np.testing.assert_array_equal(test[1], again[1][1])  # exact: same seed, same computation
    assert len(train) == 2 and train[0].shape == (80, 24, 24) and train[0].dtype == np.float32
    assert all(0 <= v.min() and v.max() <= 1 for v in train + test)
    for lab, ev in zip(labels, events):
        assert {1, -1} == set(lab.tolist())
        assert {kind for kind, _, _ in ev} == {"fast", "shape", "direction"}
        for _, start, stop in ev:
            assert (lab[start:stop] == -1).sum() >= 5   # the event is visible for a while
    # the anomalies are real: a detector of motion to the left/fast motion flags them
    diff = [np.abs(np.diff(v, axis=0)).sum(axis=(1, 2)) for v in test]
    assert max(d.max() for d in diff) > 0


def _write_ped2_fixture(root, with_m_file):
    from PIL import Image

    rng = np.random.RandomState(0)
    for split, name, n in (("Train", "Train001", 3), ("Train", "Train002", 2), ("Test", "Test001", 4),
                           ("Test", "Test002", 3)):
        folder = root / split / name
        folder.mkdir(parents=True)
        for i in range(n):
            Image.fromarray((rng.rand(6, 9) * 255).astype(np.uint8)).save(folder / f"{i + 1:03d}.tif")
    truth = {"Test001": [False, True, True, False], "Test002": [False, False, True]}
    for name, flags in truth.items():
        gt = root / "Test" / f"{name}_gt"
        gt.mkdir()
        for i, flag in enumerate(flags):
            mask = np.zeros((6, 9), np.uint8)
            mask[2, 3] = 255 if flag else 0
            Image.fromarray(mask).save(gt / f"{i + 1:03d}.bmp")
    if with_m_file:
        (root / "Test" / "UCSDped2.m").write_text(
            "TestVideoFile = {};\nTestVideoFile{end+1}.gt_frame = [2:3];\n"
            "TestVideoFile{end+1}.gt_frame = [3:3];\n")
    return truth


@pytest.mark.parametrize("with_m_file", [True, False])
def test_ucsd_ped2_loader_reads_the_folder_layout(tmp_path, with_m_file):
    truth = _write_ped2_fixture(tmp_path / "UCSDped2", with_m_file)
    train, train_labels = load_ucsd_ped2(tmp_path / "UCSDped2", "train")
    assert [v.shape for v in train] == [(3, 6, 9), (2, 6, 9)]
    assert all((lab == 1).all() for lab in train_labels)
    test, labels = load_ucsd_ped2(tmp_path / "UCSDped2", "test")
    assert [v.shape for v in test] == [(4, 6, 9), (3, 6, 9)]
    assert 0 <= test[0].min() and test[0].max() <= 1
    for lab, flags in zip(labels, truth.values()):
        assert lab.tolist() == [-1 if f else 1 for f in flags]
    with pytest.raises(FileNotFoundError, match="UCSDped2 folder"):
        load_ucsd_ped2(tmp_path / "missing")


def test_frame_map_scores_split_the_autoencoders_score_over_frames():
    from sknovelty.registry import ESTIMATORS
    from sknovelty.video import frame_map_scores

    rng = np.random.RandomState(0)
    clips = rng.rand(16, 1, 4, 8, 8).astype(np.float32)
    det = ESTIMATORS["AE"].tiny(epochs=2, random_state=0).fit(clips)
    frames = frame_map_scores(det)(clips)
    assert frames.shape == (16, 4)
    # the clip's score is an affine function of the mean of its frames' scores (its map
    # sums to the normalised reconstruction error): correlation 1 up to float32 rounding
    assert np.corrcoef(frames.mean(axis=1), det.score_samples(clips))[0, 1] > 1 - 1e-5
    # a frame made novel (white, where the training frames are uniform noise) lowers that
    # frame's score most
    novel = clips[:1].copy()
    novel[0, 0, 2] = 1.0
    drop = frame_map_scores(det)(clips[:1]) - frame_map_scores(det)(novel)
    assert drop.argmax() == 2 and drop[0, 2] > 0
    with pytest.raises(TypeError, match="no anomaly maps"):
        frame_map_scores(ESTIMATORS["kNN"].tiny())

