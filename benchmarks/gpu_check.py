"""CUDA paths of every deep estimator on a GPU machine: fit, score, GPU -> CPU round trips.

    python benchmarks/gpu_check.py                          # all methods, default settings
    python benchmarks/gpu_check.py --methods LSA OLED --with-cpu   # CPU timings next to them
    python benchmarks/gpu_check.py --device cpu --epochs 1 --out /tmp/x   # smoke run, no GPU

For each method: fit with its default settings on CUDA (images: MNIST-5k class 0, seed-0
split; ITAE: 16-frame clips of ``make_moving_shapes``), time the fit and the scoring
throughput, then check that the fitted model scores the same after pickling, after
``save`` on CUDA and ``load(device="cpu")``, and in a subprocess that sees no GPU at all
(``CUDA_VISIBLE_DEVICES=''``). Differences are max |score difference| divided by the
score range on the test set. Writes ``gpu_check.md``.
"""

import os
import pickle
import subprocess
import sys
import tempfile

import numpy as np
import torch

from _common import (Stopwatch, estimator_names, make_estimator, make_parser,  # noqa: E402
                     provenance, provenance_lines, save_result, score_in)

from sknovelty import load  # noqa: E402
from sknovelty.datasets import load_mnist_5k, make_moving_shapes, one_class_split  # noqa: E402
from sknovelty.metrics import auroc  # noqa: E402
from sknovelty.registry import ESTIMATORS  # noqa: E402
from sknovelty.video import frames_to_clips  # noqa: E402

#: every deep estimator of the registry that takes images or clips (ITAE at width 0.125, as
#: in ``itae_video.py``; MMP-AMS's object rows come from ``video.py``'s object videos)
METHODS = estimator_names(deep=True, inputs=("images", "clips"))
SETTINGS = {"ITAE": {"width": 0.125}}
CPU_ONLY = """
import pickle, sys, numpy as np, torch
assert not torch.cuda.is_available()
det = pickle.load(open(sys.argv[1], "rb"))
np.save(sys.argv[3], det.score_samples(np.load(sys.argv[2])))
"""


def _data(name):
    if "images" not in ESTIMATORS[name].inputs:  # a clip method
        train, test, _, _ = make_moving_shapes(n_train=4, n_test=1, n_frames=120, size=32,
                                               random_state=0)
        X_train = np.concatenate([frames_to_clips(v, 16, stride=4)[0] for v in train])
        return X_train, frames_to_clips(test[0], 16, stride=2)[0], None
    X, y = load_mnist_5k()
    return one_class_split(X, y, 0, random_state=0)


def check(name, device, epochs, tmp):
    X_train, X_test, y_test = _data(name)
    det = make_estimator(name, random_state=0, device=device, epochs=epochs,
                         **SETTINGS.get(name, {}))
    with Stopwatch(device) as fit:
        det.fit(X_train)
    fit_s = fit.seconds
    det.score_samples(X_test[:8])  # warm-up
    with Stopwatch(device) as scoring:
        scores = det.score_samples(X_test)
    rate = len(X_test) / scoring.seconds
    scale = float(np.ptp(scores)) or 1.0
    row = dict(method=name, device=det.device_, fit_s=fit_s, epochs=det.epochs, per_s=rate,
               n_train=len(X_train), auroc=auroc(y_test, scores) if y_test is not None else None,
               on_device=next(det.net_.module_.parameters()).device.type,
               finite=bool(np.isfinite(scores).all()))
    # the fast mode: bfloat16 forward passes where the device has them natively
    row["bf16_per_s"] = row["bf16_d_auroc"] = float("nan")
    if score_in(det, "bfloat16") == "bfloat16":
        with Stopwatch(device) as scoring:
            fast = det.score_samples(X_test)
        row["bf16_per_s"] = len(X_test) / scoring.seconds
        if y_test is not None:
            row["bf16_d_auroc"] = auroc(y_test, fast) - row["auroc"]
        score_in(det, "float32")
    again = pickle.loads(pickle.dumps(det))
    row["d_pickle"] = float(np.abs(again.score_samples(X_test) - scores).max()) / scale
    path = os.path.join(tmp, "model.pt")
    det.save(path)
    cpu = load(path, device="cpu")
    row["cpu_params"] = next(cpu.net_.module_.parameters()).device.type
    row["d_cpu"] = float(np.abs(cpu.score_samples(X_test) - scores).max()) / scale
    with open(os.path.join(tmp, "det.pkl"), "wb") as f:
        pickle.dump(det, f)
    np.save(os.path.join(tmp, "X.npy"), X_test)
    proc = subprocess.run([sys.executable, "-c", CPU_ONLY, os.path.join(tmp, "det.pkl"),
                           os.path.join(tmp, "X.npy"), os.path.join(tmp, "s.npy")],
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, capture_output=True,
                          text=True)
    row["subprocess_rc"] = proc.returncode
    row["d_subprocess"] = (float(np.abs(np.load(os.path.join(tmp, "s.npy")) - scores).max()) / scale
                           if proc.returncode == 0 else float("nan"))
    if proc.returncode:
        print(proc.stderr[-2000:])
    print(row, flush=True)
    return row


def main(argv=None):
    parser = make_parser(__doc__, methods=METHODS, device="cuda", epochs=True)
    parser.add_argument("--with-cpu", action="store_true", help="also fit each method on the CPU")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("no CUDA device here; use --device cpu for a smoke run")
    os.makedirs(args.out, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.methods:
            for device in (args.device, "cpu") if args.with_cpu else (args.device,):
                rows.append(check(name, device, args.epochs, tmp))
    lines = ["# CUDA check: every deep estimator on the GPU, then back on the CPU", "",
             *provenance_lines(provenance(args)),
             "- data: MNIST-5k class 0 (seed-0 split) for the image methods; for ITAE "
             "(width 0.125) 16-frame clips of `make_moving_shapes` (train stride 4, one test "
             "video at stride 2). Differences: max |score difference| / score range. Scoring "
             "at `score_batch_size=\"auto\"`; bf16 columns: `precision=\"bfloat16\"` on the "
             "same fitted model (nan where the device has no native bfloat16).", "",
             "| method | device | epochs | fit s | scoring /s | bf16 scoring /s | bf16 AUROC "
             "difference | AUROC | params on | pickle diff | "
             "save -> load(cpu) diff | CPU-only process diff |", "|---" * 12 + "|"]
    for r in rows:
        auc = f"{r['auroc']:.3f}" if r["auroc"] is not None else "-"
        lines.append(f"| {r['method']} | {r['device']} | {r['epochs']} | {r['fit_s']:.1f} | "
                     f"{r['per_s']:.0f} | {r['bf16_per_s']:.0f} | {r['bf16_d_auroc']:+.4f} | "
                     f"{auc} | {r['on_device']} (loaded: {r['cpu_params']}) | "
                     f"{r['d_pickle']:.1e} | {r['d_cpu']:.1e} | "
                     f"{r['d_subprocess']:.1e} (exit {r['subprocess_rc']}) |")
    save_result(args.out, "gpu_check", lines, {"rows": rows})


if __name__ == "__main__":
    main()
