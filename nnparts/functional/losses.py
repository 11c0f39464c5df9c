"""Loss functions, each one fused Function with a hand-written backward.

* :func:`cross_entropy` -- softmax and negative log-likelihood in one op. The course derives the
  gradient of ``L = -1/N sum_i sum_c t_ic log p_ic`` with ``p = softmax(z)`` as
  ``dL/dz = (p - t) / N``; that is exactly the backward here (for target rows that sum to 1).
* :func:`mse_loss` -- ``mean((y - t)^2)`` (PyTorch's mean, not the course's ``1/2 sum``).
* :func:`binary_cross_entropy_with_logits` -- sigmoid and binary cross-entropy in one op.
"""

from __future__ import annotations

import numpy as np

from nnparts.tensor import Function, Tensor

__all__ = ["cross_entropy", "mse_loss", "binary_cross_entropy_with_logits"]

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _reduce(losses: np.ndarray, reduction: str, dtype) -> np.ndarray:
    if reduction == "none":
        return losses.astype(dtype, copy=False)
    total = losses.sum() if reduction == "sum" else losses.mean()
    return np.asarray(total, dtype=dtype)


def _grad_scale(g, reduction: str, n: int):
    """What the reduction contributes to the per-element gradient: ``g / n`` for the mean,
    ``g`` for the sum (a scalar) and for "none" (one upstream value per loss element)."""
    return g / n if reduction == "mean" else g


def _class_indices(target: np.ndarray, n: int, num_classes: int) -> np.ndarray:
    """Validate a vector of class labels and return it as int64."""
    if target.shape != (n,):
        raise ValueError(
            f"cross_entropy: target of shape {target.shape} does not fit logits with batch {n}; "
            f"expected class indices of shape ({n},) or probabilities of shape ({n}, {num_classes})"
        )
    if target.dtype.kind == "f":
        frac = target != np.round(target)
        if frac.any():
            raise ValueError(
                "cross_entropy: class-index targets must be integers, got non-integer values "
                f"{np.unique(target[frac])[:10].tolist()}; pass int labels in "
                f"[0, {num_classes - 1}] or probability rows of shape (N, C)"
            )
    elif target.dtype.kind not in "iub":
        raise ValueError(f"cross_entropy: target dtype {target.dtype} is not a label type")
    labels = target.astype(np.int64, copy=False)
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        raise ValueError(
            f"cross_entropy: labels out of range: {np.unique(labels[bad])[:10].tolist()}; "
            f"valid class indices are 0..{num_classes - 1} for logits with {num_classes} classes"
        )
    return labels


class CrossEntropy(Function):
    """Softmax cross-entropy from logits, fused.

    Forward, with ``m_i = max_c z_ic`` and the smoothed target
    ``q = (1 - eps) t + eps / C`` (``t`` one-hot rows or given probability rows)::

        log p_ic = z_ic - m_i - log sum_c' e^(z_ic' - m_i)
        loss_i   = -sum_c q_ic log p_ic

    Backward: ``dloss_i/dz_ic = p_ic sum_c' q_ic' - q_ic``, which is the course's ``p - y`` when
    each row of ``q`` sums to 1; the mean over the batch divides it by ``N``. Label smoothing:
    Szegedy et al. 2016 ("Rethinking the Inception architecture").
    """

    @staticmethod
    def forward(ctx, z, target, label_smoothing=0.0, reduction="mean"):
        n, c = z.shape
        shifted = z - z.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        s = e.sum(axis=1, keepdims=True)
        logp = shifted
        logp -= np.log(s)
        e /= s  # softmax p
        eps = label_smoothing
        if target.ndim == 1:  # class indices
            rows = np.arange(n)
            losses = -logp[rows, target]
            if eps:
                losses = (1 - eps) * losses - (eps / c) * logp.sum(axis=1)
            ctx.qsum = None
        else:  # probability rows
            q = target.astype(z.dtype, copy=False)
            if eps:
                q = (1 - eps) * q + eps / c
            losses = -(q * logp).sum(axis=1)
            ctx.qsum = q.sum(axis=1, keepdims=True)
            ctx.q = q
        ctx.save(e)
        ctx.target, ctx.eps, ctx.reduction = target, eps, reduction
        return _reduce(losses, reduction, z.dtype)

    @staticmethod
    def backward(ctx, g):
        (p,) = ctx.saved
        n, c = p.shape
        if ctx.qsum is None:
            grad = p.copy()
            if ctx.eps:
                grad -= ctx.eps / c
            grad[np.arange(n), ctx.target] -= 1 - ctx.eps
        else:
            grad = p * ctx.qsum
            grad -= ctx.q
        grad *= g[:, None] if ctx.reduction == "none" else _grad_scale(g, ctx.reduction, n)
        return grad


def cross_entropy(logits, target, label_smoothing: float = 0.0, reduction: str = "mean"):
    """Softmax cross-entropy between ``logits (N, C)`` and ``target``.

    Args:
        logits: unnormalized scores ``(N, C)``.
        target: class indices ``(N,)`` (ints, or floats with integer values) or probability rows
            ``(N, C)``. A tensor target is treated as a constant.
        label_smoothing: ``eps`` in ``[0, 1]``; the target becomes ``(1 - eps) t + eps / C``
            (PyTorch's definition, for both kinds of target).
        reduction: ``"mean"`` (over the batch), ``"sum"`` or ``"none"`` (per-sample losses).

    Stable at logits of 1e4 (max-subtracted log-sum-exp). The backward is the fused
    ``(softmax - target) / N``.
    """
    _check_reduction(reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    shape = np.shape(logits)
    if len(shape) != 2:
        raise ValueError(
            f"cross_entropy expects logits of shape (N, C), got {shape}; reshape a single "
            "sample to (1, C)"
        )
    t = target.data if isinstance(target, Tensor) else np.asarray(target)
    if t.ndim == 2:
        if t.shape != tuple(shape):
            raise ValueError(
                f"cross_entropy: probability target of shape {t.shape} must match logits {shape}"
            )
        if t.dtype.kind != "f":
            t = t.astype(np.float32)
    else:
        t = _class_indices(t, shape[0], shape[1])
    return CrossEntropy.apply(
        logits, target=t, label_smoothing=float(label_smoothing), reduction=reduction
    )


class MSELoss(Function):
    """``L = 1/n sum (y - t)^2``; ``dL/dy = 2 (y - t) / n`` and ``dL/dt = -dL/dy``.

    The course writes ``E = 1/2 sum (y - t)^2`` (gradient ``y - t``); nnparts follows PyTorch's
    ``MSELoss`` (mean over all elements, no 1/2).
    """

    @staticmethod
    def forward(ctx, pred, target, reduction="mean"):
        diff = pred - target
        ctx.save(diff)
        ctx.reduction = reduction
        return _reduce(diff * diff, reduction, diff.dtype)

    @staticmethod
    def backward(ctx, g):
        (diff,) = ctx.saved
        grad = diff * 2
        grad *= _grad_scale(g, ctx.reduction, diff.size)
        need_pred, need_target = ctx.needs_grad
        return (grad if need_pred else None), (-grad if need_target else None)


def mse_loss(pred, target, reduction: str = "mean") -> Tensor:
    """Mean squared error ``mean((pred - target)^2)`` (PyTorch's ``F.mse_loss``).

    ``pred`` and ``target`` must have the same shape (a silent broadcast of ``(N, 1)`` against
    ``(N,)`` is a classic bug, so it is an error here).
    """
    _check_reduction(reduction)
    if np.shape(pred) != np.shape(target):
        raise ValueError(
            f"mse_loss: pred shape {np.shape(pred)} and target shape {np.shape(target)} differ; "
            "reshape one so they match"
        )
    return MSELoss.apply(pred, target, reduction=reduction)


class BCEWithLogits(Function):
    """Binary cross-entropy on logits, stable form::

    loss = max(z, 0) - z t + log(1 + e^-|z|)   ( = -t log s(z) - (1-t) log(1 - s(z)) )
    dloss/dz = sigmoid(z) - t,     dloss/dt = -z
    """

    @staticmethod
    def forward(ctx, z, t, reduction="mean"):
        losses = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
        ctx.save(z, t)
        ctx.reduction = reduction
        return _reduce(losses, reduction, losses.dtype)

    @staticmethod
    def backward(ctx, g):
        from nnparts.functional.activations import _sigmoid

        z, t = ctx.saved
        scale = _grad_scale(g, ctx.reduction, z.size)
        need_z, need_t = ctx.needs_grad
        gz = (_sigmoid(z) - t) * scale if need_z else None
        gt = -z * scale if need_t else None
        return gz, gt


def binary_cross_entropy_with_logits(logits, target, reduction: str = "mean") -> Tensor:
    """Binary cross-entropy of ``sigmoid(logits)`` against ``target`` in [0, 1] (stable form)."""
    _check_reduction(reduction)
    if np.shape(logits) != np.shape(target):
        raise ValueError(
            f"binary_cross_entropy_with_logits: logits shape {np.shape(logits)} and target shape "
            f"{np.shape(target)} differ; they must match"
        )
    return BCEWithLogits.apply(logits, target, reduction=reduction)
