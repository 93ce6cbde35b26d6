"""Devices, precision, threads and seeding: where and how a deep detector's torch code runs.

Shared by the deep detectors (:class:`~sknovelty.base.BaseDeepDetector`) and
:class:`~sknovelty.features.PretrainedEmbedding`; imports nothing of the package but
:mod:`sknovelty.exceptions` and :mod:`sknovelty.nn`.
"""

import contextlib
import functools
import os
import threading
import warnings

import numpy as np
import torch

from .exceptions import PrecisionWarning
from .nn.layout import plain_strides

__all__ = ["bf16_native", "c_ordered", "resolve_device", "resolve_n_jobs", "resolve_precision",
           "seeded_build", "torch_threads"]


def resolve_device(device):
    """``"auto"`` -> ``"cuda"`` when available, else ``"cpu"``; other strings are checked.

    Only ``"cpu"`` and CUDA devices (``"cuda"``, ``"cuda:1"``...) are accepted: other torch
    device types (``"meta"``, ``"mps"``, ``"xla"``, ``"lazy"``...) are a ``ValueError``, as
    is CUDA where it is not available.
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a valid torch device string") from exc
    if parsed.type not in ("cpu", "cuda"):
        raise ValueError(f"device={device!r} is not supported: sknovelty runs on 'cpu' or "
                         "'cuda' devices ('auto' picks one)")
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available; "
                         "use device='cpu' or 'auto'")
    return str(parsed)


def c_ordered(X):
    """``X`` as a float32 array with plain C-order strides, copied only when it has other ones.

    ``np.ascontiguousarray`` is not enough: numpy calls an array C-contiguous whatever the
    stride of an axis of size 1, and ``frames[:, None]`` gives its channel axis a stride of 0.
    Such an array (and numpy's fancy indexing of it) becomes a torch tensor that also counts
    as channels-last, and oneDNN's multithreaded convolutions on CPU then corrupt memory
    (``benchmarks/upstream_onednn_c1_conv.py``). Every array the estimators hand to torch
    passes through here.
    """
    X = np.asarray(X, dtype=np.float32)
    if X.strides != tuple(X.itemsize * s for s in plain_strides(X.shape)):
        X = X.copy(order="C")
    return X


@functools.cache
def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            return frozenset(next((line.split(":", 1)[1].split() for line in f
                                   if line.startswith("flags")), ()))
    except OSError:  # not Linux: no flags to read
        return frozenset()


def bf16_native(device):
    """Whether ``device`` has native bfloat16 matrix kernels: a CUDA device that supports
    bfloat16, or a CPU with AVX512-BF16 or AMX (read from ``/proc/cpuinfo``; other systems
    count as without)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())


def _float32(output):
    """A module's output (a tensor, or tuples / named tuples / lists / dicts of them) with
    every floating-point tensor in float32."""
    if isinstance(output, torch.Tensor):
        return output.float() if output.is_floating_point() else output
    if isinstance(output, tuple) and hasattr(output, "_fields"):
        return type(output)(*(_float32(v) for v in output))
    if isinstance(output, (tuple, list)):
        return type(output)(_float32(v) for v in output)
    if isinstance(output, dict):
        return {k: _float32(v) for k, v in output.items()}
    return output


#: Held while a fit seeds torch's global generator and builds its networks from it (module
#: initialisation has no other source of randomness); the generator is restored afterwards.
_GLOBAL_RNG_LOCK = threading.RLock()


def resolve_precision(estimator, stacklevel):
    """``estimator.precision`` on ``estimator.device_``: ``"bfloat16"`` only where it is
    native (:func:`bf16_native`; tests emulate it with ``_emulate_bf16``); elsewhere
    ``"float32"`` with a :class:`~sknovelty.exceptions.PrecisionWarning`."""
    if estimator.precision == "float32":
        return "float32"
    if bf16_native(estimator.device_) or getattr(estimator, "_emulate_bf16", False):
        return "bfloat16"
    where = ("this GPU has no bfloat16 support" if estimator.device_.startswith("cuda")
             else "this CPU has neither AVX512-BF16 nor AMX")
    warnings.warn(f"precision='bfloat16' brings nothing here ({where}): "
                  f"{type(estimator).__name__} computes in float32", PrecisionWarning,
                  stacklevel=stacklevel)
    return "float32"


def resolve_n_jobs(n_jobs):
    """The thread count an integer ``n_jobs`` asks for: itself when positive, ``-1`` all
    CPUs, ``-2`` all but one, and so on (scikit-learn's convention), at least 1."""
    return n_jobs if n_jobs > 0 else max((os.cpu_count() or 1) + 1 + n_jobs, 1)


@contextlib.contextmanager
def torch_threads(n_jobs):
    """Run the block with ``n_jobs`` torch intra-op threads, then restore the caller's setting.

    ``None`` keeps the calling thread's current count; ``-1`` means all CPUs, ``-2`` all but
    one, and so on (scikit-learn's convention). The count is set in the calling thread in
    every case: torch's OpenMP and MKL counts are then the thread's own, so that another
    thread changing its count (the main thread's setting is the default of threads that
    never set one) cannot change this block's mid-way, and float32 results with it.
    """
    before = torch.get_num_threads()
    n = before if n_jobs is None else resolve_n_jobs(n_jobs)
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def seeded_build(seed, device):
    """Context in which torch's global generators are seeded with ``seed`` (for building
    networks), under a process-wide lock and restored afterwards; yields a function that
    returns generators continuing the seeded streams, for the training that follows
    (:func:`sknovelty.nn.random.fit_generators`), so that training draws nothing from the
    global generators."""
    device = torch.device(device)
    cuda = [device.index or 0] if device.type == "cuda" else []
    with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)

        def continuing():
            generators = {"cpu": torch.Generator()}
            generators["cpu"].set_state(torch.get_rng_state())
            if cuda:
                generators["cuda"] = torch.Generator(device=device)
                generators["cuda"].set_state(torch.cuda.get_rng_state(device))
            return generators

        yield continuing
