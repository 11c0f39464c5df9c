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


def _index_shape(shape) -> tuple:
    """The shape of class-index targets for logits of ``shape``: ``(N, d1, ...)``; ``()`` for an
    unbatched ``(C,)``."""
    return () if len(shape) == 1 else (shape[0], *shape[2:])


def _class_indices(target: np.ndarray, shape: tuple, ignore_index: int) -> np.ndarray:
    """Validate class labels for logits of ``shape`` and return them as int64."""
    num_classes = shape[0] if len(shape) == 1 else shape[1]
    expected = _index_shape(shape)
    if target.shape != expected:
        prob_shape = tuple(shape)
        if len(shape) == 1:
            raise ValueError(
                f"cross_entropy: target of shape {target.shape} does not fit 1-D logits: a batch "
                f"needs logits of shape (N, C), not {prob_shape} (1-D logits (C,) are one "
                "unbatched sample, whose target is one class index, shape (), or probabilities)"
            )
        if target.ndim == len(expected) + 1 and target.shape[-1] == 1:
            fix = "target.reshape(-1)" if len(expected) == 1 else f"target.reshape({expected})"
            raise ValueError(
                f"cross_entropy: target of shape {target.shape} has an extra axis of size 1; "
                f"class indices for logits {prob_shape} have shape {expected}: pass {fix}"
            )
        raise ValueError(
            f"cross_entropy: target of shape {target.shape} does not fit logits {prob_shape} "
            f"(batch {shape[0]}); expected class indices of shape {expected} or probabilities "
            f"of shape {prob_shape}"
        )
    if target.dtype.kind == "f":
        frac = ~(target == np.round(target))  # NaN counts as non-integer
        if frac.any():
            raise ValueError(
                f"cross_entropy: a float target of shape {target.shape} is read as class indices, "
                f"which must be whole numbers; got non-integer values "
                f"{np.unique(target[frac])[:10].tolist()}. Pass "
                f"integer labels in [0, {num_classes - 1}] (y.astype(np.int64)), or probabilities "
                f"of the logits' shape {tuple(shape)}"
            )
    elif target.dtype.kind not in "iub":
        raise ValueError(
            f"cross_entropy: target dtype {target.dtype} is not a label type; pass integer class "
            f"indices in [0, {num_classes - 1}] or float probabilities of shape {tuple(shape)}"
        )
    labels = target.astype(np.int64, copy=False)
    bad = ((labels < 0) | (labels >= num_classes)) & (labels != ignore_index)
    if bad.any():
        values = np.unique(labels[bad])[:10].tolist()
        hint = ""
        if labels.size and labels.min(initial=num_classes) >= 1 and labels.max() == num_classes:
            hint = "; the labels look numbered from 1: subtract 1"
        elif labels.max(initial=0) >= num_classes:
            hint = (
                f"; with {labels.max() + 1} or more classes give the last layer that many outputs"
            )
        raise ValueError(
            f"cross_entropy: labels out of range: {values}; valid class indices are "
            f"0..{num_classes - 1} for logits with {num_classes} classes (and ignore_index="
            f"{ignore_index} for positions to skip){hint}"
        )
    return labels


def _check_probabilities(t: np.ndarray, class_axis: int):
    """Warn (once per call) when probability targets are negative or their rows do not sum to 1.

    PyTorch computes the loss for any such target without a word; the number is then not a
    cross-entropy of distributions (``-sum_c t_c log p_c`` grows with the row's mass)."""
    if t.size == 0:
        return
    sums = t.sum(axis=class_axis)
    eps = np.finfo(t.dtype).eps if t.dtype.kind == "f" else np.finfo(np.float32).eps
    tol = max(1e-6, 64 * eps * t.shape[class_axis])
    off = ~(np.abs(sums - 1) <= tol)
    negative = t < 0
    if off.any() or negative.any():
        import warnings

        where = np.argwhere(off)[0] if off.any() else np.argwhere(negative)[0][:-1]
        row = tuple(int(i) for i in where)
        what = (
            f"{int(off.sum())} of {off.size} rows do not sum to 1 (row {row} sums to "
            f"{float(sums[row]):.6g})"
            if off.any()
            else f"{int(negative.sum())} entries are negative"
        )
        warnings.warn(
            f"cross_entropy: probability targets should be rows >= 0 that sum to 1 over the class "
            f"axis; {what}. The loss is computed as given (as PyTorch); if that was not meant, "
            f"normalize with t / t.sum(axis={class_axis}, keepdims=True), or pass class indices",
            UserWarning,
            stacklevel=3,
        )


def _to_rows(z: np.ndarray) -> np.ndarray:
    """``(N, C, d1, ...) -> (N*d1*..., C)`` (class axis last); ``(C,) -> (1, C)``."""
    if z.ndim == 2:
        return z
    if z.ndim == 1:
        return z[None]
    return np.moveaxis(z, 1, -1).reshape(-1, z.shape[1])


def _from_rows(grad: np.ndarray, shape: tuple) -> np.ndarray:
    if len(shape) == 2:
        return grad
    if len(shape) == 1:
        return grad[0]
    return np.moveaxis(grad.reshape(shape[0], *shape[2:], shape[1]), -1, 1)


class CrossEntropy(Function):
    """Softmax cross-entropy from logits, fused.

    Forward, on rows ``z_i`` of ``C`` scores (the class axis 1 of ``(N, C, d1, ...)`` moved
    last), with ``m_i = max_c z_ic`` and the smoothed target ``q = (1 - eps) t + eps / C``
    (``t`` one-hot rows or given probability rows)::

        log p_ic = z_ic - m_i - log sum_c' e^(z_ic' - m_i)
        loss_i   = -sum_c a_ic log p_ic,      a_ic = w_c q_ic

    with class weights ``w`` (1 without ``weight``; for class indices the weight is the target
    class's ``w_y``, and ``w_c`` on the smoothing term, as PyTorch). Rows whose label is
    ``ignore_index`` have ``a = 0``. The mean divides by ``sum_i w_(y_i)`` over the rows not
    ignored for class indices (``N*d1*...`` for probabilities), as PyTorch.

    Backward: ``dloss_i/dz_ic = p_ic sum_c' a_ic' - a_ic``, which is the course's ``p - y``
    when each row of ``a`` sums to 1. Label smoothing: Szegedy et al. 2016 ("Rethinking the
    Inception architecture").
    """

    @staticmethod
    def forward(
        ctx, z, target, label_smoothing=0.0, reduction="mean", weight=None, ignore_index=-100
    ):
        shape = z.shape
        z2 = _to_rows(z)
        n, c = z2.shape
        shifted = z2 - z2.max(axis=1, keepdims=True) if z2.size else z2.copy()
        e = np.exp(shifted)
        s = e.sum(axis=1, keepdims=True)
        logp = shifted
        logp -= np.log(s)
        e /= s  # softmax p
        eps = label_smoothing
        ctx.mode = "plain"
        denom = n
        if target.dtype.kind != "f":  # class indices
            labels = target.reshape(-1)
            rows = np.arange(n)
            valid = labels != ignore_index
            if weight is None and valid.all():
                losses = -logp[rows, labels]
                if eps:
                    losses = (1 - eps) * losses - (eps / c) * logp.sum(axis=1)
                ctx.labels = labels
            else:  # class weights and/or ignored positions
                safe = np.where(valid, labels, 0)
                wy = valid.astype(z2.dtype) if weight is None else weight[safe] * valid
                losses = -logp[rows, safe] * wy
                if eps:
                    smooth = -(logp.sum(axis=1) if weight is None else logp @ weight) * valid
                    losses = (1 - eps) * losses + (eps / c) * smooth
                ctx.mode = "index"
                ctx.labels, ctx.wy, ctx.valid, ctx.weight = safe, wy, valid, weight
                denom = wy.sum()
        else:  # probability rows
            q = _to_rows(target).astype(z.dtype, copy=False)
            if eps:
                q = (1 - eps) * q + eps / c
            if weight is not None:
                q = q * weight
            losses = -(q * logp).sum(axis=1)
            ctx.mode = "prob"
            ctx.qsum = q.sum(axis=1, keepdims=True)
            ctx.q = q
        ctx.save(e)
        ctx.eps, ctx.reduction, ctx.shape, ctx.denom = eps, reduction, shape, denom
        if reduction == "none":
            return losses.reshape(_index_shape(shape)).astype(z.dtype, copy=False)
        if reduction == "mean" and ctx.mode == "plain" and n:
            return np.asarray(losses.mean(), dtype=z.dtype)
        total = losses.sum()
        if reduction == "mean":
            with np.errstate(invalid="ignore", divide="ignore"):  # nothing counted: NaN, as torch
                total = total / denom if denom else np.nan
        return np.asarray(total, dtype=z.dtype)

    @staticmethod
    def backward(ctx, g):
        (p,) = ctx.saved
        n, c = p.shape
        eps = ctx.eps
        if ctx.mode == "plain":
            grad = p.copy()
            if eps:
                grad -= eps / c
            grad[np.arange(n), ctx.labels] -= 1 - eps
        elif ctx.mode == "index":
            w, wy, valid = ctx.weight, ctx.wy, ctx.valid
            total_w = c if w is None else w.sum()
            grad = p * ((1 - eps) * wy + (eps / c) * total_w * valid)[:, None]
            if eps:
                grad -= (eps / c) * (valid[:, None] if w is None else w * valid[:, None])
            grad[np.arange(n), ctx.labels] -= (1 - eps) * wy
        else:
            grad = p * ctx.qsum
            grad -= ctx.q
        if ctx.reduction == "none":
            grad *= np.reshape(g, (-1, 1))
        elif ctx.reduction == "mean":
            with np.errstate(invalid="ignore", divide="ignore"):
                grad *= g / ctx.denom if ctx.denom else np.nan
        else:
            grad *= g
        return _from_rows(grad, ctx.shape)


def cross_entropy(
    logits,
    target,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    *,
    weight=None,
    ignore_index: int = -100,
):
    """Softmax cross-entropy between ``logits`` and ``target`` (PyTorch's ``F.cross_entropy``).

    ``loss_i = -sum_c a_ic log softmax(z_i)_c`` with ``a_ic = w_c ((1 - eps) t_ic + eps / C)``,
    ``t_i`` the one-hot row of label ``y_i`` (weighted by ``w_(y_i)``) or the given probability
    row; see :class:`CrossEntropy` for the exact weighting and the backward.

    Args:
        logits: unnormalized scores ``(N, C)``, ``(N, C, d1, d2, ...)`` (a score per pixel, the
            class axis is 1) or one unbatched sample ``(C,)``.
        target: class indices of shape ``(N,)`` / ``(N, d1, ...)`` / ``()`` (ints, or floats with
            integer values), or probabilities of the logits' shape (rows along the class axis
            that should sum to 1; others give a warning and are used as given, as PyTorch). A
            tensor target is treated as a constant.
        label_smoothing: ``eps`` in ``[0, 1]``; the target becomes ``(1 - eps) t + eps / C``
            (PyTorch's definition, for both kinds of target).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per-position losses of the target's
            shape). The mean of class-index losses divides by ``sum w_(y_i)`` over the positions
            not ignored (their count without ``weight``); NaN when nothing is counted, as torch.
        weight: optional class weights ``(C,)`` (a constant).
        ignore_index: label whose positions give loss 0 and are left out of the mean (class
            indices only; -100 by default, as PyTorch).

    Stable at logits of 1e4 (max-subtracted log-sum-exp). The backward is the fused
    ``(softmax - target) / N``.
    """
    _check_reduction(reduction)
    if not isinstance(label_smoothing, (int, float, np.integer, np.floating)) or isinstance(
        label_smoothing, bool
    ):
        raise ValueError(
            f"label_smoothing must be a number in [0, 1], got {type(label_smoothing).__name__}; "
            "the third positional argument is label_smoothing: pass class weights as weight=..."
        )
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    shape = tuple(np.shape(logits))
    if len(shape) == 0:
        raise ValueError(
            "cross_entropy expects logits of shape (N, C), (N, C, d1, ...) or (C,), got a 0-d "
            "tensor; a score per class is needed"
        )
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
        raise ValueError(f"ignore_index must be an int, got {ignore_index!r}")
    num_classes = shape[0] if len(shape) == 1 else shape[1]
    dtype = logits.dtype if isinstance(logits, Tensor) else np.asarray(logits).dtype
    w = None
    if weight is not None:
        w = np.asarray(weight.data if isinstance(weight, Tensor) else weight)
        if w.shape != (num_classes,):
            raise ValueError(
                f"cross_entropy: weight of shape {w.shape} does not fit {num_classes} classes; "
                f"expected one weight per class, shape ({num_classes},)"
            )
        w = w.astype(dtype if dtype.kind == "f" else np.float32, copy=False)
    t = target.data if isinstance(target, Tensor) else np.asarray(target)
    if t.shape == shape:
        if t.dtype.kind != "f":
            t = t.astype(np.float32)
        _check_probabilities(t, 0 if len(shape) == 1 else 1)
    else:
        t = _class_indices(t, shape, int(ignore_index))
    return CrossEntropy.apply(
        logits,
        target=t,
        label_smoothing=float(label_smoothing),
        reduction=reduction,
        weight=w,
        ignore_index=int(ignore_index),
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

    With ``pos_weight`` ``pw`` (weighs the positive term, PyTorch's form) and ``weight`` ``w``::

    loss = w [(1 - t) z + (1 + (pw - 1) t) softplus(-z)]
         ( = -w [pw t log s(z) + (1 - t) log(1 - s(z))] )
    dloss/dz = w [(1 - t) - (1 + (pw - 1) t) sigmoid(-z)]
    dloss/dt = w [-z + (pw - 1) softplus(-z)]

    with ``softplus(-z) = log(1 + e^-|z|) + max(-z, 0)``.
    """

    @staticmethod
    def forward(ctx, z, t, reduction="mean", weight=None, pos_weight=None):
        ctx.reduction, ctx.weight, ctx.pos_weight = reduction, weight, pos_weight
        if weight is None and pos_weight is None:
            losses = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
        else:
            sp = np.log1p(np.exp(-np.abs(z))) + np.maximum(-z, 0)  # softplus(-z) = -log s(z)
            pw = 1 if pos_weight is None else pos_weight
            losses = (1 - t) * z + (1 + (pw - 1) * t) * sp
            if weight is not None:
                losses = losses * weight
            ctx.sp = sp
        ctx.save(z, t)
        return _reduce(losses, reduction, losses.dtype)

    @staticmethod
    def backward(ctx, g):
        from nnparts.functional.activations import _sigmoid

        z, t = ctx.saved
        scale = _grad_scale(g, ctx.reduction, z.size)
        need_z, need_t = ctx.needs_grad
        w, pw = ctx.weight, ctx.pos_weight
        if w is None and pw is None:
            gz = (_sigmoid(z) - t) * scale if need_z else None
            gt = -z * scale if need_t else None
            return gz, gt
        pw = 1 if pw is None else pw
        w = 1 if w is None else w
        gz = ((1 - t) - (1 + (pw - 1) * t) * _sigmoid(-z)) * w * scale if need_z else None
        gt = (-z + (pw - 1) * ctx.sp) * w * scale if need_t else None
        return gz, gt


def _constant(value, name, shape, dtype):
    if value is None:
        return None
    arr = np.asarray(value.data if isinstance(value, Tensor) else value)
    try:
        full = np.broadcast_shapes(arr.shape, shape)
    except ValueError:
        full = None
    if full != tuple(shape):
        raise ValueError(
            f"binary_cross_entropy_with_logits: {name} of shape {arr.shape} does not broadcast "
            f"to the logits' shape {tuple(shape)}"
            + ("; pos_weight has one value per class (last axis)" if name == "pos_weight" else "")
        )
    return arr.astype(dtype if np.dtype(dtype).kind == "f" else np.float32, copy=False)


def binary_cross_entropy_with_logits(
    logits, target, reduction: str = "mean", *, weight=None, pos_weight=None
) -> Tensor:
    """Binary cross-entropy of ``sigmoid(logits)`` against ``target`` in [0, 1] (stable form).

    ``loss = -w [pw t log sigmoid(z) + (1 - t) log(1 - sigmoid(z))]`` (PyTorch's
    ``F.binary_cross_entropy_with_logits``): ``weight`` ``w`` rescales each element,
    ``pos_weight`` ``pw`` (one value per class, broadcast along the last axis) weighs the
    positive examples (``pw = #negatives / #positives`` balances a rare class). Both are
    constants that must broadcast to the logits' shape. The mean is over all elements.
    """
    _check_reduction(reduction)
    if np.shape(logits) != np.shape(target):
        raise ValueError(
            f"binary_cross_entropy_with_logits: logits shape {np.shape(logits)} and target shape "
            f"{np.shape(target)} differ; they must match"
        )
    if weight is None and pos_weight is None:
        return BCEWithLogits.apply(logits, target, reduction=reduction)
    shape = np.shape(logits)
    dtype = logits.dtype if isinstance(logits, Tensor) else np.asarray(logits).dtype
    return BCEWithLogits.apply(
        logits,
        target,
        reduction=reduction,
        weight=_constant(weight, "weight", shape, dtype),
        pos_weight=_constant(pos_weight, "pos_weight", shape, dtype),
    )
