"""max_pool2d, avg_pool2d, global_avg_pool2d and their modules."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nnparts
import nnparts.functional as F
from nnparts import nn

# (shape, kernel_size, stride, padding)
CASES = [
    ((2, 3, 8, 8), 2, None, 0),  # non-overlapping, the CNN case
    ((2, 3, 7, 9), 2, None, 0),  # odd sizes: last row/column unread
    ((2, 3, 7, 8), 2, None, 1),  # tiling windows over a padded input, one row unread
    ((2, 3, 7, 9), 3, 2, 1),  # overlapping with padding
    ((1, 2, 5, 6), (2, 3), (1, 2), (1, 1)),  # non-square kernel, stride and padding
    ((2, 2, 6, 6), 3, 1, 0),  # heavily overlapping
    ((1, 1, 4, 4), 4, None, 0),  # one window
]


def _check_against_torch(torch, ours_fn, torch_fn, x, k, s, p, g_rng):
    X = nnparts.Tensor(x, requires_grad=True)
    y = ours_fn(X, k, s, p)
    g = g_rng.standard_normal(y.shape)
    y.backward(g)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch_fn(tx, k, s, p)
    ty.backward(torch.tensor(g))
    assert y.shape == tuple(ty.shape)
    np.testing.assert_allclose(y.data, ty.detach().numpy(), atol=1e-8, rtol=0)
    np.testing.assert_allclose(X.grad, tx.grad.numpy(), atol=1e-8, rtol=0)
    return X, y


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("case", CASES)
def test_pool_matches_torch(torch, rng, kind, case):
    shape, k, s, p = case
    ours = F.max_pool2d if kind == "max" else F.avg_pool2d
    theirs = getattr(torch.nn.functional, f"{kind}_pool2d")
    _check_against_torch(torch, ours, theirs, rng.standard_normal(shape), k, s, p, rng)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_channels_last_input_keeps_layout_and_values(torch, rng, kind, ties):
    """A channels-last input, and an NCHW gradient (as a flatten before a linear layer returns
    it): the backward copies it to the output's layout first."""
    x = rng.standard_normal((2, 4, 6, 6))
    if ties:
        x = np.maximum(np.round(x), 0)  # flat windows, as after a ReLU
    x_cl = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    ours = F.max_pool2d if kind == "max" else F.avg_pool2d
    theirs = getattr(torch.nn.functional, f"{kind}_pool2d")
    X, y = _check_against_torch(torch, ours, theirs, x_cl, 2, None, 0, rng)
    assert y.data.transpose(0, 2, 3, 1).flags.c_contiguous
    assert X.grad.shape == x.shape
    _check_against_torch(torch, ours, theirs, x_cl, 3, 2, 1, rng)


@settings(max_examples=15, deadline=None)
@given(
    h=st.integers(2, 8), w=st.integers(2, 8), kh=st.integers(1, 3), kw=st.integers(1, 3),
    sh=st.integers(1, 3), sw=st.integers(1, 3), pad=st.booleans(), seed=st.integers(0, 10_000),
    ties=st.booleans(),
)  # fmt: skip
def test_max_pool_random_shapes_match_torch(h, w, kh, kw, sh, sw, pad, seed, ties):
    torch = pytest.importorskip("torch")
    kh, kw = min(kh, h), min(kw, w)
    padding = (kh // 2, kw // 2) if pad else (0, 0)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 2, h, w))
    if ties:
        x = np.round(x)  # many equal values in a window
    _check_against_torch(
        torch, F.max_pool2d, torch.nn.functional.max_pool2d, x, (kh, kw), (sh, sw), padding, rng
    )


def test_max_pool_ties_send_the_gradient_to_the_first_maximum(torch):
    """Documented tie rule: the first maximum in row-major window order gets all of dout
    (PyTorch's CPU behaviour), e.g. the all-zero windows that follow a ReLU."""
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 2:, 2:] = [[1.0, 3.0], [3.0, 3.0]]
    X = nnparts.Tensor(x, requires_grad=True)
    F.max_pool2d(X, 2).sum().backward()
    expected = np.zeros((4, 4))
    expected[0, 0] = expected[0, 2] = expected[2, 0] = 1.0  # first zero of each flat window
    expected[2, 3] = 1.0  # first of the three 3s
    np.testing.assert_array_equal(X.grad[0, 0], expected)
    tx = torch.tensor(x, requires_grad=True)
    torch.nn.functional.max_pool2d(tx, 2).sum().backward()
    np.testing.assert_array_equal(X.grad, tx.grad.numpy())
    # overlapping windows with ties: every window still routes exactly one unit of gradient
    X = nnparts.Tensor(np.zeros((1, 1, 5, 5)), requires_grad=True)
    F.max_pool2d(X, 3, stride=1).sum().backward()
    assert X.grad.sum() == 9 and X.grad[0, 0, 0, 0] == 1 and X.grad[0, 0, 2, 2] == 1


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_gradcheck(rng, kind):
    # distinct values far apart: the max is not at a kink for eps=1e-6
    x = rng.permutation(2 * 2 * 5 * 6).reshape(2, 2, 5, 6) * 0.1
    X = nnparts.Tensor(x.astype(np.float64), requires_grad=True)
    fn = F.max_pool2d if kind == "max" else F.avg_pool2d
    assert nnparts.gradcheck(lambda t: fn(t, 3, stride=2, padding=1), [X])
    assert nnparts.gradcheck(lambda t: fn(t, 2), [X])


def test_global_avg_pool_matches_torch_and_gradcheck(torch, rng):
    x = rng.standard_normal((2, 3, 4, 5))
    X = nnparts.Tensor(x, requires_grad=True)
    y = F.global_avg_pool2d(X)
    assert y.shape == (2, 3)
    g = rng.standard_normal(y.shape)
    y.backward(g)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.adaptive_avg_pool2d(tx, 1).flatten(1)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(y.data, ty.detach().numpy(), atol=1e-8)
    np.testing.assert_allclose(X.grad, tx.grad.numpy(), atol=1e-8)
    assert F.global_avg_pool2d(X, keepdims=True).shape == (2, 3, 1, 1)
    assert nnparts.gradcheck(lambda t: F.global_avg_pool2d(t, keepdims=True), [X])
    assert nn.GlobalAvgPool2d()(x).shape == (2, 3)


def test_pools_behave_as_their_course_definition():
    """Max pooling ignores where in a window the feature is (small-shift invariance); average
    pooling of a constant image is that constant except where zero padding is counted."""
    a = np.zeros((1, 1, 4, 4))
    b = np.zeros((1, 1, 4, 4))
    a[0, 0, 0, 0] = b[0, 0, 1, 1] = 5.0  # the same feature, shifted inside the window
    np.testing.assert_array_equal(F.max_pool2d(a, 2).data, F.max_pool2d(b, 2).data)
    ones = np.ones((1, 1, 4, 4))
    np.testing.assert_allclose(F.avg_pool2d(ones, 2).data, 1.0)
    corner = F.avg_pool2d(ones, 3, stride=1, padding=1).data[0, 0, 0, 0]
    assert corner == pytest.approx(4 / 9)  # count_include_pad=True


def test_pool_modules_default_stride_is_kernel():
    x = np.arange(2 * 6 * 6, dtype=np.float32).reshape(1, 2, 6, 6)
    assert nn.MaxPool2d(2)(x).shape == (1, 2, 3, 3)
    assert nn.AvgPool2d(3)(x).shape == (1, 2, 2, 2)
    assert nn.MaxPool2d(3, stride=1, padding=1)(x).shape == (1, 2, 6, 6)
    assert nn.MaxPool2d(2)(x).dtype == np.float32
    assert "stride=(2, 2)" in repr(nn.MaxPool2d(2))


def test_pool_bad_inputs_name_the_problem(rng):
    with pytest.raises(ValueError, match=r"\(8, 8\)"):  # (C, H, W) is unbatched; 2-D is not
        F.max_pool2d(rng.standard_normal((8, 8)), 2)
    with pytest.raises(ValueError, match=r"padding \(2, 2\).*at most half the kernel size \(3"):
        F.max_pool2d(rng.standard_normal((1, 1, 8, 8)), 3, padding=2)
    with pytest.raises(ValueError, match=r"kernel \(5, 5\) is larger than the padded input"):
        F.avg_pool2d(rng.standard_normal((1, 1, 4, 4)), 5)
    with pytest.raises(ValueError, match="kernel_size must be an int or a pair"):
        F.max_pool2d(rng.standard_normal((1, 1, 4, 4)), 2.5)
    with pytest.raises(ValueError, match=r"4-D input.*\(2, 3\)"):
        F.global_avg_pool2d(rng.standard_normal((2, 3)))


def test_max_pool_keeps_one_byte_per_output_not_its_input(torch, rng):
    """The max-pool saves, for each window, the kernel offset of its first maximum (a byte per
    output value), not its input: a convolution output that only feeds the pool is freed once
    the caller drops it, and the gradient still equals PyTorch's (ties included)."""
    import gc
    import weakref

    x = np.maximum(np.round(rng.standard_normal((2, 3, 6, 7)) * 2), 0)  # ties: flat windows
    X = nnparts.Tensor(x, requires_grad=True)
    h = X * 1.0  # a computed input that nothing but the pool would keep
    freed = weakref.ref(h.data)
    y = F.max_pool2d(h, 2)
    (arg,) = y._ctx[1].saved  # (op, its context, input nodes)
    assert arg.dtype == np.uint8 and arg.shape == y.shape
    del h
    gc.collect()
    assert freed() is None
    g = rng.standard_normal(y.shape)
    y.backward(g)
    tx = torch.tensor(x, requires_grad=True)
    torch.nn.functional.max_pool2d(tx * 1.0, 2).backward(torch.tensor(g))
    np.testing.assert_array_equal(X.grad, tx.grad.numpy())
