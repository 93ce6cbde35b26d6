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


def split_draws(rng, labels, inlier, val_outliers):
    """The draws of one class's split (positions among the class's inliers): the training
    positions (validation included) and the test positions. ``val_outliers``: whether the
    script then draws its validation outliers too (``train.py``: yes; ``test.py``: no)."""
    n_inl = int(np.sum(labels == inlier))
    n_out = len(labels) - n_inl
    train = rng.choice(range(n_inl), int(n_inl * TRAIN_SHARE), replace=False)
    test = np.delete(np.arange(n_inl), train)
    rng.choice(range(len(train)), N_VAL_INLIERS, replace=False)
    n_test_out = int(len(test) * OUTLIER_SHARE)
    rng.choice(range(n_out), n_test_out, replace=False)
    if val_outliers:
        rng.choice(range(n_out - n_test_out), N_VAL_OUTLIERS, replace=False)
    return train, test


def overlaps(labels):
    """Per class: (test inliers of ``test.py``, how many of them ``train.py`` trained or
    validated on, and how many its own held-out third shares with them)."""
    out = []
    rng_test = np.random.RandomState(SEED)
    for k in range(10):
        train, held_out = split_draws(np.random.RandomState(SEED), labels, k, True)
        _, test = split_draws(rng_test, labels, k, False)
        out.append(dict(cls=k, n_test_inliers=len(test),
                        seen=int(np.isin(test, train).sum()),
                        held_out_shared=int(np.isin(test, held_out).sum())))
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
