"""Scoring throughput and fit time per method: chunk sizes, float32 vs bfloat16, the limit.

For each deep image estimator of the registry (and PyOD's AutoEncoder as the peer users would
try), fitted for ``--epochs`` epochs on MNIST-5k class 0 (seed-0 split of ``one_class.py``):

* fit seconds (for ``--epochs`` epochs, not the defaults' epochs: timing, not accuracy);
* scoring throughput (images/s, best of ``--repeats``) over the 1,000 test images at each
  ``--chunks`` size (``score_batch_size``), and the raw module forward alone at the same
  chunk (``torch.inference_mode``, no validation, no loss): the limit the estimator can reach;
* bfloat16 scoring (``precision="bfloat16"``): throughput and its AUROC minus float32's on
  the same fitted model. On a CPU without AVX512-BF16 / AMX the estimator falls back to
  float32 with a warning; the bfloat16 rows are then run in emulation (same rounding, no
  native kernels) so that the AUROC difference is still measured, and their speed is marked
  as not meaningful;
* streaming: ``score_samples`` on a ``numpy.memmap`` of ``--memmap-rows`` MNIST-sized images
  (a sparse file on disk) with the registry's tiny autoencoder: seconds, images/s, the peak of
  Python-side allocations (``tracemalloc``: numpy arrays, not torch's allocator) and the
  process's peak RSS before and after (RSS also counts the file's pages the kernel keeps
  mapped, so it is an upper bound of what the process itself holds).

Run it alone on the machine (a second torch process on the same cores distorts every figure).

    python benchmarks/throughput.py                         # all methods, 5 epochs
    python benchmarks/throughput.py --methods LSA AE --chunks 64 256 --memmap-rows 100000
"""

import os
import resource
import tempfile
import time
import tracemalloc

import numpy as np
import torch

from _common import (PEERS, Stopwatch, estimator_names, make_estimator, make_parser,  # noqa: E402
                     provenance, provenance_lines, save_result, score_in)

from sknovelty._device import _cpu_flags, bf16_native, resolve_device  # noqa: E402
from sknovelty.datasets import load_mnist_5k, one_class_split  # noqa: E402
from sknovelty.metrics import auroc  # noqa: E402
from sknovelty.registry import ESTIMATORS  # noqa: E402

METHODS = estimator_names(deep=True, inputs="images")


def best_rate(fn, n, repeats):
    """Samples per second of the fastest of ``repeats`` calls of ``fn`` (after a warm-up)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return n / min(times)


def raw_forward(det, X, chunk):
    """The module's forward pass over X in chunks of ``chunk`` rows: the estimator's limit."""
    module, device = det.net_.module_, det.device_
    X = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))

    def run():
        with torch.inference_mode():
            for start in range(0, len(X), chunk):
                module(X[start:start + chunk].to(device))
    return run


def measure(name, args, data):
    X_train, X_test, y_test = data
    det = make_estimator(name, random_state=0, device=args.device, epochs=args.epochs)
    with Stopwatch(args.device) as fit:
        det.fit(X_train)
    rows = []
    if name in PEERS:
        rate = best_rate(lambda: det.score_samples(X_test), len(X_test), args.repeats)
        scores = det.score_samples(X_test)
        return [dict(method=name, precision="float32", chunk="-", fit_s=fit.seconds,
                     per_s=rate, limit_per_s=float("nan"), auroc=auroc(y_test, scores),
                     d_auroc=float("nan"), native=True)]
    for chunk in args.chunks:
        det.set_params(score_batch_size=chunk)
        rows.append(dict(method=name, precision="float32", chunk=chunk, fit_s=fit.seconds,
                         per_s=best_rate(lambda: det.score_samples(X_test), len(X_test),
                                         args.repeats),
                         limit_per_s=best_rate(raw_forward(det, X_test, chunk), len(X_test),
                                               args.repeats),
                         auroc=auroc(y_test, det.score_samples(X_test)), d_auroc=0.0,
                         native=True))
        print(rows[-1], flush=True)
    # bfloat16 at the CPU's auto chunk (256 for MNIST); emulated: one call, its speed says nothing
    det.set_params(score_batch_size="auto")
    base = auroc(y_test, det.score_samples(X_test))
    native = score_in(det, "bfloat16") == "bfloat16"
    if not native:
        score_in(det, "bfloat16", emulate=True)
    repeats = args.repeats if native else 0
    start = time.perf_counter()
    low = auroc(y_test, det.score_samples(X_test))
    rate = (len(X_test) / (time.perf_counter() - start) if not native
            else best_rate(lambda: det.score_samples(X_test), len(X_test), repeats))
    rows.append(dict(method=name, precision="bfloat16", chunk=det._score_batch_size(),
                     fit_s=fit.seconds, per_s=rate, limit_per_s=float("nan"), auroc=low,
                     d_auroc=low - base, native=native))
    print(rows[-1], flush=True)
    return rows


def stream(args, X_train):
    """``score_samples`` on a memmap of ``--memmap-rows`` images, memory watched."""
    det = ESTIMATORS["AE"].tiny(device=args.device).fit(X_train)
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        path = os.path.join(tmp, "rows.f32")
        shape = (args.memmap_rows, *X_train.shape[1:])
        big = np.memmap(path, dtype=np.float32, mode="w+", shape=shape)
        big[:len(X_train)] = X_train
        big.flush()
        del big
        big = np.memmap(path, dtype=np.float32, mode="r", shape=shape)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        tracemalloc.start()
        with Stopwatch(args.device) as watch:
            scores = det.score_samples(big)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        row = dict(rows=args.memmap_rows, array_mb=big.nbytes / 1e6, seconds=watch.seconds,
                   per_s=args.memmap_rows / watch.seconds, traced_peak_mb=peak / 1e6,
                   rss_peak_before_mb=rss_before, rss_peak_after_mb=rss_after,
                   finite=bool(np.isfinite(scores).all()))
    print(row, flush=True)
    return row


def main(argv=None):
    parser = make_parser(__doc__, methods=[*METHODS, "PyOD AE"], epochs=True)
    parser.set_defaults(epochs=5)
    parser.add_argument("--chunks", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memmap-rows", type=int, default=1_000_000,
                        help="rows of the streamed memmap (0: skip)")
    parser.add_argument("--tmp", default=None, help="folder of the memmap file")
    args = parser.parse_args(argv)
    info = provenance(args)
    flags = sorted({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"} & _cpu_flags())
    info["cpu_flags"] = flags
    X, y = load_mnist_5k()
    data = one_class_split(X, y, 0, random_state=0)
    rows = []
    for name in args.methods:
        rows += measure(name, args, data)
    memmap = stream(args, data[0]) if args.memmap_rows else None
    device = resolve_device(args.device)
    lines = ["# Scoring throughput and fit time per method", "",
             *provenance_lines(info),
             f"- CPU flags that matter here: {', '.join(flags) or 'none of avx2/avx512/amx'}; "
             f"native bfloat16 on {device}: {bf16_native(device)}",
             f"- protocol: MNIST-5k class 0 (seed-0 split), each method fitted for {args.epochs} "
             "epochs (fit seconds are for those epochs, not the defaults'); scoring the 1,000 "
             f"test images, best of {args.repeats} after a warm-up; 'limit' = the module's "
             "forward pass alone at the same chunk; AUROC difference = bfloat16 minus float32 "
             "on the same fitted model. Nothing tuned on test labels: the chunk default "
             "(`score_batch_size=\"auto\"`) is chosen on speed alone.", ""]
    if not all(r["native"] for r in rows):
        lines += ["bfloat16 rows marked *emulated* ran without native kernels (this CPU has "
                  "neither AVX512-BF16 nor AMX; the estimator itself falls back to float32 "
                  "with a warning): their AUROC difference is the real rounding effect, their "
                  "speed is not a bfloat16 speed.", ""]
    lines += ["| method | precision | chunk | fit s | images/s | limit images/s | estimator / limit "
              "| AUROC | AUROC difference |", "|---" * 9 + "|"]
    for r in rows:
        ratio = r["per_s"] / r["limit_per_s"] if r["limit_per_s"] == r["limit_per_s"] else None
        prec = r["precision"] + ("" if r["native"] else " (emulated)")
        lines.append(f"| {r['method']} | {prec} | {r['chunk']} | {r['fit_s']:.1f} | "
                     f"{r['per_s']:.0f} | "
                     + (f"{r['limit_per_s']:.0f} | {ratio:.2f}" if ratio else "- | -")
                     + f" | {r['auroc']:.4f} | "
                     + (f"{r['d_auroc']:+.4f} |" if r["precision"] == "bfloat16" else "- |"))
    if memmap:
        lines += ["", f"Streaming: `score_samples` on a `numpy.memmap` of {memmap['rows']:,} "
                  f"MNIST-sized images ({memmap['array_mb']:.0f} MB on disk), the registry's "
                  "tiny autoencoder:", "",
                  "| rows | seconds | images/s | traced peak MB (numpy) | peak RSS MB before / "
                  "after |", "|---|---|---|---|---|",
                  f"| {memmap['rows']:,} | {memmap['seconds']:.1f} | {memmap['per_s']:.0f} | "
                  f"{memmap['traced_peak_mb']:.1f} | {memmap['rss_peak_before_mb']:.0f} / "
                  f"{memmap['rss_peak_after_mb']:.0f} |"]
    save_result(args.out, "throughput", lines, {"provenance": info, "rows": rows,
                                                "memmap": memmap})


if __name__ == "__main__":
    main()
