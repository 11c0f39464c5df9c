"""Activation functions, each a :class:`~nnparts.tensor.Function` with its backward by hand.

The derivative of every activation sits right under its forward, in the course's notation
(``y`` is the output, ``g`` the upstream gradient ``dL/dy``). Numerical care:

* ``sigmoid`` uses ``exp(-|x|)`` only, so ``x = +-1e4`` neither overflows nor warns;
* ``softmax`` and ``log_softmax`` subtract the row maximum first (``softmax(x) = softmax(x - c)``);
* ``elu`` uses ``expm1`` on ``min(x, 0)`` (no overflow for large positive ``x``).
"""

from __future__ import annotations

import numpy as np

from nnparts import threads
from nnparts.functional.layout import constant, flat
from nnparts.tensor import Function, Tensor

__all__ = [
    "identity",
    "step",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "prelu",
    "elu",
    "swish",
    "silu",
    "softsign",
    "soft_exponential",
    "maxout",
    "softmax",
    "log_softmax",
]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Stable logistic function: ``1/(1+e^-x)`` for x >= 0 and ``e^x/(1+e^x)`` for x < 0."""
    e = np.exp(-np.abs(x))
    num = np.where(x >= 0, 1, e).astype(e.dtype, copy=False)
    e += 1
    num /= e
    return num


# ---------------------------------------------------------------------------------------------
# identity and step


class Identity(Function):
    """``y = x``; ``dy/dx = 1`` (the "linear" activation)."""

    @staticmethod
    def forward(ctx, x):
        return x

    @staticmethod
    def backward(ctx, g):
        return g


class Step(Function):
    """Heaviside step ``y = 1 if x > 0 else 0``; ``dy/dx = 0`` everywhere (undefined at 0).

    The zero gradient is the point: a network of step units cannot be trained by gradient
    descent, which is why the perceptron's step was replaced by the sigmoid.
    """

    @staticmethod
    def forward(ctx, x):
        return (x > 0).astype(x.dtype if x.dtype.kind == "f" else np.float32)

    @staticmethod
    def backward(ctx, g):
        return np.zeros_like(g)


# ---------------------------------------------------------------------------------------------
# sigmoid family


class Sigmoid(Function):
    """``y = 1 / (1 + e^-x)``; ``dy/dx = y (1 - y)``."""

    @staticmethod
    def forward(ctx, x):
        y = _sigmoid(x)
        ctx.save(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved
        return g * y * (1 - y)


class Tanh(Function):
    """``y = tanh(x) = 2 sigmoid(2x) - 1``; ``dy/dx = 1 - y^2``."""

    @staticmethod
    def forward(ctx, x):
        y = np.tanh(x)
        ctx.save(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved
        return g * (1 - y * y)


class Softsign(Function):
    """``y = x / (1 + |x|)``; ``dy/dx = 1 / (1 + |x|)^2`` (Bergstra et al. 2009)."""

    @staticmethod
    def forward(ctx, x):
        d = np.abs(x)
        d += 1
        ctx.save(d)
        return x / d

    @staticmethod
    def backward(ctx, g):
        (d,) = ctx.saved
        return g / (d * d)


class Swish(Function):
    """Swish ``y = x sigmoid(beta x)`` (Ramachandran, Zoph & Le 2017).

    ``dy/dx = s + beta x s (1 - s)`` and ``dy/dbeta = x^2 s (1 - s)`` with ``s = sigmoid(beta x)``.
    ``beta`` may be a number or a (learnable) tensor broadcastable to ``x``; ``beta = 1`` is SiLU.
    """

    @staticmethod
    def forward(ctx, x, beta):
        s = _sigmoid(beta * x)
        ctx.save(x, beta, s)
        return x * s

    @staticmethod
    def backward(ctx, g):
        x, beta, s = ctx.saved
        need_x, need_beta = ctx.needs_grad
        ds = s * (1 - s)  # sigmoid'(beta x)
        gx = g * (s + beta * x * ds) if need_x else None
        gbeta = g * x * x * ds if need_beta else None
        return gx, gbeta


# ---------------------------------------------------------------------------------------------
# rectifiers


# values per row of the zero operand of :func:`_relu_into`: NumPy's broadcast runs rows of up to
# 4096 float32 values at one speed and longer rows ~1.4x faster (AMD EPYC Zen 4, 1.6M values on
# one thread: 0.35 ms at 1024 and 4096, 0.25 at 4608-16384); see layout.TILE_VALUES
ZERO_ROW = 8192


def _relu_into(x: np.ndarray, y: np.ndarray) -> None:
    """``y = max(x, 0)`` for 1-D contiguous ``x`` and ``y``, taken against a row of zeros that
    is broadcast over ``x`` cut into rows, not against the scalar 0.

    NumPy vectorizes ``maximum`` only where both operands advance; with a scalar (stride 0)
    operand it runs its plain loop: 0.26 ms against 0.14 ms for 1.4M float32 values on one
    thread (AMD EPYC Zen 4, rows of 1024; PyTorch's ReLU 0.11 ms). The same comparison, so the
    same values, bit for bit (NaN stays NaN, -0.0 stays -0.0)."""
    n = x.size
    row = constant(0, ZERO_ROW, x.dtype)
    full = n - n % ZERO_ROW
    if full:
        np.maximum(x[:full].reshape(-1, ZERO_ROW), row, out=y[:full].reshape(-1, ZERO_ROW))
    if full < n:
        np.maximum(x[full:], row[: n - full], out=y[full:])


class ReLU(Function):
    """``y = max(0, x)``; ``dy/dx = 0 if x <= 0 else 1`` (0 at x = 0, as PyTorch).

    NaN and inf follow PyTorch: ``relu(nan) = nan`` with gradient 1 (PyTorch's backward tests
    ``y <= 0``, false for NaN), ``relu(inf) = inf`` with gradient 1, ``relu(-inf) = 0`` with 0.
    """

    @staticmethod
    def forward(ctx, x):
        y = np.empty_like(x)  # x's memory layout (NCHW or channels-last)
        xf, yf = flat(x), flat(y)  # chunks of the flat arrays, in memory order, on several threads
        if xf is None:  # a strided view: one NumPy call
            np.maximum(x, 0, out=y)
        else:
            threads.parallel_for(xf.size, xf.size, lambda s, e: _relu_into(xf[s:e], yf[s:e]))
        ctx.save(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved
        dtype = np.result_type(g, y)
        if g.shape != y.shape or g.strides != y.strides or flat(y) is None:
            # different layouts or dtypes, a strided view, broadcasting: one NumPy call
            return np.multiply(g, y != 0, dtype=dtype)  # y >= 0 or NaN: "not y <= 0", as torch
        dx = np.empty_like(y, dtype=dtype)  # the layout of y and g
        gf, yf, df = flat(g), flat(y), flat(dx)

        def chunk(s, e):
            np.not_equal(yf[s:e], 0, out=df[s:e])  # 1.0 where not y <= 0 (y > 0 or NaN)
            df[s:e] *= gf[s:e]

        threads.parallel_for(gf.size, gf.size, chunk)
        return dx


class LeakyReLU(Function):
    """``y = x if x > 0 else negative_slope * x``; ``dy/dx = 1 or negative_slope``."""

    @staticmethod
    def forward(ctx, x, negative_slope=0.01):
        pos = x > 0
        ctx.save(pos)
        ctx.slope = negative_slope
        return np.where(pos, x, x * negative_slope).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        (pos,) = ctx.saved
        return g * np.where(pos, 1, ctx.slope).astype(g.dtype, copy=False)


class PReLU(Function):
    """Parametric ReLU ``y = x if x > 0 else a_c x`` with a learnable slope per channel.

    He et al. 2015 ("Delving deep into rectifiers"). ``dy/dx = 1 or a_c``;
    ``dL/da_c = sum over every position of channel c with x <= 0 of g x``. As PyTorch, the channel
    axis is 1 and ``weight`` has one slope per channel or a single shared slope.
    """

    @staticmethod
    def forward(ctx, x, weight):
        if x.ndim == 0 and weight.ndim == 1 and weight.size == 1:  # a 0-d input, as torch
            weight = weight.reshape(())
            pos = x > 0
            ctx.save(x, pos, weight)
            ctx.wshape = (1,)
            return np.where(pos, x, weight * x)
        if weight.ndim != 1 or weight.size not in (1, x.shape[1] if x.ndim >= 2 else 1):
            channels = x.shape[1] if x.ndim >= 2 else 1
            raise ValueError(
                f"prelu weight of shape {weight.shape} does not fit input {x.shape}: expected "
                f"(1,) or one slope per channel (axis 1), i.e. ({channels},)"
            )
        w = weight
        if weight.size > 1:
            w = weight.reshape((1, -1) + (1,) * (x.ndim - 2))
        pos = x > 0
        ctx.save(x, pos, w)
        ctx.wshape = weight.shape
        return np.where(pos, x, w * x)

    @staticmethod
    def backward(ctx, g):
        x, pos, w = ctx.saved
        need_x, need_w = ctx.needs_grad
        gx = np.where(pos, g, g * w) if need_x else None
        gw = None
        if need_w:
            contrib = np.where(pos, 0, g * x)
            if ctx.wshape[0] > 1:
                axes = (0,) + tuple(range(2, x.ndim))
                gw = contrib.sum(axis=axes)
            else:
                gw = np.reshape(contrib.sum(), (1,))
        return gx, gw


class ELU(Function):
    """``y = x if x > 0 else alpha (e^x - 1)``; ``dy/dx = 1 or y + alpha`` (Clevert et al. 2016).

    NaN and inf follow PyTorch: ``elu(nan) = nan`` with gradient 1 (PyTorch takes the negative
    branch only where ``x <= 0``), ``elu(inf) = inf`` (gradient 1), ``elu(-inf) = -alpha``
    (gradient 0).
    """

    @staticmethod
    def forward(ctx, x, alpha=1.0):
        pos = ~(x <= 0)  # NaN takes the positive branch, as torch
        neg = alpha * np.expm1(np.minimum(x, 0))
        y = np.where(pos, x, neg).astype(x.dtype, copy=False)
        ctx.save(pos, neg)
        ctx.alpha = alpha
        return y

    @staticmethod
    def backward(ctx, g):
        pos, neg = ctx.saved
        return g * np.where(pos, 1, neg + ctx.alpha).astype(g.dtype, copy=False)


class SoftExponential(Function):
    """Soft exponential (Godfrey & Gashler 2015), interpolating log, identity and exp::

        f(a, x) = -ln(1 - a (x + a)) / a     a < 0
                = x                          a = 0
                = (e^(a x) - 1) / a + a      a > 0

    Derivatives (``u = 1 - a (x + a)``)::

        df/dx = 1 / u                                   a < 0
              = 1                                       a = 0
              = e^(a x)                                 a > 0
        df/da = ln(u) / a^2 + (x + 2a) / (a u)          a < 0
              = 1 + x^2 / 2                             a = 0   (the limit from both sides)
              = (x e^(a x) - (e^(a x) - 1) / a) / a + 1 a > 0

    ``alpha`` is a number or a (learnable) tensor broadcastable to ``x`` (one per unit works); the
    branch is chosen per element. For ``a < 0`` the function exists only where ``u > 0``.
    """

    @staticmethod
    def forward(ctx, x, alpha):
        a = np.broadcast_to(alpha, np.broadcast_shapes(x.shape, np.shape(alpha)))
        pos, neg = a > 0, a < 0
        a_safe = np.where(pos | neg, a, 1)
        ax = np.where(pos, a * x, 0)
        e = np.exp(ax)
        u = np.where(neg, 1 - a * (x + a), 1)
        if np.any(u <= 0):
            bad = np.flatnonzero((u <= 0).reshape(-1))[:5]
            raise ValueError(
                "soft_exponential with alpha < 0 is defined only where 1 - alpha*(x + alpha) > 0, "
                f"i.e. x > 1/alpha - alpha; violated at flat positions {bad.tolist()} "
                f"(x={np.broadcast_to(x, a.shape).reshape(-1)[bad].tolist()}, "
                f"alpha={a.reshape(-1)[bad].tolist()})"
            )
        log_u = np.log(u)
        y = np.where(pos, (e - 1) / a_safe + a, np.where(neg, -log_u / a_safe, x))
        ctx.save(x, a, pos, neg, a_safe, e, u, log_u)
        return y.astype(np.result_type(x, alpha), copy=False)

    @staticmethod
    def backward(ctx, g):
        x, a, pos, neg, a_safe, e, u, log_u = ctx.saved
        need_x, need_a = ctx.needs_grad
        gx = ga = None
        if need_x:
            gx = g * np.where(pos, e, np.where(neg, 1 / u, 1))
        if need_a:
            d_pos = (x * e - (e - 1) / a_safe) / a_safe + 1
            d_neg = log_u / (a_safe * a_safe) + (x + 2 * a) / (a_safe * u)
            d_zero = 1 + 0.5 * x * x
            ga = g * np.where(pos, d_pos, np.where(neg, d_neg, d_zero))
        return gx, ga


# ---------------------------------------------------------------------------------------------
# maxout and softmax


class Maxout(Function):
    """Maximum over groups of ``pieces`` consecutive features of the last axis.

    Layout: an input ``(..., out * pieces)`` is read as ``(..., out, pieces)``: unit ``j`` takes
    the max of ``x[..., j*pieces:(j+1)*pieces]`` (Goodfellow et al. 2013). The gradient goes to
    the winning piece only (the first one at a tie, like ``torch.max(dim)``).
    """

    @staticmethod
    def forward(ctx, x, pieces):
        if x.ndim == 0 or pieces < 1 or x.shape[-1] % pieces:
            raise ValueError(
                f"maxout needs the last axis to be a multiple of pieces={pieces}, got input "
                f"shape {x.shape}"
            )
        r = x.reshape(x.shape[:-1] + (x.shape[-1] // pieces, pieces))
        idx = np.argmax(r, axis=-1)[..., None]
        ctx.save(idx)
        ctx.rshape, ctx.shape = r.shape, x.shape
        return np.take_along_axis(r, idx, axis=-1)[..., 0]

    @staticmethod
    def backward(ctx, g):
        (idx,) = ctx.saved
        out = np.zeros(ctx.rshape, dtype=g.dtype)
        np.put_along_axis(out, idx, g[..., None], axis=-1)
        return out.reshape(ctx.shape)


def _check_axis(name, x, axis):
    """A 0-d input has one axis position (0 or -1, as torch); others the usual range."""
    ndim = max(x.ndim, 1)
    if not isinstance(axis, (int, np.integer)) or not -ndim <= axis < ndim:
        raise ValueError(
            f"{name}: axis {axis!r} is out of range for an input of shape {x.shape} (valid: "
            f"{-ndim}..{ndim - 1})"
        )


class Softmax(Function):
    """``y_i = e^(x_i - m) / sum_j e^(x_j - m)`` with ``m = max_j x_j``;
    ``dx = y * (g - sum(g * y))`` (the Jacobian ``diag(y) - y y^T`` applied to ``g``).

    As PyTorch: a 0-d input gives 1 (gradient 0), a zero-size input an empty output; a NaN in
    a slice makes the whole slice NaN, and so does ``+inf`` (``inf - inf``).
    """

    @staticmethod
    def forward(ctx, x, axis=-1):
        _check_axis("softmax", x, axis)
        if x.ndim == 0 or x.size == 0:
            ctx.save(np.ones_like(x))
            ctx.axis = None
            return np.ones_like(x)
        y = x - x.max(axis=axis, keepdims=True)
        np.exp(y, out=y)
        y /= y.sum(axis=axis, keepdims=True)
        ctx.save(y)
        ctx.axis = axis
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved
        if ctx.axis is None:  # 0-d or empty: the output does not depend on x
            return np.zeros_like(g)
        gy = g * y
        gy -= y * gy.sum(axis=ctx.axis, keepdims=True)
        return gy


class LogSoftmax(Function):
    """``y = x - m - log(sum_j e^(x_j - m))``; ``dx = g - softmax(x) * sum(g)``.

    As PyTorch: a 0-d input gives 0 (gradient 0), a zero-size input an empty output.
    """

    @staticmethod
    def forward(ctx, x, axis=-1):
        _check_axis("log_softmax", x, axis)
        if x.ndim == 0 or x.size == 0:
            ctx.axis = None
            return np.zeros_like(x)
        z = x - x.max(axis=axis, keepdims=True)
        z -= np.log(np.exp(z).sum(axis=axis, keepdims=True))
        ctx.save(z)
        ctx.axis = axis
        return z

    @staticmethod
    def backward(ctx, g):
        if ctx.axis is None:
            return np.zeros_like(g)
        (y,) = ctx.saved
        return g - np.exp(y) * g.sum(axis=ctx.axis, keepdims=True)


# ---------------------------------------------------------------------------------------------
# function-style API


def identity(x) -> Tensor:
    """The identity ("linear") activation ``y = x``."""
    return Identity.apply(x)


def step(x) -> Tensor:
    """Heaviside step ``1[x > 0]``: forward only, its gradient is zero everywhere."""
    return Step.apply(x)


def sigmoid(x) -> Tensor:
    """Logistic sigmoid ``1 / (1 + e^-x)``, stable for any ``x`` (no overflow at 1e4)."""
    return Sigmoid.apply(x)


def tanh(x) -> Tensor:
    """Hyperbolic tangent."""
    return Tanh.apply(x)


def relu(x) -> Tensor:
    """Rectified linear unit ``max(0, x)`` (Nair & Hinton 2010)."""
    return ReLU.apply(x)


def leaky_relu(x, negative_slope: float = 0.01) -> Tensor:
    """``max(0, x) + negative_slope * min(0, x)`` (Maas et al. 2013)."""
    return LeakyReLU.apply(x, negative_slope=float(negative_slope))


def prelu(x, weight) -> Tensor:
    """Parametric ReLU with learnable ``weight`` of shape ``(1,)`` or ``(channels,)`` (axis 1)."""
    return PReLU.apply(x, weight)


def elu(x, alpha: float = 1.0) -> Tensor:
    """Exponential linear unit ``x if x > 0 else alpha (e^x - 1)``."""
    return ELU.apply(x, alpha=float(alpha))


def swish(x, beta=1.0) -> Tensor:
    """Swish ``x * sigmoid(beta x)``; ``beta`` a number or a learnable tensor."""
    return Swish.apply(x, beta)


def silu(x) -> Tensor:
    """SiLU ``x * sigmoid(x)`` (Swish with beta = 1; Hendrycks & Gimpel 2016, Elfwing et al.)."""
    return Swish.apply(x, 1.0)


def softsign(x) -> Tensor:
    """Softsign ``x / (1 + |x|)``."""
    return Softsign.apply(x)


def soft_exponential(x, alpha) -> Tensor:
    """Soft exponential of Godfrey & Gashler (2015); see :class:`SoftExponential`."""
    return SoftExponential.apply(x, alpha)


def maxout(x, pieces: int) -> Tensor:
    """Max over ``pieces`` consecutive features of the last axis.

    ``(..., out * pieces) -> (..., out)``; unit ``j`` reads ``x[..., j*pieces:(j+1)*pieces]``.
    """
    return Maxout.apply(x, pieces=int(pieces))


def softmax(x, axis: int = -1) -> Tensor:
    """Softmax along ``axis`` (max-subtracted, no overflow at logits of 1e4)."""
    return Softmax.apply(x, axis=axis)


def log_softmax(x, axis: int = -1) -> Tensor:
    """Log of the softmax along ``axis``, computed as ``x - logsumexp(x)`` (stable)."""
    return LogSoftmax.apply(x, axis=axis)
