"""MMP's analyses: Proposition 3 on the synthetic roads set, tables 1 and 2 on MNIST-5k.

* roads: ``m`` roads, MMP with ``n = m`` predictors (L_NN + lam L_NP) against a single
  predictor; AUROC on normal samples and anomalies covering [-1, 1]^2; predictions plotted as
  in the paper's fig. 1 (``mmp_roads.png``).
* table 1: participation (predictors with a non-zero share of nearest-neighbour wins in the
  last epoch) and prediction loss (nearest-neighbour MSE on held-out normal test images,
  x 1e3) for 1 predictor, 10 with L_naive, 10 with L_NN (with and without one warm-up epoch
  of L_naive), 10 with L_NN + lam L_NP for lam in {0.01, 0.1, 1, 10}.
* table 2: mean one-class AUROC against the patch size (at 75% masking) and the masking share
  (at the default patch size).

The one-class protocol is that of ``one_class.py`` (stratified 80/20 split of MNIST-5k per
seed, train on one class). Writes ``mmp.md`` and ``mmp.json`` (and the roads plot) to --out.

    python benchmarks/mmp.py                       # everything, seed 0, 10 classes
    python benchmarks/mmp.py --parts roads         # seconds
    python benchmarks/mmp.py --rewrite             # mmp.md from mmp.json, no fitting
    python benchmarks/mmp.py --parts table1 --classes 0 1 --epochs 2   # smoke run
    python benchmarks/mmp.py --parts table1 table2 --epochs 20 --learning-rate 1e-3  # as recorded
"""

import json
import os

import numpy as np

from _common import (Stopwatch, make_estimator, make_parser, provenance,  # noqa: E402
                     provenance_lines, save_result)

from sknovelty.datasets import load_mnist_5k, make_roads, one_class_split  # noqa: E402
from sknovelty.metrics import auroc  # noqa: E402

TABLE1 = [  # (label, n_predictions, loss, warmup_epochs, lam)
    ("v1 (1 pred.)", 1, "nn", 0, 0.0),
    ("v2 (10 pred.) L_naive", 10, "naive", 0, 0.0),
    ("v3 (10 pred.) L_NN", 10, "nn", 0, 0.0),
    ("v4 (10 pred.) L_NN, 1 warm-up epoch", 10, "nn", 1, 0.0),
    ("v5 (10 pred.) L_NN + 0.01 L_NP", 10, "nn_np", 0, 0.01),
    ("v6 (10 pred.) L_NN + 0.1 L_NP", 10, "nn_np", 0, 0.1),
    ("v7 (10 pred.) L_NN + 1 L_NP", 10, "nn_np", 0, 1.0),
    ("v8 (10 pred.) L_NN + 10 L_NP", 10, "nn_np", 0, 10.0),
]
PAPER_TABLE1 = {"v1": ("1/1", 7.04), "v2": ("10/10", 7.29), "v3": ("1/10", 7.09),
                "v4": ("4.4/10", 5.32), "v5": ("10/10", 4.57), "v6": ("10/10", 4.26),
                "v7": ("10/10", 4.42), "v8": ("10/10", 4.52)}
PATCHES = (4, 7, 14)        # 1/8, 1/4, 1/2 of 28 px, as 8, 16, 32 of the paper's 64 px
RATIOS = (0.0, 0.25, 0.5, 0.75)
PAPER_TABLE2 = {"patch": {4: 0.890, 7: 0.940, 14: 0.902},
                "ratio": {0.0: 0.859, 0.25: 0.904, 0.5: 0.913, 0.75: 0.940}}


def roads(args):
    rows, fits = [], {}
    for m in args.roads:
        X, y = make_roads(n_roads=m, n_normal=1000, n_anomalies=2000, random_state=args.seed)
        common = dict(hidden_features=[False, False, True, True], channels=(32, 32), state_dim=16,
                      state_layers=2, epochs=100, batch_size=64, learning_rate=1e-3)
        for label, n, loss in ((f"MMP n={m}, L_NN + 0.1 L_NP", m, "nn_np"),
                               (f"MMP n={m}, L_NN", m, "nn"), ("single prediction", 1, "nn")):
            det = make_estimator("MMP", random_state=args.seed, device=args.device,
                                 n_predictions=n, loss=loss, **common)
            det.fit(X[y == 1])
            score = auroc(y, det.score_samples(X))
            rows.append(dict(roads=m, model=label, auroc=score,
                             participation=[round(float(v), 3) for v in det.participation_]))
            fits[m, label] = (det, X, y)
            print(f"roads m={m} {label:28s} AUROC {score:.4f}", flush=True)
    plot_roads(os.path.join(args.out, "mmp_roads.png"), fits, args.roads)
    return rows


def plot_roads(path, fits, road_counts):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = sorted({label for _, label in fits}, key=lambda s: ("single" in s, s))
    labels = [lab for lab in labels if "L_NP" in lab or "single" in lab]
    fig, axes = plt.subplots(len(road_counts), 2, figsize=(8, 3.6 * len(road_counts)), squeeze=False)
    for i, m in enumerate(road_counts):
        for j, kind in enumerate(("MMP", "single")):
            label = next(lab for lab in fits if lab[0] == m and (kind in lab[1]))[1]
            det, X, y = fits[m, label]
            ax = axes[i, j]
            novelty = -det.score_samples(X)
            sc = ax.scatter(X[y == -1, 2], X[y == -1, 3], c=novelty[y == -1], s=6, cmap="viridis")
            ax.scatter(X[y == 1, 2], X[y == 1, 3], c="tab:blue", s=60, marker="o",
                       label="normal p(t+1)")
            preds = det.predict_all(X[:1])[0]
            ax.scatter(preds[:, 2], preds[:, 3], c="red", s=80, marker="x", label="predictions")
            ax.scatter([0], [0], c="k", s=40, marker="s", label="p(t)")
            ax.set(title=f"{label}: AUROC {auroc(y, det.score_samples(X)):.3f}", xlim=(-1.1, 1.1),
                   ylim=(-1.1, 1.1))
            ax.title.set_fontsize(8)
            fig.colorbar(sc, ax=ax, label="novelty (z-score)")
            if i == 0 and j == 0:
                ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def one_class_runs(args, configs):
    """Fit each config on each class; AUROC, participation and NN loss on test normals."""
    X, y = load_mnist_5k()
    rows = []
    for k in args.classes:
        X_train, X_test, y_test = one_class_split(X, y, k, test_size=0.2, random_state=args.seed)
        for name, params in configs:
            det = make_estimator("MMP", random_state=args.seed, device=args.device,
                                 epochs=args.epochs, **({"learning_rate": args.learning_rate}
                                                        if args.learning_rate else {}), **params)
            with Stopwatch(args.device) as fit:
                det.fit(X_train)
            fit_s = fit.seconds
            with Stopwatch(args.device) as scoring:
                comps = det.score_components(X_test)
            per_s = len(X_test) / scoring.seconds
            mean, std = det.normalization_["nn"]
            score = -(comps["nn"] - mean) / std
            rows.append(dict(config=name, cls=int(k), auroc=auroc(y_test, score),
                             participating=int((det.participation_ > 0).sum()),
                             n_predictions=det.n_predictions,
                             prediction_loss=float(comps["nn"][y_test == 1].mean()),
                             fit_s=fit_s, images_per_s=per_s))
            print(f"class {k} {name:40s} AUROC {rows[-1]['auroc']:.3f} participating "
                  f"{rows[-1]['participating']}/{det.n_predictions} loss "
                  f"{1e3 * rows[-1]['prediction_loss']:.2f}e-3 fit {fit_s:.1f}s", flush=True)
    return rows


def _mean(rows, config, key):
    return float(np.mean([r[key] for r in rows if r["config"] == config]))


def _run_lines(info):
    return [f"Run: `{info['command']}` ({info['date']}; {info['machine']}; seed {info['seed']}"
            + (f"; MNIST classes {info['classes']}, epochs {info['epochs'] or 'estimator default'}"
               f", learning rate {info.get('learning_rate') or 'estimator default'}"
               if info.get("classes") is not None else "") + ")."
            + (f" Note: {info['note']}" if info.get("note") else ""), ""]


def write(args, results, infos):
    """Write mmp.md/json. ``infos`` maps each part to the provenance of the run that made it."""
    latest = max(infos.values(), key=lambda i: i["date"])
    lines = ["# MMP analyses (roads, MNIST-5k tables 1 and 2)", "", *provenance_lines(latest),
             "- each section names the run that produced it (parts not rerun are kept from the "
             "previous result file)", ""]
    if "roads" in results:
        lines += ["## Proposition 3 on the roads set", "", *_run_lines(infos["roads"]),
                  "1,000 normal samples (train on them), 2,000 anomalies uniform in [-1, 1]^2; "
                  "the future position (last two features) is masked. Plot: `mmp_roads.png`.", "",
                  "| roads m | model | AUROC | participation |", "|---|---|---|---|"]
        for r in results["roads"]:
            lines.append(f"| {r['roads']} | {r['model']} | {r['auroc']:.4f} | "
                         f"[{', '.join(f'{v:.3f}' for v in r['participation'])}] |")
    if "table1" in results:
        rows = results["table1"]
        lines += ["", "## Table 1: influence of the training loss", "", *_run_lines(infos["table1"]),
                  "Participation: predictors with a non-zero share of nearest-neighbour wins in the "
                  "last epoch, mean over classes. Prediction loss: nearest-neighbour MSE per pixel "
                  "(inputs in [0, 1]) on the held-out normal test images, x 1e3, mean over classes.",
                  "", "| variant | participation | prediction loss (x1e3) | AUROC | paper participation "
                  "| paper loss |", "|---|---|---|---|---|---|"]
        for label, n, *_ in TABLE1:
            key = label.split(" ")[0]
            lines.append(f"| {label} | {_mean(rows, label, 'participating'):.1f}/{n} | "
                         f"{1e3 * _mean(rows, label, 'prediction_loss'):.2f} | "
                         f"{_mean(rows, label, 'auroc'):.3f} | {PAPER_TABLE1[key][0]} | "
                         f"{PAPER_TABLE1[key][1]} |")
    if "table2" in results:
        rows = results["table2"]
        lines += ["", "## Table 2: influence of masking (mean AUROC over classes)", "",
                  *_run_lines(infos["table2"]),
                  "| patch size (75% masked) | AUROC | paper (patch scaled from 64 px) |", "|---|---|---|"]
        for p in PATCHES:
            lines.append(f"| {p}x{p} | {_mean(rows, f'patch {p}, 75%', 'auroc'):.3f} | "
                         f"{PAPER_TABLE2['patch'][p]:.3f} |")
        lines += ["", "| masked share (patch 7) | AUROC | paper |", "|---|---|---|"]
        for r in RATIOS:
            lines.append(f"| {int(100 * r)}% | {_mean(rows, f'patch 7, {int(100 * r)}%', 'auroc'):.3f} | "
                         f"{PAPER_TABLE2['ratio'][r]:.3f} |")
    timed = [r for part in ("table1", "table2") for r in results.get(part, [])]
    if timed:
        lines += ["", f"Fit seconds per class (mean over all MNIST fits above): "
                  f"{np.mean([r['fit_s'] for r in timed]):.1f}; scoring "
                  f"{np.mean([r['images_per_s'] for r in timed]):.0f} images/s."]
    save_result(args.out, "mmp", lines, {"infos": infos, **results})


def main(argv=None):
    parser = make_parser(__doc__, classes=range(10), epochs=True)
    parser.add_argument("--parts", nargs="+", default=["roads", "table1", "table2"],
                        choices=["roads", "table1", "table2"])
    parser.add_argument("--roads", type=int, nargs="+", default=[2, 3, 5])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--rewrite", action="store_true",
                        help="fit nothing: rebuild mmp.md from mmp.json")
    args = parser.parse_args(argv)
    if args.rewrite:
        if not os.path.exists(os.path.join(args.out, "mmp.json")):
            parser.error(f"--rewrite needs {os.path.join(args.out, 'mmp.json')}")
        args.parts = []
    os.makedirs(args.out, exist_ok=True)
    results, infos = {}, {}
    path = os.path.join(args.out, "mmp.json")
    if os.path.exists(path):  # keep the parts not rerun now
        with open(path) as f:
            old = json.load(f)
        for part in ("roads", "table1", "table2"):
            if part in old and part not in args.parts:
                results[part] = old[part]
                infos[part] = old.get("infos", {}).get(part) or {"seed": 0, **old["info"]}
    info = dict(provenance(args), seed=args.seed, classes=None, epochs=args.epochs,
                learning_rate=args.learning_rate)
    for part in args.parts:
        infos[part] = info if part == "roads" else dict(info, classes=list(args.classes))
    if "roads" in args.parts:
        results["roads"] = roads(args)
    if "table1" in args.parts:
        configs = [(label, dict(n_predictions=n, loss=loss, warmup_epochs=w, lam=lam))
                   for label, n, loss, w, lam in TABLE1]
        results["table1"] = one_class_runs(args, configs)
    if "table2" in args.parts:
        configs = [(f"patch {p}, 75%", dict(patch_size=p, mask_ratio=0.75)) for p in PATCHES]
        configs += [(f"patch 7, {int(100 * r)}%", dict(patch_size=7, mask_ratio=r))
                    for r in RATIOS if r != 0.75]
        results["table2"] = one_class_runs(args, configs)
        # the 75% row of the masking table is the "patch 7, 75%" model of the patch table
    write(args, results, infos)


if __name__ == "__main__":
    main()
