"""sknovelty: deep novelty detectors from the literature as scikit-learn estimators."""

from .base import TrainingDivergedError
from .baselines import AutoencoderDetector, ContextAutoencoderDetector, WhitenedKDE, WhitenedOneClassSVM
from .io import load
from .itae import FlowDensityDetector, TwoPathFlowDetector
from .lsa import LatentAutoregressiveDetector
from .ltg import PseudoAnomalyDetector
from .mmp import MaskedMultiPredictionDetector
from .oled import AdversarialMaskingDetector

__version__ = "0.1.0"

__all__ = [
    "AdversarialMaskingDetector",
    "AutoencoderDetector",
    "ContextAutoencoderDetector",
    "FlowDensityDetector",
    "LatentAutoregressiveDetector",
    "MaskedMultiPredictionDetector",
    "PseudoAnomalyDetector",
    "TrainingDivergedError",
    "TwoPathFlowDetector",
    "WhitenedKDE",
    "WhitenedOneClassSVM",
    "load",
]
