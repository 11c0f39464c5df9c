"""Ops at PyTorch's edge cases: 0-d tensors and zero-size dimensions, gradients with
broadcasting in every position, NaN/inf values and gradients, division rounding modes."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import nnparts
import nnparts.functional as F
from nnparts import Tensor, gradcheck


def _run_both(torch, ours, theirs, arrays, rng, grad_of=None, seed_grad=True):
    """Forward and backward through both libraries on the same float64 arrays; returns
    (ours, theirs) outputs and gradients."""
    xs = [Tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    ts = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    y, ty = ours(*xs), theirs(*ts)
    assert y.shape == tuple(ty.shape), (y.shape, tuple(ty.shape))
    np.testing.assert_allclose(y.data, ty.detach().numpy(), atol=1e-12, rtol=0, equal_nan=True)
    if y.requires_grad:
        g = rng.standard_normal(y.shape) if seed_grad else np.ones(y.shape)
        y.backward(g)
        ty.backward(torch.tensor(g))
        for x, t in zip(xs, ts):
            if t.requires_grad:
                tg = np.zeros(t.shape) if t.grad is None else t.grad.numpy()
                ours_g = np.zeros(x.shape) if x.grad is None else x.grad
                assert ours_g.shape == tg.shape
                np.testing.assert_allclose(ours_g, tg, atol=1e-12, rtol=0, equal_nan=True)
    return y, ty


# ---------------------------------------------------------------------------------------------
# 0-d tensors and zero-size dimensions


def _cases(torch):
    T = torch.nn.functional
    w1, w3 = np.array([0.25]), np.array([0.1, 0.2, 0.3])
    return {
        "softmax": (lambda x: F.softmax(x), lambda x: torch.softmax(x, -1)),
        "softmax0": (lambda x: F.softmax(x, 0), lambda x: torch.softmax(x, 0)),
        "log_softmax": (lambda x: F.log_softmax(x), lambda x: torch.log_softmax(x, -1)),
        "prelu": (
            lambda x: F.prelu(x, Tensor(w1, requires_grad=True)),
            lambda x: T.prelu(x, torch.tensor(w1)),
        ),
        "flatten0": (lambda x: F.flatten(x, 0), lambda x: torch.flatten(x, 0)),
        "flatten_last": (lambda x: F.flatten(x, -1), lambda x: torch.flatten(x, -1)),
        "relu": (F.relu, torch.relu),
        "elu": (F.elu, T.elu),
        "sigmoid": (F.sigmoid, torch.sigmoid),
        "abs": (F.abs, torch.abs),
        "sum": (lambda x: x.sum(), lambda x: x.sum()),
        "sum0": (lambda x: F.sum(x, axis=0), lambda x: x.sum(0)),
        "concat_empty": (
            lambda x: F.concat([x, x[:0]], 0),
            lambda x: torch.cat([x, x[:0]], 0),
        ),
        "prelu3": (
            lambda x: F.prelu(x, Tensor(w3, requires_grad=True)),
            lambda x: T.prelu(x, torch.tensor(w3)),
        ),
    }


ZERO_D_AND_EMPTY = [
    ("softmax", ()),
    ("softmax", (0,)),
    ("softmax", (0, 4)),
    ("softmax", (3, 0)),
    ("softmax0", ()),
    ("softmax0", (0, 3)),
    ("log_softmax", ()),
    ("log_softmax", (2, 0, 4)),
    ("log_softmax", (3, 0)),
    ("prelu", ()),
    ("prelu", (0,)),
    ("prelu", (0, 3)),
    ("prelu3", (0, 3)),
    ("prelu3", (2, 3, 0)),
    ("flatten0", ()),
    ("flatten0", (0, 3, 4)),
    ("flatten_last", ()),
    ("relu", ()),
    ("relu", (0, 3)),
    ("elu", ()),
    ("sigmoid", ()),
    ("abs", ()),
    ("sum", ()),
    ("sum", (0, 3)),
    ("sum0", (0, 3)),
    ("concat_empty", (2, 3)),
    ("concat_empty", (0, 3)),
]


@pytest.mark.parametrize(("name", "shape"), ZERO_D_AND_EMPTY, ids=str)
def test_zero_d_and_empty_inputs_equal_torch(torch, rng, name, shape):
    ours, theirs = _cases(torch)[name]
    _run_both(torch, ours, theirs, [rng.standard_normal(shape)], rng)


@pytest.mark.parametrize("shape", [(0, 4, 3, 3), (0, 4, 5), (0, 4)], ids=str)
def test_group_norm_with_an_empty_batch_equals_torch(torch, rng, shape):
    w, b = rng.standard_normal(4), rng.standard_normal(4)
    _run_both(
        torch,
        lambda x, w, b: F.group_norm(x, 2, w, b),
        lambda x, w, b: torch.nn.functional.group_norm(x, 2, w, b),
        [rng.standard_normal(shape), w, b],
        rng,
    )


def test_empty_batches_through_layers_equal_torch(torch, rng):
    T = torch.nn.functional
    w, k = rng.standard_normal((3, 2)), rng.standard_normal((2, 3, 3, 3))
    cases = [
        (lambda x: F.flatten(x), lambda x: torch.flatten(x, 1), (0, 3, 4)),
        (lambda x: F.linear(x, Tensor(w)), lambda x: x @ torch.tensor(w), (0, 3)),
        (lambda x: F.conv2d(x, Tensor(k)), lambda x: T.conv2d(x, torch.tensor(k)), (0, 3, 5, 5)),
        (lambda x: F.max_pool2d(x, 2), lambda x: T.max_pool2d(x, 2), (0, 3, 4, 4)),
        (lambda x: F.avg_pool2d(x, 2), lambda x: T.avg_pool2d(x, 2), (0, 3, 4, 4)),
        (lambda x: F.instance_norm(x), lambda x: T.instance_norm(x), (0, 2, 3, 3)),
        (lambda x: F.layer_norm(x, (3,)), lambda x: T.layer_norm(x, (3,)), (0, 3)),
        (
            lambda x: F.cross_entropy(x, np.zeros(0, int), reduction="sum"),
            lambda x: T.cross_entropy(x, torch.zeros(0, dtype=torch.long), reduction="sum"),
            (0, 3),
        ),
    ]
    for ours, theirs, shape in cases:
        _run_both(torch, ours, theirs, [rng.standard_normal(shape)], rng)
    # the mean over nothing is NaN, as torch (and without a warning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = F.cross_entropy(Tensor(np.zeros((0, 3))), np.zeros(0, int))
    assert np.isnan(loss.item())


def test_concat_skips_legacy_empty_1d_inputs_as_torch(torch, rng):
    for axis in (0, 1):
        _run_both(
            torch,
            lambda a, b, c, axis=axis: F.concat([a, b, c], axis),
            lambda a, b, c, axis=axis: torch.cat([a, b, c], axis),
            [rng.standard_normal((2, 3)), rng.standard_normal(0), rng.standard_normal((2, 3))],
            rng,
        )


def test_zero_d_and_empty_errors_where_torch_errors(torch):
    with pytest.raises(ValueError, match=r"max of an empty tensor of shape \(0, 3\)"):
        F.max(Tensor(np.zeros((0, 3))))
    with pytest.raises(RuntimeError):
        torch.zeros(0, 3).max()
    assert F.max(Tensor(np.zeros((3, 0))), axis=0).shape == (0,)  # non-empty axis: fine
    with pytest.raises(ValueError, match=r"input 0 is 0-d and cannot be concatenated.*stack"):
        F.concat([Tensor(np.array(1.0)), Tensor(np.array(2.0))])
    with pytest.raises(ValueError, match=r"axis 2 is out of range for inputs of 2 dims"):
        F.concat([Tensor(np.zeros((2, 3)))], 2)
    with pytest.raises(ValueError, match=r"start_dim 1 is out of range.*shape \(5,\).*start_dim=0"):
        F.flatten(Tensor(np.zeros(5)))
    with pytest.raises(ValueError, match=r"softmax: axis 1 is out of range.*shape \(\)"):
        F.softmax(Tensor(np.array(1.0)), 1)
    with pytest.raises(ValueError, match=r"prelu weight of shape \(3,\) does not fit input \(0,\)"):
        F.prelu(Tensor(np.zeros(0)), Tensor(np.ones(3)))
    assert F.stack([Tensor(np.array(1.0)), Tensor(np.array(2.0))]).shape == (2,)


def test_zero_d_softmax_gradcheck():
    x = Tensor(np.array(0.3), requires_grad=True)
    assert gradcheck(lambda a: F.softmax(a) * 2.0 + F.log_softmax(a), [x])
    assert gradcheck(
        lambda a: F.prelu(a, Tensor(np.array([0.2]))), [Tensor(np.array(-0.7), requires_grad=True)]
    )


# ---------------------------------------------------------------------------------------------
# gradients with broadcasting in every position

BROADCASTS = [
    ((3, 4), (3, 4), (3, 4)),
    ((3, 4), (4,), (3, 1)),
    ((3, 1), (1, 4), ()),
    ((), (3, 4), (4,)),
    ((2, 1, 4), (3, 1), (1, 1, 1)),
    ((4,), (2, 3, 4), (2, 1, 1)),
]


@pytest.mark.parametrize("shapes", BROADCASTS, ids=str)
def test_clamp_with_tensor_bounds_broadcasts_gradients_like_torch(torch, rng, shapes):
    x = rng.standard_normal(shapes[0]) * 2
    lo = rng.standard_normal(shapes[1]) - 0.5
    hi = rng.standard_normal(shapes[2]) + 0.5  # some hi < lo: hi wins there, as torch

    def ref(a, b=None, c=None):  # torch's clamp backward needs x at the broadcast shape
        full = np.broadcast_shapes(*(tuple(t.shape) for t in (a, b, c) if t is not None))
        return torch.clamp(a.expand(full), b, c)

    _run_both(torch, F.clamp, ref, [x, lo, hi], rng)
    _run_both(torch, lambda a, b: F.clip(a, min=b), lambda a, b: ref(a, b), [x, lo], rng)
    _run_both(torch, lambda a, c: F.clip(a, max=c), lambda a, c: ref(a, None, c), [x, hi], rng)
    _run_both(torch, lambda a, c: a.clip(None, c), lambda a, c: ref(a, None, c), [x, hi], rng)
    # finite differences, with every element clear of the kinks (x == lo, x == hi, lo == hi)
    xb, lob, hib = np.broadcast_arrays(x, lo, hi)
    clear = min(np.abs(xb - lob).min(), np.abs(xb - hib).min(), np.abs(lob - hib).min())
    if clear > 1e-4:
        assert gradcheck(
            lambda a, b, c: F.clip(a, b, c),
            [Tensor(v, requires_grad=True) for v in (x, lo, hi)],
        )


def test_clamp_bounds_get_the_gradient_where_they_bind():
    x = Tensor(np.array([-2.0, 0.0, 2.0, 5.0]), requires_grad=True)
    lo = Tensor(np.array([-1.0]), requires_grad=True)
    hi = Tensor(np.array([1.0]), requires_grad=True)
    F.clip(x, lo, hi).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 0.0, 0.0]
    assert lo.grad.tolist() == [1.0]  # one element below the lower bound
    assert hi.grad.tolist() == [2.0]  # two above the upper one


@pytest.mark.parametrize("shapes", BROADCASTS, ids=str)
def test_where_maximum_minimum_pow_broadcast_in_every_position(torch, rng, shapes):
    a = rng.standard_normal(shapes[0])
    b = rng.standard_normal(shapes[1])
    cond = rng.standard_normal(shapes[2]) > 0
    full = np.broadcast_shapes(*shapes)
    _run_both(
        torch,
        lambda x, y: F.where(cond, x, y),
        lambda x, y: torch.where(torch.tensor(cond), x, y),
        [a, b],
        rng,
    )
    _run_both(torch, F.maximum, torch.maximum, [a, b], rng)
    _run_both(torch, F.minimum, torch.minimum, [a, b], rng)
    _run_both(torch, lambda x, y: x**y, lambda x, y: x**y, [np.abs(a) + 0.5, b], rng)
    assert np.broadcast_shapes(a.shape, b.shape, cond.shape) == full


# ---------------------------------------------------------------------------------------------
# NaN and inf: values and gradients as torch

SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -1.5, 2.0, -0.0])


@pytest.mark.parametrize(
    "name",
    ["relu", "elu", "leaky_relu", "abs", "sigmoid", "tanh", "sqrt", "log", "exp", "max", "min"],
)
def test_nan_and_inf_follow_torch(torch, rng, name):
    T = torch.nn.functional
    ours, theirs = {
        "relu": (F.relu, torch.relu),
        "elu": (F.elu, T.elu),
        "leaky_relu": (F.leaky_relu, T.leaky_relu),
        "abs": (F.abs, torch.abs),
        "sigmoid": (F.sigmoid, torch.sigmoid),
        "tanh": (F.tanh, torch.tanh),
        "sqrt": (F.sqrt, torch.sqrt),
        "log": (F.log, torch.log),
        "exp": (F.exp, torch.exp),
        "max": (lambda x: x.max(), lambda x: x.max()),
        "min": (lambda x: -((-x).max()), lambda x: x.min()),
    }[name]
    with np.errstate(all="ignore"):
        _run_both(torch, ours, theirs, [SPECIAL.copy()], rng, seed_grad=False)
        for v in SPECIAL:  # one at a time too (max over a single value, a 0-d tensor)
            _run_both(torch, ours, theirs, [np.array(v)], rng, seed_grad=False)


def test_max_over_an_axis_with_nan_follows_torch_amax(torch, rng):
    x = np.array([[np.nan, 1.0, 2.0], [0.0, 3.0, 3.0]])
    with np.errstate(all="ignore"):
        _run_both(torch, lambda a: F.max(a, axis=1), lambda a: torch.amax(a, 1), [x], rng)
        _run_both(torch, lambda a: F.max(a, axis=0), lambda a: torch.amax(a, 0), [x], rng)


def test_maximum_minimum_with_nan_and_ties_follow_torch(torch, rng):
    a = np.array([np.nan, 1.0, 2.0, 0.0, np.inf, -np.inf])
    b = np.array([1.0, np.nan, 2.0, 0.0, 1.0, -np.inf])
    _run_both(torch, F.maximum, torch.maximum, [a, b], rng, seed_grad=False)
    _run_both(torch, F.minimum, torch.minimum, [a, b], rng, seed_grad=False)


def test_pow_at_zero_and_at_inf_follows_torch(torch, rng):
    base = np.array([0.0, 0.0, 0.0, 0.0, -2.0, np.inf, np.inf, -np.inf, 2.0, 0.0, 4.0])
    expo = np.array([0.0, 2.0, -1.0, 0.5, 3.0, 2.0, -1.0, 3.0, np.inf, 1.0, -np.inf])
    with np.errstate(all="ignore"):
        _run_both(torch, lambda a, b: a**b, lambda a, b: a**b, [base, expo], rng, seed_grad=False)
        for e in (0.0, 2.0, -1.0, 0.5):  # a constant exponent
            _run_both(
                torch,
                lambda a, e=e: a**e,
                lambda a, e=e: a**e,
                [np.array([0.0, np.inf, 3.0, -2.0 if e.is_integer() else 2.0])],
                rng,
                seed_grad=False,
            )


def test_nan_conventions_are_documented():
    for fn in (F.relu, F.elu, F.abs, F.max, F.maximum, F.pow):
        op = {
            F.relu: nnparts.functional.activations.ReLU,
            F.elu: nnparts.functional.activations.ELU,
            F.abs: nnparts.functional.math.Abs,
            F.max: nnparts.functional.math.Max,
            F.maximum: nnparts.functional.math.Maximum,
            F.pow: nnparts.functional.math.Pow,
        }[fn]
        doc = op.__doc__.lower()
        assert "nan" in doc and ("torch" in doc or "pytorch" in doc), op.__name__


# ---------------------------------------------------------------------------------------------
# division rounding modes


@pytest.mark.parametrize("mode", [None, "trunc", "floor"])
def test_div_rounding_mode_equals_torch(torch, rng, mode):
    a = rng.uniform(-10, 10, size=(3, 4))
    b = rng.choice([-3.0, -1.5, 0.7, 2.0, 4.0], size=(4,))
    _run_both(
        torch,
        lambda x, y: F.div(x, y, rounding_mode=mode),
        lambda x, y: torch.div(x, y, rounding_mode=mode),
        [a, b],
        rng,
    )
    ai = np.array([7, -7, 7, -7, 0, 9])
    bi = np.array([2, 2, -2, -2, 3, -4])
    ours = F.div(Tensor(ai), Tensor(bi), rounding_mode=mode).data
    ref = torch.div(torch.tensor(ai), torch.tensor(bi), rounding_mode=mode).numpy()
    np.testing.assert_array_equal(ours, ref)
    assert ours.dtype == ref.dtype


def test_div_rounding_behaviour_and_messages():
    q = F.div(Tensor(np.array([-7.5, 7.5])), 2.0, rounding_mode="trunc").data
    assert q.tolist() == [-3.0, 3.0]
    q = F.div(Tensor(np.array([-7.5, 7.5])), 2.0, rounding_mode="floor").data
    assert q.tolist() == [-4.0, 3.0]
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    F.div(x, 3.0, rounding_mode="floor").sum().backward()
    assert x.grad.tolist() == [0.0, 0.0]  # piecewise constant
    with pytest.raises(ValueError, match=r"rounding_mode must be None, 'trunc' or 'floor'"):
        F.div(x, 2.0, rounding_mode="round")
    with pytest.raises(ValueError, match=r"integer division by zero"):
        F.div(Tensor(np.array([1, 2])), Tensor(np.array([1, 0])), rounding_mode="floor")
