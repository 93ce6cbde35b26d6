"""Pretrained features that keep their layout: a route to the pixels' score on small digits?

On the suite's digits-3 (8 x 8 digits) nearest neighbours of the pixels reach 0.998 and no
pooled embedding pipeline passes 0.994 (``embedding_gap.md``). Pooling throws away where a
stroke is, which is what separates aligned digits. This script keeps it: per configuration,
``PretrainedEmbedding(stage=S, pooling="local", input_size=P)`` gives maps ``(C, h, w)`` of
unit-length local features, and ``NearestNeighborDetector`` (its defaults) measures distances
between whole maps (it flattens them), a library pipeline:

* ``P`` = 32 or 64 px (the 8 x 8 digits upsampled; larger sizes make the maps long);
* ``S`` = stage 1, 2 or 3 of EfficientNet-Lite0 (strides 2, 4, 8), or stages 2 and 3.

How a configuration would be chosen without the test labels of the set it is reported on:
leave one set out. Per set, the configuration with the best mean over the other four sets
(and over the other sets but photos, whose novel images are smoother and which the issue's
target leaves out) and its AUROC on the set left out. The per-set best is reported too, as
what the features can reach when picked on the set's own labels: optimistic, not a default.

Rows are appended to ``embedding_spatial.jsonl`` as each (set, seed) finishes (a stopped run
resumes); ``--report`` rewrites ``embedding_spatial.{md,json}`` from them.

    python benchmarks/embedding_spatial.py                 # seeds 0 1 2, then the report
    python benchmarks/embedding_spatial.py --report
"""


import numpy as np
import torch
from _common import append_jsonl, pending, provenance_lines, resumable_main, save_result
from embedding import IMAGE_SETS, _best_pixel, pixel_cell, pixel_row

from sknovelty import NearestNeighborDetector, PretrainedEmbedding
from sknovelty.datasets import load_suite_task
from sknovelty.metrics import auroc

SIZES = (32, 64)
STAGES = ((1,), (2,), (3,), (2, 3))


def configurations():
    """name -> (input size, stages)."""
    return {f"stage {'+'.join(map(str, s))}, {p} px": (p, s) for p in SIZES for s in STAGES}


def run(seeds, device, path, info):
    for seed, name in pending(path, seeds, IMAGE_SETS):
        torch.manual_seed(seed)
        task = load_suite_task(name, random_state=seed)
        got = {}
        for config, (size, stages) in configurations().items():
            emb = PretrainedEmbedding(stage=list(stages), pooling="local", input_size=size,
                                      device=device).fit(task.X_train)
            det = NearestNeighborDetector(random_state=seed).fit(emb.transform(task.X_train))
            got[config] = auroc(task.y_test, det.score_samples(emb.transform(task.X_test)))
        append_jsonl(path, [dict(set=name, seed=seed, aurocs=got, run=info["command"],
                                 provenance=info)])
        print(name, seed, {k: round(v, 3) for k, v in got.items()}, flush=True)


def leave_one_out(mean, configs, left_out, pool):
    """The configuration with the best mean over ``pool`` without ``left_out``."""
    others = [s for s in pool if s != left_out]
    return max(configs, key=lambda c: (np.mean([mean[(c, s)] for s in others]), c))


def report(out, rows, info):
    configs = list(configurations())
    sets = [s for s in IMAGE_SETS if any(r["set"] == s for r in rows)]
    mean = {(c, s): float(np.mean([r["aurocs"][c] for r in rows if r["set"] == s]))
            for c in configs for s in sets}
    seeds = {s: sorted({r["seed"] for r in rows if r["set"] == s}) for s in sets}
    best_pixel = _best_pixel(out)
    lines = ["# Pretrained features that keep their layout", "",
             *provenance_lines(info), "",
             "Runs whose rows are in this file: " + "; ".join(
                 f"`{c}`" for c in dict.fromkeys(r["run"] for r in rows)) + ".", "",
             "AUROC, mean over the seeds (" + ", ".join(f"{s} {seeds[s]}" for s in sets)
             + "), of `PretrainedEmbedding(stage=S, pooling=\"local\", input_size=P)` then "
             "`NearestNeighborDetector()` on the whole maps; the last row is the best score of "
             "a method on the pixels in [robustness.md](robustness.md).", "",
             "| configuration | " + " | ".join(sets) + " |", "|---|" + "---|" * len(sets)]
    for c in configs:
        lines.append(f"| {c} | " + " | ".join(f"{mean[(c, s)]:.3f}" for s in sets) + " |")
    lines.append(pixel_row(best_pixel, sets))
    lines += ["", "## Chosen without the set's labels", "",
              "Per set: the configuration with the best mean over the other sets (all, and all "
              "but photos), its AUROC on the set left out, and the per-set best (picked on that "
              "set's own test labels: optimistic).", "",
              "| set | chosen on the others | AUROC | chosen on the others but photos | AUROC "
              "| per-set best | AUROC | best pixel-space score |",
              "|---|---|---|---|---|---|---|---|"]
    no_photos = [s for s in sets if s != "photos"]
    for s in sets:
        a = leave_one_out(mean, configs, s, sets)
        b = leave_one_out(mean, configs, s, no_photos) if s != "photos" else None
        top = max(configs, key=lambda c: (mean[(c, s)], c))
        pixel = pixel_cell(best_pixel, s)
        without = f"{b} | {mean[(b, s)]:.3f}" if b else "— | —"
        lines.append(f"| {s} | {a} | {mean[(a, s)]:.3f} | {without} | {top} | "
                     f"{mean[(top, s)]:.3f} | {pixel} |")
    save_result(out, "embedding_spatial", lines, {"provenance": info, "rows": rows})


def main():
    resumable_main(__doc__, "embedding_spatial", run, report)


if __name__ == "__main__":
    main()
