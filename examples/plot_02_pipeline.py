"""
A detector in a scikit-learn pipeline
=====================================

Every sknovelty detector is a scikit-learn estimator, so it can be the last step of a
:class:`~sklearn.pipeline.Pipeline`. Here PCA compresses flat 64-pixel digit rows and LSA
(Latent Space Autoregression) models the compressed vectors of one digit; the example
compares the AUROC for several numbers of PCA components.
"""

# %%
# Flat rows, one normal digit
# ---------------------------
# Pipelines pass 2-D arrays from step to step, so the 8x8 images become rows of 64 values.
# After PCA the detector sees plain vectors and builds its fully connected form: no
# ``image_shape`` is needed. The normal class is the digit 3, which is harder to tell
# apart from the others than 0 is.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline

from sknovelty import LatentAutoregressiveDetector
from sknovelty.datasets import load_digits_images, one_class_split
from sknovelty.metrics import auroc

X, y = load_digits_images()
X = X.reshape(len(X), -1)  # (1797, 64)
X_train, X_test, y_test = one_class_split(X, y, normal_class=3, random_state=0)
print(f"training rows: {X_train.shape}, test rows: {X_test.shape}")

# %%
# One pipeline
# ------------
# ``fit`` fits PCA on the training threes, then the detector on their projections;
# ``score_samples``, ``decision_function`` and ``predict`` of the pipeline transform the
# rows and call the detector's. The network and the number of epochs (30) are small so
# that the example runs in seconds; the defaults train a 64-dimensional code for 50
# epochs. ``n_jobs=1`` (one torch thread) is the fastest for networks this small.


def make_detector(n_components):
    return make_pipeline(
        PCA(n_components, random_state=0),
        LatentAutoregressiveDetector(
            latent_dim=min(n_components // 2, 8), hidden_dim=32, n_bins=16,
            estimator_channels=(8, 8), epochs=30, batch_size=32, n_jobs=1,
            random_state=0, device="cpu",
        ),
    )


pipe = make_detector(16).fit(X_train)
scores = pipe.score_samples(X_test)
print(pipe)
print(f"AUROC with 16 components: {auroc(y_test, scores):.3f}")
print(f"share of test rows predicted novel: {np.mean(pipe.predict(X_test) == -1):.1%} "
      f"(true share: {np.mean(y_test == -1):.1%})")

# %%
# How many components?
# --------------------
# The same pipeline with 4 to 32 components. Too few components throw away the strokes
# that tell a 3 from a 5 or an 8; with these small settings the curve is noisy (one seed,
# ~36 normal test rows), so read its trend rather than its exact values.
n_components = [4, 8, 16, 32]
aurocs = []
for k in n_components:
    aurocs.append(auroc(y_test, make_detector(k).fit(X_train).score_samples(X_test)))
    print(f"{k:2d} components: AUROC {aurocs[-1]:.3f}")

fig, ax = plt.subplots(figsize=(5, 3.5))
ax.plot(n_components, aurocs, marker="o")
ax.set_xscale("log", base=2)
ax.set_xticks(n_components, [str(k) for k in n_components])
ax.set_xlabel("PCA components")
ax.set_ylabel("test AUROC")
ax.set_title("PCA + LSA, normal digit: 3")
fig.tight_layout()

# %%
# .. note::
#    Cross-validating such a pipeline on labelled data
#    (``cross_val_score(pipe, X, y, scoring=auroc_scorer)`` with ``y`` in {+1, -1}) trains
#    the *detector* on the normal rows of each fold only, but the steps before it are
#    fitted on every row they get, anomalies included (PCA ignores ``y``). Fit
#    unsupervised preprocessing on normal rows, as done here, when that matters.
