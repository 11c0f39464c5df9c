"""Differentiable array math: arithmetic, matmul, reductions, shape ops, elementwise functions.

Each op is a :class:`~nnparts.tensor.Function` whose ``backward`` sits right under its
``forward``. Broadcasting is handled once, in the autograd engine: a backward may return a
gradient of the broadcast shape and the engine sums it back to the input's shape.
"""

from __future__ import annotations

import builtins

import numpy as np

from nnparts.functional.layout import empty_channels_last, is_channels_last
from nnparts.tensor import Function, Tensor, _as_array

# ---------------------------------------------------------------------------------------------
# arithmetic


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        return a + b

    @staticmethod
    def backward(ctx, g):
        return g, g


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        return a - b

    @staticmethod
    def backward(ctx, g):
        return g, -g


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save(a, b)
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        need_a, need_b = ctx.needs_grad
        return (g * b if need_a else None), (g * a if need_b else None)


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save(a, b)
        return a / b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        need_a, need_b = ctx.needs_grad
        ga = g / b if need_a else None
        gb = -g * a / (b * b) if need_b else None
        return ga, gb


class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, g):
        return -g


class Pow(Function):
    """a ** b; d/da = b a^(b-1), d/db = a^b log(a).

    Edge values follow PyTorch: ``d/da = 0`` wherever ``b = 0`` (also at ``a = 0``);
    ``d/db = 0`` where ``a = 0`` and ``b >= 0``, else ``a^b log(a)`` -- ``-inf`` at ``a = 0,
    b < 0``, NaN for a negative base (``log(a)`` is NaN there), ``inf`` at ``a = inf, b > 0``.
    ``0^b`` for ``b < 0`` is ``inf`` with infinite ``d/da``, as NumPy and PyTorch. One known
    difference: ``(-inf) ** b`` for a non-integer ``b`` follows C's ``pow`` (``inf`` or 0) where
    PyTorch's ``sqrt``/``rsqrt`` shortcuts for ``b = +-0.5`` give NaN.
    """

    @staticmethod
    def forward(ctx, a, b):
        y = a**b
        ctx.save(a, b, y)
        return y

    @staticmethod
    def backward(ctx, g):
        a, b, y = ctx.saved
        need_a, need_b = ctx.needs_grad
        ga = gb = None
        if need_a:
            zero = b == 0
            if zero.any():  # d/da a^0 = 0, also at a = 0 (where b a^(b-1) would be 0 * inf)
                with np.errstate(divide="ignore", invalid="ignore"):
                    ga = np.where(zero, 0, g * b * a ** (b - 1))
            else:
                ga = g * b * a ** (b - 1)
        if need_b:
            with np.errstate(divide="ignore", invalid="ignore"):
                gb = g * np.where((a == 0) & (b >= 0), 0, y * np.log(a))
        return ga, gb


class MatMul(Function):
    """a @ b. For 2-D operands: dA = G B^T, dB = A^T G."""

    @staticmethod
    def forward(ctx, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError("matmul needs at least 1-D operands; use * for scalars")
        k_a = a.shape[-1]
        k_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
        if k_a != k_b:
            raise ValueError(
                f"matmul shape mismatch: {a.shape} @ {b.shape} "
                f"(inner dimensions {k_a} and {k_b} must be equal)"
            )
        ctx.save(a, b)
        return a @ b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        need_a, need_b = ctx.needs_grad
        if a.ndim == 1 and b.ndim == 1:  # inner product: g is a scalar
            return (g * b if need_a else None), (g * a if need_b else None)
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = g
        if a.ndim == 1:
            g2 = np.expand_dims(g2, -2)
        if b.ndim == 1:
            g2 = np.expand_dims(g2, -1)
        ga = gb = None
        if need_a:
            ga = g2 @ np.swapaxes(b2, -1, -2)
            if a.ndim == 1:
                ga = ga.reshape(-1, a.shape[0]).sum(0)
        if need_b:
            if a2.ndim == 2 and g2.ndim == 2:
                gb = a2.T @ g2
            else:
                gb = np.swapaxes(a2, -1, -2) @ g2
            if b.ndim == 1:
                gb = gb.reshape(-1, b.shape[0]).sum(0)
        return ga, gb


# ---------------------------------------------------------------------------------------------
# reductions


def _norm_axis(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        axis = (axis,)
    return tuple(a % ndim if ndim else a for a in axis)


def _expand_reduced(g, shape, axis, keepdims):
    """Give a reduced gradient back the reduced axes so it broadcasts against ``shape``."""
    if keepdims or not shape:
        return g
    axes = _norm_axis(axis, len(shape))
    return np.expand_dims(g, axes)


class Sum(Function):
    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        ctx.shape, ctx.axis, ctx.keepdims = a.shape, axis, keepdims
        return np.sum(a, axis=axis, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        g = _expand_reduced(g, ctx.shape, ctx.axis, ctx.keepdims)
        return np.broadcast_to(g, ctx.shape)


class Mean(Function):
    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        ctx.shape, ctx.axis, ctx.keepdims = a.shape, axis, keepdims
        out = np.mean(a, axis=axis, keepdims=keepdims)
        ctx.count = a.size // builtins.max(out.size, 1) if a.size else 1
        return out

    @staticmethod
    def backward(ctx, g):
        g = _expand_reduced(g, ctx.shape, ctx.axis, ctx.keepdims)
        return np.broadcast_to(g / ctx.count, ctx.shape)


class Max(Function):
    """Maximum over axes; the gradient is shared equally among tied maxima.

    NaN propagates (the max of a slice with a NaN is NaN), as PyTorch. Gradients at NaN as
    PyTorch too: the full reduction (``axis=None``, ``torch.max(x)``) shares the gradient among
    the NaN positions; a reduction over axes (``torch.amax(x, dim)``) gives NaN gradients in a
    slice whose maximum is NaN. An empty input has no maximum: ValueError.
    """

    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        axes = _norm_axis(axis, a.ndim)
        if a.size == 0 and (axis is None or any(a.shape[i] == 0 for i in axes)):
            raise ValueError(
                f"max of an empty tensor of shape {a.shape} over axis {axis} has no value; "
                "reduce over a non-empty axis (as torch.amax) or check the input"
            )
        out = np.max(a, axis=axis, keepdims=True)
        ctx.save(a, out)
        ctx.axis, ctx.keepdims = axis, keepdims
        if keepdims:
            return out
        return np.squeeze(out, axis=_norm_axis(axis, a.ndim)) if a.ndim else out

    @staticmethod
    def backward(ctx, g):
        a, out = ctx.saved
        g = _expand_reduced(g, a.shape, ctx.axis, ctx.keepdims)
        mask = a == out
        if ctx.axis is None and np.isnan(out).any():  # torch.max(x): the NaNs take it
            mask = np.isnan(a)
        count = mask.sum(axis=ctx.axis, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):  # a NaN slice: NaN, as amax
            return mask * (g / count)


# ---------------------------------------------------------------------------------------------
# shape ops


class Reshape(Function):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        try:
            return a.reshape(shape)
        except ValueError:
            raise ValueError(f"cannot reshape a tensor of shape {a.shape} into {shape}") from None

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape)


class Transpose(Function):
    @staticmethod
    def forward(ctx, a, axes=None):
        if axes is not None:
            if sorted(ax % a.ndim if a.ndim else ax for ax in axes) != list(range(a.ndim)):
                raise ValueError(
                    f"transpose axes {axes} are not a permutation of the {a.ndim} axes of a "
                    f"tensor of shape {a.shape}"
                )
            axes = tuple(ax % a.ndim for ax in axes)  # negative axes: argsort needs 0..ndim-1
        ctx.axes = axes
        return np.transpose(a, axes)

    @staticmethod
    def backward(ctx, g):
        if ctx.axes is None:
            return np.transpose(g)
        return np.transpose(g, np.argsort(ctx.axes))


def _is_basic_index(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, (int, np.integer, slice)) or i is None or i is Ellipsis for i in items)


class GetItem(Function):
    @staticmethod
    def forward(ctx, a, index):
        ctx.shape, ctx.dtype, ctx.index = a.shape, a.dtype, index
        return a[index]

    @staticmethod
    def backward(ctx, g):
        out = np.zeros(ctx.shape, dtype=g.dtype)
        if _is_basic_index(ctx.index):
            out[ctx.index] = g
        else:  # fancy indexing may repeat an element: accumulate
            np.add.at(out, ctx.index, g)
        return out


class Concat(Function):
    """torch.cat: zero-size inputs are fine; as PyTorch, a 1-D empty input ``(0,)`` is skipped
    whatever the others' rank (its gradient is empty); 0-d inputs cannot be joined."""

    @staticmethod
    def forward(ctx, *arrays, axis=0):
        for i, x in enumerate(arrays):
            if x.ndim == 0:
                raise ValueError(
                    f"concat: input {i} is 0-d and cannot be concatenated; use stack, or "
                    "reshape it to (1,)"
                )
        kept = [x for x in arrays if not (x.ndim == 1 and x.size == 0)] or list(arrays[:1])
        ndim = kept[0].ndim
        if not -ndim <= axis < ndim:
            raise ValueError(
                f"concat: axis {axis} is out of range for inputs of {ndim} dims (shapes "
                f"{[x.shape for x in arrays]})"
            )
        ctx.axis = axis
        ctx.skipped = [x.ndim == 1 and x.size == 0 and x is not kept[0] for x in arrays]
        ctx.sizes = [x.shape[axis] for x in kept]
        same = all(x.shape[:1] + x.shape[2:] == kept[0].shape[:1] + kept[0].shape[2:] for x in kept)
        if ndim == 4 and axis % 4 == 1 and same and all(is_channels_last(x) for x in kept):
            # channel concatenation of channels-last maps (DenseNet): stay channels-last, each
            # input's rows written into its columns of the output's rows
            shape = list(kept[0].shape)
            shape[1] = builtins.sum(ctx.sizes)
            out = empty_channels_last(shape, np.result_type(*kept))
            start = 0
            for x in kept:
                out[:, start : start + x.shape[1]] = x
                start += x.shape[1]
            return out
        return np.concatenate(kept, axis=axis)

    @staticmethod
    def backward(ctx, g):
        splits = np.cumsum(ctx.sizes)[:-1]
        parts = iter(np.split(g, splits, axis=ctx.axis))
        return tuple(np.zeros(0, g.dtype) if skip else next(parts) for skip in ctx.skipped)


class Stack(Function):
    @staticmethod
    def forward(ctx, *arrays, axis=0):
        ctx.axis = axis
        return np.stack(arrays, axis=axis)

    @staticmethod
    def backward(ctx, g):
        return tuple(np.moveaxis(g, ctx.axis, 0))


class Cast(Function):
    @staticmethod
    def forward(ctx, a, dtype):
        ctx.dtype = a.dtype
        return a.astype(dtype)

    @staticmethod
    def backward(ctx, g):
        return g.astype(ctx.dtype)


# ---------------------------------------------------------------------------------------------
# elementwise functions


class Exp(Function):
    @staticmethod
    def forward(ctx, a):
        y = np.exp(a)
        ctx.save(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved
        return g * y


class Log(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save(a)
        return np.log(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved
        return g / a


class Sqrt(Function):
    @staticmethod
    def forward(ctx, a):
        y = np.sqrt(a)
        ctx.save(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved
        return g / (2 * y)


class Abs(Function):
    """``|x|``; ``d/dx = sign(x)``: 0 at 0 and at NaN (PyTorch's ``sgn``), ``+-1`` at ``+-inf``.
    ``abs(nan) = nan``."""

    @staticmethod
    def forward(ctx, a):
        ctx.save(a)
        return np.abs(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved
        sign = np.sign(a)
        if sign.dtype.kind == "f":
            sign = np.where(np.isnan(sign), 0, sign)  # sgn(nan) = 0, as torch
        return g * sign


class Clip(Function):
    """Clamp to [min, max]; the gradient passes where min <= x <= max (as torch.clamp)."""

    @staticmethod
    def forward(ctx, a, min=None, max=None):
        ctx.save(a)
        ctx.lo, ctx.hi = min, max
        return np.clip(a, min, max)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved
        mask = np.ones(a.shape, dtype=bool)
        if ctx.lo is not None:
            mask &= a >= ctx.lo
        if ctx.hi is not None:
            mask &= a <= ctx.hi
        return g * mask


def _pick_grads(g, a, b, a_loses, b_loses):
    """PyTorch's rule for max/min: half of ``g`` to each side at a tie, all of it to the winner,
    nothing to the loser; where a NaN is involved neither side "loses", so both get ``g``."""
    share = np.where(a == b, g * 0.5, g)
    return np.where(a_loses, 0, share), np.where(b_loses, 0, share)


class Maximum(Function):
    """Elementwise max(a, b); at ties each side receives half the gradient (as torch). NaN
    propagates (``maximum(nan, 1) = nan``) and, as in torch, both inputs then get the gradient."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save(a, b)
        return np.maximum(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        return _pick_grads(g, a, b, a < b, a > b)


class Minimum(Function):
    """Elementwise min(a, b); ties and NaN as :class:`Maximum`."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save(a, b)
        return np.minimum(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        return _pick_grads(g, a, b, a > b, a < b)


class ClipTensor(Function):
    """Clamp to tensor bounds ``lo``, ``hi`` (broadcast against ``x``), as ``torch.clamp``:
    ``y = min(max(x, lo), hi)`` (so ``hi`` wins where ``lo > hi``). Gradients as PyTorch's::

        dx  = g  where lo <= x <= hi
        dlo = g  where x < lo and lo < hi
        dhi = g  where x > hi or hi < lo

    A missing bound is ``-inf`` / ``+inf``. The engine sums each gradient back to its input's
    shape, so a bound of shape ``(C, 1)`` against ``x (N, C, W)`` gets one value per row.
    """

    @staticmethod
    def forward(ctx, a, lo, hi):
        ctx.save(a, lo, hi)
        return np.minimum(np.maximum(a, lo), hi)

    @staticmethod
    def backward(ctx, g):
        a, lo, hi = ctx.saved
        need_a, need_lo, need_hi = ctx.needs_grad
        ga = np.where((a >= lo) & (a <= hi), g, 0) if need_a else None
        glo = np.where((a < lo) & (lo < hi), g, 0) if need_lo else None
        ghi = np.where((a > hi) | (hi < lo), g, 0) if need_hi else None
        return ga, glo, ghi


class DivRounded(Function):
    """``a / b`` rounded toward zero (``'trunc'``) or down (``'floor'``, Python's ``//``), as
    ``torch.div(a, b, rounding_mode=...)``. Piecewise constant: the gradient is 0 for both
    inputs (PyTorch's convention too)."""

    @staticmethod
    def forward(ctx, a, b, rounding_mode):
        if a.dtype.kind in "iub" and b.dtype.kind in "iub":
            if np.any(b == 0):
                raise ValueError(
                    "div: integer division by zero (rounding_mode="
                    f"{rounding_mode!r}); use float inputs for inf/nan results"
                )
            q = np.floor_divide(a, b)
            if rounding_mode == "trunc":
                q = q + ((np.remainder(a, b) != 0) & ((a < 0) != (b < 0)))
            return q
        with np.errstate(divide="ignore", invalid="ignore"):
            if rounding_mode == "trunc":
                return np.trunc(a / b)
            return np.floor_divide(a, b)

    @staticmethod
    def backward(ctx, g):
        return np.zeros_like(g), np.zeros_like(g)


class Where(Function):
    """where(condition, a, b); the condition is not differentiable."""

    @staticmethod
    def forward(ctx, a, b, condition):
        ctx.condition = condition
        return np.where(condition, a, b)

    @staticmethod
    def backward(ctx, g):
        c = ctx.condition
        return np.where(c, g, 0), np.where(c, 0, g)


# ---------------------------------------------------------------------------------------------
# function-style API (what Tensor's operators call)


def add(a, b) -> Tensor:
    return Add.apply(a, b)


def sub(a, b) -> Tensor:
    return Sub.apply(a, b)


def mul(a, b) -> Tensor:
    return Mul.apply(a, b)


def div(a, b, rounding_mode=None) -> Tensor:
    """``a / b`` (true division); ``rounding_mode='trunc'`` rounds the quotient toward zero,
    ``'floor'`` down (Python's ``//``), as ``torch.div``. The rounded forms have zero gradient.
    """
    if rounding_mode is None:
        return Div.apply(a, b)
    if rounding_mode not in ("trunc", "floor"):
        raise ValueError(
            f"div: rounding_mode must be None, 'trunc' or 'floor', got {rounding_mode!r}"
        )
    return DivRounded.apply(a, b, rounding_mode=rounding_mode)


def neg(a) -> Tensor:
    return Neg.apply(a)


def pow(a, b) -> Tensor:  # noqa: A001 - mirrors the operator
    return Pow.apply(a, b)


def matmul(a, b) -> Tensor:
    return MatMul.apply(a, b)


def _axis_arg(axis):
    return tuple(axis) if isinstance(axis, list) else axis


def sum(a, axis=None, keepdims=False) -> Tensor:  # noqa: A001
    return Sum.apply(a, axis=_axis_arg(axis), keepdims=keepdims)


def mean(a, axis=None, keepdims=False) -> Tensor:
    return Mean.apply(a, axis=_axis_arg(axis), keepdims=keepdims)


def max(a, axis=None, keepdims=False) -> Tensor:  # noqa: A001
    return Max.apply(a, axis=_axis_arg(axis), keepdims=keepdims)


def reshape(a, shape) -> Tensor:
    return Reshape.apply(a, shape=tuple(shape) if not isinstance(shape, int) else (shape,))


def transpose(a, axes=None) -> Tensor:
    return Transpose.apply(a, axes=tuple(axes) if axes is not None else None)


def flatten(a, start_dim: int = 1) -> Tensor:
    """Keep the first ``start_dim`` axes, merge the rest (N, C, H, W) -> (N, C*H*W).

    As ``torch.flatten(x, start_dim)``: works for zero-size inputs ((0, 3, 4) -> (0, 12));
    with ``start_dim=0`` a 0-d input becomes ``(1,)``. ``start_dim`` may be negative.
    """
    shape = tuple(np.shape(a.data if isinstance(a, Tensor) else a))
    ndim = builtins.max(len(shape), 1)
    if not -ndim <= start_dim < ndim:
        raise ValueError(
            f"flatten: start_dim {start_dim} is out of range for a tensor of shape {shape} "
            f"(valid: {-ndim}..{ndim - 1}, as torch.flatten)"
            + ("; a 0-d or 1-D input is flattened with start_dim=0" if len(shape) <= 1 else "")
        )
    if len(shape) <= 1:
        return reshape(a, (builtins.max(int(np.prod(shape)), 0) if shape else 1,))
    start = start_dim % len(shape)
    return reshape(a, shape[:start] + (int(np.prod(shape[start:])),))


def getitem(a, index) -> Tensor:
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return GetItem.apply(a, index=index)


def concat(tensors, axis: int = 0) -> Tensor:
    """Join tensors along an existing axis (torch.cat)."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("concat needs at least one tensor")
    return Concat.apply(*tensors, axis=axis)


def stack(tensors, axis: int = 0) -> Tensor:
    """Join tensors along a new axis (torch.stack)."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack needs at least one tensor")
    return Stack.apply(*tensors, axis=axis)


def exp(a) -> Tensor:
    return Exp.apply(a)


def log(a) -> Tensor:
    return Log.apply(a)


def sqrt(a) -> Tensor:
    return Sqrt.apply(a)


def abs(a) -> Tensor:  # noqa: A001
    return Abs.apply(a)


def clip(a, min=None, max=None) -> Tensor:  # noqa: A002
    """Clamp to ``[min, max]`` (``torch.clamp``). Numbers: the gradient passes where
    ``min <= x <= max``. Tensor or array bounds broadcast against ``a`` and receive gradients
    where they are the active bound (see :class:`ClipTensor`)."""
    if (min is None or np.ndim(min) == 0 and not isinstance(min, Tensor)) and (
        max is None or np.ndim(max) == 0 and not isinstance(max, Tensor)
    ):
        return Clip.apply(a, min=min, max=max)
    dtype = a.dtype if isinstance(a, Tensor) else _as_array(a).dtype
    lo = np.asarray(-np.inf, dtype=dtype) if min is None else min
    hi = np.asarray(np.inf, dtype=dtype) if max is None else max
    return ClipTensor.apply(a, lo, hi)


clamp = clip


def maximum(a, b) -> Tensor:
    return Maximum.apply(a, b)


def minimum(a, b) -> Tensor:
    return Minimum.apply(a, b)


def where(condition, a, b) -> Tensor:
    return Where.apply(a, b, condition=_as_array(condition).astype(bool))
