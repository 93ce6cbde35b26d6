"""Metrics for novelty detection with scikit-learn's outlier labels (+1 normal, -1 anomaly)."""

import zlib

import numpy as np
from sklearn.metrics import make_scorer, roc_auc_score, roc_curve

__all__ = ["auroc", "auroc_scorer", "code_length", "eer"]


def auroc(y_true, scores):
    """Area under the ROC curve with normal samples (+1) as the positive class.

    Parameters
    ----------
    y_true : array-like of shape (n,) with values in {+1, -1}
    scores : array-like of shape (n,)
        Normality scores, higher = more normal (``score_samples`` / ``decision_function``).

    Returns
    -------
    float

    See Also
    --------
    eer : The equal error rate of the same scores.
    auroc_scorer : This metric as a scorer for ``GridSearchCV`` and ``cross_val_score``.
    sknovelty.video.frame_auroc : Frame-level AUROC over several videos.
    """
    y_true = np.asarray(y_true)
    labels = set(np.unique(y_true).tolist())
    if labels != {1, -1}:
        raise ValueError(f"auroc needs labels +1 (normal) and -1 (anomaly), both present; got {sorted(labels)}")
    return float(roc_auc_score(y_true == 1, scores))


#: ``GridSearchCV(det, grid, scoring=auroc_scorer)`` with ``y`` in {+1, -1}: AUROC of
#: ``decision_function``, normal rows positive. Use stratified folds so that each holds both.
auroc_scorer = make_scorer(auroc, response_method="decision_function")


def eer(y_true, scores):
    """Equal error rate, interpolated on the ROC curve.

    The error where the false positive rate (normal flagged) equals the false negative rate
    (anomaly missed), interpolated on the ROC curve.

    Parameters
    ----------
    y_true : array-like of shape (n,) with values in {+1, -1}
        Both labels must be present.
    scores : array-like of shape (n,)
        Normality scores (higher = more normal).

    Returns
    -------
    float

    See Also
    --------
    auroc : The area under the ROC curve of the same scores.
    sknovelty.video.frame_eer : Frame-level EER over several videos.
    """
    y_true = np.asarray(y_true)
    if set(np.unique(y_true).tolist()) != {1, -1}:
        raise ValueError("eer needs labels +1 (normal) and -1 (anomaly), both present")
    # anomalies are the positives of the detection task: rank by novelty = -score
    fpr, tpr, _ = roc_curve(y_true == -1, -np.asarray(scores, dtype=np.float64))
    fnr = 1 - tpr
    i = np.flatnonzero(fnr <= fpr)[0]  # first point where the curves have crossed
    if i == 0:
        return float(fpr[0])
    # linear interpolation between points i-1 and i of fpr - fnr = 0
    d0, d1 = fpr[i - 1] - fnr[i - 1], fpr[i] - fnr[i]
    t = d0 / (d0 - d1) if d0 != d1 else 0.0
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def code_length(X, low=0.0, high=1.0):
    """Bits per dimension that a generic lossless compressor needs for each sample.

    Each sample is mapped from ``[low, high]`` to 8-bit integers (clipped) and compressed
    with zlib at its highest level (the compressor inside PNG). This is the complexity
    estimate L(x) of Serra et al. (ICLR 2020, eq. 2), who used PNG, JPEG2000 and FLIF; any
    lossless compressor gives an upper bound on the code length. zlib's header and checksum
    add the same ~6 bytes to every sample, which shifts L but not its ranking.

    Parameters
    ----------
    X : ndarray of shape (n, ...)
        Samples; every value after the first axis is one dimension.
    low, high : float, default=0.0, 1.0
        The value range mapped to 0 and 255.

    Returns
    -------
    ndarray of shape (n,)
        ``8 * compressed bytes / dimensions`` per sample (float64).

    See Also
    --------
    sknovelty.FlowDensityDetector : Its ``score_type="complexity"`` subtracts this from the NLL.
    sknovelty.base.BaseDeepDetector : ``complexity_correlation_`` compares scores with it.

    Examples
    --------
    >>> import numpy as np
    >>> from sknovelty.metrics import code_length
    >>> flat, noise = np.zeros((1, 256)), np.random.RandomState(0).uniform(size=(1, 256))
    >>> bool(code_length(flat)[0] < code_length(noise)[0])
    True
    """
    X = np.asarray(X, dtype=np.float64)
    rows = X.reshape(len(X), -1)
    q = np.clip(np.rint((rows - low) / max(high - low, 1e-12) * 255), 0, 255).astype(np.uint8)
    # zlib compresses one sample per call (C code); there is no batched form
    sizes = np.fromiter((len(zlib.compress(row.tobytes(), 9)) for row in q), float, len(q))
    return 8 * sizes / rows.shape[1]
