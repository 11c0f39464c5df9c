"""2-D convolution as one GEMM, computed channels-last.

The course writes convolution with im2col: every receptive field of the (padded) input becomes a
row of a matrix ``col`` of shape ``(N*OH*OW, C*FH*FW)``, the filters become a matrix
``W_col (C*FH*FW, FN)``, and the layer is one matrix product ``out = col @ W_col + b``; the
backward is the affine layer's backward (``dW_col = col^T dout``, ``dcol = dout W_col^T``)
followed by col2im, which adds each row of ``dcol`` back onto the pixels it was read from.

How this maps to the code (and why it is faster than the course's version):

* ``OH = (H + 2*padding - FH) // stride + 1`` (same for ``OW``).
* Internally the channel axis is last (NHWC). The receptive fields are read through
  :func:`numpy.lib.stride_tricks.sliding_window_view` (a view: no index arrays) and copied once
  into ``col`` laid out ``(N, OH, OW, FH, FW, C)``, whose rows are contiguous runs of channels.
* ``col @ W_col`` then yields ``(N*OH*OW, FN)`` = NHWC directly, so the output needs no
  transposing copy: the returned array is the NHWC buffer seen through ``transpose(0, 3, 1, 2)``,
  i.e. it *has* the NCHW shape PyTorch users expect, with channels-last strides. Elementwise ops,
  BatchNorm reductions and pooling keep working on it, and the next convolution reads it without
  a transpose.
* col2im accumulates ``dcol`` over the ``FH*FW`` kernel offsets with strided slice adds
  (``FH*FW`` vectorized adds, no ``np.add.at``).
* The gradient with respect to the input is skipped when the input needs none (the first layer).

Shapes follow PyTorch: ``x (N, C, H, W)``, ``weight (out_channels, in_channels, kh, kw)``,
``bias (out_channels,)``. Reference: K. Chellapilla, S. Puri, P. Simard, "High Performance
Convolutional Neural Networks for Document Processing" (2006) — the im2col/GEMM formulation.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

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


def _pad_nhwc(x_nhwc: np.ndarray, ph: int, pw: int, dtype) -> np.ndarray:
    """Zero-pad the two spatial axes of an NHWC array (returns a C-contiguous NHWC array)."""
    N, H, W, C = x_nhwc.shape
    if ph == 0 and pw == 0:
        return x_nhwc
    xp = np.zeros((N, H + 2 * ph, W + 2 * pw, C), dtype=dtype)
    xp[:, ph : ph + H, pw : pw + W, :] = x_nhwc
    return xp


def im2col_nhwc(x_nhwc, kernel, stride, padding, dtype=None) -> np.ndarray:
    """Receptive fields of an NHWC array as ``col (N, OH, OW, kh, kw, C)`` (one copy)."""
    kh, kw = kernel
    sh, sw = stride
    ph, pw = padding
    dtype = x_nhwc.dtype if dtype is None else dtype
    N, H, W, C = x_nhwc.shape
    OH, OW = _output_size(H, kh, sh, ph), _output_size(W, kw, sw, pw)
    if (kh, kw, sh, sw, ph, pw) == (1, 1, 1, 1, 0, 0):
        return np.ascontiguousarray(x_nhwc, dtype=dtype).reshape(N, OH, OW, 1, 1, C)
    xp = _pad_nhwc(x_nhwc, ph, pw, dtype)
    windows = sliding_window_view(xp, (kh, kw), axis=(1, 2))  # (N, Hp-kh+1, Wp-kw+1, C, kh, kw)
    windows = windows[:, ::sh, ::sw][:, :OH, :OW]
    col = np.empty((N, OH, OW, kh, kw, C), dtype=dtype)
    np.copyto(col, windows.transpose(0, 1, 2, 4, 5, 3))
    return col


def col2im_nhwc(dcol, input_shape_nhwc, stride, padding) -> np.ndarray:
    """Inverse of :func:`im2col_nhwc` for gradients: add each field back where it was read.

    ``dcol (N, OH, OW, kh, kw, C)`` -> ``(N, H, W, C)``. One strided slice add per kernel
    offset (its blocks are runs of ``C`` contiguous values), no ``np.add.at``.
    """
    N, OH, OW, kh, kw, C = dcol.shape
    _, H, W, _ = input_shape_nhwc
    sh, sw = stride
    ph, pw = padding
    if (kh, kw, sh, sw, ph, pw) == (1, 1, 1, 1, 0, 0):
        return dcol.reshape(N, H, W, C)
    dxp = np.zeros((N, H + 2 * ph, W + 2 * pw, C), dtype=dcol.dtype)
    h_span, w_span = sh * (OH - 1) + 1, sw * (OW - 1) + 1
    for i in range(kh):
        for j in range(kw):
            dxp[:, i : i + h_span : sh, j : j + w_span : sw, :] += dcol[:, :, :, i, j, :]
    return dxp[:, ph : ph + H, pw : pw + W, :]


class Conv2d(Function):
    """``out = col(x) @ W_col + b`` (see the module docstring for the layout)."""

    @staticmethod
    def forward(ctx, x, weight, bias=None, stride=(1, 1), padding=(0, 0)):
        _check_conv_args(
            x.shape, weight.shape, None if bias is None else bias.shape, stride, padding
        )
        dtype = np.result_type(x, weight) if bias is None else np.result_type(x, weight, bias)
        N, C, H, W = x.shape
        O, _, kh, kw = weight.shape
        x_nhwc = x.transpose(0, 2, 3, 1)  # a view; channels-last inputs make it contiguous
        col = im2col_nhwc(x_nhwc, (kh, kw), stride, padding, dtype)
        _, OH, OW = col.shape[:3]
        col2 = col.reshape(N * OH * OW, kh * kw * C)
        w_col = weight.transpose(2, 3, 1, 0).reshape(kh * kw * C, O).astype(dtype, copy=False)
        out = col2 @ w_col
        if bias is not None:
            out += bias.astype(dtype, copy=False)
        ctx.save(col2, w_col)
        ctx.shapes = (x.shape, weight.shape, (N, OH, OW, kh, kw, C))
        ctx.dtypes = (x.dtype, weight.dtype, None if bias is None else bias.dtype)
        ctx.stride, ctx.padding = stride, padding
        return out.reshape(N, OH, OW, O).transpose(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, g):
        col2, w_col = ctx.saved
        (N, C, H, W), w_shape, col_shape = ctx.shapes
        O, _, kh, kw = w_shape
        needs = ctx.needs_grad
        # (N, O, OH, OW) with any strides -> (N*OH*OW, O); free when g is channels-last already
        g2 = np.ascontiguousarray(g.transpose(0, 2, 3, 1), dtype=col2.dtype).reshape(-1, O)
        gx = gw = gb = None
        if needs[1]:
            gw = (col2.T @ g2).reshape(kh, kw, C, O).transpose(3, 2, 0, 1)
            gw = np.ascontiguousarray(gw, dtype=ctx.dtypes[1])
        if len(needs) > 2 and needs[2]:
            gb = g2.sum(axis=0).astype(ctx.dtypes[2], copy=False)
        if needs[0]:
            dcol = (g2 @ w_col.T).reshape(col_shape)  # one GEMM: (N*OH*OW, kh*kw*C)
            dx = col2im_nhwc(dcol, (N, H, W, C), ctx.stride, ctx.padding)
            gx = dx.transpose(0, 3, 1, 2).astype(ctx.dtypes[0], copy=False)
        return gx, gw, gb


def conv2d(x, weight, bias=None, stride=1, padding=0) -> Tensor:
    """2-D cross-correlation (PyTorch's ``conv2d``): ``x (N, C, H, W)``, ``weight (O, C, kh, kw)``.

    ``out[n, o, i, j] = b[o] + sum_{c, p, q} x_pad[n, c, i*sh + p, j*sw + q] * weight[o, c, p, q]``
    with ``OH = (H + 2*ph - kh) // sh + 1``. ``stride`` and ``padding`` are an int or a pair
    ``(height, width)``; padding is zeros. Returns ``(N, O, OH, OW)`` whose memory is channels-last
    (see the module docstring); use ``np.ascontiguousarray`` on ``.data`` if you need NCHW memory.

    Raises ValueError, naming the shapes, for a non-4-D input, a channel mismatch, a bias of the
    wrong length, or a kernel larger than the padded input.
    """
    stride = _pair(stride, "stride")
    padding = _pair(padding, "padding")
    if bias is None:
        return Conv2d.apply(x, weight, stride=stride, padding=padding)
    return Conv2d.apply(x, weight, bias, stride=stride, padding=padding)
