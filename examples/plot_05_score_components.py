"""
Reading LSA's two novelty terms
===============================

LSA's novelty score adds two terms: the reconstruction error of its autoencoder (REC) and
the negative log-likelihood of the latent code under its autoregressive density
estimator (LLK). ``score_components`` returns both, raw, for every sample; a scatter plot
of one against the other shows which term tells normal and novel digits apart.
"""

# %%
# Fit LSA on the digit 3
# ----------------------
# Small network and 20 epochs so that the example runs in seconds; the defaults
# (``LatentAutoregressiveDetector(random_state=0)``) train a 64-dimensional code with 100
# bins for 50 epochs. ``n_jobs=1`` (one torch thread) is the fastest for networks this
# small.
import matplotlib.pyplot as plt
import numpy as np

from sknovelty import LatentAutoregressiveDetector
from sknovelty.datasets import load_digits_images, one_class_split
from sknovelty.metrics import auroc

X, y = load_digits_images()
X_train, X_test, y_test = one_class_split(X, y, normal_class=3, random_state=0)
det = LatentAutoregressiveDetector(
    latent_dim=16, hidden_dim=32, conv_channels=(16, 32), n_bins=16,
    estimator_channels=(8, 8), epochs=20, batch_size=32, n_jobs=1, random_state=0,
    device="cpu",
).fit(X_train)

# %%
# The raw terms
# -------------
# ``score_components`` gives ``{"rec": ..., "llk": ...}``, each *higher for more novel*
# samples (the opposite direction of ``score_samples``). ``score_samples`` is minus their
# sum after each is min-max scaled with constants fixed on held-out training threes
# (``normalization_``), so the two terms weigh the same whatever their units.
terms = det.score_components(X_test)
scores = det.score_samples(X_test)
for name, (lo, hi) in det.normalization_.items():
    print(f"{name}: held-out min {lo:.3f}, max {hi:.3f}")
print(f"AUROC of REC alone: {auroc(y_test, -terms['rec']):.3f}")
print(f"AUROC of LLK alone: {auroc(y_test, -terms['llk']):.3f}")
print(f"AUROC of the sum:   {auroc(y_test, scores):.3f}")

# %%
# Check the recipe: minus the sum of the min-max scaled terms is ``score_samples``.
scaled = {name: (terms[name] - lo) / (hi - lo) for name, (lo, hi) in det.normalization_.items()}
print("score_samples == -(scaled REC + scaled LLK):",
      np.allclose(scores, -(scaled["rec"] + scaled["llk"])))

# %%
# Normal and novel digits in the plane of the two terms
# ------------------------------------------------------
# Each dot is a test digit, at its REC (x) and LLK (y). A term separates the two groups
# when their dots fall apart along its axis. Here REC alone separates them better than
# LLK alone (the AUROCs printed above), as on MNIST in ``benchmarks/results/``, where
# LSA's LLK alone is far below its REC alone; the sum can still gain from LLK where REC
# hesitates. The dashed lines are the ranges of the held-out training threes, the (min,
# max) of the normalisation.
fig, ax = plt.subplots(figsize=(5.5, 4.5))
for label, name, marker in [(-1, "novel (other digits)", "x"), (1, "normal (3)", "o")]:
    rows = y_test == label
    ax.scatter(terms["rec"][rows], terms["llk"][rows], s=14, marker=marker, alpha=0.7,
               label=name)
for value in det.normalization_["rec"]:
    ax.axvline(value, color="grey", linestyle="--", linewidth=0.8)
for value in det.normalization_["llk"]:
    ax.axhline(value, color="grey", linestyle="--", linewidth=0.8)
ax.set_xscale("log")
ax.set_xlabel("REC: reconstruction error (log scale)")
ax.set_ylabel("LLK: -log h(z)")
ax.set_title("LSA's novelty terms on test digits")
ax.legend()
fig.tight_layout()
