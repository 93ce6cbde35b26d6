"""The simple-input probe a deep detector runs at the end of ``fit``.

Whether inputs simpler than the normal data (flat images) score as normal to the fitted model
(Serra et al., "Input complexity and out-of-distribution detection with likelihood-based
generative models", ICLR 2020): :class:`ComplexityProbeMixin` sets ``simple_input_auroc_``
and ``complexity_correlation_`` and warns (:class:`~sknovelty.exceptions.SimpleInputWarning`)
when flat inputs look more normal than normal data.
"""

import math
import warnings

import numpy as np
from scipy.stats import spearmanr

from .exceptions import SimpleInputWarning
from .metrics import auroc, code_length

__all__ = ["ComplexityProbeMixin"]


class ComplexityProbeMixin:
    """The probe of the deep detectors: ``BaseDeepDetector._set_reference`` calls
    ``_check_complexity`` with the reference rows, their raw terms and their scores. Uses the
    detector's ``_raw_components``, ``_combine``, ``sample_shape_`` and ``input_range_``; a
    method may override ``_check_complexity`` (the flow adds a warning) or
    ``_complexity_correlation``."""

    #: ``fit`` warns when ``simple_input_auroc_`` is below this chance level by more than
    #: ``SIMPLE_INPUT_SIGMAS`` standard errors (:meth:`_simple_input_threshold`)
    SIMPLE_INPUT_WARNING = 0.5
    SIMPLE_INPUT_SIGMAS = 3.0

    def _check_complexity(self, X_ref, terms, scores):
        """Measure, on the reference rows (held-out normal rows), whether inputs simpler than
        the normal data look normal to the fitted model; warn when they look *more* normal.

        Only for images and clips (NaN for vectors and for fewer than 2 rows):

        - ``simple_input_auroc_``: the AUROC with which ``score_samples`` tells the reference
          rows (normal) from their flat versions (each replaced by its per-channel mean, an
          input no normal sample looks like). Below 0.5 the flat inputs score as more normal than
          the normal data; clearly below it (:meth:`_simple_input_threshold`: 3 standard
          errors under 0.5) ``fit`` warns: novel inputs simpler than the training data
          (smoother, less textured) will be missed.
        - ``complexity_correlation_``: the Spearman correlation between the reference rows'
          novelty scores and their zlib code lengths (:func:`~sknovelty.metrics.code_length`);
          no warning.

        Why the flat probe warns and the correlation does not: :ref:`design-complexity-probe`.
        """
        self.simple_input_auroc_ = self.complexity_correlation_ = float("nan")
        if len(self.sample_shape_) < 3 or len(X_ref) < 2:
            return
        X_ref = X_ref.reshape(len(X_ref), *self.sample_shape_)
        self.complexity_correlation_ = self._complexity_correlation(X_ref, terms, scores)
        flat = np.broadcast_to(X_ref.mean(axis=tuple(range(2, X_ref.ndim)), keepdims=True),
                               X_ref.shape)
        flat_scores = self._combine(self._raw_components(np.ascontiguousarray(flat)))
        labels = np.r_[np.ones(len(scores)), -np.ones(len(flat_scores))]
        self.simple_input_auroc_ = auroc(labels, np.r_[scores, flat_scores])
        if self.simple_input_auroc_ < self._simple_input_threshold(len(scores)):
            warnings.warn(
                f"{type(self).__name__}: flat images (each held-out normal row replaced by "
                "its mean) score as more normal than the normal rows themselves (AUROC "
                f"{self.simple_input_auroc_:.2f}), so novel inputs simpler than the training "
                "data (smoother, less textured) may go unnoticed (Serra et al., ICLR 2020). "
                "FlowDensityDetector's default score_type='complexity' corrects for input "
                "complexity. Silence with warnings.filterwarnings('ignore', "
                "category=sknovelty.exceptions.SimpleInputWarning).", SimpleInputWarning,
                stacklevel=5)

    def _simple_input_threshold(self, n):
        """``fit`` warns when ``simple_input_auroc_`` is below this: ``SIMPLE_INPUT_WARNING``
        (chance, 0.5) minus ``SIMPLE_INPUT_SIGMAS`` standard errors of the AUROC of ``n``
        rows against ``n`` flat rows when both score alike (Hanley and McNeil 1982:
        ``sqrt((2n + 1) / (12 n^2))``), so that only a probe clearly below chance warns."""
        return self.SIMPLE_INPUT_WARNING - self.SIMPLE_INPUT_SIGMAS * math.sqrt(
            (2 * n + 1) / (12 * n * n))

    def _complexity_correlation(self, X_ref, terms, scores):
        """Spearman correlation of the reference rows' novelty scores with their code lengths
        (NaN when either is constant)."""
        length = code_length(X_ref, *self.input_range_)
        if np.ptp(length) == 0 or np.ptp(scores) == 0:
            return float("nan")
        return float(spearmanr(-scores, length)[0])
