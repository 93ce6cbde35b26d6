"""
Tuning a hyperparameter with GridSearchCV
=========================================

Choose LSA's weight of the latent log-likelihood term (``lam``) by cross-validated AUROC
with scikit-learn's :class:`~sklearn.model_selection.GridSearchCV`. Given labels in
{+1, -1}, every detector trains on the normal (+1) rows of each training fold only, and
:data:`sknovelty.metrics.auroc_scorer` scores each validation fold, which holds both kinds.
"""

# %%
# Labelled data
# -------------
# The digit 3 is normal (+1), every other digit novel (-1). To keep the example fast, the
# development set holds the 3s of a stratified 75 % split and as many other digits; the
# remaining 25 % of all digits is a test set for the selected model.
#
# Using labelled anomalies to pick hyperparameters departs from the pure one-class setting
# (where no anomaly is seen before testing); it is common when a few are known.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split

from sknovelty import LatentAutoregressiveDetector
from sknovelty.datasets import load_digits_images
from sknovelty.metrics import auroc, auroc_scorer

X, digits = load_digits_images()
y = np.where(digits == 3, 1, -1)
X_dev, X_test, y_dev, y_test = train_test_split(X, y, test_size=0.25, stratify=digits,
                                                random_state=0)
rng = np.random.RandomState(0)
normal = np.flatnonzero(y_dev == 1)
novel = rng.choice(np.flatnonzero(y_dev == -1), size=len(normal), replace=False)
keep = np.sort(np.r_[normal, novel])
X_dev, y_dev = X_dev[keep], y_dev[keep]
print(f"development set: {(y_dev == 1).sum()} normal + {(y_dev == -1).sum()} novel images; "
      f"test set: {len(y_test)} images")

# %%
# The search
# ----------
# ``StratifiedKFold`` keeps normal and novel rows in every fold (the AUROC needs both).
# ``GridSearchCV`` passes ``y`` to ``fit``, and the detector drops the -1 rows before
# training, so each model sees only normal images. The grid spans the LLK weight ``lam``
# over two orders of magnitude. The network is small and trains 10 epochs, so that the 10
# fits (3 folds x 3 values, plus the refit) take seconds; for real tuning use the default
# network and epochs, more folds, and several seeds.
base = LatentAutoregressiveDetector(
    latent_dim=16, hidden_dim=32, conv_channels=(16, 32), n_bins=16,
    estimator_channels=(8, 8), epochs=10, batch_size=32, n_jobs=1, random_state=0,
    device="cpu",
)
search = GridSearchCV(
    base, {"lam": [0.1, 1.0, 10.0]}, scoring=auroc_scorer,
    cv=StratifiedKFold(n_splits=3, shuffle=True, random_state=0),
)
search.fit(X_dev, y_dev)

# %%
# Results
# -------
# ``cv_results_`` holds the AUROC of every value on every fold. Read the differences
# between the values against the spread across folds (grey lines): with three folds of
# ~90 images and one seed, a difference of a few hundredths may not survive another
# split or seed.
results = search.cv_results_
print(" lam   mean AUROC   std   (3 folds)")
for lam, mean, std in zip(results["param_lam"], results["mean_test_score"],
                          results["std_test_score"]):
    print(f"{lam:5.1f}   {mean:.3f}      {std:.3f}")
print(f"best: {search.best_params_}")

fig, ax = plt.subplots(figsize=(5, 3.5))
lams = np.asarray(results["param_lam"], dtype=float)
for k in range(search.n_splits_):
    ax.plot(lams, results[f"split{k}_test_score"], marker=".", color="grey", alpha=0.5,
            label="one fold" if k == 0 else None)
ax.errorbar(lams, results["mean_test_score"], yerr=results["std_test_score"], marker="o",
            capsize=4, label="mean ± std")
ax.set_xscale("log")
ax.set_xlabel("lam (weight of the LLK term)")
ax.set_ylabel("validation AUROC")
ax.set_title("GridSearchCV over LSA's lam")
ax.legend()
fig.tight_layout()

# %%
# The refitted model
# ------------------
# With ``refit=True`` (the default) the best value is refitted on the normal rows of the
# whole development set; its AUROC on the untouched test set is the honest estimate (the
# best cross-validation score is optimistically biased by the choice itself). Here the
# test AUROC can come out *higher* than the cross-validated one: the refit trains on
# half as many normal images again as each fold does, and at 10 epochs more training
# data means more training steps.
test_auroc = auroc(y_test, search.best_estimator_.score_samples(X_test))
print(f"test AUROC of the refitted model: {test_auroc:.3f}")
