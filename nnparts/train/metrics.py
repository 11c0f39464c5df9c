"""Classification metrics on NumPy arrays."""

from __future__ import annotations

import math

import numpy as np


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose arg-max equals the label (labels may be soft rows)."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels.argmax(axis=1)
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def confusion_matrix(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``M[i, j]`` = number of samples of true class ``i`` predicted as ``j``."""
    index = np.asarray(labels, dtype=np.int64) * num_classes + np.asarray(predictions, np.int64)
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def jsonable(obj):
    """``obj`` with NumPy arrays and scalars turned into plain lists and numbers, and NaN/inf
    into the strings ``"nan"``, ``"inf"``, ``"-inf"`` (JSON has no literal for them)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else str(v)
    return obj
