"""Model files without pickle: tensors in the safetensors format, everything else as JSON.

A model file is a `safetensors <https://huggingface.co/docs/safetensors>`_ file. Its tensors
are the weights (deep detectors) or the fitted arrays (whitened baselines); its string
metadata holds JSON: the class name, the hyperparameters, the fitted scalar attributes and the
training history. Reading it parses a length-prefixed JSON header and copies raw tensor bytes,
so opening a model file, even a crafted one, never executes code. Classes are looked up by
name among sknovelty's own estimators, never imported from the file.

Layout (format version 2)
-------------------------
Tensors
    Deep detectors: ``module.<key>`` and ``criterion.<key>``, the state dicts of the network
    and of the criterion, on the CPU. Whitened baselines: ``fitted.<name>``, ``pca.<name>``
    and ``scorer.<name>``, the numeric array attributes of the detector, of its ``PCA`` and of
    its scorer (for ``KernelDensity``: ``scorer.data``, the whitened training rows it is
    refitted on). The nearest-neighbour detector: ``fitted.<name>`` (its numeric fitted
    arrays: the reference scores) and ``index.rows``, the indexed training rows as float32
    ``(n, prod(sample_shape_))``, from which the index is rebuilt on load (its other arrays
    are computed from the rows row by row, so the loaded model scores bit-identically).
Metadata (``str -> str``)
    ``format`` (``"sknovelty-model"``), ``format_version`` (``"2"``), ``class``, and the JSON
    strings ``params``, ``fitted``, ``versions`` and, for deep detectors, ``history``.
    For deep detectors ``fitted`` maps each name in ``_fitted_attributes`` to its value; for
    the whitened baselines it has the sections ``detector``, ``pca`` and ``scorer``, each
    ``{"values": {name: JSON}, "arrays": {name: "C" | "F" | "scalar"}, "str_arrays": {...}}``
    (``arrays`` names the tensors of the section and how to lay them out again), the last two
    also with the estimator's ``params``, and ``scorer`` with ``refit``. For the
    nearest-neighbour detector ``fitted`` has the one section ``detector``; its rows are
    checked on load (finite float32, as many values per row as ``sample_shape_``, at least
    ``n_neighbors`` rows).

Composite files: PatchwiseDetector and Pipeline
-----------------------------------------------
A :class:`~sknovelty.PatchwiseDetector`, a :class:`sklearn.pipeline.Pipeline` and some
scikit-learn transformers are stored in the same format (version 2: a reader that predates
them refuses their class by name). Every estimator in the file has a *prefix*: ``""`` for the
one saved, ``<parent>steps.<i>.`` for the ``i``-th step of a Pipeline, ``<parent>estimator.``
and ``<parent>estimator_.`` for the unfitted template and the fitted clone of a
PatchwiseDetector. Its metadata entries and tensors are those above, each name preceded by
its prefix (``steps.1.class``, ``steps.1.params``, ``steps.1.fitted``, ``steps.1.history``,
``steps.1.module.<key>``), so a file holding a single estimator is the prefix ``""`` case and
the readers and writers of the deep detectors and the whitened baselines serve every level.

``class``
    A registered sknovelty estimator; ``"Pipeline"``; or one of the scikit-learn transformers
    of :data:`TRANSFORMERS` (an explicit allow-list, looked up by name, never imported from
    the file: ``FunctionTransformer`` and anything that holds code is refused).
Pipeline
    ``steps`` is the JSON list of step names (Python identifiers without ``__``, unique);
    ``params`` its other parameters (``memory`` and ``transform_input`` must be None). Every
    step but the last is a transformer (or a Pipeline ending with one), so a file holds at
    most one fitted deep detector.
PatchwiseDetector
    ``params`` without ``estimator``; ``estimator.`` holds the template (class and
    ``params`` only), ``estimator_.`` the fitted clone, and ``fitted`` the detector's own
    fitted values in the section layout of :func:`_encode_attributes`. ``patch_starts_`` is
    not stored: it is recomputed from ``sample_shape_``, ``patch_size`` and ``stride``.
scikit-learn transformers
    ``params`` (JSON, validated by the class's own parameter validation) and ``fitted`` (a
    section as for the whitened baselines, tensors ``<prefix>fitted.<name>``), with exactly
    the class's fitted attributes, of shapes consistent with ``n_features_in_``, finite, and
    consistent with the parameters (``with_mean`` needs ``mean_``, scales are positive...).

Composites nest at most ``MAX_NESTING`` deep and hold at most ``MAX_ESTIMATORS``
estimators; every tensor must belong to the estimator whose prefix it carries.

Reading is bounded: see :func:`load` and the ``MAX_*`` constants below (checked by
:func:`save` too, so that no file is written that would not load).
"""

import errno
import json
import math
import numbers
import os
import re
import stat
import struct
import sys
import tempfile
import warnings

import numpy as np
import safetensors
import sklearn
import torch
from sklearn.utils.validation import check_is_fitted
from torch.utils._python_dispatch import TorchDispatchMode

from ._version import __version__

__all__ = ["FORMAT", "FORMAT_VERSION", "TRANSFORMERS", "ModelFileMixin", "load", "register",
           "save"]

FORMAT = "sknovelty-model"
#: Version 1 was a ``torch.save`` zip; 2 is safetensors. Bump when a reader of the previous
#: version would misread a new file.
FORMAT_VERSION = 2

# ---------------------------------------------------------------- limits of a model file
# A model file is read as untrusted input: these bounds are checked before anything they
# size is allocated (and by ``save``, so that no model is written that ``load`` refuses).
# Each was chosen far above what a model of the papers' sizes needs.

#: The JSON header (tensor table and metadata): bytes. sknovelty's own files hold a few KB
#: plus the training history and the reference scores.
MAX_HEADER_BYTES = 32 << 20
#: One metadata string (``params``, ``fitted``, ``history``, ...): bytes.
MAX_METADATA_BYTES = 16 << 20
#: The training history (``history``): bytes. ``save`` drops the per-batch records (keeping
#: the per-epoch ones, with a warning) of a history that would be longer.
MAX_HISTORY_BYTES = 8 << 20
#: Nesting depth of any JSON text in the file (sknovelty writes at most 6).
MAX_JSON_DEPTH = 32
#: Tensors in a file (the largest registry network at its defaults has a few hundred).
MAX_TENSORS = 10_000
#: Axes of one tensor, and the length of one axis.
MAX_TENSOR_RANK, MAX_TENSOR_DIM = 8, 2**31 - 1
#: Values of one sample (``sample_shape_``): 2**24, 64 MiB in float32 (a 3x16x256x256 clip
#: has 3.1 M).
MAX_SAMPLE_VALUES = 2**24
#: Any integer size hyperparameter (``latent_dim``, ``hidden_dim``, every entry of a
#: channel tuple, ``n_bins``, ``n_steps``, ...: every integer parameter but those of
#: ``UNBOUNDED_PARAMS`` and the batch sizes), and the width multiplier ``width``.
MAX_WIDTH, MAX_WIDTH_FACTOR = 4096, 64.0
#: Integer parameters that size nothing a load or a score allocates (``n_jobs`` and the batch
#: sizes have limits of their own; ``n_neighbors`` must not exceed the rows in the file). A
#: class adds its own in ``_unbounded_params`` (Deep SVDD: ``("lr_milestones",)``, epochs).
UNBOUNDED_PARAMS = frozenset({"epochs", "flow_epochs", "warmup_epochs", "mask_update_period",
                              "random_state", "verbose", "n_components", "n_jobs", "batch_size",
                              "score_batch_size", "n_neighbors"})
#: Rows of a training or scoring batch (``batch_size``, ``batch_size_``, ``score_batch_size``)
#: and the input values one scoring chunk may hold (rows x sample values: 1 GiB of float32).
MAX_BATCH_ROWS, MAX_CHUNK_VALUES = 2**16, 2**28
#: ``|n_jobs|``: the CPUs of this machine, or 64 where it has fewer.
MAX_THREADS = max(os.cpu_count() or 1, 64)
#: Building a deep detector's networks may allocate (in all, temporaries included) at most
#: this many times the bytes of the weights in the file, plus ``BUILD_SLACK_BYTES``; it stops
#: with a ``ValueError`` as soon as a tensor would exceed that.
BUILD_FACTOR, BUILD_SLACK_BYTES = 8, 64 << 20

#: Composite files (Pipeline, PatchwiseDetector): levels of estimators below the one saved
#: (a Pipeline's steps are one level below it), and estimators in a file.
MAX_NESTING, MAX_ESTIMATORS = 4, 256

#: safetensors dtype names read and written (complex and 8-bit float types are refused).
_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
           "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32, "I16": torch.int16,
           "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}
_DTYPE_NAMES = {v: k for k, v in _DTYPES.items()}


#: sknovelty's own public estimators: class name -> (class, "deep" | "whitened" |
#: "neighbors" | "patchwise"). Filled by
#: :func:`register`, which the estimators' base classes call for each subclass they get.
_REGISTRY = {}


def register(cls, kind):
    """Make ``cls`` restorable by name (called from ``__init_subclass__`` of the bases).

    ``kind`` says how its fitted state is stored: ``"deep"`` (weights of ``net_``),
    ``"whitened"`` (PCA and scorer arrays) or ``"neighbors"`` (the indexed rows). Only public
    classes defined in sknovelty count: a subclass defined elsewhere could reuse the name of
    one of ours and shadow it.
    """
    if cls.__module__.partition(".")[0] == "sknovelty" and not cls.__name__.startswith("_"):
        _REGISTRY[cls.__name__] = (cls, kind)


class ModelFileMixin:
    """``save(path)`` and ``load(path)`` for an estimator base class, and its registration.

    Every subclass is registered by name when it is defined (see :func:`register`), with the
    base's ``_file_kind`` (``"deep"`` or ``"whitened"``), so :func:`load` finds it without
    importing anything a file names.
    """

    _file_kind = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "_file_kind" not in vars(cls):  # the abstract bases declare it: not restorable
            register(cls, cls._file_kind)

    def save(self, path):
        """Write the fitted estimator to ``path`` as a safetensors file.

        Weights (or fitted arrays) are safetensors tensors; hyperparameters, fitted attributes
        and the training history are JSON in the file's metadata. Nothing is pickled, so
        loading the file never runs code. ``callbacks`` are not stored.

        Parameters
        ----------
        path : str or path-like
            Destination, conventionally ``*.safetensors``.

        Returns
        -------
        None

        See Also
        --------
        load : Read the file back as an estimator of this class.
        sknovelty.io.save : The function this method calls (its errors and notes apply).
        """
        save(self, path)

    @classmethod
    def load(cls, path, device=None):
        """Load an estimator of this class written by :meth:`save`.

        Parameters
        ----------
        path : str or path-like
            A model file written by :meth:`save`.
        device : str or None, default=None
            For the deep detectors; see :func:`load`.

        Returns
        -------
        estimator : cls

        Raises
        ------
        TypeError
            If the file holds another estimator class.
        ValueError
            If the file is not a valid sknovelty model file (see :func:`load`).

        See Also
        --------
        save : Write a fitted estimator to a model file.
        sknovelty.io.load : Read a model file of any sknovelty estimator class.
        """
        model = load(path, device=device)
        if not isinstance(model, cls):
            raise TypeError(f"{path} holds a {type(model).__name__}, not a {cls.__name__}")
        return model


def _registry():
    """Registered estimators by class name."""
    return {name: cls for name, (cls, _) in _REGISTRY.items()}


def _is_deep(cls):
    return _REGISTRY[cls.__name__][1] == "deep"


def _plain(value):
    """Tuples become lists in JSON; turn them back into tuples on load."""
    return tuple(_plain(v) for v in value) if isinstance(value, list) else value


def _jsonable(value):
    """numpy arrays and scalars (fitted attributes, also inside dicts) as JSON lists and numbers."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _is_json_value(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    return isinstance(value, (list, tuple)) and all(_is_json_value(v) for v in value)


def _cpu_copy(tensor):
    # safetensors refuses tensors that share memory (tied weights, views) or are not
    # contiguous: a contiguous copy of each is always accepted.
    return tensor.detach().cpu().clone(memory_format=torch.contiguous_format)


# ---------------------------------------------------------------- scikit-learn attributes
def _encode_attributes(attrs, prefix, tensors, owner):
    """Split fitted attributes into tensors (added to ``tensors``) and a JSON description.

    Numeric arrays and numpy scalars become tensors named ``prefix.name``. Their memory order
    and scalar-ness are recorded so that the restored arrays are laid out as the fitted ones
    (BLAS may round differently on a transposed operand, and scores must be bit-identical).
    """
    section = {"values": {}, "arrays": {}, "str_arrays": {}}
    for name, value in attrs.items():
        if isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind in "biuf":
            array = np.asarray(value)
            if isinstance(value, np.generic):
                layout = "scalar"
            elif array.ndim > 1 and array.flags.f_contiguous and not array.flags.c_contiguous:
                layout, array = "F", array.T
            else:
                layout = "C"
            # a native-endian C-order copy (np.ascontiguousarray would make a scalar 1-d)
            array = np.array(array, dtype=array.dtype.newbyteorder("="), order="C")
            tensors[f"{prefix}.{name}"] = torch.from_numpy(array)
            section["arrays"][name] = layout
        elif isinstance(value, np.ndarray) and all(isinstance(v, str) for v in value.ravel()):
            # e.g. feature_names_in_ after a fit on a DataFrame
            section["str_arrays"][name] = value.tolist()
        elif _is_json_value(value):
            section["values"][name] = value
        else:
            raise TypeError(f"cannot store the fitted attribute {name}={value!r} of {owner} in "
                            "a model file; use pickle/joblib")
    return section


def _decode_attributes(section, prefix, tensors, owner):
    """Inverse of :func:`_encode_attributes`; consumes the tensors it reads from ``tensors``.

    ``owner`` is the estimator the attributes are for: names that are not plain instance
    attribute names, that would shadow one of its methods or properties, or that are its
    constructor parameters (validated from ``params``, never from here) are refused, so an
    edited file can only set fitted data attributes. Arrays must be float32/64 or int32/64.
    """
    if not isinstance(section, dict) or not all(
            isinstance(section.get(key), dict) for key in ("values", "arrays", "str_arrays")):
        raise ValueError(f"the {prefix!r} section should be a dict of 'values', 'arrays' and "
                         "'str_arrays' dicts")
    params = owner.get_params(deep=False)
    names = [*section["values"], *section["str_arrays"], *section["arrays"]]
    for name in names:
        if not (isinstance(name, str) and name.isidentifier()) or name.startswith("__") \
                or hasattr(type(owner), name):
            raise ValueError(f"{name!r} is not a fitted attribute of {type(owner).__name__}")
        if name in params:
            raise ValueError(f"{name!r} is a parameter of {type(owner).__name__}, not a fitted "
                             "attribute: a file cannot override it")
    attrs = {}
    for name, value in section["values"].items():
        if not _is_json_value(value):
            raise ValueError(f"unexpected value for {name!r}: {value!r}")
        attrs[name] = _plain(value)
    for name, values in section["str_arrays"].items():
        if not (isinstance(values, list) and all(isinstance(v, str) for v in values)):
            raise ValueError(f"{name!r} should be a list of strings")
        attrs[name] = np.asarray(values, dtype=object)
    for name, layout in section["arrays"].items():
        key = f"{prefix}.{name}"
        if key not in tensors:
            raise ValueError(f"tensor {key!r} is missing")
        tensor = tensors.pop(key)
        if tensor.dtype not in (torch.float32, torch.float64, torch.int32, torch.int64):
            raise ValueError(f"tensor {key!r} has dtype {tensor.dtype}; fitted arrays are "
                             "float32, float64, int32 or int64")
        array = tensor.numpy()
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise ValueError(f"tensor {key!r} holds non-finite values")
        if layout == "scalar":
            if array.ndim != 0:
                raise ValueError(f"tensor {key!r} should be a scalar")
            attrs[name] = array[()]
        elif layout == "F":
            attrs[name] = array.T
        elif layout == "C":
            attrs[name] = array
        else:
            raise ValueError(f"unknown layout {layout!r} of tensor {key!r}")
    return attrs


def _fitted_part(est):
    """Attributes of a fitted scikit-learn estimator that are not constructor parameters."""
    params = est.get_params(deep=False)
    return {k: v for k, v in vars(est).items() if k not in params}


# ---------------------------------------------------------------- scikit-learn transformers
#: The scikit-learn transformers a model file may hold (in a Pipeline, or alone): each is
#: looked up by name in this list of classes imported here, never imported from a file.
#: Their state is a few arrays, so it is stored and checked attribute by attribute.
TRANSFORMERS = ("MaxAbsScaler", "MinMaxScaler", "Normalizer", "PCA", "RobustScaler",
                "StandardScaler")

#: The fitted attributes of each (besides ``n_features_in_`` and ``feature_names_in_``):
#: ``"d"`` an array of ``n_features_in_`` floats, ``"d?"`` the same or None, ``"count"``
#: ``n_samples_seen_`` (a number, or an array of ``n_features_in_``), ``"pca"`` checked
#: by :func:`_check_pca`.
_TRANSFORMER_ATTRS = {
    "StandardScaler": {"mean_": "d?", "var_": "d?", "scale_": "d?", "n_samples_seen_": "count"},
    "MinMaxScaler": {"min_": "d", "scale_": "d", "data_min_": "d", "data_max_": "d",
                     "data_range_": "d", "n_samples_seen_": "count"},
    "MaxAbsScaler": {"max_abs_": "d", "scale_": "d", "n_samples_seen_": "count"},
    "RobustScaler": {"center_": "d?", "scale_": "d?"},
    "Normalizer": {},
    "PCA": dict.fromkeys(("mean_", "components_", "explained_variance_",
                          "explained_variance_ratio_", "singular_values_", "noise_variance_",
                          "n_components_", "n_samples_"), "pca"),
}
#: Fitted attributes that some scikit-learn versions set and others do not.
_TRANSFORMER_OPTIONAL = {"PCA": {"_fit_svd_solver"}}
#: Parameters whose ``transform`` uses a fitted array: parameter -> attribute.
_TRANSFORMER_NEEDS = {"StandardScaler": {"with_mean": "mean_", "with_std": "scale_"},
                      "RobustScaler": {"with_centering": "center_", "with_scaling": "scale_"}}
_SVD_SOLVERS = {"auto", "full", "covariance_eigh", "arpack", "randomized"}


def _transformer_classes():
    """The classes of :data:`TRANSFORMERS` by name."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import (MaxAbsScaler, MinMaxScaler, Normalizer, RobustScaler,
                                       StandardScaler)

    classes = {cls.__name__: cls for cls in (MaxAbsScaler, MinMaxScaler, Normalizer, PCA,
                                             RobustScaler, StandardScaler)}
    assert set(classes) == set(TRANSFORMERS)
    return classes


def _check_transformer(est, attrs):
    """The fitted attributes ``attrs`` of the allowed transformer ``est`` (read from a file,
    or about to be written): exactly its attributes, shapes consistent with
    ``n_features_in_``, finite, and what ``transform`` uses under its parameters present
    (scales positive); ``ValueError`` if not. Converts feature names to an object array."""
    name = type(est).__name__
    spec = _TRANSFORMER_ATTRS[name]
    missing = {"n_features_in_", *spec} - set(attrs)
    extra = set(attrs) - {"n_features_in_", "feature_names_in_", *spec,
                          *_TRANSFORMER_OPTIONAL.get(name, ())}
    if missing or extra:
        raise ValueError(f"fitted attributes {sorted(missing)} of {name} are missing" if missing
                         else f"unexpected fitted attributes {sorted(extra)} of {name}")
    d = attrs["n_features_in_"]
    if not (_is_int(d) and d >= 1):
        raise ValueError(f"{name}.n_features_in_ should be a positive int, got {d!r}")
    _check_feature_names(attrs, d)
    for attr, kind in spec.items():
        value = attrs[attr]
        if kind == "d" or (kind == "d?" and value is not None):
            _array(f"{name}.{attr}", value, (d,))
        elif kind == "count" and not (_is_real(value) and value >= 0):
            counts = _array(f"{name}.{attr}", value, (d,), "iuf")
            if (counts < 0).any():
                raise ValueError(f"{name}.{attr} should not be negative")
    params = est.get_params(deep=False)
    for param, attr in _TRANSFORMER_NEEDS.get(name, {}).items():
        if params[param] and attrs[attr] is None:
            raise ValueError(f"{name}.{attr} is None, but {param}=True uses it")
    scale = attrs.get("scale_")
    if scale is not None and not (scale > 0).all():
        raise ValueError(f"{name}.scale_ should be positive (transform divides by it)")
    if name == "PCA":
        _check_pca(attrs.get, d, name, whiten=params["whiten"])
        if not (_is_int(attrs["n_samples_"]) and attrs["n_samples_"] >= 1):
            raise ValueError(f"PCA.n_samples_ should be a positive int, got "
                             f"{attrs['n_samples_']!r}")
        if attrs.get("_fit_svd_solver", "full") not in _SVD_SOLVERS:
            raise ValueError(f"unknown PCA._fit_svd_solver {attrs['_fit_svd_solver']!r}")
    return attrs


def _whitened_state(model, tensors):
    from sklearn.neighbors import KernelDensity

    rest = {k: v for k, v in _fitted_part(model).items() if k not in ("pca_", "model_")}
    fitted = {
        "detector": _encode_attributes(rest, "fitted", tensors, type(model).__name__),
        "pca": {"params": model.pca_.get_params(deep=False),
                **_encode_attributes(_fitted_part(model.pca_), "pca", tensors, "PCA")},
    }
    scorer = model.model_
    if isinstance(scorer, KernelDensity):
        # KernelDensity keeps a compiled KDTree, which has no constructor from its arrays.
        # Building a tree is deterministic, so the training rows stand in for it: the tree
        # refitted on them on load scores bit-identically.
        rows = {"data": np.asarray(scorer.tree_.data)}
        fitted["scorer"] = {"params": scorer.get_params(deep=False), "refit": True,
                            **_encode_attributes(rows, "scorer", tensors, "KernelDensity")}
    else:
        # OneClassSVM's state is arrays and scalars (support vectors, dual coefficients,
        # libsvm's private copies): setting them back restores the same decision function.
        fitted["scorer"] = {"params": scorer.get_params(deep=False), "refit": False,
                            **_encode_attributes(_fitted_part(scorer), "scorer", tensors,
                                                 type(scorer).__name__)}
    return fitted


# ---------------------------------------------------------------- checks of fitted values
def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _finite_real(name, value):
    if not (_is_real(value) and math.isfinite(value)):
        raise ValueError(f"{name} should be a finite number, got {value!r}")
    return float(value)


def _array(name, value, shape, kinds="f"):
    """``value`` as an array of dtype kind in ``kinds`` and shape ``shape`` (None: any
    length on that axis), finite when floating."""
    value = np.asarray(value)
    if value.dtype.kind not in kinds or value.ndim != len(shape) or any(
            s is not None and s != n for s, n in zip(shape, value.shape)):
        want = "x".join("n" if s is None else str(s) for s in shape) or "scalar"
        raise ValueError(f"{name} should be a {want} array of kind {kinds!r}, got "
                         f"{value.dtype} of shape {value.shape}")
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        raise ValueError(f"{name} holds non-finite values")
    return value


def check_sample_shape(shape, ranks=None):
    """``sample_shape_`` from a file as a tuple of positive ints of at most
    ``MAX_SAMPLE_VALUES`` values (and of a rank in ``ranks``)."""
    if not (isinstance(shape, (list, tuple)) and shape and all(_is_int(s) and s > 0
                                                               for s in shape)):
        raise ValueError(f"sample_shape_ should be a list of positive ints, got {shape!r}")
    if ranks is not None and len(shape) not in ranks:
        raise ValueError(f"sample_shape_ {shape!r} has {len(shape)} axes; this estimator "
                         f"takes samples of {' or '.join(map(str, ranks))} axes")
    if math.prod(shape) > MAX_SAMPLE_VALUES:
        raise ValueError(f"sample_shape_ {tuple(shape)} has {math.prod(shape)} values per "
                         f"sample, above the limit of {MAX_SAMPLE_VALUES} "
                         "(sknovelty.io.MAX_SAMPLE_VALUES)")
    return tuple(int(s) for s in shape)


def _check_feature_names(attrs, n_features):
    """``feature_names_in_`` (when present): ``n_features`` strings, as an object array."""
    if "feature_names_in_" in attrs:
        names = attrs["feature_names_in_"]
        if not (isinstance(names, (list, tuple, np.ndarray)) and len(names) == n_features
                and all(isinstance(v, str) for v in names)):
            raise ValueError(f"feature_names_in_ should be {n_features} strings")
        attrs["feature_names_in_"] = np.asarray(list(names), dtype=object)


def _check_common_fitted(attrs, shape):
    """Checks the deep detectors and the whitened baselines share: features, offset and the
    reference scores (sorted, finite), consistent with each other."""
    n_features = attrs["n_features_in_"]
    if not (_is_int(n_features) and n_features in (shape[0], math.prod(shape))):
        raise ValueError(f"n_features_in_={n_features!r} does not match sample_shape_ {shape}")
    _check_feature_names(attrs, n_features)
    attrs["offset_"] = _finite_real("offset_", attrs["offset_"])
    if "reference_scores_" in attrs:
        reference = np.asarray(attrs["reference_scores_"])
        if reference.dtype.kind not in "fiu":  # JSON lists of numbers (deep detectors)
            raise ValueError("reference_scores_ should be numbers")
        reference = _array("reference_scores_", reference.astype(np.float64), (None,))
        if len(reference) == 0 or (np.diff(reference) < 0).any():
            raise ValueError("reference_scores_ should be a non-empty sorted list of scores")
        attrs["reference_scores_"] = reference
        if not isinstance(attrs.get("reference_held_out_"), bool):
            raise ValueError("reference_held_out_ should be true or false")
    if "false_alarm_rate_" in attrs:
        rate = attrs["false_alarm_rate_"]
        if not (_is_real(rate) and 0 < rate < 1):
            raise ValueError(f"false_alarm_rate_ should be in (0, 1), got {rate!r}")
        reference = attrs.get("reference_scores_")
        k = math.floor(rate * (len(reference) + 1) + 1e-9) if reference is not None else 0
        if not 1 <= k <= len(reference) or attrs["offset_"] != reference[k - 1]:
            raise ValueError(f"offset_ is not the threshold of false_alarm_rate_={rate}")
        attrs["false_alarm_rate_"] = float(rate)


def _check_deep_fitted(model, fitted):
    """The fitted JSON attributes of a deep detector read from a file, checked and converted
    (tuples, arrays) before anything is built from them; ``ValueError`` says what is wrong."""
    attrs = dict(fitted)
    shape = check_sample_shape(attrs["sample_shape_"], model._sample_ranks)
    attrs["sample_shape_"] = model.sample_shape_ = shape  # some terms depend on it (LTG)
    _check_common_fitted(attrs, shape)
    low, high = (attrs["input_range_"] if isinstance(attrs["input_range_"], (list, tuple))
                 and len(attrs["input_range_"]) == 2 else (None, None))
    attrs["input_range_"] = (_finite_real("input_range_", low),
                             _finite_real("input_range_", high))
    if low > high:
        raise ValueError(f"input_range_ {attrs['input_range_']} is not a range")
    norm = attrs["normalization_"]
    if not (isinstance(norm, dict) and set(model._novelty_terms) <= set(norm)):
        raise ValueError(f"normalization_ should map each of {list(model._novelty_terms)} to "
                         "two constants")
    for name, pair in norm.items():
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise ValueError(f"normalization_[{name!r}] should be two numbers")
        a, b = (_finite_real(f"normalization_[{name!r}]", v) for v in pair)
        if b < (0 if model._normalization == "zscore" else a):
            raise ValueError(f"normalization_[{name!r}] = {pair} is not a valid "
                             f"{model._normalization} scale")
        norm[name] = (a, b)
    for name, low_high in (("complexity_correlation_", (-1, 1)),
                           ("simple_input_auroc_", (0, 1))):
        value = attrs.get(name)
        if value is not None and not (_is_real(value) and (
                math.isnan(value) or low_high[0] <= value <= low_high[1])):
            raise ValueError(f"{name} should be NaN or in {list(low_high)}, got {value!r}")
    if "batch_size_" in attrs and not (_is_int(attrs["batch_size_"])
                                       and attrs["batch_size_"] > 0):
        raise ValueError(f"batch_size_ should be a positive int, got {attrs['batch_size_']!r}")
    _check_batches(model, shape, attrs.get("batch_size_"))
    return attrs


def _check_batches(model, shape, fitted_batch=None):
    """Batch rows within ``MAX_BATCH_ROWS``, and a scoring chunk of at most
    ``MAX_CHUNK_VALUES`` input values."""
    values = math.prod(shape)
    for name, rows in (("batch_size", model.batch_size), ("batch_size_", fitted_batch),
                       ("score_batch_size", model.score_batch_size)):
        if not _is_int(rows):
            continue
        if rows > MAX_BATCH_ROWS or rows * values > MAX_CHUNK_VALUES:
            raise ValueError(f"{name}={rows} rows of {values} values exceeds the limits of "
                             f"{MAX_BATCH_ROWS} rows and {MAX_CHUNK_VALUES} values per batch "
                             "(sknovelty.io.MAX_BATCH_ROWS, MAX_CHUNK_VALUES)")


def check_param_limits(model):
    """Hyperparameters within the limits of a model file: ``n_jobs``, the integer sizes
    (``MAX_WIDTH``) and the width multiplier (``MAX_WIDTH_FACTOR``); ``ValueError`` if not.
    Integer parameters of ``UNBOUNDED_PARAMS`` and of the class's ``_unbounded_params`` are not
    sizes."""
    unbounded = UNBOUNDED_PARAMS | frozenset(getattr(type(model), "_unbounded_params", ()))
    for name, value in model.get_params(deep=False).items():
        if name == "n_jobs":
            if value is not None and abs(value) > MAX_THREADS:
                raise ValueError(f"n_jobs={value} is beyond the {MAX_THREADS} threads a model "
                                 "file may ask for (sknovelty.io.MAX_THREADS)")
        elif name == "width" and _is_real(value):
            if not value <= MAX_WIDTH_FACTOR:
                raise ValueError(f"width={value} is above the limit of {MAX_WIDTH_FACTOR} "
                                 "(sknovelty.io.MAX_WIDTH_FACTOR)")
        elif name not in unbounded:
            ints = [v for v in (value if isinstance(value, (list, tuple)) else [value])
                    if _is_int(v)]
            if any(abs(v) > MAX_WIDTH for v in ints):
                raise ValueError(f"{name}={value!r} is above the limit of {MAX_WIDTH} for "
                                 "sizes (sknovelty.io.MAX_WIDTH)")


def check_state(target, state, what, owner):
    """The tensors ``state`` read for ``target`` (a module): exactly its state dict's keys,
    shapes and dtypes (no cast: an int8 or bool tensor is not taken for float weights)."""
    expected = target.state_dict()
    missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = [f"{k}: {tuple(state[k].shape)} {state[k].dtype}, expected "
             f"{tuple(v.shape)} {v.dtype}" for k, v in expected.items()
             if k in state and (state[k].shape != v.shape or state[k].dtype != v.dtype)]
    if missing or extra or wrong:
        detail = "; ".join(filter(None, [missing and f"missing {missing[:5]}",
                                         extra and f"unexpected {extra[:5]}",
                                         wrong and f"mismatched {wrong[:3]}"]))
        raise ValueError(f"the saved {what} weights do not fit the {what} of {owner} built "
                         f"from the saved parameters: {detail}")
    for key, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ValueError(f"the saved {what} weight {key!r} holds non-finite values")


class _AllocationBudget(TorchDispatchMode):
    """Stops (``ValueError``) once the tensors created inside it would exceed ``limit``
    bytes in all: factory calls (``torch.empty`` in every layer's constructor, ``zeros``,
    ``ones``, ``rand``...) are charged before they allocate, other new tensors after."""

    _FACTORIES = {"empty", "empty_strided", "zeros", "ones", "full", "rand", "randn",
                  "randint", "new_empty", "new_empty_strided", "new_zeros", "new_ones",
                  "new_full", "eye"}

    def __init__(self, limit, what):
        super().__init__()
        self.limit, self.what, self.used, self.seen = limit, what, 0, set()

    def _charge(self, nbytes):
        self.used += nbytes
        if self.used > self.limit:
            raise ValueError(f"building the {self.what} from the saved parameters would "
                             f"allocate more than {self.limit} bytes, far more than the "
                             "weights in the file: the parameters do not match them")

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if name in self._FACTORIES:
            sizes = [a for a in args if isinstance(a, (list, tuple, torch.Size))] or [
                [a for a in args if isinstance(a, int)]]
            dtype = kwargs.get("dtype") or torch.get_default_dtype()
            itemsize = torch.empty((), dtype=dtype, device="meta").element_size()
            self._charge(math.prod(int(s) for s in sizes[0]) * itemsize)
        out = func(*args, **kwargs)
        for tensor in (out if isinstance(out, (list, tuple)) else [out]):
            if isinstance(tensor, torch.Tensor) and tensor.device.type != "meta":
                storage = tensor.untyped_storage()
                if storage.data_ptr() not in self.seen:
                    self.seen.add(storage.data_ptr())
                    if name not in self._FACTORIES:
                        self._charge(storage.nbytes())
        return out


def build_within_budget(build, states, what):
    """``build()`` (the networks of a deep detector), stopped with a ``ValueError`` once it
    has allocated more than ``BUILD_FACTOR`` times the bytes of the ``states`` read from the
    file plus ``BUILD_SLACK_BYTES``, or if it fails (too large for this machine)."""
    stored = sum(t.numel() * t.element_size() for state in states for t in state.values())
    try:
        with _AllocationBudget(BUILD_FACTOR * stored + BUILD_SLACK_BYTES, what):
            return build()
    except (RuntimeError, MemoryError, OverflowError) as exc:
        raise ValueError(f"the {what} could not be built from the saved parameters "
                         f"({type(exc).__name__}: {str(exc)[:200]})") from exc


def _check_pca(get, d, label, whiten):
    """The fitted arrays of a PCA of ``d`` features (``get(name)`` reads one): shapes
    consistent with ``components_``, one dtype, finite, positive variances when it whitens.
    Returns the number of components."""
    components = _array(f"{label}.components_", get("components_"), (None, d))
    k = len(components)
    if k < 1 or get("n_components_") != k or get("n_features_in_") != d:
        raise ValueError(f"the PCA's n_components_ / n_features_in_ do not match its "
                         f"components of shape {components.shape}")
    for name, want in (("mean_", (d,)), ("explained_variance_", (k,)),
                       ("explained_variance_ratio_", (k,)), ("singular_values_", (k,)),
                       ("noise_variance_", ())):
        value = _array(f"{label}.{name}", get(name), want)
        # a PCA that keeps every direction stores noise_variance_ as the Python float 0.0,
        # whatever the dtype of its data
        if value.dtype != components.dtype and not (name == "noise_variance_" and value == 0):
            raise ValueError(f"{label}.{name} has dtype {value.dtype}, {label}.components_ "
                             f"{components.dtype}")
    if whiten and not (get("explained_variance_") > 0).all():
        raise ValueError(f"{label}.explained_variance_ should be positive (whitening divides "
                         "by it)")
    return k


#: The fitted values of a whitened baseline, and of a PatchwiseDetector besides its
#: estimator_ and patch_starts_.
_WHITENED_REQUIRED = ("n_features_in_", "offset_", "reference_scores_", "reference_held_out_",
                      "sample_shape_")
_WHITENED_OPTIONAL = ("feature_names_in_", "false_alarm_rate_")


def _check_whitened(model, attrs, pca, scorer, refit):
    """Fitted values of a whitened baseline, consistent with each other: the shapes of the
    PCA's and the scorer's arrays agree with ``sample_shape_`` and with each other."""
    missing = set(_WHITENED_REQUIRED) - set(attrs)
    extra = set(attrs) - set(_WHITENED_REQUIRED) - set(_WHITENED_OPTIONAL)
    if missing or extra:
        raise ValueError(f"fitted attributes {sorted(missing)} are missing" if missing
                         else f"unexpected fitted attributes {sorted(extra)}")
    shape = check_sample_shape(attrs["sample_shape_"])
    attrs["sample_shape_"] = shape
    _check_common_fitted(attrs, shape)
    k = _check_pca(lambda name: getattr(pca, name, None), math.prod(shape), "pca", whiten=True)
    if refit:
        rows = _array("scorer.data", scorer.get("data"), (None, k))
        if len(rows) < 1 or rows.dtype != np.float64 or set(scorer) != {"data"}:
            raise ValueError(f"the KDE's data should be float64 rows of {k} components")
        return
    vectors = _array("scorer.support_vectors_", scorer.get("support_vectors_"), (None, k))
    n_sv = len(vectors)
    for name, want, kinds in (("dual_coef_", (1, n_sv), "f"), ("_dual_coef_", (1, n_sv), "f"),
                              ("intercept_", (1,), "f"), ("_intercept_", (1,), "f"),
                              ("offset_", (1,), "f"), ("_gamma", (), "f"),
                              ("support_", (n_sv,), "i"), ("_n_support", (2,), "i")):
        value = _array(f"scorer.{name}", scorer.get(name), want, kinds)
        if value.dtype != (np.float64 if kinds == "f" else np.int32):
            raise ValueError(f"scorer.{name} has dtype {value.dtype}, libsvm's is "
                             f"{'float64' if kinds == 'f' else 'int32'}")
    if vectors.dtype != np.float64 or n_sv < 1:
        raise ValueError("scorer.support_vectors_ should be float64 rows")
    shape_fit = scorer.get("shape_fit_")
    if not (scorer["_gamma"] > 0 and 0 <= scorer["_n_support"].min() <= scorer["_n_support"].max() <= n_sv
            and scorer.get("n_features_in_") == k and scorer.get("_sparse") is False
            and isinstance(shape_fit, tuple) and len(shape_fit) == 2 and shape_fit[1] == k
            and _is_int(shape_fit[0]) and 0 <= scorer["support_"].min()
            and scorer["support_"].max() < shape_fit[0]):
        raise ValueError(f"the one-class SVM's fitted values do not agree with its {n_sv} "
                         f"support vectors of {k} components")


def _restore_whitened(model, fitted, tensors):
    from sklearn.decomposition import PCA

    for section in ("detector", "pca", "scorer"):
        if not isinstance(fitted.get(section), dict):
            raise ValueError(f"the fitted section {section!r} is missing")
    attrs = _decode_attributes(fitted["detector"], "fitted", tensors, model)
    # The PCA and the scorer are built as fit builds them, from the detector's validated
    # parameters; the file's copies of their parameters must agree.
    pca = PCA(whiten=True, random_state=0)
    params = fitted["pca"].get("params")
    expected = pca.get_params(deep=False)
    if not (isinstance(params, dict) and set(params) == set(expected) and all(
            params[k] == v for k, v in expected.items() if k != "n_components")):
        raise ValueError("the PCA's parameters are not those fit uses (whiten=True, "
                         "random_state=0)")
    n_components = params["n_components"]
    if n_components is not None and not _is_real(n_components):
        raise ValueError(f"invalid PCA n_components {n_components!r}")
    pca.set_params(n_components=n_components)
    for name, value in _decode_attributes(fitted["pca"], "pca", tensors, pca).items():
        setattr(pca, name, value)
    section = fitted["scorer"]
    scorer = model._make_model()
    if section.get("params") != scorer.get_params(deep=False):
        raise ValueError(f"the {type(scorer).__name__}'s parameters are not those the "
                         f"detector's parameters give: {section.get('params')!r}")
    refit = type(scorer).__name__ == "KernelDensity"  # a KDTree is rebuilt from the rows
    if section.get("refit") is not refit:
        raise ValueError(f"'refit' should be {refit}")
    scorer_attrs = _decode_attributes(section, "scorer", tensors, scorer)
    _check_whitened(model, attrs, pca, scorer_attrs, refit)
    for name, value in attrs.items():
        setattr(model, name, value)
    if refit:
        scorer.fit(scorer_attrs["data"])
    else:
        for name, value in scorer_attrs.items():
            setattr(scorer, name, value)
    model.pca_, model.model_ = pca, scorer


# ---------------------------------------------------------------- nearest neighbours
def _neighbors_state(model, tensors):
    """The fitted state of a NearestNeighborDetector: its fitted values (section
    ``detector``) and its indexed rows (tensor ``index.rows``)."""
    rest = {k: v for k, v in _fitted_part(model).items() if k != "model_"}
    tensors["index.rows"] = torch.from_numpy(np.array(model.model_.rows, dtype=np.float32,
                                                      order="C"))
    return {"detector": _encode_attributes(rest, "fitted", tensors, type(model).__name__)}


def _restore_neighbors(model, fitted, tensors):
    """Rebuild a NearestNeighborDetector from its section and rows, checked first: the
    fitted values of every detector, and rows that are finite float32, of as many values as
    ``sample_shape_`` has, at least ``n_neighbors`` of them."""
    if set(fitted) != {"detector"}:
        raise ValueError(f"the fitted sections should be ['detector'], got {sorted(fitted)}")
    attrs = _decode_attributes(fitted["detector"], "fitted", tensors, model)
    missing = set(_WHITENED_REQUIRED) - set(attrs)
    extra = set(attrs) - set(_WHITENED_REQUIRED) - set(_WHITENED_OPTIONAL) - {"coreset_radius_"}
    if missing or extra:
        raise ValueError(f"fitted attributes {sorted(missing)} are missing" if missing
                         else f"unexpected fitted attributes {sorted(extra)}")
    # a file from before max_samples indexed every training row
    radius = attrs.setdefault("coreset_radius_", 0.0)
    if not (_is_real(radius) and math.isfinite(radius) and radius >= 0):
        raise ValueError(f"coreset_radius_ should be a finite float >= 0, got {radius!r}")
    shape = attrs["sample_shape_"] = check_sample_shape(attrs["sample_shape_"],
                                                        model._sample_ranks)
    _check_common_fitted(attrs, shape)
    if "index.rows" not in tensors:
        raise ValueError("tensor 'index.rows' is missing")
    rows = tensors.pop("index.rows")
    d = math.prod(shape)
    if rows.dtype != torch.float32 or rows.ndim != 2 or rows.shape[1] != d:
        raise ValueError(f"the indexed rows should be float32 of shape (n, {d}) for "
                         f"sample_shape_ {shape}, got {rows.dtype} of shape {tuple(rows.shape)}")
    if len(rows) < model.n_neighbors:
        raise ValueError(f"n_neighbors={model.n_neighbors} is more than the {len(rows)} "
                         "indexed rows")
    if not torch.isfinite(rows).all():
        raise ValueError("the indexed rows hold non-finite values")
    for name, value in attrs.items():
        setattr(model, name, value)
    model.model_ = model._index(np.ascontiguousarray(rows.numpy()))


# ---------------------------------------------------------------- writing
def _history_json(history):
    """The training history as JSON within ``MAX_HISTORY_BYTES``: without the per-batch
    records (with a warning) when they would make it longer."""
    text = json.dumps(list(history), default=float)
    if len(text.encode()) <= MAX_HISTORY_BYTES:
        return text
    epochs = [{k: v for k, v in epoch.items() if k != "batches"} for epoch in history]
    text = json.dumps(epochs, default=float)
    if len(text.encode()) > MAX_HISTORY_BYTES:
        raise ValueError(f"the training history of {len(epochs)} epochs takes more than "
                         f"{MAX_HISTORY_BYTES} bytes of JSON even without its per-batch "
                         "records (sknovelty.io.MAX_HISTORY_BYTES): pickle the model instead")
    warnings.warn(f"the training history is longer than {MAX_HISTORY_BYTES} bytes of JSON: "
                  "the model file keeps its per-epoch records only", UserWarning, stacklevel=4)
    return text


def _write(path, tensors, metadata):
    """Write a safetensors file: into a temporary file next to ``path``, then renamed over it.

    The temporary file (``.<name>.<random>.tmp`` in the same directory) is removed when
    writing raises (a full disk, ``KeyboardInterrupt``...); a process killed outright while
    writing leaves it behind, and ``path`` untouched.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(errno.ENOENT, f"cannot save the model to {path}: the directory "
                                f"{directory} does not exist", path)
    table, offset = {}, 0
    for key in sorted(tensors):
        tensor = tensors[key]
        nbytes = tensor.numel() * tensor.element_size()
        table[key] = {"dtype": _DTYPE_NAMES[tensor.dtype], "shape": list(tensor.shape),
                      "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header = json.dumps({"__metadata__": metadata, **table}, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # the data starts 8-byte aligned, as safetensors does
    for key, value in metadata.items():
        text = value.encode()
        if len(text) > MAX_METADATA_BYTES or _json_depth(text) > MAX_JSON_DEPTH:
            raise ValueError(f"cannot save the model to {path}: its {key!r} metadata exceeds "
                             f"the limits of model files ({MAX_METADATA_BYTES} bytes, depth "
                             f"{MAX_JSON_DEPTH}; sknovelty.io.MAX_METADATA_BYTES)")
    if len(header) > MAX_HEADER_BYTES or len(tensors) > MAX_TENSORS:
        raise ValueError(f"cannot save the model to {path}: its header exceeds the limits of "
                         f"model files ({MAX_HEADER_BYTES} bytes, {MAX_TENSORS} tensors)")
    fd, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                                     dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(header)))
            f.write(header)
            for key in sorted(tensors):
                tensor = tensors[key]
                if tensor.numel():
                    f.write(tensor.reshape(-1).view(torch.uint8).numpy().data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def save(model, path):
    """Write a fitted sknovelty estimator, PatchwiseDetector or Pipeline to ``path`` in the
    safetensors format.

    Parameters
    ----------
    model : fitted estimator
        A deep detector or a whitened baseline; a :class:`~sknovelty.PatchwiseDetector`
        wrapping one; or a :class:`sklearn.pipeline.Pipeline` whose steps are such
        estimators, scikit-learn transformers of :data:`TRANSFORMERS` (``StandardScaler``,
        ``MinMaxScaler``, ``MaxAbsScaler``, ``RobustScaler``, ``Normalizer``, ``PCA``) or
        Pipelines of them.
    path : str or path-like
        Destination; any extension works, ``.safetensors`` is conventional.

    Returns
    -------
    None

    Raises
    ------
    NotFittedError
        If ``model`` (or a step of it) is not fitted.
    TypeError
        If ``model`` or a part of it is not one of the estimators above (subclasses defined
        elsewhere are not restorable by name, ``FunctionTransformer`` holds code: pickle/joblib
        them), or if a parameter or fitted attribute cannot be stored as JSON (e.g. a
        ``RandomState`` as ``random_state``, a Pipeline's ``memory``).
    ValueError
        If the model exceeds the limits that :func:`load` enforces (the module constants
        ``MAX_*`` of :mod:`sknovelty.io`), so that no file is written that would not load;
        if a Pipeline's step name is not a Python identifier.
    FileNotFoundError
        If the directory of ``path`` does not exist.

    See Also
    --------
    sknovelty.io.load : Read the file back.

    Notes
    -----
    ``callbacks`` are not stored (a warning says so); the loaded model has ``callbacks=None``.
    A training history longer than ``MAX_HISTORY_BYTES`` of JSON is stored without its
    per-batch records (a warning says so).

    The file is written to a temporary file in the same directory (``.<name>.<random>.tmp``)
    and renamed over ``path`` once complete, so ``path`` holds the old file or the new one,
    never a part. The temporary file is removed when ``save`` raises (``KeyboardInterrupt``
    included); a process killed outright (``SIGKILL``, power loss) leaves it behind.
    """
    tensors, metadata = {}, {}
    _write_node(model, "", tensors, metadata, path, fitted=True, depth=0, count=[0])
    metadata.update({
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "versions": json.dumps({"sknovelty": __version__, "torch": torch.__version__,
                                "scikit-learn": sklearn.__version__,
                                "safetensors": safetensors.__version__}),
    })
    _write(path, tensors, metadata)


def _kind(est, where):
    """How ``est`` is stored: ``"deep"``, ``"whitened"``, ``"neighbors"``, ``"patchwise"``
    (registered sknovelty classes), ``"pipeline"`` or ``"transformer"``; ``TypeError`` for
    anything else. Only the exact classes count: a subclass could behave differently."""
    from sklearn.pipeline import Pipeline

    cls, name = type(est), type(est).__name__
    entry = _REGISTRY.get(name)
    if entry is not None and entry[0] is cls:
        return entry[1]
    if cls is Pipeline:
        return "pipeline"
    if _transformer_classes().get(name) is cls:
        return "transformer"
    if name == "FunctionTransformer":
        raise TypeError(f"{where}a FunctionTransformer holds an arbitrary function, which a "
                        "model file cannot store safely; use pickle/joblib")
    raise TypeError(f"{where}{cls.__module__}.{name} is not one of sknovelty's own estimators, "
                    f"a Pipeline or a scikit-learn transformer of {', '.join(TRANSFORMERS)} "
                    "(sknovelty.io.TRANSFORMERS), and could not be restored by name; use "
                    "pickle/joblib")


def _dumps(value, owner, what="parameters"):
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"cannot store the {what} of {owner!r} as JSON ({exc}); "
                        "use an int random_state, or pickle/joblib") from exc


def _write_node(est, prefix, tensors, metadata, path, fitted, depth, count):
    """Add the estimator ``est`` (fitted or, for a PatchwiseDetector's template, not) to
    ``tensors`` and ``metadata`` under ``prefix`` (see the module notes)."""
    where = f"{prefix[:-1]}: " if prefix else ""
    count[0] += 1
    if depth > MAX_NESTING or count[0] > MAX_ESTIMATORS:
        raise ValueError(f"cannot save the model to {path}: it nests estimators deeper than "
                         f"{MAX_NESTING} levels or holds more than {MAX_ESTIMATORS} "
                         "(sknovelty.io.MAX_NESTING, MAX_ESTIMATORS)")
    kind = _kind(est, where)
    name = type(est).__name__
    metadata[prefix + "class"] = name
    if fitted:
        check_is_fitted(est)
    own = {}  # this estimator's tensors, named without the prefix
    if kind in ("deep", "whitened", "neighbors"):
        _write_sknovelty(est, own, metadata, prefix, path, fitted)
    elif kind == "transformer":
        metadata[prefix + "params"] = _dumps(est.get_params(deep=False), est)
        if fitted:
            attrs = _fitted_part(est)
            section = _encode_attributes(attrs, "fitted", own, name)
            try:
                _check_transformer(est, dict(attrs))
            except ValueError as exc:
                raise TypeError(f"{where}cannot store this {name}: {exc}") from exc
            metadata[prefix + "fitted"] = json.dumps(section)
    elif kind == "pipeline":
        params = {k: v for k, v in est.get_params(deep=False).items() if k != "steps"}
        for param in ("memory", "transform_input"):
            if params.get(param) is not None:
                raise TypeError(f"{where}a Pipeline with {param}={params[param]!r} cannot be "
                                f"stored in a model file; save it with {param}=None, or use "
                                "pickle/joblib")
        names = [step_name for step_name, _ in est.steps]
        for step_name in names:
            _check_step_name(step_name, params)
        metadata[prefix + "params"] = _dumps(params, est)
        metadata[prefix + "steps"] = json.dumps(names)
        for i, (_, step) in enumerate(est.steps):
            if step is None or isinstance(step, str):
                raise TypeError(f"{where}the step {names[i]!r} is {step!r}: model files store "
                                "estimators only; drop the step")
            _write_node(step, f"{prefix}steps.{i}.", tensors, metadata, path, fitted,
                        depth + 1, count)
    else:  # patchwise
        params = {k: v for k, v in est.get_params(deep=False).items() if k != "estimator"}
        try:
            check_param_limits(est)
            if fitted:
                check_sample_shape(list(est.sample_shape_), (1, 3))
        except ValueError as exc:
            raise ValueError(f"cannot save {name} to {path}: {exc}") from exc
        metadata[prefix + "params"] = _dumps(params, est)
        _write_node(est.estimator, prefix + "estimator.", tensors, metadata, path, False,
                    depth + 1, count)
        if fitted:
            _write_node(est.estimator_, prefix + "estimator_.", tensors, metadata, path, True,
                        depth + 1, count)
            attrs = {k: v for k, v in _fitted_part(est).items()
                     if k not in ("estimator_", "patch_starts_")}
            extra = set(attrs) - set(_WHITENED_REQUIRED) - set(_WHITENED_OPTIONAL)
            if extra:  # load would refuse them
                raise TypeError(f"{where}cannot store the fitted attributes {sorted(extra)} of "
                                f"{name}; use pickle/joblib")
            metadata[prefix + "fitted"] = json.dumps(_encode_attributes(attrs, "fitted", own,
                                                                        name))
    tensors.update({prefix + key: tensor for key, tensor in own.items()})


def _check_step_name(name, params):
    """A Pipeline step name a model file holds: a Python identifier without ``__``, not a
    parameter of the Pipeline."""
    if not (isinstance(name, str) and name.isidentifier() and "__" not in name
            and name not in params and name != "steps"):
        raise ValueError(f"the Pipeline step name {name!r:.80} is not a Python identifier without "
                         "'__' (model files store only such names: rename the step, e.g. "
                         "'pca_1')")


def _write_sknovelty(model, tensors, metadata, prefix, path, fitted):
    """The parameters and (when ``fitted``) the fitted state of a deep detector or a
    whitened baseline."""
    name = type(model).__name__
    deep = _is_deep(type(model))
    params = model.get_params(deep=False)
    if params.get("callbacks"):
        warnings.warn("callbacks are not saved; the loaded model has callbacks=None",
                      UserWarning, stacklevel=4)
        params["callbacks"] = None
    try:
        check_param_limits(model)
        if fitted:
            check_sample_shape(list(model.sample_shape_))
            if deep:
                _check_batches(model, model.sample_shape_, getattr(model, "batch_size_", None))
    except ValueError as exc:
        raise ValueError(f"cannot save {name} to {path}: {exc}") from exc
    if fitted and deep:
        optional = model._optional_fitted_attributes
        state = {attr: _jsonable(getattr(model, attr)) for attr in
                 dict.fromkeys([*model._fitted_attributes, *optional])
                 if attr not in optional or hasattr(model, attr)}
        for key, module in (("module", model.net_.module_), ("criterion", model.net_.criterion_)):
            tensors.update({f"{key}.{k}": _cpu_copy(v) for k, v in module.state_dict().items()})
        metadata[prefix + "history"] = _history_json(model.net_.history)
    elif fitted and _REGISTRY[name][1] == "neighbors":
        state = _neighbors_state(model, tensors)
    elif fitted:
        state = _whitened_state(model, tensors)
    metadata[prefix + "params"] = _dumps(params, model)
    if fitted:
        metadata[prefix + "fitted"] = _dumps(state, model, "fitted attributes")


# ---------------------------------------------------------------- reading
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def _json_depth(text):
    """The deepest nesting of ``[`` and ``{`` in the JSON bytes ``text`` (outside strings),
    counted without parsing (a parser recurses, and a deep enough text exhausts its stack)."""
    codes = np.frombuffer(_JSON_STRING.sub(b"", text), dtype=np.uint8)
    steps = (np.isin(codes, (ord("["), ord("{"))).astype(np.int32)
             - np.isin(codes, (ord("]"), ord("}"))))
    return int(np.cumsum(steps).max(initial=0))


def _not_safetensors(path, why):
    # pickles and torch.save zips land here too: their first 8 bytes, read as the header
    # length, are absurd, and nothing past them is interpreted
    return ValueError(
        f"{path} is not an sknovelty model file: it is not a valid safetensors file ({why}). "
        "It may be truncated or corrupted; files written with torch.save by sknovelty before "
        "format version 2 are not read")


_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket"))


def _check_regular(path, mode):
    if not stat.S_ISREG(mode):
        kind = next((kind for test, kind in _FILE_KINDS if test(mode)), "not a regular file")
        raise ValueError(f"{path} is not an sknovelty model file: it is {kind}, not a "
                         "regular file")


def _open(path):
    """``path`` opened for reading, and its size; anything but a regular file is refused
    before it is opened (and again on the open descriptor: it cannot block, as a FIFO would)."""
    name = os.fspath(path)
    _check_regular(path, os.stat(name).st_mode)
    fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        info = os.fstat(fd)
        _check_regular(path, info.st_mode)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb", buffering=0), info.st_size


def _read_exactly(f, buffer):
    view, done = memoryview(buffer), 0
    while done < len(view):
        n = f.readinto(view[done:])
        if not n:
            return False
        done += n
    return True


def _read_header(f, size, path):
    """Metadata and tensor table of an open safetensors file, checked against the limits of
    a model file before anything else is read: ``(metadata, [(key, dtype, shape, begin,
    end)...] in file order, data start)``."""
    if size < 8:
        raise _not_safetensors(path, f"{size} bytes, shorter than its 8-byte header length")
    prefix = bytearray(8)
    _read_exactly(f, prefix)
    (n,) = struct.unpack("<Q", prefix)
    if n > MAX_HEADER_BYTES:
        raise _not_safetensors(path, f"a header of {n} bytes, above the limit of "
                                     f"{MAX_HEADER_BYTES} (sknovelty.io.MAX_HEADER_BYTES)")
    if 8 + n > size or n < 2:
        raise _not_safetensors(path, f"a header of {n} bytes in a file of {size}")
    raw = bytearray(n)
    if not _read_exactly(f, raw):
        raise _not_safetensors(path, "the file ends inside its header")
    raw = bytes(raw)
    if _json_depth(raw) > MAX_JSON_DEPTH:
        raise _not_safetensors(path, f"its header nests deeper than {MAX_JSON_DEPTH}")
    try:
        header = json.loads(raw.decode("utf-8"))
    except ValueError as exc:  # also UnicodeDecodeError, and ints of over 4300 digits
        raise _not_safetensors(path, f"its header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise _not_safetensors(path, "its header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not (isinstance(metadata, dict) and all(isinstance(k, str) and isinstance(v, str)
                                               for k, v in metadata.items())):
        raise _not_safetensors(path, "its metadata is not a map of strings")
    if len(header) > MAX_TENSORS:
        raise _not_safetensors(path, f"{len(header)} tensors, above the limit of {MAX_TENSORS} "
                                     "(sknovelty.io.MAX_TENSORS)")
    table = []
    for key, entry in header.items():
        try:
            dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            ok = (set(entry) == {"dtype", "shape", "data_offsets"} and dtype in _DTYPES
                  and isinstance(shape, list) and len(shape) <= MAX_TENSOR_RANK
                  and all(_is_int(s) and 0 <= s <= MAX_TENSOR_DIM for s in shape)
                  and _is_int(begin) and _is_int(end) and 0 <= begin <= end)
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            raise _not_safetensors(path, f"tensor {key!r} has an invalid entry "
                                         f"{str(entry)[:200]} (dtypes read: "
                                         f"{', '.join(_DTYPES)}; at most {MAX_TENSOR_RANK} axes "
                                         f"of at most {MAX_TENSOR_DIM})")
        itemsize = torch.empty((), dtype=_DTYPES[dtype], device="meta").element_size()
        if end - begin != math.prod(shape) * itemsize:
            raise _not_safetensors(path, f"tensor {key!r} of shape {shape} and dtype {dtype} "
                                         f"has {end - begin} bytes")
        table.append((key, _DTYPES[dtype], tuple(shape), begin, end))
    table.sort(key=lambda entry: entry[3:])
    position = 0
    for key, _, _, begin, end in table:
        if begin != position:
            raise _not_safetensors(path, f"tensor {key!r} does not start where the previous "
                                         "one ends")
        position = end
    if 8 + n + position != size:
        raise _not_safetensors(path, f"its tensors take {position} bytes, but {size - 8 - n} "
                                     "follow its header")
    return metadata, table, 8 + n


def _read_tensors(f, table, start, path):
    """The tensors of ``table`` (checked by :func:`_read_header`), read from ``f`` into
    CPU tensors of their own memory."""
    if sys.byteorder != "little":
        raise ValueError(f"{path}: model files are read on little-endian machines only")
    f.seek(start)
    tensors = {}
    for key, dtype, shape, begin, end in table:
        buffer = bytearray(end - begin)
        if not _read_exactly(f, buffer):
            raise _not_safetensors(path, "the file ends inside its tensors")
        flat = torch.frombuffer(buffer, dtype=dtype) if buffer else torch.empty(0, dtype=dtype)
        tensors[key] = flat.reshape(shape)
    return tensors


def _json_field(metadata, key, path, kind, limit=MAX_METADATA_BYTES):
    if key not in metadata:
        raise ValueError(f"{path} is damaged: metadata {key!r} is missing")
    text = metadata[key].encode()
    if len(text) > limit:
        raise ValueError(f"{path} is damaged: metadata {key!r} has {len(text)} bytes, above "
                         f"the limit of {limit}")
    if _json_depth(text) > MAX_JSON_DEPTH:
        raise ValueError(f"{path} is damaged: metadata {key!r} nests deeper than "
                         f"{MAX_JSON_DEPTH} (sknovelty.io.MAX_JSON_DEPTH)")
    try:
        value = json.loads(text)
    except ValueError as exc:  # JSONDecodeError, or an int of over 4300 digits
        raise ValueError(f"{path} is damaged: metadata {key!r} is not valid JSON ({exc})") from exc
    if not isinstance(value, kind):
        raise ValueError(f"{path} is damaged: metadata {key!r} is not a {kind.__name__}")
    return value


def _check_format(metadata, path):
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path} is not an sknovelty model file "
                         f"(format {metadata.get('format')!r}, expected {FORMAT!r})")
    try:
        version = int(metadata.get("format_version"))
    except (TypeError, ValueError):
        raise ValueError(f"{path} is damaged: format_version "
                         f"{metadata.get('format_version')!r} is not an integer") from None
    if version > FORMAT_VERSION:
        raise ValueError(f"{path} was written by a newer sknovelty (model format version "
                         f"{version}); this sknovelty reads format version {FORMAT_VERSION}: "
                         "upgrade sknovelty to load it")
    if version != FORMAT_VERSION:
        raise ValueError(f"{path} has model format version {version}, which this sknovelty "
                         f"does not read (it reads version {FORMAT_VERSION})")


def _instantiate(cls, params, path):
    """``cls(**params)`` with the parameters validated as ``fit`` would validate them, and
    within the limits of a model file (:func:`check_param_limits`).

    A parameter added after the file was written takes the value that reproduces the file's
    behaviour (``cls._former_defaults``) rather than today's default.
    """
    params = {**getattr(cls, "_former_defaults", {}), **params}
    try:
        model = cls(**params)
    except TypeError as exc:
        raise ValueError(f"{path} holds parameters that {cls.__name__} does not take "
                         f"({exc})") from exc
    try:
        model._validate_params()
        if hasattr(model, "_check_hyperparameters"):
            model._check_hyperparameters()
        check_param_limits(model)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path} holds invalid parameters for {cls.__name__}: {exc}") from exc
    return model


def _split_prefixed(tensors, prefix):
    head = prefix + "."
    return {k[len(head):]: tensors.pop(k) for k in list(tensors) if k.startswith(head)}


def load(path, device=None):
    """Read an estimator written by :func:`sknovelty.io.save`.

    The file is read as untrusted input, in this order: anything but a regular file
    (a directory, a FIFO, a device) is refused before it is opened; the 8-byte header length
    and the JSON header are read and checked (``MAX_HEADER_BYTES``, ``MAX_JSON_DEPTH``,
    ``MAX_TENSORS``, every tensor's dtype, shape and byte range); then the format, the
    classes (of a Pipeline or PatchwiseDetector too: at most ``MAX_NESTING`` deep and
    ``MAX_ESTIMATORS`` in all) and the hyperparameters (validated as ``fit`` validates them,
    and within ``MAX_WIDTH``, ``MAX_THREADS``, the batch limits) before any tensor is read;
    then the fitted values (finite, sorted reference scores, consistent with each other and
    with the weights' shapes and dtypes; every tensor belongs to an estimator). Networks are
    built within an allocation budget tied to the size of the weights in the file
    (``BUILD_FACTOR``).

    Parameters
    ----------
    path : str or path-like
        A model file written by :func:`sknovelty.io.save` (or an estimator's ``save``).
    device : str or None
        Device to load the weights on (deep detectors, also inside a Pipeline or a
        PatchwiseDetector; the whitened baselines run on the CPU and ignore it). ``None``
        keeps the saved ``device`` parameter, falling back to the CPU (with a warning) when
        that device is not available here, so a model fitted on CUDA scores on a CPU-only
        machine.

    Returns
    -------
    estimator
        The fitted estimator, of the class recorded in the file.

    Raises
    ------
    ValueError
        If the file is not an sknovelty model file (another format, a pickle, a truncated or
        corrupted file, not a regular file), was written by a newer sknovelty, names an
        unknown class, exceeds a limit of model files, or holds parameters, fitted values or
        weights that do not fit the class or each other. The message names the file (and,
        inside a Pipeline or a PatchwiseDetector, the estimator's prefix).
    FileNotFoundError
        If ``path`` does not exist.

    See Also
    --------
    sknovelty.io.save : Write a fitted estimator to a model file.
    """
    f, size = _open(path)
    with f:
        metadata, table, start = _read_header(f, size, path)
        _check_format(metadata, path)
        node = _plan(metadata, "", path, device, fitted=True, depth=0, count=[0])
        tensors = _read_tensors(f, table, start, path)
    try:
        _restore_node(node, tensors)
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
        # A file written by save has every key and type read above; these errors mean that it
        # was damaged or edited. The original error stays chained for debugging.
        raise ValueError(f"{path} does not hold a valid {node.name}: {_detail(exc)}") from exc
    return node.est


def _detail(exc):
    return str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"


class _Node:
    """An estimator of a file, instantiated from its parameters (:func:`_plan`), whose fitted
    state :func:`_restore_node` restores once the tensors are read."""

    def __init__(self, name, kind, est, trained, fitted=None, history=None, children=()):
        self.name, self.kind, self.est, self.trained = name, kind, est, trained
        self.fitted, self.history, self.children = fitted, history, list(children)


def _lookup(name):
    """``(kind, class)`` of a class name of a file: sknovelty's registered estimators,
    ``Pipeline`` and :data:`TRANSFORMERS`; None for any other name."""
    from sklearn.pipeline import Pipeline

    if not isinstance(name, str):
        return None
    if name in _REGISTRY:
        cls, kind = _REGISTRY[name]
        return kind, cls
    if name == "Pipeline":
        return "pipeline", Pipeline
    if name in TRANSFORMERS:
        return "transformer", _transformer_classes()[name]
    return None


def _plan(metadata, prefix, path, device, fitted, depth, count):
    """The estimator at ``prefix`` of a file, built from its metadata alone (classes and
    validated parameters, nested estimators included), with its fitted JSON kept for
    :func:`_restore_node`; no tensor is read yet."""
    at = f" at {prefix[:-1]!r}" if prefix else ""
    where = f"{path} [{prefix[:-1]}]" if prefix else path
    count[0] += 1
    if depth > MAX_NESTING:
        raise ValueError(f"{path} nests estimators deeper than {MAX_NESTING} levels{at} "
                         "(sknovelty.io.MAX_NESTING)")
    if count[0] > MAX_ESTIMATORS:
        raise ValueError(f"{path} holds more than {MAX_ESTIMATORS} estimators "
                         "(sknovelty.io.MAX_ESTIMATORS)")
    name = metadata.get(prefix + "class")
    found = _lookup(name)
    if found is None:
        known = sorted(_registry()) + ["Pipeline"] + sorted(TRANSFORMERS)
        raise ValueError(f"{path} holds an unknown estimator class {name!r:.100}{at}; "
                         f"known: {', '.join(known)}")
    kind, cls = found
    params = {k: _plain(v) for k, v in _json_field(metadata, prefix + "params", path,
                                                   dict).items()}
    state = _json_field(metadata, prefix + "fitted", path, dict) if fitted and kind not in (
        "pipeline",) else None
    if kind in ("deep", "whitened", "neighbors"):
        history = (_json_field(metadata, prefix + "history", path, list, MAX_HISTORY_BYTES)
                   if fitted and kind == "deep" else None)
        if device is not None and kind == "deep":
            params["device"] = device
        return _Node(name, kind, _instantiate(cls, params, where), fitted, state, history)
    if kind == "transformer":
        return _Node(name, kind, _instantiate_transformer(cls, params, where), fitted, state)
    if kind == "pipeline":
        names = _json_field(metadata, prefix + "steps", path, list)
        try:
            if not names or len(names) > MAX_ESTIMATORS:
                raise ValueError(f"a Pipeline has 1 to {MAX_ESTIMATORS} steps, not {len(names)}")
            expected = set(cls(steps=[("step", None)]).get_params(deep=False)) - {"steps"}
            for step_name in names:
                _check_step_name(step_name, expected)
            if len(set(names)) != len(names):
                raise ValueError("its step names are not unique")
            if not set(params) <= expected or params.get("memory") is not None or params.get(
                    "transform_input") is not None or not isinstance(params.get("verbose", False),
                                                                     bool):
                raise ValueError(f"the Pipeline parameters {str(params)[:200]} are not those a "
                                 "model file holds (memory=None, transform_input=None, verbose "
                                 "a bool)")
        except ValueError as exc:
            raise ValueError(f"{where} holds an invalid Pipeline: {exc}") from None
        children = [_plan(metadata, f"{prefix}steps.{i}.", path, device, fitted, depth + 1,
                          count) for i in range(len(names))]
        for step_name, child in zip(names[:-1], children[:-1]):
            if not _transforms(child):
                raise ValueError(f"{where} holds an invalid Pipeline: its step {step_name!r} is "
                                 f"a {child.name}, which does not transform (only the last "
                                 "step may be a detector)")
        model = cls(steps=[(n, child.est) for n, child in zip(names, children)], **params)
        return _Node(name, kind, model, fitted, children=children)
    # patchwise
    if "estimator" in params:
        raise ValueError(f"{where} holds invalid parameters for {name}: 'estimator' is stored "
                         "as an estimator of its own, not as a parameter")
    template = _plan(metadata, prefix + "estimator.", path, device, False, depth + 1, count)
    children = [_plan(metadata, prefix + "estimator_.", path, device, True, depth + 1, count)
                ] if fitted else []
    for child in children:  # the fitted clone of the template
        if child.kind != template.kind or type(child.est) is not type(template.est) or (
                child.kind == "pipeline" and _transforms(child)):
            raise ValueError(f"{where} holds an invalid {name}: its fitted estimator_ "
                             f"({child.name}) is not a fitted clone of its estimator "
                             f"({template.name}) that scores samples")
    model = _instantiate(cls, {**params, "estimator": template.est}, where)
    return _Node(name, kind, model, fitted, state, children=children)


def _transforms(node):
    """Whether the estimator of ``node`` is a transformer (or a Pipeline ending with one)."""
    return node.kind == "transformer" or (node.kind == "pipeline"
                                          and _transforms(node.children[-1]))


def _instantiate_transformer(cls, params, path):
    """``cls(**params)`` for an allowed scikit-learn transformer, with the parameters
    validated by the class's own constraints (``_validate_params``)."""
    try:
        est = cls(**params)
    except TypeError as exc:
        raise ValueError(f"{path} holds parameters that {cls.__name__} does not take "
                         f"({exc})") from exc
    try:
        est._validate_params()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path} holds invalid parameters for {cls.__name__}: {exc}") from exc
    return est


def _restore_node(node, tensors):
    """Restore the fitted state of ``node`` (of :func:`_plan`) from ``tensors``, named
    without the node's prefix; every tensor must be used."""
    est = node.est
    if not node.trained:  # a PatchwiseDetector's template: parameters only
        if tensors:
            raise ValueError(f"unexpected tensors {sorted(tensors)[:5]} of an estimator "
                             "stored unfitted")
        return
    if node.kind == "deep":
        fitted, history = node.fitted, node.history
        optional = set(est._optional_fitted_attributes)
        missing = set(est._fitted_attributes) - optional - set(fitted)
        extra = set(fitted) - set(est._fitted_attributes) - optional
        if missing or extra:
            raise ValueError(f"fitted attributes {sorted(missing)} are missing" if missing
                             else f"unexpected fitted attributes {sorted(extra)}")
        if not all(isinstance(epoch, dict) for epoch in history):
            raise ValueError("the history should be a list of epoch records")
        fitted = {k: _plain(v) if k != "normalization_" else v for k, v in fitted.items()}
        module_state = _split_prefixed(tensors, "module")
        criterion_state = _split_prefixed(tensors, "criterion")
        _check_used(tensors)
        est._restore(fitted, module_state, criterion_state, history)
    elif node.kind == "whitened":
        _restore_whitened(est, node.fitted, tensors)
        _check_used(tensors)
    elif node.kind == "neighbors":
        _restore_neighbors(est, node.fitted, tensors)
        _check_used(tensors)
    elif node.kind == "transformer":
        attrs = _check_transformer(est, _decode_attributes(node.fitted, "fitted", tensors, est))
        _check_used(tensors)
        for name, value in attrs.items():
            setattr(est, name, value)
    elif node.kind == "pipeline":
        for i, child in enumerate(node.children):
            _restore_child(child, _split_prefixed(tensors, f"steps.{i}"), f"steps.{i}")
        if tensors:
            raise ValueError(f"tensors {sorted(tensors)[:5]} belong to no step of the "
                             f"Pipeline's {len(node.children)}")
        _check_pipeline_widths(est)
    else:
        if _split_prefixed(tensors, "estimator"):
            raise ValueError("the template 'estimator' of a PatchwiseDetector has no tensors")
        inner = node.children[0]
        _restore_child(inner, _split_prefixed(tensors, "estimator_"), "estimator_")
        _restore_patchwise(est, node.fitted, tensors, inner.est)
        _check_used(tensors)


def _check_used(tensors):
    if tensors:
        raise ValueError(f"unexpected tensors {sorted(tensors)[:5]}")


def _restore_child(child, tensors, prefix):
    try:
        _restore_node(child, tensors)
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
        raise ValueError(f"{prefix} ({child.name}): {_detail(exc)}") from exc


def _check_pipeline_widths(pipeline):
    """Each step takes as many features as the one before it gives."""
    width, previous = None, None
    for step_name, step in pipeline.steps:
        wanted = getattr(step, "n_features_in_", None)
        if width is not None and wanted != width:
            raise ValueError(f"the step {step_name!r} takes {wanted} features, but the step "
                             f"{previous!r} gives {width}")
        width, previous = _output_width(step), step_name


def _output_width(step):
    from sklearn.pipeline import Pipeline

    if isinstance(step, Pipeline):
        return _output_width(step.steps[-1][1])
    return getattr(step, "n_components_", getattr(step, "n_features_in_", None))


def _restore_patchwise(model, section, tensors, inner):
    """The fitted values of a PatchwiseDetector: those of every detector (sample shape,
    offset, reference scores, feature names), patch starts recomputed from them, and a
    fitted estimator of patches of the shape they give."""
    attrs = _decode_attributes(section, "fitted", tensors, model)
    missing = set(_WHITENED_REQUIRED) - set(attrs)
    extra = set(attrs) - set(_WHITENED_REQUIRED) - set(_WHITENED_OPTIONAL)
    if missing or extra:
        raise ValueError(f"fitted attributes {sorted(missing)} are missing" if missing
                         else f"unexpected fitted attributes {sorted(extra)}")
    shape = attrs["sample_shape_"] = check_sample_shape(attrs["sample_shape_"], (1, 3))
    _check_common_fitted(attrs, shape)
    if model.image_shape is not None and len(shape) == 3 and shape != tuple(model.image_shape):
        raise ValueError(f"sample_shape_ {shape} is not image_shape={model.image_shape}")
    p = model.patch_size
    starts = model._patch_starts(shape)
    patch = (shape[0], p, p) if len(shape) == 3 else (p,)
    inner_shape = getattr(inner, "sample_shape_", None)
    inner_features = getattr(inner, "n_features_in_", None)
    if (inner_shape is not None and tuple(inner_shape) != patch) or (
            inner_features not in (patch[0], math.prod(patch))):
        raise ValueError(f"estimator_ was fitted on samples of "
                         f"{inner_shape or inner_features} {'shape' if inner_shape else 'values'}"
                         f", not on the patches of shape {patch} that sample_shape_ {shape} "
                         f"and patch_size={p} give")
    for name, value in attrs.items():
        setattr(model, name, value)
    model.estimator_, model.patch_starts_ = inner, starts
