"""Stochastic gradient descent with momentum and Nesterov momentum."""

from __future__ import annotations

import numpy as np

from nnparts.optim.optimizer import (
    Optimizer,
    check_nonnegative,
    check_unit_interval,
    coupled_weight_decay,
)

__all__ = ["SGD"]


class SGD(Optimizer):
    """Gradient descent, optionally with (Nesterov) momentum and L2 weight decay.

    The course writes plain SGD as ``W <- W - lr * dL/dW`` and momentum as a velocity::

        v <- mu * v - lr * g          W <- W + v

    and Nesterov's accelerated gradient as the same update with ``g`` taken at the look-ahead
    point ``W + mu * v``. PyTorch (and this code) keeps the velocity without the learning rate,
    ``b = -v / lr``::

        g <- g + weight_decay * W                         (coupled weight decay = L2 penalty)
        b <- mu * b + (1 - dampening) * g                 (b <- g at the first step)
        d <- g + mu * b   if nesterov   else   d <- b
        W <- W - lr * d

    With a constant lr the two forms give the same trajectory; Nesterov's "gradient at the
    look-ahead point" becomes ``g + mu * b`` after the change of variables of Sutskever et al.
    (2013), "On the importance of initialization and momentum in deep learning".

    Args:
        params: parameters or param-group dicts.
        lr: learning rate (>= 0).
        momentum: ``mu`` in [0, 1).
        dampening: scales the new gradient in the momentum buffer by ``1 - dampening``.
        nesterov: use Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).
        weight_decay: L2 coefficient added to the gradient.

    Example:
        >>> opt = SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)  # doctest: +SKIP
    """

    def __init__(
        self,
        params,
        lr=1e-3,
        momentum=0.0,
        dampening=0.0,
        nesterov=False,
        weight_decay=0.0,
        *,
        maximize=False,
    ):
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            nesterov=nesterov,
            weight_decay=weight_decay,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        check_unit_interval("momentum", group["momentum"], closed_right=True)
        check_unit_interval("dampening", group["dampening"], closed_right=True)
        check_nonnegative("weight_decay", group["weight_decay"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                f"nesterov=True needs momentum > 0 and dampening = 0, got "
                f"momentum={group['momentum']}, dampening={group['dampening']}"
            )

    def _update(self, param, grad, state, group):
        g = coupled_weight_decay(grad, param, group["weight_decay"], self._scratch(param, 0))
        mu = group["momentum"]
        if mu:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = np.array(g, copy=True)
            else:
                buf *= mu
                if group["dampening"]:
                    tmp = self._scratch(param, 1)
                    np.multiply(g, 1.0 - group["dampening"], out=tmp)
                    buf += tmp
                else:
                    buf += g
            if group["nesterov"]:
                tmp = self._scratch(param, 1)
                np.multiply(buf, mu, out=tmp)
                tmp += g
                g = tmp
            else:
                g = buf
        tmp = self._scratch(param, 2)
        np.multiply(g, group["lr"], out=tmp)
        param -= tmp
