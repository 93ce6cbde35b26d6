"""CUDA paths of the base estimator on a GPU machine: fit, score, GPU -> CPU round trips.

    python benchmarks/gpu_check.py --out benchmarks/results

Fits LSA (default settings) on MNIST-5k class 0 on CUDA, times the fit and the scoring
throughput, then checks that the model scores the same after pickle, after save/load onto the
CPU, and in a subprocess that sees no GPU at all. Writes ``gpu_check.md``.
"""

import argparse
import os
import pickle
import subprocess
import sys
import time

import numpy as np
import torch

from sknovelty import LatentAutoregressiveDetector, load
from sknovelty.datasets import load_mnist_5k, one_class_split
from sknovelty.metrics import auroc

CPU_ONLY = """
import pickle, sys, numpy as np, torch
assert not torch.cuda.is_available()
det = pickle.load(open(sys.argv[1], "rb"))
X = np.load(sys.argv[2])
np.save(sys.argv[3], det.score_samples(X))
print("cpu-only subprocess device_:", det.device_)
"""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    lines = [f"# CUDA check ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", "",
             "- command: `python benchmarks/gpu_check.py`",
             f"- GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}", ""]
    X, y = load_mnist_5k()
    X_train, X_test, y_test = one_class_split(X, y, 0, random_state=0)
    for device in ("cuda", "cpu") if "--with-cpu" in sys.argv else ("cuda",):
        det = LatentAutoregressiveDetector(random_state=0, device=device)
        start = time.perf_counter()
        det.fit(X_train)
        torch.cuda.synchronize()
        fit_s = time.perf_counter() - start
        det.score_samples(X[:64])  # warm-up
        rates = []
        for chunk in (64, 1024):
            det.set_params(batch_size=chunk)
            start = time.perf_counter()
            det.score_samples(X)
            rates.append(len(X) / (time.perf_counter() - start))
        det.set_params(batch_size=64)
        scores = det.score_samples(X_test)
        lines.append(f"- LSA default settings on {device}: fit {fit_s:.1f} s ({len(X_train)} images, "
                     f"{det.epochs} epochs), AUROC class 0 = {auroc(y_test, scores):.3f}, scoring "
                     f"{rates[0]:.0f} images/s (chunk 64, the default batch_size) and {rates[1]:.0f} "
                     f"images/s (batch_size=1024)")
    assert next(det.net_.module_.parameters()).is_cuda or "--with-cpu" in sys.argv
    # pickle on this machine
    again = pickle.loads(pickle.dumps(det))
    d_pickle = np.abs(again.score_samples(X_test) - scores).max()
    # save / load onto the CPU
    det.save(os.path.join(args.out, "gpu_model.pt"))
    cpu = load(os.path.join(args.out, "gpu_model.pt"), device="cpu")
    d_cpu = np.abs(cpu.score_samples(X_test) - scores).max()
    os.remove(os.path.join(args.out, "gpu_model.pt"))
    # a process that sees no GPU unpickles the CUDA-fitted model
    with open("/tmp/gpu_det.pkl", "wb") as f:
        pickle.dump(det, f)
    np.save("/tmp/gpu_X.npy", X_test)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", CPU_ONLY, "/tmp/gpu_det.pkl", "/tmp/gpu_X.npy",
                           "/tmp/gpu_s.npy"], env=env, capture_output=True, text=True)
    print(proc.stdout, proc.stderr[-2000:])
    d_sub = np.abs(np.load("/tmp/gpu_s.npy") - scores).max() if proc.returncode == 0 else float("nan")
    lines += [f"- pickle round trip on the GPU machine: max |score difference| = {d_pickle:.2e}",
              f"- save on CUDA -> load(device='cpu'): max |score difference| = {d_cpu:.2e}",
              f"- CUDA-fitted model unpickled in a process with CUDA_VISIBLE_DEVICES='' : "
              f"exit {proc.returncode}, max |score difference| = {d_sub:.2e}"]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(os.path.join(args.out, "gpu_check.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
