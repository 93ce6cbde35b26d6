"""Inputs with unusual memory layouts give the same fit and the same scores as a plain copy,
and never crash the process.

``frames[:, None]`` gives the new channel axis a stride of 0; as a torch tensor it also
counts as channels-last, which sent oneDNN's 1x1 stride-2 convolutions into heap corruption
(a killed interpreter, see ``benchmarks/upstream_onednn_c1_conv.py``). The estimator families
run in one child process (``tests/_subprocess.py``), one after the other, so that such a crash
fails the tests of the family that crashed and of those after it, instead of killing pytest.
(One child, not one per family: each interpreter spends ~5 s importing torch and
scikit-learn, a minute of the suite over 12 families.) The child runs the families of the
test cases this session selected, no others: ``-k lsa`` fits LSA's alone.
"""

import json

import pytest

from sknovelty.registry import ESTIMATORS

from ._subprocess import run_python

CHILD = """
import json
import numpy as np
from sknovelty.datasets import load_digits_images
from sknovelty.registry import ESTIMATORS

X, y = load_digits_images()
for family, name, clips, kwargs in {families!r}:
    rng = np.random.RandomState(0)
    if clips:  # grey clips (n, T, H, W) of 12 frames of 16 x 16
        grey = rng.rand(12, 12, 16, 16).astype(np.float32)
    else:      # grey 8 x 8 digits (n, H, W)
        grey = np.ascontiguousarray(X[y == 0][:40, 0])
    base = grey[:, None].copy()                         # plain C order
    padded = np.zeros(base.shape[:-2] + (base.shape[-2] + 2, base.shape[-1] + 3), np.float32)
    padded[..., 1:-1, 2:-1] = base
    variants = {{
        "[:, None] (stride 0)": grey[:, None],
        "negative strides": base[::-1].copy()[::-1][..., ::-1].copy()[..., ::-1],
        "Fortran order": np.asfortranarray(base),
        "non-contiguous slice": padded[..., 1:-1, 2:-1],
        "float64 [:, None]": grey.astype(np.float64)[:, None],
    }}
    reference = ESTIMATORS[name].tiny(**kwargs).fit(base)
    expected = reference.score_samples(base)
    result = {{}}
    for variant, X_odd in variants.items():
        assert np.array_equal(X_odd, base), variant
        fitted = ESTIMATORS[name].tiny(**kwargs).fit(X_odd).score_samples(base)
        scored = reference.score_samples(X_odd)
        result[variant] = [float(np.abs(fitted - expected).max()),
                           float(np.abs(scored - expected).max())]
    print(json.dumps({{"family": family, "result": result}}), flush=True)
"""

def _one_epoch_each(entry):
    """Clips fit slowest: one epoch of each training stage (ITAE's flows too)."""
    return {k: 1 for k in ("epochs", "flow_epochs") if k in entry.tiny().get_params()}


# every deep estimator on each of images and clips that it takes (clip-only estimators: one
# epoch per stage, their fits are the slowest)
FAMILIES = [(f"{name}-{kind}", name, kind == "clips",
             _one_epoch_each(entry) if "images" not in entry.inputs else {})
            for name, entry in ESTIMATORS.items() if entry.deep
            for kind in ("images", "clips") if kind in entry.inputs]


@pytest.fixture(scope="module")
def odd_stride_runs(request):
    """``{family: result}`` of the families the child finished, and its failure (or None).

    Only the families of the test cases selected in this session (``-k``, node ids) run."""
    selected = {item.callspec.params["family"] for item in request.session.items
                if getattr(item, "module", None) is request.module and hasattr(item, "callspec")
                and "family" in item.callspec.params}
    families = [f for f in FAMILIES if f[0] in selected]
    out, failure = run_python(CHILD.format(families=families), timeout=600, check=False)
    results = {}
    for line in out.splitlines():
        if line.startswith('{"family"'):
            row = json.loads(line)
            results[row["family"]] = row["result"]
    return results, failure


@pytest.mark.parametrize("family", [f[0] for f in FAMILIES])
def test_odd_strides_fit_and_score_like_a_plain_copy(odd_stride_runs, family):
    results, failure = odd_stride_runs
    if family not in results:  # the child crashed, hung or failed at this family or before
        pytest.fail(f"no result for {family}: {failure}")
    # exact: after validation the data are the same float32 values in the same layout, so
    # fit and scoring run the same kernels in the same order (same process, same threads)
    result = results[family]
    assert result == {variant: [0.0, 0.0] for variant in result}, result
