"""Plots for novelty detection: ROC curves, score histograms, anomaly maps, frame scores.

The conventions are the library's: labels are scikit-learn's outlier labels (+1 normal,
-1 anomaly) and scores are normality scores, higher = more normal (what ``score_samples``
and ``decision_function`` return). Every function draws on ``ax`` (a new figure when it is
None) and returns that Axes.

matplotlib is an optional dependency (``pip install 'sknovelty[plot]'``): it is imported
when a function is called, so importing this module does not need it.
"""

from collections.abc import Mapping

import numpy as np
from sklearn.metrics import roc_curve

from .metrics import auroc

__all__ = ["plot_anomaly_map", "plot_frame_scores", "plot_roc", "plot_score_histogram"]

_MISSING = "sknovelty.plotting needs matplotlib: pip install 'sknovelty[plot]'"


def _axes(ax):
    """``ax``, or the Axes of a new figure when it is None."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError(_MISSING) from err
    if ax is None:
        _, ax = plt.subplots()
    return ax


def _scores(scores, name="scores", finite=True):
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or scores.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array; got shape {scores.shape}")
    if finite and not np.isfinite(scores).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    return scores


def _outlier_labels(y_true, n, name="y_true"):
    """Check that ``y_true`` holds n labels in {+1, -1} and return it as an int array."""
    y_true = np.asarray(y_true)
    if y_true.ndim != 1 or len(y_true) != n:
        raise ValueError(f"{name} must be 1-D with one label per score ({n}); got shape {y_true.shape}")
    values = set(np.unique(y_true).tolist())
    if y_true.dtype == bool or not values <= {1, -1}:
        raise ValueError(f"{name} must hold outlier labels +1 (normal) and -1 (anomaly); "
                         f"got {sorted(values)}")
    return y_true.astype(int)


def _number(value, name):
    """``value`` as a finite float (a Python or NumPy scalar, or a 0-d array)."""
    scalar = np.ndim(value) == 0 and not isinstance(value, (str, bytes))
    try:
        number = float(value) if scalar else np.nan
    except (TypeError, ValueError):
        number = np.nan
    if not np.isfinite(number):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    return number


def plot_roc(scores, y_true, ax=None):
    """ROC curves of one or more detectors, anomalies (-1) as the positive class.

    The x axis is the false alarm rate (share of normal rows flagged as anomalous), the y
    axis the detection rate (share of anomalies flagged), as the threshold on the normality
    score rises. Each curve's legend entry gives its AUROC (:func:`sknovelty.metrics.auroc`;
    the area is the same whichever class is called positive).

    Parameters
    ----------
    scores : dict of str -> array-like of shape (n,), or array-like of shape (n,)
        Normality scores (higher = more normal) of each detector; a single array is named
        "detector".
    y_true : array-like of shape (n,)
        +1 for normal rows, -1 for anomalies; both must be present.
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.

    Returns
    -------
    ax : matplotlib Axes
        One line per detector, labelled ``"name (AUROC 0.xxx)"``, then the dashed chance
        diagonal.

    See Also
    --------
    sknovelty.metrics.auroc : The area under these curves.
    plot_score_histogram : The score distributions behind a curve.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> from sknovelty.plotting import plot_roc
    >>> y = [1, 1, 1, -1, -1]
    >>> ax = plot_roc({"A": [0.9, 0.8, 0.3, 0.4, 0.1], "B": [0.9, 0.8, 0.7, 0.2, 0.1]}, y)
    >>> [t.get_text() for t in ax.get_legend().get_texts()]
    ['A (AUROC 0.833)', 'B (AUROC 1.000)', 'chance']
    >>> plt.close(ax.figure)
    """
    if not isinstance(scores, Mapping):
        scores = {"detector": scores}
    if not scores:
        raise ValueError("scores is an empty dict: give at least one detector's scores")
    curves = {}
    for name, s in scores.items():
        s = _scores(s, f"scores of {name!r}")
        y = _outlier_labels(y_true, len(s))
        if len(np.unique(y)) < 2:
            raise ValueError("a ROC curve needs both normal (+1) and anomalous (-1) rows in y_true")
        # anomalies are flagged when their novelty (-score) is high
        fpr, tpr, _ = roc_curve(y == -1, -s)
        curves[name] = fpr, tpr, auroc(y, s)
    ax = _axes(ax)
    for name, (fpr, tpr, area) in curves.items():
        ax.plot(fpr, tpr, label=f"{name} (AUROC {area:.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    ax.set_xlabel("false alarm rate (normal rows flagged)")
    ax.set_ylabel("detection rate (anomalies flagged)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower right")
    return ax


def plot_score_histogram(scores, y_true, threshold=None, ax=None, bins=30):
    """Histograms of the normality scores of normal and novel rows, on shared bins.

    Parameters
    ----------
    scores : array-like of shape (n,)
        Normality scores (higher = more normal).
    y_true : array-like of shape (n,)
        +1 for normal rows, -1 for novel ones; both must be present.
    threshold : float, optional
        Draws a vertical line labelled "threshold" at this score: ``det.offset_`` for
        ``det.score_samples`` scores, or 0 for ``det.decision_function`` scores (rows below
        it are predicted anomalous).
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.
    bins : int or sequence of float, default 30
        Number of bins, or the bin edges, shared by both histograms.

    Returns
    -------
    ax : matplotlib Axes
        Two density histograms labelled "normal" and "novel" (half transparent), and the
        threshold line when given.

    See Also
    --------
    plot_roc : The ROC curve these two distributions make.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> import numpy as np
    >>> from sknovelty.plotting import plot_score_histogram
    >>> rng = np.random.RandomState(0)
    >>> scores = np.r_[rng.normal(1, 1, 100), rng.normal(-2, 1, 20)]
    >>> y = np.r_[np.ones(100), -np.ones(20)]
    >>> ax = plot_score_histogram(scores, y, threshold=0.0, bins=20)
    >>> len(ax.patches), ax.lines[0].get_xdata()[0]
    (40, 0.0)
    >>> plt.close(ax.figure)
    """
    scores = _scores(scores)
    y = _outlier_labels(y_true, len(scores))
    if len(np.unique(y)) < 2:
        raise ValueError("plot_score_histogram needs both normal (+1) and novel (-1) rows in y_true")
    if threshold is not None:
        threshold = _number(threshold, "threshold")
    edges = np.histogram_bin_edges(scores, bins=bins)
    ax = _axes(ax)
    ax.hist(scores[y == 1], bins=edges, density=True, alpha=0.5, label="normal")
    ax.hist(scores[y == -1], bins=edges, density=True, alpha=0.5, label="novel")
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", label="threshold")
    ax.set_xlabel("normality score")
    ax.set_ylabel("density")
    ax.legend()
    return ax


def _grey_image(image):
    """An image (H, W), (1|3, H, W) or (H, W, 1|3) as a (H, W) grey array."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 3 and image.shape[0] in (1, 3):  # channel-first, the library's layout
        image = np.moveaxis(image, 0, -1)
    elif not (image.ndim == 2 or (image.ndim == 3 and image.shape[-1] in (1, 3))):
        raise ValueError("image must be (H, W), (1, H, W), (3, H, W) or (H, W, 3); "
                         f"got shape {image.shape}")
    if image.ndim == 2:
        return image
    if image.shape[-1] == 1:
        return image[..., 0]
    return image @ np.array([0.299, 0.587, 0.114])  # luma (ITU-R BT.601)


def plot_anomaly_map(image, score_map, ax=None, alpha=0.5, cmap="jet"):
    """An image in grey with a score map overlaid on it, and a colorbar for the map.

    Parameters
    ----------
    image : array-like of shape (H, W), (1, H, W), (3, H, W) or (H, W, 3)
        Channel-first like the library's image inputs, or channel-last RGB; colour images
        are shown by their luma. A 3-channel first axis is taken as channel-first.
    score_map : array-like of shape (H, W) or (C, H, W)
        A value per pixel (e.g. a reconstruction error); a (C, H, W) map is averaged over
        its channels. Its spatial size must be the image's.
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.
    alpha : float in [0, 1], default 0.5
        Opacity of the map.
    cmap : str or Colormap, default "jet"
        Colormap of the map.

    Returns
    -------
    ax : matplotlib Axes
        Its axis is off; ``ax.images[0]`` is the grey image, ``ax.images[1]`` the map.

    See Also
    --------
    sknovelty.base.BaseDeepDetector.score_maps : Anomaly maps of a detector's samples.
    plot_score_histogram : The distributions of the samples' scores.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> import numpy as np
    >>> from sknovelty.plotting import plot_anomaly_map
    >>> image = np.random.RandomState(0).rand(1, 8, 8)
    >>> score_map = np.zeros((8, 8)); score_map[2:4, 5:7] = 1.0
    >>> ax = plot_anomaly_map(image, score_map)
    >>> ax.images[1].get_array().shape
    (8, 8)
    >>> plt.close(ax.figure)
    """
    grey = _grey_image(image)
    score_map = np.asarray(score_map, dtype=np.float64)
    if score_map.ndim == 3:
        score_map = score_map.mean(axis=0)
    if score_map.ndim != 2:
        raise ValueError(f"score_map must be (H, W) or (C, H, W); got shape {score_map.shape}")
    if score_map.shape != grey.shape:
        raise ValueError(f"score_map's spatial shape {score_map.shape} does not match the "
                         f"image's {grey.shape}")
    if not 0 <= _number(alpha, "alpha") <= 1:
        raise ValueError(f"alpha must be a number in [0, 1]; got {alpha!r}")
    ax = _axes(ax)
    ax.imshow(grey, cmap="gray")
    overlay = ax.imshow(score_map, cmap=cmap, alpha=alpha)
    ax.figure.colorbar(overlay, ax=ax)
    ax.set_axis_off()
    return ax


def _runs(flags):
    """(start, stop) of each run of True in a boolean vector, stop exclusive."""
    edges = np.diff(np.r_[0, flags.astype(np.int8), 0])
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def plot_frame_scores(scores, labels=None, ax=None, threshold=None):
    """A timeline of frame scores, with the anomalous frames shaded.

    Parameters
    ----------
    scores : array-like of shape (n_frames,)
        A normality score per frame (e.g. from :func:`sknovelty.video.clip_to_frame_scores`).
    labels : array-like of shape (n_frames,), optional
        +1 (normal) / -1 (anomalous) per frame, or booleans, True for an anomalous frame.
        Each run of anomalous frames ``i..j`` is shaded from ``i - 0.5`` to ``j + 0.5``.
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.
    threshold : float, optional
        Draws a horizontal line labelled "threshold" at this score.

    Returns
    -------
    ax : matplotlib Axes
        The score line against the frame index, one shaded span (``ax.patches``) per run of
        anomalous frames, labelled "anomaly" once, and the threshold line when given.

    See Also
    --------
    sknovelty.video.frame_auroc : Frame-level AUROC over several videos.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> from sknovelty.plotting import plot_frame_scores
    >>> scores = [0.9, 0.8, 0.2, 0.1, 0.8, 0.9, 0.3, 0.9]
    >>> labels = [1, 1, -1, -1, 1, 1, -1, 1]
    >>> ax = plot_frame_scores(scores, labels, threshold=0.5)
    >>> len(ax.patches)
    2
    >>> plt.close(ax.figure)
    """
    scores = _scores(scores, finite=False)  # NaN frames are gaps in the line
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != scores.shape:
            raise ValueError(f"labels must be 1-D with one label per frame ({len(scores)}); "
                             f"got shape {labels.shape}")
        anomalous = labels if labels.dtype == bool else _outlier_labels(labels, len(scores), "labels") == -1
    if threshold is not None:
        threshold = _number(threshold, "threshold")
    ax = _axes(ax)
    ax.plot(np.arange(len(scores)), scores, label="frame score")
    if labels is not None:
        for k, (start, stop) in enumerate(_runs(anomalous)):
            ax.axvspan(start - 0.5, stop - 0.5, color="red", alpha=0.2,
                       label="anomaly" if k == 0 else "_nolegend_")
    if threshold is not None:
        ax.axhline(threshold, color="black", linestyle="--", label="threshold")
    ax.set_xlabel("frame")
    ax.set_ylabel("normality score")
    ax.legend()
    return ax
