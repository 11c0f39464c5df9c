"""2-D convolution as GEMMs over im2col, a few samples at a time.

The course writes convolution with im2col: every receptive field of the (padded) input becomes a
row of a matrix ``col`` of shape ``(N*OH*OW, C*FH*FW)``, the filters become a matrix
``W_col (C*FH*FW, FN)``, and the layer is one matrix product ``out = col @ W_col + b``; the
backward is the affine layer's backward (``dW_col = col^T dout``, ``dcol = dout W_col^T``)
followed by col2im, which adds each row of ``dcol`` back onto the pixels it was read from.

How this maps to the code, and why it is faster than the course's version:

* ``OH = (H + 2*padding - FH) // stride + 1`` (same for ``OW``).
* The layer is exactly the course's ``out = col @ W_col`` (+ b): the GEMM's rows are the output
  pixels ``(n, i, j)`` and its columns the filters. That result, ``(N*OH*OW, FN)``, *is* the
  output in channels-last memory (NHWC, seen as NCHW: :mod:`nnparts.functional.layout`), and it
  is returned as such instead of transposed to NCHW: that copy gathers values one at a time and
  cost up to half the GEMM's time on 27x27 maps, and BatchNorm, ReLU, pooling and the next
  convolution all run on channels-last memory at least as fast. (In an earlier version the
  output was NCHW and ``out^T = W @ col^T``; OpenBLAS's SkylakeX ``sgemm`` ran that orientation
  20-60% slower on the fast network's 3x3 layers.)
* ``col`` is copied from a channels-last copy of the input (rows of ``kw*C`` neighbouring
  values, read through an :func:`~numpy.lib.stride_tricks.as_strided` view: no index arrays);
  a first layer with 1-3 channels, whose ``kw*C`` runs are too short, builds ``col^T`` from the
  NCHW image instead (runs of an image row, via
  :func:`~numpy.lib.stride_tricks.sliding_window_view`) and the GEMM reads it transposed.
* Not for the whole batch at once: the threads of :mod:`nnparts.threads` take ranges of the
  batch (two a thread, pulled in turn) and walk each in equal chunks of at most ``n`` samples,
  ``n`` chosen so that a chunk's ``col`` is about :data:`CHUNK_BYTES` (1-4 MiB). The copy and
  the GEMM reading it then stay near the core's L2 cache; one ``col`` for half a batch (57 MB
  for 32 channels at 28x28) made every pass go to main memory and ran the layer 2x slower.
* Only the input is kept for the backward; each chunk's ``col`` is recomputed there (cheaper
  than writing a 9x larger array to memory and reading it back, and the graph holds far less).
* ``dW_col^T = col^T dout`` is summed over the chunks; ``dout``'s rows are a view of the
  channels-last gradient the next layer returns.
* ``dx`` of a stride-1 convolution is itself a convolution: ``dout`` padded by ``FH-1-pad``,
  correlated with the filters flipped in space and with in/out channels swapped — one more
  im2col + GEMM. Strided convolutions use ``dcol = dout W_col^T`` and col2im, which
  accumulates over the ``FH*FW`` kernel offsets with strided slice adds (no ``np.add.at``).
* On small maps a padded im2col multiplies many zeros: with a 3x3 kernel and padding 1, 18% of
  its products at 7x7, 21% at 6x6, 40% at 3x3. There (:func:`_skips_padding`) a stride-1
  convolution cuts its output into the rectangles whose pixels read the same taps inside the
  image (interior, edges, corners: :func:`_tap_regions`) and runs one GEMM per rectangle over
  only those taps, reading the channels-last input itself (no padded copy); the weight
  gradient and ``dx``'s transposed convolution do the same (:class:`_TapPlan`).
* The gradient with respect to the input is skipped when the input needs none (the first layer).
* float32 stays float32 end to end, so the GEMMs are OpenBLAS ``sgemm``.

Shapes follow PyTorch: ``x (N, C, H, W)``, ``weight (out_channels, in_channels, kh, kw)``,
``bias (out_channels,)``. Reference: K. Chellapilla, S. Puri, P. Simard, "High Performance
Convolutional Neural Networks for Document Processing" (2006) — the im2col/GEMM formulation.
"""

from __future__ import annotations

import functools
import math
import os
import threading

import numpy as np
from numpy.lib.stride_tricks import as_strided, sliding_window_view

from nnparts import threads
from nnparts.functional.layout import RowTiles, is_channels_last, row_sum
from nnparts.functional.math import reshape
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
            + _channel_hint(tuple(x_shape), w_shape[1])
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
    """Zero-bordered padded chunks reused across training steps, one set per thread (the other
    scratch arrays of a call come from :func:`nnparts.threads.scratch`).

    Only arrays that live inside a single forward or backward call are kept here: nothing handed
    to the autograd graph or returned to the caller ever comes from it.
    """

    def __init__(self):
        self.padded = {}

    def padded_chunk(self, m: int, shape: tuple, padding: tuple, dtype) -> np.ndarray:
        """A ``(m, C, H + 2*ph, W + 2*pw)`` array whose border is zero. Only the interior is ever
        written, so the border stays zero across calls; ``m`` samples are a prefix view."""
        C, H, W = shape
        ph, pw = padding
        key = (C, H, W, ph, pw, np.dtype(dtype).str)
        per_sample = C * (H + 2 * ph) * (W + 2 * pw)
        buf = self.padded.pop(key, None)
        if buf is None or buf.size < m * per_sample:
            buf = np.zeros(m * per_sample, dtype=dtype)
        self.padded[key] = buf  # most recently used last
        if len(self.padded) > 64:  # many geometries (tests, shape sweeps): forget the oldest
            self.padded.pop(next(iter(self.padded)))
        return buf[: m * per_sample].reshape(m, C, H + 2 * ph, W + 2 * pw)

    def padded_last(self, m: int, shape: tuple, padding: tuple, dtype) -> np.ndarray:
        """:meth:`padded_chunk` channels-last: ``(m, H + 2*ph, W + 2*pw, C)``, zero border."""
        C, H, W = shape
        ph, pw = padding
        return self.padded_chunk(m, (1, H, W * C), (ph, pw * C), dtype).reshape(
            m, H + 2 * ph, W + 2 * pw, C
        )


_workspace = _Workspace()


def _l2_bytes(base: str = "/sys/devices/system/cpu/cpu0/cache") -> int | None:
    """The first core's level-2 cache size (Linux sysfs), or None where it cannot be read."""
    try:
        for index in sorted(os.listdir(base)):
            with open(os.path.join(base, index, "level")) as f:
                if f.read().strip() != "2":
                    continue
            with open(os.path.join(base, index, "size")) as f:
                size = f.read().strip().upper()
            scale = {"K": 1 << 10, "M": 1 << 20}.get(size[-1:], 1)
            return int(size.rstrip("KM")) * scale
    except (OSError, ValueError):
        return None
    return None


def chunk_bytes(l2: int | None) -> int:
    """Bytes of ``col`` per GEMM for a core with ``l2`` bytes of level-2 cache: four times its
    size, within 1-4 MiB (the size for 512 KiB where it is unknown).

    A chunk's ``col`` (n*OH*OW x C*kh*kw) is copied by im2col, read by the GEMM and recomputed
    by the backward; kept near the L2 cache, the copy's writes are still there when the GEMM
    packs them (1 MiB chunks ran a 3x3 layer ~2x faster than one im2col matrix for half the
    batch). Measured on the fast network's step (batch 256), each size against the others step
    by step in one process: on an AMD EPYC with 512 KiB of L2 (AVX2), 2 MiB chunks beat 1 MiB
    by 4-5% (`cnn` step 4%), 3 MiB by up to 2% and 4 MiB by 5-10%; on an Intel Xeon with 2 MiB of
    L2, 4 MiB chunks ran the six 3x3 layers' forward + backward in 129 ms against 154 ms with
    1 MiB (8 MiB: 137 ms); the whole step 185-187 ms against 216 (1 MiB), 189-205 (2 MiB),
    181-182 (8 MiB) and 193-198 (16 MiB).
    """
    return min(4 << 20, max(1 << 20, 4 * (l2 or (1 << 19))))


# Samples per GEMM: see :func:`chunk_bytes`.
CHUNK_BYTES = chunk_bytes(_l2_bytes())


def _chunk_samples(K: int, L: int, itemsize: int) -> int:
    return max(1, CHUNK_BYTES // max(1, K * L * itemsize))


def im2col(x, kernel, stride, padding, dtype=None) -> np.ndarray:
    """Receptive fields of ``x (N, C, H, W)`` as ``col^T (C, kh, kw, N, OH, OW)`` (one copy).

    Reshaped to ``(C*kh*kw, N*OH*OW)`` this is the transpose of the course's ``col``. It is read
    through :func:`~numpy.lib.stride_tricks.sliding_window_view` (no index arrays), and every
    copied run is a contiguous row segment of the image.
    """
    kh, kw = kernel
    N, C, H, W = x.shape
    OH, OW = _output_size(H, kh, stride[0], padding[0]), _output_size(W, kw, stride[1], padding[1])
    col = np.empty((C, kh, kw, N, OH, OW), dtype=x.dtype if dtype is None else dtype)
    _unfold(x, col, kernel, stride, padding)
    return col


def _unfold(x, col, kernel, stride, padding) -> None:
    """``col (C, kh, kw, n, OH, OW) <-`` the receptive fields of ``x (n, C, H, W)``."""
    kh, kw = kernel
    sh, sw = stride
    ph, pw = padding
    n, C, H, W = x.shape
    OH, OW = col.shape[4:]
    src = x
    if ph or pw:
        src = _workspace.padded_chunk(n, (C, H, W), padding, col.dtype)
        src[:, :, ph : ph + H, pw : pw + W] = x
    windows = sliding_window_view(src, (kh, kw), axis=(2, 3))  # (n, C, H'-kh+1, W'-kw+1, kh, kw)
    windows = windows[:, :, ::sh, ::sw][:, :, :OH, :OW]
    np.copyto(col, windows.transpose(1, 4, 5, 0, 2, 3))


# Which im2col layout the default path uses: "auto" (by the rule of :func:`_channels_last`),
# "nchw" or "nhwc" (forced; the tests run both on every path).
LAYOUT = "auto"


def _channels_last(C: int, kw: int, OW: int, stride_w: int) -> bool:
    """Whether to build a chunk's ``col`` channels-last (see :func:`_unfold_last`).

    An im2col copy moves contiguous runs: ``OW`` values of one image row when the image is NCHW
    (one run per channel, kernel offset and output row), ``kw*C`` values when it is NHWC (the
    ``kw`` neighbouring pixels of a row, all channels). Copies of short runs are slow: on the
    7x7 and 3x3 maps of the later layers an NCHW run is 7 or 3 values, and the NHWC copy ran the
    3x3 convolutions' forward 1.7x (7x7, 48 channels) to 2.5x (3x3, 96 channels) faster
    (AMD EPYC, AVX2), and 18 channels on 28x28 (runs of 54 against 28 values) 15% faster
    forward + weight gradient. The rule takes NHWC when its runs are at least as long, which
    leaves a first layer (1 or 3 channels) in NCHW.
    """
    if LAYOUT != "auto":
        return LAYOUT == "nhwc"
    return kw * C >= OW


def _unfold_last(x, col, kernel, stride, padding) -> None:
    """``col (n, OH, OW, kh, kw*C) <-`` the receptive fields of ``x (n, C, H, W)``, channels-last.

    ``x`` is copied (transposed to NHWC) into the interior of a zero-bordered buffer ``xp
    (n, H', W', C)``; then row ``(i, j)`` of ``col`` holds, for each kernel row ``p``, the
    ``kw*C`` values ``xp[i*sh + p, j*sw : j*sw + kw, :]`` — one contiguous run of the buffer,
    read through an :func:`~numpy.lib.stride_tricks.as_strided` view. Reshaped to
    ``(n*OH*OW, kh*kw*C)`` this is the course's ``col`` with its columns in ``(p, q, c)`` order,
    so the filters are used as ``weight.transpose(0, 2, 3, 1)``.
    """
    kh, kw = kernel
    sh, sw = stride
    ph, pw = padding
    n, C, H, W = x.shape
    OH, OW = col.shape[1:3]
    xp = _workspace.padded_last(n, (C, H, W), padding, col.dtype)
    xp[:, ph : ph + H, pw : pw + W, :] = x.transpose(0, 2, 3, 1)
    s0, s1, s2, s3 = xp.strides
    view = as_strided(xp, (n, OH, OW, kh, kw * C), (s0, sh * s1, sw * s2, s1, s3), writeable=False)
    np.copyto(col, view)


def _hwc_rows(w: np.ndarray) -> np.ndarray:
    """Filters ``(O, C, kh, kw)`` as rows ``(O, kh*kw*C)`` in the column order of
    :func:`_unfold_last`."""
    O = w.shape[0]
    return np.ascontiguousarray(w.transpose(0, 2, 3, 1)).reshape(O, -1)


# Whether a stride-1 convolution multiplies only the kernel taps that fall inside the image
# (:class:`_TapPlan`): "auto" (by the rule of :func:`_skips_padding`), "always" or "never"
# (forced; the tests run both).
SKIP_PADDING = "auto"
# ... "auto" skips them where at least this fraction of a padded im2col's products would
# multiply the zero padding (3x3 kernels, padding 1: maps of 7x7 and smaller), or at least
# PADDING_WASTE_WIDE with WIDE_CHANNELS input channels or more (then also 14x14 maps).
PADDING_WASTE = 0.15
PADDING_WASTE_WIDE = 0.08
WIDE_CHANNELS = 64


def _tap_runs(out_size: int, size: int, k: int, pad: int) -> list[tuple[int, int, int, int]]:
    """Along one axis of a stride-1 convolution: runs ``(o0, o1, t0, t1)`` of output positions
    ``o0 <= i < o1`` whose kernel taps inside the input are the same, ``t0 <= p < t1``.

    Output ``i`` reads input ``i - pad + p``; that is inside ``0..size-1`` for
    ``max(0, pad - i) <= p < min(k, size + pad - i)``. With ``k=3, pad=1`` on 6 positions:
    ``(0, 1, 1, 3), (1, 5, 0, 3), (5, 6, 0, 2)`` — the first and last positions lose a tap.
    """
    runs: list[tuple[int, int, int, int]] = []
    for i in range(out_size):
        taps = (max(0, pad - i), min(k, size + pad - i))
        if runs and runs[-1][2:] == taps:
            runs[-1] = (runs[-1][0], i + 1, *taps)
        else:
            runs.append((i, i + 1, *taps))
    return runs


def _tap_regions(H, W, kernel, padding) -> list[tuple[int, ...]]:
    """The output of a stride-1 convolution of an ``H x W`` map cut into rectangles whose pixels
    read the same taps inside the image: ``(i0, i1, j0, j1, p0, p1, q0, q1)`` for output rows
    ``i0..i1-1``, columns ``j0..j1-1`` and taps ``p0 <= p < p1``, ``q0 <= q < q1``.

    A 3x3 kernel with padding 1 gives nine: the interior (all nine taps), four edges (six) and
    four corners (four). Each rectangle is one GEMM over only its taps, so no product multiplies
    the zero padding: on a 6x6 map 21% of a padded im2col's products are zeros, on 3x3 40%.
    """
    kh, kw = kernel
    ph, pw = padding
    rows = _tap_runs(H + 2 * ph - kh + 1, H, kh, ph)
    cols = _tap_runs(W + 2 * pw - kw + 1, W, kw, pw)
    return [(*r[:2], *c[:2], *r[2:], *c[2:]) for r in rows for c in cols]


@functools.lru_cache(maxsize=256)
def _padding_waste(H, W, kernel, padding) -> float:
    """The fraction of a padded im2col's products that multiply zero padding (stride 1); cached,
    as :func:`_tap_plan` (a network asks for the same few geometries at every step)."""
    kh, kw = kernel
    ph, pw = padding
    inside = 1.0
    for size, k, pad in ((H, kh, ph), (W, kw, pw)):
        runs = _tap_runs(size + 2 * pad - k + 1, size, k, pad)
        inside *= sum((o1 - o0) * (t1 - t0) for o0, o1, t0, t1 in runs) / (
            (size + 2 * pad - k + 1) * k
        )
    return 1.0 - inside


def _skips_padding(H, W, C, kernel, stride, padding, last) -> bool:
    """Whether a convolution of ``C`` input channels runs on :class:`_TapPlan`'s rectangles
    rather than on one padded im2col: stride 1, the channels-last lowering, ``padding < kernel``
    on both axes and not zero on both, and (``"auto"``) at least :data:`PADDING_WASTE` of the
    padded im2col's products on zeros, or :data:`PADDING_WASTE_WIDE` with at least
    :data:`WIDE_CHANNELS` channels (``dx``'s transposed convolution reads ``dout``: its
    channels are the layer's outputs).

    Measured on an AMD EPYC (Zen 4, AVX-512, OpenBLAS SkylakeX), this rule against the padded
    im2col everywhere, step by step in one process (paired medians, two runs each): the fast
    network (batch 256; 6x6 and 3x3 layers) 0.945-0.952, ResNet (batch 128; 64 channels at
    14x14, 128 at 7x7) 0.945-0.980, `cnn` (its 64-channel ``dx`` at 14x14) 0.972-0.991. One
    layer, forward + backward (batch 256): 128->128 at 3x3 0.79-0.80, at 7x7 0.87-0.89, 64->128
    at 6x6 0.92, 64->64 at 14x14 0.93-0.94; but 32->32 and 32->64 at 13x13 1.04-1.11 and 8->32 at
    27x27 1.28: with few channels the rectangles' copies move short runs, and on large maps nine
    smaller GEMMs cost more than the few zeros they skip. (On one chunk and one thread the
    32-channel 13x13 layers did win, 0.91-0.98; over the whole batch on both threads they lost.)
    """
    if stride != (1, 1) or not last:
        return False
    (kh, kw), (ph, pw) = kernel, padding
    if ph >= kh or pw >= kw or (ph == 0 and pw == 0):
        return False
    if SKIP_PADDING != "auto":
        return SKIP_PADDING == "always"
    waste = _padding_waste(H, W, kernel, padding)
    return waste >= (PADDING_WASTE_WIDE if C >= WIDE_CHANNELS else PADDING_WASTE)


class _TapPlan:
    """A stride-1 convolution of ``(H, W, C)`` maps cut into the rectangles of
    :func:`_tap_regions`, with what each rectangle's GEMM needs worked out once per op call
    rather than once per chunk: the slices of its output pixels, where its im2col view starts
    in a sample and its shape and strides (elements), and the rows of the filter matrix of its
    taps. Nine small GEMMs a chunk in place of one: the per-chunk Python work is kept to a view,
    a copy, a product and a copy out each (about 10 us a rectangle). Read-only once built: get
    one from :func:`_tap_plan`, which keeps it for the next call with the same geometry.
    """

    def __init__(self, H, W, C, kernel, padding, itemsize):
        kh, kw = kernel
        ph, pw = padding
        self.kernel = kernel
        self.regions = []
        self.per_sample = H * W * C * itemsize
        e = itemsize
        found = _tap_regions(H, W, kernel, padding)
        for i0, i1, j0, j1, p0, p1, q0, q1 in found:
            ni, nj, n_p, n_q = i1 - i0, j1 - j0, p1 - p0, q1 - q0
            # output (i, j), tap (p, q) reads input (i - ph + p, j - pw + q): the view starts at
            # the region's first output and first tap, all inside the image
            offset = ((i0 - ph + p0) * W + (j0 - pw + q0)) * C * e
            self.regions.append(
                dict(
                    out=(slice(None), slice(i0, i1), slice(j0, j1)),
                    taps=(slice(p0, p1), slice(q0, q1)),
                    tap_shape=(n_p, n_q, C),
                    offset=offset,
                    shape=(ni, nj, n_p, n_q * C),
                    strides=(W * C * e, C * e, W * C * e, e),
                    pixels=ni * nj,
                    k=n_p * n_q * C,
                )
            )
        self.max_col = max(r["pixels"] * r["k"] for r in self.regions)
        self.max_pixels = max(r["pixels"] for r in self.regions)

    def weights(self, w_rows) -> list[np.ndarray]:
        """For each rectangle the rows of ``w_rows (kh*kw*C, O)`` (rows in ``(p, q, c)`` order)
        of its taps, ``((p1-p0)*(q1-q0)*C, O)`` C-contiguous."""
        kh, kw = self.kernel
        w4 = w_rows.reshape(kh, kw, -1, w_rows.shape[1])
        return [np.ascontiguousarray(w4[r["taps"]]).reshape(-1, w4.shape[3]) for r in self.regions]

    def col(self, xh, r, buf) -> np.ndarray:
        """``col (m*ni*nj, k)`` of rectangle ``r``: its output pixels' taps inside the image, read
        from the C-contiguous channels-last chunk ``xh (m, H, W, C)`` (no padded copy) through a
        strided view, columns in ``(p, q, c)`` order."""
        m = xh.shape[0]
        view = np.ndarray(
            (m, *r["shape"]), xh.dtype, xh, r["offset"], (self.per_sample, *r["strides"])
        )
        col = buf[: m * r["pixels"] * r["k"]].reshape(view.shape)
        np.copyto(col, view)
        return col.reshape(m * r["pixels"], r["k"])

    def conv(self, xh, weights, out) -> None:
        """``out (m, OH, OW, O) <-`` the convolution of ``xh (m, H, W, C)``, one GEMM a rectangle
        with the rows of its taps (:meth:`weights`): the zero padding is never multiplied."""
        m, O = out.shape[0], out.shape[3]
        buf = threads.scratch("col", m * self.max_col, out.dtype)
        res = threads.scratch("region_out", m * self.max_pixels * O, out.dtype)
        for r, w_r in zip(self.regions, weights):
            rows = m * r["pixels"]
            col = self.col(xh, r, buf)
            np.matmul(col, w_r, out=res[: rows * O].reshape(rows, O))
            out[r["out"]] = res[: rows * O].reshape(m, *r["shape"][:2], O)

    def grad_w(self, xh, gh, gw) -> None:
        """``gw (kh*kw*C, O) +=`` ``col^T dout`` of the chunk (rows ``(p, q, c)``), a rectangle at
        a time: its taps' rows get ``col_r^T dout_r``, ``dout_r`` its pixels' gradient rows."""
        kh, kw = self.kernel
        m, O = gh.shape[0], gh.shape[3]
        dtype = gw.dtype
        gw4 = gw.reshape(kh, kw, -1, O)
        buf = threads.scratch("col", m * self.max_col, dtype)
        g_buf = threads.scratch("region_g", m * self.max_pixels * O, dtype)
        tmp = threads.scratch("region_gw", gw.size, dtype)
        for r in self.regions:
            rows = m * r["pixels"]
            col = self.col(xh, r, buf)
            g_r = g_buf[: rows * O].reshape(m, *r["shape"][:2], O)
            np.copyto(g_r, gh[r["out"]])
            t = tmp[: r["k"] * O].reshape(r["k"], O)
            np.matmul(col.T, g_r.reshape(rows, O), out=t)
            gw4[r["taps"]] += t.reshape(*r["tap_shape"], O)


@functools.lru_cache(maxsize=256)
def _tap_plan(H, W, C, kernel, padding, itemsize) -> _TapPlan:
    """The :class:`_TapPlan` of a geometry, built once (~35 us of Python) and reused by the
    forward and the backward of every later step."""
    return _TapPlan(H, W, C, kernel, padding, itemsize)


def _lowered(x, kernel, stride, padding, OH, OW, last, dtype, role="col"):
    """``col^T (K, n*OH*OW)`` of the chunk ``x (n, C, H, W)`` in this thread's workspace: a
    C-contiguous matrix (NCHW lowering, rows ``(c, p, q)``) or the transposed view of a
    C-contiguous ``(n*OH*OW, K)`` matrix (channels-last, rows ``(p, q, c)``); BLAS reads either
    without a copy."""
    kh, kw = kernel
    n, C = x.shape[:2]
    K, L = C * kh * kw, OH * OW
    buf = threads.scratch(role, K * n * L, dtype)
    if last:
        col = buf.reshape(n, OH, OW, kh, kw * C)
        _unfold_last(x, col, kernel, stride, padding)
        return col.reshape(n * L, K).T
    col = buf.reshape(C, kh, kw, n, OH, OW)
    _unfold(x, col, kernel, stride, padding)
    return col.reshape(K, n * L)


def col2im(dcol, input_shape, stride, padding) -> np.ndarray:
    """Adjoint of :func:`im2col`: add every field of ``dcol (C, kh, kw, N, OH, OW)`` back onto
    the pixels it was read from; returns ``(N, C, H, W)`` (C-contiguous).

    One strided slice add per kernel offset (``kh*kw`` vectorized adds), no ``np.add.at``.
    """
    dx = np.empty(input_shape, dtype=dcol.dtype)
    _fold(dcol, dx, stride, padding)
    return dx


def _fold(dcol, dx, stride, padding) -> None:
    """``dx (n, C, H, W) <-`` col2im of ``dcol (C, kh, kw, n, OH, OW)``."""
    C, kh, kw, n, OH, OW = dcol.shape
    H, W = dx.shape[2:]
    sh, sw = stride
    ph, pw = padding
    Hp, Wp = H + 2 * ph, W + 2 * pw
    acc = threads.scratch("fold", C * n * Hp * Wp, dcol.dtype).reshape(C, n, Hp, Wp)
    acc.fill(0)
    h_span, w_span = sh * (OH - 1) + 1, sw * (OW - 1) + 1
    for i in range(kh):
        for j in range(kw):
            acc[:, :, i : i + h_span : sh, j : j + w_span : sw] += dcol[:, i, j]
    np.copyto(dx, acc[:, :, ph : ph + H, pw : pw + W].transpose(1, 0, 2, 3))


def _fold_last(dcol, dx, stride, padding) -> None:
    """``dx (m, H, W, C) <-`` col2im of the channels-last ``dcol (m, OH, OW, kh, kw, C)``: one
    strided add of ``C``-value runs per kernel offset."""
    m, OH, OW, kh, kw, C = dcol.shape
    H, W = dx.shape[1:3]
    sh, sw = stride
    ph, pw = padding
    acc = threads.scratch("fold", m * (H + 2 * ph) * (W + 2 * pw) * C, dcol.dtype)
    acc = acc.reshape(m, H + 2 * ph, W + 2 * pw, C)
    acc.fill(0)
    h_span, w_span = sh * (OH - 1) + 1, sw * (OW - 1) + 1
    for i in range(kh):
        for j in range(kw):
            acc[:, i : i + h_span : sh, j : j + w_span : sw] += dcol[:, :, :, i, j]
    np.copyto(dx, acc[:, ph : ph + H, pw : pw + W])


class Conv2d(Function):
    """``out (n*OH*OW, O) = col (n*OH*OW, K) @ W_col^T (K, O) + b``, a few samples at a time; the
    output is channels-last.

    The batch is split over the threads of :mod:`nnparts.threads`; each thread walks its
    samples in chunks of :data:`CHUNK_BYTES` of ``col`` and, for each chunk, copies the
    receptive fields (im2col) and multiplies. Only the input is saved for the backward (not the
    9x larger ``col``), which recomputes each chunk's ``col``.

    * The GEMM's rows are the output pixels ``(n, i, j)`` and its columns the filters: this is
      the orientation OpenBLAS runs fastest (the long ``n*OH*OW`` axis as the rows of the
      result; the SkylakeX ``sgemm`` ran the fast network's 3x3 layers 20-60% faster so than as
      ``W @ col^T``), and its ``(n*OH*OW, O)`` result *is* the channels-last output, returned as
      such (see :mod:`nnparts.functional.layout`): no transposing copy to NCHW, which cost up to
      half the GEMM's time on 27x27 maps.
    * ``col`` is built in one of two layouts (:func:`_lower_last`): channels-last, columns in
      ``(p, q, c)`` order, copying runs of ``kw*C`` values from a channels-last copy of the
      input (any channels-last input: every layer after the first); or NCHW,
      ``col^T (K, n*OH*OW)`` with rows ``(c, p, q)`` copying runs of an image row (a first layer
      with 1-3 channels, where ``kw*C`` values are too short a run), read transposed by BLAS.
    * A 1x1 stride-1 convolution multiplies the input's rows themselves (a view when the input
      is channels-last).

    Backward, from ``dout``'s rows (a view when ``dout`` is channels-last, as the next layer
    returns it):

    * ``dW_col^T = col^T dout`` summed over the chunks (and the threads);
    * ``dx``: for stride 1 the *transposed convolution* — the gradient of a stride-1 convolution
      is a convolution of ``dout`` (padded by ``kh-1-ph``) with the weights flipped in space and
      with in/out channels swapped, one more im2col + GEMM; otherwise ``dcol = dout W_col``
      followed by col2im. ``dx`` has the input's layout.
    * A thread computes the weight gradient over all its chunks, then ``dx`` over them again,
      rather than both for each chunk in turn: one im2col scratch buffer in use at a time, not
      two (``col`` and ``dout``'s ``gcol``). Step by step in one process on an AMD EPYC Zen 4:
      ResNet 0.957-0.965 of the time, `cnn` 0.997, the fast network 0.999 (no ``dx`` on its
      27x27 layer); one 32->32 layer at 27x27, backward 0.90.
    """

    @staticmethod
    def forward(ctx, x, weight, bias=None, stride=(1, 1), padding=(0, 0)):
        _check_conv_args(
            x.shape, weight.shape, None if bias is None else bias.shape, stride, padding
        )
        dtype = np.result_type(x, weight) if bias is None else np.result_type(x, weight, bias)
        N, C, H, W = x.shape
        O, _, kh, kw = weight.shape
        OH, OW = (
            _output_size(H, kh, stride[0], padding[0]),
            _output_size(W, kw, stride[1], padding[1]),
        )
        L, K = OH * OW, C * kh * kw
        w = weight.astype(dtype, copy=False)
        pointwise = (kh, kw, *stride, *padding) == (1, 1, 1, 1, 0, 0)
        last = _lower_last(x, C, kw, OW, stride[1])
        # W_col^T (K, O), its rows in the order of col's columns
        w_t = np.ascontiguousarray((_hwc_rows(w) if last else w.reshape(O, K)).T)
        # the bias added to the output rows seen as long tiled rows (layout.RowTiles: NumPy's
        # broadcast add runs 2.4x faster on (m*L/k, k*O) rows than on (m*L, O) for O = 32)
        tiles = b_row = None
        if bias is not None:
            tiles = RowTiles(L, O)
            b_row = tiles.tile(bias.astype(dtype, copy=False))
        per_chunk = _per_chunk(x, K, L, dtype, pointwise)
        x_hwc = x.transpose(0, 2, 3, 1)
        out = np.empty((N, OH, OW, O), dtype=dtype)
        regions = None
        if _skips_padding(H, W, C, (kh, kw), stride, padding, last):
            regions = _tap_plan(H, W, C, (kh, kw), padding, np.dtype(dtype).itemsize)
            w_parts = regions.weights(w_t)

        def samples(s, e):
            for a, m in _walk(s, e, per_chunk):
                rows = out[a : a + m].reshape(m * L, O)
                if regions is not None:  # only the taps inside the image
                    xh = np.ascontiguousarray(x_hwc[a : a + m], dtype=dtype)
                    regions.conv(xh, w_parts, out[a : a + m])
                    if b_row is not None:
                        tiles.wide(rows)[...] += b_row
                    continue
                if pointwise:
                    col = np.ascontiguousarray(x_hwc[a : a + m], dtype=dtype).reshape(m * L, C)
                else:
                    col = _lowered(x[a : a + m], (kh, kw), stride, padding, OH, OW, last, dtype).T
                np.matmul(col, w_t, out=rows)
                if b_row is not None:
                    tiles.wide(rows)[...] += b_row

        threads.parallel_for(N, N * K * L * O // 16, samples)
        ctx.save(x, w)
        ctx.shapes = (x.shape, weight.shape, (OH, OW))
        ctx.dtypes = (x.dtype, weight.dtype, None if bias is None else bias.dtype)
        ctx.stride, ctx.padding, ctx.last = stride, padding, last
        return out.transpose(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved
        x_shape, w_shape, (OH, OW) = ctx.shapes
        N, C, H, W = x_shape
        O, _, kh, kw = w_shape
        L, K = OH * OW, C * kh * kw
        stride, padding, last = ctx.stride, ctx.padding, ctx.last
        dtype = w.dtype
        # dout's rows (N, OH*OW, O): a view when dout is channels-last, as the forward returned it
        g_hwc = np.ascontiguousarray(g.transpose(0, 2, 3, 1), dtype=dtype).reshape(N, L, O)
        needs = ctx.needs_grad
        need_x, need_w = needs[0], needs[1]
        need_b = len(needs) > 2 and needs[2]
        pointwise = (kh, kw, *stride, *padding) == (1, 1, 1, 1, 0, 0)
        per_chunk = _per_chunk(x, K, L, dtype, pointwise)
        x_hwc = x.transpose(0, 2, 3, 1)
        t_pad = (kh - 1 - padding[0], kw - 1 - padding[1])
        transposed = need_x and not pointwise and stride == (1, 1) and min(t_pad) >= 0
        if transposed:  # dout's im2col (kh*kw*O columns) must fit the chunk too
            per_chunk = min(per_chunk, _chunk_samples(kh * kw * O, H * W, np.dtype(dtype).itemsize))
        if need_x:
            w_hwc = _hwc_rows(w)  # (O, K), columns (p, q, c)
            if transposed:  # dx rows = gcol (n*H*W, kh*kw*O) @ w_flip^T, w_flip (C, O, kh, kw)
                w_flip_t = np.ascontiguousarray(
                    _hwc_rows(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)).T
                )
            dx_hwc = np.empty((N, H, W, C), dtype=dtype)
        # only the taps inside the image (the weight gradient reads x's, dx's transposed
        # convolution dout's)
        w_regions = x_regions = None
        if need_w and _skips_padding(H, W, C, (kh, kw), stride, padding, last):
            w_regions = _tap_plan(H, W, C, (kh, kw), padding, np.dtype(dtype).itemsize)
        if transposed and _skips_padding(OH, OW, O, (kh, kw), (1, 1), t_pad, True):
            x_regions = _tap_plan(OH, OW, O, (kh, kw), t_pad, np.dtype(dtype).itemsize)
            flip_parts = x_regions.weights(w_flip_t)

        def input_grad(a, m):
            """``dx`` of the samples ``a..a+m-1``."""
            g_rows = g_hwc[a : a + m].reshape(m * L, O)
            dx_rows = dx_hwc[a : a + m].reshape(m * H * W, C)
            if pointwise:
                np.matmul(g_rows, w.reshape(O, C), out=dx_rows)
            elif x_regions is not None:
                gh = g_hwc[a : a + m].reshape(m, OH, OW, O)
                x_regions.conv(gh, flip_parts, dx_hwc[a : a + m])
            elif transposed:
                g_nchw = g_hwc[a : a + m].reshape(m, OH, OW, O).transpose(0, 3, 1, 2)
                gcol = _lowered(g_nchw, (kh, kw), (1, 1), t_pad, H, W, True, dtype, role="gcol")
                np.matmul(gcol.T, w_flip_t, out=dx_rows)
            else:  # dcol = dout W_col, then col2im
                dcol = threads.scratch("dcol", m * L * K, dtype).reshape(m * L, K)
                np.matmul(g_rows, w_hwc, out=dcol)
                _fold_last(dcol.reshape(m, OH, OW, kh, kw, C), dx_hwc[a : a + m], stride, padding)

        def samples(s, e):
            gw = np.zeros((K, O), dtype=dtype) if need_w else None  # dW_col^T
            gb = np.zeros(O) if need_b else None  # float64: row_sum's blocked sums
            tmp = np.empty((K, O), dtype=dtype) if need_w else None
            chunks = _walk(s, e, per_chunk)
            for a, m in chunks:  # the weight and bias gradients of every chunk first, ...
                g_rows = g_hwc[a : a + m].reshape(m * L, O)
                if need_b:
                    gb += row_sum(g_rows)
                if w_regions is not None:
                    xh = np.ascontiguousarray(x_hwc[a : a + m], dtype=dtype)
                    gh = g_hwc[a : a + m].reshape(m, OH, OW, O)
                    w_regions.grad_w(xh, gh, gw)
                elif need_w:
                    if pointwise:
                        col_t = np.ascontiguousarray(x_hwc[a : a + m], dtype=dtype)
                        col_t = col_t.reshape(m * L, C).T
                    else:
                        col_t = _lowered(
                            x[a : a + m], (kh, kw), stride, padding, OH, OW, last, dtype
                        )
                    np.matmul(col_t, g_rows, out=tmp)  # dW_col^T += col^T dout
                    gw += tmp
            if need_x:  # ... then dx, chunk by chunk (see the class docstring)
                for a, m in chunks:
                    input_grad(a, m)
            return gw, gb

        parts = threads.parallel_map(N, N * K * L * O // 8, samples)
        gx = gw = gb = None
        if need_w:
            gw = parts[0][0]
            for part in parts[1:]:
                gw += part[0]
            if last:  # rows (p, q, c) -> (c, p, q)
                gw = gw.T.reshape(O, kh, kw, C).transpose(0, 3, 1, 2)
            else:
                gw = gw.T.reshape(w_shape)
            gw = np.ascontiguousarray(gw, dtype=ctx.dtypes[1])
        if need_b:
            gb = parts[0][1]
            for part in parts[1:]:
                gb += part[1]
            gb = gb.astype(ctx.dtypes[2], copy=False)
        if need_x:
            gx = dx_hwc.transpose(0, 3, 1, 2)
            if not is_channels_last(x):  # an NCHW input (a first layer): an NCHW gradient
                gx = np.ascontiguousarray(gx)
            gx = gx.astype(ctx.dtypes[0], copy=False)
        return gx, gw, gb


def _lower_last(x, C, kw, OW, stride_w) -> bool:
    """Whether im2col is built channels-last: a channels-last input always is (unless
    :data:`LAYOUT` forces NCHW), an NCHW one by the rule of :func:`_channels_last`."""
    if LAYOUT != "auto":
        return LAYOUT == "nhwc"
    return is_channels_last(x) or _channels_last(C, kw, OW, stride_w)


def _walk(s: int, e: int, per_chunk: int) -> list[tuple[int, int]]:
    """``(first, count)`` of the GEMM chunks of samples ``s..e``: as few as hold at most
    ``per_chunk`` samples each, of equal sizes (within one). Cutting 64 samples as 21+21+21+1
    ran a one-sample GEMM, a poor shape for BLAS; 16+16+16+16 does not (with the threads' two
    chunks each, :func:`nnparts.threads.op_chunks`, a thread's range is often not a multiple of
    ``per_chunk``)."""
    if e <= s:  # an empty batch: no chunk
        return []
    parts = threads.chunks(e - s, -(-(e - s) // per_chunk))
    return [(s + a, b - a) for a, b in parts]


def _per_chunk(x, K, L, dtype, pointwise) -> int:
    """Samples per GEMM: ``col`` near :data:`CHUNK_BYTES`; a 1x1 convolution of a channels-last
    input multiplies its rows in place, all of a thread's samples at once."""
    if pointwise and is_channels_last(x):
        return x.shape[0]
    return _chunk_samples(K, L, np.dtype(dtype).itemsize)


class Conv2dGeneral(Function):
    """The options of the default path's :class:`Conv2d` left out: ``dilation``, ``groups`` and
    uneven padding (``padding='same'`` with an even effective kernel). A separate op, so the
    tuned default path stays as it is.

    With ``x`` padded by ``((pt, pb), (pl, pr))``, dilation ``(dh, dw)`` and ``G`` groups of
    ``Cg = C/G`` input and ``Og = O/G`` output channels::

        out[n, g*Og + o, i, j] = b[g*Og + o]
            + sum_{c < Cg, p, q} x_pad[n, g*Cg + c, i*sh + p*dh, j*sw + q*dw] * w[g*Og + o, c, p, q]

    ``OH = (H + pt + pb - dh*(kh - 1) - 1) // sh + 1``. The receptive fields of the whole batch
    are copied once into ``col (N, G, Cg*kh*kw, OH*OW)`` (the dilation folded into the strides
    of a sliding-window view) and every group is one batched GEMM ``W_g @ col_g``. Backward:
    ``dW_g = sum_n dout_g col_g^T``, ``dcol_g = W_g^T dout_g`` and col2im (one strided add per
    kernel offset).
    """

    @staticmethod
    def forward(
        ctx, x, weight, bias=None, stride=(1, 1), pads=((0, 0), (0, 0)), dilation=(1, 1), groups=1
    ):
        N, C, H, W = x.shape
        O, Cg, kh, kw = weight.shape
        G = groups
        (pt, pb), (pl, pr) = pads
        dh, dw = dilation
        sh, sw = stride
        dtype = np.result_type(x, weight) if bias is None else np.result_type(x, weight, bias)
        xp = np.pad(x.astype(dtype, copy=False), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
        ekh, ekw = dh * (kh - 1) + 1, dw * (kw - 1) + 1
        OH, OW = (H + pt + pb - ekh) // sh + 1, (W + pl + pr - ekw) // sw + 1
        win = sliding_window_view(xp, (ekh, ekw), axis=(2, 3))[:, :, ::sh, ::sw, ::dh, ::dw]
        win = win[:, :, :OH, :OW]  # (N, C, OH, OW, kh, kw)
        K, L = Cg * kh * kw, OH * OW
        col = np.ascontiguousarray(win.transpose(0, 1, 4, 5, 2, 3)).reshape(N, G, K, L)
        w_g = weight.astype(dtype, copy=False).reshape(G, O // G, K)
        out = np.matmul(w_g, col).reshape(N, O, OH, OW)  # (N, G, Og, L): one GEMM per group
        if bias is not None:
            out += bias.astype(dtype, copy=False)[:, None, None]
        ctx.save(col, w_g)
        ctx.geometry = (x.shape, weight.shape, stride, pads, dilation, G, (OH, OW))
        ctx.dtypes = (x.dtype, weight.dtype, None if bias is None else bias.dtype)
        return out

    @staticmethod
    def backward(ctx, g):
        col, w_g = ctx.saved
        (N, C, H, W), (O, Cg, kh, kw), (sh, sw), pads, (dh, dw), G, (OH, OW) = ctx.geometry
        (pt, pb), (pl, pr) = pads
        needs = ctx.needs_grad
        gg = g.astype(w_g.dtype, copy=False).reshape(N, G, O // G, OH * OW)
        gx = gw = gb = None
        if len(needs) > 2 and needs[2]:
            gb = g.sum(axis=(0, 2, 3)).astype(ctx.dtypes[2], copy=False)
        if needs[1]:
            gw = np.matmul(gg, col.transpose(0, 1, 3, 2)).sum(axis=0)
            gw = gw.reshape(O, Cg, kh, kw).astype(ctx.dtypes[1], copy=False)
        if needs[0]:
            dcol = np.matmul(w_g.transpose(0, 2, 1), gg).reshape(N, C, kh, kw, OH, OW)
            dxp = np.zeros((N, C, H + pt + pb, W + pl + pr), dtype=dcol.dtype)
            hspan, wspan = sh * (OH - 1) + 1, sw * (OW - 1) + 1
            for p in range(kh):
                for q in range(kw):
                    dxp[:, :, p * dh : p * dh + hspan : sh, q * dw : q * dw + wspan : sw] += dcol[
                        :, :, p, q
                    ]
            gx = dxp[:, :, pt : pt + H, pl : pl + W].astype(ctx.dtypes[0], copy=False)
        return gx, gw, gb


def _channel_hint(x_shape, in_channels: int) -> str:
    """The likely fix when an input's channel axis does not hold ``in_channels``."""
    if len(x_shape) == 3 and in_channels == 1:
        n, h, w = x_shape
        return (
            f"; for a batch of {n} single-channel {h}x{w} images add the channel axis: "
            f"x.reshape({n}, 1, {h}, {w})"
        )
    if len(x_shape) == 4 and x_shape[3] == in_channels:
        return "; the input looks channels-last (N, H, W, C): use x.transpose(0, 3, 1, 2)"
    if len(x_shape) == 3 and x_shape[2] == in_channels:
        return "; the image looks channels-last (H, W, C): use x.transpose(2, 0, 1)"
    return ""


def _check_input_rank(x_shape, in_channels: int):
    if len(x_shape) in (3, 4):
        return
    hint = ""
    if len(x_shape) == 2:
        n, f = x_shape
        side = int(round(math.sqrt(f / in_channels))) if f % in_channels == 0 else 0
        if side and side * side * in_channels == f:
            hint = (
                f"; flat images of {f} values reshape to x.reshape({n}, {in_channels}, {side}, "
                f"{side})"
            )
        else:
            hint = "; flat images need x.reshape(N, C, H, W)"
    raise ValueError(
        f"conv2d expects a 4-D input (N, C, H, W) or one unbatched image (C, H, W), got shape "
        f"{tuple(x_shape)}{hint}"
    )


def _same_padding(kernel, dilation, stride):
    """``padding='same'``: ``d*(k - 1)`` zeros in total per axis, the extra one (if odd) at the
    bottom/right, as PyTorch. Only for stride 1 (as PyTorch)."""
    if stride != (1, 1):
        raise ValueError(
            f"padding='same' needs stride 1 (as in PyTorch), got stride={stride}; give the "
            "padding as numbers for a strided convolution"
        )
    pads = []
    for k, d in zip(kernel, dilation):
        total = d * (k - 1)
        pads.append((total // 2, total - total // 2))
    return tuple(pads)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> Tensor:
    """2-D cross-correlation (PyTorch's ``conv2d``): ``x (N, C, H, W)``, ``weight (O, C/groups,
    kh, kw)``.

    ``out[n, o, i, j] = b[o] + sum_{c, p, q} x_pad[n, g*C/G + c, i*sh + p*dh, j*sw + q*dw]
    * weight[o, c, p, q]`` with ``g = o // (O/G)`` (the group of output channel ``o``) and
    ``OH = (H + 2*ph - dh*(kh - 1) - 1) // sh + 1``.

    Args:
        x: ``(N, C, H, W)``, or one unbatched image ``(C, H, W)`` (the output is then
            ``(O, OH, OW)``, as PyTorch).
        stride, dilation: an int or a pair ``(height, width)``; ``dilation`` spaces the kernel
            taps ``d`` pixels apart (an atrous convolution; Yu & Koltun 2016).
        padding: an int, a pair, ``'valid'`` (no padding) or ``'same'`` (output as large as the
            input; stride 1 only; an odd total puts the extra zero at the bottom/right, as
            PyTorch). Zeros.
        groups: split the channels into ``G`` groups, each convolved with its own ``O/G``
            filters; ``groups = C`` with ``O = k*C`` is a depthwise convolution (MobileNet).
            ``C`` and ``O`` must be multiples of ``groups``.

    Returns ``(N, O, OH, OW)``, stored channels-last (``F.contiguous(y)`` gives NCHW memory;
    the values are the same). The default (``dilation=1``, ``groups=1``,
    numeric padding) runs the tuned chunked GEMM of :class:`Conv2d`; the other options run
    :class:`Conv2dGeneral`.

    Raises ValueError, naming the shapes and the fix, for an input that is not ``(N, C, H, W)``
    / ``(C, H, W)``, a channel mismatch (channels-last or a missing channel axis are
    recognized), a bias of the wrong length, or a kernel larger than the padded input.
    """
    stride = _pair(stride, "stride")
    if groups == 1 and dilation == 1 and not isinstance(padding, str):
        padding = _pair(padding, "padding")
        if np.ndim(x.data if isinstance(x, Tensor) else x) == 4:
            if bias is None:
                return Conv2d.apply(x, weight, stride=stride, padding=padding)
            return Conv2d.apply(x, weight, bias, stride=stride, padding=padding)
    return _conv2d_options(x, weight, bias, stride, padding, dilation, groups)


def _conv2d_options(x, weight, bias, stride, padding, dilation, groups):
    """Unbatched inputs, dilation, groups and string padding (see :func:`conv2d`)."""
    x_shape = tuple(np.shape(x.data if isinstance(x, Tensor) else x))
    w_shape = tuple(np.shape(weight.data if isinstance(weight, Tensor) else weight))
    if len(w_shape) != 4:
        raise ValueError(
            f"conv2d weight must be 4-D (out_channels, in_channels/groups, kh, kw), got shape "
            f"{w_shape}"
        )
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"conv2d groups must be an int >= 1, got {groups!r}")
    dilation = _pair(dilation, "dilation")
    if min(dilation) < 1:
        raise ValueError(f"conv2d dilation must be >= 1, got {dilation}")
    _check_input_rank(x_shape, w_shape[1] * groups)
    unbatched = len(x_shape) == 3
    if unbatched:
        if x_shape[0] != w_shape[1] * groups:
            raise ValueError(
                f"conv2d channel mismatch: unbatched input {x_shape} (C, H, W) has {x_shape[0]} "
                f"channels but weight {w_shape} expects {w_shape[1] * groups}"
                + _channel_hint(x_shape, w_shape[1] * groups)
            )
        x = reshape(x, (1, *x_shape))
        x_shape = (1, *x_shape)
    C, O = x_shape[1], w_shape[0]
    if C % groups or O % groups:
        raise ValueError(
            f"conv2d groups={groups} must divide both the input channels ({C}) and the output "
            f"channels ({O})"
        )
    if w_shape[1] * groups != C:
        raise ValueError(
            f"conv2d channel mismatch: input {x_shape} has {C} channels but weight {w_shape} "
            f"with groups={groups} expects {w_shape[1] * groups} (weight layout (out, in/groups, "
            "kh, kw))" + _channel_hint(x_shape, w_shape[1] * groups)
        )
    kernel = w_shape[2:]
    if isinstance(padding, str):
        if padding == "valid":
            pads = ((0, 0), (0, 0))
        elif padding == "same":
            pads = _same_padding(kernel, dilation, stride)
        else:
            raise ValueError(
                f"conv2d padding must be an int, a pair, 'same' or 'valid', got {padding!r}"
            )
    else:
        ph, pw = _pair(padding, "padding")
        pads = ((ph, ph), (pw, pw))
    symmetric = pads[0][0] == pads[0][1] and pads[1][0] == pads[1][1]
    if groups == 1 and dilation == (1, 1) and symmetric:
        out = conv2d(x, weight, bias, stride, (pads[0][0], pads[1][0]))
    else:
        if min(stride) < 1 or min(min(pads)) < 0:
            raise ValueError(
                f"conv2d needs stride >= 1 and padding >= 0, got stride={stride}, padding={padding}"
            )
        ekh, ekw = dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1
        hp, wp = x_shape[2] + sum(pads[0]), x_shape[3] + sum(pads[1])
        if ekh > hp or ekw > wp:
            raise ValueError(
                f"conv2d kernel {tuple(kernel)} with dilation {dilation} spans ({ekh}, {ekw}), "
                f"larger than the padded input ({hp}, {wp}) (input {x_shape}); use a smaller "
                "kernel or dilation, or more padding"
            )
        if bias is not None and tuple(
            np.shape(bias.data if isinstance(bias, Tensor) else bias)
        ) != (O,):
            raise ValueError(
                f"conv2d bias shape {np.shape(bias)} does not match weight {w_shape}; "
                f"expected ({O},)"
            )
        kw = dict(stride=stride, pads=pads, dilation=dilation, groups=int(groups))
        if bias is None:
            out = Conv2dGeneral.apply(x, weight, **kw)
        else:
            out = Conv2dGeneral.apply(x, weight, bias, **kw)
    if unbatched:
        out = reshape(out, out.shape[1:])
    return out
