"""A fixed, seeded train/validation split carved from the training data.

The course's rule: choices (hyperparameters, early stopping, preprocessing statistics) are
made on data the model did not train on, and the test set is never used for choices. So the
validation set comes from the training split, by a seeded permutation: the same seed always
gives the same split.
"""

from __future__ import annotations

import numpy as np

from nnparts.random import get_rng

__all__ = ["train_val_split"]


def train_val_split(x, y=None, val_fraction=None, val_size=None, seed=0, stratify=False):
    """Split ``(x, y)`` into ``(x_train, y_train, x_val, y_val)`` by a seeded permutation.

    Args:
        x, y: arrays with the same first dimension (``y`` may be ``None``).
        val_fraction: fraction of the samples for validation, in (0, 1).
        val_size: number of validation samples (give exactly one of the two).
        seed: int, Generator or ``None`` (the library's default generator).
        stratify: keep the class proportions of ``y`` in both parts (each class split
            separately, rounding its validation count to the nearest integer).

    Returns:
        ``x_train, y_train, x_val, y_val`` (``y_*`` are ``None`` when ``y`` is ``None``).
    """
    x = np.asarray(x)
    n = x.shape[0]
    if y is not None:
        y = np.asarray(y)
        if y.shape[0] != n:
            raise ValueError(f"x has {n} samples but y has {y.shape[0]}; they must match")
    if (val_fraction is None) == (val_size is None):
        raise ValueError(
            f"give exactly one of val_fraction and val_size, got val_fraction={val_fraction!r}, "
            f"val_size={val_size!r}"
        )
    if val_fraction is not None:
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        val_size = int(round(val_fraction * n))
    if not isinstance(val_size, (int, np.integer)) or not 0 < val_size < n:
        raise ValueError(
            f"val_size must be an int in [1, {n - 1}] for {n} samples, got {val_size!r}"
        )
    rng = get_rng(seed)
    if stratify:
        if y is None or y.ndim != 1:
            raise ValueError("stratify=True needs y as a 1-D array of class labels")
        # shuffle, then sort stably by class; take each class's first round(frac * count)
        perm = rng.permutation(n)
        perm = perm[np.argsort(y[perm], kind="stable")]
        classes, start, counts = np.unique(y[perm], return_index=True, return_counts=True)
        frac = val_size / n
        take = np.rint(counts * frac).astype(np.int64)
        rank = np.arange(n) - np.repeat(start, counts)
        is_val = rank < np.repeat(take, counts)
        val_idx, train_idx = perm[is_val], perm[~is_val]
        val_idx = val_idx[rng.permutation(val_idx.size)]
        train_idx = train_idx[rng.permutation(train_idx.size)]
    else:
        perm = rng.permutation(n)
        val_idx, train_idx = perm[:val_size], perm[val_size:]
    y_train = None if y is None else y[train_idx]
    y_val = None if y is None else y[val_idx]
    return x[train_idx], y_train, x[val_idx], y_val
