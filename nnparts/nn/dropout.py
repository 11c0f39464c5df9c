"""Dropout layer."""

from __future__ import annotations

import numpy as np

from nnparts.functional.dropout import dropout
from nnparts.nn.module import Module

__all__ = ["Dropout"]


class Dropout(Module):
    """Inverted dropout: in training mode zero each element with probability ``p`` and scale the
    kept ones by ``1/(1-p)``; in evaluation mode (``.eval()``) the identity.

    Args:
        p: drop probability in ``[0, 1]`` (PyTorch's name and default).
        rng: seed or ``numpy.random.Generator`` for the masks; ``None`` uses the library's
            default generator at each call (re-seeded by ``nnparts.manual_seed``).
    """

    def __init__(self, p: float = 0.5, rng=None):
        super().__init__()
        if not isinstance(p, (int, float, np.floating, np.integer)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout probability p must be in [0, 1], got {p!r}")
        self.p = float(p)
        self.rng = np.random.default_rng(int(rng)) if isinstance(rng, (int, np.integer)) else rng

    def forward(self, x):
        return dropout(x, self.p, training=self.training, rng=self.rng)

    def extra_repr(self):
        return f"p={self.p}"
