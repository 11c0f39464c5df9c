"""2-D convolution as one GEMM.

The course writes convolution with im2col: every receptive field of the (padded) input becomes a
row of a matrix ``col`` of shape ``(N*OH*OW, C*FH*FW)``, the filters become a matrix
``W_col (C*FH*FW, FN)``, and the layer is one matrix product ``out = col @ W_col + b``; the
backward is the affine layer's backward (``dW_col = col^T dout``, ``dcol = dout W_col^T``)
followed by col2im, which adds each row of ``dcol`` back onto the pixels it was read from.

How this maps to the code, and why it is faster than the course's version:

* ``OH = (H + 2*padding - FH) // stride + 1`` (same for ``OW``).
* The code builds the *transpose* ``col^T (C*FH*FW, N*OH*OW)`` and computes
  ``out^T = W @ col^T`` with ``W`` the weight viewed as ``(FN, C*FH*FW)`` (a reshape, no copy).
  ``col^T`` is read through :func:`numpy.lib.stride_tricks.sliding_window_view` (a view: no
  index arrays) and copied once; every copied run is a contiguous image row.
* ``out^T`` is ``(FN, N, OH*OW)``; going to NCHW moves whole feature maps (contiguous runs of
  ``OH*OW`` values), far cheaper than the course's element-wise ``transpose(0, 3, 1, 2)`` of a
  ``(N, OH, OW, FN)`` result. The backward does the same with ``dout``. The output is a plain
  C-contiguous NCHW array, the layout the elementwise ops, BatchNorm and pooling are fastest on.
  (A channels-last variant, returning the NHWC GEMM result as a strided NCHW view, was measured
  and rejected: the conv saved two copies but BatchNorm and ReLU ran 2-4x slower on it.)
* col2im accumulates ``dcol^T`` over the ``FH*FW`` kernel offsets with strided slice adds
  (``FH*FW`` vectorized adds, no ``np.add.at``).
* The gradient with respect to the input is skipped when the input needs none (the first layer).
* float32 stays float32 end to end, so the GEMMs are OpenBLAS ``sgemm`` (multithreaded).

Shapes follow PyTorch: ``x (N, C, H, W)``, ``weight (out_channels, in_channels, kh, kw)``,
``bias (out_channels,)``. Reference: K. Chellapilla, S. Puri, P. Simard, "High Performance
Convolutional Neural Networks for Document Processing" (2006) — the im2col/GEMM formulation.
"""

from __future__ import annotations

import threading

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from nnparts import threads
from nnparts.tensor import Function, Tensor

__all__ = ["conv2d"]


def _pair(value, name: str) -> tuple[int, int]:
    """``3 -> (3, 3)``; ``(1, 2) -> (1, 2)``; anything else is a ValueError."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value), int(value)
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in pair
    ):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return int(pair[0]), int(pair[1])


def _output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _check_conv_args(x_shape, w_shape, b_shape, stride, padding):
    if len(x_shape) != 4:
        raise ValueError(
            f"conv2d expects a 4-D input (N, C, H, W), got shape {tuple(x_shape)}; "
            "add a batch axis with x.reshape(1, *x.shape) for a single image"
        )
    if len(w_shape) != 4:
        raise ValueError(
            f"conv2d weight must be 4-D (out_channels, in_channels, kh, kw), got shape "
            f"{tuple(w_shape)}"
        )
    if x_shape[1] != w_shape[1]:
        raise ValueError(
            f"conv2d channel mismatch: input {tuple(x_shape)} has {x_shape[1]} channels but "
            f"weight {tuple(w_shape)} expects {w_shape[1]} (weight layout (out, in, kh, kw))"
        )
    if b_shape is not None and tuple(b_shape) != (w_shape[0],):
        raise ValueError(
            f"conv2d bias shape {tuple(b_shape)} does not match weight {tuple(w_shape)}; "
            f"expected ({w_shape[0]},)"
        )
    sh, sw = stride
    ph, pw = padding
    if sh < 1 or sw < 1:
        raise ValueError(f"conv2d stride must be >= 1, got {stride}")
    if ph < 0 or pw < 0:
        raise ValueError(f"conv2d padding must be >= 0, got {padding}")
    H, W = x_shape[2], x_shape[3]
    kh, kw = w_shape[2], w_shape[3]
    if kh > H + 2 * ph or kw > W + 2 * pw:
        raise ValueError(
            f"conv2d kernel ({kh}, {kw}) is larger than the padded input "
            f"({H + 2 * ph}, {W + 2 * pw}) (input {tuple(x_shape)}, padding {padding}); "
            "use a smaller kernel or more padding"
        )


class _Workspace(threading.local):
    """Scratch arrays reused across training steps (one per shape and dtype, per thread).

    Only arrays that live inside a single forward or backward call are kept here (the padded
    input, ``dcol``, the col2im accumulator, ``dout^T``): nothing handed to the autograd graph or
    returned to the caller ever comes from it. Reusing them skips the page faults of freshly
    mapped memory, which cost as much as the copies themselves at these sizes.
    """

    def __init__(self):
        self.free = {}

    def take(self, shape, dtype, tag=None):
        """``(array, reused)``: a kept array of this shape, dtype and tag, or a new empty one."""
        key = (tuple(shape), np.dtype(dtype).str, tag)
        arr = self.free.pop(key, None)
        return (np.empty(shape, dtype=dtype), False) if arr is None else (arr, True)

    def give(self, arr, tag=None):
        if len(self.free) > 32:  # many different shapes: forget the oldest
            self.free.pop(next(iter(self.free)))
        self.free[(arr.shape, arr.dtype.str, tag)] = arr


_workspace = _Workspace()


def im2col(x, kernel, stride, padding, dtype=None) -> np.ndarray:
    """Receptive fields of ``x (N, C, H, W)`` as ``col^T (C, kh, kw, N, OH, OW)`` (one copy).

    Reshaped to ``(C*kh*kw, N*OH*OW)`` this is the transpose of the course's ``col``. It is read
    through :func:`~numpy.lib.stride_tricks.sliding_window_view` (no index arrays), and every
    copied run is a contiguous row segment of the image.
    """
    kh, kw = kernel
    sh, sw = stride
    ph, pw = padding
    dtype = x.dtype if dtype is None else dtype
    N, C, H, W = x.shape
    OH, OW = _output_size(H, kh, sh, ph), _output_size(W, kw, sw, pw)
    if (kh, kw, sh, sw, ph, pw) == (1, 1, 1, 1, 0, 0):
        col = np.empty((C, 1, 1, N, H, W), dtype=dtype)
        np.copyto(col[:, 0, 0], x.transpose(1, 0, 2, 3))
        return col
    xp = x
    if ph or pw:
        xp, reused = _workspace.take((N, C, H + 2 * ph, W + 2 * pw), dtype, tag=padding)
        if not reused:
            xp.fill(0)  # the border stays zero: later uses only overwrite the interior
        xp[:, :, ph : ph + H, pw : pw + W] = x
    windows = sliding_window_view(xp, (kh, kw), axis=(2, 3))  # (N, C, Hp-kh+1, Wp-kw+1, kh, kw)
    windows = windows[:, :, ::sh, ::sw][:, :, :OH, :OW]
    col = np.empty((C, kh, kw, N, OH, OW), dtype=dtype)
    np.copyto(col, windows.transpose(1, 4, 5, 0, 2, 3))
    if xp is not x:
        _workspace.give(xp, tag=padding)
    return col


def col2im(dcol, input_shape, stride, padding) -> np.ndarray:
    """Adjoint of :func:`im2col`: add every field of ``dcol (C, kh, kw, N, OH, OW)`` back onto
    the pixels it was read from; returns ``(N, C, H, W)`` (C-contiguous).

    One strided slice add per kernel offset (``kh*kw`` vectorized adds), no ``np.add.at``.
    """
    C, kh, kw, N, OH, OW = dcol.shape
    _, _, H, W = input_shape
    sh, sw = stride
    ph, pw = padding
    if (kh, kw, sh, sw, ph, pw) == (1, 1, 1, 1, 0, 0):
        return np.ascontiguousarray(dcol[:, 0, 0].transpose(1, 0, 2, 3))
    dxp, _ = _workspace.take((C, N, H + 2 * ph, W + 2 * pw), dcol.dtype)
    dxp.fill(0)
    h_span, w_span = sh * (OH - 1) + 1, sw * (OW - 1) + 1
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i : i + h_span : sh, j : j + w_span : sw] += dcol[:, i, j]
    dx = np.ascontiguousarray(dxp[:, :, ph : ph + H, pw : pw + W].transpose(1, 0, 2, 3))
    _workspace.give(dxp)
    return dx


class Conv2d(Function):
    """``out^T = W_col^T @ col^T + b`` (see the module docstring for the layout).

    The work is cut into ranges of samples, each done start to finish (padding, im2col copy,
    GEMM, bias, copy to NCHW) by one thread of :mod:`nnparts.threads`; the backward likewise,
    with the per-range weight gradients added at the end.
    """

    @staticmethod
    def forward(ctx, x, weight, bias=None, stride=(1, 1), padding=(0, 0)):
        _check_conv_args(
            x.shape, weight.shape, None if bias is None else bias.shape, stride, padding
        )
        dtype = np.result_type(x, weight) if bias is None else np.result_type(x, weight, bias)
        N, C, H, W = x.shape
        O, _, kh, kw = weight.shape
        (sh, sw), (ph, pw) = stride, padding
        OH, OW = _output_size(H, kh, sh, ph), _output_size(W, kw, sw, pw)
        L, K = OH * OW, C * kh * kw
        col = np.empty((C, kh, kw, N, OH, OW), dtype=dtype)
        col_t = col.reshape(K, N * L)  # a view: the columns of sample n are n*L .. (n+1)*L
        # (O, C, kh, kw) -> (O, C*kh*kw): a view, the row order of col_t
        w_row = weight.reshape(O, K).astype(dtype, copy=False)
        b_col = None if bias is None else bias.astype(dtype, copy=False)[:, None]
        xp = x
        if ph or pw:
            xp, reused = _workspace.take((N, C, H + 2 * ph, W + 2 * pw), x.dtype, tag=padding)
            if not reused:
                xp.fill(0)  # the border stays zero: later uses only overwrite the interior
        out_t, _ = _workspace.take((O, N * L), dtype)
        out = np.empty((N, O, L), dtype=dtype)

        def samples(s, e):
            if xp is not x:
                xp[s:e, :, ph : ph + H, pw : pw + W] = x[s:e]
            windows = sliding_window_view(xp[s:e], (kh, kw), axis=(2, 3))
            windows = windows[:, :, ::sh, ::sw][:, :, :OH, :OW]  # (n, C, OH, OW, kh, kw)
            np.copyto(col[:, :, :, s:e], windows.transpose(1, 4, 5, 0, 2, 3))
            block = out_t[:, s * L : e * L]
            np.matmul(w_row, col_t[:, s * L : e * L], out=block)  # the GEMM of these samples
            if b_col is not None:
                block += b_col
            # (O, n, OH*OW) -> (n, O, OH*OW): copies contiguous rows of OH*OW values
            np.copyto(out[s:e], block.reshape(O, e - s, L).transpose(1, 0, 2))

        threads.parallel_for(N, N * K * L * O // 16, samples)
        if xp is not x:
            _workspace.give(xp, tag=padding)
        _workspace.give(out_t)
        ctx.save(col_t, w_row)
        ctx.shapes = (x.shape, weight.shape, (C, kh, kw, N, OH, OW))
        ctx.dtypes = (x.dtype, weight.dtype, None if bias is None else bias.dtype)
        ctx.stride, ctx.padding = stride, padding
        return out.reshape(N, O, OH, OW)

    @staticmethod
    def backward(ctx, g):
        col_t, w_row = ctx.saved
        x_shape, w_shape, col_shape = ctx.shapes
        C, kh, kw, _, OH, OW = col_shape
        N, O = g.shape[:2]
        L, K = OH * OW, C * kh * kw
        _, _, H, W = x_shape
        (sh, sw), (ph, pw) = ctx.stride, ctx.padding
        needs = ctx.needs_grad
        need_x, need_w = needs[0], needs[1]
        need_b = len(needs) > 2 and needs[2]
        g_t, _ = _workspace.take((O, N * L), col_t.dtype)  # dout^T: rows of OH*OW per sample
        g_t3 = g_t.reshape(O, N, L)
        if need_x:
            dcol, _ = _workspace.take((K, N * L), col_t.dtype)
            dcol6 = dcol.reshape(col_shape)
            dxp, _ = _workspace.take((C, N, H + 2 * ph, W + 2 * pw), col_t.dtype)
            dx = np.empty(x_shape, dtype=col_t.dtype)
        h_span, w_span = sh * (OH - 1) + 1, sw * (OW - 1) + 1

        def samples(s, e):
            cols = slice(s * L, e * L)
            np.copyto(g_t3[:, s:e], g[s:e].reshape(e - s, O, L).transpose(1, 0, 2))
            gw = g_t[:, cols] @ col_t[:, cols].T if need_w else None
            gb = g_t[:, cols].sum(axis=1) if need_b else None
            if need_x:
                np.matmul(w_row.T, g_t[:, cols], out=dcol[:, cols])  # dcol^T = W_col dout^T
                acc = dxp[:, s:e]
                acc.fill(0)
                for i in range(kh):  # col2im: one strided add per kernel offset
                    for j in range(kw):
                        acc[:, :, i : i + h_span : sh, j : j + w_span : sw] += dcol6[:, i, j, s:e]
                np.copyto(dx[s:e], acc[:, :, ph : ph + H, pw : pw + W].transpose(1, 0, 2, 3))
            return gw, gb

        parts = threads.parallel_map(N, N * K * L * O // 8, samples)
        gx = gw = gb = None
        if need_w:
            gw = parts[0][0]
            for part in parts[1:]:
                gw += part[0]
            gw = gw.reshape(w_shape).astype(ctx.dtypes[1], copy=False)
        if need_b:
            gb = parts[0][1]
            for part in parts[1:]:
                gb += part[1]
            gb = gb.astype(ctx.dtypes[2], copy=False)
        if need_x:
            gx = dx.astype(ctx.dtypes[0], copy=False)
            _workspace.give(dcol)
            _workspace.give(dxp)
        _workspace.give(g_t)
        return gx, gw, gb


def conv2d(x, weight, bias=None, stride=1, padding=0) -> Tensor:
    """2-D cross-correlation (PyTorch's ``conv2d``): ``x (N, C, H, W)``, ``weight (O, C, kh, kw)``.

    ``out[n, o, i, j] = b[o] + sum_{c, p, q} x_pad[n, c, i*sh + p, j*sw + q] * weight[o, c, p, q]``
    with ``OH = (H + 2*ph - kh) // sh + 1``. ``stride`` and ``padding`` are an int or a pair
    ``(height, width)``; padding is zeros. Returns ``(N, O, OH, OW)`` (C-contiguous).

    Raises ValueError, naming the shapes, for a non-4-D input, a channel mismatch, a bias of the
    wrong length, or a kernel larger than the padded input.
    """
    stride = _pair(stride, "stride")
    padding = _pair(padding, "padding")
    if bias is None:
        return Conv2d.apply(x, weight, stride=stride, padding=padding)
    return Conv2d.apply(x, weight, bias, stride=stride, padding=padding)
