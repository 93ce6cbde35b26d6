"""LSA's fit time, scoring rate and model size at its defaults on MNIST-5k (issue 18, item 3).

One fit per (seed, class) of ``LatentAutoregressiveDetector(random_state=seed)`` on the
training part of one MNIST-5k digit (the split of ``one_class.py``), timed alone. Also records
the AUROCs of NS, REC and LLK (to show that a speed change left the results where they were),
the number of parameters, the bytes of ``pickle.dumps(model)`` and of ``model.save``. Rows are
appended to ``lsa_fit_time.jsonl`` with the git commit of the code that ran, so two versions
of the library can be compared in one table: run the script of this version with
``PYTHONPATH`` pointing at a checkout of the other one.

    python benchmarks/lsa_fit_time.py --seeds 0 --classes 0 1 2
    PYTHONPATH=/path/to/old/checkout python benchmarks/lsa_fit_time.py --classes 0 --label dense
    python benchmarks/lsa_fit_time.py --report
"""

import os
import pickle
import subprocess
import tempfile

from _common import (Stopwatch, append_jsonl, make_parser, provenance, provenance_lines,
                     read_jsonl, save_result)

import sknovelty
from sknovelty import LatentAutoregressiveDetector
from sknovelty.datasets import load_mnist_5k, one_class_split
from sknovelty.metrics import auroc

STEM = "lsa_fit_time"


def _commit():
    root = os.path.dirname(os.path.dirname(os.path.abspath(sknovelty.__file__)))
    try:
        return subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_one(X, y, seed, k, epochs=None):
    X_train, X_test, y_test = one_class_split(X, y, k, test_size=0.2, random_state=seed)
    model = LatentAutoregressiveDetector(random_state=seed, device="cpu")
    if epochs is not None:   # a smoke run
        model.set_params(epochs=epochs)
    with Stopwatch("cpu") as fit:
        model.fit(X_train)
    with Stopwatch("cpu") as score:
        ns = model.score_samples(X_test)
    terms = model.score_components(X_test)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "lsa.skn")
        model.save(path)
        saved = os.path.getsize(path)
    module = model.net_.module_
    return dict(seed=seed, cls=int(k), fit_s=fit.seconds,
                images_per_s=len(X_test) / score.seconds,
                ns=auroc(y_test, ns), rec=auroc(y_test, -terms["rec"]),
                llk=auroc(y_test, -terms["llk"]),
                parameters=sum(p.numel() for p in module.parameters()),
                estimator_parameters=sum(p.numel() for p in module.estimator.parameters()),
                pickle_mb=len(pickle.dumps(model)) / 1e6, save_mb=saved / 1e6)


def report(out):
    rows = read_jsonl(os.path.join(out, STEM + ".jsonl"))
    lines = ["# LSA at its defaults on MNIST-5k: fit time, scoring rate, size", "",
             "One fit per row, nothing else running on the machine; `commit` is the library "
             "version that ran (the script can time another checkout through `PYTHONPATH`).",
             "AUROCs are of the test split of `one_class.py` (this class normal, the others "
             "novel); they only show that a speed change left the results where they were.",
             "", "| label | commit | machine | seed | class | epochs | fit s | images/s | NS | REC "
             "| LLK | parameters (estimator) | pickle MB | save MB |", "|---" * 14 + "|"]
    for r in rows:
        info = r["provenance"]
        lines.append(f"| {r['label']} | {r['commit']} | {info['machine']} | {r['seed']} | "
                     f"{r['cls']} | {r.get('epochs', 50)} | {r['fit_s']:.1f} | {r['images_per_s']:.0f} | "
                     f"{r['ns']:.4f} | {r['rec']:.4f} | {r['llk']:.4f} | "
                     f"{r['parameters'] / 1e6:.1f} M ({r['estimator_parameters'] / 1e6:.1f} M) | "
                     f"{r['pickle_mb']:.0f} | {r['save_mb']:.0f} |")
    lines += ["", "Runs:", ""]
    for command, date in dict.fromkeys((r["provenance"]["command"], r["provenance"]["date"])
                                       for r in rows):
        lines.append(f"- `{command}` ({date})")
    if rows:
        lines += ["", *provenance_lines(rows[-1]["provenance"])[2:]]
    save_result(out, STEM, lines, {"rows": rows})


def main():
    parser = make_parser(__doc__, seeds=(0,), classes=(0,), device=None, epochs=True)
    parser.add_argument("--label", default="current", help="name of this version in the table")
    parser.add_argument("--report", action="store_true", help="only write the report")
    args = parser.parse_args()
    if not args.report:
        X, y = load_mnist_5k()
        info, commit = provenance(args), _commit()
        os.makedirs(args.out, exist_ok=True)
        for seed in args.seeds:
            for k in args.classes:
                row = run_one(X, y, seed, k, args.epochs)
                append_jsonl(os.path.join(args.out, STEM + ".jsonl"),
                             [{**row, "label": args.label, "commit": commit,
                               "epochs": args.epochs or 50, "provenance": info}])
                print(f"{args.label} seed {seed} class {k}: fit {row['fit_s']:.1f} s, "
                      f"NS {row['ns']:.4f}", flush=True)
    report(args.out)


if __name__ == "__main__":
    main()
