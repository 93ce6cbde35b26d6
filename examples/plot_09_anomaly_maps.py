"""
Anomaly maps: where in an image the score comes from
====================================================

``score_maps`` returns, for every pixel, the share of a sample's novelty score that comes
from it (for an autoencoder, its squared reconstruction error). Here an autoencoder
trained on zeros scores zeros with a bright square pasted on them, and
:func:`~sknovelty.plotting.plot_anomaly_map` overlays each map on its image: the square
should light up.
"""

# %%
# Normal digits and a synthetic defect
# ------------------------------------
# The autoencoder trains on the zeros of a stratified 80 % split. The test zeros are used
# twice: as they are, and with a bright 3x3 square pasted at a random place (a local
# defect, the kind of anomaly a map can point to).
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

from sknovelty import AutoencoderDetector
from sknovelty.datasets import load_digits_images, one_class_split
from sknovelty.metrics import auroc
from sknovelty.plotting import plot_anomaly_map

X, y = load_digits_images()
X_train, X_test, y_test = one_class_split(X, y, normal_class=0, random_state=0)
clean = X_test[y_test == 1]

rng = np.random.RandomState(0)
defective = clean.copy()
corners = rng.randint(0, 8 - 3 + 1, size=(len(clean), 2))  # top-left corner of each square
square = np.zeros(clean.shape, dtype=bool)
for k, (r, c) in enumerate(corners):
    square[k, 0, r:r + 3, c:c + 3] = True
defective[square] = 1.0
print(f"{len(clean)} clean test zeros, the same with a 3x3 square")

# %%
# The detector
# ------------
# A small convolutional autoencoder (16 and 32 channels, 16-dimensional code, 30 epochs,
# one torch thread) so that the example runs in seconds; the defaults
# (``AutoencoderDetector(random_state=0)``) train a 64-dimensional code for 50 epochs.
det = AutoencoderDetector(latent_dim=16, hidden_dim=32, conv_channels=(16, 32), epochs=30,
                          batch_size=32, n_jobs=1, random_state=0, device="cpu").fit(X_train)

both = np.concatenate([clean, defective])
labels = np.r_[np.ones(len(clean)), -np.ones(len(defective))]
print(f"AUROC clean vs defective zeros: {auroc(labels, det.score_samples(both)):.3f}")

# %%
# Maps
# ----
# ``score_maps(X)`` has the shape of ``X``: one value per pixel, higher = more novel,
# scaled like the score (each term divided by its normalisation range), so that a map
# sums to the sample's novelty up to a constant. The share of each map's total that falls
# inside the square tells how well the map locates the defect; the square covers 9 of
# the 64 pixels (14 %).
maps = det.score_maps(defective)
inside = (maps * square).sum(axis=(1, 2, 3)) / maps.sum(axis=(1, 2, 3))
print(f"share of the map inside the square: median {np.median(inside):.0%} "
      f"(square: {9 / 64:.0%} of the pixels)")
clean_maps = det.score_maps(clean)

# %%
# Three defective zeros (top) and the same zeros without the square (bottom), each with
# its map overlaid. All six maps share one colour scale, so that colours compare across
# images: the square (dashed outline) is where the reconstruction fails. A clean zero's
# map is faint, its error spread along the strokes that the small autoencoder reproduces
# imperfectly.
show = [0, 1, 2]
vmax = max(maps[show].max(), clean_maps[show].max())
fig, axes = plt.subplots(2, len(show), figsize=(3.2 * len(show), 5.6))
for j, k in enumerate(show):
    for i, (images, m, name) in enumerate([(defective, maps, "with square"),
                                            (clean, clean_maps, "clean")]):
        ax = plot_anomaly_map(images[k], m[k], ax=axes[i, j], alpha=0.5)
        ax.images[1].set_clim(0, vmax)
        ax.set_title(f"{name}\nmap total {m[k].sum():.2f}", fontsize=9)
    r, c = corners[k]  # outline where the square was pasted
    axes[0, j].add_patch(Rectangle((c - 0.5, r - 0.5), 3, 3, fill=False, edgecolor="white",
                                   linewidth=1.5, linestyle="--"))
fig.suptitle("autoencoder trained on zeros: squared reconstruction error", fontsize=10)
fig.tight_layout()
