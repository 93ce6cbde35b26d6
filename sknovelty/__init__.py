"""sknovelty: deep novelty detectors from the literature as scikit-learn estimators."""

from ._version import __version__ as __version__
from .base import TrainingDivergedError
from .baselines import AutoencoderDetector, WhitenedKDE, WhitenedOneClassSVM
from .features import PretrainedEmbedding
from .io import load, save
from .itae import FlowDensityDetector, TwoPathFlowDetector
from .lsa import LatentAutoregressiveDetector
from .ltg import PseudoAnomalyDetector
from .mmp import MaskedMultiPredictionDetector
from .mmp_ams import MultiAspectDetector
from .neighbors import NearestNeighborDetector
from .oled import AdversarialMaskingDetector, ContextAutoencoderDetector
from .patches import PatchwiseDetector
from .thresholds import select_anomalies

__all__ = [
    "AdversarialMaskingDetector",
    "AutoencoderDetector",
    "ContextAutoencoderDetector",
    "FlowDensityDetector",
    "LatentAutoregressiveDetector",
    "MaskedMultiPredictionDetector",
    "MultiAspectDetector",
    "NearestNeighborDetector",
    "PatchwiseDetector",
    "PretrainedEmbedding",
    "PseudoAnomalyDetector",
    "TrainingDivergedError",
    "TwoPathFlowDetector",
    "WhitenedKDE",
    "WhitenedOneClassSVM",
    "load",
    "save",
    "select_anomalies",
]
