"""Adamax: Adam with the infinity norm in place of the second moment."""

from __future__ import annotations

import numpy as np

from nnparts.optim.adam import _as_pair
from nnparts.optim.optimizer import (
    Optimizer,
    bias_correction,
    check_betas,
    check_nonnegative,
    check_positive,
    coupled_weight_decay,
    ema_,
)

__all__ = ["Adamax"]


class Adamax(Optimizer):
    """Adamax (Kingma & Ba, 2015, "Adam", section 7.1): the ``L^p`` norm of Adam's second moment
    taken to ``p -> infinity``, a running maximum of ``|g|`` that needs no bias correction::

        m <- beta1 * m + (1 - beta1) * g
        u <- max(beta2 * u, |g| + eps)
        W <- W - lr / (1 - beta1^t) * m / u

    Code mapping (as ``torch.optim.Adamax``): ``weight_decay`` adds ``wd * W`` to ``g`` first;
    ``eps`` is added to ``|g|`` inside the maximum (the paper has none), so ``u > 0`` always;
    state ``exp_avg`` is ``m``, ``exp_inf`` is ``u``. ``maximize=True`` ascends (``g -> -g``).

    Args:
        lr: >= 0 (default 2e-3); betas: (beta1, beta2) in [0, 1); eps: > 0; weight_decay: >= 0.
    """

    def __init__(
        self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, *, maximize=False
    ):
        defaults = dict(
            lr=lr, betas=_as_pair(betas), eps=eps, weight_decay=weight_decay, maximize=maximize
        )
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        check_betas(group["betas"])
        check_positive("eps", group["eps"])
        check_nonnegative("weight_decay", group["weight_decay"])

    def _update(self, param, grad, state, group):
        if "step" not in state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(param)
            state["exp_inf"] = np.zeros_like(param)
        state["step"] += 1
        beta1, beta2 = group["betas"]
        g = coupled_weight_decay(grad, param, group["weight_decay"], self._scratch(param, 0))
        tmp = self._scratch(param, 1)
        m, u = state["exp_avg"], state["exp_inf"]
        ema_(m, g, beta1, tmp)
        u *= beta2
        np.abs(g, out=tmp)
        tmp += group["eps"]
        np.maximum(u, tmp, out=u)
        clr = group["lr"] / bias_correction(beta1, state["step"])
        np.divide(m, u, out=tmp)
        tmp *= clr
        param -= tmp
