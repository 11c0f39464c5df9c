"""Finite-difference check of hand-written gradients."""

from __future__ import annotations

import numpy as np

from nnparts.tensor import Tensor, enable_grad


class GradcheckError(AssertionError):
    """Raised when an analytic gradient disagrees with the central finite difference."""


def _scalarize(out: Tensor, weights: np.ndarray) -> float:
    return float(np.sum(out.data * weights))


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, seed=0, raise_exception=True) -> bool:
    """Compare ``fn``'s backward with central differences ``(f(x+eps) - f(x-eps)) / (2 eps)``.

    ``fn(*inputs)`` must return a Tensor. Its output is reduced to a scalar with fixed random
    weights (so every output element matters), then each element of every input with
    ``requires_grad=True`` is perturbed in turn. Use float64 inputs: in float32 the rounding
    error of a difference quotient is larger than the tolerance.

    Returns True, or raises :class:`GradcheckError` naming the input, the element and both values
    (returns False instead when ``raise_exception=False``).
    """
    inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    for i, x in enumerate(inputs):
        if isinstance(x, Tensor) and x.requires_grad and x.dtype != np.float64:
            raise ValueError(
                f"gradcheck input {i} has dtype {x.dtype}; use float64 (e.g. "
                "Tensor(np.asarray(x, dtype=np.float64), requires_grad=True))"
            )
    for x in inputs:  # perturbation below writes through a flat view: needs contiguous data
        if isinstance(x, Tensor) and x.requires_grad and not x.data.flags.c_contiguous:
            x.data = np.ascontiguousarray(x.data)
    with enable_grad():
        for x in inputs:
            if isinstance(x, Tensor):
                x.grad = None
        out = fn(*inputs)
        rng = np.random.default_rng(seed)
        weights = rng.standard_normal(out.shape).astype(out.dtype)
        out.backward(weights)
    analytic = [
        x.grad.copy() if isinstance(x, Tensor) and x.grad is not None else None for x in inputs
    ]

    for i, x in enumerate(inputs):
        if not (isinstance(x, Tensor) and x.requires_grad):
            continue
        numeric = np.zeros_like(x.data)
        flat = x.data.reshape(-1)  # a view: perturb in place
        num_flat = numeric.reshape(-1)
        for j in range(flat.size):
            original = flat[j]
            flat[j] = original + eps
            plus = _scalarize(fn(*inputs), weights)
            flat[j] = original - eps
            minus = _scalarize(fn(*inputs), weights)
            flat[j] = original
            num_flat[j] = (plus - minus) / (2 * eps)
        got = analytic[i] if analytic[i] is not None else np.zeros_like(numeric)
        bad = ~np.isclose(got, numeric, atol=atol, rtol=rtol)
        if bad.any():
            j = int(np.flatnonzero(bad.reshape(-1))[0])
            msg = (
                f"gradcheck failed for input {i} (shape {x.shape}): {int(bad.sum())} element(s) "
                f"differ; first at flat index {j}: analytic {got.reshape(-1)[j]!r}, "
                f"numerical {numeric.reshape(-1)[j]!r} (atol={atol}, rtol={rtol})"
            )
            if raise_exception:
                raise GradcheckError(msg)
            return False
    return True
