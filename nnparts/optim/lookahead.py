"""Lookahead: slow weights that follow an inner optimizer's fast weights every k steps."""

from __future__ import annotations

import numpy as np

from nnparts.optim.optimizer import check_unit_interval

__all__ = ["Lookahead"]


class Lookahead:
    """Lookahead (Zhang, Lucas, Hinton & Ba, 2019, "Lookahead optimizer: k steps forward, 1 step
    back"), wrapping any optimizer.

    The paper's Algorithm 1, with ``phi`` the slow weights and ``theta`` the fast weights::

        for t = 1, 2, ...:
            theta <- phi
            for i = 1..k:  theta <- theta + A(L, theta)      (the inner optimizer's step)
            phi <- phi + alpha * (theta - phi)

    Code mapping: ``step()`` takes one inner step; every ``k``-th call pulls the slow weights
    toward the fast ones and copies them back into the parameters (``theta <- phi``). The inner
    optimizer's state (momentum, moments) is kept across synchronizations, as in the paper's
    experiments. ``param_groups`` is the inner optimizer's, so learning-rate schedules work.

    Args:
        optimizer: the inner optimizer (any :class:`~nnparts.optim.Optimizer`).
        k: number of fast steps per synchronization (>= 1).
        alpha: slow-weight step size in [0, 1].
    """

    def __init__(self, optimizer, k=5, alpha=0.5):
        if not hasattr(optimizer, "param_groups") or not hasattr(optimizer, "step"):
            raise ValueError(
                f"optimizer must be an nnparts optimizer, got {type(optimizer).__name__}"
            )
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"invalid k={k!r}: expected an integer >= 1")
        check_unit_interval("alpha", alpha, closed_right=True)
        self.optimizer = optimizer
        self.k = k
        self.alpha = float(alpha)
        self.step_count = 0
        self.slow_weights = [np.array(p.data, copy=True) for p in self._params()]
        self._scratch = {}

    @property
    def param_groups(self):
        return self.optimizer.param_groups

    @property
    def defaults(self):
        return self.optimizer.defaults

    @property
    def state(self):
        return self.optimizer.state

    def _params(self):
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def zero_grad(self, set_to_none: bool = True):
        self.optimizer.zero_grad(set_to_none)

    def step(self, closure=None):
        loss = self.optimizer.step(closure)
        self.step_count += 1
        if self.step_count % self.k == 0:
            for i, (p, slow) in enumerate(zip(self._params(), self.slow_weights)):
                # phi <- phi + alpha * (theta - phi);  theta <- phi
                tmp = self._scratch.get(i)
                if tmp is None or tmp.shape != slow.shape or tmp.dtype != slow.dtype:
                    tmp = self._scratch[i] = np.empty_like(slow)
                np.subtract(p.data, slow, out=tmp)
                tmp *= self.alpha
                slow += tmp
                p.data[...] = slow
        return loss

    def state_dict(self) -> dict:
        """``{"optimizer": inner state_dict, "slow_weights": {"0": ndarray, ...},
        "step_count": int, "k": int, "alpha": float}``."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "slow_weights": {str(i): w.copy() for i, w in enumerate(self.slow_weights)},
            "step_count": self.step_count,
            "k": self.k,
            "alpha": self.alpha,
        }

    def load_state_dict(self, state_dict: dict):
        self.optimizer.load_state_dict(state_dict["optimizer"])
        slow = state_dict["slow_weights"]
        params = self._params()
        if len(slow) != len(params):
            raise ValueError(
                f"state_dict has {len(slow)} slow weights, the optimizer has {len(params)} "
                "parameters"
            )
        for i, p in enumerate(params):
            w = np.asarray(slow[str(i)])
            if w.shape != p.shape:
                raise ValueError(
                    f"slow weight {i} has shape {w.shape}, the parameter has {p.shape}"
                )
            self.slow_weights[i] = np.array(w, dtype=p.dtype, copy=True)
        self.step_count = int(state_dict["step_count"])
        self.k = int(state_dict["k"])
        self.alpha = float(state_dict["alpha"])

    def __repr__(self):
        return f"Lookahead(k={self.k}, alpha={self.alpha}, optimizer={self.optimizer!r})"
