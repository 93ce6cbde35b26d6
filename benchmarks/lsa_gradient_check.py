"""How much of LSA's encoder training comes from the latent term (issue 18), measured.

LSA minimises ``REC + lam * LLK`` (eq. 4). The LLK's target bins are computed from a detached
code (as in the official code), so the latent term reaches the encoder only through the
estimator's conditioning inputs. This script measures, on MNIST-5k (one-class split of
``one_class.py``, seed 0), for each class in ``--classes``:

* the gradient norm on the encoder's parameters of REC and of ``lam * LLK`` separately, on
  one batch of 64 training images in training mode, after one epoch and after the fit;
* how far the fitted LSA's reconstruction errors are from those of an ``AutoencoderDetector``
  with the same seed and the same training (epochs, batch, learning rate): the largest
  relative difference over the test images, and Spearman's correlation of the two.

If the latent term shaped the code, the two autoencoders would differ. Writes
``lsa_gradient_check.md`` / ``.json``.

    python benchmarks/lsa_gradient_check.py                  # classes 3 and 5, 50 epochs
    python benchmarks/lsa_gradient_check.py --classes 0 --epochs 2   # the committed result

The committed ``lsa_gradient_check.md`` is the short run (class 0, 2 epochs, ~1 minute); the
50-epoch run (about 8 minutes per class on 2 AMD cores) has not been done yet.
"""

import numpy as np
import torch
from scipy.stats import spearmanr

from _common import make_parser, provenance, provenance_lines, save_result  # noqa: E402

from sknovelty import AutoencoderDetector, LatentAutoregressiveDetector  # noqa: E402
from sknovelty.datasets import load_mnist_5k, one_class_split  # noqa: E402
from sknovelty.lsa import LSALoss  # noqa: E402


def encoder_gradients(det, X):
    """(||grad REC||, ||grad lam LLK||) over the encoder's parameters, one batch, train mode."""
    module = det.net_.module_
    module.train()
    x = torch.as_tensor(X[:64], device=det.device_)
    norms = []
    for term in ("rec", "llk"):
        module.zero_grad()
        terms = LSALoss(det.lam).per_sample(module(x), x)
        loss = terms[term].mean() * (det.lam if term == "llk" else 1.0)
        loss.backward()
        grads = [p.grad.flatten() for p in module.encoder.parameters() if p.grad is not None]
        norms.append(float(torch.cat(grads).norm()) if grads else 0.0)
    module.zero_grad()
    module.eval()
    return norms


def main():
    parser = make_parser(__doc__, classes=(3, 5), device=None, epochs=True)
    args = parser.parse_args()
    X, y = load_mnist_5k()
    rows = []
    for k in args.classes:
        X_train, X_test, _ = one_class_split(X, y, k, random_state=0)
        epochs = args.epochs or 50
        early = LatentAutoregressiveDetector(epochs=1, random_state=0, device="cpu").fit(X_train)
        start = encoder_gradients(early, X_train)
        lsa = LatentAutoregressiveDetector(epochs=epochs, random_state=0, device="cpu").fit(X_train)
        ae = AutoencoderDetector(epochs=epochs, random_state=0, device="cpu").fit(X_train)
        end = encoder_gradients(lsa, X_train)
        rec_lsa = lsa.score_components(X_test)["rec"]
        rec_ae = ae.score_components(X_test)["rec"]
        rows.append(dict(cls=k, epochs=epochs, rec_grad_start=start[0], llk_grad_start=start[1],
                         rec_grad_end=end[0], llk_grad_end=end[1],
                         max_rel_diff=float(np.max(np.abs(rec_lsa - rec_ae) / np.abs(rec_ae))),
                         spearman=float(spearmanr(rec_lsa, rec_ae)[0])))
        print(rows[-1], flush=True)
    info = provenance(args)
    lines = ["# LSA: how much the latent term trains the encoder", "", *provenance_lines(info),
             "- data: MNIST-5k, one-class split of seed 0, LSA and AE at their defaults with the "
             "same seed (the same initial autoencoder weights)", "",
             "| class | epochs | encoder grad REC, epoch 1 | lam LLK, epoch 1 | REC, end | lam LLK, end "
             "| max rel. diff. of REC (LSA vs AE) | Spearman |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['cls']} | {r['epochs']} | {r['rec_grad_start']:.3g} | "
                     f"{r['llk_grad_start']:.3g} | {r['rec_grad_end']:.3g} | {r['llk_grad_end']:.3g} "
                     f"| {r['max_rel_diff']:.2g} | {r['spearman']:.6f} |")
    save_result(args.out, "lsa_gradient_check", lines, {"provenance": info, "rows": rows})


if __name__ == "__main__":
    main()
