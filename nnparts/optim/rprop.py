"""Rprop: resilient backpropagation, a step size per weight driven by the gradient's sign."""

from __future__ import annotations

import numbers

import numpy as np

from nnparts.optim.optimizer import Optimizer

__all__ = ["Rprop"]


def _check_pair(name, value, ok, expected):
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(isinstance(v, numbers.Real) for v in value)
        or not ok(*value)
    ):
        raise ValueError(f"invalid {name}={value!r}: expected {expected}")


class Rprop(Optimizer):
    """Rprop (Riedmiller & Braun, 1993, "A direct adaptive method for faster backpropagation
    learning: the RPROP algorithm"), the variant without weight backtracking (Rprop-), as
    ``torch.optim.Rprop``. Only the sign of the gradient is used::

        s = sign(g_t * g_(t-1))
        d <- clip(d * (eta_plus if s > 0, eta_minus if s < 0, 1 if s = 0), step_min, step_max)
        g_t <- 0 where s < 0          (after a sign change, skip the step and forget g_t)
        W <- W - sign(g_t) * d

    ``lr`` is the initial step size ``d_0`` of every weight (later changes of ``lr``, e.g. by a
    scheduler, have no effect, as in PyTorch). Meant for full-batch training: minibatch noise
    flips the signs. State: ``prev`` (the last ``g``), ``step_size`` (``d``), ``step``.
    ``maximize=True`` ascends (``g -> -g``).

    Args:
        lr: initial step size (default 0.01); etas: (eta_minus, eta_plus) with
            0 < eta_minus < 1 < eta_plus; step_sizes: (step_min, step_max).
    """

    def __init__(self, params, lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50), *, maximize=False):
        defaults = dict(
            lr=lr,
            etas=tuple(etas) if isinstance(etas, list) else etas,
            step_sizes=tuple(step_sizes) if isinstance(step_sizes, list) else step_sizes,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        _check_pair(
            "etas",
            group["etas"],
            lambda a, b: 0 < a < 1 < b,
            "(eta_minus, eta_plus), 0 < eta_minus < 1 < eta_plus",
        )
        _check_pair(
            "step_sizes",
            group["step_sizes"],
            lambda a, b: 0 <= a <= b,
            "(step_min, step_max) with 0 <= step_min <= step_max",
        )

    def _update(self, param, grad, state, group):
        if "step" not in state:
            state["step"] = 0
            state["prev"] = np.zeros_like(param)
            state["step_size"] = np.full_like(param, group["lr"])
        state["step"] += 1
        eta_minus, eta_plus = group["etas"]
        step_min, step_max = group["step_sizes"]
        prev, d = state["prev"], state["step_size"]
        factor = self._scratch(param, 0)
        np.multiply(grad, prev, out=factor)
        np.sign(factor, out=factor)
        factor[factor > 0] = eta_plus
        factor[factor < 0] = eta_minus
        factor[factor == 0] = 1
        d *= factor
        np.clip(d, step_min, step_max, out=d)
        np.copyto(prev, grad)
        prev[factor == eta_minus] = 0
        np.sign(prev, out=factor)
        factor *= d
        param -= factor
