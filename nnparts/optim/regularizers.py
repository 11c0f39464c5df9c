"""Penalty terms added to the loss (L1, L2) and gradient clipping (by global norm, by value)."""

from __future__ import annotations

import math
import numbers

import numpy as np

from nnparts.functional.math import abs as _abs
from nnparts.functional.math import sum as _sum
from nnparts.tensor import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_", "l1_penalty", "l2_penalty"]


def _param_list(params):
    if isinstance(params, Tensor):
        return [params]
    params = list(params)
    if not params:
        raise ValueError("params is empty: pass a list of Parameters (model.parameters())")
    return params


def _check_coefficient(name, value):
    if not isinstance(value, numbers.Real) or not value >= 0 or math.isinf(value):
        raise ValueError(f"invalid {name}={value!r}: expected a finite number >= 0")


def l2_penalty(params, weight_decay: float) -> Tensor:
    """The L2 (ridge) penalty ``weight_decay / 2 * sum_i ||W_i||^2`` as a differentiable loss term.

    The course adds ``(lambda / 2) * ||W||^2`` to the loss; its gradient ``lambda * W`` is what
    ``weight_decay=lambda`` in SGD/Adam adds to the gradient (coupled weight decay). Built from
    nnparts ops, so ``(loss + l2_penalty(model.parameters(), 1e-4)).backward()`` works.
    """
    _check_coefficient("weight_decay", weight_decay)
    params = _param_list(params)
    total = None
    for p in params:
        term = _sum(p * p)
        total = term if total is None else total + term
    return total * (0.5 * weight_decay)


def l1_penalty(params, weight: float) -> Tensor:
    """The L1 (lasso) penalty ``weight * sum_i |W_i|`` as a differentiable loss term.

    Its (sub)gradient ``weight * sign(W)`` pushes small weights to exactly zero (sparsity), unlike
    L2, whose pull vanishes near zero.
    """
    _check_coefficient("weight", weight)
    params = _param_list(params)
    total = None
    for p in params:
        term = _sum(_abs(p))
        total = term if total is None else total + term
    return total * weight


def clip_grad_norm_(
    params, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False
) -> float:
    """Rescale all gradients together so their global norm is at most ``max_norm``.

    ``total = ||(g_1, ..., g_n)||_p``; if ``total > max_norm`` every gradient is multiplied by
    ``max_norm / (total + 1e-6)`` (PyTorch's rule, in place). Returns ``total`` (before clipping).
    Pascanu, Mikolov & Bengio (2013), "On the difficulty of training recurrent neural networks".
    """
    _check_coefficient("max_norm", max_norm)
    norm_type = float(norm_type)
    if not norm_type > 0:
        raise ValueError(f"invalid norm_type={norm_type!r}: expected > 0 or inf")
    grads = [p.grad for p in _param_list(params) if p.grad is not None]
    if not grads:
        return 0.0
    if math.isinf(norm_type):
        total = max(float(np.max(np.abs(g))) for g in grads)
    elif norm_type == 2.0:
        total = math.sqrt(sum(float(np.dot(g.ravel(), g.ravel())) for g in grads))
    else:
        total = float(
            sum(float(np.sum(np.abs(g) ** norm_type)) for g in grads) ** (1.0 / norm_type)
        )
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"the total gradient norm is {total}; gradients are not finite")
    coef = max_norm / (total + 1e-6)
    if coef < 1:
        for g in grads:
            g *= coef
    return total


def clip_grad_value_(params, clip_value: float) -> None:
    """Clip every gradient element to ``[-clip_value, clip_value]`` in place."""
    _check_coefficient("clip_value", clip_value)
    for p in _param_list(params):
        if p.grad is not None:
            np.clip(p.grad, -clip_value, clip_value, out=p.grad)
