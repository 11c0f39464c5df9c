"""RMSprop: divide the gradient by a running root-mean-square of recent gradients."""

from __future__ import annotations

import numpy as np

from nnparts.optim.optimizer import (
    Optimizer,
    check_nonnegative,
    check_positive,
    check_unit_interval,
    coupled_weight_decay,
    ema_,
    ema_square_,
)

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    """RMSprop (Hinton, Coursera lecture 6e, 2012; centered form: Graves, 2013, "Generating
    sequences with recurrent neural networks").

    The course's rule is AdaGrad with a forgetting average instead of a sum::

        h <- alpha * h + (1 - alpha) * g * g
        W <- W - lr * g / (sqrt(h) + eps)

    Options, as in PyTorch (whose order of operations this code follows): ``centered`` divides
    by an estimate of the variance instead, ``sqrt(h - gbar^2) + eps`` with
    ``gbar <- alpha * gbar + (1 - alpha) * g``; ``momentum`` accumulates the scaled step,
    ``b <- momentum * b + g / (sqrt(h) + eps); W <- W - lr * b``; ``weight_decay`` adds
    ``wd * W`` to ``g``.

    Args:
        lr: >= 0; alpha: in [0, 1]; eps: > 0; momentum: in [0, 1]; centered: bool;
        weight_decay: >= 0.
    """

    def __init__(
        self,
        params,
        lr=1e-2,
        alpha=0.99,
        eps=1e-8,
        weight_decay=0.0,
        momentum=0.0,
        centered=False,
        *,
        maximize=False,
    ):
        defaults = dict(
            lr=lr,
            alpha=alpha,
            eps=eps,
            weight_decay=weight_decay,
            momentum=momentum,
            centered=centered,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        check_unit_interval("alpha", group["alpha"], closed_right=True)
        check_positive("eps", group["eps"])
        check_unit_interval("momentum", group["momentum"], closed_right=True)
        check_nonnegative("weight_decay", group["weight_decay"])

    def _update(self, param, grad, state, group):
        if not state:
            state["step"] = 0
            state["square_avg"] = np.zeros_like(param)
            if group["momentum"] > 0:
                state["momentum_buffer"] = np.zeros_like(param)
            if group["centered"]:
                state["grad_avg"] = np.zeros_like(param)
        state["step"] += 1
        alpha = group["alpha"]
        g = coupled_weight_decay(grad, param, group["weight_decay"], self._scratch(param, 0))
        tmp = self._scratch(param, 1)
        h = state["square_avg"]
        ema_square_(h, g, alpha, tmp)
        if group["centered"]:
            gbar = state["grad_avg"]
            ema_(gbar, g, alpha, tmp)
            np.multiply(gbar, gbar, out=tmp)
            np.subtract(h, tmp, out=tmp)
            np.sqrt(tmp, out=tmp)
        else:
            np.sqrt(h, out=tmp)
        tmp += group["eps"]
        np.divide(g, tmp, out=tmp)
        if group["momentum"] > 0:
            buf = state["momentum_buffer"]
            buf *= group["momentum"]
            buf += tmp
            np.multiply(buf, group["lr"], out=tmp)
        else:
            tmp *= group["lr"]
        param -= tmp
