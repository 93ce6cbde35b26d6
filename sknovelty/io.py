"""Persistence without pickle: JSON hyperparameters + weights in one ``torch.save`` file.

The file is a dict of strings and tensors, so :func:`load` reads it with
``torch.load(weights_only=True)`` and opening a model file never executes code. Classes
are looked up by name among sknovelty's own detectors, never imported from the file.
"""

import json
import warnings

import torch
from sklearn.utils.validation import check_is_fitted

FORMAT = "sknovelty-model/1"


def _registry():
    from .base import BaseDeepDetector

    found, todo = {}, [BaseDeepDetector]
    while todo:
        cls = todo.pop()
        found[cls.__name__] = cls
        todo.extend(cls.__subclasses__())
    return found


def _plain(value):
    """Tuples become lists in JSON; turn them back into tuples on load."""
    return tuple(_plain(v) for v in value) if isinstance(value, list) else value


def _jsonable(value):
    """numpy arrays and scalars (fitted attributes) as JSON lists and numbers."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def save(model, path):
    """Write a fitted sknovelty detector to ``path``."""
    check_is_fitted(model)
    params = model.get_params(deep=False)
    if params.get("callbacks"):
        warnings.warn("callbacks are not saved; the loaded model has callbacks=None",
                      UserWarning, stacklevel=3)
        params["callbacks"] = None
    meta = {
        "format": FORMAT,
        "class": type(model).__name__,
        "params": params,
        "fitted": {name: _jsonable(getattr(model, name)) for name in model._fitted_attributes},
        "versions": {"torch": torch.__version__},
    }
    try:
        meta_json = json.dumps(meta)
    except TypeError as exc:
        raise TypeError(f"cannot store the parameters of {model!r} as JSON ({exc}); "
                        "use an int random_state, or pickle/joblib") from exc
    history = json.dumps(list(model.net_.history), default=float)
    torch.save({
        "meta": meta_json,
        "history": history,
        "module": {k: v.detach().cpu() for k, v in model.net_.module_.state_dict().items()},
        "criterion": {k: v.detach().cpu() for k, v in model.net_.criterion_.state_dict().items()},
    }, path)


def load(path, device=None):
    """Read a detector written by :func:`save`.

    Parameters
    ----------
    path : str or path-like
    device : str or None
        Device to load the weights on. ``None`` keeps the saved ``device`` parameter, falling
        back to the CPU (with a warning) when that device is not available here, so a model
        fitted on CUDA scores on a CPU-only machine.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    meta = json.loads(state["meta"])
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not an sknovelty model file (format {meta.get('format')!r})")
    classes = _registry()
    if meta["class"] not in classes:
        raise ValueError(f"{path} holds an unknown detector class {meta['class']!r}")
    params = {k: _plain(v) for k, v in meta["params"].items()}
    if device is not None:
        params["device"] = device
    model = classes[meta["class"]](**params)
    fitted = {k: _plain(v) if k != "normalization_" else v for k, v in meta["fitted"].items()}
    model._restore(fitted, state["module"], state["criterion"], json.loads(state["history"]))
    return model
