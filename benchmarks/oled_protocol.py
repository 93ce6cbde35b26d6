"""How much of OLED's MNIST number comes from the protocol of its official scripts.

OLED's official MNIST scripts (github.com/jewelltaylor/OLED, ``mnist_experiment/scripts``,
commit 76f3951; ``../shared/notes/oled.md``) differ from sknovelty's protocol
(``paper_tables.py oled``) in four ways besides the training budget:

1. metric: ``test.py`` min-max scales each score over the evaluated test set itself and
   computes the AUROC with ``tf.keras.metrics.AUC(num_thresholds=100)`` (the ROC at 100
   fixed thresholds on [0, 1], trapezoidal), not exactly;
2. test inliers: ``test.py`` draws its test third of each class afresh, so for classes 1-9
   about two thirds of its test inliers were training or validation digits of ``train.py``
   (``oled_split_check.py``);
3. epoch: ``train.py`` keeps, per score, the epoch whose AUROC (10 thresholds, scores
   min-max scaled over the validation set) is best on 300 validation inliers and 90
   labelled validation outliers, and ``test.py`` scores that epoch's model;
4. the training digits: ``train.py``'s two thirds less the 300 validation inliers.

This benchmark trains sknovelty's OLED (its defaults, the epochs of ``--epochs``) on
``train.py``'s training digits of each class, and after every epoch computes the raw scores
of sec. 3.6 on ``train.py``'s validation and held-out test digits and on ``test.py``'s test
digits (a skorch callback, in eval mode without gradients: the fit is the same as without
it). From those it reports, per score, the AUROC as sknovelty computes it (the estimator's
own scores of the last epoch on ``train.py``'s held-out test set) and then with the official
details added one at a time, cumulatively and each alone. It answers "how far does the
protocol move the number", not "what would the paper's 300 epochs give". Beside the
scripts' labelled choice of epoch it records two label-free ones (``label_free``): the epoch
with the lowest mean reconstruction term on the 300 validation inliers, and s_avg averaged
over the last ``SNAPSHOTS`` epochs' models. The split replay is
``oled_split_check.official_split``; the seeds seed the estimators (the scripts' split is
fixed by their seed 17).

    python benchmarks/oled_protocol.py                       # classes 0-9, 5 epochs
    python benchmarks/oled_protocol.py --classes 8 --epochs 20   # the default budget, class 8
    python benchmarks/oled_protocol.py --classes 2 --epochs 1 --out /tmp/op   # a quick look
    python benchmarks/oled_protocol.py --report              # rewrite the .md/.json
"""

import os
import sys

import numpy as np
from _common import (EpochTerms, Stopwatch, make_estimator, make_parser,
                     provenance, provenance_lines, read_jsonl, run_lines, run_pending,
                     save_result)
from oled_split_check import test_script_split, train_script_split

from sknovelty._scoring import ScoringMixin
from sknovelty.datasets import load_mnist
from sknovelty.metrics import auroc

STEM = "oled_protocol"
SCORES = ("avg", "mask", "rec", "cont")
TERMS = ("rec", "mask", "cont")
#: the paper's 10-class means (tables 1 and 4), per score
PAPER = {"avg": 0.9845, "mask": 0.9851, "rec": 0.9772, "cont": 0.9650}
#: thresholds of the scripts' AUROC: validation in train.py, test in test.py
VAL_THRESHOLDS, TEST_THRESHOLDS = 10, 100
#: how many last epochs the snapshot mean of s_avg averages (a label-free alternative to
#: the last epoch)
SNAPSHOTS = 5


def keras_auc(y, score, num_thresholds):
    """``tf.keras.metrics.AUC(num_thresholds)`` (ROC, trapezoidal ``"interpolation"``) of
    ``score`` in [0, 1] for labels ``y`` (1 = positive): the ROC at the thresholds -1e-7,
    1/(n-1), ..., (n-2)/(n-1), 1 + 1e-7, a sample counted positive where its score is above."""
    y = np.asarray(y) == 1
    t = np.r_[-1e-7, np.arange(1, num_thresholds - 1) / (num_thresholds - 1), 1 + 1e-7]
    above = np.asarray(score)[None, :] > t[:, None]
    tpr = (above & y).sum(1) / max(y.sum(), 1)
    fpr = (above & ~y).sum(1) / max((~y).sum(), 1)
    return float(np.sum((fpr[:-1] - fpr[1:]) * (tpr[:-1] + tpr[1:]) / 2))


def scaled_novelty(terms, reference):
    """Each term scaled by its min and max on the ``reference`` terms, and s_avg their mean
    (higher = more novel). sknovelty's scores take held-out normal rows as the reference;
    the scripts' take the rows evaluated together (``reference = terms``)."""
    scaled = {}
    for name in TERMS:
        low, high = reference[name].min(), reference[name].max()
        scaled[name] = (terms[name] - low) / (high - low if high > low else 1.0)
    return {**scaled, "avg": sum(scaled.values()) / len(TERMS)}


def _take(terms, rows):
    return {name: value[rows] for name, value in terms.items()}


def epoch_aurocs(terms, sets):
    """Per-score AUROCs of one epoch's ``terms`` (over the scored rows) on each evaluation.

    ``sets``: name -> (rows into the terms, outlier labels: 1 = outlier). ``val_scripts``:
    train.py's validation AUROC (10 thresholds, scaled over the validation rows);
    ``<set>_scripts``: test.py's metric (100 thresholds, scaled over the set's rows);
    ``<set>_exact``: the exact AUROC with the terms scaled on the validation inliers (for
    s_avg; the other scores do not depend on the scaling).
    """
    val_rows, val_out = sets["val"]
    reference = _take(terms, val_rows[val_out == 0])
    val = _take(terms, val_rows)
    out = {"val_scripts": {s: keras_auc(val_out, v, VAL_THRESHOLDS)
                           for s, v in scaled_novelty(val, val).items()}}
    for name in ("clean", "official"):
        rows, y_out = sets[name]
        evaluated = _take(terms, rows)
        scripts = scaled_novelty(evaluated, evaluated)
        exact = scaled_novelty(evaluated, reference)
        out[f"{name}_scripts"] = {s: keras_auc(y_out, v, TEST_THRESHOLDS)
                                  for s, v in scripts.items()}
        out[f"{name}_exact"] = {s: auroc(1 - 2 * y_out, -v) for s, v in exact.items()}
    # label-free: how well the epoch fits held-out normal digits (no outlier is looked at)
    out["val_inlier_terms"] = {name: float(value.mean()) for name, value in reference.items()}
    return out


def snapshot_auroc(epoch_terms, sets, last=SNAPSHOTS):
    """Exact AUROC on ``train.py``'s held-out third of s_avg averaged over the ``last``
    epochs' models, each epoch's terms scaled on its own 300 validation inliers: a
    label-free alternative to scoring with the last epoch alone."""
    val_rows, val_out = sets["val"]
    rows, y_out = sets["clean"]
    snapshots = epoch_terms[-last:]
    total = sum(scaled_novelty(_take(terms, rows),
                               _take(terms, val_rows[val_out == 0]))["avg"]
                for terms in snapshots)
    return auroc(1 - 2 * y_out, -total / len(snapshots))


def evaluation_rows(train, test):
    """The pooled digits scored each epoch (sorted, unique) and, per evaluation, positions
    into them with outlier labels: ``val`` (train.py's 300 + 90), ``clean`` (train.py's
    held-out inliers and test outliers), ``official`` (test.py's test set)."""
    parts = {"val": (train["val_in"], train["val_out"]),
             "clean": (train["test_in"], train["test_out"]),
             "official": (test["test_in"], test["test_out"])}
    pooled = np.unique(np.concatenate([a for pair in parts.values() for a in pair]))
    sets = {name: (np.searchsorted(pooled, np.r_[inl, out]),
                   np.r_[np.zeros(len(inl), int), np.ones(len(out), int)])
            for name, (inl, out) in parts.items()}
    return pooled, sets


def run_class(X, labels, k, seed, args):
    train, test = train_script_split(labels, k), test_script_split(labels, k)
    pooled, sets = evaluation_rows(train, test)
    X_eval = np.ascontiguousarray(X[pooled])
    probe = EpochTerms(X_eval)
    model = make_estimator("OLED", random_state=seed, device=args.device, epochs=args.epochs,
                           callbacks=[probe])
    with Stopwatch(args.device) as fitting:
        model.fit(X[train["train"]])
    probe = next(cb for _, cb in model.net_.callbacks_ if isinstance(cb, EpochTerms))
    # the callback's last epoch is the fitted model: the same raw terms as the estimator's
    rows = sets["clean"][0][:256]
    raw = ScoringMixin.score_components(model, X_eval[rows])
    for name in TERMS:
        if not np.allclose(probe.terms_[-1][name][rows], raw[name], rtol=1e-4, atol=1e-6):
            raise AssertionError(f"the callback's last-epoch {name} differs from the model's")
    library = {}
    for name in ("clean", "official"):
        rows, y_out = sets[name]
        components = model.score_components(X_eval[rows])
        library[name] = {s: auroc(1 - 2 * y_out, -components[s]) for s in SCORES}
    seen = np.isin(test["test_in"], np.r_[train["train"], train["val_in"]]).mean()
    return dict(cls=int(k), seed=int(seed), epochs=args.epochs, n_train=len(train["train"]),
                n_val=[len(train["val_in"]), len(train["val_out"])],
                n_clean=[len(train["test_in"]), len(train["test_out"])],
                n_official=[len(test["test_in"]), len(test["test_out"])],
                official_seen=float(seen), fit_s=fitting.seconds, library=library,
                snapshot={"last": min(SNAPSHOTS, len(probe.terms_)),
                          "avg": snapshot_auroc(probe.terms_, sets)},
                per_epoch=[epoch_aurocs(t, sets) for t in probe.terms_])


# --------------------------------------------------------------------------- reporting
def _best(row, score):
    """The epoch train.py keeps for ``score``: the first with the highest validation AUROC."""
    return int(np.argmax([e["val_scripts"][score] for e in row["per_epoch"]]))


def steps(row, score):
    """One class's AUROC of ``score`` through the official details, cumulatively then alone."""
    last, best = row["per_epoch"][-1], row["per_epoch"][_best(row, score)]
    return {
        "sknovelty": row["library"]["clean"][score],
        "+ metric": last["clean_scripts"][score],
        "+ metric + test inliers": last["official_scripts"][score],
        "+ metric + test inliers + epoch": best["official_scripts"][score],
        "metric alone": last["clean_scripts"][score],
        "test inliers alone": row["library"]["official"][score],
        # the change the kept epoch makes on its own, added to the library's AUROC
        "epoch alone": (row["library"]["clean"][score] + best["clean_exact"][score]
                        - last["clean_exact"][score]),
    }


def trajectory(row, score="avg"):
    """``score``'s exact AUROC on ``train.py``'s held-out third after each epoch, and the
    mean absolute change from one epoch to the next (how much the last epoch is a draw)."""
    values = [e["clean_exact"][score] for e in row["per_epoch"]]
    step = float(np.mean(np.abs(np.diff(values)))) if len(values) > 1 else float("nan")
    return values, step


def trajectory_lines(group, epochs):
    """Per class, s_avg after each epoch (exact AUROC on the held-out third)."""
    lines = ["Per class, s_avg after each epoch (exact AUROC on `train.py`'s held-out third, "
             "s_avg scaled on the 300 validation inliers; the last column: the mean absolute "
             "change from one epoch to the next):", "",
             "| class | " + " | ".join(str(e) for e in range(epochs)) + " | mean abs. change |",
             "|---|" + "---|" * (epochs + 1)]
    for r in group:
        values, step = trajectory(r)
        lines.append(f"| {r['cls']} | " + " | ".join(f"{v:.3f}" for v in values)
                     + f" | {step:.3f} |")
    return lines + [""]


def label_free(row):
    """s_avg (exact AUROC on the held-out third) by how the model is chosen: the last epoch,
    the scripts' kept epoch (labelled outliers), the epoch with the lowest mean
    reconstruction term on the 300 validation inliers (normal digits only), and the
    snapshot mean of the last epochs. ``None`` where the row predates the record."""
    epochs = row["per_epoch"]
    if "val_inlier_terms" not in epochs[-1]:
        return None
    lowest = int(np.argmin([e["val_inlier_terms"]["rec"] for e in epochs]))
    kept = _best(row, "avg")
    return {"last epoch": epochs[-1]["clean_exact"]["avg"],
            "kept (labelled)": epochs[kept]["clean_exact"]["avg"], "kept epoch": kept,
            "lowest validation rec": epochs[lowest]["clean_exact"]["avg"],
            "lowest rec epoch": lowest,
            "snapshot mean": row["snapshot"]["avg"]}


def label_free_lines(group):
    """Per class, s_avg by how the model is chosen (rows that record it)."""
    chosen = [(r, label_free(r)) for r in group]
    chosen = [(r, c) for r, c in chosen if c is not None]
    if not chosen:
        return []
    snap = f"mean of last {chosen[0][0]['snapshot']['last']}"
    lines = ["Per class, s_avg (exact AUROC on the held-out third) by how the model is "
             "chosen: the last epoch (the library's), the epoch the scripts keep (labelled "
             "outliers; a novelty detector cannot do this), the epoch with the lowest mean "
             "reconstruction term on the 300 validation inliers (normal digits only), and the "
             "mean of the last epochs' s_avg (each scaled on its own validation inliers; "
             "normal digits only). Epochs are 0-based:", "",
             f"| class | last epoch | kept (labelled) | lowest validation rec | {snap} |",
             "|---|---|---|---|---|"]
    for r, c in chosen:
        lines.append(f"| {r['cls']} | {c['last epoch']:.4f} | {c['kept (labelled)']:.4f} "
                     f"({c['kept epoch']}) | {c['lowest validation rec']:.4f} "
                     f"({c['lowest rec epoch']}) | {c['snapshot mean']:.4f} |")
    return lines + [""]


CUMULATIVE = ("sknovelty", "+ metric", "+ metric + test inliers",
              "+ metric + test inliers + epoch")
ALONE = ("metric alone", "test inliers alone", "epoch alone")


def report(out, rows, info):
    rows = sorted({(r["cls"], r["seed"], r["epochs"]): r for r in rows}.values(),
                  key=lambda r: (r["epochs"], r["seed"], r["cls"]))
    lines = ["# OLED on MNIST: how far the official scripts' protocol moves the AUROC", "",
             *provenance_lines(info), "",
             "sknovelty's OLED (defaults) trained on the training digits of OLED's official "
             "`train.py` (its two thirds of each class less its 300 validation inliers), "
             "scored after every epoch. Rows, per score (mean over the classes run):", "",
             "- **sknovelty**: the estimator's own score at the last epoch, exact AUROC, on "
             "`train.py`'s held-out third and its test outliers (no digit seen in training);",
             "- **+ metric**: the same scores min-max scaled over the test set itself and the "
             "AUROC at 100 thresholds (`test.py`'s `tf.keras.metrics.AUC`);",
             "- **+ test inliers**: on `test.py`'s test set, whose inliers for classes 1-9 "
             "are about two thirds training or validation digits (its outliers are a draw of "
             "their own too, so this step also carries the noise of another outlier sample; "
             "class 0's test set is `train.py`'s);",
             "- **+ epoch**: each score at the epoch with the best AUROC on `train.py`'s "
             "validation set (300 inliers, 90 labelled outliers; 10 thresholds), as the "
             "scripts keep it;",
             "- **alone**: each detail on its own on top of sknovelty (the epoch alone: the "
             "change from the last epoch to the kept one in the exact AUROC on the held-out "
             "third, s_avg scaled on the 300 validation inliers, added to the sknovelty "
             "row).", ""]
    payload = {"provenance": info, "rows": rows, "summary": []}
    for (epochs, seed) in sorted({(r["epochs"], r["seed"]) for r in rows}):
        group = [r for r in rows if (r["epochs"], r["seed"]) == (epochs, seed)]
        classes = [r["cls"] for r in group]
        lines += [f"## {epochs} epoch{'s' * (epochs != 1)}, seed {seed}, classes "
                  f"{', '.join(map(str, classes))}", "",
                  "| protocol | " + " | ".join(f"s_{s}" for s in SCORES) + " |",
                  "|---|" + "---|" * len(SCORES)]
        means = {}
        for label in CUMULATIVE + ALONE:
            means[label] = {s: float(np.mean([steps(r, s)[label] for r in group]))
                            for s in SCORES}
            shift = "" if label == "sknovelty" else " ({:+.4f})"
            lines.append(f"| {label} | " + " | ".join(
                f"{means[label][s]:.4f}" + shift.format(means[label][s] - means['sknovelty'][s])
                for s in SCORES) + " |")
        lines.append("| paper, 10 classes (300 epochs) | "
                     + " | ".join(f"{PAPER[s]:.4f}" for s in SCORES) + " |")
        lines += ["", "Per class, s_avg (the epoch the scripts keep in brackets, of "
                  f"0-{epochs - 1}; share of test.py's test inliers seen in training):", "",
                  "| class | seen | " + " | ".join(CUMULATIVE + ALONE) + " | fit s |",
                  "|---|---|" + "---|" * (len(CUMULATIVE) + len(ALONE) + 1)]
        for r in group:
            st = steps(r, "avg")
            cells = [f"{st[label]:.4f}" for label in CUMULATIVE + ALONE]
            cells[3] += f" ({_best(r, 'avg')})"
            lines.append(f"| {r['cls']} | {r['official_seen']:.2f} | " + " | ".join(cells)
                         + f" | {r['fit_s']:.0f} |")
        lines.append("")
        lines += trajectory_lines(group, epochs)
        lines += label_free_lines(group)
        payload["summary"].append(dict(epochs=epochs, seed=seed, classes=classes, means=means))
    lines += ["The split is the scripts' (seed 17), not `paper_tables.py`'s, and trains on "
              "300 fewer digits a class, so the sknovelty row differs a little from "
              "`paper_oled.md`'s. Fit seconds include scoring the evaluation digits after "
              "every epoch; fits at one torch thread, two at a time, are not timings.", "",
              "Runs that wrote these rows:", ""]
    lines += run_lines(rows)
    save_result(out, STEM, lines, payload)


def main(argv=None):
    parser = make_parser(__doc__, seeds=(0,), classes=range(10), device="auto")
    parser.add_argument("--epochs", type=int, default=5,
                        help="OLED's epochs (default: %(default)s, those of paper_oled.md's "
                        "10-class table; the estimator's default is 20)")
    parser.add_argument("--report", action="store_true",
                        help=f"only rewrite the .md/.json from {STEM}.jsonl in --out")
    args = parser.parse_args(argv)
    info = provenance(args)
    path = os.path.join(args.out, STEM + ".jsonl")
    if not args.report:
        X, y = (np.concatenate(parts) for parts in zip(load_mnist(split="train"),
                                                         load_mnist(split="test")))
        tasks = [{"cls": k, "seed": seed, "epochs": args.epochs}
                 for seed in args.seeds for k in args.classes]
        run_pending(path, tasks, lambda t: run_class(X, y, t["cls"], t["seed"], args), info,
                    lambda row: f"class {row['cls']} seed {row['seed']}: " + "  ".join(
                        f"{label} {v:.4f}" for label, v in steps(row, "avg").items()))
    rows = read_jsonl(path) if os.path.exists(path) else []
    if not rows:
        sys.exit(f"no rows in {path}")
    report(args.out, rows, info)


if __name__ == "__main__":
    main()
