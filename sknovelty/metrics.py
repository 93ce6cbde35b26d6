"""Metrics for novelty detection with scikit-learn's outlier labels (+1 normal, -1 anomaly)."""

import numpy as np
from sklearn.metrics import make_scorer, roc_auc_score

__all__ = ["auroc", "auroc_scorer"]


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
    """
    y_true = np.asarray(y_true)
    labels = set(np.unique(y_true).tolist())
    if labels != {1, -1}:
        raise ValueError(f"auroc needs labels +1 (normal) and -1 (anomaly), both present; got {sorted(labels)}")
    return float(roc_auc_score(y_true == 1, scores))


#: ``GridSearchCV(det, grid, scoring=auroc_scorer)`` with ``y`` in {+1, -1}: AUROC of
#: ``decision_function``, normal rows positive. Use stratified folds so that each holds both.
auroc_scorer = make_scorer(auroc, response_method="decision_function")
