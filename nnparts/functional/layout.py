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

The row-wise helpers those ops share live here too: :class:`RowTiles` (a per-channel vector
broadcast over long tiled rows instead of ``C``-value ones), :func:`row_sum` and :func:`row_dot`
(per-channel sums in float32 blocks added in float64), :func:`constant` (shared read-only
vectors of ones and zeros).
"""

from __future__ import annotations

import functools
import math

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


# Width of a tiled row: a per-channel vector broadcast over ``(m, C)`` rows runs one NumPy inner
# loop per row, ``C`` values long (32 for the first layers), and the loop's overhead outweighs its
# work; seen as ``(m/k, k*C)`` rows with the vector repeated ``k`` times, the inner loops are
# ``k*C`` values long. NumPy 2.4's broadcast multiply runs at one speed for rows of up to 4096
# float32 values and ~1.5x faster from about 4600 (measured on an AMD EPYC Zen 4, one thread:
# 0.32-0.40 ms per 3.2M values at 512-4096, 0.19-0.23 at 4608-25088; a same-shape multiply 0.16):
# 16384 gives 6-12k-value rows on the ResNet's and the fast network's maps, BatchNorm's forward +
# backward 0.85-0.91 of its time at 512, whole steps 0.984 (`cnn`), 0.985 (ResNet), 0.997 (fast).
TILE_VALUES = 16384


def tile_factor(per: int, C: int) -> int:
    """The largest ``k <= TILE_VALUES / C`` that divides ``per`` (rows per sample), so that the
    rows of any range of whole samples reshape to ``(rows/k, k*C)``."""
    return _largest_divisor(max(1, per), max(1, TILE_VALUES // max(1, C)))  # per = 0: k = 1


@functools.lru_cache(maxsize=256)
def _largest_divisor(n: int, limit: int) -> int:
    """The largest divisor of ``n`` that is at most ``limit`` (cached: a BatchNorm asks for the
    same few shapes every step)."""
    return max(k for k in range(1, min(n, limit) + 1) if n % k == 0)


class RowTiles:
    """Rows ``(m, C)`` of channels-last arrays, ``per`` rows a sample, seen as ``(m/k, k*C)``
    (``k`` from :func:`tile_factor`) with per-channel vectors repeated ``k`` times to that width:
    a per-channel multiply or add over them runs long NumPy inner loops instead of one of ``C``
    values per row. Any range of whole samples has such a view."""

    def __init__(self, per: int, C: int):
        self.per, self.C = per, C
        self.k = tile_factor(per, C)

    def wide(self, rows: np.ndarray) -> np.ndarray:
        """The ``(rows/k, k*C)`` view of rows of whole samples."""
        return rows.reshape(-1, self.k * self.C)

    def tile(self, v: np.ndarray) -> np.ndarray:
        """A per-channel vector ``(C,)`` repeated to the width of :meth:`wide`."""
        return np.tile(v, self.k)


# rows per float32 partial sum of :func:`row_dot` and :func:`row_sum`
DOT_BLOCK = 512


def _blocks(a: np.ndarray):
    """The rows of ``a (m, C)`` as whole blocks ``(m // DOT_BLOCK, DOT_BLOCK, C)`` (a view; None
    when ``m < DOT_BLOCK``) and the rows left over after them."""
    full = len(a) // DOT_BLOCK * DOT_BLOCK
    whole = a[:full].reshape(-1, DOT_BLOCK, a.shape[1]) if full else None
    return whole, a[full:]


def row_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-column ``sum(a * b)`` of two ``(m, C)`` arrays, in float64, summed in blocks of
    :data:`DOT_BLOCK` rows whose float32 partial sums are added in float64.

    One ``einsum`` over all ``m`` rows adds them one after the other into a float32 total, whose
    rounding error grows with ``m``: 1e-5 of the result for 43k rows (a BatchNorm over 256 images
    of 13x13), 5e-5 for 187k, where 512-row blocks give 7e-8 at 4% more time. BatchNorm's
    backward turns such errors into much larger ones (``dx`` subtracts sums that nearly cancel):
    with the one-pass sums, the first layers' gradients of the fast network came out 3e-4 to 5e-3
    away from float64, against PyTorch's 1e-6 to 2e-5.

    Within a block the ``(DOT_BLOCK, C)`` rows are summed as ``(DOT_BLOCK/k, k*C)`` rows about
    512 values wide (``k`` a power of two), and the ``k`` partial sums of each channel are added
    in float64: ``einsum``'s inner loop runs along a row, and ``C`` = 32-128 values per call left
    it dominated by the call (AMD EPYC Zen 4, one thread, 1.6M values at ``C`` = 32: 0.26 ms
    against 0.42; 64 channels 0.13 against 0.19; each float32 partial sum also adds fewer terms).
    """
    (a3, rest_a), (b3, rest_b) = _blocks(a), _blocks(b)
    total = np.einsum("mc,mc->c", rest_a, rest_b).astype(np.float64)
    if a3 is not None:
        C = a.shape[1]
        # a power of two <= DOT_BLOCK / C dividing DOT_BLOCK: a block reshapes to (DOT_BLOCK/k, k*C)
        k = math.gcd(1 << max(0, (DOT_BLOCK // max(1, C)).bit_length() - 1), DOT_BLOCK)
        wide = (len(a3), DOT_BLOCK // k, k * C)
        partial = np.einsum("bmc,bmc->bc", a3.reshape(wide), b3.reshape(wide))
        total += partial.sum(axis=0, dtype=np.float64).reshape(k, C).sum(axis=0)
    return total


def row_sum(a: np.ndarray) -> np.ndarray:
    """Per-column sum of an ``(m, C)`` array in float64, blocked as :func:`row_dot`: each
    block's sum is a BLAS product with a vector of ones (NumPy's stacked ``matmul``), the blocks'
    sums are added in float64. Against one product over all rows: 50-100x closer to the exact
    sum (1e-9 against 1e-7 of ``sum |a|`` for 100k rows) and no slower."""
    a3, rest = _blocks(a)
    total = (constant(1, len(rest), a.dtype) @ rest).astype(np.float64)
    if a3 is not None:
        total += (constant(1, DOT_BLOCK, a.dtype) @ a3).sum(axis=0, dtype=np.float64)
    return total


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
