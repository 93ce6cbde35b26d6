"""Every public estimator, once: the list that contract tests and benchmarks iterate over.

Each entry names an estimator, the inputs it takes and a tiny configuration (small networks,
two epochs, CPU, seed 0) that trains in about a second: the suite's scikit-learn checks,
bad-input properties, model-file round trips, stride and CUDA tests all run every entry, and
``benchmarks/`` builds the default estimators from the same table. Adding a method is its
module plus one line here (and its documentation).

>>> from sknovelty.registry import ESTIMATORS
>>> ESTIMATORS["LSA"].tiny().get_params()["latent_dim"]
4
"""

from dataclasses import dataclass, field

from .baselines import AutoencoderDetector, WhitenedKDE, WhitenedOneClassSVM
from .itae import FlowDensityDetector, TwoPathFlowDetector
from .lsa import LatentAutoregressiveDetector
from .ltg import PseudoAnomalyDetector
from .mmp import MaskedMultiPredictionDetector
from .neighbors import NearestNeighborDetector
from .oled import AdversarialMaskingDetector, ContextAutoencoderDetector

__all__ = ["ESTIMATORS", "Entry"]

_CPU = dict(random_state=0, device="cpu")
_SMALL_AE = dict(latent_dim=4, hidden_dim=8, conv_channels=(4, 8), epochs=2, batch_size=16, **_CPU)
_SMALL_MASKED = dict(channels=(4, 8), latent_dim=4, epochs=2, batch_size=16, **_CPU)


@dataclass(frozen=True)
class Entry:
    """One estimator: its class, what it takes, and its tiny test configuration.

    ``inputs`` lists the sample kinds it accepts (``"vectors"``, ``"images"``, ``"clips"``);
    ``deep`` says whether it trains a torch network (device, threads, ``net_``).
    """

    cls: type
    inputs: tuple
    tiny_params: dict = field(default_factory=dict)
    deep: bool = True

    def tiny(self, **params):
        """The estimator at its tiny test configuration, with ``params`` overriding it."""
        return self.cls(**{**self.tiny_params, **params})


ESTIMATORS = {
    "LSA": Entry(LatentAutoregressiveDetector, ("vectors", "images", "clips"),
                 {**_SMALL_AE, "n_bins": 8, "estimator_channels": (4, 4)}),
    "AE": Entry(AutoencoderDetector, ("vectors", "images", "clips"), _SMALL_AE),
    "OLED": Entry(AdversarialMaskingDetector, ("vectors", "images"),
                  {**_SMALL_MASKED, "mask_channels": (4,)}),
    "CAE": Entry(ContextAutoencoderDetector, ("vectors", "images"), _SMALL_MASKED),
    "MMP": Entry(MaskedMultiPredictionDetector, ("vectors", "images"),
                 dict(n_predictions=3, channels=(4, 8), latent_dim=4, state_dim=4, state_layers=2,
                      patch_size=2, mask_ratio=0.5, epochs=2, batch_size=16, **_CPU)),
    "LTG": Entry(PseudoAnomalyDetector, ("vectors", "images", "clips"),
                 dict(width=0.0625, epochs=2, batch_size=16, **_CPU)),
    "Flow": Entry(FlowDensityDetector, ("vectors", "images"),
                  dict(n_levels=2, n_steps=2, hidden_channels=8, epochs=2, batch_size=16, **_CPU)),
    "ITAE": Entry(TwoPathFlowDetector, ("clips",),
                  dict(width=0.0625, epochs=2, flow_epochs=2, n_steps=1, flow_hidden=4,
                       batch_size=4, **_CPU)),
    "OC-SVM": Entry(WhitenedOneClassSVM, ("vectors", "images", "clips"), {"n_components": 4},
                    deep=False),
    "KDE": Entry(WhitenedKDE, ("vectors", "images", "clips"), {"n_components": 4}, deep=False),
    "kNN": Entry(NearestNeighborDetector, ("vectors", "images", "clips"), {"random_state": 0},
                 deep=False),
}
