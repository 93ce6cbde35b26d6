"""Sweep LSA training settings on the one-class MNIST-5k protocol (AUROC only, no timings).

    python benchmarks/lsa_sweep.py --device cuda --budget 400

Used to choose LSA's defaults; each line: setting, mean AUROC of NS / REC / LLK over classes.
"""

import time

import numpy as np

from _common import make_estimator, make_parser  # noqa: E402

from sknovelty.datasets import load_mnist_5k, one_class_split
from sknovelty.metrics import auroc

SETTINGS = [
    dict(epochs=50, batch_size=64, learning_rate=1e-3),
    dict(epochs=200, batch_size=64, learning_rate=1e-3),
    dict(epochs=50, batch_size=64, learning_rate=1e-4),
    dict(epochs=200, batch_size=256, learning_rate=1e-4),
    dict(epochs=50, batch_size=64, learning_rate=1e-3, lam=0.1),
    dict(epochs=50, batch_size=64, learning_rate=1e-3, lam=10.0),
    dict(epochs=50, batch_size=32, learning_rate=1e-3),
    dict(epochs=50, batch_size=64, learning_rate=1e-3, latent_dim=32),
]


def main():
    p = make_parser(__doc__, classes=range(10))  # prints only: --out is not used
    p.add_argument("--budget", type=float, default=400, help="seconds; stops starting new settings")
    args = p.parse_args()
    X, y = load_mnist_5k()
    splits = {k: one_class_split(X, y, k, random_state=0) for k in args.classes}
    t0 = time.time()
    for setting in SETTINGS:
        if time.time() - t0 > args.budget:
            break
        res = []
        start = time.time()
        for k, (X_train, X_test, y_test) in splits.items():
            det = make_estimator("LSA", random_state=0, device=args.device, **setting).fit(X_train)
            terms = det.score_components(X_test)
            res.append((auroc(y_test, det.score_samples(X_test)), auroc(y_test, -terms["rec"]),
                        auroc(y_test, -terms["llk"])))
        res = np.array(res)
        print(f"{setting}: NS {res[:, 0].mean():.3f} REC {res[:, 1].mean():.3f} "
              f"LLK {res[:, 2].mean():.3f} per-class NS {np.round(res[:, 0], 3).tolist()} "
              f"({time.time() - start:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
