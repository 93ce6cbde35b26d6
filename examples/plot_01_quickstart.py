"""
Quick start: one-class novelty detection on digits
==================================================

Fit a deep novelty detector (LSA, Latent Space Autoregression) on images of a single digit,
the *normal* class, and score held-out images of all ten digits. The normality scores give
an AUROC, their histograms show how well normal and novel digits separate, and ``predict``
turns them into +1 (normal) / -1 (novel) decisions with the threshold fixed at fit.
"""

# %%
# Data: normal digits for training, every digit for testing
# ---------------------------------------------------------
# :func:`~sknovelty.datasets.load_digits_images` returns scikit-learn's 1,797 8x8 digits as
# images of shape ``(n, 1, 8, 8)`` with values in [0, 1]. The one-class protocol
# (:func:`~sknovelty.datasets.one_class_split`) trains on the zeros of a stratified 80 %
# split and tests on the other 20 % of every class, labelled +1 (a zero) or -1 (any other
# digit).
import matplotlib.pyplot as plt
import numpy as np

from sknovelty import LatentAutoregressiveDetector
from sknovelty.datasets import load_digits_images, one_class_split
from sknovelty.metrics import auroc
from sknovelty.plotting import plot_score_histogram

X, y = load_digits_images()
X_train, X_test, y_test = one_class_split(X, y, normal_class=0, random_state=0)
print(f"training on {len(X_train)} zeros; testing on {len(X_test)} digits, "
      f"{(y_test == 1).sum()} of them zeros")

# %%
# Fit the detector
# ----------------
# The settings are small so that the example runs in seconds on a CPU: a tiny network
# (16-dimensional code, 16 and 32 convolution channels), 20 epochs, and one torch thread
# (``n_jobs=1``), which is the fastest for networks this small. The library's defaults
# (``LatentAutoregressiveDetector(random_state=0)``: 64-dimensional code, 50 epochs) are
# the settings of the benchmarks in ``benchmarks/`` and take about a minute per class on
# MNIST. ``fit`` holds out 10 % of the training zeros (``validation_fraction``) to fix the
# normalisation of the score and the decision threshold ``offset_``.
det = LatentAutoregressiveDetector(
    latent_dim=16, hidden_dim=32, conv_channels=(16, 32), n_bins=16, estimator_channels=(8, 8),
    epochs=20, batch_size=32, n_jobs=1, random_state=0, device="cpu",
)
det.fit(X_train)

# %%
# Score and evaluate
# ------------------
# ``score_samples`` is a *normality* score: higher means more normal. The AUROC is the
# probability that a random zero scores higher than a random other digit (0.5 is chance,
# 1.0 a perfect ranking). Zero is the easiest digit to tell apart, so even this small model
# ranks (nearly) every zero above every other digit; other normal classes are harder (try
# ``normal_class=8``).
scores = det.score_samples(X_test)
print(f"AUROC: {auroc(y_test, scores):.3f}")

# %%
# The histograms of the scores of zeros and of other digits, with the threshold
# ``offset_`` as a dashed line: ``predict`` calls a sample novel (-1) when its score falls
# left of it. By default (``contamination=0.1``) the threshold is the 10th percentile of
# the held-out training zeros, so about one zero in ten is flagged.
fig, ax = plt.subplots(figsize=(6, 3.5))
plot_score_histogram(scores, y_test, threshold=det.offset_, ax=ax)
ax.set_title("LSA trained on zeros: test scores")
fig.tight_layout()

# %%
# Decisions
# ---------
# ``predict`` returns +1 / -1 (scikit-learn's outlier convention). The share of zeros
# flagged is the false-alarm rate, the share of other digits flagged the detection rate.
# With only ~14 held-out zeros behind the threshold, the false-alarm rate on new zeros can
# be far from 10 %; see the p-values example for thresholds with a guarantee.
pred = det.predict(X_test)
print(f"zeros flagged as novel:        {np.mean(pred[y_test == 1] == -1):.1%}")
print(f"other digits flagged as novel: {np.mean(pred[y_test == -1] == -1):.1%}")

# %%
# The hardest cases: the four zeros with the lowest scores and the four other digits with
# the highest, each with its score and decision.
zeros, others = np.flatnonzero(y_test == 1), np.flatnonzero(y_test == -1)
hardest = np.r_[zeros[np.argsort(scores[zeros])[:4]], others[np.argsort(scores[others])[-4:]]]
fig, axes = plt.subplots(1, 8, figsize=(9, 1.9))
for ax, i in zip(axes, hardest):
    ax.imshow(X_test[i, 0], cmap="gray_r")
    ax.set_title(f"{'zero' if y_test[i] == 1 else 'other'}\n{scores[i]:.2f}: "
                 f"{'normal' if pred[i] == 1 else 'novel'}", fontsize=8)
    ax.set_axis_off()
fig.suptitle("least normal-looking zeros (left), most normal-looking other digits (right)",
             fontsize=9)
fig.tight_layout()
