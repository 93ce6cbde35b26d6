"""How many of the OLED paper's MNIST test inliers its own models were trained on.

OLED's official MNIST scripts (github.com/jewelltaylor/OLED, ``mnist_experiment/scripts``,
commit 76f3951) pool MNIST's 70,000 digits (training digits first) and split each class's
inliers with numpy's global random generator, seeded with 17 at the top of each script:

* ``train.py`` runs once per class (the class is a command-line argument), so every class's
  split starts from the seed. Its draws: two thirds of the inliers for training
  (``np.random.choice`` without replacement), 300 of those kept apart for validation, test
  outliers (30% of the test inliers' count), then 90 validation outliers.
* ``test.py`` seeds once and then loops over the ten classes in one process, drawing the
  first three of those for each class in turn. From class 1 on, its generator has moved
  on, so its "test" inliers are a fresh random third of the class, drawn independently of
  the one ``train.py`` left out.

This script replays both sequences of draws on the real labels (``sknovelty.datasets.
load_mnist``; numpy's legacy ``RandomState`` draws, the same as ``np.random.seed`` and
``np.random.choice``) and counts, per class, the test inliers of ``test.py`` that
``train.py`` used for training or validation. It trains nothing and computes no AUROC.
What it shows holds if the published scripts produced the paper's table; it says nothing
about sknovelty's own protocol, which splits once per class (``paper_tables.py oled``).

    python benchmarks/oled_split_check.py
"""

import numpy as np
from _common import make_parser, provenance, provenance_lines, save_result

from sknovelty.datasets import load_mnist

SEED = 17
TRAIN_SHARE = 0.6667
OUTLIER_SHARE = 0.30
N_VAL_INLIERS = 300
N_VAL_OUTLIERS = 90


def official_split(rng, labels, inlier, val_outliers):
    """One class's split as the official scripts draw it from ``rng``, as indices into the
    pooled digits (training digits first, then test digits, as ``labels`` lists them):
    ``train`` (the digits trained on), ``val_in`` (300 training-share inliers kept apart),
    ``test_in``, ``test_out`` and, when ``val_outliers`` (``train.py``: yes; ``test.py``: no),
    ``val_out`` (90 outliers drawn after the test outliers are removed), else None."""
    inl, out = np.flatnonzero(labels == inlier), np.flatnonzero(labels != inlier)
    train_pos = rng.choice(range(len(inl)), int(len(inl) * TRAIN_SHARE), replace=False)
    train, test_in = inl[train_pos], np.delete(inl, train_pos)
    val_pos = rng.choice(range(len(train)), N_VAL_INLIERS, replace=False)
    val_in, train = train[val_pos], np.delete(train, val_pos)
    out_pos = rng.choice(range(len(out)), int(len(test_in) * OUTLIER_SHARE), replace=False)
    val_out = None
    if val_outliers:
        rest = np.delete(out, out_pos)
        val_out = rest[rng.choice(range(len(rest)), N_VAL_OUTLIERS, replace=False)]
    return dict(train=train, val_in=val_in, test_in=test_in, test_out=out[out_pos],
                val_out=val_out)


def train_script_split(labels, inlier):
    """``train.py``'s split of class ``inlier`` (its process seeds numpy first)."""
    return official_split(np.random.RandomState(SEED), labels, inlier, True)


def test_script_split(labels, inlier):
    """``test.py``'s split of class ``inlier`` (one seeded generator for classes 0, 1, ...)."""
    rng = np.random.RandomState(SEED)
    for k in range(inlier + 1):
        split = official_split(rng, labels, k, False)
    return split


def overlaps(labels):
    """Per class: (test inliers of ``test.py``, how many of them ``train.py`` trained or
    validated on, and how many its own held-out third shares with them)."""
    out = []
    rng_test = np.random.RandomState(SEED)
    for k in range(10):
        train = train_script_split(labels, k)
        test = official_split(rng_test, labels, k, False)["test_in"]
        seen = np.concatenate([train["train"], train["val_in"]])
        out.append(dict(cls=k, n_test_inliers=len(test), seen=int(np.isin(test, seen).sum()),
                        held_out_shared=int(np.isin(test, train["test_in"]).sum())))
    return out


def main():
    parser = make_parser(__doc__, device=None)
    args = parser.parse_args()
    info = provenance(args)
    labels = np.concatenate([load_mnist(split="train")[1], load_mnist(split="test")[1]])
    rows = overlaps(labels)
    lines = ["# OLED's MNIST split: test inliers its models were trained on", "",
             *provenance_lines(info), "",
             "Replay of the data splits of OLED's official MNIST scripts (see "
             "`benchmarks/oled_split_check.py`): `train.py` seeds numpy with 17 in each "
             "per-class process; `test.py` seeds once and loops over the classes. Per class: "
             "the test inliers of `test.py`, how many of them `train.py` used for training or "
             "validation, and how many lie in the third `train.py` held out.", "",
             "| class | test inliers | trained or validated on | share | in train.py's "
             "held-out third |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['cls']} | {r['n_test_inliers']} | {r['seen']} | "
                     f"{r['seen'] / r['n_test_inliers']:.3f} | {r['held_out_shared']} |")
    shares = [r["seen"] / r["n_test_inliers"] for r in rows[1:]]
    lines += ["", f"Classes 1-9: {min(shares):.3f}-{max(shares):.3f} of the test inliers were "
              "training or validation digits (an independent third drawn again: about "
              f"{TRAIN_SHARE:.2f} expected); class 0, drawn from the same state in both "
              "scripts, has none. Scores of such inliers are those of training data, so the "
              "paper's MNIST AUROCs for classes 1-9 are likely optimistic, if its table came "
              "from these scripts. The scripts also keep, per score, the epoch with the best "
              "AUROC on 300 validation inliers and 90 labelled validation outliers "
              "(`train.py`), which this check does not measure."]
    save_result(args.out, "oled_split_check", lines, {"provenance": info, "rows": rows})


if __name__ == "__main__":
    main()
