"""scikit-learn's estimator checks over every public estimator."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sknovelty import WhitenedKDE, WhitenedOneClassSVM

from .conftest import tiny_ae, tiny_cae, tiny_flow, tiny_lsa, tiny_ltg, tiny_mmp, tiny_oled

# With validation_fraction > 0, offset_ is the contamination percentile of *held-out* normal
# rows (our documented design: training scores of a deep model are optimistic), so exactly
# `contamination` of the *training* rows is not flagged as these two checks require. The same
# estimators with validation_fraction=0 follow scikit-learn's convention and pass them.
HELD_OUT_OFFSET = {
    "check_outliers_train": "offset_ is set on held-out rows, not on the training rows",
    "check_outliers_fit_predict": "offset_ is set on held-out rows, not on the training rows",
}


# LTG's and MMP's small dense layers: float32 GEMM kernels round a row differently depending
# on its position in the scoring chunk (measured: 6e-8 on LTG's F output, 4e-7 relative on a
# decision value; MMP 4e-7 relative in a clean CI venv, exact locally), above the check's rtol
# of 1e-7. Non-strict: the check passes on some machines.
ROW_POSITION_ROUNDING = {
    "check_methods_sample_order_invariance": "float32 GEMM rounding depends on the row position",
}


def _expected_failures(estimator):
    failures = dict(HELD_OUT_OFFSET) if getattr(estimator, "validation_fraction", 0) > 0 else {}
    if type(estimator).__name__ in ("PseudoAnomalyDetector", "MaskedMultiPredictionDetector"):
        failures.update(ROW_POSITION_ROUNDING)
    return failures


@parametrize_with_checks(
    [tiny_lsa(), tiny_lsa(validation_fraction=0.0), tiny_ae(), tiny_ae(validation_fraction=0.0),
     tiny_oled(), tiny_oled(validation_fraction=0.0, threshold="sigmoid"), tiny_cae(),
     tiny_mmp(), tiny_mmp(validation_fraction=0.0, loss="naive"),
     tiny_ltg(), tiny_ltg(validation_fraction=0.0, noise="gaussian"),
     tiny_flow(), tiny_flow(validation_fraction=0.0),
     WhitenedOneClassSVM(n_components=4), WhitenedKDE(n_components=4)],
    expected_failed_checks=_expected_failures,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
