"""The robustness suite's data sets (``sknovelty.datasets``): shapes, labels, seeds, no leaks."""

import numpy as np
import pytest

from sknovelty.datasets import (SUITE, load_faces, load_suite_task, load_table,
                                make_photo_patches, make_texture_patches)

pytest.importorskip("skimage")
CHEAP = [name for name in SUITE if not name.startswith("mnist")]  # mnist: test_tools


@pytest.mark.parametrize("name", CHEAP)
def test_every_task_is_a_labelled_one_class_set(name):
    kind, _ = SUITE[name]
    task = load_suite_task(name, random_state=0)
    assert task.X_train.dtype == task.X_test.dtype == np.float32
    assert task.X_train.shape[1:] == task.X_test.shape[1:]
    assert task.X_train.ndim == (4 if kind == "images" else 2)
    assert set(np.unique(task.y_test)) == {1, -1} and len(task.y_test) == len(task.X_test)
    if kind == "images":
        assert 0 <= task.X_train.min() and task.X_test.max() <= 1
    # the description states the sizes it was built with
    assert f"train {len(task.X_train)}" in task.description
    assert f"test {(task.y_test == 1).sum()} + {(task.y_test == -1).sum()}" in task.description
    # no test row is a copy of a training row (except flat ones: a photograph's black
    # background gives the same all-zero patch in both parts, from different places)
    train = {row.tobytes() for row in task.X_train.reshape(len(task.X_train), -1)}
    assert not any(row.tobytes() in train and np.ptp(row) > 0
                   for row in task.X_test.reshape(len(task.X_test), -1))


@pytest.mark.parametrize("build", [make_texture_patches, make_photo_patches, load_faces])
def test_builders_are_seeded(build):
    a, b, c = build(random_state=0), build(random_state=0), build(random_state=1)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(a.X_test, b.X_test)
    assert not np.array_equal(a.X_train, c.X_train)


def test_texture_defects_differ_from_the_texture_in_one_square_only():
    from sknovelty.datasets import _skimage_gray

    size = 32
    task = make_texture_patches(n_train=10, n_test=20, patch_size=size, random_state=0)
    brick = _skimage_gray("brick").astype(np.float32)
    # every run of 32 pixels in a row of the brick image, to look patch rows up exactly
    windows = np.lib.stride_tricks.sliding_window_view(brick, size, axis=1)
    known = {w.tobytes() for w in windows.reshape(-1, size)}

    def rows_found(patch):
        return sum(row.tobytes() in known for row in patch[0])

    found = np.array([rows_found(p) for p in task.X_test])
    normal, defect, alien = found[:20], found[20:30], found[30:]
    assert (normal == size).all()              # untouched brick patches
    # a pasted square spans at most 3/8 of the side: the other rows are brick, and at least
    # one row holds part of the square
    assert ((defect >= size - 3 * size // 8) & (defect < size)).all()
    assert (alien == 0).all()                  # patches of grass or gravel


def test_photo_anomalies_are_the_simpler_images():
    """The case the complexity-corrected flow score exists for: anomalies compress better."""
    from sknovelty.metrics import code_length

    task = make_photo_patches(n_train=40, n_test=40, random_state=0)
    bits = code_length(task.X_test)
    # measured: about 2.6x fewer bits for the anomalies on seed 0; the assertion keeps a
    # factor of 1.5, so only a change of the images or of their grey conversion trips it
    assert bits[task.y_test == 1].mean() > 1.5 * bits[task.y_test == -1].mean()


def test_table_and_suite_names_are_checked():
    with pytest.raises(ValueError, match="must be one of"):
        load_table("boston")
    with pytest.raises(ValueError, match="must be one of"):
        load_suite_task("cifar10")
    task = load_table("iris", random_state=0)
    # iris has 50 rows per class: 35 versicolor train, 15 + 30 test
    assert task.X_train.shape == (35, 4) and (task.y_test == -1).sum() == 30
