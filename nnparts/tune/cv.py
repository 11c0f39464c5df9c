"""Stratified k-fold cross-validation splits (seeded).

The course's use: with little data, choose hyperparameters on the mean validation accuracy over
k folds instead of one held-out part, so every training image is used for validation once and
for training k-1 times. Stratified: each fold keeps the class proportions of the whole set.
"""

from __future__ import annotations

import numpy as np

from nnparts.random import get_rng

__all__ = ["stratified_kfold"]


def stratified_kfold(y, k: int, seed=0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` pairs ``(train_idx, val_idx)``: the validation parts are disjoint, cover
    ``range(len(y))``, and each holds ``floor`` or ``ceil`` of ``count / k`` of every class.

    Each class is shuffled (seeded) and dealt round-robin over the folds, starting each class
    where the previous one stopped, so fold sizes also differ by at most one.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"stratified_kfold needs 1-D class labels, got shape {y.shape}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"cv must be an integer >= 2 (the number of folds), got {k!r}")
    if k > len(y):
        raise ValueError(f"cv={k} folds need at least {k} samples, got {len(y)}")
    rng = get_rng(seed)
    perm = rng.permutation(len(y))
    perm = perm[np.argsort(y[perm], kind="stable")]  # grouped by class, shuffled within
    # position within the sorted order -> fold, round-robin over the whole sequence: every class
    # (a contiguous run) is dealt evenly, and the next class continues the rotation
    fold_of = np.empty(len(y), dtype=np.int64)
    fold_of[perm] = np.arange(len(y)) % k
    folds = []
    for f in range(k):
        val_mask = fold_of == f
        val_idx = np.flatnonzero(val_mask)
        train_idx = np.flatnonzero(~val_mask)
        folds.append((rng.permutation(train_idx), rng.permutation(val_idx)))
    return folds
