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
    refitted on).
Metadata (``str -> str``)
    ``format`` (``"sknovelty-model"``), ``format_version`` (``"2"``), ``class``, and the JSON
    strings ``params``, ``fitted``, ``versions`` and, for deep detectors, ``history``.
    For deep detectors ``fitted`` maps each name in ``_fitted_attributes`` to its value; for
    the whitened baselines it has the sections ``detector``, ``pca`` and ``scorer``, each
    ``{"values": {name: JSON}, "arrays": {name: "C" | "F" | "scalar"}, "str_arrays": {...}}``
    (``arrays`` names the tensors of the section and how to lay them out again), the last two
    also with the estimator's ``params``, and ``scorer`` with ``refit``.
"""

import json
import os
import warnings

import numpy as np
import safetensors
import sklearn
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from sklearn.utils.validation import check_is_fitted

from ._version import __version__

__all__ = ["FORMAT", "FORMAT_VERSION", "ModelFileMixin", "load", "register", "save"]

FORMAT = "sknovelty-model"
#: Version 1 was a ``torch.save`` zip; 2 is safetensors. Bump when a reader of the previous
#: version would misread a new file.
FORMAT_VERSION = 2


#: sknovelty's own public estimators: class name -> (class, "deep" | "whitened"). Filled by
#: :func:`register`, which the estimators' base classes call for each subclass they get.
_REGISTRY = {}


def register(cls, kind):
    """Make ``cls`` restorable by name (called from ``__init_subclass__`` of the bases).

    ``kind`` says how its fitted state is stored: ``"deep"`` (weights of ``net_``) or
    ``"whitened"`` (PCA and scorer arrays). Only public classes defined in sknovelty count:
    a subclass defined elsewhere could reuse the name of one of ours and shadow it.
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
    attribute names, or that would shadow one of its methods or properties, are refused, so
    an edited file can only set data attributes.
    """
    names = [*section["values"], *section["str_arrays"], *section["arrays"]]
    for name in names:
        if not (isinstance(name, str) and name.isidentifier()) or name.startswith("__") \
                or hasattr(type(owner), name):
            raise ValueError(f"{name!r} is not a fitted attribute of {type(owner).__name__}")
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
        array = tensors.pop(key).numpy()
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


def _restore_whitened(model, fitted, tensors):
    from sklearn.decomposition import PCA

    for name, value in _decode_attributes(fitted["detector"], "fitted", tensors, model).items():
        setattr(model, name, value)
    pca = PCA().set_params(**fitted["pca"]["params"])
    for name, value in _decode_attributes(fitted["pca"], "pca", tensors, pca).items():
        setattr(pca, name, value)
    section = fitted["scorer"]
    scorer = model._make_model().set_params(**section["params"])
    attrs = _decode_attributes(section, "scorer", tensors, scorer)
    if section["refit"]:
        scorer.fit(attrs["data"])
    else:
        for name, value in attrs.items():
            setattr(scorer, name, value)
    model.pca_, model.model_ = pca, scorer


# ---------------------------------------------------------------- writing
def save(model, path):
    """Write a fitted sknovelty estimator to ``path`` in the safetensors format.

    Parameters
    ----------
    model : fitted sknovelty estimator
        A deep detector or a whitened baseline.
    path : str or path-like
        Destination; any extension works, ``.safetensors`` is conventional.

    Returns
    -------
    None

    Raises
    ------
    NotFittedError
        If ``model`` is not fitted.
    TypeError
        If ``model`` is not one of sknovelty's own estimators (subclasses defined elsewhere
        are not restorable by name: pickle/joblib them), or if a parameter or fitted
        attribute cannot be stored as JSON (e.g. a ``RandomState`` as ``random_state``).

    See Also
    --------
    sknovelty.io.load : Read the file back.

    Notes
    -----
    ``callbacks`` are not stored (a warning says so); the loaded model has ``callbacks=None``.
    """
    name = type(model).__name__
    if _registry().get(name) is not type(model):
        raise TypeError(f"{type(model).__module__}.{name} is not one of sknovelty's own "
                        "estimators and could not be restored by name; use pickle/joblib")
    check_is_fitted(model)
    params = model.get_params(deep=False)
    if params.get("callbacks"):
        warnings.warn("callbacks are not saved; the loaded model has callbacks=None",
                      UserWarning, stacklevel=3)
        params["callbacks"] = None
    tensors, metadata = {}, {}
    if _is_deep(type(model)):
        optional = model._optional_fitted_attributes
        fitted = {attr: _jsonable(getattr(model, attr)) for attr in
                  dict.fromkeys([*model._fitted_attributes, *optional])
                  if attr not in optional or hasattr(model, attr)}
        for prefix, state in (("module", model.net_.module_.state_dict()),
                              ("criterion", model.net_.criterion_.state_dict())):
            tensors.update({f"{prefix}.{k}": _cpu_copy(v) for k, v in state.items()})
        metadata["history"] = json.dumps(list(model.net_.history), default=float)
    else:
        fitted = _whitened_state(model, tensors)
    try:
        metadata["params"] = json.dumps(params)
        metadata["fitted"] = json.dumps(fitted)
    except TypeError as exc:
        raise TypeError(f"cannot store the parameters of {model!r} as JSON ({exc}); "
                        "use an int random_state, or pickle/joblib") from exc
    metadata.update({
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "class": name,
        "versions": json.dumps({"sknovelty": __version__, "torch": torch.__version__,
                                "scikit-learn": sklearn.__version__,
                                "safetensors": safetensors.__version__}),
    })
    save_file(tensors, os.fspath(path), metadata=metadata)


# ---------------------------------------------------------------- reading
def _read(path):
    """Metadata and CPU tensors of a safetensors file; ``ValueError`` for anything else."""
    try:
        with safe_open(os.fspath(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except SafetensorError as exc:
        # pickles and torch.save zips land here too: their first 8 bytes, read as the header
        # length, are absurd, and nothing past them is interpreted
        raise ValueError(
            f"{path} is not an sknovelty model file: it is not a valid safetensors file ({exc}). "
            "It may be truncated or corrupted; files written with torch.save by sknovelty "
            "before format version 2 are not read") from exc
    return metadata, tensors


def _json_field(metadata, key, path, kind):
    if key not in metadata:
        raise ValueError(f"{path} is damaged: metadata {key!r} is missing")
    try:
        value = json.loads(metadata[key])
    except json.JSONDecodeError as exc:
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
    """``cls(**params)`` with the parameters validated as ``fit`` would validate them.

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
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path} holds invalid parameters for {cls.__name__}: {exc}") from exc
    return model


def _split_prefixed(tensors, prefix):
    head = prefix + "."
    return {k[len(head):]: tensors.pop(k) for k in list(tensors) if k.startswith(head)}


def load(path, device=None):
    """Read an estimator written by :func:`sknovelty.io.save`.

    Parameters
    ----------
    path : str or path-like
        A model file written by :func:`sknovelty.io.save` (or an estimator's ``save``).
    device : str or None
        Device to load the weights on (deep detectors; the whitened baselines run on the CPU
        and ignore it). ``None`` keeps the saved ``device`` parameter, falling back to the CPU
        (with a warning) when that device is not available here, so a model fitted on CUDA
        scores on a CPU-only machine.

    Returns
    -------
    estimator
        The fitted estimator, of the class recorded in the file.

    Raises
    ------
    ValueError
        If the file is not an sknovelty model file (another format, a pickle, a truncated or
        corrupted file), was written by a newer sknovelty, names an unknown class, or holds
        parameters or weights that do not fit the class.

    See Also
    --------
    sknovelty.io.save : Write a fitted estimator to a model file.
    """
    metadata, tensors = _read(path)
    _check_format(metadata, path)
    classes = _registry()
    name = metadata.get("class")
    if name not in classes:
        raise ValueError(f"{path} holds an unknown estimator class {name!r}; "
                         f"known: {', '.join(sorted(classes))}")
    cls = classes[name]
    params = {k: _plain(v) for k, v in _json_field(metadata, "params", path, dict).items()}
    fitted = _json_field(metadata, "fitted", path, dict)
    deep = _is_deep(cls)
    history = _json_field(metadata, "history", path, list) if deep else None
    if device is not None and deep:
        params["device"] = device
    model = _instantiate(cls, params, path)
    try:
        if deep:
            optional = set(model._optional_fitted_attributes)
            missing = set(model._fitted_attributes) - optional - set(fitted)
            extra = set(fitted) - set(model._fitted_attributes) - optional
            if missing or extra:
                raise ValueError(f"fitted attributes {sorted(missing)} are missing" if missing
                                 else f"unexpected fitted attributes {sorted(extra)}")
            fitted = {k: _plain(v) if k != "normalization_" else v for k, v in fitted.items()}
            module_state = _split_prefixed(tensors, "module")
            criterion_state = _split_prefixed(tensors, "criterion")
        else:
            _restore_whitened(model, fitted, tensors)
        if tensors:
            raise ValueError(f"unexpected tensors {sorted(tensors)[:5]}")
        if deep:
            model._restore(fitted, module_state, criterion_state, history)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        # A file written by save has every key and type read above; these errors mean that it
        # was damaged or edited. The original error stays chained for debugging.
        detail = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc)
        raise ValueError(f"{path} does not hold a valid {name}: {detail}") from exc
    return model
