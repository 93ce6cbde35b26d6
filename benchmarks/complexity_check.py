"""Does input complexity explain the suite's failures of reconstruction and density scores?

Issue 14: on the suite's ``photos`` set every method but the complexity-corrected flow ranks
the anomalies (smoother, simpler patches) as more normal. Serra et al. (ICLR 2020) correct a
likelihood by the input's code length L(x) under a generic compressor (``S = NLL - L``, both in
bits per dimension). A reconstruction error or a kernel density has no such common unit, so
this script tries the label-free analogue: on held-out *normal* rows, regress the novelty
score on L(x) (least squares, ``s ~ a L + b``), and score a test row by its residual
``s - (a L + b)``: the part of its novelty that its complexity does not explain.

For each image set of the suite (seed 0 split) and each method at its defaults: the method is
fitted on 80% of the normal training rows, the regression on the other 20%; AUROC of the raw
novelty score, of the residual, and of L(x) alone (a row scored as more novel the more complex
it is), and Spearman(score, L) on the held-out normal rows. Nothing is chosen on the test labels.

    python benchmarks/complexity_check.py --methods AE KDE OC-SVM IForest
"""

import numpy as np
from _common import (PEERS, estimator_names, make_estimator, make_parser, provenance,
                     provenance_lines, save_result)
from scipy.stats import spearmanr
from sklearn.model_selection import train_test_split

from sknovelty.datasets import SUITE, load_suite_task
from sknovelty.metrics import code_length
from sknovelty.metrics import auroc

STEM = "complexity_check"
IMAGE_SETS = [name for name, (kind, *_) in SUITE.items() if kind == "images"]


def run_one(method, task, seed):
    X_fit, X_cal = train_test_split(task.X_train, test_size=0.2, random_state=seed)
    # AE and LSA at batch 64, their default when the committed rows were written
    params = {"batch_size": 64} if method in ("AE", "LSA") else {}
    model = make_estimator(method, random_state=seed, device="cpu", **params).fit(X_fit)
    low, high = float(task.X_train.min()), float(task.X_train.max())
    s_cal, s_test = -model.score_samples(X_cal), -model.score_samples(task.X_test)
    L_cal, L_test = code_length(X_cal, low, high), code_length(task.X_test, low, high)
    a, b = np.polyfit(L_cal, s_cal, 1)
    y = task.y_test   # +1 normal: AUROC of a normality score = auroc(y, -novelty)
    return dict(method=method, rec=auroc(y, -s_test), residual=auroc(y, -(s_test - a * L_test - b)),
                code_length=auroc(y, -L_test), rho=float(spearmanr(s_cal, L_cal)[0]),
                slope=float(a))


def main():
    # default: the committed table's reconstruction and density scores; any estimator that
    # takes images, and the peers, with --methods
    parser = make_parser(__doc__, seeds=(0,), methods=["AE", "KDE", "OC-SVM", "IForest"],
                         method_choices=[*estimator_names(inputs="images", variants=True), *PEERS],
                         device=None)
    parser.add_argument("--sets", nargs="+", default=IMAGE_SETS, choices=IMAGE_SETS)
    args = parser.parse_args()
    info, rows = provenance(args), []
    for seed in args.seeds:
        for name in args.sets:
            task = load_suite_task(name, random_state=seed)
            for method in args.methods:
                row = dict(set=name, seed=seed, **run_one(method, task, seed))
                rows.append(row)
                print(f"{name:9s} {method:8s} raw {row['rec']:.3f} residual "
                      f"{row['residual']:.3f} L {row['code_length']:.3f} rho {row['rho']:.2f}",
                      flush=True)
    lines = ["# Input complexity against the suite's image sets (issue 14)", "",
             *provenance_lines(info), "",
             "AUROC (higher = better) of each method's novelty score (`raw`), of its residual "
             "after regressing it on the code length L(x) over held-out normal rows "
             "(`residual`), and of L(x) alone; `rho` = Spearman(score, L) on those normal rows. "
             "Method fitted on 80% of the normal training rows, regression on the other 20%; "
             "nothing chosen on the test labels.", "",
             "| set | method | raw | residual | L alone | rho |", "|---" * 6 + "|"]
    for r in rows:
        lines.append(f"| {r['set']} (seed {r['seed']}) | {r['method']} | {r['rec']:.3f} | "
                     f"{r['residual']:.3f} | {r['code_length']:.3f} | {r['rho']:.2f} |")
    lines += ["", "| method | mean raw | mean residual |", "|---|---|---|"]
    for m in args.methods:
        mine = [r for r in rows if r["method"] == m]
        lines.append(f"| {m} | {np.mean([r['rec'] for r in mine]):.3f} | "
                     f"{np.mean([r['residual'] for r in mine]):.3f} |")
    save_result(args.out, STEM, lines, {"provenance": info, "rows": rows})


if __name__ == "__main__":
    main()
