import importlib
import sys

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from sknovelty import plotting  # importable without matplotlib
from sknovelty.plotting import (
    plot_anomaly_map,
    plot_frame_scores,
    plot_roc,
    plot_score_histogram,
)

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture
def scored():
    """Normality scores of two detectors, a good and a weak one, on 60 normal + 20 novel rows."""
    rng = np.random.RandomState(0)
    y = np.r_[np.ones(60, dtype=int), -np.ones(20, dtype=int)]
    good = np.r_[rng.normal(2, 1, 60), rng.normal(-1, 1, 20)]
    weak = np.r_[rng.normal(0.3, 1, 60), rng.normal(0, 1, 20)]
    return {"good": good, "weak": weak}, y


def _saves(ax, tmp_path):
    path = tmp_path / "figure.png"
    ax.figure.savefig(path)
    return path.stat().st_size > 0


def _span_x(patch):
    """Data x-range of an axvspan patch (a Rectangle, or a Polygon before matplotlib 3.9)."""
    x = patch.get_patch_transform().transform(patch.get_path().vertices)[:, 0]
    return x.min(), x.max()


# plot_roc ----------------------------------------------------------------------------------

def test_roc_lines_legend_and_endpoints(scored, tmp_path):
    scores, y = scored
    ax = plot_roc(scores, y)
    assert len(ax.lines) == 3  # two detectors + chance diagonal
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    for name, line, text in zip(scores, ax.lines, texts):
        expected = roc_auc_score(y == 1, scores[name])
        assert text == f"{name} (AUROC {expected:.3f})"
        assert line.get_label() == text
        x, yy = line.get_xydata().T
        assert (x[0], yy[0]) == (0, 0) and (x[-1], yy[-1]) == (1, 1)
        assert np.all(np.diff(x) >= 0) and np.all(np.diff(yy) >= 0)
    diagonal = ax.lines[2]
    assert diagonal.get_linestyle() == "--"
    np.testing.assert_array_equal(diagonal.get_xydata(), [[0, 0], [1, 1]])
    assert ax.get_xlabel() and ax.get_ylabel()
    assert _saves(ax, tmp_path)


def test_roc_anomalies_are_the_positive_class():
    # a perfect detector: its curve reaches detection rate 1 at false alarm rate 0
    y = np.array([1, 1, 1, -1, -1])
    ax = plot_roc(np.array([5.0, 4, 3, 2, 1]), y)
    x, yy = ax.lines[0].get_xydata().T
    assert np.any((x == 0) & (yy == 1))
    assert ax.get_legend().get_texts()[0].get_text() == "detector (AUROC 1.000)"
    # an inverted one stays on the axes: detection rate 0 until every normal row is flagged
    ax = plot_roc(-np.array([5.0, 4, 3, 2, 1]), y)
    x, yy = ax.lines[0].get_xydata().T
    assert np.all(yy[x < 1] == 0)


def test_roc_draws_on_given_axes():
    _, ax = plt.subplots()
    assert plot_roc([0.9, 0.1], [1, -1], ax=ax) is ax


@pytest.mark.parametrize("scores, y, match", [
    ([0.1, 0.2, 0.3], [1, -1], "one label per score"),
    ([0.1, 0.2, 0.3], [1, 0, -1], "outlier labels"),
    ([0.1, 0.2, 0.3], [True, False, True], "outlier labels"),
    ([0.1, 0.2, 0.3], [1, 1, 1], "both"),
    ([0.1, np.nan, 0.3], [1, -1, 1], "NaN"),
    ([[0.1, 0.2]], [1, -1], "1-D"),
    ({}, [1, -1], "empty"),
    ({"a": [0.1, 0.2], "b": [0.1, 0.2, 0.3]}, [1, -1], "one label per score"),
])
def test_roc_bad_input(scores, y, match):
    with pytest.raises(ValueError, match=match):
        plot_roc(scores, y)


# plot_score_histogram ----------------------------------------------------------------------

def test_histogram_patches_bins_and_threshold(scored, tmp_path):
    scores, y = scored
    s = scores["good"]
    ax = plot_score_histogram(s, y, threshold=0.25, bins=12)
    assert len(ax.patches) == 24  # 12 bars per class
    normal, novel = ax.patches[:12], ax.patches[12:]
    edges = np.histogram_bin_edges(s, bins=12)
    for bars in (normal, novel):
        np.testing.assert_allclose([b.get_x() for b in bars], edges[:-1])  # shared edges
        widths = np.array([b.get_width() for b in bars])
        assert np.sum([b.get_height() for b in bars] * widths) == pytest.approx(1.0)  # density
        assert bars[0].get_alpha() < 1
    np.testing.assert_allclose([b.get_height() for b in normal],
                               np.histogram(s[y == 1], bins=edges, density=True)[0])
    assert len(ax.lines) == 1
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [0.25, 0.25])
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts == ["normal", "novel", "threshold"]
    assert ax.get_xlabel() == "normality score"
    assert _saves(ax, tmp_path)


def test_histogram_without_threshold(scored):
    scores, y = scored
    ax = plot_score_histogram(scores["weak"], y)
    assert len(ax.patches) == 60 and not ax.lines


@pytest.mark.parametrize("kwargs, match", [
    ({"y_true": np.ones(80)}, "both"),
    ({"y_true": np.r_[np.ones(60), np.zeros(20)]}, "outlier labels"),
    ({"y_true": np.ones(79)}, "one label per score"),
    ({"threshold": "high"}, "threshold"),
    ({"threshold": np.nan}, "threshold"),
    ({"threshold": [0.0, 1.0]}, "threshold"),
])
def test_histogram_bad_input(scored, kwargs, match):
    scores, y = scored
    kwargs = {"y_true": y, **kwargs}
    with pytest.raises(ValueError, match=match):
        plot_score_histogram(scores["good"], **kwargs)


# plot_anomaly_map --------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(6, 9), (1, 6, 9), (3, 6, 9), (6, 9, 3)])
def test_anomaly_map_overlay(shape, tmp_path):
    rng = np.random.RandomState(0)
    image = rng.rand(*shape)
    score_map = rng.rand(6, 9)
    ax = plot_anomaly_map(image, score_map, alpha=0.4, cmap="viridis")
    assert len(ax.images) == 2
    grey, overlay = ax.images
    assert grey.get_array().shape == overlay.get_array().shape == (6, 9)
    assert grey.get_cmap().name == "gray"
    assert overlay.get_cmap().name == "viridis" and overlay.get_alpha() == 0.4
    np.testing.assert_allclose(overlay.get_array(), score_map)
    assert overlay.get_extent() == grey.get_extent() == [-0.5, 8.5, 5.5, -0.5]
    assert not ax.axison
    assert len(ax.figure.axes) == 2  # the image axes and the colorbar
    assert _saves(ax, tmp_path)


def test_anomaly_map_channel_map_is_averaged():
    score_map = np.stack([np.zeros((5, 5)), np.ones((5, 5)), 2 * np.ones((5, 5))])
    ax = plot_anomaly_map(np.zeros((1, 5, 5)), score_map)
    np.testing.assert_allclose(ax.images[1].get_array(), np.ones((5, 5)))


def test_anomaly_map_grey_of_colour_image():
    red = np.zeros((3, 4, 4))
    red[0] = 1.0
    ax = plot_anomaly_map(red, np.zeros((4, 4)))
    np.testing.assert_allclose(ax.images[0].get_array(), 0.299)


@pytest.mark.parametrize("image, score_map, kwargs, match", [
    (np.zeros((8, 8)), np.zeros((8, 7)), {}, "does not match"),
    (np.zeros((1, 8, 8)), np.zeros((2, 4, 4)), {}, "does not match"),
    (np.zeros((2, 8, 8)), np.zeros((8, 8)), {}, "image must be"),
    (np.zeros((8,)), np.zeros((8,)), {}, "image must be"),
    (np.zeros((8, 8)), np.zeros((1, 1, 8, 8)), {}, "score_map must be"),
    (np.zeros((8, 8)), np.zeros((8, 8)), {"alpha": 1.5}, "alpha"),
])
def test_anomaly_map_bad_input(image, score_map, kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot_anomaly_map(image, score_map, **kwargs)


# plot_frame_scores -------------------------------------------------------------------------

LABELS = np.array([1, 1, -1, -1, -1, 1, 1, 1, -1, -1])  # anomalous runs: frames 2-4 and 8-9


@pytest.mark.parametrize("labels", [LABELS, LABELS == -1], ids=["outlier", "bool"])
def test_frame_scores_spans(labels, tmp_path):
    scores = np.linspace(1, 0, 10)
    ax = plot_frame_scores(scores, labels, threshold=0.3)
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), np.arange(10))
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), scores)
    assert len(ax.patches) == 2
    assert _span_x(ax.patches[0]) == (1.5, 4.5)
    assert _span_x(ax.patches[1]) == (7.5, 9.5)
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts.count("anomaly") == 1 and "threshold" in texts
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), [0.3, 0.3])
    assert ax.get_ylabel() == "normality score"
    assert _saves(ax, tmp_path)


def test_frame_scores_single_frame_run_and_no_labels():
    ax = plot_frame_scores([0.5, 0.1, 0.5], [1, -1, 1])
    assert len(ax.patches) == 1 and _span_x(ax.patches[0]) == (0.5, 1.5)
    ax = plot_frame_scores([0.5, 0.1, 0.5])
    assert not ax.patches and len(ax.lines) == 1
    ax = plot_frame_scores([0.5, 0.1, 0.5], [1, 1, 1])
    assert not ax.patches


@pytest.mark.parametrize("labels, kwargs, match", [
    ([1, -1], {}, "one label per frame"),
    ([True, False], {}, "one label per frame"),
    ([0, 1, 1], {}, "outlier labels"),
    (None, {"threshold": "x"}, "threshold"),
])
def test_frame_scores_bad_input(labels, kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot_frame_scores([0.5, 0.1, 0.5], labels, **kwargs)


def test_frame_scores_rejects_2d_scores():
    with pytest.raises(ValueError, match="1-D"):
        plot_frame_scores(np.zeros((3, 2)))


# without matplotlib -------------------------------------------------------------------------

def test_import_without_matplotlib(monkeypatch):
    try:
        for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
            monkeypatch.setitem(sys.modules, name, None)
        monkeypatch.setitem(sys.modules, "matplotlib", None)
        module = importlib.reload(plotting)  # importing needs no matplotlib
        with pytest.raises(ImportError, match=r"pip install 'sknovelty\[plot\]'"):
            module.plot_roc([0.9, 0.1], [1, -1])
        with pytest.raises(ImportError, match="needs matplotlib"):
            module.plot_frame_scores([0.9, 0.1])
    finally:
        monkeypatch.undo()
        importlib.reload(plotting)
    assert plotting.plot_roc([0.9, 0.1], [1, -1]).lines
