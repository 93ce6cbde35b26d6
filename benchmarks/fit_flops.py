"""How much arithmetic a fit at defaults is, against what this CPU can do (issues 14 and 18).

The fit-time target (at most 60 s per set on 2 cores) is met on an Intel Xeon for most
methods; on an AMD EPYC (the suite re-timed alone, 2026-11-29) the AE, LTG and the flow meet
it on every set, LSA is at its edge and OLED, the CAE and MMP miss it on the larger image
sets by 2.5-4.4x. This script says whether a method is slow
because of the work it must do or because of how it runs: it counts the floating-point
operations of the matrix products and convolutions of a fit at defaults
(``torch.utils.flop_counter.FlopCounterMode``: forward and backward, every optimizer step;
elementwise operations, normalisation and Adam are not counted), and measures the machine's
float32 matrix-product peak (``torch.mm`` of 2048 x 2048 matrices, best of 5). ``floor s`` is
the counted work at that peak: no implementation of the same networks, trained the same way,
fits faster on this machine. ``measured s`` is the fit time of the robustness suite's seed-0
row on the same set (``robustness.jsonl``, timed rows only); ``GFLOP/s`` their ratio.

Counting: a fit of 1 and of 2 epochs are counted (the networks run for real, on the CPU);
their difference is one epoch's work, and a fit at the default ``E`` epochs is the first
count plus ``E - 1`` epochs (every method here trains the same way each epoch at defaults).
Counts do not depend on timing, so this may run next to other work; the peak must not::

    python benchmarks/fit_flops.py                 # count and measure the peak
    python benchmarks/fit_flops.py --sets mnist-0 textures --methods LSA OLED
"""

import os
import time
import warnings

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from _common import (estimator_names, make_estimator, make_parser, provenance, provenance_lines,
                     read_jsonl, save_result)

from sknovelty.datasets import SUITE, load_suite_task

STEM = "fit_flops"
#: the deep estimators of the registry that take images (and vectors: the suite's sets)
METHODS = estimator_names(deep=True, inputs="images")


def matmul_peak(n=2048, repeats=5, calls=10):
    """Best float32 GFLOP/s of ``torch.mm`` on n x n matrices over ``repeats`` timings."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)   # warm-up: thread pool, first-touch pages
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            torch.mm(a, b)
        best = max(best, 2 * n ** 3 * calls / (time.perf_counter() - start) / 1e9)
    return best


def count_fit(method, X, epochs):
    model = make_estimator(method, random_state=0, device="cpu", epochs=epochs)
    with warnings.catch_warnings(), FlopCounterMode(display=False) as counter:
        warnings.simplefilter("ignore")
        model.fit(X)
    return counter.get_total_flops(), model


def main():
    parser = make_parser(__doc__, methods=METHODS, device=None)
    parser.add_argument("--sets", nargs="+", default=["mnist-0"], choices=list(SUITE))
    parser.add_argument("--no-peak", action="store_true",
                        help="skip the peak measurement (when other work shares the CPU)")
    args = parser.parse_args()
    info = provenance(args)
    peak = None if args.no_peak else matmul_peak()
    robust = os.path.join(args.out, "robustness.jsonl")
    timed = [r for r in read_jsonl(robust) if r.get("timed", True) and r["seed"] == 0] \
        if os.path.exists(robust) else []
    rows = []
    for name in args.sets:
        X = load_suite_task(name, random_state=0).X_train
        for method in args.methods:
            one, model = count_fit(method, X, 1)
            two, _ = count_fit(method, X, 2)
            default_epochs = make_estimator(method).get_params()["epochs"]
            total = one + (default_epochs - 1) * (two - one)
            measured = next((r["fit_s"] for r in timed
                             if r["method"] == method and r["set"] == name), None)
            row = dict(method=method, set=name, epochs=default_epochs,
                       batch_size=int(model.batch_size_), epoch_gflop=(two - one) / 1e9,
                       fit_tflop=total / 1e12, measured_s=measured)
            if peak:
                row["floor_s"] = total / (peak * 1e9)
            if measured:
                row["gflops"] = total / measured / 1e9
            rows.append(row)
            print(row, flush=True)
    lines = ["# Arithmetic of a fit at defaults against this CPU's peak", "",
             *provenance_lines(info),
             f"- float32 matrix-product peak: {peak:.1f} GFLOP/s (torch.mm, 2048 x 2048, best "
             f"of 5, {torch.get_num_threads()} threads)" if peak else
             "- peak: not measured (`--no-peak`)",
             "- note: `measured s` comes from the suite's seed-0 rows (their run and date "
             "are in `robustness.md`); this machine's speed drifts by up to 2x over hours "
             "(the same LSA fit took 129.4 s at 13:47 and 62.9 s at 16:27 UTC on 2026-11-28, "
             "`lsa_fit_time.md`), so `GFLOP/s` compares methods only roughly",
             "", __doc__.split("\n\n")[1].replace("\n", " "), "",
             "| method | set | epochs | batch | GFLOP per epoch | TFLOP per fit | floor s | "
             "measured s | GFLOP/s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['set']} | {r['epochs']} | {r['batch_size']} | "
            f"{r['epoch_gflop']:.0f} | {r['fit_tflop']:.2f} | "
            + (f"{r['floor_s']:.0f}" if "floor_s" in r else "") + " | "
            + (f"{r['measured_s']:.0f}" if r["measured_s"] else "") + " | "
            + (f"{r['gflops']:.0f}" if "gflops" in r else "") + " |")
    save_result(args.out, STEM, lines, {"provenance": info, "peak_gflops": peak, "rows": rows})


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
