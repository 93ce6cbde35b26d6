"""Why OLED fails on texture patches (issue 14): one fit per variant, every term measured.

On ``sknovelty.datasets.make_texture_patches`` (brick; defects and foreign textures), for each
variant: fit seconds, the AUROC of each of OLED's terms (``rec``, ``mask``, ``cont``, ``avg``),
how far the learned masks moved (``MaskDrift``: IoU with the untrained masks, relative change
of MG's weights, MG's gradient norm) and the training loss at the end. The labels are used to
*explain* the failure, never to pick a default: defaults are chosen on the suite as a whole
(``benchmarks/robustness.py``).

    python benchmarks/oled_texture_diagnosis.py --seeds 0
    python benchmarks/oled_texture_diagnosis.py --set mnist-0 --variants default "mask 0.25"
    python benchmarks/oled_texture_diagnosis.py --set wine --seeds 0 1 2 \
        --variants default "epochs 50" "epochs 100" CAE "CAE epochs 50" "CAE epochs 100" AE

Vectors (the suite's tables) are standardised on the normal training rows first, as in
``robustness.py``.
"""

import json
import os
import time

import numpy as np
from _common import as_user_feeds, make_parser, provenance, provenance_lines, save_result

from sknovelty import AdversarialMaskingDetector, AutoencoderDetector, ContextAutoencoderDetector
from sknovelty.datasets import SUITE, load_suite_task
from sknovelty.metrics import auroc
from sknovelty.oled import MaskDrift

VARIANTS = {
    "default": (AdversarialMaskingDetector, {}),
    "batch 64": (AdversarialMaskingDetector, {"batch_size": 64}),  # the default before issue 14
    "sigmoid": (AdversarialMaskingDetector, {"threshold": "sigmoid"}),
    "epochs 50": (AdversarialMaskingDetector, {"epochs": 50}),
    "epochs 60": (AdversarialMaskingDetector, {"epochs": 60}),
    "epochs 100": (AdversarialMaskingDetector, {"epochs": 100}),
    "lr 2e-3": (AdversarialMaskingDetector, {"learning_rate": 2e-3}),
    "gamma 1": (AdversarialMaskingDetector, {"gamma": 1.0}),
    "mask 0.25": (AdversarialMaskingDetector, {"mask_ratio": 0.25}),
    "batch 16": (AdversarialMaskingDetector, {"batch_size": 16}),
    "CAE": (ContextAutoencoderDetector, {}),
    "CAE epochs 50": (ContextAutoencoderDetector, {"epochs": 50}),
    "CAE epochs 100": (ContextAutoencoderDetector, {"epochs": 100}),
    "AE": (AutoencoderDetector, {}),
}


def run(name, task, seed, kind="images"):
    cls, params = VARIANTS[name]
    task = as_user_feeds(task, kind)   # as robustness.py does
    callbacks = [MaskDrift(task.X_train[:128])] if cls is AdversarialMaskingDetector else None
    det = cls(random_state=seed, device="cpu", callbacks=callbacks, **params)
    start = time.perf_counter()
    det.fit(task.X_train)
    row = {"variant": name, "seed": seed, "fit_s": time.perf_counter() - start,
           "batch_size": det.batch_size_,
           "train_loss_end": float(det.net_.history[-1, "train_loss"])}
    terms = det.score_components(task.X_test)
    for term, values in terms.items():
        row[f"auroc_{term}"] = auroc(task.y_test, -values)
    row["auroc_score"] = auroc(task.y_test, det.score_samples(task.X_test))
    if callbacks:
        h = det.net_.history
        row["mask_iou_end"] = float(h[-1, "mask_iou"])
        row["mask_param_change_end"] = float(h[-1, "mask_param_change"])
        grads = [g for g in h[:, "mask_grad_norm"] if g is not None] if "mask_grad_norm" in h[0] \
            else []
        row["mask_grad_norm_mean"] = float(np.mean(grads)) if grads else float("nan")
    return row


def main():
    parser = make_parser(__doc__, seeds=(0,))
    parser.add_argument("--set", default="textures", choices=list(SUITE))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--report", action="store_true",
                        help="run nothing: rewrite the report from the rows in --out")
    args = parser.parse_args()
    info = provenance(args)
    stem = f"oled_diagnosis_{args.set}"
    path = os.path.join(args.out, stem + ".jsonl")
    os.makedirs(args.out, exist_ok=True)
    task = load_suite_task(args.set, random_state=args.seeds[0]) if args.report else None
    for seed in [] if args.report else args.seeds:
        task = load_suite_task(args.set, random_state=seed)
        for name in args.variants:
            row = run(name, task, seed, SUITE[args.set][0])
            with open(path, "a") as f:
                f.write(json.dumps({**row, "provenance": info}) + "\n")
            print(json.dumps(row), flush=True)
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    runs = []   # every run that wrote rows, in order (`run` numbers the rows below)
    for r in rows:
        if r["provenance"] not in runs:
            runs.append(r["provenance"])
    keys = ["auroc_score", "auroc_rec", "auroc_mask", "auroc_cont", "auroc_avg", "fit_s",
            "train_loss_end", "mask_iou_end", "mask_param_change_end", "mask_grad_norm_mean"]
    lines = [f"# OLED diagnosis on `{args.set}`", ""]
    for i, run_info in enumerate(runs, 1):
        lines += [f"Run {i}:", "", *provenance_lines(run_info), ""]
    lines += [f"- data: {task.description}", "- `fit_s` is comparable only between rows of a "
              "run that had the machine to itself", "",
              "| run | variant | seed | " + " | ".join(keys) + " |", "|---" * (len(keys) + 3) + "|"]
    for r in rows:
        lines.append(f"| {runs.index(r['provenance']) + 1} | {r['variant']} | {r['seed']} | "
                     + " | ".join("" if r.get(k) is None else f"{r[k]:.3g}" for k in keys) + " |")
    save_result(args.out, stem, lines, {"runs": runs, "rows": rows})


if __name__ == "__main__":
    main()
