"""AdaDelta: AdaGrad with a decaying average, and units fixed by a second average of updates."""

from __future__ import annotations

import numpy as np

from nnparts.optim.optimizer import (
    Optimizer,
    check_nonnegative,
    check_positive,
    check_unit_interval,
    coupled_weight_decay,
    ema_square_,
)

__all__ = ["Adadelta"]


class Adadelta(Optimizer):
    """AdaDelta (Zeiler, 2012, "ADADELTA: an adaptive learning rate method").

    The paper's rule (no learning rate: the ratio of two RMS values has the units of ``W``)::

        E[g^2]  <- rho * E[g^2]  + (1 - rho) * g * g
        dW       = - sqrt(E[dW^2] + eps) / sqrt(E[g^2] + eps) * g
        E[dW^2] <- rho * E[dW^2] + (1 - rho) * dW * dW
        W       <- W + dW

    PyTorch, and this code, multiply the applied step by ``lr`` (default 1.0, the paper's rule)
    and add optional L2 ``weight_decay`` to ``g``. State: ``square_avg`` = E[g^2] and
    ``acc_delta`` = E[dW^2].

    Args:
        lr: >= 0; rho: in [0, 1]; eps: > 0; weight_decay: >= 0.
    """

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, *, maximize=False):
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        check_unit_interval("rho", group["rho"], closed_right=True)
        check_positive("eps", group["eps"])
        check_nonnegative("weight_decay", group["weight_decay"])

    def _update(self, param, grad, state, group):
        if not state:
            state["step"] = 0
            state["square_avg"] = np.zeros_like(param)
            state["acc_delta"] = np.zeros_like(param)
        state["step"] += 1
        rho, eps = group["rho"], group["eps"]
        g = coupled_weight_decay(grad, param, group["weight_decay"], self._scratch(param, 0))
        tmp, delta = self._scratch(param, 1), self._scratch(param, 2)
        ema_square_(state["square_avg"], g, rho, tmp)
        np.add(state["square_avg"], eps, out=tmp)
        np.sqrt(tmp, out=tmp)  # sqrt(E[g^2] + eps)
        np.add(state["acc_delta"], eps, out=delta)
        np.sqrt(delta, out=delta)
        delta /= tmp
        delta *= g  # -dW
        ema_square_(state["acc_delta"], delta, rho, tmp)
        delta *= group["lr"]
        param -= delta
