"""Normalization ops: batch, layer, group and instance normalization, and weight normalization.

All of them share one formula. For a set S of values (which set is what distinguishes them)::

    mu = mean_S(x)            var = mean_S((x - mu)^2)        (biased variance)
    x_hat = (x - mu) / sqrt(var + eps)
    y = gamma * x_hat + beta                                  (optional learnable affine map)

and one backward, the compact closed form (Ioffe & Szegedy 2015, written for m = |S|)::

    dx_hat = dy * gamma
    dx = (1/m) * inv_std * (m * dx_hat - sum_S(dx_hat) - x_hat * sum_S(dx_hat * x_hat))
    dgamma = sum(dy * x_hat)      dbeta = sum(dy)             (over everything but the feature)

==============  =============================  =================================  ===========
op              input                          S (statistics over)                gamma, beta
==============  =============================  =================================  ===========
batch_norm      (N, C) or (N, C, *spatial)     N * spatial, per channel           (C,)
layer_norm      (..., *normalized_shape)       the trailing normalized_shape      normalized_shape
group_norm      (N, C, *spatial)               (C/G) * spatial, per sample/group  (C,)
instance_norm   (N, C, *spatial)               spatial, per sample and channel    (C,)
==============  =============================  =================================  ===========

Papers: Ioffe & Szegedy 2015 (BatchNorm), Ba, Kiros & Hinton 2016 (LayerNorm), Ulyanov, Vedaldi
& Lempitsky 2016 (InstanceNorm), Wu & He 2018 (GroupNorm), Salimans & Kingma 2016 (WeightNorm).
Signatures follow ``torch.nn.functional``.
"""

from __future__ import annotations

import math

import numpy as np

from nnparts import threads
from nnparts.functional.layout import (
    RowTiles,
    constant,
    empty_channels_last,
    is_channels_last,
    row_dot,
    row_sum,
    to_channels_last,
)
from nnparts.functional.layout import rows as layout_rows
from nnparts.tensor import Function, Tensor

__all__ = ["batch_norm", "layer_norm", "group_norm", "instance_norm", "weight_norm"]


def _data(t):
    return t.data if isinstance(t, Tensor) else t


def _channel_view(x: np.ndarray) -> np.ndarray:
    """(N, C) stays (N, C); (N, C, *spatial) becomes the view (N, C, M) with M = prod(spatial)."""
    if x.ndim == 2:
        return x
    return x.reshape(x.shape[0], x.shape[1], -1)


def _channel_sum(a: np.ndarray) -> np.ndarray:
    """Per-channel sum of an (N, C) or (N, C, M) array: shape (C,).

    For (N, C, M) the contiguous M axis is summed first (a fast vectorized pass), then N.
    """
    if a.ndim == 2:
        return a.sum(axis=0)
    return a.sum(axis=2).sum(axis=0)


def _channel_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-channel ``sum(a * b)`` in one pass without a temporary (einsum)."""
    if a.ndim == 2:
        return np.einsum("nc,nc->c", a, b)
    return np.einsum("ncm,ncm->c", a, b)


def _bshape(a: np.ndarray, ndim: int) -> np.ndarray:
    """(C,) -> (C,) for 2-D input, (C, 1) for the (N, C, M) view."""
    return a if ndim == 2 else a.reshape(-1, 1)


# --------------------------------------------------------------------------------------------
# batch normalization
# --------------------------------------------------------------------------------------------
class BatchNormTrain(Function):
    """Training-mode batch normalization with batch statistics, per channel.

    Forward: ``xc = x - mu``, ``var = mean(xc^2)``, ``inv_std = 1/sqrt(var + eps)``,
    ``y = xc * (gamma * inv_std) + beta``: gamma and inv_std are folded into one per-channel
    scale so the output costs a single multiply-add pass.

    Saved for the backward: the input ``x`` itself (the graph holds it anyway, as the parent of
    this node), ``mu`` and ``inv_std``. ``xc`` lives in a per-thread scratch buffer
    (:func:`nnparts.threads.scratch`) and is recomputed in the backward (one subtraction pass):
    storing it would keep one more array of the input's size per BatchNorm layer until the
    backward, which put a ResNet's peak memory above PyTorch's.

    Backward, the closed form
    ``dx = (1/m) inv_std (m dx_hat - sum dx_hat - x_hat sum dx_hat x_hat)``
    with ``dx_hat = gamma dy``. Since gamma is constant per channel it comes out of the sums:
    ``sum dx_hat = gamma * dbeta`` and ``sum dx_hat x_hat = gamma * dgamma``, so::

        dx = k * (dy - dbeta/m - x_hat * dgamma/m),    k = gamma * inv_std

    computed as ``dy*k - xc*(k*inv_std*dgamma/m) - k*dbeta/m`` (three passes over the batch).
    """

    @staticmethod
    def forward(ctx, x, weight=None, bias=None, eps=1e-5, stats=None):
        if is_channels_last(x):
            return _batch_norm_rows_forward(ctx, x, weight, bias, eps, stats)
        xv = _channel_view(x)
        m = x.size // x.shape[1]
        C = x.shape[1]
        dt = np.result_type(x, weight) if weight is not None else x.dtype
        y = np.empty(xv.shape, dtype=dt)
        mean = np.empty(C, dtype=x.dtype)
        var = np.empty(C, dtype=dt)
        inv_std = np.empty(C, dtype=dt)

        def channels(s, e):  # a range of channels, on one thread of nnparts.threads
            xs = xv[:, s:e]
            xcs = threads.scratch("bn-centred", xs.size, dt).reshape(xs.shape)
            mean[s:e] = _channel_sum(xs) / m
            np.subtract(xs, _bshape(mean[s:e], xv.ndim), out=xcs)
            var[s:e] = _channel_dot(xcs, xcs) / m
            inv_std[s:e] = 1.0 / np.sqrt(var[s:e] + eps)
            scale = inv_std[s:e] if weight is None else weight[s:e] * inv_std[s:e]
            np.multiply(xcs, _bshape(scale.astype(dt, copy=False), xv.ndim), out=y[:, s:e])
            if bias is not None:
                y[:, s:e] += _bshape(bias[s:e], xv.ndim)

        threads.parallel_for(C, x.size, channels)
        if stats is not None:  # hand the batch statistics to the caller (running averages)
            stats["mean"], stats["var"] = mean, var
        ctx.save(xv, mean, inv_std, weight)
        ctx.m = m
        ctx.shape = x.shape
        ctx.rows = False
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, g):
        if ctx.rows:
            return _batch_norm_rows_backward(ctx, g)
        xv, mean, inv_std, weight = ctx.saved
        m = ctx.m
        gv = _channel_view(g)
        C = xv.shape[1]
        needs = ctx.needs_grad
        dt = np.result_type(g, inv_std)
        dbeta = np.empty(C, dtype=dt)
        dgamma = np.empty(C, dtype=dt)
        dx = np.empty(xv.shape, dtype=dt) if needs[0] else None

        def channels(s, e):  # a range of channels, on one thread of nnparts.threads
            gs, xs = gv[:, s:e], xv[:, s:e]
            xcs = threads.scratch("bn-centred", xs.size, dt).reshape(xs.shape)
            np.subtract(xs, _bshape(mean[s:e], xv.ndim), out=xcs)
            dbeta[s:e] = _channel_sum(gs)
            dgamma[s:e] = _channel_dot(gs, xcs) * inv_std[s:e]  # sum(dy * x_hat)
            if dx is None:
                return
            inv = inv_std[s:e]
            k = inv if weight is None else weight[s:e] * inv
            a = _bshape((k * inv * dgamma[s:e] / m).astype(dt, copy=False), xv.ndim)
            c = _bshape((k * dbeta[s:e] / m).astype(dt, copy=False), xv.ndim)
            out = dx[:, s:e]
            np.multiply(gs, _bshape(k.astype(dt, copy=False), xv.ndim), out=out)
            xcs *= a  # the scratch is free now: no temporary for xc * a
            out -= xcs
            out -= c

        threads.parallel_for(C, xv.size, channels)
        if dx is not None:
            dx = dx.reshape(ctx.shape)
        if weight is None:
            return (dx,)
        return dx, (dgamma if needs[1] else None), (dbeta if len(needs) > 2 and needs[2] else None)


class _Rows(RowTiles):
    """The ``(N*H*W, C)`` rows of channels-last arrays, in ranges of whole samples (one per
    thread), and their tiled ``(rows/k, k*C)`` views (:class:`~nnparts.functional.layout.RowTiles`).

    Why one range per thread, not cache-sized blocks: every NumPy call a pool thread makes takes
    Python's GIL, and while both threads make calls, each call waits for the other thread to let
    go of it. On the cnn config (Intel Xeon, KVM guest), BatchNorm's forward + backward took
    17.3 ms a step over the whole range of each thread, 21.4 with 4 MiB blocks, 35 with 128 KiB
    blocks, although on one thread, without the other's calls, 256 KiB blocks run the same passes
    3-4x faster than whole arrays.
    """

    def __init__(self, x: np.ndarray):
        N, C, H, W = x.shape
        super().__init__(H * W, C)

    def of(self, a: np.ndarray, s: int, e: int) -> np.ndarray:
        """Samples ``s..e`` of a channels-last ``a (N, C, H, W)`` as rows ``(n*H*W, C)``."""
        return layout_rows(a[s:e])


def _batch_norm_rows_forward(ctx, x, weight, bias, eps, stats):
    """:class:`BatchNormTrain` of a channels-last ``x``: the same formula on its ``(N*H*W, C)``
    rows, the threads over ranges of samples; ``y`` channels-last.

    The statistics take two passes over ``x``, no more, and keep float32's rounding out of them:
    each thread's range ``b`` sums its rows (a BLAS product with a vector of ones) for a first
    guess of the mean, centres its rows on it, and sums the centred values and their squares;
    the guess is corrected by the (small) sum of ``x - guess``, giving ``mu_b`` and the centred
    sum of squares ``M2_b = sum_b (x - mu_b)^2``, merged exactly (Chan et al.'s parallel
    formula, in float64). The sums of the centred values run in 512-row float32 blocks added in
    float64 (:func:`_row_sum`, :func:`_row_dot`; the backward's sums too)::

        mu = sum_b n_b mu_b / m,    m * var = sum_b M2_b + sum_b n_b (mu_b - mu)^2

    The output is ``y = x * alpha + beta`` with ``alpha = gamma * inv_std`` and ``beta = beta -
    mu * alpha`` per channel, two passes (PyTorch's CPU kernel computes the same form).
    """
    N, C, H, W = x.shape
    m = N * H * W
    dt = np.result_type(x, weight) if weight is not None else x.dtype
    rows = _Rows(x)

    def range_stats(s, e):
        xb = rows.of(x, s, e)
        n = xb.shape[0]
        ones = constant(1, n, dt)
        guess = (ones @ xb / n).astype(dt)  # a float32 sum: off by ~1e-6 x |x|
        xc = threads.scratch("bn-centred", xb.size, dt).reshape(xb.shape)
        np.subtract(rows.wide(xb), rows.tile(guess), out=rows.wide(xc))
        residual = row_sum(xc)  # sum(x - guess): small
        m2 = row_dot(xc, xc) - residual * residual / n
        return n, guess + residual / n, m2

    parts = threads.parallel_map(N, x.size, range_stats)
    counts = np.array([p[0] for p in parts], dtype=np.float64)[:, None]
    means = np.stack([p[1] for p in parts])
    m2 = np.stack([p[2] for p in parts])
    mean64 = (counts * means).sum(axis=0) / m
    var64 = (m2.sum(axis=0) + (counts * (means - mean64) ** 2).sum(axis=0)) / m
    mean, var = mean64.astype(x.dtype), var64.astype(dt)
    inv_std64 = 1.0 / np.sqrt(var64 + eps)
    alpha64 = inv_std64 if weight is None else weight * inv_std64
    beta64 = -mean64 * alpha64 + (0.0 if bias is None else bias)
    inv_std = inv_std64.astype(dt)
    alpha, beta = rows.tile(alpha64.astype(dt)), rows.tile(beta64.astype(dt))
    y = empty_channels_last(x.shape, dt)

    def normalize(s, e):
        yb = rows.wide(rows.of(y, s, e))
        np.multiply(rows.wide(rows.of(x, s, e)), alpha, out=yb)
        yb += beta

    threads.parallel_for(N, x.size, normalize)
    if stats is not None:
        stats["mean"], stats["var"] = mean, var
    ctx.save(x, mean, inv_std, weight)
    ctx.m, ctx.shape, ctx.rows = m, x.shape, True
    return y


def _batch_norm_rows_backward(ctx, g):
    """:class:`BatchNormTrain`'s closed-form backward on channels-last rows, the threads over
    ranges of samples; ``dx`` is channels-last.

    The centred input ``x - mu``, computed for ``dgamma``'s sum, is kept (one array the size of
    ``x``, for the time of this call) and reused for ``dx``."""
    x, mean, inv_std, weight = ctx.saved
    N, C, H, W = x.shape
    m = ctx.m
    needs = ctx.needs_grad
    dt = np.result_type(g, inv_std)
    g = to_channels_last(g)  # another layout (e.g. from a flatten): one copy; the passes read rows
    rows = _Rows(x)
    mean_t = rows.tile(mean.astype(dt, copy=False))
    centred = empty_channels_last(x.shape, dt)

    def sums(s, e):
        gb, xc = rows.of(g, s, e), rows.of(centred, s, e)
        np.subtract(rows.wide(rows.of(x, s, e)), mean_t, out=rows.wide(xc))
        return row_sum(gb), row_dot(gb, xc)

    parts = threads.parallel_map(N, x.size, sums)
    dbeta = np.stack([p[0] for p in parts]).sum(axis=0, dtype=np.float64).astype(dt)
    dgamma = np.stack([p[1] for p in parts]).sum(axis=0, dtype=np.float64)
    dgamma = (dgamma * inv_std).astype(dt)  # sum(dy * x_hat)
    dx = None
    if needs[0]:
        k = inv_std if weight is None else weight * inv_std
        a = rows.tile((k * inv_std * dgamma / m).astype(dt, copy=False))
        c = rows.tile((k * dbeta / m).astype(dt, copy=False))
        k = rows.tile(k.astype(dt, copy=False))
        dx = empty_channels_last(x.shape, dt)

        def input_grad(s, e):
            out, xc = rows.wide(rows.of(dx, s, e)), rows.wide(rows.of(centred, s, e))
            xc *= a
            xc += c
            np.multiply(rows.wide(rows.of(g, s, e)), k, out=out)
            out -= xc

        threads.parallel_for(N, x.size, input_grad)
    if weight is None:
        return (dx,)
    return dx, (dgamma if needs[1] else None), (dbeta if len(needs) > 2 and needs[2] else None)


class ChannelAffine(Function):
    """``y = x * scale + shift`` per channel, with ``scale = gamma / sqrt(running_var + eps)`` and
    ``shift = beta - running_mean * scale``: batch normalization in evaluation mode (the folded
    form). Backward: ``dx = dy * scale``, ``dgamma = sum(dy * x_hat)``, ``dbeta = sum(dy)`` with
    ``x_hat = (x - running_mean) * inv_std``.
    """

    @staticmethod
    def forward(ctx, x, weight=None, bias=None, running_mean=None, running_var=None, eps=1e-5):
        inv_std = 1.0 / np.sqrt(running_var + eps)
        scale = inv_std if weight is None else weight * inv_std
        shift = -running_mean * scale
        if bias is not None:
            shift = shift + bias
        dt = np.result_type(x, scale)
        ctx.save(x, scale, inv_std, running_mean)
        ctx.has_weight = weight is not None
        if is_channels_last(x):  # per-channel vectors broadcast along the (tiled) rows
            y = empty_channels_last(x.shape, dt)
            tiles = RowTiles(x.shape[2] * x.shape[3], x.shape[1])
            yw = tiles.wide(layout_rows(y))
            np.multiply(tiles.wide(layout_rows(x)), tiles.tile(scale.astype(dt)), out=yw)
            yw += tiles.tile(shift.astype(dt))
            return y
        xv = _channel_view(x)
        y = xv * _bshape(scale.astype(dt, copy=False), xv.ndim)
        y += _bshape(shift.astype(dt, copy=False), xv.ndim)
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, g):
        x, scale, inv_std, running_mean = ctx.saved
        gv = _channel_view(g)
        needs = ctx.needs_grad
        dx = (gv * _bshape(scale, gv.ndim)).reshape(x.shape) if needs[0] else None
        if not ctx.has_weight:
            return (dx,)
        xv = _channel_view(x)
        dbeta = _channel_sum(gv)
        dgamma = (_channel_dot(gv, xv) - running_mean * dbeta) * inv_std
        return dx, (dgamma if needs[1] else None), (dbeta if len(needs) > 2 and needs[2] else None)


def _check_channels(name, x, num, what="weight"):
    if x.ndim < 2:
        raise ValueError(
            f"{name} expects input of shape (N, C) or (N, C, *spatial), got shape {x.shape}"
        )
    if num is not None and x.shape[1] != num:
        raise ValueError(
            f"{name}: input has {x.shape[1]} channels (shape {x.shape}) but {what} has {num}; "
            f"expected input of shape (N, {num}, ...)"
        )


def batch_norm(
    x,
    running_mean=None,
    running_var=None,
    weight=None,
    bias=None,
    training=False,
    momentum=0.1,
    eps=1e-5,
    num_batches_tracked=None,
) -> Tensor:
    """Batch normalization of ``x`` (N, C) or (N, C, *spatial), statistics per channel.

    Training (or no running statistics given): normalize with the batch mean and *biased*
    variance over ``N * spatial`` values per channel, and update ``running_mean``/``running_var``
    (NumPy arrays, in place) as PyTorch does::

        running = (1 - momentum) * running + momentum * batch_stat

    with the *unbiased* batch variance (the paper's ``m/(m-1)``). ``momentum=None`` gives the
    cumulative average ``1/num_batches_tracked`` (pass the counter as a 0-d int array; it is
    incremented in place). Evaluation: ``y = gamma (x - running_mean)/sqrt(running_var + eps) +
    beta``, one multiply-add per element.
    """
    xd = _data(x)
    rm, rv = running_mean, running_var
    channels = (
        rm.shape[0] if rm is not None else (_data(weight).shape[0] if weight is not None else None)
    )
    _check_channels("batch_norm", xd, channels, "running_mean" if rm is not None else "weight")
    params = [p for p in (weight, bias) if p is not None]
    if weight is None and bias is not None:
        raise ValueError("batch_norm: bias without weight is not supported; pass both or neither")
    if training or rm is None:
        m = xd.size // xd.shape[1]
        if training and m <= 1:
            raise ValueError(
                f"batch_norm in training mode needs more than 1 value per channel, got input "
                f"shape {tuple(xd.shape)}: the statistics of a single sample are meaningless. "
                "Use a batch of at least 2, or call .eval() to use the running statistics"
            )
        stats = {}
        out = BatchNormTrain.apply(x, *params, eps=eps, stats=stats)
        if training and rm is not None:
            if num_batches_tracked is not None:
                num_batches_tracked += 1
            if momentum is None:
                factor = (
                    1.0 / float(num_batches_tracked) if num_batches_tracked is not None else 0.0
                )
            else:
                factor = momentum
            rm *= 1.0 - factor
            rm += factor * stats["mean"]
            rv *= 1.0 - factor
            rv += (factor * m / max(m - 1, 1)) * stats["var"]
        return out
    return ChannelAffine.apply(x, *params, running_mean=rm, running_var=rv, eps=eps)


# --------------------------------------------------------------------------------------------
# layer / group / instance normalization: statistics per row of a (R, K) view
# --------------------------------------------------------------------------------------------
class RowNorm(Function):
    """Normalize each row of the view ``x.reshape(rows)`` (statistics over the last axis), then
    apply ``gamma``/``beta`` on the view ``x.reshape(affine)`` broadcast as ``pshape``.

    LayerNorm: rows ``(B, D)``, affine view ``(B, D)``, gamma ``(D,)``.
    GroupNorm: rows ``(N*G, C/G*M)``, affine view ``(N, C, M)``, gamma ``(C, 1)``.
    InstanceNorm: GroupNorm with G = C.

    Backward per row (K values): ``dx = inv_std * (dx_hat - mean(dx_hat) - x_hat *
    mean(dx_hat * x_hat))`` with ``dx_hat = gamma * dy`` — the closed form above divided by K.
    """

    @staticmethod
    def forward(
        ctx,
        x,
        weight=None,
        bias=None,
        rows=None,
        affine=None,
        pshape=None,
        reduce_axes=None,
        eps=1e-5,
        stats=None,
    ):
        xr = x.reshape(rows)
        mean = xr.mean(axis=1, keepdims=True)
        xc = xr - mean
        var = np.einsum("rk,rk->r", xc, xc)[:, None] / xr.shape[1]
        inv_std = (1.0 / np.sqrt(var + eps)).astype(xc.dtype, copy=False)
        xhat = xc
        xhat *= inv_std
        if stats is not None:
            stats["mean"], stats["var"] = mean[:, 0], var[:, 0]
        ctx.save(xhat, inv_std, weight)
        ctx.shape, ctx.rows, ctx.affine = x.shape, rows, affine
        ctx.pshape, ctx.reduce_axes = pshape, reduce_axes
        if weight is None:
            return xhat.reshape(x.shape).copy()
        y = xhat.reshape(affine) * weight.reshape(pshape)
        if bias is not None:
            y += bias.reshape(pshape)
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, g):
        xhat, inv_std, weight = ctx.saved
        needs = ctx.needs_grad
        dgamma = dbeta = None
        if weight is not None:
            ga = g.reshape(ctx.affine)
            xa = xhat.reshape(ctx.affine)
            if needs[1]:
                dgamma = (ga * xa).sum(axis=ctx.reduce_axes).reshape(weight.shape)
            if len(needs) > 2 and needs[2]:
                dbeta = ga.sum(axis=ctx.reduce_axes).reshape(weight.shape)
            dxhat = (ga * weight.reshape(ctx.pshape)).reshape(ctx.rows)
        else:
            dxhat = g.reshape(ctx.rows)
        dx = None
        if needs[0]:
            k = xhat.shape[1]
            mean_d = dxhat.mean(axis=1, keepdims=True)
            mean_dx = np.einsum("rk,rk->r", dxhat, xhat)[:, None] / k
            dx = dxhat - mean_d
            dx -= xhat * mean_dx
            dx *= inv_std
            dx = dx.reshape(ctx.shape)
        if weight is None:
            return (dx,)
        return dx, dgamma, dbeta


def _affine_params(weight, bias, name):
    if weight is None and bias is not None:
        raise ValueError(f"{name}: bias without weight is not supported; pass both or neither")
    return [p for p in (weight, bias) if p is not None]


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5) -> Tensor:
    """Layer normalization over the trailing ``normalized_shape`` dims of each sample
    (Ba et al. 2016): per-sample statistics, so it works at batch size 1 and is the same in
    training and evaluation. ``weight``/``bias`` have shape ``normalized_shape``.
    """
    xd = _data(x)
    if isinstance(normalized_shape, (int, np.integer)):
        normalized_shape = (int(normalized_shape),)
    normalized_shape = tuple(int(s) for s in normalized_shape)
    nd = len(normalized_shape)
    dims = ", ".join(map(str, normalized_shape))
    if nd == 0 or xd.ndim < nd or tuple(xd.shape[xd.ndim - nd :]) != normalized_shape:
        raise ValueError(
            f"layer_norm: input shape {tuple(xd.shape)} does not end with normalized_shape "
            f"{normalized_shape}; expected input of shape (..., {dims})"
        )
    for p, pname in ((weight, "weight"), (bias, "bias")):
        if p is not None and tuple(_data(p).shape) != normalized_shape:
            raise ValueError(
                f"layer_norm: {pname} shape {tuple(_data(p).shape)} must equal normalized_shape "
                f"{normalized_shape}"
            )
    d = math.prod(normalized_shape)
    rows = (xd.size // d, d)
    return RowNorm.apply(
        x,
        *_affine_params(weight, bias, "layer_norm"),
        rows=rows,
        affine=rows,
        pshape=(d,),
        reduce_axes=(0,),
        eps=eps,
    )


def _group_rownorm(x, xd, groups, weight, bias, eps, name, stats=None):
    n, c = xd.shape[0], xd.shape[1]
    for p, pname in ((weight, "weight"), (bias, "bias")):
        if p is not None and tuple(_data(p).shape) != (c,):
            raise ValueError(
                f"{name}: {pname} shape {tuple(_data(p).shape)} does not match the input's "
                f"{c} channels (input shape {tuple(xd.shape)}); expected ({c},)"
            )
    spatial = math.prod(xd.shape[2:])  # not size // (n * c): an empty batch has n = 0
    rows = (n * groups, c // groups * spatial)
    affine = (n, c, spatial)
    return RowNorm.apply(
        x,
        *_affine_params(weight, bias, name),
        rows=rows,
        affine=affine,
        pshape=(c, 1),
        reduce_axes=(0, 2),
        eps=eps,
        stats=stats,
    )


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5) -> Tensor:
    """Group normalization (Wu & He 2018): the C channels of each sample are split into
    ``num_groups`` groups of C/G consecutive channels; statistics per sample and group over
    (C/G) * spatial values. ``weight``/``bias`` are per channel ``(C,)``. G = 1 is LayerNorm over
    (C, H, W); G = C is InstanceNorm.
    """
    xd = _data(x)
    _check_channels("group_norm", xd, None)
    c = xd.shape[1]
    if num_groups <= 0 or c % num_groups:
        raise ValueError(
            f"group_norm: num_channels={c} is not divisible by num_groups={num_groups}; "
            "num_groups must be a positive divisor of the channel count"
        )
    return _group_rownorm(x, xd, int(num_groups), weight, bias, eps, "group_norm")


def instance_norm(
    x,
    running_mean=None,
    running_var=None,
    weight=None,
    bias=None,
    use_input_stats=True,
    momentum=0.1,
    eps=1e-5,
) -> Tensor:
    """Instance normalization (Ulyanov et al. 2016): statistics per sample and channel over the
    spatial positions of ``x`` (N, C, *spatial). With ``use_input_stats`` (training, or no
    running statistics) the instance statistics are used and, if running buffers are given, they
    are updated in place with the batch-averaged instance mean and unbiased variance (as PyTorch);
    otherwise the running statistics are applied as in ``batch_norm``'s evaluation mode.
    """
    xd = _data(x)
    channels = running_mean.shape[0] if running_mean is not None else None
    _check_channels("instance_norm", xd, channels, "running_mean")
    if xd.ndim < 3:
        raise ValueError(
            f"instance_norm expects input (N, C, *spatial) with at least one spatial dim, got "
            f"shape {tuple(xd.shape)}"
        )
    if not use_input_stats:
        if running_mean is None or running_var is None:
            raise ValueError("instance_norm: use_input_stats=False needs running_mean/running_var")
        return ChannelAffine.apply(
            x,
            *_affine_params(weight, bias, "instance_norm"),
            running_mean=running_mean,
            running_var=running_var,
            eps=eps,
        )
    stats = {} if running_mean is not None else None
    out = _group_rownorm(x, xd, xd.shape[1], weight, bias, eps, "instance_norm", stats)
    if stats is not None:
        n, c = xd.shape[0], xd.shape[1]
        m = math.prod(xd.shape[2:])
        mean = stats["mean"].reshape(n, c).mean(axis=0)
        var = stats["var"].reshape(n, c).mean(axis=0) * (m / max(m - 1, 1))
        running_mean *= 1.0 - momentum
        running_mean += momentum * mean
        running_var *= 1.0 - momentum
        running_var += momentum * var
    return out


# --------------------------------------------------------------------------------------------
# weight normalization
# --------------------------------------------------------------------------------------------
class WeightNormFn(Function):
    """``w = g * v / ||v||`` with the norm over every axis but the output-unit axis
    (Salimans & Kingma 2016). Backward (paper eq. 3), with ``s = sum(dw * v)``::

        dg = s / ||v||        dv = (g / ||v||) * dw - (g * s / ||v||^3) * v
    """

    @staticmethod
    def forward(ctx, g, v, axes=()):
        norm = np.sqrt(np.sum(v * v, axis=axes, keepdims=True))
        w = v * (g / norm)
        ctx.save(g, v, norm)
        ctx.axes = axes
        return w

    @staticmethod
    def backward(ctx, dw):
        g, v, norm = ctx.saved
        s = np.sum(dw * v, axis=ctx.axes, keepdims=True)
        dg = s / norm if ctx.needs_grad[0] else None
        dv = None
        if ctx.needs_grad[1]:
            dv = dw * (g / norm) - v * (g * s / norm**3)
        return dg, dv


def weight_norm(g, v, dim=0) -> Tensor:
    """``g * v / ||v||`` with the norm taken over every axis except ``dim`` (the output unit).

    nnparts layouts: Linear weight (in, out) -> ``dim=1`` (one g per column, shape (1, out));
    Conv2d weight (out, in, kh, kw) -> ``dim=0`` (g of shape (out, 1, 1, 1)).
    """
    vd = _data(v)
    if dim is None:
        axes = tuple(range(vd.ndim))
    else:
        dim = dim % vd.ndim
        axes = tuple(a for a in range(vd.ndim) if a != dim)
    gshape = tuple(1 if a in axes else s for a, s in enumerate(vd.shape))
    if tuple(_data(g).shape) != gshape:
        raise ValueError(
            f"weight_norm: g has shape {tuple(_data(g).shape)} but v {tuple(vd.shape)} with "
            f"dim={dim} needs g of shape {gshape}"
        )
    return WeightNormFn.apply(g, v, axes=axes)
