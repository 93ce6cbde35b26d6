"""Can input complexity rescue pretrained features where novel images are simpler? (photos)

On the suite's photos set the novel patches (moon, cell) are smoother than the normal ones
(camera, astronaut, chelsea, coffee), and every distance-to-normal score, in pixels or in
pretrained features, ranks them as *more* normal. This probe measures, per image set of the
suite and seed, the AUROC of:

* ``kNN``: EfficientNet-Lite0 embeddings (``PretrainedEmbedding`` at its defaults) and
  ``NearestNeighborDetector`` at its defaults (its score z-scored on its held-out normal
  rows' scores, ``reference_scores_``);
* ``code length``: the zlib code length alone (``sknovelty.metrics.code_length``), higher =
  more normal (the direction that works on photos) and its opposite;
* combinations of the two, each term z-scored on normal rows (the kNN's held-out reference
  scores; the code lengths of the training rows): ``kNN - |z_L|`` (any departure
  from the training rows' complexity is novel), ``kNN + z_L`` (simpler is novel), ``kNN -
  max(0, -z_L)`` (only simpler than usual is novel).

Nothing here is a default of the library; it reports whether one score reaches 0.85 on photos
without costing the other sets more than 0.02 against ``kNN``.

    python benchmarks/embedding_complexity.py                 # seeds 0 1 2
    python benchmarks/embedding_complexity.py --report        # the table from the JSON
"""

import json
import os
import warnings

import numpy as np
from _common import embedding_knn, make_parser, provenance, provenance_lines, save_result
from embedding import IMAGE_SETS as SETS

from sknovelty.datasets import load_suite_task
from sknovelty.metrics import auroc, code_length

SCORES = ("kNN", "code length", "-code length", "kNN - |z_L|", "kNN + z_L", "kNN - max(0, -z_L)")


def scores_of(task, seed, device):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = embedding_knn(random_state=seed, device=device).fit(task.X_train)
        s, s_ref = pipe.score_samples(task.X_test), pipe[-1].reference_scores_   # held out
    L, L_train = code_length(task.X_test), code_length(task.X_train)
    z_s = (s - s_ref.mean()) / s_ref.std()
    z_L = (L - L_train.mean()) / L_train.std()
    return {"kNN": s, "code length": L, "-code length": -L, "kNN - |z_L|": z_s - np.abs(z_L),
            "kNN + z_L": z_s + z_L, "kNN - max(0, -z_L)": z_s - np.maximum(0, -z_L)}


def main():
    parser = make_parser(__doc__, seeds=(0, 1, 2), device="cpu")
    parser.add_argument("--report", action="store_true",
                        help="rewrite the table from the rows of the JSON in --out")
    args = parser.parse_args()
    if args.report:
        with open(os.path.join(args.out, "embedding_complexity.json")) as f:
            saved = json.load(f)
        return write(args.out, saved["provenance"], saved["rows"], args.seeds)
    info = provenance(args)
    rows = []
    for seed in args.seeds:
        for name in SETS:
            task = load_suite_task(name, random_state=seed)
            for score, values in scores_of(task, seed, args.device).items():
                rows.append(dict(set=name, seed=seed, score=score,
                                 auroc=auroc(task.y_test, values)))
            print(name, seed, {r["score"]: round(r["auroc"], 3) for r in rows[-len(SCORES):]},
                  flush=True)
    write(args.out, info, rows, args.seeds)


def write(out, info, rows, seeds):
    mean = {(sc, n): float(np.mean([r["auroc"] for r in rows if (r["score"], r["set"]) == (sc, n)]))
            for sc in SCORES for n in SETS}
    lines = ["# Pretrained features and input complexity on the suite's image sets", "",
             *provenance_lines(info), "",
             f"AUROC, mean over seeds {', '.join(map(str, seeds))}; EfficientNet-Lite0 "
             "embeddings at the library's defaults, kNN at its defaults; z-scores on normal "
             "rows (held-out for the kNN score, training rows for the code length). The last column: the largest loss against `kNN` on the sets other "
             "than photos.", "",
             "| score | " + " | ".join(SETS) + " | worst loss elsewhere |",
             "|---|" + "---|" * (len(SETS) + 1)]
    for sc in SCORES:
        loss = max(mean[("kNN", n)] - mean[(sc, n)] for n in SETS if n != "photos")
        lines.append(f"| {sc.replace('|', chr(92) + '|')} | " + " | ".join(f"{mean[(sc, n)]:.3f}" for n in SETS)
                     + f" | {loss:+.3f} |")
    save_result(out, "embedding_complexity", lines, {"provenance": info, "rows": rows})


if __name__ == "__main__":
    main()
