"""How much do results move with torch's thread count? One-class MNIST-5k at default settings.

Each deep estimator is fitted at its defaults on the training part of one digit class (the
one-class protocol of ``one_class.py``) twice, with ``n_jobs=1`` and ``n_jobs=2`` (torch's
intra-op threads during fit and scoring), same seed, same data, on the CPU. Reported: the
AUROC of each fit, their difference, and the largest score difference relative to the score
range (the suite's ``test_same_seed_same_scores_other_seed_other_scores`` checks that one
thread count is bit-reproducible). Fit seconds are recorded for orientation only.

Nothing here is tuned: defaults as shipped, seeds and classes given on the command line.

    python benchmarks/threads.py                       # class 0, seed 0, every method
    python benchmarks/threads.py --classes 0 5 --methods LSA AE
    python benchmarks/threads.py --methods OLED CAE --merge   # add rows to the existing file
"""

import json
import os

import numpy as np

from sknovelty.datasets import load_mnist_5k, one_class_split
from sknovelty.metrics import auroc

from _common import (estimator_names, fit_and_score, make_estimator, make_parser,  # noqa: E402
                     provenance, provenance_lines, save_result)

#: the deep estimators of the library's registry that take images (variants on request)
METHODS = estimator_names(deep=True, inputs="images")


def run_one(name, n_jobs, seed, X_train, X_test, y_test):
    det = make_estimator(name, random_state=seed, device="cpu", n_jobs=n_jobs)
    scores, fit_s, _ = fit_and_score(det, X_train, X_test)
    return scores, auroc(y_test, scores), fit_s


def write(args, info, rows):
    """Write the result file (after every row, so that a stopped run keeps what it measured)."""
    lines = ["# Results against torch's thread count (1 vs 2 threads)", "",
             *provenance_lines(info),
             "- protocol: one-class MNIST-5k, default settings, `n_jobs` = torch intra-op threads "
             "in fit and scoring; nothing tuned",
             *[f"- note: {note}" for note in info.get("notes", [])],
             *[f"- earlier rows: `{e['command']}` ({e['date']}); " + "; ".join(e.get("notes", []))
               for e in info.get("earlier", [])], "",
             "| method | class | seed | AUROC 1 thread | AUROC 2 threads | difference | "
             "max score difference / range | fit s (1 / 2 threads) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['cls']} | {r['seed']} | {r['auroc_1']:.4f} | "
                     f"{r['auroc_2']:.4f} | {r['diff']:+.4f} | {r['max_score_diff']:.2e} | "
                     f"{r['fit_s_1']:.1f} / {r['fit_s_2']:.1f} |")
    save_result(args.out, "threads", lines, {"provenance": info, "rows": rows})


def main(argv=None):
    parser = make_parser(__doc__, seeds=[0], classes=[0], methods=METHODS, device=None,
                         method_choices=estimator_names(deep=True, inputs="images", variants=True))
    parser.add_argument("--merge", action="store_true",
                        help="keep the rows of the existing result file that are not rerun")
    args = parser.parse_args(argv)
    info = provenance(args)
    X, y = load_mnist_5k()
    rows = []
    previous = os.path.join(args.out, "threads.json")
    if args.merge and os.path.exists(previous):
        with open(previous) as f:
            old = json.load(f)
        rerun = {(m, k, s) for m in args.methods for k in args.classes for s in args.seeds}
        rows = [r for r in old["rows"] if (r["method"], r["cls"], r["seed"]) not in rerun]
        info["earlier"] = [old["provenance"], *old["provenance"].get("earlier", [])]
    for seed in args.seeds:
        for k in args.classes:
            X_train, X_test, y_test = one_class_split(X, y, normal_class=k, random_state=seed)
            for name in args.methods:
                s1, a1, t1 = run_one(name, 1, seed, X_train, X_test, y_test)
                s2, a2, t2 = run_one(name, 2, seed, X_train, X_test, y_test)
                row = dict(method=name, cls=k, seed=seed, auroc_1=a1, auroc_2=a2,
                           diff=a2 - a1, max_score_diff=float(np.abs(s1 - s2).max() / np.ptp(s1)),
                           fit_s_1=t1, fit_s_2=t2)
                rows.append(row)
                print(row, flush=True)
                write(args, info, rows)
if __name__ == "__main__":
    main()
