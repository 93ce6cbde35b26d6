"""The warnings and errors sknovelty raises, one class each, so that they can be filtered.

Every warning of the library derives from :class:`SknoveltyWarning` (a ``UserWarning``):

>>> import warnings
>>> from sknovelty.exceptions import SimpleInputWarning, SknoveltyWarning
>>> issubclass(SimpleInputWarning, SknoveltyWarning)
True
>>> with warnings.catch_warnings():
...     warnings.filterwarnings("ignore", category=SimpleInputWarning)  # silence one kind
...     warnings.warn("flat images score as normal", SimpleInputWarning)  # not shown

``warnings.filterwarnings("ignore", category=SknoveltyWarning)`` silences all of them for
the rest of the program.
"""

from .engine import TrainingDivergedError

__all__ = ["InputRangeWarning", "InputScaleWarning", "PrecisionWarning", "SimpleInputWarning",
           "SknoveltyWarning", "TrainingDivergedError"]


class SknoveltyWarning(UserWarning):
    """Base class of every warning sknovelty emits."""


class SimpleInputWarning(SknoveltyWarning):
    """``fit`` found that flat inputs score clearly as more normal than normal data
    (``simple_input_auroc_``): novel inputs simpler than the training data may go unnoticed."""


class InputScaleWarning(SknoveltyWarning):
    """The training values spread so little that float32 networks lose the signal."""


class InputRangeWarning(SknoveltyWarning):
    """Samples scored lie far outside the range of the training values (e.g. pixels in
    0-255 given as floats to a model fitted on [0, 1])."""


class PrecisionWarning(SknoveltyWarning):
    """``precision="bfloat16"`` brings nothing on this device: scoring stays float32."""
