"""Small checks of hyperparameters shared by the base and the networks."""

import numbers


def check_positive_ints(name, value):
    """Validate a non-empty tuple of positive ints (network widths)."""
    ok = isinstance(value, (tuple, list)) and len(value) > 0 and all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in value)
    if not ok:
        raise ValueError(f"{name} must be a non-empty tuple of positive ints, got {value!r}")
