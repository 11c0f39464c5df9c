"""Pooling: max, average and global average over 2-D windows.

The course's Pooling layer unrolls the windows with im2col and takes ``max`` along each row, then
scatters the gradient back through the saved argmax and col2im. Here the same result is computed
without an index grid: a pooling window has only ``kh*kw`` positions, so the code loops over the
kernel offsets ``(p, q)`` and, for each, looks at the strided slice
``x_pad[:, :, p::sh, q::sw]`` (a view) of all windows at once. Each step is a vectorized NumPy op
over the whole batch; the loop has ``kh*kw`` iterations (4 for a 2x2 pool), never one per pixel.

* max:  ``out = max_{p,q} x_pad[n, c, i*sh + p, j*sw + q]`` (a chain of ``np.maximum``). The
  forward also records which offset holds each window's maximum, one byte per output value (the
  course's saved argmax, as an offset into the window): offset ``k`` takes over when it is
  strictly greater than the running maximum, so the record is the largest such ``k``. Backward
  sends ``dout`` to that offset. **Ties:** only the first maximum in row-major window order gets
  the gradient, which is what PyTorch's CPU kernel does, so gradients match PyTorch even on flat
  regions such as the zeros after a ReLU. Padding is ``-inf`` (it never wins). NaN inputs are
  not supported.
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
from nnparts.functional.math import reshape
from nnparts.tensor import Function, Tensor

__all__ = ["max_pool2d", "avg_pool2d", "global_avg_pool2d", "adaptive_avg_pool2d"]


def _channels_last(x: np.ndarray) -> bool:
    return x.ndim == 4 and x.shape[1] > 1 and x.strides[1] < x.strides[3]


def _full(shape, fill, dtype, channels_last: bool) -> np.ndarray:
    """A new (N, C, H, W) array filled with ``fill``, channels-last in memory if asked."""
    N, C, H, W = shape
    if channels_last:
        return np.full((N, H, W, C), fill, dtype=dtype).transpose(0, 3, 1, 2)
    return np.full(shape, fill, dtype=dtype)


def _like(ref: np.ndarray, a: np.ndarray) -> np.ndarray:
    """A copy of ``a`` in the memory layout of ``ref`` (same shape), keeping ``a``'s dtype."""
    out = np.empty_like(ref, dtype=a.dtype)
    np.copyto(out, a)
    return out


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
    """Max pooling; the forward also records, for every window, which kernel offset held its
    first maximum (``arg``, one byte per output value), and the backward routes ``dout`` by it.

    Keeping ``arg`` instead of the input: the backward reads one byte per output value and
    offset, not the input and the output again, and the input (e.g. a convolution's output that
    nothing else keeps) is freed after the forward.
    """

    @staticmethod
    def forward(ctx, x, kernel, stride, padding):
        _check_pool_args("max_pool2d", x.shape, kernel, stride, padding)
        OH, OW, hspan, wspan = _geometry(x.shape, kernel, stride, padding)
        sh, sw = stride
        xp = _pad(x, padding, -np.inf)
        views = [xp[:, :, p : p + hspan : sh, q : q + wspan : sw] for p, q in _offsets(kernel)]
        out = np.empty_like(views[0])  # order="K": keeps channels-last memory
        arg = np.empty_like(out, dtype=np.uint8 if len(views) <= 256 else np.int32)
        greater_all = np.empty_like(out, dtype=bool)
        index_all = np.empty_like(arg)

        def samples(s, e):  # a range of samples, on one thread of nnparts.threads
            o, a, greater, index = out[s:e], arg[s:e], greater_all[s:e], index_all[s:e]
            np.copyto(o, views[0][s:e])
            a.fill(0)
            for k, v in enumerate(views[1:], 1):
                # offset k beats every earlier one (strictly: the first maximum keeps its
                # place), so the last offset that did is the first maximum: arg = max k
                # (two passes; np.copyto(a, k, where=greater) is one, but ~40x slower)
                np.greater(v[s:e], o, out=greater)
                np.maximum(o, v[s:e], out=o)
                np.multiply(greater, k, out=index, dtype=index.dtype)
                np.maximum(a, index, out=a)

        threads.parallel_for(len(out), xp.size, samples)
        ctx.save(arg)
        ctx.geometry = (x.shape, xp.shape, kernel, stride, padding, hspan, wspan)
        ctx.channels_last = _channels_last(x)
        return out

    @staticmethod
    def backward(ctx, g):
        (arg,) = ctx.saved
        shape, (N, C, Hp, Wp), kernel, stride, padding, hspan, wspan = ctx.geometry
        H, W = shape[2:]
        (ph, pw), (sh, sw) = padding, stride
        disjoint = sh >= kernel[0] and sw >= kernel[1]
        tiled = (sh, sw) == kernel  # the windows tile rows [0, hspan + sh - 1), same for columns
        full = np.empty if tiled else np.zeros  # np.zeros: fresh pages, faulted in by the writes
        if ctx.channels_last:
            dxp = full((N, Hp, Wp, C), dtype=g.dtype).transpose(0, 3, 1, 2)
        else:
            dxp = full((N, C, Hp, Wp), dtype=g.dtype)
        if tiled:  # zero only what no window covers (the last row/column of an odd size)
            dxp[:, :, hspan + sh - 1 :] = 0
            dxp[:, :, :, wspan + sw - 1 :] = 0
        if _channels_last(g) != ctx.channels_last:
            # e.g. NCHW from a flatten before a linear layer: one copy to the layout of the
            # output, so that the passes below do not mix layouts (they ran 1.5x slower)
            g = _like(arg, g)
        here_all = np.empty_like(arg, dtype=bool)

        def samples(s, e):  # a range of samples, on one thread of nnparts.threads
            here, gs, d, a = here_all[s:e], g[s:e], dxp[s:e], arg[s:e]
            for k, (p, q) in enumerate(_offsets(kernel)):
                rows, cols = slice(p, p + hspan, sh), slice(q, q + wspan, sw)
                np.equal(a, k, out=here)
                if disjoint:  # each input position belongs to one window: write, no add
                    np.multiply(gs, here, out=d[:, :, rows, cols])
                else:
                    d[:, :, rows, cols] += gs * here

        threads.parallel_for(len(arg), dxp.size, samples)
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


# ---------------------------------------------------------------------------------------------
# the options of PyTorch's pools (dilation, ceil_mode, return_indices, count_include_pad,
# divisor_override, adaptive sizes): separate ops, so the tuned default path above stays as it is


def _out_size(size, k, s, p, d, ceil_mode):
    """PyTorch's pooling output size; with ``ceil_mode`` a last, partial window is kept if it
    starts inside the input or its left padding."""
    span = d * (k - 1) + 1
    num = size + 2 * p - span
    out = (-(-num // s) if ceil_mode else num // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _check_options(name, shape, kernel, stride, padding, dilation):
    kh, kw = kernel
    if kh < 1 or kw < 1:
        raise ValueError(f"{name} kernel_size must be >= 1, got {kernel}")
    if stride[0] < 1 or stride[1] < 1:
        raise ValueError(f"{name} stride must be >= 1, got {stride}")
    if dilation[0] < 1 or dilation[1] < 1:
        raise ValueError(f"{name} dilation must be >= 1, got {dilation}")
    ph, pw = padding
    if ph < 0 or pw < 0 or 2 * ph > kh or 2 * pw > kw:
        raise ValueError(
            f"{name} padding {padding} must be >= 0 and at most half the kernel size {kernel}"
        )


class PoolOptions(Function):
    """Max or average pooling with PyTorch's options; windows are walked by kernel offset.

    Window ``(i, j)`` reads ``x[n, c, i*sh - ph + p*dh, j*sw - pw + q*dw]`` for ``p < kh``,
    ``q < kw``; positions outside the input are padding (``-inf`` for max, 0 for average).

    * max: ``out = max`` over the window; ``indices`` holds the flat position ``h*W + w`` of
      the maximum in the unpadded input (PyTorch's ``return_indices``); the first maximum in
      row-major order wins a tie and a NaN wins over any number (as PyTorch's CPU kernel).
      Backward sends ``dout`` to that position.
    * average: ``out = sum / divisor`` with PyTorch's divisor: ``divisor_override`` if given,
      else the window's size clipped to the padded input (``count_include_pad=True``) or the
      number of real input pixels in it (``count_include_pad=False``). Backward adds
      ``dout / divisor`` to every position of the window.
    """

    @staticmethod
    def forward(
        ctx,
        x,
        kind,
        kernel,
        stride,
        padding,
        dilation=(1, 1),
        ceil_mode=False,
        count_include_pad=True,
        divisor_override=None,
    ):
        N, C, H, W = x.shape
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
        OH = _out_size(H, kh, sh, ph, dh, ceil_mode)
        OW = _out_size(W, kw, sw, pw, dw, ceil_mode)
        if OH < 1 or OW < 1:
            raise ValueError(
                f"{kind}_pool2d kernel {kernel} (dilation {dilation}) is larger than the padded "
                f"input ({H + 2 * ph}, {W + 2 * pw}) (input {x.shape}, padding {padding})"
            )
        hspan, wspan = sh * (OH - 1) + 1, sw * (OW - 1) + 1
        # pad so that every window lies inside: ph in front, what the last window needs behind
        pb = max(0, (OH - 1) * sh + dh * (kh - 1) + 1 - H - ph)
        pr = max(0, (OW - 1) * sw + dw * (kw - 1) + 1 - W - pw)
        fill = -np.inf if kind == "max" else 0
        xp = np.full((N, C, ph + H + pb, pw + W + pr), fill, dtype=x.dtype)
        xp[:, :, ph : ph + H, pw : pw + W] = x
        offsets = [(p, q) for p in range(kh) for q in range(kw)]

        def view(a, p, q):
            return a[:, :, p * dh : p * dh + hspan : sh, q * dw : q * dw + wspan : sw]

        ctx.geometry = (x.shape, kernel, stride, padding, dilation, (OH, OW), xp.shape)
        ctx.kind = kind
        if kind == "max":
            out = view(xp, 0, 0).copy()
            arg = np.zeros(out.shape, dtype=np.int32)  # which kernel offset holds the max
            for k, (p, q) in enumerate(offsets[1:], start=1):
                v = view(xp, p, q)
                take = (v > out) | np.isnan(v)  # as torch: a NaN always takes over
                out[take] = v[take]
                arg[take] = k
            ctx.save(arg)
            rows = (np.arange(OH) * sh - ph)[:, None] + (arg // kw) * dh
            cols = (np.arange(OW) * sw - pw)[None, :] + (arg % kw) * dw
            ctx.indices = (rows * W + cols).astype(np.int64)
            return out
        out = view(xp, 0, 0).copy()
        for p, q in offsets[1:]:
            out += view(xp, p, q)
        if divisor_override:
            divisor = np.asarray(float(divisor_override))
        else:
            hs = np.arange(OH) * sh - ph
            ws = np.arange(OW) * sw - pw
            he, we = np.minimum(hs + kh, H + ph), np.minimum(ws + kw, W + pw)
            if count_include_pad:
                divisor = (he - hs)[:, None] * (we - ws)[None, :]
            else:
                real_h = np.minimum(he, H) - np.maximum(hs, 0)
                real_w = np.minimum(we, W) - np.maximum(ws, 0)
                divisor = real_h[:, None] * real_w[None, :]
        divisor = divisor.astype(x.dtype)
        out /= divisor
        ctx.save(divisor)
        return out

    @staticmethod
    def backward(ctx, g):
        (x_shape, kernel, stride, padding, dilation, (OH, OW), xp_shape) = ctx.geometry
        N, C, H, W = x_shape
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
        hspan, wspan = sh * (OH - 1) + 1, sw * (OW - 1) + 1
        dxp = np.zeros(xp_shape, dtype=g.dtype)
        if ctx.kind == "max":
            (arg,) = ctx.saved
            for k in range(kh * kw):
                p, q = divmod(k, kw)
                dxp[:, :, p * dh : p * dh + hspan : sh, q * dw : q * dw + wspan : sw] += g * (
                    arg == k
                )
        else:
            (divisor,) = ctx.saved
            gs = g / divisor
            for p in range(kh):
                for q in range(kw):
                    dxp[:, :, p : p + hspan : sh, q : q + wspan : sw] += gs
        return dxp[:, :, ph : ph + H, pw : pw + W]


def _batched(x, name):
    """``(N, C, H, W)`` as is; an unbatched ``(C, H, W)`` gets a batch axis of 1 (undone on the
    way out, as PyTorch); anything else is a ValueError."""
    ndim = np.ndim(x.data if isinstance(x, Tensor) else x)
    if ndim == 4:
        return x, False
    if ndim == 3:
        return reshape(x, (1, *np.shape(x.data if isinstance(x, Tensor) else x))), True
    raise ValueError(
        f"{name} expects a 4-D input (N, C, H, W) or one unbatched image (C, H, W), got shape "
        f"{tuple(np.shape(x.data if isinstance(x, Tensor) else x))}"
    )


def _unbatch(out, unbatched):
    return reshape(out, out.shape[1:]) if unbatched else out


def max_pool2d(
    x,
    kernel_size,
    stride=None,
    padding=0,
    dilation=1,
    ceil_mode: bool = False,
    return_indices: bool = False,
):
    """Max over each window (PyTorch's ``F.max_pool2d``, same arguments and defaults).

    ``out[n, c, i, j] = max_{p < kh, q < kw} x_pad[n, c, i*sh + p*dh, j*sw + q*dw]``, ``x_pad``
    padded with ``-inf``; ``OH = floor((H + 2*ph - dh*(kh - 1) - 1) / sh) + 1`` (``ceil`` with
    ``ceil_mode``, keeping a last window only if it starts inside the input or its left
    padding). ``stride`` defaults to ``kernel_size``. Ties: the gradient goes to the first
    maximum of the window in row-major order (as PyTorch on CPU). ``return_indices=True``
    returns ``(out, indices)``, ``indices`` (int64, not differentiable) the flat position
    ``h*W + w`` of each maximum in its input plane, as PyTorch's. ``x`` may be ``(N, C, H, W)``
    or one unbatched ``(C, H, W)``.

    NaN: the default path (no options) propagates a NaN in a window to the output (as torch)
    but sends no gradient to it; the options path follows torch in both (the NaN is the max).
    """
    kernel = _pair(kernel_size, "kernel_size")
    stride = kernel if stride is None else _pair(stride, "stride")
    padding = _pair(padding, "padding")
    dilation = _pair(dilation, "dilation")
    simple = dilation == (1, 1) and not ceil_mode and not return_indices
    if simple and np.ndim(x.data if isinstance(x, Tensor) else x) == 4:
        return MaxPool2d.apply(x, kernel=kernel, stride=stride, padding=padding)
    xb, unbatched = _batched(x, "max_pool2d")
    _check_options("max_pool2d", np.shape(xb), kernel, stride, padding, dilation)
    out = PoolOptions.apply(
        xb,
        kind="max",
        kernel=kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        ceil_mode=bool(ceil_mode),
    )
    indices = None
    if return_indices:
        ctx = out._ctx[1] if out._ctx is not None else None
        indices = _last_indices(ctx, xb, kernel, stride, padding, dilation, ceil_mode, out)
    out = _unbatch(out, unbatched)
    if return_indices:
        return out, Tensor(indices[0] if unbatched else indices)
    return out


def _last_indices(ctx, xb, kernel, stride, padding, dilation, ceil_mode, out):
    """The argmax positions of a :class:`PoolOptions` max (recomputed when no graph was kept)."""
    if ctx is not None:
        return ctx.indices
    from nnparts.tensor import Context

    ctx = Context()
    data = xb.data if isinstance(xb, Tensor) else np.asarray(xb)
    PoolOptions.forward(ctx, data, "max", kernel, stride, padding, dilation, bool(ceil_mode))
    return ctx.indices


def avg_pool2d(
    x,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override=None,
):
    """Mean over each window (PyTorch's ``F.avg_pool2d``, same arguments and defaults).

    ``out[n, c, i, j] = (1/divisor) * sum_{p, q} x_pad[n, c, i*sh + p, j*sw + q]`` with zero
    padding. ``divisor`` is ``kh*kw`` (zero padding counted, ``count_include_pad=True``), the
    number of input pixels in the window (``count_include_pad=False``), or
    ``divisor_override``; with ``ceil_mode`` a last partial window counts only the part inside
    the padded input (as PyTorch). ``x`` may be ``(N, C, H, W)`` or one unbatched ``(C, H, W)``.
    """
    kernel = _pair(kernel_size, "kernel_size")
    stride = kernel if stride is None else _pair(stride, "stride")
    padding = _pair(padding, "padding")
    if divisor_override is not None and (
        isinstance(divisor_override, bool)
        or not isinstance(divisor_override, (int, np.integer))
        or divisor_override < 1
    ):
        raise ValueError(
            f"avg_pool2d divisor_override must be an int >= 1, got {divisor_override!r}"
        )
    simple = not ceil_mode and (count_include_pad or padding == (0, 0)) and divisor_override is None
    if simple and np.ndim(x.data if isinstance(x, Tensor) else x) == 4:
        return AvgPool2d.apply(x, kernel=kernel, stride=stride, padding=padding)
    xb, unbatched = _batched(x, "avg_pool2d")
    _check_options("avg_pool2d", np.shape(xb), kernel, stride, padding, (1, 1))
    out = PoolOptions.apply(
        xb,
        kind="avg",
        kernel=kernel,
        stride=stride,
        padding=padding,
        ceil_mode=bool(ceil_mode),
        count_include_pad=bool(count_include_pad),
        divisor_override=divisor_override,
    )
    return _unbatch(out, unbatched)


def global_avg_pool2d(x, keepdims: bool = False) -> Tensor:
    """Mean over the spatial axes: ``(N, C, H, W) -> (N, C)`` (``(N, C, 1, 1)`` with keepdims).

    Equals PyTorch's ``adaptive_avg_pool2d(x, 1)`` (flattened unless ``keepdims``).
    """
    return GlobalAvgPool2d.apply(x, keepdims=keepdims)


def _adaptive_matrix(size: int, out: int, dtype) -> np.ndarray:
    """``A (out, size)``: row ``i`` averages ``x[floor(i*size/out) : ceil((i+1)*size/out)]``."""
    i = np.arange(out)
    start = (i * size) // out
    end = -((-(i + 1) * size) // out)
    cols = np.arange(size)
    inside = (cols[None, :] >= start[:, None]) & (cols[None, :] < end[:, None])
    return (inside / (end - start)[:, None]).astype(dtype)


class AdaptiveAvgPool2d(Function):
    """``out = A_h x A_w^T`` per feature map, ``A`` the averaging matrices of
    :func:`_adaptive_matrix`; backward ``dx = A_h^T dout A_w``."""

    @staticmethod
    def forward(ctx, x, output_size):
        OH, OW = output_size
        dtype = x.dtype if x.dtype.kind == "f" else np.float32
        a_h = _adaptive_matrix(x.shape[2], OH, dtype)
        a_w = _adaptive_matrix(x.shape[3], OW, dtype)
        ctx.save(a_h, a_w)
        return np.matmul(np.matmul(a_h, x), a_w.T)

    @staticmethod
    def backward(ctx, g):
        a_h, a_w = ctx.saved
        return np.matmul(np.matmul(a_h.T, g), a_w)


def adaptive_avg_pool2d(x, output_size) -> Tensor:
    """Average pooling to a given output size ``(OH, OW)`` (PyTorch's ``F.adaptive_avg_pool2d``).

    Output cell ``(i, j)`` is the mean of rows ``floor(i*H/OH) .. ceil((i+1)*H/OH) - 1`` and the
    same for columns, so windows may overlap and differ in size by one when ``OH`` does not
    divide ``H``. ``output_size`` is an int, a pair, or a pair with ``None`` (keep that input
    size). ``x`` may be ``(N, C, H, W)`` or one unbatched ``(C, H, W)``.
    """
    xb, unbatched = _batched(x, "adaptive_avg_pool2d")
    H, W = np.shape(xb.data if isinstance(xb, Tensor) else xb)[2:]
    if isinstance(output_size, (int, np.integer)) and not isinstance(output_size, bool):
        size = (int(output_size), int(output_size))
    else:
        try:
            size = tuple(output_size)
        except TypeError:
            size = ()
        if len(size) != 2:
            raise ValueError(
                f"adaptive_avg_pool2d output_size must be an int or a pair, got {output_size!r}"
            )
        size = (H if size[0] is None else size[0], W if size[1] is None else size[1])
    if not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in size
    ):
        raise ValueError(f"adaptive_avg_pool2d output_size must be ints >= 1, got {output_size!r}")
    out = AdaptiveAvgPool2d.apply(xb, output_size=(int(size[0]), int(size[1])))
    return _unbatch(out, unbatched)
