"""The library's random number generator.

Every random choice in nnparts (weight initialization, dropout masks, shuffling, augmentation)
takes an explicit ``rng`` (a :class:`numpy.random.Generator`). Where none is given, the
library's default generator is used; :func:`manual_seed` re-seeds it, so a script that calls
``nnparts.manual_seed(0)`` first is reproducible.
"""

from __future__ import annotations

import numpy as np

_default = np.random.default_rng(0)


def manual_seed(seed: int) -> np.random.Generator:
    """Re-seed the default generator (like ``torch.manual_seed``) and return it."""
    global _default
    _default = np.random.default_rng(seed)
    return _default


def default_rng() -> np.random.Generator:
    """The default generator used where no ``rng`` is passed."""
    return _default


def get_rng(rng=None) -> np.random.Generator:
    """``rng`` itself, a new Generator seeded with ``rng`` if it is an int, else the default."""
    if rng is None:
        return _default
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be None, an int seed or a numpy.random.Generator, got {rng!r}")
