"""Do two versions of the library score alike? Bit-for-bit scores of every registry entry.

A check for refactors that must not change a number: each entry of the registry that takes
vectors, images or clips is fitted at its tiny configuration on fixed random data of each
kind it takes (plus the AE with input noise and LTG with Gaussian pseudo anomalies), and its
``score_samples`` of the training rows are saved. Run it on both versions (e.g. a ``git
worktree`` of the commit before the change, with the same interpreter, the same machine and
the same thread count: float32 kernels split sums by thread count) and compare:

    python benchmarks/score_equivalence.py /tmp/before.npz            # on the old version
    python benchmarks/score_equivalence.py /tmp/after.npz             # on the new one
    python benchmarks/score_equivalence.py --compare /tmp/before.npz /tmp/after.npz

``--compare`` prints each case that differs (its largest difference) and exits 1 if any
case of the first file is missing or different; cases only in the second file (a new
entry) are listed and allowed.
"""

import argparse
import sys
import warnings

import numpy as np


def cases():
    from sknovelty.registry import ESTIMATORS

    extra = {"AE-noise": ("AE", {"noise_std": 0.1}), "LTG-gauss": ("LTG", {"noise": "gaussian"})}
    named = [(name, name, {}) for name in ESTIMATORS]
    return ESTIMATORS, named + [(name, base, params) for name, (base, params) in extra.items()]


def scores():
    ESTIMATORS, todo = cases()
    rng = np.random.RandomState(0)
    data = {"vectors": rng.randn(80, 10).astype(np.float32),
            "images": rng.rand(80, 1, 8, 8).astype(np.float32),
            "clips": rng.rand(24, 1, 10, 8, 8).astype(np.float32)}
    out = {}
    for name, base, params in todo:
        entry = ESTIMATORS[base]
        for kind, X in data.items():
            if kind not in entry.inputs:
                continue
            if base == "ITAE":
                X = X[:, :, :4]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    out[f"{name}/{kind}"] = entry.tiny(**params).fit(X).score_samples(X)
                except Exception as exc:  # reported, not fatal: the comparison shows it
                    print(f"{name}/{kind}: {type(exc).__name__}: {exc}", file=sys.stderr)
    return out


def compare(before, after):
    a, b = np.load(before), np.load(after)
    bad = 0
    for key in a.files:
        if key not in b.files:
            print("missing", key)
            bad += 1
        elif not np.array_equal(a[key], b[key]):
            print("differs", key, float(np.abs(a[key] - b[key]).max()))
            bad += 1
    for key in sorted(set(b.files) - set(a.files)):
        print("new", key)
    print(f"{len(a.files) - bad}/{len(a.files)} identical")
    return 1 if bad else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", help="OUT.npz, or with --compare BEFORE AFTER")
    parser.add_argument("--compare", action="store_true", help="compare two files")
    args = parser.parse_args()
    if args.compare:
        if len(args.files) != 2:
            parser.error("--compare takes two files")
        return compare(*args.files)
    if len(args.files) != 1:
        parser.error("give one output file")
    out = scores()
    np.savez(args.files[0], **out)
    print(f"{len(out)} cases written to {args.files[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
