"""Toy 2-D datasets for the nonlinearity lessons: XOR, two spirals, concentric circles.

Each returns ``(x, y)``: x float32 ``(n, 2)``, y int64 ``(n,)`` with classes 0 and 1, drawn
from a seeded :class:`numpy.random.Generator` (``seed`` is an int, a Generator, or ``None``
for the library's default generator). None of them is linearly separable: a linear model
stays near chance, one hidden layer with a nonlinearity solves them.
"""

from __future__ import annotations

import numpy as np

from nnparts.random import get_rng

__all__ = ["xor", "spirals", "circles", "TOY_DATASETS", "make_toy"]


def _check_n(n):
    if not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n (number of points) must be an int >= 2, got {n!r}")


def _check_noise(noise):
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")


def xor(n: int = 200, noise: float = 0.1, seed=None):
    """Four Gaussian blobs at the corners (+-1, +-1); the class is ``sign(x1) != sign(x2)``.

    ``y = [x1 > 0] XOR [x2 > 0]`` for the blob centres; points are centre + N(0, noise^2).
    """
    _check_n(n)
    _check_noise(noise)
    rng = get_rng(seed)
    corners = rng.integers(0, 4, size=n)
    centre = np.stack([np.where(corners & 1, 1.0, -1.0), np.where(corners & 2, 1.0, -1.0)], 1)
    x = centre + noise * rng.standard_normal((n, 2))
    y = ((centre[:, 0] > 0) != (centre[:, 1] > 0)).astype(np.int64)
    return x.astype(np.float32), y


def spirals(n: int = 200, noise: float = 0.1, turns: float = 1.5, seed=None):
    """Two interleaved Archimedean spirals (Lang & Witbrock, 1988).

    Class k's points: radius ``r = t``, angle ``2*pi*turns*t + k*pi`` for ``t ~ U(0.05, 1)``,
    then Gaussian noise of std ``noise`` added to both coordinates.
    """
    _check_n(n)
    _check_noise(noise)
    rng = get_rng(seed)
    y = np.arange(n, dtype=np.int64) % 2
    t = rng.uniform(0.05, 1.0, size=n)
    angle = 2 * np.pi * turns * t + np.pi * y
    x = np.stack([t * np.cos(angle), t * np.sin(angle)], 1)
    x = x + noise * rng.standard_normal((n, 2))
    order = rng.permutation(n)
    return x[order].astype(np.float32), y[order]


def circles(n: int = 200, noise: float = 0.05, factor: float = 0.5, seed=None):
    """Two concentric circles: class 0 on radius 1, class 1 on radius ``factor`` (< 1)."""
    _check_n(n)
    _check_noise(noise)
    if not 0 < factor < 1:
        raise ValueError(f"factor (inner radius / outer radius) must be in (0, 1), got {factor}")
    rng = get_rng(seed)
    y = np.arange(n, dtype=np.int64) % 2
    angle = rng.uniform(0, 2 * np.pi, size=n)
    radius = np.where(y == 1, factor, 1.0)
    x = np.stack([radius * np.cos(angle), radius * np.sin(angle)], 1)
    x = x + noise * rng.standard_normal((n, 2))
    order = rng.permutation(n)
    return x[order].astype(np.float32), y[order]


TOY_DATASETS = {"xor": xor, "spirals": spirals, "circles": circles}


def make_toy(name: str, **kwargs):
    """``TOY_DATASETS[name](**kwargs)``; an unknown name raises ValueError listing valid ones."""
    if name not in TOY_DATASETS:
        raise ValueError(f"unknown toy dataset {name!r}; valid names: {', '.join(TOY_DATASETS)}")
    return TOY_DATASETS[name](**kwargs)
