"""Crafted model files (issue 33): each case is generated here, by code, from a real file of a
tiny fitted estimator, and loaded in a forked child process with a memory cap and a time
limit, which must end with a ``ValueError`` that names the file, quickly.

The classes of cases: files that would exhaust memory, time or threads (many tensors, huge
headers, samples, widths, batches, ``n_jobs``, histories); errors that used to escape as
something else than ``ValueError`` (deep JSON, absurd shapes, exotic devices, directories,
devices, FIFOs); tampered fitted values (NaN, unsorted, inconsistent shapes, overridden
parameters, weights of another dtype); and the model-file parts of the smaller findings
(feature names kept, clean failures of ``save``).
"""

import json
import os
import re
import resource
import signal
import struct
import time
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from sknovelty import io, load
from sknovelty._device import resolve_device
from sknovelty.registry import ESTIMATORS

from .conftest import object_rows

#: A child may map this much more than the test process had when it forked (its address
#: space is capped there: an allocation beyond fails instead of swapping the machine).
CHILD_EXTRA_MEMORY = 3 << 29  # 1.5 GiB
#: A child running longer is killed and the case fails (a hang: the FIFO of old).
CHILD_TIMEOUT = 60
#: A refusal must come within this many seconds (the 1 M-tensor file took 20-53 s).
REFUSE_SECONDS = 10

DEEP = [name for name, entry in ESTIMATORS.items() if entry.deep]
VECTORS = [name for name, entry in ESTIMATORS.items() if "vectors" in entry.inputs]


# ---------------------------------------------------------------- helpers
def _vsize():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize"))


def isolated(fn, timeout=CHILD_TIMEOUT):
    """Run ``fn()`` in a forked child with a capped address space; return a dict with
    ``value`` (its repr) or ``type``/``message`` of what it raised, and ``seconds``."""
    cap = _vsize() + CHILD_EXTRA_MEMORY
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(r)
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
            torch.set_num_threads(1)
            start = time.perf_counter()
            try:
                out = {"value": repr(fn())[:2000]}
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                out = {"type": type(exc).__name__, "message": str(exc)[:4000]}
            out["seconds"] = time.perf_counter() - start
            os.write(w, json.dumps(out).encode()[:60000])
        finally:
            os._exit(0)
    os.close(w)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(r)
            pytest.fail(f"the child still ran after {timeout} s (a hang)")
        time.sleep(0.01)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    if not data:
        how = (f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
               else f"exit {os.WEXITSTATUS(status)}")
        pytest.fail(f"the child died without a result ({how})")
    return json.loads(data)


def refused(path, *patterns, load_kwargs=None):
    """Load ``path`` in a child: it must raise a ``ValueError`` naming it and matching each
    of ``patterns`` (regular expressions), within ``REFUSE_SECONDS``."""
    out = isolated(lambda: load(path, **(load_kwargs or {})))
    assert out.get("type") == "ValueError", out
    assert str(path) in out["message"], out["message"]
    for pattern in patterns:
        assert re.search(pattern, out["message"]), (pattern, out["message"])
    assert out["seconds"] < REFUSE_SECONDS, out
    return out["message"]


def read_raw(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def write_raw(path, header, data=b"", header_bytes=None):
    header_bytes = json.dumps(header).encode() if header_bytes is None else header_bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header_bytes)) + header_bytes + data)
    return path


def edit(src, dst, meta=None, fitted=None, params=None, tensors=None):
    """A copy of the model file ``src`` with metadata strings, entries of the ``fitted`` or
    ``params`` JSON, or tensors (``name -> tensor`` or None to drop) replaced."""
    header, data = read_raw(src)
    metadata = header.pop("__metadata__")
    stored = {}
    for key, entry in header.items():
        begin, end = entry["data_offsets"]
        dtype = io._DTYPES[entry["dtype"]]
        buffer = bytearray(data[begin:end])
        flat = torch.frombuffer(buffer, dtype=dtype) if buffer else torch.empty(0, dtype=dtype)
        stored[key] = flat.reshape(entry["shape"]).clone()
    for key, value in (tensors or {}).items():
        stored.pop(key) if value is None else stored.__setitem__(key, value)
    for field, changes in (("fitted", fitted), ("params", params)):
        if changes:
            value = json.loads(metadata[field])
            changes(value) if callable(changes) else value.update(changes)
            metadata[field] = json.dumps(value)
    metadata.update(meta or {})
    table, chunks, offset = {}, [], 0
    for key, tensor in stored.items():
        raw = tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() \
            if tensor.numel() else b""
        name = next(k for k, v in io._DTYPES.items() if v == tensor.dtype) \
            if tensor.dtype in io._DTYPES.values() else {torch.complex64: "C64"}[tensor.dtype]
        table[key] = {"dtype": name, "shape": list(tensor.shape),
                      "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    return write_raw(dst, {"__metadata__": metadata, **table}, b"".join(chunks))


# ---------------------------------------------------------------- fitted files
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Every registry estimator at its tiny configuration, fitted once (one epoch, one
    thread) on a DataFrame of 48 rows x 8 columns (ITAE on 12 small clips, MMP-AMS on 48
    object rows) and saved: ``name -> (path, estimator, X)``."""
    rng = np.random.RandomState(0)
    frame = pd.DataFrame(rng.rand(48, 8).astype(np.float32), columns=[f"f{i}" for i in range(8)])
    clips = rng.rand(12, 1, 8, 16, 16).astype(np.float32)
    folder = tmp_path_factory.mktemp("models")
    out = {}
    data = {"vectors": frame, "clips": clips, "objects": object_rows(48)}
    for name, entry in ESTIMATORS.items():
        # one epoch of each training stage (ITAE's flows too), one thread
        params = entry.tiny().get_params() if entry.deep else {}
        kwargs = {k: 1 for k in ("epochs", "flow_epochs", "n_jobs") if k in params}
        X = next(data[kind] for kind in data if kind in entry.inputs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the complexity checks of a 1-epoch fit
            det = entry.tiny(**kwargs).fit(X)
        path = folder / f"{name}.safetensors"
        det.save(path)
        out[name] = (path, det, X)
    return out


@pytest.fixture
def ae(files):
    return files["AE"][0]


# ---------------------------------------------------------------- 5. exhaustion
def test_a_million_tiny_tensors_are_refused_from_the_header_length(tmp_path):
    entry = '"t%d":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}'
    body = ",".join(entry % i for i in range(1_000_000))
    path = write_raw(tmp_path / "many.safetensors", None,
                     header_bytes=('{"__metadata__":{"format":"sknovelty-model"},'
                                   + body + "}").encode())
    assert path.stat().st_size > io.MAX_HEADER_BYTES
    refused(path, "header of .* bytes, above the limit")


def test_more_tensors_than_the_limit_are_refused_before_any_is_read(ae, tmp_path):
    header, data = read_raw(ae)
    extra = {f"module.extra{i}": {"dtype": "U8", "shape": [0],
                                  "data_offsets": [len(data), len(data)]}
             for i in range(io.MAX_TENSORS + 1)}
    path = write_raw(tmp_path / "tensors.safetensors", {**header, **extra}, data)
    refused(path, f"tensors, above the limit of {io.MAX_TENSORS}")


@pytest.mark.parametrize("size", [30_000_000, 1_000_000_000])
def test_huge_sample_shapes_are_refused_before_allocation(ae, tmp_path, size):
    path = edit(ae, tmp_path / "sample.safetensors",
                fitted={"sample_shape_": [size], "n_features_in_": size})
    refused(path, "sample_shape_ .* above the limit of")


@pytest.mark.parametrize("width", [10_000_000, 1_000_000_000])
def test_huge_widths_are_refused_before_allocation(ae, tmp_path, width):
    path = edit(ae, tmp_path / "width.safetensors", params={"hidden_dim": width})
    refused(path, "invalid parameters.*hidden_dim.*above the limit")


def test_widths_within_the_limits_are_built_within_an_allocation_budget(ae, tmp_path):
    # every width under MAX_WIDTH, but a network 10,000 times the file's weights
    path = edit(ae, tmp_path / "budget.safetensors",
                params={"hidden_dim": io.MAX_WIDTH, "latent_dim": io.MAX_WIDTH})
    refused(path, "would allocate more than")


@pytest.mark.parametrize("change", [{"params": {"score_batch_size": 10**9}},
                                    {"params": {"batch_size": 10**9}},
                                    {"fitted": {"batch_size_": 10**9}},
                                    {"params": {"score_batch_size": 60_000},
                                     "fitted": lambda f: f.update(
                                         sample_shape_=[8000], n_features_in_=8000,
                                         feature_names_in_=[str(i) for i in range(8000)])}],
                         ids=["score_batch_size", "batch_size", "batch_size_", "chunk_values"])
def test_huge_batches_are_refused_at_load(ae, tmp_path, change):
    path = edit(ae, tmp_path / "batch.safetensors", **change)
    refused(path, r"batch_size_?=\d+ rows of \d+ values exceeds the limits")


def test_a_thread_count_beyond_the_machine_is_refused(ae, tmp_path):
    path = edit(ae, tmp_path / "jobs.safetensors", params={"n_jobs": 100_000})
    refused(path, "n_jobs=100000 is beyond")


def test_a_huge_history_is_refused(ae, tmp_path):
    epoch = {"epoch": 1, "train_loss": 0.5, "batches": [{"train_loss": 0.5}] * 100}
    history = json.dumps([epoch] * (io.MAX_HISTORY_BYTES // 2000 + 1))
    assert len(history) > io.MAX_HISTORY_BYTES
    path = edit(ae, tmp_path / "history.safetensors", meta={"history": history})
    refused(path, "'history' has .* bytes, above the limit")


def test_save_keeps_the_history_within_its_limit(files, tmp_path, monkeypatch):
    path, det, X = files["AE"]
    epochs = [{k: v for k, v in e.items() if k != "batches"} for e in det.net_.history]
    monkeypatch.setattr(io, "MAX_HISTORY_BYTES", len(json.dumps(epochs, default=float)))
    with pytest.warns(UserWarning, match="keeps its per-epoch records only"):
        det.save(tmp_path / "short.safetensors")
    history = json.loads(read_raw(tmp_path / "short.safetensors")[0]["__metadata__"]["history"])
    assert len(history) == len(det.net_.history) and "batches" not in history[0]


# ---------------------------------------------------------------- 6. errors of the right type
def test_deep_json_nesting_is_refused(ae, tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    path = edit(ae, tmp_path / "nested.safetensors", meta={"params": deep})
    refused(path, "'params' nests deeper than")
    header, data = read_raw(ae)
    raw = json.dumps(header).encode()
    raw = raw[:-1] + b',"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    refused(write_raw(tmp_path / "nested_header.safetensors", None, data, header_bytes=raw),
            "header nests deeper than")


@pytest.mark.parametrize("shape", [[0, 2**63, 2**63], [0, -1], [2**40, 0], [1] * 9, ["1"]])
def test_absurd_tensor_shapes_are_refused(ae, tmp_path, shape):
    header, data = read_raw(ae)
    header["module.odd"] = {"dtype": "F32", "shape": shape,
                            "data_offsets": [len(data), len(data)]}
    path = write_raw(tmp_path / "shape.safetensors", header, data)
    refused(path, "tensor 'module.odd' has an invalid entry")


@pytest.mark.parametrize("device", ["xla", "mps", "lazy", "meta"])
def test_exotic_saved_devices_load_on_the_cpu_with_a_warning(files, tmp_path, device):
    path, det, X = files["AE"]
    edited = edit(path, tmp_path / "device.safetensors", params={"device": device})

    def score():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = load(edited)
        assert any("not available here; loading on CPU" in str(w.message) for w in caught)
        return model.device_, model.score_samples(X).tolist()

    out = isolated(score)
    assert "value" in out, out
    assert out["value"] == repr(("cpu", det.score_samples(X).tolist()))
    with pytest.raises(ValueError, match="not supported"):
        resolve_device(device)


def test_non_regular_files_are_refused_up_front(tmp_path):
    refused(tmp_path, "is a directory, not a regular file")
    refused("/dev/null", "is a character device, not a regular file")
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    refused(fifo, "is a FIFO")


# ---------------------------------------------------------------- 7. tampered values
def _deep_cases(path):
    """Edits of a deep detector's file: ``what -> (edit kwargs, pattern)``."""
    header, _ = read_raw(path)
    fitted = json.loads(header["__metadata__"]["fitted"])
    weight = next(k for k, v in header.items() if k.startswith("module.")
                  and isinstance(v, dict) and v["dtype"] == "F32" and v["shape"])
    shape = header[weight]["shape"]
    term = next(iter(fitted["normalization_"]))
    reference = fitted["reference_scores_"]

    def nan_norm(f):
        f["normalization_"][term] = [float("nan"), 1.0]

    def pairs(f):
        f["normalization_"][term] = [1.0, -1.0]

    return {
        "normalization_nan": ({"fitted": nan_norm}, r"normalization_\[.*non|finite"),
        "normalization_order": ({"fitted": pairs}, "not a valid"),
        "unsorted_reference": ({"fitted": {"reference_scores_": reference[::-1] + [-1e9]}},
                               "sorted"),
        "nan_reference": ({"fitted": {"reference_scores_": [float("nan")] + reference}},
                          "non-finite"),
        "nan_offset": ({"fitted": {"offset_": float("inf")}}, "offset_ should be a finite number"),
        "input_range": ({"fitted": {"input_range_": [1.0, float("nan")]}}, "input_range_"),
        "n_features": ({"fitted": {"n_features_in_": 5}}, "n_features_in_=5 does not match"),
        "rate": ({"fitted": {"false_alarm_rate_": 0.3}}, "false_alarm_rate_"),
        "int8_weight": ({"tensors": {weight: torch.ones(shape, dtype=torch.int8)}},
                        "torch.int8"),
        "bool_weight": ({"tensors": {weight: torch.ones(shape, dtype=torch.bool)}},
                        "torch.bool"),
        "float64_weight": ({"tensors": {weight: torch.ones(shape, dtype=torch.float64)}},
                           "torch.float64"),
        "nan_weight": ({"tensors": {weight: torch.full(shape, float("nan"))}}, "non-finite"),
        "complex_weight": ({"tensors": {weight: torch.ones(shape, dtype=torch.complex64)}},
                           "invalid entry"),
    }


@pytest.mark.parametrize("name", DEEP)
def test_tampered_deep_files_are_refused(files, tmp_path, name):
    path, det, X = files[name]
    failures = []
    for what, (change, pattern) in _deep_cases(path).items():
        bad = edit(path, tmp_path / f"{what}.safetensors", **change)
        out = isolated(lambda: load(bad))
        if not (out.get("type") == "ValueError" and str(bad) in out["message"]
                and re.search(pattern, out["message"]) and out["seconds"] < REFUSE_SECONDS):
            failures.append((what, out))
    assert not failures, failures
    # the untouched file still loads and scores as the original
    np.testing.assert_array_equal(load(path).score_samples(X), det.score_samples(X))


def test_whitened_files_cannot_override_parameters(files, tmp_path):
    path = files["KDE"][0]

    def no_whitening(f):
        f["pca"]["values"]["whiten"] = False

    def pca_params(f):
        f["pca"]["params"]["whiten"] = False

    def tophat(f):
        f["scorer"]["params"]["kernel"] = "tophat"

    def detector_param(f):
        f["detector"]["values"]["contamination"] = 0.5

    for what, change, pattern in [
            ("values", no_whitening, "'whiten' is a parameter of PCA"),
            ("pca_params", pca_params, "PCA's parameters are not those fit uses"),
            ("scorer_params", tophat, "KernelDensity's parameters are not those"),
            ("detector", detector_param, "'contamination' is a parameter of WhitenedKDE")]:
        refused(edit(path, tmp_path / f"{what}.safetensors", fitted=change), pattern)


def test_cut_support_vectors_and_odd_arrays_are_refused(files, tmp_path):
    path, det, X = files["OC-SVM"]
    vectors = torch.from_numpy(det.model_.support_vectors_)
    refused(edit(path, tmp_path / "cut.safetensors",
                 tensors={"scorer.support_vectors_": vectors[:, :1].contiguous()}),
            "support_vectors_ should be a nx4 array")
    refused(edit(path, tmp_path / "int8.safetensors",
                 tensors={"pca.mean_": torch.zeros(8, dtype=torch.int8)}),
            "'pca.mean_' has dtype torch.int8")
    refused(edit(path, tmp_path / "variance.safetensors",
                 tensors={"pca.explained_variance_": torch.zeros(4, dtype=torch.float32)}),
            "explained_variance_ should be positive")
    reference = torch.from_numpy(det.reference_scores_.copy()).flip(0)
    refused(edit(path, tmp_path / "unsorted.safetensors",
                 tensors={"fitted.reference_scores_": reference}), "sorted")
    rows = torch.tensor(np.asarray(files["KDE"][1].model_.tree_.data))
    rows[0, 0] = float("nan")
    refused(edit(files["KDE"][0], tmp_path / "kde.safetensors", tensors={"scorer.data": rows}),
            "non-finite")


def test_tampered_neighbor_files_are_refused(files, tmp_path):
    """The nearest-neighbour detector's file: its indexed rows (finite float32 of the
    sample's width, at least n_neighbors of them) and its fitted values."""
    path, det, X = files["kNN"]
    rows = torch.from_numpy(det.model_.rows.copy())
    n = len(rows)
    nan_rows, inf_rows = rows.clone(), rows.clone()
    nan_rows[3, 2], inf_rows[0, 0] = float("nan"), float("inf")
    reference = torch.from_numpy(det.reference_scores_.copy()).flip(0)

    def values(**change):
        return lambda f: f["detector"]["values"].update(change)

    def narrow(f):  # a consistent sample shape of 4 values, without the 8 feature names
        f["detector"]["values"].update(sample_shape_=[4], n_features_in_=4)
        f["detector"]["str_arrays"].pop("feature_names_in_")

    cases = {
        "nan_rows": ({"tensors": {"index.rows": nan_rows}}, "non-finite"),
        "inf_rows": ({"tensors": {"index.rows": inf_rows}}, "non-finite"),
        "no_rows": ({"tensors": {"index.rows": None}}, "'index.rows' is missing"),
        "narrow_rows": ({"tensors": {"index.rows": rows[:, :7].contiguous()}},
                        r"float32 of shape \(n, 8\)"),
        "flat_rows": ({"tensors": {"index.rows": rows.reshape(-1)}}, r"float32 of shape \(n, 8\)"),
        "float64_rows": ({"tensors": {"index.rows": rows.double()}}, "float32 of shape"),
        "int_rows": ({"tensors": {"index.rows": rows.to(torch.int32)}}, "float32 of shape"),
        "other_width": ({"fitted": narrow}, r"float32 of shape \(n, 4\) for sample_shape_ \(4,\)"),
        "one_row": ({"tensors": {"index.rows": rows[:1].contiguous()}},
                    "n_neighbors=2 is more than the 1 indexed rows"),
        "n_neighbors": ({"params": {"n_neighbors": n + 1}},
                        f"n_neighbors={n + 1} is more than the {n} indexed rows"),
        "huge_n_neighbors": ({"params": {"n_neighbors": 10**12}}, "is more than the"),
        "zero_neighbors": ({"params": {"n_neighbors": 0}}, "invalid parameters.*n_neighbors"),
        "metric": ({"params": {"metric": "os.system"}}, "invalid parameters.*metric"),
        "huge_sample": ({"fitted": values(sample_shape_=[10**9], n_features_in_=10**9)},
                        "above the limit"),
        "unsorted_reference": ({"tensors": {"fitted.reference_scores_": reference}}, "sorted"),
        "nan_offset": ({"fitted": values(offset_=float("inf"))},
                       "offset_ should be a finite number"),
        "rate": ({"fitted": values(false_alarm_rate_=0.3)}, "false_alarm_rate_"),
        "override": ({"fitted": values(n_neighbors=1)},
                     "'n_neighbors' is a parameter of NearestNeighborDetector"),
        "unknown": ({"fitted": values(model_=1)}, r"unexpected fitted attributes \['model_'\]"),
        "extra_section": ({"fitted": lambda f: f.update(pca={})}, "fitted sections should be"),
    }
    failures = _refused_all({what: (edit(path, tmp_path / f"{what}.safetensors", **change),
                                    pattern) for what, (change, pattern) in cases.items()})
    assert not failures, failures
    # the untouched file still loads and scores as the original
    np.testing.assert_array_equal(load(path).score_samples(X), det.score_samples(X))


# ---------------------------------------------------------------- 8. feature names, save
@pytest.mark.parametrize("name", [n for n in VECTORS if n in DEEP])
def test_feature_names_survive_save_and_load(files, name):
    path, det, X = files[name]
    again = load(path)
    np.testing.assert_array_equal(again.feature_names_in_, det.feature_names_in_)
    assert again.n_features_in_ == det.n_features_in_
    permuted = X[X.columns[::-1]]
    for model in (det, again):
        with pytest.raises(ValueError, match="feature names"):
            model.score_samples(permuted)


def test_save_into_a_missing_directory_names_the_destination(files, tmp_path):
    det = files["AE"][1]
    target = tmp_path / "missing" / "model.safetensors"
    with pytest.raises(FileNotFoundError, match=r"missing.model\.safetensors") as info:
        det.save(target)
    assert ".tmp" not in str(info.value)


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name != "model.safetensors")


def test_an_interrupted_save_leaves_the_old_file_and_no_temporary_file(files, tmp_path,
                                                                       monkeypatch):
    det, other = files["AE"][1], files["LTG"][1]
    target = tmp_path / "model.safetensors"
    det.save(target)
    before = target.read_bytes()

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(io.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        other.save(target)
    assert target.read_bytes() == before and _leftovers(tmp_path) == []


def test_a_save_that_fills_the_disk_leaves_the_old_file_and_no_temporary_file(files, tmp_path):
    det, other = files["AE"][1], files["LTG"][1]
    target = tmp_path / "model.safetensors"
    det.save(target)
    before = target.read_bytes()
    limit = len(before) // 2  # the LTG file is larger: its write fails half-way

    def full_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        other.save(target)

    out = isolated(full_disk)
    assert out.get("type") == "OSError" and "File too large" in out["message"], out
    assert target.read_bytes() == before and _leftovers(tmp_path) == []


# ---------------------------------------------------------------- 9. composite files (issue 34)
@pytest.fixture(scope="module")
def composites(tmp_path_factory):
    """A Pipeline of transformers and a whitened baseline, a PatchwiseDetector of a deep
    detector, and a Pipeline holding a PatchwiseDetector of a Pipeline, fitted once and
    saved: ``name -> (path, estimator, X)``."""
    from sklearn.decomposition import PCA
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    from sknovelty import PatchwiseDetector, WhitenedKDE

    rng = np.random.RandomState(0)
    frame = pd.DataFrame(rng.rand(48, 8).astype(np.float32), columns=[f"f{i}" for i in range(8)])
    images = rng.rand(12, 1, 8, 8).astype(np.float32)
    ae = ESTIMATORS["AE"].tiny(epochs=1, n_jobs=1)
    models = {
        "pipe": (Pipeline([("std", StandardScaler()), ("pca", PCA(4)),
                           ("kde", WhitenedKDE(n_components=2))]), frame),
        "patch": (PatchwiseDetector(ae, patch_size=4), images),
        "nested": (Pipeline([("std", StandardScaler()), ("patches", PatchwiseDetector(
            make_pipeline(MinMaxScaler(), WhitenedKDE(n_components=2)), patch_size=4))]),
            frame),
    }
    folder = tmp_path_factory.mktemp("composites")
    out = {}
    for name, (est, X) in models.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X)
        path = folder / f"{name}.safetensors"
        io.save(est, path)
        out[name] = (path, est, X)
    return out


def _json_edit(path, key, change):
    """``{key: JSON}``: the metadata string ``key`` of ``path`` changed by ``change`` (a
    function of the parsed JSON, or a dict to merge into it)."""
    value = json.loads(read_raw(path)[0]["__metadata__"][key])
    changed = change(value) if callable(change) else {**value, **change}
    return {key: json.dumps(value if changed is None else changed)}


def _swapped(path, dst, a, b):
    """A copy of ``path`` with the metadata entries and tensors of the prefixes ``a`` and
    ``b`` exchanged (two steps of a Pipeline swapped, their names left in place)."""
    header, data = read_raw(path)

    def swap(key):
        return b + key[len(a):] if key.startswith(a) else a + key[len(b):] \
            if key.startswith(b) else key

    header["__metadata__"] = {swap(k): v for k, v in header["__metadata__"].items()}
    return write_raw(dst, {swap(k): v for k, v in header.items()}, data)


def _refused_all(cases):
    """Load each ``(path, pattern)`` in a child; the cases that were not refused with a
    ``ValueError`` naming the file and matching the pattern, quickly."""
    failures = []
    for what, (path, pattern) in cases.items():
        out = isolated(lambda: load(path))
        if not (out.get("type") == "ValueError" and str(path) in out["message"]
                and re.search(pattern, out["message"]) and out["seconds"] < REFUSE_SECONDS):
            failures.append((what, out))
    return failures


def test_unknown_classes_in_a_composite_are_refused(composites, tmp_path):
    pipe, nested = composites["pipe"][0], composites["nested"][0]
    cases = {}
    for i, name in enumerate(["FunctionTransformer", "sklearn.preprocessing.FunctionTransformer",
                              "os.system", "builtins.eval", "IsolationForest", "BaseEstimator",
                              "_WhitenedDetector", "Pipeline.__init__", None]):
        path = tmp_path / f"class{i}.safetensors"
        if name is None:  # the class entry of a step missing
            header, data = read_raw(pipe)
            del header["__metadata__"]["steps.0.class"]
            write_raw(path, header, data)
        else:
            edit(pipe, path, meta={"steps.0.class": name})
        cases[str(name)] = (path, r"unknown estimator class .* at 'steps\.0'")
    deep = edit(nested, tmp_path / "deep_class.safetensors",
                meta={"steps.1.estimator_.steps.0.class": "FunctionTransformer"})
    cases["nested"] = (deep, r"unknown estimator class 'FunctionTransformer' at "
                             r"'steps\.1\.estimator_\.steps\.0'")
    assert not _refused_all(cases)


def test_invalid_step_names_and_pipeline_parameters_are_refused(composites, tmp_path):
    pipe = composites["pipe"][0]
    cases = {}
    for i, names in enumerate([["std", "x; import os", "kde"], ["std", "__class__", "kde"],
                               ["std", "a__b", "kde"], ["std", 5, "kde"], ["std", "", "kde"],
                               ["std", "memory", "kde"], ["std", "std", "kde"], [], {"a": 1}]):
        path = edit(pipe, tmp_path / f"names{i}.safetensors", meta={"steps": json.dumps(names)})
        cases[f"names {names}"] = (path, "invalid Pipeline|'steps' is not a list")
    for i, params in enumerate([{"memory": str(tmp_path)}, {"transform_input": ["X"]},
                                {"verbose": "loud"}, {"steps": []}, {"cache": 1}]):
        path = edit(pipe, tmp_path / f"params{i}.safetensors", **{"params": params})
        cases[f"params {params}"] = (path, "invalid Pipeline")
    assert not _refused_all(cases)


def _raw_pipeline(path, depth=1, width=1):
    """A header-only file: ``depth`` Pipelines nested, the innermost of ``width`` steps of
    fitted ``Normalizer`` entries."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import Normalizer

    params = {k: v for k, v in Pipeline([("n", Normalizer())]).get_params(deep=False).items()
              if k != "steps"}
    meta, prefix = {"format": io.FORMAT, "format_version": str(io.FORMAT_VERSION)}, ""
    for level in range(depth):
        names = ["p"] if level < depth - 1 else [f"n{i}" for i in range(width)]
        meta.update({prefix + "class": "Pipeline", prefix + "params": json.dumps(params),
                     prefix + "steps": json.dumps(names)})
        prefix += "steps.0."
    for i in range(width):
        step = prefix[:-2] + f"{i}."
        meta.update({step + "class": "Normalizer",
                     step + "params": json.dumps(Normalizer().get_params()),
                     step + "fitted": json.dumps({"values": {"n_features_in_": 3},
                                                  "arrays": {}, "str_arrays": {}})})
    return write_raw(path, {"__metadata__": meta})


def test_nesting_and_estimator_counts_are_bounded(tmp_path):
    from sknovelty.io import MAX_ESTIMATORS, MAX_NESTING

    fine = _raw_pipeline(tmp_path / "fine.safetensors", depth=MAX_NESTING, width=3)
    assert load(fine).steps[0][1].steps[0][0] == "p"
    refused(_raw_pipeline(tmp_path / "deep.safetensors", depth=MAX_NESTING + 2),
            f"nests estimators deeper than {MAX_NESTING} levels at 'steps(\\.0\\.steps)*\\.0'")
    refused(_raw_pipeline(tmp_path / "wide.safetensors", width=MAX_ESTIMATORS + 40),
            f"a Pipeline has 1 to {MAX_ESTIMATORS} steps, not {MAX_ESTIMATORS + 40}")
    refused(_raw_pipeline(tmp_path / "many.safetensors", depth=3, width=MAX_ESTIMATORS - 1),
            f"holds more than {MAX_ESTIMATORS} estimators")
    # the same bounds at save: no file is written that would not load
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer

    pipe = make_pipeline(Normalizer())
    for _ in range(MAX_NESTING + 1):
        pipe = make_pipeline(pipe)
    pipe.fit(np.ones((2, 3)))
    with pytest.raises(ValueError, match="nests estimators deeper than"):
        io.save(pipe, tmp_path / "deep_save.safetensors")


def test_pipelines_whose_steps_do_not_match_their_tensors_are_refused(composites, tmp_path):
    pipe, est, _ = composites["pipe"]
    components = torch.from_numpy(est.named_steps["pca"].components_.copy())
    cases = {
        "missing": (edit(pipe, tmp_path / "missing.safetensors",
                         tensors={"steps.0.fitted.mean_": None}),
                    r"steps\.0 \(StandardScaler\): tensor 'fitted\.mean_' is missing"),
        "extra_step": (edit(pipe, tmp_path / "extra.safetensors",
                            tensors={"steps.3.fitted.mean_": torch.zeros(8)}),
                       r"belong to no step"),
        "moved": (edit(pipe, tmp_path / "moved.safetensors",
                       tensors={"steps.0.fitted.components_": components}),
                  r"steps\.0 \(StandardScaler\): unexpected tensors"),
        "fewer_steps": (edit(pipe, tmp_path / "fewer.safetensors",
                             meta={"steps": json.dumps(["std", "pca"])}),
                        r"belong to no step"),
        "widths": (_swapped(pipe, tmp_path / "widths.safetensors", "steps.0.", "steps.1."),
                   r"the step 'pca' takes 8 features, but the step 'std' gives 4"),
        "detector_first": (_swapped(pipe, tmp_path / "order.safetensors", "steps.1.",
                                    "steps.2."),
                           r"step 'pca' is a WhitenedKDE, which does not transform"),
        "class_swap": (edit(pipe, tmp_path / "swap.safetensors",
                            meta={"steps.0.class": "PCA"}),
                       r"\[steps\.0\] holds parameters that PCA does not take"),
        "template_tensor": (edit(composites["patch"][0], tmp_path / "template.safetensors",
                                 tensors={"estimator.module.w": torch.zeros(2)}),
                            r"template 'estimator' of a PatchwiseDetector has no tensors"),
    }
    assert not _refused_all(cases)


def test_tampered_transformers_are_refused(composites, tmp_path):
    pipe = composites["pipe"][0]

    def attr_edit(name, change):
        return lambda f: f[name].update(change) or f

    def mean_none(f):
        f["arrays"].pop("mean_")
        f["values"]["mean_"] = None

    def std(meta=None, tensors=None, what=""):
        return edit(pipe, tmp_path / f"{what}.safetensors", meta=meta, tensors=tensors)

    nan = torch.full((8,), float("nan"), dtype=torch.float64)
    cases = {
        "nan_scale": ({"tensors": {"steps.0.fitted.scale_": nan}}, "non-finite"),
        "zero_scale": ({"tensors": {"steps.0.fitted.scale_": torch.zeros(8, dtype=torch.float64)}},
                       r"StandardScaler\.scale_ should be positive"),
        "short_mean": ({"tensors": {"steps.0.fitted.mean_": torch.zeros(7, dtype=torch.float64)}},
                       r"StandardScaler\.mean_ should be a 8 array"),
        "int8_mean": ({"tensors": {"steps.0.fitted.mean_": torch.zeros(8, dtype=torch.int8)}},
                      r"'fitted\.mean_' has dtype torch\.int8"),
        "parameter": ({"meta": _json_edit(pipe, "steps.0.fitted", attr_edit(
            "values", {"with_mean": False}))}, "'with_mean' is a parameter of StandardScaler"),
        "method": ({"meta": _json_edit(pipe, "steps.0.fitted", attr_edit(
            "values", {"transform": 1}))}, "'transform' is not a fitted attribute"),
        "dunder": ({"meta": _json_edit(pipe, "steps.0.fitted", attr_edit(
            "values", {"__class__": 1}))}, "'__class__' is not a fitted attribute"),
        "unknown": ({"meta": _json_edit(pipe, "steps.0.fitted", attr_edit(
            "values", {"foo_": 1}))}, r"unexpected fitted attributes \['foo_'\] of StandardScaler"),
        "mean_none": ({"meta": _json_edit(pipe, "steps.0.fitted", mean_none),
                       "tensors": {"steps.0.fitted.mean_": None}},
                      "mean_ is None, but with_mean=True uses it"),
        "n_components": ({"meta": _json_edit(pipe, "steps.1.fitted", attr_edit(
            "values", {"n_components_": 5}))}, "n_components_ / n_features_in_ do not match"),
        "n_features": ({"meta": _json_edit(pipe, "steps.0.fitted", attr_edit(
            "values", {"n_features_in_": 0}))}, "n_features_in_ should be a positive int"),
        "names": ({"meta": _json_edit(pipe, "steps.0.fitted", attr_edit(
            "str_arrays", {"feature_names_in_": ["a", "b"]}))},
            "feature_names_in_ should be 8 strings"),
        "param_value": ({"meta": _json_edit(pipe, "steps.0.params", {"with_mean": "yes"})},
                        r"\[steps\.0\] holds invalid parameters for StandardScaler"),
        "param_name": ({"meta": _json_edit(pipe, "steps.1.params", {"evil": "os.system"})},
                       r"\[steps\.1\] holds parameters that PCA does not take"),
        "whiten": ({"meta": _json_edit(pipe, "steps.1.params", {"whiten": True}),
                    "tensors": {"steps.1.fitted.explained_variance_": torch.zeros(4)}},
                   "explained_variance_ should be positive"),
    }
    assert not _refused_all({what: (std(**change, what=what), pattern)
                             for what, (change, pattern) in cases.items()})


def test_tampered_patchwise_detectors_are_refused(composites, tmp_path):
    path, det, images = composites["patch"]
    header, _ = read_raw(path)
    weight = next(k for k, v in header.items() if k.startswith("estimator_.module.")
                  and v["dtype"] == "F32" and v["shape"])
    shape = header[weight]["shape"]
    reference = torch.from_numpy(det.reference_scores_.copy()).flip(0)

    def shape_edit(f):
        f["values"].update(sample_shape_=[3, 8, 8], n_features_in_=3)

    cases = {
        "estimator_param": ({"meta": _json_edit(path, "params", {"estimator": None})},
                            "'estimator' is stored as an estimator of its own"),
        "patch_size": ({"meta": _json_edit(path, "params", {"patch_size": 20})},
                       "patch_size=20 is larger than the sample"),
        "shape": ({"meta": _json_edit(path, "fitted", shape_edit)},
                  r"estimator_ was fitted on samples of \(1, 4, 4\) shape, not on the patches "
                  r"of shape \(3, 4, 4\)"),
        "unsorted": ({"tensors": {"fitted.reference_scores_": reference}}, "sorted"),
        "nan_weight": ({"tensors": {weight: torch.full(shape, float("nan"))}},
                       r"estimator_ \(AutoencoderDetector\): .*non-finite"),
        "width": ({"meta": _json_edit(path, "estimator_.params", {"hidden_dim": 10**7})},
                  r"\[estimator_\] holds invalid parameters for AutoencoderDetector.*above "
                  "the limit"),
        "other_class": ({"meta": {"estimator_.class": "Normalizer"}},
                        r"\[estimator_\] holds parameters that Normalizer does not take"),
        "transformer": ({"meta": {"estimator_.class": "Normalizer",
                                  "estimator_.params": json.dumps({"copy": True, "norm": "l2"}),
                                  "estimator_.fitted": json.dumps({
                                      "values": {"n_features_in_": 1}, "arrays": {},
                                      "str_arrays": {}})},
                         "tensors": {k: None for k in header if k.startswith("estimator_.")}},
                        r"its fitted estimator_ \(Normalizer\) is not a fitted clone of its "
                        r"estimator \(AutoencoderDetector\)"),
        "overridden": ({"meta": _json_edit(path, "fitted", lambda f: f["values"].update(
            aggregate="mean") or f)}, "'aggregate' is a parameter of PatchwiseDetector"),
    }
    assert not _refused_all({
        what: (edit(path, tmp_path / f"{what}.safetensors", **change), pattern)
        for what, (change, pattern) in cases.items()})
    np.testing.assert_array_equal(load(path).score_samples(images), det.score_samples(images))
