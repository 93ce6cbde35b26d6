"""Every public detector, once: the list that contract tests, benchmarks and the docs iterate.

Each entry is a detector class, a tiny configuration (small networks, two epochs, CPU, seed 0)
that trains in about a second, and the group it is listed under in the API reference. What
the class itself knows is read from it: the sample kinds it takes (``Entry.inputs``, from
its ``_sample_ranks``), whether it trains a torch network (``Entry.deep``), whether it has
anomaly maps (``Entry.maps``). The suite's scikit-learn checks, bad-input properties,
model-file round trips, stride and CUDA tests all run every entry; ``benchmarks/`` builds its
estimators from the same table; ``sknovelty`` exports every class here, and the API reference
lists them by group. Adding a method is its module plus one line here (and its line in the
documentation's method table).

Detectors only: :class:`~sknovelty.PretrainedEmbedding` is a transformer (a step in front of
a detector), not a registry entry; the test suite checks that every public estimator with
``score_samples`` is.

>>> from sknovelty.registry import ESTIMATORS
>>> ESTIMATORS["LSA"].tiny().get_params()["latent_dim"]
4
>>> ESTIMATORS["ITAE"].inputs, ESTIMATORS["kNN"].deep
(('clips',), False)
"""

from dataclasses import dataclass, field

from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone

from ._validation import RANK_INPUTS
from .base import BaseDeepDetector
from .baselines import AutoencoderDetector, WhitenedKDE, WhitenedOneClassSVM
from .itae import FlowDensityDetector, TwoPathFlowDetector
from .lsa import LatentAutoregressiveDetector
from .ltg import PseudoAnomalyDetector
from .mmp import MaskedMultiPredictionDetector
from .mmp_ams import MultiAspectDetector
from .neighbors import NearestNeighborDetector
from .oled import AdversarialMaskingDetector, ContextAutoencoderDetector
from .patches import PatchwiseDetector
from .svdd import DeepSVDDDetector

__all__ = ["ESTIMATORS", "Entry", "GROUPS", "RANK_INPUTS"]


#: the groups of the API reference's lists of detectors, in its order (``docs/conf.py``)
GROUPS = ("paper method", "baseline", "meta-estimator")

_CPU = dict(random_state=0, device="cpu")
_SMALL_AE = dict(latent_dim=4, hidden_dim=8, conv_channels=(4, 8), epochs=2, batch_size=16, **_CPU)
_SMALL_MASKED = dict(channels=(4, 8), latent_dim=4, epochs=2, batch_size=16, **_CPU)


@dataclass(frozen=True)
class Entry:
    """One detector: its class, its tiny test configuration and its group in the docs.

    The rest is read from the class: ``inputs``, ``deep``, ``maps`` and ``meta``.
    """

    cls: type
    tiny_params: dict = field(default_factory=dict)
    group: str = "paper method"

    def __post_init__(self):
        if self.group not in GROUPS:
            raise ValueError(f"group must be one of {GROUPS}, got {self.group!r}")

    @property
    def inputs(self):
        """The sample kinds the class takes, as a tuple of ``"vectors"``, ``"images"``,
        ``"clips"``: the kinds of its ``_sample_ranks`` (:data:`RANK_INPUTS`). A class whose
        rows have a layout of their own says so in ``_input_kinds`` instead (e.g.
        ``("objects",)``: rows of :func:`sknovelty.mmp_ams.pack_objects`)."""
        own = getattr(self.cls, "_input_kinds", None)
        if own is not None:
            return tuple(own)
        ranks = self.cls._sample_ranks
        return tuple(kind for rank, kind in RANK_INPUTS.items() if rank in ranks)

    @property
    def deep(self):
        """Whether it trains a torch network (a :class:`~sknovelty.base.BaseDeepDetector`:
        ``device``, ``n_jobs`` threads, ``net_``)."""
        return issubclass(self.cls, BaseDeepDetector)

    @property
    def maps(self):
        """Whether it has anomaly maps (``score_maps``), as its tiny configuration decides."""
        return hasattr(self.tiny(), "score_maps")

    @property
    def meta(self):
        """Whether it wraps another estimator (a parameter without default: it cannot be
        built at its defaults alone)."""
        return issubclass(self.cls, MetaEstimatorMixin)

    def tiny(self, **params):
        """The estimator at its tiny test configuration, with ``params`` overriding it
        (estimators among the tiny parameters are fresh clones for each call)."""
        settings = {k: clone(v) if isinstance(v, BaseEstimator) else v
                    for k, v in self.tiny_params.items()}
        return self.cls(**{**settings, **params})


ESTIMATORS = {
    "LSA": Entry(LatentAutoregressiveDetector,
                 {**_SMALL_AE, "n_bins": 8, "estimator_channels": (4, 4)}),
    "AE": Entry(AutoencoderDetector, _SMALL_AE, "baseline"),
    "OLED": Entry(AdversarialMaskingDetector, {**_SMALL_MASKED, "mask_channels": (4,)}),
    "CAE": Entry(ContextAutoencoderDetector, _SMALL_MASKED, "baseline"),
    "MMP": Entry(MaskedMultiPredictionDetector,
                 dict(n_predictions=3, channels=(4, 8), latent_dim=4, state_dim=4, state_layers=2,
                      patch_size=2, mask_ratio=0.5, epochs=2, batch_size=16, **_CPU)),
    # object rows of 8 x 8 crops and 2 classes (tests/conftest.py's "objects" samples)
    "MMP-AMS": Entry(MultiAspectDetector,
                     dict(crop_shape=(1, 8, 8), n_classes=2, channels=(4, 8), latent_dim=4,
                          state_dim=4, state_layers=2, epochs=2, batch_size=16, **_CPU)),
    "LTG": Entry(PseudoAnomalyDetector, dict(width=0.0625, epochs=2, batch_size=16, **_CPU)),
    "Flow": Entry(FlowDensityDetector,
                  dict(n_levels=2, n_steps=2, hidden_channels=8, epochs=2, batch_size=16, **_CPU)),
    "ITAE": Entry(TwoPathFlowDetector,
                  dict(width=0.0625, epochs=2, flow_epochs=2, n_steps=1, flow_hidden=4,
                       batch_size=4, **_CPU)),
    "OC-SVM": Entry(WhitenedOneClassSVM, {"n_components": 4}, "baseline"),
    "KDE": Entry(WhitenedKDE, {"n_components": 4}, "baseline"),
    "DeepSVDD": Entry(DeepSVDDDetector, dict(latent_dim=4, channels=(4, 2), hidden_dims=(8,),
                                             epochs=2, batch_size=16, **_CPU), "baseline"),
    "kNN": Entry(NearestNeighborDetector, {"random_state": 0}, "baseline"),
    "Patchwise": Entry(PatchwiseDetector,
                       {"estimator": WhitenedKDE(n_components=1), "patch_size": 1,
                        "aggregate": "mean"},
                       "meta-estimator"),
}
