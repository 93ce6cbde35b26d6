"""Why LSA's novelty score NS can fall below its REC term on MNIST-5k (issue 18), measured.

For each class and seed of the one-class protocol (``one_class.py``'s split), LSA is fitted at
its defaults (or with ``--lam``), and:

* **per epoch** (every ``--probe-every`` epochs, in eval mode, without touching the training):
  the mean latent NLL of the training rows and of the held-out rows, the code occupancy (median
  over latent dimensions of the number of the B bins that the training codes fall in), and the
  test AUROC of REC, LLK and NS (NS with min-max constants from the held-out rows, as fit did
  until ``normalize_on="train"`` became the default);
* **after the fit**, on the same model (no retraining of the autoencoder):
  - the NS constants: min-max (eq. 10) or z-scores, from the ~40 held-out rows or from the
    ~360 training rows;
  - a **second phase** that refits the estimator h alone on the frozen eval-mode codes of the
    training rows (Adam, lr 1e-3, batch 64, early stopping on the held-out rows' NLL,
    patience 8, at most ``--max-h-epochs``), for every B in ``--bins`` and width in
    ``--widths`` (MFC channels (w, w, w, w)), and at the default size (B 100, width 32):
    the estimator's resolution against ~360 codes, and its training, without the encoder
    moving. (Width 32 costs ~1 s per epoch on one core: the grid keeps it to one size.) Its LLK replaces the jointly trained one in NS.

Every row of the result file is one (class, seed, variant) with the AUROC of REC, LLK and NS;
the summary averages over classes and seeds. Selection protocol: a variant is chosen by the
held-out rows' NLL as a density (NLL - d log B, comparable across B; lower is better), or by
the mean AUROC across all classes (never per class); the file reports both.

    python benchmarks/lsa_diagnosis.py --seeds 0          # 10 classes, ~45 min on 2 cores
    python benchmarks/lsa_diagnosis.py --seeds 1 2 --bins --no-default-h --merge  # NS only
    python benchmarks/lsa_diagnosis.py --seeds 0 --lam 3 --tag lam3 --merge   # full refits
    python benchmarks/lsa_diagnosis.py --seeds 0 --llk-target interpolated --tag interpolated \
        --bins --no-default-h --merge     # the differentiable LLK (a departure), no phase 2
    python benchmarks/lsa_diagnosis.py --seeds 0 --cpd logistic_mixture --tag "logistic mixture" \
        --bins --no-default-h --probe-every 50 --merge    # CPDs that tie neighbouring bins
    python benchmarks/lsa_diagnosis.py --seeds 0 --classes 0 1 2 3 --train-fraction 0.5 \
        --tag "half the rows" --bins --no-default-h --merge   # the LLK against the data size
    python benchmarks/lsa_diagnosis.py --seeds 0 --n-bins 10 --tag "B 10, joint" \
        --bins --no-default-h --probe-every 50 --merge     # fewer bins, trained jointly

Run it alone on the machine: it reports no timings, but torch's results depend on the number
of threads (``--n-jobs``, default 1 so that the rows repeat on any machine with the same CPU).
"""

import argparse
import copy
import json
import math
import os

import numpy as np
import torch
from skorch.callbacks import Callback

from _common import make_parser, provenance, provenance_lines, save_result  # noqa: E402

from sknovelty import LatentAutoregressiveDetector  # noqa: E402
from sknovelty.datasets import load_mnist_5k, one_class_split  # noqa: E402
from sknovelty.lsa import latent_nll, quantize  # noqa: E402
from sknovelty.metrics import auroc  # noqa: E402
from sknovelty.nn.autoregressive import AutoregressiveEstimator  # noqa: E402

STEM = "lsa_diagnosis"


def held_out_split(det, n):
    """The training / held-out row indices that ``fit`` used (the same seeded permutation)."""
    seed = int(np.random.RandomState(det.random_state).randint(np.iinfo(np.int32).max))
    order = np.random.RandomState(seed).permutation(n)
    n_val = math.ceil(det.validation_fraction * n)
    return order[n_val:], order[:n_val]


def minmax(values, reference):
    lo, hi = reference.min(), reference.max()
    return (values - lo) / (hi - lo if hi > lo else 1.0)


def zscore(values, reference):
    return (values - reference.mean()) / (reference.std() or 1.0)


@torch.inference_mode()
def terms(module, X, chunk=256, target="bin"):
    """REC, LLK (nats; ``target`` as in ``latent_nll``) and the codes z of X under ``module``
    in eval mode."""
    was_training = module.training
    module.eval()
    rec, llk, codes = [], [], []
    device = next(module.parameters()).device
    for start in range(0, len(X), chunk):
        xb = torch.from_numpy(X[start:start + chunk]).to(device)
        x_rec, z, logits = module(xb)
        rec.append((xb - x_rec).square().flatten(1).sum(1).double().cpu())
        llk.append(latent_nll(logits, z, target).double().cpu())
        codes.append(z.cpu())
    module.train(was_training)
    return torch.cat(rec).numpy(), torch.cat(llk).numpy(), torch.cat(codes)


def occupancy(codes, n_bins):
    """Median over latent dimensions of the number of bins the codes occupy."""
    bins = quantize(codes, n_bins)
    return float(np.median([len(torch.unique(bins[:, i])) for i in range(bins.shape[1])]))


def aurocs(y_test, rec, llk, rec_ref, llk_ref, scale=minmax):
    ns = scale(rec, rec_ref) + scale(llk, llk_ref)
    return {"rec": auroc(y_test, -rec), "llk": auroc(y_test, -llk), "ns": auroc(y_test, -ns)}


class EpochProbe(Callback):
    """Every ``every`` epochs: NLL of training and held-out rows, occupancy, test AUROCs."""

    def __init__(self, X_train, X_val, X_test, y_test, n_bins, every, target="bin"):
        self.data = X_train, X_val, X_test, y_test
        self.target = target
        self.n_bins, self.every, self.rows = n_bins, every, []

    def on_epoch_end(self, net, **kwargs):
        epoch = len(net.history)
        if epoch % self.every and epoch != net.max_epochs:
            return
        X_train, X_val, X_test, y_test = self.data
        _, llk_tr, codes = terms(net.module_, X_train, target=self.target)
        rec_val, llk_val, _ = terms(net.module_, X_val, target=self.target)
        rec_te, llk_te, _ = terms(net.module_, X_test, target=self.target)
        self.rows.append({"epoch": epoch, "nll_train": float(llk_tr.mean()),
                          "nll_val": float(llk_val.mean()),
                          "occupancy": occupancy(codes, self.n_bins),
                          **aurocs(y_test, rec_te, llk_te, rec_val, llk_val)})


def refit_estimator(Z_train, Z_val, n_bins, width, seed, max_epochs, patience=8):
    """A fresh estimator h trained on frozen codes, early-stopped on the held-out codes' NLL."""
    torch.manual_seed(seed)
    h = AutoregressiveEstimator(Z_train.shape[1], (width,) * 4, n_bins)
    opt = torch.optim.Adam(h.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    best, state, bad, epochs = math.inf, None, 0, 0
    for epochs in range(1, max_epochs + 1):
        h.train()
        for idx in torch.randperm(len(Z_train), generator=gen).split(64):
            z = Z_train[idx]
            loss = latent_nll(h(z), z).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        h.eval()
        with torch.no_grad():
            val = float(latent_nll(h(Z_val), Z_val).mean())
        if val < best - 1e-4:
            best, state, bad = val, copy.deepcopy(h.state_dict()), 0
        else:
            bad += 1
            if bad >= patience:
                break
    h.load_state_dict(state)
    h.eval()
    return h, best, epochs


def run_one(X, y, k, seed, args):
    X_train, X_test, y_test = one_class_split(X, y, k, test_size=0.2, random_state=seed)
    if args.train_fraction < 1:  # fewer training codes for the estimator (a seeded subset)
        keep = np.random.RandomState(seed).permutation(len(X_train))
        X_train = X_train[np.sort(keep[:round(args.train_fraction * len(X_train))])]
    # batch 64, the default when these rows were written (now "auto", which keeps 64 on
    # the full ~360 rows but would take 27 on --train-fraction 0.5)
    det = LatentAutoregressiveDetector(lam=args.lam, n_bins=args.n_bins,
                                       llk_target=args.llk_target, batch_size=64,
                                       cpd=args.cpd, cpd_components=args.cpd_components,
                                       random_state=seed, device="cpu", n_jobs=args.n_jobs)
    if args.epochs:
        det.set_params(epochs=args.epochs)
    tr, va = held_out_split(det, len(X_train))
    probe = EpochProbe(X_train[tr], X_train[va], X_test, y_test, det.n_bins, args.probe_every,
                       args.llk_target)
    det.set_params(callbacks=[("probe", probe)]).fit(X_train)
    base = {"class": k, "seed": seed, "lam": args.lam, "n_bins": det.n_bins,
            "epochs": det.epochs, "tag": args.tag,
            "llk_target": args.llk_target, "n_train": len(X_train),
            **({"cpd": args.cpd, "cpd_components": args.cpd_components}
               if args.cpd != "categorical" else {})}
    probe = dict(det.net_.callbacks_)["probe"]  # fit works on a copy of the callbacks
    rows = [{**base, "variant": f"epoch {r['epoch']}", **r} for r in probe.rows]

    module = det.net_.module_
    rec_tr, llk_tr, Z_tr = terms(module, X_train[tr], target=args.llk_target)
    rec_va, llk_va, Z_va = terms(module, X_train[va], target=args.llk_target)
    rec_te, llk_te, Z_te = terms(module, X_test, target=args.llk_target)
    d = Z_tr.shape[1]
    density = lambda nll, B: float(nll) - d * math.log(B)  # noqa: E731 (NLL of the density)
    for name, scale, ref in (("NS minmax held-out (former default)", minmax, "va"),
                             ("NS zscore held-out", zscore, "va"),
                             ("NS minmax train rows (default)", minmax, "tr"),
                             ("NS zscore train rows", zscore, "tr")):
        rec_ref, llk_ref = (rec_va, llk_va) if ref == "va" else (rec_tr, llk_tr)
        rows.append({**base, "variant": name, "nll_val": float(llk_va.mean()),
                     "nll_val_density": density(llk_va.mean(), det.n_bins),
                     "occupancy": occupancy(Z_tr, det.n_bins),
                     **aurocs(y_test, rec_te, llk_te, rec_ref, llk_ref, scale)})
    if args.llk_target == "bin":
        # the same fitted model, its LLK read as the piecewise-linear density at scoring only
        # (latent_nll(..., "interpolated")): smoothing the histogram without retraining
        llk_i = {n: terms(module, X_part, target="interpolated")[1]
                 for n, X_part in (("va", X_train[va]), ("te", X_test))}
        rows.append({**base, "variant": "NS, LLK read interpolated (scoring only)",
                     "nll_val": float(llk_i["va"].mean()),
                     "occupancy": occupancy(Z_tr, det.n_bins),
                     **aurocs(y_test, rec_te, llk_i["te"], rec_va, llk_i["va"])})
    configs = [(B, w) for B in args.bins for w in args.widths]
    if args.default_h and (det.n_bins, 32) not in configs:
        configs.append((det.n_bins, 32))  # the jointly trained estimator's own size
    for B, width in configs:
        h, best, epochs = refit_estimator(Z_tr, Z_va, B, width, seed, args.max_h_epochs)
        with torch.no_grad():
            llk2 = {n: latent_nll(h(Z), Z).double().numpy()
                    for n, Z in (("tr", Z_tr), ("va", Z_va), ("te", Z_te))}
        rows.append({**base, "variant": f"phase 2: B {B}, width {width}",
                     "nll_train": float(llk2["tr"].mean()), "nll_val": best,
                     "nll_val_density": density(best, B), "h_epochs": epochs,
                     "occupancy": occupancy(Z_tr, B),
                     **aurocs(y_test, rec_te, llk2["te"], rec_va, llk2["va"])})
        print(f"  class {k} seed {seed} phase 2 B {B} width {width}: {epochs} epochs, "
              f"LLK {rows[-1]['llk']:.3f} NS {rows[-1]['ns']:.3f}", flush=True)
    print(f"class {k} seed {seed}: " + "; ".join(
        f"{r['variant']}: NS {r['ns']:.3f} REC {r['rec']:.3f} LLK {r['llk']:.3f}"
        for r in rows if not r["variant"].startswith("epoch")), flush=True)
    return rows


def summary(rows):
    """Mean AUROCs per (tag, variant) over the classes and seeds it has, with counts."""
    groups = {}
    for r in rows:
        groups.setdefault((r["tag"], r["variant"]), []).append(r)
    lines = ["| run | variant | runs | NS | REC | LLK | NS - REC | held-out NLL (density) | "
             "occupancy |", "|---|---|---|---|---|---|---|---|---|"]
    for (tag, variant), group in sorted(groups.items(), key=lambda g: (g[0][0], _order(g[0][1]))):
        mean = {key: np.mean([r[key] for r in group]) for key in ("ns", "rec", "llk")}
        dens = [r.get("nll_val_density") for r in group if r.get("nll_val_density") is not None]
        occ = np.mean([r["occupancy"] for r in group])
        lines.append(f"| {tag} | {variant} | {len(group)} | {mean['ns']:.4f} | "
                     f"{mean['rec']:.4f} | {mean['llk']:.4f} | {mean['ns'] - mean['rec']:+.4f} | "
                     f"{np.mean(dens):.1f} | {occ:.0f} |" if dens else
                     f"| {tag} | {variant} | {len(group)} | {mean['ns']:.4f} | "
                     f"{mean['rec']:.4f} | {mean['llk']:.4f} | {mean['ns'] - mean['rec']:+.4f} | "
                     f"- | {occ:.0f} |")
    return lines


def _order(variant):
    if variant.startswith("epoch"):
        return (0, int(variant.split()[1]), variant)
    return (1 if variant.startswith("NS") else 2, 0, variant)


def main():
    p = make_parser(__doc__, seeds=[0], classes=range(10), epochs=True)
    p.add_argument("--lam", type=float, default=1.0)
    p.add_argument("--n-bins", type=int, default=100,
                   help="B of the jointly trained model (LatentAutoregressiveDetector's n_bins)")
    p.add_argument("--tag", default="defaults", help="name of this run in the tables")
    p.add_argument("--llk-target", default="bin", choices=["bin", "interpolated"],
                   help="the LLK's form (LatentAutoregressiveDetector's llk_target)")
    p.add_argument("--cpd", default="categorical", choices=["categorical", "logistic_mixture"],
                   help="the estimator's CPD (LatentAutoregressiveDetector's cpd)")
    p.add_argument("--cpd-components", type=int, default=5)
    p.add_argument("--bins", type=int, nargs="*", default=[10, 20, 100])
    p.add_argument("--widths", type=int, nargs="+", default=[8])
    p.add_argument("--default-h", action=argparse.BooleanOptionalAction, default=True,
                   help="also refit an estimator of the default size (B 100, width 32)")
    p.add_argument("--max-h-epochs", type=int, default=60)
    p.add_argument("--probe-every", type=int, default=10)
    p.add_argument("--n-jobs", type=int, default=1)
    p.add_argument("--train-fraction", type=float, default=1.0,
                   help="train on this share of the class's training rows (seeded): does the "
                        "LLK depend on the number of training codes?")
    p.add_argument("--merge", action="store_true", help="add to the rows already in the file")
    p.add_argument("--combine", nargs="+", default=None, metavar="JSON",
                   help="run nothing: merge these result files (e.g. of runs on several "
                        "cores) into the one in --out")
    args = p.parse_args()
    path = os.path.join(args.out, STEM + ".json")
    # --combine merges into the file in --out, as its help says (it used to need --merge too,
    # and without it silently dropped the rows already there)
    keep = (args.merge or args.combine) and os.path.exists(path)
    old = json.load(open(path)) if keep else {"rows": [], "runs": []}
    notes = old.get("notes", [])  # written by hand, kept through merges
    if args.combine:
        rows, runs = old["rows"], old["runs"]
        for other in args.combine:  # a later file's (tag, seed, class) replaces an earlier one's
            other = json.load(open(other))
            done = {(r["tag"], r["seed"], r["class"]) for r in other["rows"]}
            rows = [r for r in rows if (r["tag"], r["seed"], r["class"]) not in done]
            rows = rows + other["rows"]
            runs = runs + [run for run in other["runs"] if run not in runs]
    else:
        X, y = load_mnist_5k()
        rows = [r for r in old["rows"] if not (r["tag"] == args.tag and r["seed"] in args.seeds
                                               and r["class"] in args.classes)]
        torch.set_num_threads(args.n_jobs)  # the probes and the refits too, not only fit
        runs = old["runs"] + [provenance(args)]
        for seed in args.seeds:
            for k in args.classes:
                rows += run_one(X, y, k, seed, args)
                write(args.out, rows, runs, notes)  # after every class: a stopped run keeps its rows
        return
    write(args.out, rows, runs, notes)


#: variant names of rows written before ``normalize_on="train"`` became LSA's default
RENAMED = {"NS minmax held-out (default)": "NS minmax held-out (former default)",
           "NS minmax train rows": "NS minmax train rows (default)"}


def write(out, rows, runs, notes=()):
    rows = [{**r, "variant": RENAMED.get(r["variant"], r["variant"])} for r in rows]
    lines = ["# LSA diagnosis: NS vs REC vs LLK (issue 18)", "",
             "Rows: mean test AUROC over the (class, seed) pairs each run has; 'epoch k' rows "
             "are the jointly trained model after k epochs; 'NS ...' rows rescale the final "
             "model's terms differently; 'phase 2' rows refit the estimator alone on the final "
             "frozen codes. Selection: by the held-out NLL as a density, or by the mean across "
             "classes, never per class. See the script's docstring for the protocol.", "",
             *summary(rows), "", "## Runs", ""]
    for run in runs:
        lines += provenance_lines(run) + [""]
    lines += list(notes)
    save_result(out, STEM, lines, {"rows": rows, "runs": runs, "notes": list(notes)})


if __name__ == "__main__":
    main()
