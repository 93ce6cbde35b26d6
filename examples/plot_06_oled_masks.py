"""
OLED's learned masks
====================

OLED trains a reconstructor against a mask module that learns which pixels to hide so
that the image is hard to reconstruct. ``AdversarialMaskingDetector.masks(X)`` returns
the binary mask of every image (1 kept, 0 hidden); here they are drawn over the digits
for the paper's threshold unit and for the library's differentiable alternative.
"""

# %%
# Two detectors, two threshold units
# ----------------------------------
# The mask module is a small convolutional generator followed by a threshold unit that
# hides the ``mask_ratio`` share of pixels with the highest activations. The unit's
# gradient comes from a surrogate: ``threshold="relu"`` is the paper's eq. 2, whose
# gradient is essentially zero; ``threshold="sigmoid"`` (a documented deviation from the
# paper) passes a usable gradient to the generator.
#
# Settings are small for speed (16 and 32 channels, 20 epochs, one torch thread); the
# defaults (``AdversarialMaskingDetector(random_state=0)``) train the official MNIST
# networks. ``mask_ratio=0.25`` hides 16 of the 64 pixels of a digit, twice the default
# share, so that the masks are easy to see.
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap

from sknovelty import AdversarialMaskingDetector
from sknovelty.datasets import load_digits_images, one_class_split
from sknovelty.metrics import auroc

X, y = load_digits_images()
X_train, X_test, y_test = one_class_split(X, y, normal_class=3, random_state=0)


def make_oled(threshold):
    return AdversarialMaskingDetector(
        mask_ratio=0.25, threshold=threshold, channels=(16, 32), latent_dim=16,
        mask_channels=(8,), epochs=20, batch_size=32, n_jobs=1, random_state=0, device="cpu",
    )


dets = {thr: make_oled(thr).fit(X_train) for thr in ("relu", "sigmoid")}

# %%
# Scores
# ------
# OLED has four scores (sec. 3.6 of the paper), all in ``score_components``, higher =
# more novel: ``rec`` (error on the full image), ``mask`` (error on the masked image),
# ``cont`` (error on the hidden pixels only) and ``avg``, their normalised mean, which
# ``score_samples`` returns by default (``score_type="avg"``).
for thr, det in dets.items():
    terms = det.score_components(X_test)
    print(f"threshold={thr!r}: " + ", ".join(
        f"AUROC {name} {auroc(y_test, -values):.3f}" for name, values in terms.items()))

# %%
# Masks over the digits
# ---------------------
# The first row shows test digits (four threes, the normal class, then two other digits);
# the rows below paint the hidden pixels of each model's mask in red. With the paper's
# unit, the generator of this small network receives no gradient at all here: the masks
# are those of its random initialisation and hide much of the blank border. With the
# sigmoid surrogate, the masks move onto the strokes, the pixels that are hardest to guess
# from their context. The share of ink under the hidden pixels says the same in numbers.
rows = np.r_[np.flatnonzero(y_test == 1)[:4], np.flatnonzero(y_test == -1)[:2]]
images = X_test[rows]
masks = {thr: det.masks(images) for thr, det in dets.items()}  # (6, 1, 8, 8), 1 = kept

for thr, det in dets.items():
    hidden = 1 - det.masks(X_test)
    ink = (X_test * hidden).sum() / hidden.sum()
    print(f"threshold={thr!r}: mean pixel value under the hidden pixels {ink:.2f} "
          f"(mean over all pixels {X_test.mean():.2f})")

fig, axes = plt.subplots(3, len(rows), figsize=(1.4 * len(rows), 4.6))
for j in range(len(rows)):
    axes[0, j].imshow(images[j, 0], cmap="gray", vmin=0, vmax=1)
    axes[0, j].set_title("normal" if y_test[rows[j]] == 1 else "novel", fontsize=8)
    for i, thr in enumerate(dets, start=1):
        hidden = np.ma.masked_where(masks[thr][j, 0] == 1, np.ones((8, 8)))
        axes[i, j].imshow(images[j, 0], cmap="gray", vmin=0, vmax=1)
        axes[i, j].imshow(hidden, cmap=ListedColormap(["red"]), alpha=0.6)
for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
for i, label in enumerate(["image", "relu mask", "sigmoid mask"]):
    axes[i, 0].set_ylabel(label, fontsize=8)
fig.suptitle("OLED: hidden pixels in red", fontsize=9)
fig.tight_layout()
