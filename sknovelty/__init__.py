"""sknovelty: deep novelty detectors from the literature as scikit-learn estimators."""

from .base import TrainingDivergedError
from .baselines import AutoencoderDetector, ContextAutoencoderDetector, WhitenedKDE, WhitenedOneClassSVM
from .io import load
from .lsa import LatentAutoregressiveDetector
from .oled import AdversarialMaskingDetector

__version__ = "0.1.0"

__all__ = [
    "AdversarialMaskingDetector",
    "AutoencoderDetector",
    "ContextAutoencoderDetector",
    "LatentAutoregressiveDetector",
    "TrainingDivergedError",
    "WhitenedKDE",
    "WhitenedOneClassSVM",
    "load",
]
