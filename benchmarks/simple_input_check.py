"""The label-free complexity guard of the deep detectors on the suite's image sets.

Every deep detector fitted on images measures, on its held-out normal rows,
``simple_input_auroc_`` (how well it tells those rows from their flat versions, each replaced
by its per-channel mean; ``fit`` warns when it is clearly below 0.5) and ``complexity_correlation_`` (Spearman
correlation of their novelty scores with their zlib code lengths). This script fits each
method at its defaults on each image set of the robustness suite and tabulates both next to
the test AUROC, to show where the guard fires and whether that is where the methods fail
(`photos`, whose novel patches are simpler than the normal ones). The test labels are used
only for the AUROC column, never by the guard::

    python benchmarks/simple_input_check.py --methods AE --seeds 0 1 2
    python benchmarks/simple_input_check.py --methods LSA LTG OLED --seeds 0 --merge
"""

import json
import math
import os
import warnings

import numpy as np

from _common import (estimator_names, make_estimator, make_parser, provenance, provenance_lines,
                     read_jsonl, save_result)

from sknovelty.datasets import SUITE, load_suite_task
from sknovelty.metrics import auroc

STEM = "simple_input_check"
IMAGE_SETS = [name for name, (kind, *_) in SUITE.items() if kind == "images"]


def main():
    # default: the plain autoencoder, whose rows the committed file began with; any deep
    # estimator taking images (the guard is theirs) runs with --methods ... --merge
    parser = make_parser(__doc__, seeds=(0,), methods=["AE"],
                         method_choices=estimator_names(deep=True, inputs="images", variants=True),
                         device=None)
    parser.add_argument("--merge", action="store_true", help="keep the rows already written")
    parser.add_argument("--report", action="store_true",
                        help="fit nothing: rewrite the table from the rows already written")
    args = parser.parse_args()
    info = provenance(args)
    path = os.path.join(args.out, STEM + ".jsonl")
    if args.report:
        rows = read_jsonl(path)
        write_report(args, info, rows)
        return
    rows = read_jsonl(path) if args.merge and os.path.exists(path) else []
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    for seed in args.seeds:
        for name in IMAGE_SETS:
            task = load_suite_task(name, random_state=seed)
            for method in args.methods:
                # LTG at batch 64, its default when the committed rows were written
                params = {"batch_size": 64} if method == "LTG" else {}
                model = make_estimator(method, random_state=seed, device="cpu", **params)
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    model.fit(task.X_train)
                row = dict(method=method, set=name, seed=seed,
                           auroc=auroc(task.y_test, model.score_samples(task.X_test)),
                           simple_input_auroc=model.simple_input_auroc_,
                           complexity_correlation=model.complexity_correlation_,
                           warned=any("flat images" in str(w.message) for w in caught),
                           command=info["command"], date=info["date"])
                rows.append(row)
                with open(path, "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(row, flush=True)
    write_report(args, info, rows)


def held_out_rows(name):
    """How many held-out rows the guard probes on set ``name`` (``validation_fraction`` 0.1)."""
    return math.ceil(0.1 * len(load_suite_task(name, random_state=0).X_train))


def write_report(args, info, rows):
    lines = ["# The flat-input guard on the suite's image sets", "", *provenance_lines(info),
             "- runs: " + "; ".join(sorted({f"`{r['command']}` ({r['date']})" for r in rows})),
             "", __doc__.split("\n\n")[1].replace("\n", " "), "",
             "Cells: test AUROC / `simple_input_auroc_` / `complexity_correlation_`; "
             "**bold** where `fit` warned.", "",
             "| method | seed | " + " | ".join(IMAGE_SETS) + " |",
             "|---|---|" + "---|" * len(IMAGE_SETS)]
    for method in dict.fromkeys(r["method"] for r in rows):
        for seed in sorted({r["seed"] for r in rows if r["method"] == method}):
            cells = []
            for name in IMAGE_SETS:
                r = next((r for r in rows if (r["method"], r["seed"], r["set"])
                          == (method, seed, name)), None)
                if r is None:
                    cells.append("")
                    continue
                text = (f"{r['auroc']:.2f} / {r['simple_input_auroc']:.2f} / "
                        f"{r['complexity_correlation']:.2f}")
                cells.append(f"**{text}**" if r["warned"] else text)
            lines.append(f"| {method} | {seed} | " + " | ".join(cells) + " |")
    fired = [r for r in rows if r["warned"]]
    failed = [r for r in rows if r["auroc"] < 0.5]
    lines += ["", f"- fits: {len(rows)}; warned: {len(fired)}; test AUROC below 0.5: "
              f"{len(failed)}, of which warned: {sum(r['warned'] for r in failed)}; warned "
              f"with test AUROC at least 0.5: {sum(r['auroc'] >= 0.5 for r in fired)} "
              f"(the sets: {', '.join(sorted({r['set'] for r in fired if r['auroc'] >= 0.5}))})"]
    # the rule fit applies now: clearly below chance (3 standard errors under 0.5)
    threshold = make_estimator("AE")._simple_input_threshold
    n_ref = {name: held_out_rows(name) for name in {r["set"] for r in rows}}
    now = [r for r in rows if r["simple_input_auroc"] < threshold(n_ref[r["set"]])]
    lines += ["", "The warning's rule is now stricter: `fit` warns when `simple_input_auroc_` "
              "is below 0.5 by more than 3 standard errors of an AUROC of n held-out rows "
              "against n flat ones (`sqrt((2n + 1) / (12 n^2))`). Applied to the rows above "
              "(held-out rows and thresholds: " + ", ".join(
                  f"{name} {n_ref[name]} rows, {threshold(n_ref[name]):.3f}"
                  for name in IMAGE_SETS if name in n_ref) + "):", "",
              f"- warns on {len(now)} of {len(rows)} fits; on "
              f"{sum(r['auroc'] >= 0.5 for r in now)} of the {sum(r['auroc'] >= 0.5 for r in rows)} "
              "fits where the detector works (test AUROC at least 0.5), on "
              f"{sum(r['auroc'] < 0.5 for r in now)} of the {len(failed)} where it fails;",
              "- no longer warns: " + (", ".join(
                  f"{r['method']} {r['set']} seed {r['seed']} ({r['simple_input_auroc']:.3f}, "
                  f"test AUROC {r['auroc']:.2f})" for r in fired if r not in now) or "none")
              + "."]
    save_result(args.out, STEM, lines, {"provenance": info, "rows": rows})


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
