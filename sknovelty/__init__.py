"""sknovelty: deep novelty detectors from the literature as scikit-learn estimators."""

from .base import TrainingDivergedError
from .baselines import AutoencoderDetector, WhitenedKDE, WhitenedOneClassSVM
from .io import load
from .lsa import LatentAutoregressiveDetector

__version__ = "0.1.0"

__all__ = [
    "AutoencoderDetector",
    "LatentAutoregressiveDetector",
    "TrainingDivergedError",
    "WhitenedKDE",
    "WhitenedOneClassSVM",
    "load",
]
