"""Every op of nnparts.functional.math: finite differences, PyTorch equality, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nnparts import Tensor, gradcheck
from nnparts import functional as F


def t64(a, requires_grad=True):
    return Tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def check_against_torch(torch, ours, theirs, arrays, atol=1e-8, seed=0):
    """Forward and backward (with a random upstream gradient) equal to torch in float64."""
    mine = [t64(a) for a in arrays]
    ref = [torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True) for a in arrays]
    y, y_ref = ours(*mine), theirs(*ref)
    np.testing.assert_allclose(y.data, y_ref.detach().numpy(), atol=atol, rtol=0)
    assert y.shape == tuple(y_ref.shape)
    g = np.random.default_rng(seed).standard_normal(y.shape)
    y.backward(g)
    y_ref.backward(torch.tensor(g))
    for m, r in zip(mine, ref):
        assert m.grad.shape == m.shape
        np.testing.assert_allclose(m.grad, r.grad.numpy(), atol=atol, rtol=0)


def positive(rng, shape):
    return rng.uniform(0.5, 2.0, size=shape)


def normal(rng, shape):
    x = rng.standard_normal(shape)
    x[np.abs(x) < 0.05] += 0.2  # keep away from abs/clip kinks
    return x


def distinct(rng, shape):
    """Values without ties (max, maximum)."""
    return rng.permutation(np.prod(shape, dtype=int)).reshape(shape) * 0.1 + 0.01


def _unary_cases(torch):
    # name -> (ours, torch, input builder, shape)
    return {
        "neg": (lambda a: -a, lambda a: -a, normal, (3, 4)),
        "exp": (F.exp, torch.exp, normal, (3, 4)),
        "log": (F.log, torch.log, positive, (3, 4)),
        "sqrt": (F.sqrt, torch.sqrt, positive, (3, 4)),
        "abs": (F.abs, torch.abs, normal, (3, 4)),
        "clip": (
            lambda a: F.clip(a, -0.5, 0.7),
            lambda a: torch.clamp(a, -0.5, 0.7),
            normal,
            (4, 5),
        ),
        "clip_min": (
            lambda a: F.clip(a, min=0.1),
            lambda a: torch.clamp(a, min=0.1),
            normal,
            (4, 5),
        ),
        "pow_scalar": (lambda a: a**3, lambda a: a**3, normal, (3, 4)),
        "pow_half": (lambda a: a**0.5, lambda a: a**0.5, positive, (3, 4)),
        "rpow": (lambda a: 2.0**a, lambda a: 2.0**a, normal, (3, 4)),
        "rsub": (lambda a: 1.0 - a, lambda a: 1.0 - a, normal, (3,)),
        "rdiv": (lambda a: 1.0 / a, lambda a: 1.0 / a, positive, (3,)),
        "sum_all": (F.sum, torch.sum, normal, (2, 3, 4)),
        "sum_axis0": (lambda a: a.sum(axis=0), lambda a: a.sum(0), normal, (2, 3, 4)),
        "sum_axes_keep": (
            lambda a: a.sum(axis=(0, 2), keepdims=True),
            lambda a: a.sum((0, 2), keepdim=True),
            normal,
            (2, 3, 4),
        ),
        "mean_all": (F.mean, torch.mean, normal, (2, 3, 4)),
        "mean_neg_axis": (lambda a: a.mean(axis=-1), lambda a: a.mean(-1), normal, (2, 3, 4)),
        "mean_keep": (
            lambda a: a.mean(axis=1, keepdims=True),
            lambda a: a.mean(1, keepdim=True),
            normal,
            (2, 3, 4),
        ),
        "max_all": (F.max, torch.amax, distinct, (2, 3, 4)),
        "max_axis": (lambda a: a.max(axis=1), lambda a: torch.amax(a, 1), distinct, (2, 3, 4)),
        "max_axes_keep": (
            lambda a: a.max(axis=(0, 2), keepdims=True),
            lambda a: torch.amax(a, (0, 2), keepdim=True),
            distinct,
            (2, 3, 4),
        ),
        "reshape": (lambda a: a.reshape(4, 6), lambda a: a.reshape(4, 6), normal, (2, 3, 4)),
        "reshape_infer": (
            lambda a: a.reshape(-1, 2),
            lambda a: a.reshape(-1, 2),
            normal,
            (2, 3, 4),
        ),
        "transpose": (lambda a: a.T, lambda a: a.permute(2, 1, 0), normal, (2, 3, 4)),
        "transpose_axes": (
            lambda a: a.transpose(1, 0, 2),
            lambda a: a.permute(1, 0, 2),
            normal,
            (2, 3, 4),
        ),
        "transpose_negative_axes": (
            lambda a: a.transpose(0, -1, 1),
            lambda a: a.permute(0, -1, 1),
            normal,
            (2, 3, 4),
        ),
        "sum_axis_list": (
            lambda a: F.sum(a, axis=[0, 2]),
            lambda a: a.sum((0, 2)),
            normal,
            (2, 3, 4),
        ),
        "flatten": (F.flatten, lambda a: a.flatten(1), normal, (2, 3, 4)),
        "index_int": (lambda a: a[1], lambda a: a[1], normal, (3, 4)),
        "index_slice": (lambda a: a[:, 1:3], lambda a: a[:, 1:3], normal, (3, 4)),
        "index_step": (lambda a: a[::2, ::-1], lambda a: a[::2].flip(1), normal, (3, 4)),
        "index_fancy_repeat": (
            lambda a: a[np.array([0, 2, 0, 0])],
            lambda a: a[torch.tensor([0, 2, 0, 0])],
            normal,
            (3, 4),
        ),
        "index_pairs": (
            lambda a: a[np.array([0, 1, 1]), np.array([3, 0, 0])],
            lambda a: a[torch.tensor([0, 1, 1]), torch.tensor([3, 0, 0])],
            normal,
            (3, 4),
        ),
        "index_bool": (
            lambda a: a[np.array([True, False, True])],
            lambda a: a[torch.tensor([True, False, True])],
            normal,
            (3, 4),
        ),
        "index_none_ellipsis": (
            lambda a: a[None, ..., 1],
            lambda a: a[None, ..., 1],
            normal,
            (3, 4),
        ),
        "astype": (
            lambda a: a.astype(np.float32).astype(np.float64) * 1.0,
            lambda a: a.float().double() * 1.0,
            normal,
            (3,),
        ),
    }


def _binary_cases(torch):
    return {
        "add": (lambda a, b: a + b, lambda a, b: a + b, normal, normal),
        "sub": (lambda a, b: a - b, lambda a, b: a - b, normal, normal),
        "mul": (lambda a, b: a * b, lambda a, b: a * b, normal, normal),
        "div": (lambda a, b: a / b, lambda a, b: a / b, normal, positive),
        "pow": (lambda a, b: a**b, lambda a, b: a**b, positive, normal),
        "maximum": (F.maximum, torch.maximum, distinct, lambda r, s: distinct(r, s) + 0.05),
        "minimum": (F.minimum, torch.minimum, distinct, lambda r, s: distinct(r, s) + 0.05),
    }


UNARY = [
    "neg",
    "exp",
    "log",
    "sqrt",
    "abs",
    "clip",
    "clip_min",
    "pow_scalar",
    "pow_half",
    "rpow",
    "rsub",
    "rdiv",
    "sum_all",
    "sum_axis0",
    "sum_axes_keep",
    "mean_all",
    "mean_neg_axis",
    "mean_keep",
    "max_all",
    "max_axis",
    "max_axes_keep",
    "reshape",
    "reshape_infer",
    "transpose",
    "transpose_axes",
    "transpose_negative_axes",
    "sum_axis_list",
    "flatten",
    "index_int",
    "index_slice",
    "index_step",
    "index_fancy_repeat",
    "index_pairs",
    "index_bool",
    "index_none_ellipsis",
    "astype",
]
BINARY = ["add", "sub", "mul", "div", "pow", "maximum", "minimum"]


def test_every_case_is_run(torch):
    assert sorted(UNARY) == sorted(_unary_cases(torch))
    assert sorted(BINARY) == sorted(_binary_cases(torch))


@pytest.mark.parametrize("name", UNARY)
def test_unary_ops(torch, rng, name):
    ours, theirs, build, shape = _unary_cases(torch)[name]
    x = build(rng, shape)
    check_against_torch(torch, ours, theirs, [x])
    if name != "astype":  # float32 round trip: not differentiable to float64 precision
        assert gradcheck(ours, [t64(x)])


@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize(
    "shapes", [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 4), (3, 1)), ((), (2, 3))]
)
def test_binary_ops_with_broadcasting(torch, rng, name, shapes):
    ours, theirs, build_a, build_b = _binary_cases(torch)[name]
    a, b = build_a(rng, shapes[0]), build_b(rng, shapes[1])
    check_against_torch(torch, ours, theirs, [a, b])
    assert gradcheck(ours, [t64(a), t64(b)])


@settings(max_examples=12, deadline=None)
@given(
    shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3),
    name=st.sampled_from(["add", "sub", "mul", "div"]),
    seed=st.integers(0, 2**16),
)
def test_binary_ops_on_random_broadcast_shapes(torch, name, shapes, seed):
    rng = np.random.default_rng(seed)
    ours, theirs, build_a, build_b = _binary_cases(torch)[name]
    a, b = build_a(rng, shapes.input_shapes[0]), build_b(rng, shapes.input_shapes[1])
    check_against_torch(torch, ours, theirs, [a, b])
    assert gradcheck(ours, [t64(a), t64(b)])


@settings(max_examples=12, deadline=None)
@given(
    x=hnp.arrays(
        np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=4), elements=st.floats(-3, 3)
    ),
    data=st.data(),
)
def test_reductions_on_random_shapes(x, data):
    axis = data.draw(st.none() | st.integers(-x.ndim, x.ndim - 1))
    keepdims = data.draw(st.booleans())
    for fn in (F.sum, F.mean):
        assert gradcheck(lambda a, fn=fn: fn(a, axis=axis, keepdims=keepdims), [t64(x)])
        y = fn(t64(x), axis=axis, keepdims=keepdims)
        expected = (np.sum if fn is F.sum else np.mean)(x, axis=axis, keepdims=keepdims)
        np.testing.assert_allclose(y.data, expected)


MATMUL_SHAPES = [
    ((3, 4), (4, 5)),
    ((4,), (4, 5)),
    ((3, 4), (4,)),
    ((4,), (4,)),
    ((2, 3, 4), (4, 5)),
    ((2, 3, 4), (2, 4, 5)),
    ((3, 4), (2, 4, 5)),
    ((2, 1, 3, 4), (5, 4, 2)),
    ((2, 3, 4), (4,)),
]


@pytest.mark.parametrize("shapes", MATMUL_SHAPES)
def test_matmul(torch, rng, shapes):
    a, b = rng.standard_normal(shapes[0]), rng.standard_normal(shapes[1])
    check_against_torch(torch, lambda p, q: p @ q, torch.matmul, [a, b])
    assert gradcheck(F.matmul, [t64(a), t64(b)])


def test_matmul_with_constant_operand(rng):
    a, b = t64(rng.standard_normal((3, 4))), t64(rng.standard_normal((4, 2)), False)
    (a @ b).sum().backward()
    np.testing.assert_allclose(a.grad, np.ones((3, 2)) @ b.data.T)
    assert b.grad is None
    c = np.ones((5, 3))  # ndarray @ Tensor
    assert (c @ a).shape == (5, 4)


@pytest.mark.parametrize(
    "shapes, pattern",
    [
        (((3, 4), (5, 2)), r"\(3, 4\) @ \(5, 2\).*4 and 5"),
        (((4,), (3,)), r"\(4,\) @ \(3,\)"),
        (((2, 3, 4), (3, 4)), r"\(2, 3, 4\) @ \(3, 4\)"),
    ],
)
def test_matmul_shape_mismatch_names_shapes(shapes, pattern):
    with pytest.raises(ValueError, match=pattern):
        Tensor(np.zeros(shapes[0])) @ Tensor(np.zeros(shapes[1]))


def test_linear_shape_mismatch_names_shapes():
    with pytest.raises(ValueError, match=r"input \(2, 3\).*weight \(4, 5\)"):
        F.linear(Tensor(np.zeros((2, 3))), Tensor(np.zeros((4, 5))))
    with pytest.raises(ValueError, match=r"bias shape \(4,\).*\(5,\)"):
        F.linear(Tensor(np.zeros((2, 4))), Tensor(np.zeros((4, 5))), Tensor(np.zeros(4)))


def test_transpose_bad_axes():
    with pytest.raises(ValueError, match=r"\(0, 0, 1\).*\(2, 3, 4\)"):
        Tensor(np.zeros((2, 3, 4))).transpose(0, 0, 1)


def test_reshape_error_names_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\) into \(4,\)"):
        Tensor(np.zeros((2, 3))).reshape(4)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat_and_stack(torch, rng, axis):
    shapes = [(2, 3), (2, 3), (2, 3)]
    if axis == 0:
        shapes = [(1, 3), (2, 3), (4, 3)]
    arrays = [rng.standard_normal(s) for s in shapes]
    check_against_torch(
        torch, lambda *ts: F.concat(ts, axis=axis), lambda *ts: torch.cat(ts, dim=axis), arrays
    )
    assert gradcheck(lambda *ts: F.concat(ts, axis=axis), [t64(a) for a in arrays])
    same = [rng.standard_normal((2, 3)) for _ in range(3)]
    check_against_torch(
        torch, lambda *ts: F.stack(ts, axis=axis), lambda *ts: torch.stack(ts, dim=axis), same
    )
    assert gradcheck(lambda *ts: F.stack(ts, axis=axis), [t64(a) for a in same])


def test_concat_with_constant_input(rng):
    a, b = t64(rng.standard_normal((2, 2))), t64(rng.standard_normal((2, 2)), False)
    F.concat([a, b], axis=1).sum().backward()
    np.testing.assert_allclose(a.grad, 1.0)
    with pytest.raises(ValueError, match="at least one"):
        F.concat([])


def test_where(torch, rng):
    cond = rng.random((3, 4)) > 0.5
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((4,))
    check_against_torch(
        torch,
        lambda p, q: F.where(cond, p, q),
        lambda p, q: torch.where(torch.tensor(cond), p, q),
        [a, b],
    )
    assert gradcheck(lambda p, q: F.where(cond, p, q), [t64(a), t64(b)])


def test_ties_share_the_gradient(torch):
    x = t64([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]])
    x.max().backward()
    np.testing.assert_allclose(x.grad, [[0, 0.5, 0.5], [0, 0, 0]])
    a, b = t64([1.0, 2.0]), t64([1.0, 3.0])
    F.maximum(a, b).sum().backward()
    ar, br = (
        torch.tensor([1.0, 2.0], requires_grad=True),
        torch.tensor([1.0, 3.0], requires_grad=True),
    )
    torch.maximum(ar, br).sum().backward()
    np.testing.assert_allclose(a.grad, ar.grad.numpy())
    np.testing.assert_allclose(b.grad, br.grad.numpy())


def test_clip_passes_gradient_at_the_bounds_like_torch(torch):
    x = t64([-1.0, 0.0, 0.5, 1.0, 2.0])
    F.clip(x, 0.0, 1.0).sum().backward()
    xr = torch.tensor([-1.0, 0.0, 0.5, 1.0, 2.0], requires_grad=True)
    torch.clamp(xr, 0.0, 1.0).sum().backward()
    np.testing.assert_allclose(x.grad, xr.grad.numpy())


def test_float32_ops_stay_float32(rng):
    x = Tensor(rng.uniform(0.5, 1.5, (3, 4)).astype(np.float32), requires_grad=True)
    w = Tensor(rng.standard_normal((4, 2)).astype(np.float32), requires_grad=True)
    y = (((x @ w) ** 2 + 1).sqrt().exp().log() * 2 - 1).abs().mean(axis=0).sum()
    assert y.dtype == np.float32
    y.backward()
    assert x.grad.dtype == np.float32 and w.grad.dtype == np.float32
    assert F.linear(x, w).dtype == np.float32


def test_pow_zero_exponent_has_zero_gradient_at_zero(torch):
    x = t64([0.0, 2.0])
    (x**0).sum().backward()
    xr = torch.tensor([0.0, 2.0], requires_grad=True)
    (xr**0).sum().backward()
    np.testing.assert_array_equal(x.grad, xr.grad.numpy())
    e = t64([0.0, 2.0])
    (t64([0.0, 3.0], requires_grad=False) ** e).sum().backward()
    assert np.all(np.isfinite(e.grad))
