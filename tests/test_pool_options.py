"""Pooling options against PyTorch: dilation, ceil_mode, return_indices, count_include_pad,
divisor_override, adaptive average pooling to any size, unbatched (C, H, W) inputs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import nnparts
import nnparts.functional as F
from nnparts import gradcheck, nn
from nnparts.functional.pooling import AvgPool2d as FastAvg
from nnparts.functional.pooling import MaxPool2d as FastMax


def _compare(torch, ours, theirs, x, rng, indices=False):
    X = nnparts.Tensor(x, requires_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    try:
        ref = theirs(tx)
    except RuntimeError:  # torch refuses these arguments: so must we
        with pytest.raises(ValueError):
            ours(X)
        return False
    y = ours(X)
    if indices:
        (y, idx), (ref, ref_idx) = y, ref
        np.testing.assert_array_equal(idx.data, ref_idx.numpy())
        assert idx.data.dtype == np.int64
    assert y.shape == tuple(ref.shape)
    np.testing.assert_allclose(y.data, ref.detach().numpy(), atol=1e-13, rtol=0)
    g = rng.standard_normal(y.shape)
    y.backward(g)
    ref.backward(torch.tensor(g))
    np.testing.assert_allclose(X.grad, tx.grad.numpy(), atol=1e-13, rtol=0)
    return True


# PyTorch's OpInfo grid for max_pool2d (common_methods_invocations._TestParamsMaxPool2d)
MAX_GRID = list(
    itertools.product(
        [3, (3, 2)],  # kernel_size
        [2, None, (2, 1)],  # stride
        [True, False],  # ceil_mode
        [0, 1, (1, 1)],  # padding
        [1, (1, 2)],  # dilation
        [True, False],  # return_indices
    )
)
SHAPES = [(1, 2, 3, 6), (2, 2, 6, 6), (2, 3, 6)]  # (N, C, H, W) and unbatched (C, H, W)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_max_pool_opinfo_grid_equals_torch(torch, rng, shape):
    compared = 0
    for kernel, stride, ceil_mode, padding, dilation, return_indices in MAX_GRID:
        kw = dict(
            kernel_size=kernel,
            stride=stride,
            padding=padding,
            dilation=dilation,
            ceil_mode=ceil_mode,
            return_indices=return_indices,
        )
        x = rng.standard_normal(shape)
        compared += _compare(
            torch,
            lambda a, kw=kw: F.max_pool2d(a, **kw),
            lambda a, kw=kw: torch.nn.functional.max_pool2d(a, **kw),
            x,
            rng,
            indices=return_indices,
        )
    assert compared > len(MAX_GRID) // 3


AVG_GRID = list(
    itertools.product(
        [2, 3, (3, 2)],  # kernel_size
        [2, None, (2, 1)],  # stride
        [True, False],  # ceil_mode
        [0, 1],  # padding
        [True, False],  # count_include_pad
        [None, 5],  # divisor_override
    )
)


@pytest.mark.parametrize("shape", [(2, 2, 7, 6), (2, 5, 5)], ids=str)
def test_avg_pool_grid_equals_torch(torch, rng, shape):
    compared = 0
    for kernel, stride, ceil_mode, padding, include, override in AVG_GRID:
        kw = dict(
            kernel_size=kernel,
            stride=stride,
            padding=padding,
            ceil_mode=ceil_mode,
            count_include_pad=include,
            divisor_override=override,
        )
        x = rng.standard_normal(shape)
        compared += _compare(
            torch,
            lambda a, kw=kw: F.avg_pool2d(a, **kw),
            lambda a, kw=kw: torch.nn.functional.avg_pool2d(a, **kw),
            x,
            rng,
        )
    assert compared == len(AVG_GRID)


@pytest.mark.parametrize("size", [(3, 4), 5, 1, (4, None), (None, 2), (8, 9), (7, 6)], ids=str)
@pytest.mark.parametrize("shape", [(2, 3, 7, 6), (3, 7, 6)], ids=str)
def test_adaptive_avg_pool_equals_torch(torch, rng, size, shape):
    x = rng.standard_normal(shape)
    assert _compare(
        torch,
        lambda a: F.adaptive_avg_pool2d(a, size),
        lambda a: torch.nn.functional.adaptive_avg_pool2d(a, size),
        x,
        rng,
    )
    ours = nn.AdaptiveAvgPool2d(size)(nnparts.Tensor(x))
    ref = torch.nn.AdaptiveAvgPool2d(size)(torch.tensor(x))
    np.testing.assert_allclose(ours.data, ref.numpy(), atol=1e-13)


@pytest.mark.parametrize(
    "fn",
    [
        lambda a: F.max_pool2d(a, 3, stride=2, padding=1, dilation=(1, 2), ceil_mode=True),
        lambda a: F.max_pool2d(a, 2, return_indices=True)[0],
        lambda a: F.avg_pool2d(a, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
        lambda a: F.avg_pool2d(a, 2, divisor_override=3),
        lambda a: F.adaptive_avg_pool2d(a, (3, 4)),
        lambda a: F.max_pool2d(a[0], 2),  # unbatched
    ],
)
def test_pool_options_gradcheck(rng, fn):
    # distinct values, so the finite differences never cross a tie of the max
    x = rng.permutation(2 * 2 * 7 * 6).reshape(2, 2, 7, 6) / 7.0
    assert gradcheck(fn, [nnparts.Tensor(x, requires_grad=True)])


def test_default_options_take_the_tuned_path(rng):
    x = nnparts.Tensor(rng.standard_normal((2, 3, 6, 6)).astype(np.float32), requires_grad=True)
    assert F.max_pool2d(x, 2)._ctx[0] is FastMax
    assert F.max_pool2d(x, 2, dilation=1, ceil_mode=False)._ctx[0] is FastMax
    assert F.avg_pool2d(x, 3, 1, 1)._ctx[0] is FastAvg
    assert F.avg_pool2d(x, 2, count_include_pad=False)._ctx[0] is FastAvg  # no padding: same
    assert F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)._ctx[0] is not FastAvg
    assert F.max_pool2d(x, 2, ceil_mode=True).dtype == np.float32


def test_ceil_mode_keeps_the_last_partial_window():
    x = np.arange(25.0).reshape(1, 1, 5, 5)
    assert F.max_pool2d(x, 2).shape == (1, 1, 2, 2)
    y = F.max_pool2d(x, 2, ceil_mode=True).data
    assert y.shape == (1, 1, 3, 3)
    np.testing.assert_array_equal(y[0, 0, :, 2], [9.0, 19.0, 24.0])  # the lone last column
    a = F.avg_pool2d(x, 2, ceil_mode=True).data
    assert a[0, 0, 2, 2] == 24.0  # the 1x1 corner window averages one pixel


def test_indices_point_at_the_maxima_and_unpool_by_hand(rng):
    x = rng.standard_normal((2, 3, 6, 6))
    out, idx = F.max_pool2d(x, 2, return_indices=True)
    flat = x.reshape(2, 3, -1)
    np.testing.assert_array_equal(
        np.take_along_axis(flat, idx.data.reshape(2, 3, -1), axis=2).reshape(out.shape), out.data
    )
    out, idx = nn.MaxPool2d(3, stride=2, padding=1, return_indices=True)(nnparts.Tensor(x))
    assert idx.shape == out.shape and not idx.requires_grad


def test_count_include_pad_false_averages_only_real_pixels():
    ones = np.ones((1, 1, 4, 4))
    with_pad = F.avg_pool2d(ones, 3, stride=1, padding=1).data
    assert with_pad[0, 0, 0, 0] == pytest.approx(4 / 9)  # corner: 4 real pixels of 9
    real = F.avg_pool2d(ones, 3, stride=1, padding=1, count_include_pad=False).data
    np.testing.assert_allclose(real, 1.0, atol=1e-15)


def test_adaptive_pool_is_avg_pool_when_the_size_divides_and_global_at_one(rng):
    x = rng.standard_normal((2, 3, 8, 6))
    np.testing.assert_allclose(
        F.adaptive_avg_pool2d(x, (4, 3)).data, F.avg_pool2d(x, 2).data, atol=1e-14
    )
    np.testing.assert_allclose(
        F.adaptive_avg_pool2d(x, 1).data[:, :, 0, 0], F.global_avg_pool2d(x).data, atol=1e-14
    )
    up = F.adaptive_avg_pool2d(x, (16, 12)).data  # larger than the input: pixels repeated
    np.testing.assert_allclose(up[:, :, ::2, ::2], x, atol=1e-14)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("MaxPool2d(3, 2, 1, dilation=2, ceil_mode=True)", None),
        ("MaxPool2d(2, ceil_mode=True)", None),
        ("AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False)", None),
        ("AvgPool2d(2, divisor_override=2)", None),
    ],
)
def test_pool_modules_equal_torch(torch, rng, ours, theirs):
    mine = eval("nn." + ours)  # noqa: S307 - the same constructor call for both libraries
    ref = eval("torch.nn." + ours)  # noqa: S307
    for shape in ((2, 3, 9, 8), (3, 9, 8)):
        x = rng.standard_normal(shape)
        np.testing.assert_allclose(
            mine(nnparts.Tensor(x)).data, ref(torch.tensor(x)).numpy(), atol=1e-13
        )
    assert "ceil_mode=True" in repr(mine) or "divisor_override" in repr(mine)


def test_pool_option_messages():
    with pytest.raises(ValueError, match=r"4-D input \(N, C, H, W\) or one unbatched.*\(8, 8\)"):
        F.max_pool2d(np.zeros((8, 8)), 2, ceil_mode=True)
    with pytest.raises(ValueError, match=r"dilation must be >= 1"):
        F.max_pool2d(np.zeros((1, 1, 8, 8)), 2, dilation=0)
    with pytest.raises(ValueError, match=r"kernel \(3, 3\) \(dilation \(3, 3\)\) is larger"):
        F.max_pool2d(np.zeros((1, 1, 5, 5)), 3, dilation=3)
    with pytest.raises(ValueError, match=r"divisor_override must be an int >= 1, got 0"):
        F.avg_pool2d(np.zeros((1, 1, 4, 4)), 2, divisor_override=0)
    with pytest.raises(ValueError, match=r"output_size must be ints >= 1, got \(0, 2\)"):
        F.adaptive_avg_pool2d(np.zeros((1, 1, 4, 4)), (0, 2))
    with pytest.raises(ValueError, match=r"output_size must be an int or a pair"):
        F.adaptive_avg_pool2d(np.zeros((1, 1, 4, 4)), (1, 2, 3))
