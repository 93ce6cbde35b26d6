"""Where pretrained features meet the pixel-space detectors, and where they stop short.

On three image sets of the robustness suite a detector of the pixels beats nearest neighbours
on ``PretrainedEmbedding``'s default features: mnist-0 (LTG), digits-3 (nearest neighbours
of the pixels) and textures (the flow's likelihood). This script measures, per suite image
set and seed, the embedding pipelines that could close the gap:

* ``kNN, S px``: ``PretrainedEmbedding(input_size=S)`` (the default features: every stage,
  max-pooled, each scaled to unit length) and ``NearestNeighborDetector`` (the library's
  DN2 pipeline), at S = 64, 128 (the default) and 224;
* ``Gaussian, S px``: the same features and one Gaussian fitted to them with a Ledoit-Wolf
  shrunk covariance, scored by the Mahalanobis distance (Rippel, Mertens and Merhof,
  "Modeling the Distribution of Normal Data in Pre-Trained Deep Features for Anomaly
  Detection", ICPR 2020, who fit such a Gaussian to EfficientNet features). Computed here
  through the training rows' Gram matrix (the covariance has more dimensions than there
  are training images); the script first checks it against scikit-learn's ``LedoitWolf``;
* ``patch kNN, 128 px``: the maps of stages 3 and 4 (16 x 16 and 8 x 8 locations at
  128 px), each averaged over 3 x 3 neighbourhoods, stage 4 brought to stage 3's grid, each
  location's vector of each stage scaled to unit length; a test image scores the largest,
  over its locations, distance to the nearest of 8,192 training locations drawn at random
  (a memory bank as in PatchCore: Roth et al., CVPR 2022, without its coreset selection);
* ``kNN on embedding + pixels, 128 px``: the default features beside the centred pixels
  scaled to unit length (a tenth block), then ``NearestNeighborDetector``.

Only ``kNN, S px`` is a library pipeline; the Gaussian and the patch memory bank are written
in this script to measure whether such detectors would close the gap. The memory bank has
since become a library pipeline, with PatchCore's coreset in place of the random draw:
``PretrainedEmbedding(stage=[3, 4], pooling="local")`` then
``PatchwiseDetector(NearestNeighborDetector(n_neighbors=1, max_samples=0.1), patch_size=1)``,
row ``Embedding patch kNN`` of ``robustness.md``. Nothing is chosen on these test labels:
the table reports each pipeline on each set beside the best pixel-space score of
``robustness.json`` (methods on the pixels only).

Rows are appended to ``embedding_gap.jsonl`` as each (set, seed) finishes (a stopped run
resumes); ``--report`` rewrites ``embedding_gap.{md,json}`` from them.

    python benchmarks/embedding_gap.py                 # seeds 0 1 2, then the report
    python benchmarks/embedding_gap.py --report
"""


import numpy as np
import torch
import torch.nn.functional as F
from _common import (append_jsonl, pending, provenance_lines, resumable_main,
                     save_result)
from embedding import IMAGE_SETS, _best_pixel, pixel_cell, pixel_row
from embedding_stages import unit

from sknovelty import NearestNeighborDetector, PretrainedEmbedding
from sknovelty.datasets import load_suite_task
from sknovelty.features import _stage_maps
from sknovelty.metrics import auroc

SIZES = (64, 128, 224)
PATCH_STAGES = (3, 4)
PATCH_BANK = 8192


def ledoit_wolf_mahalanobis(X, Z):
    """Squared Mahalanobis distances of the rows of ``Z`` to the Gaussian of the rows of
    ``X`` with the Ledoit-Wolf shrunk covariance ``(1 - a) S + a mu I`` (scikit-learn's
    ``LedoitWolf``: ``S`` the biased sample covariance, ``mu`` its mean eigenvalue), in
    float64 through the ``n x n`` Gram matrix of the centred rows (Woodbury's identity)."""
    X, Z = np.asarray(X, np.float64), np.asarray(Z, np.float64)
    n, d = X.shape
    centre = X.mean(axis=0)
    Xc, Zc = X - centre, Z - centre
    G = Xc @ Xc.T
    trace = np.trace(G) / n
    mu = max(trace / d, 1e-300)
    sq_frobenius = (G ** 2).sum() / n ** 2          # |S|_F^2
    delta = sq_frobenius - 2 * mu * trace + d * mu ** 2   # |S - mu I|_F^2
    beta = ((np.diag(G) ** 2).sum() - 2 * (G ** 2).sum() / n + n * sq_frobenius) / n ** 2
    shrink = min(beta, delta) / delta if delta > 0 else 1.0
    lam, c = shrink * mu, (1 - shrink) / n
    P = Zc @ Xc.T
    inner = np.linalg.solve(lam * np.eye(n) + c * G, P.T).T
    return ((Zc ** 2).sum(axis=1) - c * (P * inner).sum(axis=1)) / lam


def check_mahalanobis():
    """The Gram-matrix form equals scikit-learn's ``LedoitWolf().mahalanobis`` (float64
    arithmetic in a different order: relative 1e-8)."""
    from sklearn.covariance import LedoitWolf
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 60)) @ rng.normal(size=(60, 60))
    Z = rng.normal(size=(9, 60))
    np.testing.assert_allclose(ledoit_wolf_mahalanobis(X, Z),
                               LedoitWolf().fit(X).mahalanobis(Z), rtol=1e-8)


def patch_maps(emb, X, batch=64):
    """``(n, h, w, c)`` unit-length local features of stages 3 and 4 (see the docstring)."""
    out = []
    X = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    with torch.inference_mode():
        for start in range(0, len(X), batch):
            maps = _stage_maps(emb.backbone_, emb._preprocess(X[start:start + batch]),
                               PATCH_STAGES)
            grid = maps[0].shape[-2:]
            blocks = []
            for m in maps:
                m = F.avg_pool2d(m.float(), 3, stride=1, padding=1)
                if m.shape[-2:] != grid:
                    m = F.interpolate(m, size=grid, mode="bilinear", align_corners=False)
                blocks.append(F.normalize(m, dim=1))
            out.append(torch.cat(blocks, dim=1).permute(0, 2, 3, 1).contiguous())
    return torch.cat(out)


def patch_scores(train, test, seed):
    """Minus the largest, over a test image's locations, distance to the nearest location
    of a random memory bank of ``PATCH_BANK`` training locations."""
    c = train.shape[-1]
    bank = train.reshape(-1, c)
    pick = torch.randperm(len(bank), generator=torch.Generator().manual_seed(seed))
    bank = bank[pick[:PATCH_BANK]]
    n = len(test)
    queries = test.reshape(-1, c)
    nearest = torch.cat([torch.cdist(queries[i:i + 4096], bank).min(dim=1).values
                         for i in range(0, len(queries), 4096)])
    return -nearest.reshape(n, -1).max(dim=1).values.numpy()


def run_one(task, seed, device):
    y = task.y_test
    got = {}
    for size in SIZES:
        emb = PretrainedEmbedding(input_size=size, device=device).fit(task.X_train)
        E, Et = emb.transform(task.X_train), emb.transform(task.X_test)
        knn = NearestNeighborDetector(random_state=seed).fit(E)
        got[f"kNN, {size} px"] = auroc(y, knn.score_samples(Et))
        got[f"Gaussian, {size} px"] = auroc(y, -ledoit_wolf_mahalanobis(E, Et))
        if size == 128:
            P = task.X_train.reshape(len(E), -1)
            Pt = task.X_test.reshape(len(Et), -1)
            centre = P.mean(axis=0)
            union = NearestNeighborDetector(random_state=seed).fit(
                np.hstack([E, unit(P - centre)]))
            got["kNN on embedding + pixels, 128 px"] = auroc(
                y, union.score_samples(np.hstack([Et, unit(Pt - centre)])))
            got["patch kNN, 128 px"] = auroc(y, patch_scores(
                patch_maps(emb, task.X_train), patch_maps(emb, task.X_test), seed))
    return got


def run(seeds, device, path, info):
    for seed, name in pending(path, seeds, IMAGE_SETS):
        torch.manual_seed(seed)
        got = run_one(load_suite_task(name, random_state=seed), seed, device)
        append_jsonl(path, [dict(set=name, seed=seed, aurocs=got, run=info["command"],
                                 provenance=info)])
        print(name, seed, {k: round(v, 3) for k, v in got.items()}, flush=True)


def report(out, rows, info):
    configs = list(dict.fromkeys(c for r in rows for c in r["aurocs"]))
    best_pixel = _best_pixel(out)
    lines = ["# Pretrained features against the pixel-space detectors", "",
             *provenance_lines(info), "",
             "Runs whose rows are in this file: " + "; ".join(
                 f"`{c}`" for c in dict.fromkeys(r["run"] for r in rows)) + ".", "",
             "AUROC, mean ± std over the seeds (in brackets), of each pipeline on the "
             "suite's image sets; the last row of each set is the best score of a method "
             "on the pixels in [robustness.md](robustness.md) (mean over its seeds). "
             "`kNN, S px` is the library's pipeline (`PretrainedEmbedding(input_size=S)` "
             "then `NearestNeighborDetector`); the Gaussian (Ledoit-Wolf Mahalanobis), the "
             "patch memory bank and the union with the pixels are written in "
             "`benchmarks/embedding_gap.py` (its docstring defines them). The library's "
             "PatchCore pipeline (local features, a coreset memory bank) is row `Embedding "
             "patch kNN` of [robustness.md](robustness.md). Nothing here was "
             "chosen on these test labels.", "",
             "| pipeline | " + " | ".join(IMAGE_SETS) + " |",
             "|---|" + "---|" * len(IMAGE_SETS)]
    mean = {}
    for c in configs:
        cells = []
        for s in IMAGE_SETS:
            vals = [r["aurocs"][c] for r in rows if r["set"] == s and c in r["aurocs"]]
            if vals:
                mean[(c, s)] = float(np.mean(vals))
                cells.append(f"{mean[(c, s)]:.3f} ± {np.std(vals):.3f} ({len(vals)})")
            else:
                cells.append("—")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    lines.append(pixel_row(best_pixel, IMAGE_SETS))
    lines += ["", "## Best embedding pipeline per set", "",
              "The largest mean of the pipelines above, per set: a pick made on these test "
              "labels, so an optimistic figure for what the features can reach, not a "
              "default.", "",
              "| set | best embedding pipeline | AUROC | best pixel-space score | difference |",
              "|---|---|---|---|---|"]
    for s in IMAGE_SETS:
        have = [(mean[(c, s)], c) for c in configs if (c, s) in mean]
        if not have or s not in best_pixel:
            continue
        value, c = max(have)
        lines.append(f"| {s} | {c} | {value:.3f} | {pixel_cell(best_pixel, s)} "
                     f"| {value - best_pixel[s][1]:+.3f} |")
    save_result(out, "embedding_gap", lines, {"provenance": info, "rows": rows})


def main():
    resumable_main(__doc__, "embedding_gap", run, report, before_run=check_mahalanobis)


if __name__ == "__main__":
    main()
