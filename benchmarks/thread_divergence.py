"""How fast do two fits that differ only in torch's thread count drift apart, epoch by epoch?

``threads.py`` measures where the drift ends (the AUROC of a default fit with 1 and with 2
threads). This script shows how it grows: each method is fitted twice on the same rows with
the same seed, once with ``n_jobs=1`` and once with ``n_jobs=2``, and after every epoch the
relative difference of the two weight vectors, ``||w1 - w2|| / ||w1||`` (over a fixed random
sample of at most 200,000 weights), is recorded. Rounding starts it at ~1e-7; a method whose
training amplifies small differences (a two-player game, a quantised latent) reaches O(1)
within a few epochs, while a plain autoencoder stays small.

    python benchmarks/thread_divergence.py                       # AE, LSA, OLED, LTG
    python benchmarks/thread_divergence.py --methods OLED --rows 120 --epochs 10
"""

import numpy as np
import torch
from skorch.callbacks import Callback

from _common import (estimator_names, make_estimator, make_parser, provenance,  # noqa: E402
                     provenance_lines, save_result)

from sknovelty.datasets import load_mnist_5k, one_class_split  # noqa: E402


class WeightSample(Callback):
    """After every epoch, a fixed random sample of the module's weights (a float64 copy)."""

    def __init__(self, size=200_000, seed=0):
        self.size, self.seed = size, seed

    def initialize(self):
        self.samples_, self.index_ = [], None
        return self

    def on_epoch_end(self, net, **kwargs):
        flat = torch.cat([p.detach().flatten().cpu() for p in net.module_.parameters()])
        if self.index_ is None:
            rng = np.random.RandomState(self.seed)
            self.index_ = np.sort(rng.choice(len(flat), min(self.size, len(flat)), replace=False))
        self.samples_.append(flat[self.index_].double().numpy())


def drift(name, X, epochs, seed):
    """Relative weight difference per epoch, and the share of sampled weights whose value
    after the first epoch differs by more than half a learning rate (Adam moves every weight
    by about one learning rate per step whatever its gradient's size, so rounding noise in a
    tiny gradient becomes a full step; plain SGD would scale it down with the gradient)."""
    runs = []
    for n_jobs in (1, 2):
        det = make_estimator(name, random_state=seed, device="cpu", epochs=epochs, n_jobs=n_jobs,
                             callbacks=[("weights", WeightSample())])
        det.fit(X)
        runs.append(dict(det.net_.callbacks_)["weights"].samples_)
    relative = [float(np.linalg.norm(a - b) / np.linalg.norm(a)) for a, b in zip(*runs)]
    flipped = float(np.mean(np.abs(runs[0][0] - runs[1][0]) > det.learning_rate / 2))
    steps = det.net_.history[0, "train_batch_count"]
    return dict(relative=relative, half_step_share=flipped, steps_per_epoch=steps,
                learning_rate=det.learning_rate)


def main(argv=None):
    # default: the committed table's four (a plain autoencoder, a quantised latent, a
    # two-player game, pseudo anomalies); any deep estimator taking images with --methods
    parser = make_parser(__doc__, methods=["AE", "LSA", "OLED", "LTG"], device=None,
                         method_choices=estimator_names(deep=True, inputs="images",
                                                        variants=True))
    parser.add_argument("--rows", type=int, default=120, help="training rows (class 0)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    X, y = load_mnist_5k()
    X_train = one_class_split(X, y, 0, random_state=args.seed)[0][:args.rows]
    rows = {}
    for name in args.methods:
        rows[name] = drift(name, X_train, args.epochs, args.seed)
        print(name, rows[name], flush=True)
    info = provenance(args)
    lines = ["# Weight drift between a 1-thread and a 2-thread fit, per epoch", "",
             *provenance_lines(info),
             f"- protocol: the first {args.rows} training images of MNIST-5k class 0 (seed-"
             f"{args.seed} split), each method at its defaults except {args.epochs} epochs, "
             f"seed {args.seed}, fitted with n_jobs=1 and with n_jobs=2; cell = ||w1 - w2|| / "
             "||w1|| after that epoch over a fixed random sample of at most 200,000 weights; "
             "'> lr/2 after epoch 1' = share of those weights whose values after the first "
             "epoch differ by more than half the learning rate", "",
             "| method | steps per epoch | > lr/2 after epoch 1 | "
             + " | ".join(f"epoch {e + 1}" for e in range(args.epochs)) + " |",
             "|---" * (args.epochs + 3) + "|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['steps_per_epoch']} | {100 * r['half_step_share']:.1f}% | "
                     + " | ".join(f"{v:.1e}" for v in r["relative"]) + " |")
    save_result(args.out, "thread_divergence", lines, {"provenance": info, "rows": rows})


if __name__ == "__main__":
    main()
