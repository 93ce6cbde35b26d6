"""sknovelty: deep novelty detectors from the literature as scikit-learn estimators.

The package exports every detector of :data:`sknovelty.registry.ESTIMATORS` under its class
name (``from sknovelty import LatentAutoregressiveDetector``), and the tools that are not
detectors: :class:`PretrainedEmbedding`, :class:`TrainingDivergedError`, :func:`load`,
:func:`save` and :func:`select_anomalies`.
"""

from ._version import __version__ as __version__
from .base import TrainingDivergedError
from .features import PretrainedEmbedding
from .io import load, save
from .registry import ESTIMATORS as _ESTIMATORS
from .thresholds import select_anomalies

#: the detectors, from the registry (one line there adds a method here too)
_DETECTORS = {entry.cls.__name__: entry.cls for entry in _ESTIMATORS.values()}
globals().update(_DETECTORS)

__all__ = sorted([*_DETECTORS, "PretrainedEmbedding", "TrainingDivergedError", "load", "save",
                  "select_anomalies"])
