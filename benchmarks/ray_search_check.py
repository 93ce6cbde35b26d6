"""Ray's joblib backend runs the same search code as the Dask test (tests/test_scale.py).

Not part of the suite (Ray is a large optional extra): run it by hand after
``pip install -e ".[ray]"``. It fits the same tiny LSA grid locally and through
``parallel_backend("ray")`` on a local Ray instance of 2 CPUs, and checks that the
cross-validated scores are identical (``n_jobs=1`` on the estimator: one torch thread per fit).

    python benchmarks/ray_search_check.py
"""
import numpy as np
from joblib import parallel_backend
from numpy.testing import assert_array_equal
from sklearn.model_selection import GridSearchCV

import ray
from ray.util.joblib import register_ray
from sknovelty.datasets import load_digits_images
from sknovelty.metrics import auroc_scorer
from sknovelty.registry import ESTIMATORS

X, y = load_digits_images()
X, labels = X[:400], np.where(y[:400] == 0, 1, -1)
base = ESTIMATORS["LSA"].tiny(n_jobs=1)
grid = {"lam": [0.1, 1.0], "n_bins": [4, 8]}
local = GridSearchCV(base, grid, cv=2, scoring=auroc_scorer, n_jobs=1).fit(X, labels)
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # local, loopback only
register_ray()
with parallel_backend("ray"):
    remote = GridSearchCV(base, grid, cv=2, scoring=auroc_scorer, n_jobs=-1).fit(X, labels)
assert_array_equal(remote.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"])
print("ray search == local search:", remote.cv_results_["mean_test_score"].round(4).tolist(),
      ray.__version__)
