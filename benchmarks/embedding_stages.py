"""Which stages and pooling of EfficientNet-Lite0 make ``PretrainedEmbedding``'s default.

Per image set of the robustness suite (mnist-0, digits-3, textures, photos, faces) and seed,
and per class of MNIST-5k, this measures the AUROC of ``NearestNeighborDetector`` (its
defaults) on the features of each configuration:

* one stage (0 the stem, 1-7 the MBConv stages, 8 the head) or several (``0-8``: all nine,
  ``2-8``, ``5-8``), each stage's pooled vector scaled to unit length and the vectors
  concatenated (``PretrainedEmbedding(stage=..., normalize=True)``);
* average or maximum pooling;
* and the earlier default, ``head avg raw``: the head alone, average-pooled, not normalised.

Per pooling, the images pass through the network once (``stage="all"``, ``normalize=False``)
and each configuration is sliced from those features and normalised here; the script checks
that this equals the library's own transform for the default.

How the default is chosen: by the mean AUROC over the suite's five image sets (seeds 0-2).
Two checks keep that honest: MNIST-5k (ten one-class tasks, seeds 0-2) takes no part in the
choice, and a leave-one-set-out selection reports, per suite set, the AUROC of the
configuration chosen on the other four.

    python benchmarks/embedding_stages.py                   # seeds 0 1 2, then the report
    python benchmarks/embedding_stages.py --report          # the report from the JSON lines
"""


import numpy as np
from _common import (append_jsonl, pending, provenance_lines, resumable_main,
                     save_result)
from embedding import IMAGE_SETS

from sknovelty import NearestNeighborDetector, PretrainedEmbedding
from sknovelty.datasets import load_mnist_5k, load_suite_task, one_class_split
from sknovelty.features import EfficientNetLite0
from sknovelty.metrics import auroc

CHANNELS = EfficientNetLite0.STAGE_CHANNELS
#: several stages, each scaled to unit length, concatenated
GROUPS = {"0-8": tuple(range(9)), "2-8": tuple(range(2, 9)), "5-8": tuple(range(5, 9))}
EARLIER_DEFAULT = "head avg raw"
NEW_DEFAULT = "0-8 max"
MNIST5K = "MNIST-5k"


def configurations():
    """name -> (stages, pooling, normalised)."""
    out = {}
    for pooling in ("max", "avg"):
        for name, stages in GROUPS.items():
            out[f"{name} {pooling}"] = (stages, pooling, True)
        for stage in range(9):
            out[f"{stage} {pooling}"] = ((stage,), pooling, True)
    out[EARLIER_DEFAULT] = ((8,), "avg", False)
    return out


def per_stage_features(X_fit, Xs, device, **params):
    """{pooling: [per-stage raw pooled features of each X in Xs]} from one pass per pooling
    (``params``: other ``PretrainedEmbedding`` parameters, e.g. ``weights`` in the tests)."""
    ends = np.cumsum((0, *CHANNELS))
    out = {}
    for pooling in ("max", "avg"):
        emb = PretrainedEmbedding(stage="all", pooling=pooling, normalize=False,
                                  device=device, **params).fit(X_fit)
        out[pooling] = [[F[:, a:b] for a, b in zip(ends[:-1], ends[1:])]
                        for F in (emb.transform(X) for X in Xs)]
    return out


def unit(rows):
    """Each row scaled to unit length (an all-zero row stays zero)."""
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def features_of(parts, stages, normalised):
    blocks = [parts[s] for s in stages]
    if normalised:
        blocks = [unit(b) for b in blocks]
    return np.hstack(blocks)


def knn_aurocs(train_parts, test_parts, y_test, seed):
    out = {}
    for name, (stages, pooling, normalised) in configurations().items():
        det = NearestNeighborDetector(random_state=seed).fit(
            features_of(train_parts[pooling], stages, normalised))
        out[name] = auroc(y_test, det.score_samples(
            features_of(test_parts[pooling], stages, normalised)))
    return out


def check_against_library(task, parts, device):
    """The sliced, normalised default equals ``PretrainedEmbedding()``'s own features (float32:
    relative 1e-5, a few roundings of the division by the norm and of the summed squares)."""
    emb = PretrainedEmbedding(device=device).fit(task.X_train)
    stages, pooling, normalised = configurations()[NEW_DEFAULT]
    np.testing.assert_allclose(emb.transform(task.X_test),
                               features_of(parts[pooling][1], stages, normalised),
                               rtol=1e-5, atol=1e-6)


def run(seeds, device, path, info):
    for seed, name in pending(path, seeds, IMAGE_SETS):
        task = load_suite_task(name, random_state=seed)
        feats = per_stage_features(task.X_train, (task.X_train, task.X_test), device)
        got = knn_aurocs({p: f[0] for p, f in feats.items()},
                         {p: f[1] for p, f in feats.items()}, task.y_test, seed)
        if seed == seeds[0]:
            check_against_library(task, feats, device)
        append_jsonl(path, [dict(set=name, seed=seed, aurocs=got, run=info["command"])])
        print(name, seed, {k: round(got[k], 3) for k in (NEW_DEFAULT, EARLIER_DEFAULT)},
              flush=True)
    todo = [seed for seed, _ in pending(path, seeds, [MNIST5K])]
    if not todo:
        return
    X, y = load_mnist_5k()
    feats = per_stage_features(X[:64], (X,), device)  # every digit once; tasks index rows
    idx = np.arange(len(X))
    for seed in todo:
        rows = []
        for k in range(10):
            train, test, y_test = one_class_split(idx, y, k, test_size=0.2, random_state=seed)
            rows.append(knn_aurocs({p: [b[train] for b in f[0]] for p, f in feats.items()},
                                   {p: [b[test] for b in f[0]] for p, f in feats.items()},
                                   y_test, seed))
        got = {c: float(np.mean([r[c] for r in rows])) for c in rows[0]}
        append_jsonl(path, [dict(set=MNIST5K, seed=seed, aurocs=got, per_class=rows,
                                 run=info["command"])])
        print(MNIST5K, seed, {k: round(got[k], 3) for k in (NEW_DEFAULT, EARLIER_DEFAULT)},
              flush=True)


def report(out, rows, info):
    configs = list(configurations())
    sets = [*IMAGE_SETS, MNIST5K]
    mean = {(c, s): float(np.mean([r["aurocs"][c] for r in rows if r["set"] == s]))
            for c in configs for s in sets}
    seeds = {s: sorted({r["seed"] for r in rows if r["set"] == s}) for s in sets}
    suite = {c: float(np.mean([mean[(c, s)] for s in IMAGE_SETS])) for c in configs}
    ranked = sorted(configs, key=lambda c: -suite[c])
    lines = ["# Stages and pooling of the pretrained features", "",
             *provenance_lines(info), "",
             "Runs whose rows are in this file: " + "; ".join(
                 f"`{c}`" for c in dict.fromkeys(r["run"] for r in rows)), "",
             "AUROC of `NearestNeighborDetector` (defaults) on EfficientNet-Lite0 features at "
             "128 px, mean over seeds (suite sets: " + ", ".join(
                 f"{s} {seeds[s]}" for s in sets) + "; MNIST-5k: the mean of its ten one-class "
             "tasks per seed). `0-8`: all nine stages, each pooled vector scaled to unit length "
             "and concatenated; a single number: that stage alone, unit length; "
             f"`{EARLIER_DEFAULT}`: the head alone, average-pooled, not normalised (the "
             "default before this table).", "",
             "**How the default was chosen.** The configuration with the best mean over the "
             "suite's five image sets. MNIST-5k took no part in the choice; it is the check.", "",
             "| configuration | " + " | ".join(sets) + " | suite mean |",
             "|---|" + "---|" * (len(sets) + 1)]
    for c in ranked:
        cells = [f"{mean[(c, s)]:.3f}" for s in sets]
        label = f"**{c}**" if c == NEW_DEFAULT else c
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {suite[c]:.3f} |")
    lines += ["", "## Leave one set out", "",
              "Per suite set, the configuration with the best mean over the other four, and "
              "its AUROC on the set left out (what a default chosen without that set gives "
              "there):", "", "| set left out | chosen on the others | its AUROC there | "
              f"{EARLIER_DEFAULT} there |", "|---|---|---|---|"]
    for s in IMAGE_SETS:
        others = [t for t in IMAGE_SETS if t != s]
        best = max(configs, key=lambda c: np.mean([mean[(c, t)] for t in others]))
        lines.append(f"| {s} | {best} | {mean[(best, s)]:.3f} | "
                     f"{mean[(EARLIER_DEFAULT, s)]:.3f} |")
    best = ranked[0]
    lines += ["", "## Outcome", "",
              f"- best on the suite: `{best}` (mean {suite[best]:.3f}); the library's default "
              f"is `{NEW_DEFAULT}` (`PretrainedEmbedding()`: `stage=\"auto\"`, "
              "`pooling=\"max\"`, `normalize=True`).",
              f"- on MNIST-5k, held out of the choice: `{NEW_DEFAULT}` "
              f"{mean[(NEW_DEFAULT, MNIST5K)]:.3f} against {mean[(EARLIER_DEFAULT, MNIST5K)]:.3f} "
              f"for `{EARLIER_DEFAULT}`.",
              "- largest loss of the default against the earlier one: {:.3f} ({}).".format(
                  *max((mean[(EARLIER_DEFAULT, s)] - mean[(NEW_DEFAULT, s)], s) for s in sets))]
    save_result(out, "embedding_stages", lines, {"provenance": info, "rows": rows})


def main():
    resumable_main(__doc__, "embedding_stages", run, report)


if __name__ == "__main__":
    main()
