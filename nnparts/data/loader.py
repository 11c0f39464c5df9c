"""Mini-batches: every sample exactly once per epoch, reshuffled each epoch, reproducible.

The course's stochastic gradient descent draws mini-batches *without replacement*: an epoch
is a random permutation of the ``N`` indices cut into ``ceil(N / batch_size)`` batches
(``floor`` with ``drop_last``). Epoch ``e``'s permutation comes from a generator seeded with
``(seed, e)``, so the order depends only on the seed and the epoch number: a run resumed from
``state_dict()`` (seed, epoch, batches already served) continues bit-identically.
No copy of the dataset is made per epoch: each batch is one fancy-indexing gather.
"""

from __future__ import annotations

import math

import numpy as np

from nnparts.data.augment import augment_batch
from nnparts.random import get_rng

__all__ = ["DataLoader"]


class DataLoader:
    """Iterate over ``(x_batch, y_batch)`` NumPy arrays.

    Args:
        x: array ``(N, ...)``.
        y: array ``(N, ...)`` or ``None`` (then batches are ``(x_batch, None)``).
        batch_size: samples per batch (the last one is smaller unless ``drop_last``).
        shuffle: a new random permutation each epoch (else the natural order).
        drop_last: drop the last, incomplete batch.
        seed: int; ``None`` draws one from the library's default generator (so
            ``nnparts.manual_seed`` makes it reproducible). Recorded in ``state_dict()``.
        transform: optional callable applied to each batch, ``transform(x_batch, y_batch) ->
            (x_batch, y_batch)`` (``transform(x_batch) -> x_batch`` when ``y`` is None), e.g. a
            :class:`nnparts.data.Compose` augmentation pipeline.

    Example::

        loader = DataLoader(x, y, batch_size=128, seed=0)
        for epoch in range(10):
            for xb, yb in loader:       # each index once; a new order every epoch
                ...
    """

    def __init__(
        self, x, y=None, batch_size=32, shuffle=True, drop_last=False, seed=None, transform=None
    ):
        x = np.asarray(x)
        if x.ndim == 0:
            raise ValueError("x must have a sample dimension, got a 0-d array")
        if y is not None:
            y = np.asarray(y)
            if y.ndim == 0 or y.shape[0] != x.shape[0]:
                raise ValueError(
                    f"x has {x.shape[0]} samples but y has shape {y.shape}; "
                    "the first dimensions must match"
                )
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size}")
        if drop_last and batch_size > x.shape[0]:
            raise ValueError(
                f"batch_size={batch_size} with drop_last=True and only {x.shape[0]} samples "
                "gives no batch; use a smaller batch_size or drop_last=False"
            )
        if seed is None:
            seed = int(get_rng(None).integers(0, 2**63 - 1))
        elif not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
        self.x, self.y = x, y
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = int(seed)
        self.transform = transform
        self.epoch = 0  # the epoch the next iter() serves
        self._start = 0  # batch the next iter() starts at (non-zero only after a resume)
        self._active = None  # (epoch, batches served) of the iteration in progress
        #: ``(epoch, dataset indices)`` of the batch last served (None before the first), for
        #: transforms that depend on them (:class:`~nnparts.data.AlternatingFlip`)
        self.current_batch = None

    def __len__(self) -> int:
        n = self.x.shape[0]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def num_samples(self) -> int:
        return int(self.x.shape[0])

    def order(self, epoch: int) -> np.ndarray:
        """The permutation of sample indices used in ``epoch``."""
        n = self.x.shape[0]
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, int(epoch)]).permutation(n)

    def __iter__(self):
        # each iter() serves one whole epoch (as PyTorch); only right after load_state_dict()
        # does it start part-way, at the batch where the saved run stopped
        epoch, start = self.epoch, self._start
        self.epoch, self._start = epoch + 1, 0
        idx = self.order(epoch)
        bs = self.batch_size
        self._active = (epoch, start)
        for b in range(start, len(self)):
            sel = idx[b * bs : (b + 1) * bs]
            xb = self.x[sel]
            yb = None if self.y is None else self.y[sel]
            if self.transform is not None:
                xb, yb = augment_batch(self.transform, xb, yb, batch=(epoch, sel))
            self._active = (epoch, b + 1)
            self.current_batch = (epoch, sel)
            yield xb, yb
        self._active = None

    def state_dict(self) -> dict:
        """JSON-able state: seed, epoch and batches of it already served (bit-identical resume).

        Taken between epochs, ``epoch`` is the next epoch and ``position`` 0; taken inside an
        epoch (after some batches), ``epoch`` is the current one and ``position`` the number of
        batches already served, so that the next ``iter()`` after ``load_state_dict`` serves
        exactly the remaining batches of that epoch.
        """
        if self._active is not None and self._active[1] < len(self):
            epoch, position = self._active
        else:
            epoch, position = self.epoch, self._start
        return {"seed": self.seed, "epoch": int(epoch), "position": int(position)}

    def load_state_dict(self, state: dict) -> None:
        missing = {"seed", "epoch", "position"} - set(state)
        if missing:
            raise ValueError(f"DataLoader state is missing keys {sorted(missing)}")
        if not 0 <= int(state["position"]) <= len(self):
            raise ValueError(
                f"DataLoader state position {state['position']} is outside [0, {len(self)}] "
                "batches for this dataset and batch_size"
            )
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        self._start = int(state["position"])
        self._active = None

    def __repr__(self):
        return (
            f"DataLoader(num_samples={self.num_samples}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, drop_last={self.drop_last}, seed={self.seed})"
        )
