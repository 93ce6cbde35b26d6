"""
LTG's pseudo anomalies
======================

LTG (learning to generate pseudo anomalies) trains an autoencoder to reconstruct normal
images well and *pseudo anomalies*, normal images plus noise, badly. The noise comes from
a generator network trained alongside (``noise="learned"``) or from a Gaussian
(``noise="gaussian"``). ``PseudoAnomalyDetector.pseudo_anomalies(X)`` shows what the
autoencoder was taught to reject; here next to the normal digits they were made from.
"""

# %%
# Fit with learned and with Gaussian noise
# ----------------------------------------
# Normal class: the digit 3. The networks are scaled down to an eighth of the paper's
# channel counts (``width=0.125``) and train 12 epochs with one torch thread, so that the
# example runs in seconds; ``PseudoAnomalyDetector(random_state=0)`` trains the paper's
# sizes for 30 epochs. ``p=0.5`` (the default) replaces half of the training images by
# their pseudo anomaly at every step.
import matplotlib.pyplot as plt
import numpy as np

from sknovelty import PseudoAnomalyDetector
from sknovelty.datasets import load_digits_images, one_class_split
from sknovelty.metrics import auroc

X, y = load_digits_images()
X_train, X_test, y_test = one_class_split(X, y, normal_class=3, random_state=0)

dets = {
    noise: PseudoAnomalyDetector(noise=noise, width=0.125, epochs=12, batch_size=32, n_jobs=1,
                                 random_state=0, device="cpu").fit(X_train)
    for noise in ("learned", "gaussian")
}
for noise, det in dets.items():
    print(f"noise={noise!r}: test AUROC {auroc(y_test, det.score_samples(X_test)):.3f}")

# %%
# The training history records ``delta_sq``, the mean squared noise per epoch. The
# learned generator looks for the noisiest pseudo anomalies that the autoencoder still
# reproduces well (eq. 7 of the paper: its loss is the autoencoder's error on them minus
# ``lam`` times the noise's size), while the autoencoder is trained to map them back to the
# clean image. The Gaussian noise has a fixed size (``sigma=0.5`` in the network's range,
# then clipped to it).
fig, ax = plt.subplots(figsize=(5, 3))
for noise, det in dets.items():
    ax.plot(det.net_.history[:, "delta_sq"], marker=".", label=f"noise={noise!r}")
ax.set_xlabel("epoch")
ax.set_ylabel("mean squared noise")
ax.legend()
fig.tight_layout()

# %%
# Normal digits and their pseudo anomalies
# ----------------------------------------
# ``pseudo_anomalies`` returns ``clip(X + noise)`` in the units of ``X`` (here [0, 1]):
# for ``"learned"`` the generator's noise for those images (deterministic), for
# ``"gaussian"`` a draw seeded by ``random_state`` (the same at every call). The rows
# below show six training threes, then each detector's pseudo anomalies. Gaussian noise
# keeps the digit visible under speckle. The learned generator, pushed towards large
# noise, has here settled on one saturated black-and-white pattern that hides the digit
# entirely and is the same whatever the input. How the learned pseudo anomalies look
# depends much on ``lam``, the network size and the training length; at these small
# settings, read them as an illustration of the mechanism, not of the paper's results.
images = X_train[:6]
rows = {"normal": images}
rows.update({f"{noise} noise": det.pseudo_anomalies(images) for noise, det in dets.items()})
for name, imgs in rows.items():
    print(f"{name:15s} mean |change| per pixel: {np.abs(imgs - images).mean():.3f}")

fig, axes = plt.subplots(len(rows), len(images), figsize=(1.3 * len(images), 1.5 * len(rows)))
for i, (name, imgs) in enumerate(rows.items()):
    for j in range(len(images)):
        axes[i, j].imshow(imgs[j, 0], cmap="gray", vmin=0, vmax=1)
        axes[i, j].set_xticks([])
        axes[i, j].set_yticks([])
    axes[i, 0].set_ylabel(name, fontsize=8)
fig.suptitle("training threes and the pseudo anomalies made from them", fontsize=9)
fig.tight_layout()

# %%
# What the autoencoder learned
# ----------------------------
# The score is the reconstruction error, min-max scaled on held-out normal images. A
# model trained to reject pseudo anomalies should score them as novel: their normality
# scores fall far below those of the normal images they came from.
for noise, det in dets.items():
    normal = det.score_samples(images)
    pseudo = det.score_samples(rows[f"{noise} noise"])
    print(f"noise={noise!r}: mean normality score of the normal images {normal.mean():.2f}, "
          f"of their pseudo anomalies {pseudo.mean():.2f}")
