"""Whether OLED's learned masks depend on the input, and what that is worth to s_cont.

OLED's mask module receives almost no gradient through its threshold (see the docs' design
decision on OLED's threshold unit), so its masks might drift into one fixed region; the
context score s_cont would then be that of a fixed mask. Per one-class MNIST-5k task (the
class's digits train, 20% held out for the test as in ``one_class_mnist.py``), this fits
``AdversarialMaskingDetector`` at its defaults and measures on the test digits:

* the AUROC of s_cont with each digit's own mask, and with one fixed mask for all: the
  pixels the module hides most often, as many as a mask hides;
* the mean intersection over union of the hidden sets of 500 random pairs of test digits
  (1: every digit gets the same mask);
* the share of hidden pixels that are ink (value > 0.5), against the share of ink overall.

The other three scores are reported beside. One seed; nothing is chosen on these labels.

    python benchmarks/oled_mask_dependence.py --classes 0 2 8
"""

import numpy as np
import torch
from _common import make_parser, provenance, provenance_lines, save_result

from sknovelty import AdversarialMaskingDetector
from sknovelty.datasets import load_mnist_5k, one_class_split
from sknovelty.metrics import auroc


def fixed_mask_context_scores(det, X, hidden):
    """s_cont's per-image sums (eq. 6) with the same hidden pixels ``hidden`` (flat bool)
    for every image of ``X``, from the fitted reconstructor R."""
    module = det.net_.module_
    keep = torch.from_numpy((~hidden).astype(np.float32)).view(1, 1, *X.shape[2:])
    with torch.inference_mode():
        x = module.rescale(torch.from_numpy(X))
        return ((x - module.reconstructor(x * keep)).abs() * (1 - keep)).flatten(1).sum(1).numpy()


def measure(X, y, k, seed):
    X_train, X_test, y_test = one_class_split(X, y, k, test_size=0.2, random_state=seed)
    det = AdversarialMaskingDetector(random_state=seed).fit(X_train)
    scores = det.score_components(X_test)
    hidden = (det.masks(X_test)[:, 0] < 0.5).reshape(len(X_test), -1)
    n_hidden = int(round(hidden.sum(1).mean()))
    most = np.zeros(hidden.shape[1], dtype=bool)
    most[np.argsort(-hidden.mean(0), kind="stable")[:n_hidden]] = True
    pairs = np.random.RandomState(seed).randint(len(hidden), size=(2, 500))
    pairs = pairs[:, pairs[0] != pairs[1]]
    a, b = hidden[pairs[0]], hidden[pairs[1]]
    iou = float(np.mean((a & b).sum(1) / np.maximum((a | b).sum(1), 1)))
    ink = X_test.reshape(len(X_test), -1) > 0.5
    row = dict(cls=k, seed=seed, hidden_pixels=n_hidden, pair_iou=iou,
               ink_share_hidden=float((ink & hidden).sum() / hidden.sum()),
               ink_share_all=float(ink.mean()),
               s_cont_fixed_mask=auroc(y_test, -fixed_mask_context_scores(det, X_test, most)))
    for name in ("avg", "mask", "rec", "cont"):
        row[f"s_{name}"] = auroc(y_test, -scores[name])
    return row


def main():
    parser = make_parser(__doc__, seeds=(0,), classes=(0, 2, 8), device=None)
    args = parser.parse_args()
    info = provenance(args)
    X, y = load_mnist_5k()
    rows = []
    for seed in args.seeds:
        for k in args.classes:
            rows.append(measure(X, y, k, seed))
            print(rows[-1], flush=True)
    cols = ("s_cont", "s_cont_fixed_mask", "s_mask", "s_rec", "s_avg", "pair_iou",
            "ink_share_hidden", "ink_share_all")
    lines = ["# OLED: do the learned masks depend on the input?", "",
             *provenance_lines(info), "",
             "One-class MNIST-5k, `AdversarialMaskingDetector` at its defaults; per class and "
             "seed: s_cont's AUROC with each digit's own mask and with one fixed mask (the "
             "pixels hidden most often); the mean IoU of two digits' hidden sets; the share "
             "of hidden pixels that are ink, and of all pixels.", "",
             "| class | seed | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for r in rows:
        lines.append(f"| {r['cls']} | {r['seed']} | "
                     + " | ".join(f"{r[c]:.3f}" for c in cols) + " |")
    save_result(args.out, "oled_mask_dependence", lines, {"provenance": info, "rows": rows})


if __name__ == "__main__":
    main()
