"""ASGD: averaged stochastic gradient descent (Polyak-Ruppert averaging)."""

from __future__ import annotations

import numpy as np

from nnparts.optim.optimizer import Optimizer, check_nonnegative, coupled_weight_decay

__all__ = ["ASGD"]


class ASGD(Optimizer):
    """Averaged SGD (Polyak & Juditsky, 1992, "Acceleration of stochastic approximation by
    averaging"), with the decaying step of Bottou (2012, "Stochastic gradient descent tricks")
    and the same numbers as ``torch.optim.ASGD``::

        g <- g + weight_decay * W
        W <- W * (1 - lambd * eta_t) - eta_t * g
        ax <- ax + mu_t * (W - ax)              (ax <- W while mu_t = 1)
        eta_(t+1) = lr / (1 + lambd * lr * t) ** alpha
        mu_(t+1)  = 1 / max(1, t - t0)

    The weights ``W`` follow SGD; the *average* ``ax`` (``optimizer.state[...]["ax"]``, read it
    with :meth:`averaged`) starts averaging after ``t0`` steps and is the estimate with the
    better convergence guarantee. Note PyTorch's ``eta_1 = lr`` and ``mu_1 = 1``; ``lambd`` is
    both the decay term and the step's decay rate. ``maximize=True`` ascends (``g -> -g``).

    Args:
        lr: >= 0 (default 0.01); lambd: >= 0 (1e-4); alpha: power of the step decay (0.75);
            t0: step at which averaging starts (1e6); weight_decay: >= 0.
    """

    def __init__(
        self, params, lr=1e-2, lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=0.0, *, maximize=False
    ):
        defaults = dict(
            lr=lr, lambd=lambd, alpha=alpha, t0=t0, weight_decay=weight_decay, maximize=maximize
        )
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        check_nonnegative("lambd", group["lambd"])
        check_nonnegative("alpha", group["alpha"])
        check_nonnegative("t0", group["t0"])
        check_nonnegative("weight_decay", group["weight_decay"])

    def _update(self, param, grad, state, group):
        if "step" not in state:
            state["step"] = 0
            state["eta"] = float(group["lr"])
            state["mu"] = 1.0
            state["ax"] = np.zeros_like(param)
        state["step"] += 1
        g = coupled_weight_decay(grad, param, group["weight_decay"], self._scratch(param, 0))
        eta, mu, lambd = state["eta"], state["mu"], group["lambd"]
        tmp = self._scratch(param, 1)
        param *= 1 - lambd * eta
        np.multiply(g, eta, out=tmp)
        param -= tmp
        ax = state["ax"]
        if mu != 1:
            np.subtract(param, ax, out=tmp)
            tmp *= mu
            ax += tmp
        else:
            np.copyto(ax, param)
        t, lr = state["step"], group["lr"]
        state["eta"] = lr / ((1 + lambd * lr * t) ** group["alpha"])
        state["mu"] = 1 / max(1, t - group["t0"])

    def averaged(self):
        """The averaged weights ``ax``, one array per parameter in ``param_groups`` order
        (None for a parameter that has not been stepped)."""
        return [self.state.get(id(p), {}).get("ax") for p in self._all_params()]
