"""Inverted dropout (Srivastava et al. 2014).

The course's dropout multiplies by the keep-mask at training time and by ``1 - p`` at test time.
Inverted dropout (what PyTorch does) moves the scaling to training time instead::

    train:  y = x * m / (1 - p),   m_i ~ Bernoulli(1 - p)      dy/dx = m / (1 - p)
    eval:   y = x

so the expected activation is the same in both modes and evaluation costs nothing.
"""

from __future__ import annotations

import numpy as np

from nnparts.random import get_rng
from nnparts.tensor import Function, Tensor

__all__ = ["dropout"]


class Dropout(Function):
    """``y = x * mask`` with ``mask`` = 0 (dropped) or ``1/(1-p)`` (kept); ``dx = g * mask``."""

    @staticmethod
    def forward(ctx, x, mask):
        ctx.save(mask)
        return x * mask

    @staticmethod
    def backward(ctx, g):
        (mask,) = ctx.saved
        return g * mask


def dropout(x, p: float = 0.5, training: bool = True, rng=None) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by ``1/(1-p)`` (training);
    the identity when ``training`` is False or ``p == 0``.

    Args:
        x: input tensor.
        p: drop probability in ``[0, 1]`` (``p = 1`` drops everything).
        training: apply dropout (True) or return ``x`` unchanged (False).
        rng: seed or ``numpy.random.Generator`` for the mask (default: the library generator).
    """
    if not isinstance(p, (int, float, np.floating, np.integer)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability p must be in [0, 1], got {p!r}")
    if not isinstance(x, Tensor):
        x = Tensor(x)
    if not training or p == 0:
        return x
    dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float32)
    if p == 1:
        mask = np.zeros(x.shape, dtype=dtype)
    else:
        u = get_rng(rng).random(x.shape, dtype=np.float32 if dtype == np.float32 else np.float64)
        mask = (u >= p).astype(dtype)
        mask *= dtype.type(1.0 / (1.0 - p))
    return Dropout.apply(x, mask=mask)
