"""scikit-learn's estimator checks over every public estimator."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sknovelty.base import BaseDeepDetector
from sknovelty.registry import ESTIMATORS

from .conftest import tiny_ae, tiny_flow, tiny_lsa, tiny_ltg, tiny_mmp, tiny_oled

# With validation_fraction > 0, offset_ is the contamination percentile of *held-out* normal
# rows (our documented design: training scores of a deep model are optimistic), so exactly
# `contamination` of the *training* rows is not flagged as these two checks require. The same
# estimators with validation_fraction=0 follow scikit-learn's convention and pass them.
HELD_OUT_OFFSET = {
    "check_outliers_train": "offset_ is set on held-out rows, not on the training rows",
    "check_outliers_fit_predict": "offset_ is set on held-out rows, not on the training rows",
}


# The deep detectors score in chunks of batch_size rows (zero-padded), and float32 GEMM and
# convolution kernels may round a row differently depending on its position in the chunk.
# Measured: 6e-8 on LTG's F output and 4e-7 relative on a decision value (LTG, MMP), MMP 4e-7
# relative in a clean CI venv (exact locally), LSA 6.5e-9 absolute on an AVX-512 machine
# (exact here). These two checks compare with rtol=1e-7 (and atol=1e-9 or 1e-7), a bound
# that such rounding crosses on some CPUs or thread counts, e.g. for a decision value near
# 0. Non-strict: they pass where the kernels happen to agree. The same invariance is checked
# with a stated float32 tolerance for every estimator in tests/test_bad_input.py (a row
# scored alone vs in a batch) and for LSA in tests/test_base.py (random subsets).
ROW_POSITION_ROUNDING = {
    "check_methods_sample_order_invariance": "float32 rounding depends on the row position",
    "check_methods_subset_invariance": "float32 rounding depends on the row position",
}


def _expected_failures(estimator):
    failures = dict(HELD_OUT_OFFSET) if getattr(estimator, "validation_fraction", 0) > 0 else {}
    if isinstance(estimator, BaseDeepDetector):
        failures.update(ROW_POSITION_ROUNDING)
    return failures


# every registered estimator that takes vectors (the checks feed 2-D data; the clip-only
# TwoPathFlowDetector is checked on clips by the other contract tests), plus variants that
# exercise other code paths
VARIANTS = [tiny_lsa(validation_fraction=0.0, cpd="logistic_mixture", cpd_components=2),
            tiny_ae(validation_fraction=0.0),
            tiny_oled(validation_fraction=0.0, threshold="sigmoid"),
            tiny_mmp(validation_fraction=0.0, loss="naive"),
            tiny_ltg(validation_fraction=0.0, noise="gaussian"), tiny_flow(validation_fraction=0.0)]


@parametrize_with_checks(
    [entry.tiny() for entry in ESTIMATORS.values() if "vectors" in entry.inputs] + VARIANTS,
    expected_failed_checks=_expected_failures,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
