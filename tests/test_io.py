"""Model files (sknovelty.io): safetensors round trips of every estimator, and files that must
be refused without running anything (pickles, torch.save zips, truncated, edited)."""

import json
import pickle
import struct

import numpy as np
import pytest
import torch
from safetensors import safe_open
from sklearn.base import BaseEstimator
from safetensors.torch import save_file

from sknovelty import (AutoencoderDetector, LatentAutoregressiveDetector, WhitenedKDE,
                       WhitenedOneClassSVM, load)
from sknovelty.io import FORMAT, FORMAT_VERSION
from sknovelty.registry import ESTIMATORS

from .conftest import tiny_ae


#: the PCA-whitened baselines (the other estimators that are not deep store their rows)
WHITENED = tuple(name for name, entry in ESTIMATORS.items() if entry.cls._file_kind == "whitened")
DEEP = tuple(name for name, entry in ESTIMATORS.items() if entry.deep)
#: the tensors of each layout of model file (the class's ``_file_kind``), by their prefixes
TENSOR_PREFIXES = {"whitened": ("fitted.", "pca.", "scorer."), "deep": ("module.", "criterion."),
                   "neighbors": ("fitted.", "index."),
                   "patchwise": ("fitted.", "estimator.", "estimator_.")}


def _params(est):
    """``get_params()``, with the estimators among the values as their class (their own
    parameters are there too, as ``estimator__...``)."""
    return {k: type(v) if isinstance(v, BaseEstimator) else v for k, v in est.get_params().items()}


@pytest.fixture
def fitted(every_fitted):
    """Each estimator fitted once (conftest's ``every_fitted``), with the rows it scores."""
    name, det, _, X_test = every_fitted
    return name, det, X_test


@pytest.fixture(scope="module")
def ae_file(digits, tmp_path_factory):
    """A small valid model file and the scores of the model it holds."""
    X, y = digits
    det = tiny_ae(epochs=1).fit(X[y == 0][:40])
    path = tmp_path_factory.mktemp("ae") / "ae.safetensors"
    det.save(path)
    return path, det.score_samples(X[:20]), X[:20]


def _read(path):
    with safe_open(str(path), framework="pt", device="cpu") as f:
        return dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}


def _rewrite(src, dst, metadata=None, tensors=None):
    """Copy of the model file ``src`` with some metadata entries (JSON strings, or None to drop)
    or tensors (None to drop) replaced: what an editor of the file could do."""
    meta, state = _read(src)
    for key, value in (metadata or {}).items():
        meta.pop(key) if value is None else meta.__setitem__(key, value)
    for key, value in (tensors or {}).items():
        state.pop(key) if value is None else state.__setitem__(key, value)
    save_file(state, str(dst), metadata=meta)
    return dst


# ---------------------------------------------------------------- round trips
def test_every_estimator_round_trips_bit_identically(fitted, tmp_path):
    name, det, X_test = fitted
    path = tmp_path / "model.safetensors"
    det.save(path)
    expected = det.score_samples(X_test)
    comps = det.score_components(X_test) if hasattr(det, "score_components") else {}
    device = {} if name in WHITENED else {"device": "cpu"}
    for other in (load(path), type(det).load(path, **device)):
        assert type(other) is type(det)
        assert _params(other) == _params(det)
        np.testing.assert_array_equal(other.score_samples(X_test), expected)
        assert other.offset_ == det.offset_
        if comps:
            again = other.score_components(X_test)
            assert set(again) == set(comps)
            for key in comps:
                np.testing.assert_array_equal(again[key], comps[key])
        if name in WHITENED:
            for attr, value in vars(det.pca_).items():  # same values, dtypes and layouts
                got = getattr(other.pca_, attr)
                assert type(got) is type(value), attr
                if isinstance(value, np.ndarray):
                    np.testing.assert_array_equal(got, value)
                    assert got.dtype == value.dtype
                    assert got.flags.f_contiguous == value.flags.f_contiguous
        elif name in DEEP:
            assert len(other.net_.history) == len(det.net_.history)
            assert other.device_ == "cpu"


def test_file_is_plain_safetensors_with_json_metadata(fitted, tmp_path):
    name, det, _ = fitted
    path = tmp_path / "model.safetensors"
    det.save(path)
    raw = path.read_bytes()
    # safetensors layout: u64 little-endian header length, then that many bytes of JSON
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__")
    assert meta["format"] == FORMAT and meta["format_version"] == str(FORMAT_VERSION)
    assert meta["class"] == type(det).__name__
    assert all(isinstance(v, str) for v in meta.values())
    for key in ("params", "fitted", "versions"):
        json.loads(meta[key])
    assert json.loads(meta["params"])["contamination"] == det.contamination
    metadata, tensors = _read(path)
    assert metadata == meta and set(tensors) == set(header)
    assert all(type(t) is torch.Tensor for t in tensors.values())
    assert all(k.startswith(TENSOR_PREFIXES[type(det)._file_kind]) for k in tensors)
    if name not in DEEP:
        assert "history" not in meta
    if name in WHITENED:
        assert tensors["pca.components_"].shape == det.pca_.components_.T.shape  # stored C-order
    elif name in DEEP:
        assert len(json.loads(meta["history"])) == len(det.net_.history)
        module_state = det.net_.module_.state_dict()
        stored = {k for k in tensors if k.startswith("module.")}
        assert stored == {f"module.{k}" for k in module_state}
        for k, v in module_state.items():
            torch.testing.assert_close(tensors[f"module.{k}"], v.cpu(), rtol=0, atol=0)


def test_load_checks_the_class_it_is_called_on(ae_file, digits, tmp_path):
    path = ae_file[0]
    with pytest.raises(TypeError, match="holds a AutoencoderDetector, not a LatentAutoregressive"):
        LatentAutoregressiveDetector.load(path)
    with pytest.raises(TypeError, match="not a WhitenedKDE"):
        WhitenedKDE.load(path)
    X, y = digits
    svm = WhitenedOneClassSVM(n_components=3).fit(X[y == 0][:40].reshape(40, -1))
    svm.save(tmp_path / "svm.safetensors")
    with pytest.raises(TypeError, match="not a WhitenedKDE"):
        WhitenedKDE.load(tmp_path / "svm.safetensors")


def test_device_none_falls_back_to_cpu_with_a_warning(ae_file, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    path, expected, X = ae_file
    params = json.loads(_read(path)[0]["params"])
    on_cuda = _rewrite(path, tmp_path / "cuda.safetensors",
                       metadata={"params": json.dumps({**params, "device": "cuda"})})
    with pytest.warns(UserWarning, match="not available here; loading on CPU"):
        det = load(on_cuda)
    assert det.device == "cuda" and det.device_ == "cpu"
    np.testing.assert_array_equal(det.score_samples(X), expected)


def test_only_sknovelty_estimators_are_saved(tmp_path):
    class Mine(AutoencoderDetector):
        pass

    with pytest.raises(TypeError, match="not one of sknovelty's own estimators"):
        Mine().save(tmp_path / "m.safetensors")


# ---------------------------------------------------------------- files that are refused
class _CreatesAFile:
    """Unpickling this object opens (creates) ``marker``: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.mark.parametrize("name", ["model.safetensors", "model.pt"])
def test_a_pickle_is_refused_without_being_run(name, tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / name
    path.write_bytes(pickle.dumps(_CreatesAFile(marker)))
    pickle.loads(path.read_bytes()).close()  # the payload works: unpickling creates the marker
    assert marker.exists()
    marker.unlink()
    for loader in (load, AutoencoderDetector.load, WhitenedKDE.load):
        with pytest.raises(ValueError, match="is not an sknovelty model file"):
            loader(path)
    assert not marker.exists()


def test_a_torch_save_zip_is_refused(tmp_path):
    # sknovelty's format 1 and any other torch.save file
    torch.save({"meta": json.dumps({"format": "sknovelty-model/1"}), "module": {}},
               tmp_path / "x.pt")
    with pytest.raises(ValueError, match=r"x\.pt is not an sknovelty model file.*safetensors"):
        load(tmp_path / "x.pt")


def test_truncated_and_corrupted_files_are_refused(ae_file, tmp_path):
    path = ae_file[0]
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    broken = {
        "data_cut": raw[:8 + n + (len(raw) - 8 - n) // 2],
        "header_cut": raw[:8 + n // 2],
        "length_only": raw[:8],
        "empty": b"",
        "header_garbage": raw[:8] + b"#" * n + raw[8 + n:],
        "trailing_bytes": raw + b"\0" * 8,
    }
    for what, content in broken.items():
        bad = tmp_path / f"{what}.safetensors"
        bad.write_bytes(content)
        with pytest.raises(ValueError, match=f"{what}.safetensors is not an sknovelty model file"):
            load(bad)


def test_foreign_and_newer_files_are_refused(ae_file, tmp_path):
    path = ae_file[0]
    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="plain.safetensors is not an sknovelty model file"):
        load(tmp_path / "plain.safetensors")
    other = _rewrite(path, tmp_path / "other.safetensors", metadata={"format": "other"})
    with pytest.raises(ValueError, match="is not an sknovelty model file"):
        load(other)
    newer = _rewrite(path, tmp_path / "newer.safetensors", metadata={"format_version": "99"})
    with pytest.raises(ValueError, match=f"newer sknovelty.*version 99.*reads format version "
                                         f"{FORMAT_VERSION}"):
        load(newer)
    for version in ("two", None):
        odd = _rewrite(path, tmp_path / "odd.safetensors", metadata={"format_version": version})
        with pytest.raises(ValueError, match="format_version"):
            load(odd)


@pytest.mark.parametrize("cls_name", ["Popen", "os.system", "BaseDeepDetector",
                                      "_WhitenedDetector", "_MaskedReconstructionDetector", ""])
def test_unknown_class_names_are_refused(cls_name, ae_file, tmp_path):
    bad = _rewrite(ae_file[0], tmp_path / "cls.safetensors", metadata={"class": cls_name})
    with pytest.raises(ValueError, match="unknown estimator class"):
        load(bad)


def test_edited_parameters_and_weights_are_refused(ae_file, tmp_path):
    path, expected, X = ae_file
    meta, state = _read(path)
    params = json.loads(meta["params"])
    cases = {
        # another known class whose __init__ does not take AutoencoderDetector's noise_std
        "class": ({"class": "LatentAutoregressiveDetector"}, {}, "does not take"),
        "unknown_param": ({"params": json.dumps({**params, "evil": 1})}, {}, "does not take"),
        "invalid_param": ({"params": json.dumps({**params, "contamination": 7})}, {},
                          "invalid parameters"),
        "params_not_json": ({"params": "{not json"}, {}, "not valid JSON"),
        "params_missing": ({"params": None}, {}, "'params' is missing"),
        "params_not_dict": ({"params": "[1, 2]"}, {}, "'params' is not a dict"),
        "fitted_missing": ({"fitted": None}, {}, "'fitted' is missing"),
        "fitted_attribute": ({"fitted": json.dumps({"offset_": 0.0})}, {}, "are missing"),
        # only the listed fitted attributes are set: no method can be shadowed
        "fitted_extra": ({"fitted": json.dumps({**json.loads(meta["fitted"]), "_build_module": 1})},
                         {}, "unexpected fitted attributes"),
        "history_missing": ({"history": None}, {}, "'history' is missing"),
        # weights that do not fit the module the parameters build
        "shape": ({"params": json.dumps({**params, "latent_dim": 5})}, {}, "do not fit"),
        "missing_tensor": ({}, {next(k for k in state if k.startswith("module.")): None},
                           "do not fit"),
        "extra_tensor": ({}, {"module.extra": torch.zeros(1)}, "do not fit"),
        "foreign_tensor": ({}, {"payload": torch.zeros(1)}, "unexpected tensors"),
    }
    for what, (metadata, tensors, message) in cases.items():
        bad = _rewrite(path, tmp_path / f"{what}.safetensors", metadata, tensors)
        with pytest.raises(ValueError, match=message) as info:
            load(bad)
        assert f"{what}.safetensors" in str(info.value), what
    # the untouched file still loads: the failures above come from the edits
    np.testing.assert_array_equal(load(path).score_samples(X), expected)


def test_edited_whitened_files_are_refused(digits, tmp_path):
    X, y = digits
    kde = WhitenedKDE(n_components=3).fit(X[y == 0][:40].reshape(40, -1))
    path = tmp_path / "kde.safetensors"
    kde.save(path)
    meta, state = _read(path)
    fitted = json.loads(meta["fitted"])
    cases = {
        "no_pca_tensor": ({}, {"pca.components_": None}, "'pca.components_' is missing"),
        "no_section": ({"fitted": json.dumps({k: v for k, v in fitted.items() if k != "pca"})}, {},
                       "section 'pca' is missing"),
        "bad_layout": ({"fitted": json.dumps({**fitted, "pca": {
            **fitted["pca"], "arrays": {**fitted["pca"]["arrays"], "mean_": "Z"}}})}, {},
            "unknown layout"),
        "shadow_method": ({"fitted": json.dumps({**fitted, "detector": {
            **fitted["detector"], "values": {"score_samples": 1}}})}, {},
            "'score_samples' is not a fitted attribute"),
        "dunder": ({"fitted": json.dumps({**fitted, "scorer": {
            **fitted["scorer"], "values": {"__dict__": [1]}}})}, {}, "not a fitted attribute"),
        "bad_bandwidth": ({"params": json.dumps({**json.loads(meta["params"]),
                                                 "bandwidth": "wide"})}, {}, "invalid parameters"),
        "foreign_tensor": ({}, {"module.weight": torch.zeros(1)}, "unexpected tensors"),
    }
    for what, (metadata, tensors, message) in cases.items():
        bad = _rewrite(path, tmp_path / f"{what}.safetensors", metadata, tensors)
        with pytest.raises(ValueError, match=message):
            load(bad)
