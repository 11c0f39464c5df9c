"""Pooling: max, average and global average over 2-D windows.

The course's Pooling layer unrolls the windows with im2col and takes ``max`` along each row, then
scatters the gradient back through the saved argmax and col2im. Here the same result is computed
without an index grid: a pooling window has only ``kh*kw`` positions, so the code loops over the
kernel offsets ``(p, q)`` and, for each, looks at the strided slice
``x_pad[:, :, p::sh, q::sw]`` (a view) of all windows at once. Each step is a vectorized NumPy op
over the whole batch; the loop has ``kh*kw`` iterations (4 for a 2x2 pool), never one per pixel.

* max:  ``out = max_{p,q} x_pad[n, c, i*sh + p, j*sw + q]`` (a chain of ``np.maximum``).
  Backward sends ``dout`` to the position that holds the maximum, found by comparing each offset
  with ``out``. **Ties:** only the first maximum in row-major window order gets the gradient
  (a ``taken`` mask is carried across the offsets), which is what PyTorch's CPU kernel does, so
  gradients match PyTorch even on flat regions such as the zeros after a ReLU. Padding is
  ``-inf`` (it never wins). NaN inputs are not supported.
* average: ``out = (1 / (kh*kw)) * sum_{p,q} x_pad[...]`` with zero padding counted in the
  divisor (PyTorch's default ``count_include_pad=True``); backward adds ``dout / (kh*kw)`` to
  every position of every window.
* global average: ``out[n, c] = mean_{h,w} x[n, c, h, w]`` (the head of ResNet/DenseNet; Lin et
  al., "Network In Network", 2013).

Memory layout is preserved: a channels-last input (such as :func:`~nnparts.functional.conv2d`'s
output) gives a channels-last output and gradient, so no transposing copies happen between layers.
``stride`` defaults to ``kernel_size`` (non-overlapping windows), as in PyTorch.
"""

from __future__ import annotations

import numpy as np

from nnparts import threads
from nnparts.functional.conv import _pair
from nnparts.tensor import Function, Tensor

__all__ = ["max_pool2d", "avg_pool2d", "global_avg_pool2d"]


def _channels_last(x: np.ndarray) -> bool:
    return x.ndim == 4 and x.shape[1] > 1 and x.strides[1] < x.strides[3]


def _full(shape, fill, dtype, channels_last: bool) -> np.ndarray:
    """A new (N, C, H, W) array filled with ``fill``, channels-last in memory if asked."""
    N, C, H, W = shape
    if channels_last:
        return np.full((N, H, W, C), fill, dtype=dtype).transpose(0, 3, 1, 2)
    return np.full(shape, fill, dtype=dtype)


def _check_pool_args(name, shape, kernel, stride, padding):
    if len(shape) != 4:
        raise ValueError(
            f"{name} expects a 4-D input (N, C, H, W), got shape {tuple(shape)}; "
            "add a batch axis with x.reshape(1, *x.shape) for a single image"
        )
    kh, kw = kernel
    if kh < 1 or kw < 1:
        raise ValueError(f"{name} kernel_size must be >= 1, got {kernel}")
    if stride[0] < 1 or stride[1] < 1:
        raise ValueError(f"{name} stride must be >= 1, got {stride}")
    ph, pw = padding
    if ph < 0 or pw < 0 or 2 * ph > kh or 2 * pw > kw:
        raise ValueError(
            f"{name} padding {padding} must be >= 0 and at most half the kernel size {kernel}"
        )
    H, W = shape[2], shape[3]
    if kh > H + 2 * ph or kw > W + 2 * pw:
        raise ValueError(
            f"{name} kernel {kernel} is larger than the padded input ({H + 2 * ph}, "
            f"{W + 2 * pw}) (input {tuple(shape)}, padding {padding})"
        )


def _geometry(shape, kernel, stride, padding):
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    OH = (shape[2] + 2 * ph - kh) // sh + 1
    OW = (shape[3] + 2 * pw - kw) // sw + 1
    return OH, OW, sh * (OH - 1) + 1, sw * (OW - 1) + 1


def _pad(x, padding, fill):
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    N, C, H, W = x.shape
    xp = _full((N, C, H + 2 * ph, W + 2 * pw), fill, x.dtype, _channels_last(x))
    xp[:, :, ph : ph + H, pw : pw + W] = x
    return xp


def _offsets(kernel):
    kh, kw = kernel
    return [(p, q) for p in range(kh) for q in range(kw)]


class MaxPool2d(Function):
    @staticmethod
    def forward(ctx, x, kernel, stride, padding):
        _check_pool_args("max_pool2d", x.shape, kernel, stride, padding)
        OH, OW, hspan, wspan = _geometry(x.shape, kernel, stride, padding)
        sh, sw = stride
        xp = _pad(x, padding, -np.inf)
        views = [xp[:, :, p : p + hspan : sh, q : q + wspan : sw] for p, q in _offsets(kernel)]
        out = np.empty_like(views[0])  # order="K": keeps channels-last memory

        def samples(s, e):  # a range of samples, on one thread of nnparts.threads
            np.copyto(out[s:e], views[0][s:e])
            for v in views[1:]:
                np.maximum(out[s:e], v[s:e], out=out[s:e])

        threads.parallel_for(len(out), xp.size, samples)
        ctx.save(xp, out)
        ctx.geometry = (x.shape, kernel, stride, padding, hspan, wspan, _channels_last(x))
        return out

    @staticmethod
    def backward(ctx, g):
        xp, out = ctx.saved
        shape, kernel, stride, padding, hspan, wspan, channels_last = ctx.geometry
        N, C, H, W = shape
        (ph, pw), (sh, sw) = padding, stride
        disjoint = sh >= kernel[0] and sw >= kernel[1]
        covered = disjoint and (sh, sw) == kernel and hspan + sh - 1 == H and wspan + sw - 1 == W
        full = np.empty if covered and padding == (0, 0) else np.zeros
        N, C, Hp, Wp = xp.shape
        if channels_last:
            dxp = full((N, Hp, Wp, C), dtype=g.dtype).transpose(0, 3, 1, 2)
        else:
            dxp = full((N, C, Hp, Wp), dtype=g.dtype)
        taken_all = np.zeros_like(out, dtype=bool)  # windows whose maximum is already routed
        is_max_all = np.empty_like(out, dtype=bool)

        def samples(s, e):  # a range of samples, on one thread of nnparts.threads
            taken, is_max, gs, d = taken_all[s:e], is_max_all[s:e], g[s:e], dxp[s:e]
            for k, (p, q) in enumerate(_offsets(kernel)):
                rows, cols = slice(p, p + hspan, sh), slice(q, q + wspan, sw)
                np.equal(xp[s:e, :, rows, cols], out[s:e], out=is_max)
                if k:
                    np.greater(is_max, taken, out=is_max)  # is_max and not taken: first max
                np.logical_or(taken, is_max, out=taken)
                if disjoint:  # each input position belongs to one window: write, no add
                    np.multiply(gs, is_max, out=d[:, :, rows, cols])
                else:
                    d[:, :, rows, cols] += gs * is_max

        threads.parallel_for(len(out), dxp.size, samples)
        return dxp[:, :, ph : ph + H, pw : pw + W]


class AvgPool2d(Function):
    @staticmethod
    def forward(ctx, x, kernel, stride, padding):
        _check_pool_args("avg_pool2d", x.shape, kernel, stride, padding)
        OH, OW, hspan, wspan = _geometry(x.shape, kernel, stride, padding)
        sh, sw = stride
        xp = _pad(x, padding, 0)
        scale = x.dtype.type(1.0 / (kernel[0] * kernel[1]))
        offsets = _offsets(kernel)
        first = xp[:, :, 0:hspan:sh, 0:wspan:sw]
        out = np.empty_like(first)
        np.copyto(out, first)
        for p, q in offsets[1:]:
            out += xp[:, :, p : p + hspan : sh, q : q + wspan : sw]
        out *= scale
        ctx.geometry = (x.shape, kernel, stride, padding, hspan, wspan, _channels_last(x))
        return out

    @staticmethod
    def backward(ctx, g):
        shape, kernel, stride, padding, hspan, wspan, channels_last = ctx.geometry
        N, C, H, W = shape
        (ph, pw), (sh, sw) = padding, stride
        dxp = _full((N, C, H + 2 * ph, W + 2 * pw), 0, g.dtype, channels_last)
        gs = g * g.dtype.type(1.0 / (kernel[0] * kernel[1]))
        disjoint = sh >= kernel[0] and sw >= kernel[1]
        for p, q in _offsets(kernel):
            view = dxp[:, :, p : p + hspan : sh, q : q + wspan : sw]
            if disjoint:
                np.copyto(view, gs)
            else:
                view += gs
        return dxp[:, :, ph : ph + H, pw : pw + W]


class GlobalAvgPool2d(Function):
    @staticmethod
    def forward(ctx, x, keepdims=False):
        if x.ndim != 4:
            raise ValueError(
                f"global_avg_pool2d expects a 4-D input (N, C, H, W), got shape {x.shape}"
            )
        ctx.shape, ctx.keepdims, ctx.channels_last = x.shape, keepdims, _channels_last(x)
        return x.mean(axis=(2, 3), keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        N, C, H, W = ctx.shape
        g = g.reshape(N, C, 1, 1) * g.dtype.type(1.0 / (H * W))
        out = _full(ctx.shape, 0, g.dtype, ctx.channels_last)
        out[...] = g
        return out


def max_pool2d(x, kernel_size, stride=None, padding=0) -> Tensor:
    """Max over each ``kernel_size`` window (PyTorch's ``max_pool2d``, ``ceil_mode=False``).

    ``out[n, c, i, j] = max_{p < kh, q < kw} x_pad[n, c, i*sh + p, j*sw + q]``, ``x_pad`` padded
    with ``-inf``. ``stride`` defaults to ``kernel_size``. Ties: the gradient goes to the first
    maximum of the window in row-major order (as PyTorch on CPU).
    """
    kernel = _pair(kernel_size, "kernel_size")
    stride = kernel if stride is None else _pair(stride, "stride")
    return MaxPool2d.apply(x, kernel=kernel, stride=stride, padding=_pair(padding, "padding"))


def avg_pool2d(x, kernel_size, stride=None, padding=0) -> Tensor:
    """Mean over each window, zero padding included in the count (``count_include_pad=True``).

    ``out[n, c, i, j] = (1/(kh*kw)) * sum_{p, q} x_pad[n, c, i*sh + p, j*sw + q]``.
    """
    kernel = _pair(kernel_size, "kernel_size")
    stride = kernel if stride is None else _pair(stride, "stride")
    return AvgPool2d.apply(x, kernel=kernel, stride=stride, padding=_pair(padding, "padding"))


def global_avg_pool2d(x, keepdims: bool = False) -> Tensor:
    """Mean over the spatial axes: ``(N, C, H, W) -> (N, C)`` (``(N, C, 1, 1)`` with keepdims).

    Equals PyTorch's ``adaptive_avg_pool2d(x, 1)`` (flattened unless ``keepdims``).
    """
    return GlobalAvgPool2d.apply(x, keepdims=keepdims)
