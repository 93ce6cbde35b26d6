"""
Conformal p-values and false-alarm thresholds
=============================================

Every sknovelty detector turns its scores into conformal p-values (``predict_pvalues``)
and can set its threshold for a target false-alarm rate (``set_false_alarm_rate``). The
guarantee behind both needs reference scores of normal rows the model was not trained on;
``calibrate`` supplies them. This example checks the false-alarm rate on fresh normal
rows against the target, and shows what goes wrong when the reference rows were seen in
training, as with the whitened baselines.
"""

# %%
# Three disjoint sets of normal rows
# ----------------------------------
# Here the digits 0 to 4 are normal and 5 to 9 novel. The normal images are split three
# ways: a training set, a calibration set the model never sees in training, and a
# "fresh" set that plays the future normal data on which the false-alarm rate is measured.
import warnings

import matplotlib.pyplot as plt
import numpy as np

from sknovelty import AutoencoderDetector, WhitenedKDE
from sknovelty.datasets import load_digits_images
from sknovelty.metrics import auroc

X, y = load_digits_images()
normal, novel = X[y < 5], X[y >= 5]
order = np.random.RandomState(0).permutation(len(normal))
X_train, X_calib, X_fresh = (normal[i] for i in np.array_split(order, [300, 600]))
print(f"normal rows: {len(X_train)} train, {len(X_calib)} calibration, {len(X_fresh)} fresh; "
      f"{len(novel)} novel rows")

# %%
# A deep detector: p-values from its held-out rows
# -------------------------------------------------
# ``fit`` keeps the scores of the normal rows it held out (``validation_fraction=0.1``,
# 30 rows here) in ``reference_scores_``. The p-value of a sample,
# ``(1 + #{r <= s(x)}) / (n_ref + 1)``, is about the share of those reference scores at or
# below its own score: small means novel. For a normal sample exchangeable with the reference rows,
# ``P(p <= a) <= a`` for every level ``a`` (split-conformal inference).
#
# A small autoencoder trained 30 epochs, for speed; the defaults train 50 epochs with a
# 64-dimensional code. The guarantee does not depend on how good the model is, only on
# the reference rows being unseen normal data; a better model detects more.
det = AutoencoderDetector(latent_dim=16, hidden_dim=32, conv_channels=(16, 32), epochs=30,
                          batch_size=32, n_jobs=1, random_state=0, device="cpu").fit(X_train)
print(f"reference rows: {len(det.reference_scores_)}, held out from training: "
      f"{det.reference_held_out_}")
labels = np.r_[np.ones(len(X_fresh)), -np.ones(len(novel))]
print(f"AUROC fresh normal vs novel: "
      f"{auroc(labels, det.score_samples(np.concatenate([X_fresh, novel]))):.3f}")

# %%
# A threshold for 5 % false alarms
# --------------------------------
# ``set_false_alarm_rate(0.05)`` moves ``offset_`` so that ``predict`` flags exactly the
# samples with a p-value of at most 0.05. With 30 reference rows the threshold is the
# lowest of their scores, so for this one model the rate on new data scatters widely around
# 5 % (by about ``sqrt(0.05 * 0.95 / 30)``, 4 points). ``calibrate`` replaces the reference
# by the scores of the 300 calibration rows and recomputes ``offset_`` for the same rate.


def false_alarms(model):
    return np.mean(model.predict(X_fresh) == -1)


det.set_false_alarm_rate(0.05)
print(f"30 reference rows:  offset {det.offset_:.3f}, "
      f"false alarms on fresh normal rows {false_alarms(det):.1%}, "
      f"novel rows flagged {np.mean(det.predict(novel) == -1):.1%}")
det.calibrate(X_calib)
print(f"300 reference rows: offset {det.offset_:.3f}, "
      f"false alarms on fresh normal rows {false_alarms(det):.1%}, "
      f"novel rows flagged {np.mean(det.predict(novel) == -1):.1%}")

# %%
# The p-values of fresh normal rows are spread evenly over [0, 1] (that is what makes
# ``P(p <= a) <= a`` hold); those of novel rows pile up near 0. The dashed line is the
# 5 % level.
p_fresh, p_novel = det.predict_pvalues(X_fresh), det.predict_pvalues(novel)
fig, ax = plt.subplots(figsize=(6, 3.5))
bins = np.linspace(0, 1, 21)
ax.hist(p_fresh, bins=bins, density=True, alpha=0.5, label="fresh normal (0-4)")
ax.hist(p_novel, bins=bins, density=True, alpha=0.5, label="novel (5-9)")
ax.axvline(0.05, color="black", linestyle="--", label="level 0.05")
ax.set_xlabel("conformal p-value (calibrated on 300 rows)")
ax.set_ylabel("density")
ax.legend()
fig.tight_layout()

# %%
# The whitened baselines: in-sample reference scores
# --------------------------------------------------
# :class:`~sknovelty.WhitenedKDE` and :class:`~sknovelty.WhitenedOneClassSVM` hold out
# nothing: their reference scores are those of their training rows, which score more
# normal than new normal rows do. Their p-values are then too small, and
# ``predict_pvalues`` warns; thresholds from them flag too many normal rows.
kde = WhitenedKDE(n_components=16).fit(X_train)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    p_kde = kde.predict_pvalues(X_fresh)
print(f"reference held out: {kde.reference_held_out_}")
print(f"warning: {caught[0].message}")
kde.set_false_alarm_rate(0.05)
print(f"training rows as reference:    false alarms on fresh normal rows {false_alarms(kde):.1%}")
kde.calibrate(X_calib)
print(f"calibration rows as reference: false alarms on fresh normal rows {false_alarms(kde):.1%}")

# %%
# False alarms against the target, for every level
# ------------------------------------------------
# The share of fresh normal rows with a p-value at most ``a``, for ``a`` from 0 to 0.3.
# The guarantee says a calibrated curve stays on or under the diagonal up to chance
# (for 300 fresh rows and one calibration set, a few points either way); the KDE with its
# training rows as the reference lies far above it, off the top of the chart here.
levels = np.linspace(0, 0.3, 61)
curves = {
    "autoencoder, 300 calibration rows": p_fresh,
    "KDE, training rows (in-sample)": p_kde,
    "KDE, 300 calibration rows": kde.predict_pvalues(X_fresh),
}
fig, ax = plt.subplots(figsize=(5, 4.5))
for name, p in curves.items():
    rates = np.array([np.mean(p <= a) for a in levels])
    if rates.max() > 0.45:
        name += f" ({np.mean(p <= 0.05):.0%} at a = 0.05)"
    ax.plot(levels, rates, label=name)
ax.plot([0, 0.3], [0, 0.3], color="grey", linestyle="--", label="target")
ax.set_ylim(0, 0.45)
ax.set_xlabel("target false-alarm rate a")
ax.set_ylabel("false alarms on fresh normal rows")
ax.legend(fontsize=8)
fig.tight_layout()
