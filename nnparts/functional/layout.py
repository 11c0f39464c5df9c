"""Memory layouts of 4-D activations: NCHW, and channels-last.

Every 4-D array an op receives or returns is indexed ``(N, C, H, W)``. Its *memory* may be in
that order (C-contiguous, "NCHW") or in the order ``(N, H, W, C)`` ("channels-last", PyTorch's
``torch.channels_last`` memory format): the array is then the view ``a.transpose(0, 3, 1, 2)`` of
a C-contiguous ``(N, H, W, C)`` array. Values, shapes and gradients are the same either way; only
speed differs.

Why channels-last: a convolution lowered channels-last computes ``(N*OH*OW, O)`` rows — its
output *is* channels-last, and turning it into NCHW is a transposing copy that cost as much as a
third of the layer's GEMM on the fast network (a NumPy copy that gathers costs ~1 ns a value).
Kept channels-last, the next ops read it as the ``(N*H*W, C)`` matrix of :func:`rows`: BatchNorm's
per-channel sums run over its rows, max-pooling's strided window views have the ``C`` channels as
their contiguous inner axis, and the next convolution's im2col copies runs of ``kw*C`` values
without a transpose. Element-wise ops (ReLU, additions) keep the layout of their inputs.

Which layout an op returns: :func:`~nnparts.functional.conv2d` returns channels-last when it
lowers channels-last (a channels-last input, or the rule of ``conv._channels_last``); BatchNorm,
ReLU and pooling return the layout of their input; everything else follows NumPy (element-wise
results keep their inputs' layout; reshapes and concatenations return C-contiguous arrays).
"""

from __future__ import annotations

import numpy as np

from nnparts.tensor import Function, Tensor

__all__ = [
    "is_channels_last",
    "rows",
    "empty_channels_last",
    "to_channels_last",
    "flat",
    "channels_last",
    "contiguous",
]

_CONSTANTS: dict = {}


def constant(value, n: int, dtype) -> np.ndarray:
    """``n`` copies of ``value`` of ``dtype``: the first ``n`` of a shared read-only vector,
    grown when too short, for the row-wise passes over activations — BatchNorm's per-channel
    sums as ``ones @ rows`` (a BLAS product, several times faster than NumPy's reduction over
    axis 0) and ReLU's row of zeros (NumPy vectorizes ``maximum`` only against an array)."""
    key = (value, np.dtype(dtype).str)
    buf = _CONSTANTS.get(key)
    if buf is None or buf.size < n:
        buf = np.full(n, value, dtype=dtype)
        buf.flags.writeable = False
        _CONSTANTS[key] = buf  # filled before it is shared
    return buf[:n]


def is_channels_last(a: np.ndarray) -> bool:
    """Whether ``a (N, C, H, W)`` is stored channels-last and not also NCHW (for ``C = 1`` or
    ``H = W = 1`` the two layouts are the same memory: that counts as NCHW)."""
    return a.ndim == 4 and not a.flags.c_contiguous and a.transpose(0, 2, 3, 1).flags.c_contiguous


def rows(a: np.ndarray) -> np.ndarray:
    """The ``(N*H*W, C)`` C-contiguous matrix of a channels-last ``a (N, C, H, W)`` (a view)."""
    N, C, H, W = a.shape
    return a.transpose(0, 2, 3, 1).reshape(N * H * W, C)


def empty_channels_last(shape, dtype) -> np.ndarray:
    """A new uninitialized ``(N, C, H, W)`` array stored channels-last."""
    N, C, H, W = shape
    return np.empty((N, H, W, C), dtype=dtype).transpose(0, 3, 1, 2)


def to_channels_last(a: np.ndarray) -> np.ndarray:
    """``a (N, C, H, W)`` stored channels-last: ``a`` itself if it already is, else one copy."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def flat(a: np.ndarray):
    """A 1-D view of ``a``'s values in memory order, or None when ``a`` is not dense (a strided
    slice). For splitting element-wise work into chunks: writes through it reach ``a``."""
    if a.flags.c_contiguous:
        return a.reshape(-1)
    if a.flags.f_contiguous or is_channels_last(a):
        return np.ravel(a, order="K")
    return None


class _Relayout(Function):
    """The same values in another memory layout; the gradient passes through unchanged."""

    @staticmethod
    def forward(ctx, x, channels_last=True):
        if x.ndim != 4:
            raise ValueError(
                f"a memory layout is chosen for 4-D (N, C, H, W) arrays, got shape {x.shape}"
            )
        if channels_last:
            return to_channels_last(x)
        return np.ascontiguousarray(x)

    @staticmethod
    def backward(ctx, g):
        return g


def channels_last(x) -> Tensor:
    """``x (N, C, H, W)`` with its memory channels-last (PyTorch's
    ``x.contiguous(memory_format=torch.channels_last)``): the same values, indexed the same way.
    A convolution, BatchNorm, ReLU or pooling of it runs on its rows and returns channels-last.
    Differentiable (the gradient passes through)."""
    return _Relayout.apply(x, channels_last=True)


def contiguous(x) -> Tensor:
    """``x`` with C-contiguous (NCHW) memory; differentiable (the gradient passes through)."""
    return _Relayout.apply(x, channels_last=False)
