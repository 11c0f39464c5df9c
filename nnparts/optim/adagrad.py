"""AdaGrad: a per-weight learning rate that shrinks with the squared gradients seen so far."""

from __future__ import annotations

import numpy as np

from nnparts.optim.optimizer import (
    Optimizer,
    check_nonnegative,
    check_positive,
    coupled_weight_decay,
)

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    """AdaGrad (Duchi, Hazan & Singer, 2011, "Adaptive subgradient methods for online learning
    and stochastic optimization").

    The course's rule::

        h <- h + g * g
        W <- W - lr * g / (sqrt(h) + eps)

    so weights with large past gradients take smaller steps (the step of every weight shrinks
    over time). PyTorch's form, implemented here, adds L2 weight decay and an lr decay::

        g <- g + weight_decay * W
        clr = lr / (1 + (t - 1) * lr_decay)
        h <- h + g * g                      (h starts at initial_accumulator_value)
        W <- W - clr * g / (sqrt(h) + eps)

    The paper writes the denominator ``sqrt(eps + h)``; PyTorch (and this code) adds ``eps``
    after the square root, so trajectories equal ``torch.optim.Adagrad``.

    Args:
        lr: learning rate (>= 0); eps: > 0; weight_decay, lr_decay, initial_accumulator_value:
            >= 0.
    """

    def __init__(
        self,
        params,
        lr=1e-2,
        lr_decay=0.0,
        weight_decay=0.0,
        initial_accumulator_value=0.0,
        eps=1e-10,
        *,
        maximize=False,
    ):
        defaults = dict(
            lr=lr,
            lr_decay=lr_decay,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            eps=eps,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        check_positive("eps", group["eps"])
        check_nonnegative("lr_decay", group["lr_decay"])
        check_nonnegative("weight_decay", group["weight_decay"])
        check_nonnegative("initial_accumulator_value", group["initial_accumulator_value"])

    def _update(self, param, grad, state, group):
        if not state:
            state["step"] = 0
            state["sum"] = np.full_like(param, group["initial_accumulator_value"])
        state["step"] += 1
        g = coupled_weight_decay(grad, param, group["weight_decay"], self._scratch(param, 0))
        clr = group["lr"] / (1.0 + (state["step"] - 1) * group["lr_decay"])
        h = state["sum"]
        tmp = self._scratch(param, 1)
        np.multiply(g, g, out=tmp)
        h += tmp
        np.sqrt(h, out=tmp)
        tmp += group["eps"]
        np.divide(g, tmp, out=tmp)
        tmp *= clr
        param -= tmp
