"""Random draws of the layers that are random in training (noise, masks, dequantisation).

torch's global generator is one per process: two fits in two threads that both draw from it
interleave their draws, and a fit in a background thread changes the stream of every other
thread. So the layers draw through the functions here, which take the generator of the fit
that runs in the calling thread (set by :func:`fit_generators`, thread-local) and fall back to
torch's global generator outside a fit, as ``torch.randn_like`` and friends would.

Seeded with the state the global generator would have had, a fit's generator gives the same
numbers the global one gave, so scores do not move.

>>> import torch
>>> g = {"cpu": torch.Generator().manual_seed(0)}
>>> with fit_generators(g):
...     a = randn_like(torch.zeros(3))
>>> torch.equal(a, torch.randn(3, generator=torch.Generator().manual_seed(0)))
True
"""

import contextlib
import threading

import torch

__all__ = ["fit_generators", "rand", "rand_like", "randn_like"]

_local = threading.local()


@contextlib.contextmanager
def fit_generators(generators):
    """Make ``generators`` (``{device type: torch.Generator}``) the source of this thread's
    draws in the block; ``None`` means torch's global generators."""
    previous = getattr(_local, "generators", None)
    _local.generators = generators
    try:
        yield
    finally:
        _local.generators = previous


def _generator(device):
    generators = getattr(_local, "generators", None)
    return None if generators is None else generators.get(torch.device(device).type)


def randn_like(x):
    """Standard normal noise shaped like ``x`` (``torch.randn_like``, from the fit's generator)."""
    return torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=_generator(x.device))


def rand_like(x):
    """Uniform [0, 1) values shaped like ``x`` (``torch.rand_like``, from the fit's generator)."""
    return torch.rand(x.shape, dtype=x.dtype, device=x.device, generator=_generator(x.device))


def rand(*size, device=None):
    """Uniform [0, 1) float32 values of ``size`` on ``device`` (``torch.rand``, from the fit's
    generator)."""
    device = torch.device("cpu") if device is None else torch.device(device)
    return torch.rand(*size, device=device, generator=_generator(device))
