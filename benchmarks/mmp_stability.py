"""MMP training stability: learning rate x epochs x batch size, on one-class MNIST-5k, many seeds.

    python benchmarks/mmp_stability.py --device cuda --jobs 8 --seeds 0 1 2 3 4
    python benchmarks/mmp_stability.py --smoke --out /tmp/x          # 1 epoch, 2 classes, CPU
    python benchmarks/mmp_stability.py --rewrite results/mmp_stability.jsonl

At the old default (learning rate 1e-3, 60 epochs, batch 64) some seeds' fits collapse: the
decoder's ReLUs die and every prediction becomes one constant image (issue 5). This script fits
each configuration in ``CONFIGS`` on every (seed, class) of the one-class protocol of
``one_class.py`` (same split, same ``random_state``) and counts collapses (fits that raise
``TrainingDivergedError``) next to the AUROC of the others; a fit that fails otherwise is
listed with its error. ``--jobs`` runs fits in parallel processes (each with one CPU
thread): on a GPU the fits are launch-bound, so several processes share the card well. Each finished fit is appended to ``mmp_stability.jsonl`` at once, so a run
cut short keeps what it did (``--time-limit`` stops the fits still running); ``--rewrite``
builds the table from that file.
"""

import json
import os
import time
from multiprocessing import TimeoutError as PoolTimeout
from multiprocessing import get_context

import numpy as np

from _common import Stopwatch, make_estimator, make_parser, provenance, provenance_lines  # noqa: E402

# name -> MaskedMultiPredictionDetector keywords (everything else at its default)
CONFIGS = {
    "lr 1e-3, 60 ep, b64": dict(learning_rate=1e-3, epochs=60, batch_size=64),
    "lr 3e-4, 60 ep, b64": dict(learning_rate=3e-4, epochs=60, batch_size=64),
    "lr 3e-4, 120 ep, b64": dict(learning_rate=3e-4, epochs=120, batch_size=64),
    "lr 1e-4, 200 ep, b128 (paper B.3)": dict(learning_rate=1e-4, epochs=200, batch_size=128),
}


def fit_task(task):
    """``fit_one`` in a worker; an unexpected error (e.g. CUDA out of memory) becomes a row."""
    config, seed, cls, device, smoke = task
    try:
        return fit_one(config, seed, cls, device, smoke)
    except Exception as err:  # noqa: BLE001 - recorded, the other fits go on
        return dict(config=config, seed=seed, cls=cls, device=device, collapsed=False,
                    failed=f"{type(err).__name__}: {err}"[:300], fit_s=float("nan"))


def fit_one(config, seed, cls, device, smoke):
    import torch

    torch.set_num_threads(1)
    from sknovelty import TrainingDivergedError
    from sknovelty.datasets import load_mnist_5k, one_class_split
    from sknovelty.metrics import auroc

    X, y = load_mnist_5k()
    X_train, X_test, y_test = one_class_split(X, y, cls, test_size=0.2, random_state=seed)
    params = {**CONFIGS[config], **({"epochs": 1} if smoke else {})}
    det = make_estimator("MMP", random_state=seed, device=device, **params)
    row = dict(config=config, seed=seed, cls=cls, device=device, **params)
    try:
        with Stopwatch(device) as fit:
            det.fit(X_train)
    except TrainingDivergedError as err:
        return {**row, "collapsed": True, "error": str(err)[:200], "fit_s": fit.seconds}
    fit_s = fit.seconds
    h = det.net_.history
    return {**row, "collapsed": False, "fit_s": fit_s, "auroc": auroc(y_test, det.score_samples(X_test)),
            "train_loss": float(h[-1, "train_loss"]),
            "participating": int((det.participation_ >= det.delta).sum())}


def table(rows, prov, planned, time_limit_reached=False):
    failed = [r for r in rows if r.get("failed")]
    rows = [r for r in rows if not r.get("failed")]
    ok_pairs = {c: {(r["seed"], r["cls"]) for r in rows if r["config"] == c and not r["collapsed"]}
                for c in {r["config"] for r in rows}}
    common = set.intersection(*ok_pairs.values()) if ok_pairs else set()
    lines = ["# MMP training stability on one-class MNIST-5k", "", *provenance_lines(prov),
             f"- finished fits: {len(rows)} of {planned} planned"
             + (" (the run's --time-limit stopped the rest)" if time_limit_reached else "")
             + (f"; {len(failed)} failed with an error (listed below)" if failed else ""),
             f"- 'common pairs': the {len(common)} (seed, class) pairs that every configuration "
             "finished without collapse; compare configurations on that column (the plain mean "
             "covers different pairs per configuration when a run is cut short).",
             "- protocol: as `one_class.py` (class k normal, test split 0.2, `random_state` = "
             "seed); all other MMP settings at their defaults. A collapse is a fit that raised "
             "`TrainingDivergedError` (constant predictions); its AUROC is not counted. Fit "
             "seconds are wall time while `--jobs` fits shared the machine, not single-fit "
             "timings.", "",
             "| configuration | fits | collapses | mean AUROC (non-collapsed) | mean AUROC, common "
             "pairs | per-seed means | worst class | median fit s | median final loss |",
             "|---" * 9 + "|"]
    for config in CONFIGS:
        rs = [r for r in rows if r["config"] == config]
        if not rs:
            continue
        ok = [r for r in rs if not r["collapsed"]]
        seeds = sorted({r["seed"] for r in rs})
        per_seed = []
        for s in seeds:
            a = [r["auroc"] for r in ok if r["seed"] == s]
            per_seed.append(f"{s}: {np.mean(a):.3f} ({len(a)})" if a else f"{s}: -")
        worst = min(ok, key=lambda r: r["auroc"]) if ok else None
        lines.append(
            f"| {config} | {len(rs)} | {sum(r['collapsed'] for r in rs)} | "
            f"{np.mean([r['auroc'] for r in ok]):.3f} | "
            f"{np.mean([r['auroc'] for r in ok if (r['seed'], r['cls']) in common]):.3f} | "
            f"{'; '.join(per_seed)} | "
            + (f"{worst['auroc']:.3f} (seed {worst['seed']}, class {worst['cls']})" if worst else "-")
            + f" | {np.median([r['fit_s'] for r in rs]):.1f} | "
            f"{np.median([r['train_loss'] for r in ok]) if ok else float('nan'):.4f} |")
    collapsed = [r for r in rows if r["collapsed"]]
    if collapsed:
        lines += ["", "Collapsed fits: " + ", ".join(
            f"{r['config']} seed {r['seed']} class {r['cls']}" for r in collapsed)]
    if failed:
        lines += ["", "Failed fits: " + "; ".join(
            f"{r['config']} seed {r['seed']} class {r['cls']}: {r['failed']}" for r in failed)]
    return lines


def main(argv=None):
    parser = make_parser(__doc__, seeds=[0, 1, 2], classes=range(10), device="cpu")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--time-limit", type=float, default=None,
                        help="seconds; stop waiting for fits after this and write what finished")
    parser.add_argument("--smoke", action="store_true", help="1 epoch, classes 0-1")
    parser.add_argument("--rewrite", default=None, help="a .jsonl of an earlier run: table only")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    md = os.path.join(args.out, "mmp_stability.md")
    if args.rewrite:
        with open(args.rewrite) as f:
            first, *rows = [json.loads(line) for line in f]
        end = rows.pop() if rows and "end" in rows[-1] else {"end": {}}
        with open(md, "w") as f:
            f.write("\n".join(table(rows, first["provenance"], first["planned"],
                                     end["end"].get("time_limit_reached", False))) + "\n")
        return
    classes = [0, 1] if args.smoke else args.classes
    tasks = [(c, s, k) for s in args.seeds for k in classes for c in args.configs]
    jsonl = os.path.join(args.out, "mmp_stability.jsonl")
    prov = provenance(args)
    rows, reached = [], False
    deadline = time.time() + args.time_limit if args.time_limit else None
    pool = get_context("spawn").Pool(args.jobs)
    with open(jsonl, "w") as f:
        f.write(json.dumps({"provenance": prov, "planned": len(tasks)}) + "\n")
        results = pool.imap_unordered(fit_task, [(*t, args.device, args.smoke) for t in tasks])
        try:
            for _ in tasks:
                row = results.next(timeout=None if deadline is None
                                   else max(deadline - time.time(), 0.1))
                rows.append(row)
                f.write(json.dumps(row) + "\n")
                f.flush()
                print(len(rows), "/", len(tasks), {k: row.get(k) for k in
                      ("config", "seed", "cls", "collapsed", "failed", "auroc", "fit_s")},
                      flush=True)
        except PoolTimeout:
            reached = True
            print(f"time limit: {len(rows)} of {len(tasks)} fits finished", flush=True)
        finally:
            pool.terminate()  # fits still running are stopped, not waited for
            pool.join()
        f.write(json.dumps({"end": {"time_limit_reached": reached}}) + "\n")
    lines = table(rows, prov, len(tasks), reached)
    with open(md, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
