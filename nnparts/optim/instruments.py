"""Instruments for looking inside optimization: the per-weight effective learning rate of an
adaptive optimizer, and the sharpness of a minimum.

Neither changes training; both read what is already there (the optimizer's state, the model's
weights) and put everything back.

* :func:`effective_lr` -- the factor the optimizer's last step multiplied each weight's
  gradient (or first moment) by. The course's AdaGrad, RMSprop and Adam all divide a
  global ``lr`` by a running size of the gradients; this returns that quotient per weight::

      SGD       lr
      AdaGrad   lr_t / (sqrt(h) + eps)         h = sum of g^2, lr_t = lr / (1 + (t-1) lr_decay)
      RMSprop   lr / (sqrt(v) + eps)           v = EMA of g^2 (centered: v - gbar^2)
      Adam      lr sqrt(1 - b2^t) / (1 - b1^t) / (sqrt(v) + eps sqrt(1 - b2^t))
                = (lr / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)   (multiplies m, not g)
      RAdam     as Adam times the rectification r_t, or lr / (1 - b1^t) while rho_t <= threshold

  so that the last update was ``-effective_lr * g`` (SGD without momentum, AdaGrad, RMSprop
  without momentum) or ``-effective_lr * m`` (Adam, AdamW, RAdam).

* :func:`sharpness` -- how much the loss rises when the weights move by a random perturbation
  of fixed relative size (a cheap, random-direction version of the "epsilon-sharpness" of
  Keskar et al., 2017, "On large-batch training for deep learning: generalization gap and
  sharp minima", which maximizes over a box instead).
"""

from __future__ import annotations

import math

import numpy as np

from nnparts.optim.adagrad import Adagrad
from nnparts.optim.adam import Adam, AdamW, RAdam
from nnparts.optim.lookahead import Lookahead
from nnparts.optim.rmsprop import RMSprop
from nnparts.optim.sgd import SGD
from nnparts.tensor import no_grad

__all__ = ["effective_lr", "sharpness", "summarize"]


def effective_lr(optimizer) -> list[np.ndarray | None]:
    """Per parameter (in ``param_groups`` order) an array of the parameter's shape: the
    learning rate each weight got at the optimizer's last step (see the module docstring).
    ``None`` for a parameter that has no state yet (no step taken). A :class:`Lookahead`
    reports its inner optimizer's. Exact types only (a subclass may change the rule): SGD,
    Adagrad, RMSprop, Adam, AdamW, RAdam; anything else raises TypeError.
    """
    if isinstance(optimizer, Lookahead):
        optimizer = optimizer.optimizer
    kind = type(optimizer)
    rules = {
        Adagrad: _adagrad,
        RMSprop: _rmsprop,
        Adam: _adam,
        AdamW: _adam,
        RAdam: _radam,
    }
    if kind is not SGD and kind not in rules:
        raise TypeError(
            f"effective_lr does not know {kind.__name__}; supported: SGD, "
            f"{', '.join(k.__name__ for k in rules)} (and Lookahead around one of them)"
        )
    out: list[np.ndarray | None] = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(id(p))
            if kind is SGD:
                out.append(np.full(p.shape, float(group["lr"])))
            elif not state:
                out.append(None)
            else:
                out.append(rules[kind](state, group))
    return out


def _adagrad(state, group):
    t = state["step"]
    lr = group["lr"] / (1.0 + (t - 1) * group["lr_decay"])
    return lr / (np.sqrt(state["sum"].astype(np.float64)) + group["eps"])


def _rmsprop(state, group):
    v = state["square_avg"].astype(np.float64)
    if group["centered"]:
        v = v - state["grad_avg"].astype(np.float64) ** 2
    return group["lr"] / (np.sqrt(v) + group["eps"])


def _adam(state, group):
    t = state["step"]
    beta1, beta2 = group["betas"]
    v = state["max_exp_avg_sq"] if group.get("amsgrad") else state["exp_avg_sq"]
    sqrt_bc2 = math.sqrt(1.0 - beta2**t)
    step_size = group["lr"] * sqrt_bc2 / (1.0 - beta1**t)
    return step_size / (np.sqrt(v.astype(np.float64)) + group["eps"] * sqrt_bc2)


def _radam(state, group):
    t = state["step"]
    beta1, beta2 = group["betas"]
    bc1, bc2 = 1.0 - beta1**t, 1.0 - beta2**t
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    rho_t = rho_inf - 2.0 * t * beta2**t / bc2
    v = state["exp_avg_sq"].astype(np.float64)
    if rho_t <= group["rho_threshold"]:
        return np.full(v.shape, group["lr"] / bc1)
    rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
    return group["lr"] * rect * math.sqrt(bc2) / bc1 / (np.sqrt(v) + group["eps"])


def summarize(arrays, how: str = "median") -> float:
    """One number over all weights of :func:`effective_lr`'s arrays (``None`` skipped):
    ``"median"`` (robust to weights that never got a gradient, whose AdaGrad rate stays
    ``lr / eps``), ``"mean"``, or ``"geomean"``."""
    values = [a.ravel() for a in arrays if a is not None]
    if not values:
        raise ValueError("no parameter has optimizer state yet: take a step first")
    flat = np.concatenate(values)
    if how == "median":
        return float(np.median(flat))
    if how == "mean":
        return float(flat.mean())
    if how == "geomean":
        return float(np.exp(np.log(flat).mean()))
    raise ValueError(f"unknown summary {how!r}; allowed: median, mean, geomean")


def sharpness(
    model,
    loss_fn,
    radius: float,
    n_directions: int = 10,
    rng: np.random.Generator | None = None,
    relative: bool = True,
) -> dict:
    """The rise of the loss under random weight perturbations of fixed size.

    For each of ``n_directions`` Gaussian directions ``u`` (one array per parameter), the
    weights move to ``w + delta`` and ``loss_fn(model)`` is evaluated (without gradients):

    * ``relative=True``: each parameter tensor moves by ``radius * ||w_p||`` along
      ``u_p / ||u_p||`` (per-tensor relative size, so layers of any scale are perturbed
      alike; a tensor that is all zeros does not move);
    * ``relative=False``: all weights together move by ``radius`` along ``u / ||u||``.

    The weights are then restored bit for bit (also when ``loss_fn`` raises).

    On a quadratic bowl ``L = (w - c).A.(w - c) / 2`` at its minimum the rise along a unit
    direction ``u`` is ``s^2 u.A.u / 2`` for a step of length ``s``, so its mean over random
    directions is ``s^2 tr(A) / (2 n)`` (the course's "flat vs sharp": large where the
    curvature is large).

    Args:
        model: anything with ``parameters()`` (a Module), or a list of Parameters.
        loss_fn: ``loss_fn(model) -> Tensor | float`` on fixed data (e.g. a training subset).
        radius: size of the perturbation (relative or absolute, see above), >= 0.
        n_directions: random directions to average over (>= 1).
        rng: a seeded ``numpy.random.Generator`` (default: ``default_rng(0)``).

    Returns:
        ``{"base": loss at w, "mean": mean rise, "max": largest rise, "rises": array}``.
    """
    if not radius >= 0 or math.isinf(radius):
        raise ValueError(f"invalid radius={radius!r}: expected a finite number >= 0")
    if not isinstance(n_directions, (int, np.integer)) or n_directions < 1:
        raise ValueError(f"invalid n_directions={n_directions!r}: expected an integer >= 1")
    rng = np.random.default_rng(0) if rng is None else rng
    params = list(model.parameters()) if hasattr(model, "parameters") else list(model)
    saved = [np.array(p.data, copy=True) for p in params]
    norms = [float(np.linalg.norm(w.astype(np.float64))) for w in saved]

    def evaluate() -> float:
        with no_grad():
            loss = loss_fn(model)
        return float(np.asarray(getattr(loss, "data", loss)))

    rises = np.empty(n_directions)
    try:
        base = evaluate()
        for i in range(n_directions):
            directions = [rng.standard_normal(w.shape) for w in saved]
            if relative:
                scales = [
                    radius * n / max(float(np.linalg.norm(u)), 1e-300)
                    for n, u in zip(norms, directions)
                ]
            else:
                total = math.sqrt(sum(float(np.sum(u * u)) for u in directions))
                scales = [radius / max(total, 1e-300)] * len(directions)
            for p, w, u, s in zip(params, saved, directions, scales):
                p.data[...] = (w + s * u).astype(w.dtype, copy=False)
            rises[i] = evaluate() - base
    finally:
        for p, w in zip(params, saved):
            p.data[...] = w
    return {"base": base, "mean": float(rises.mean()), "max": float(rises.max()), "rises": rises}
