"""Activations: finite differences, PyTorch equality, behavior, stability."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nnparts
from nnparts import Tensor, gradcheck, nn
from nnparts import functional as F


def t64(a, requires_grad=True):
    return Tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def away_from_kinks(rng, shape, margin=1e-2):
    x = rng.standard_normal(shape)
    x[np.abs(x) < margin] += 3 * margin
    return x


# name -> (nnparts fn of tensors, torch fn of tensors, list of input builders)
def _cases(torch):
    tf = torch.nn.functional
    return {
        "identity": (F.identity, lambda x: x * 1),
        "sigmoid": (F.sigmoid, torch.sigmoid),
        "tanh": (F.tanh, torch.tanh),
        "relu": (F.relu, tf.relu),
        "leaky_relu": (F.leaky_relu, tf.leaky_relu),
        "leaky_relu_0.2": (
            lambda x: F.leaky_relu(x, negative_slope=0.2),
            lambda x: tf.leaky_relu(x, 0.2),
        ),
        "elu": (F.elu, tf.elu),
        "elu_0.5": (lambda x: F.elu(x, alpha=0.5), lambda x: tf.elu(x, alpha=0.5)),
        "silu": (F.silu, tf.silu),
        "swish_1.7": (lambda x: F.swish(x, 1.7), lambda x: x * torch.sigmoid(1.7 * x)),
        "softsign": (F.softsign, tf.softsign),
        "softmax": (F.softmax, lambda x: torch.softmax(x, -1)),
        "softmax_axis0": (lambda x: F.softmax(x, axis=0), lambda x: torch.softmax(x, 0)),
        "log_softmax": (F.log_softmax, lambda x: torch.log_softmax(x, -1)),
        "log_softmax_axis0": (
            lambda x: F.log_softmax(x, axis=0),
            lambda x: torch.log_softmax(x, 0),
        ),
        "maxout_3": (
            lambda x: F.maxout(x, 3),
            lambda x: x.reshape(x.shape[:-1] + (x.shape[-1] // 3, 3)).max(-1).values,
        ),
    }


UNARY = [
    "identity",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "leaky_relu_0.2",
    "elu",
    "elu_0.5",
    "silu",
    "swish_1.7",
    "softsign",
    "softmax",
    "softmax_axis0",
    "log_softmax",
    "log_softmax_axis0",
    "maxout_3",
]


def _compare_with_torch(torch, ours, theirs, arrays, atol=1e-8):
    mine = [t64(a) for a in arrays]
    ref = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    y, y_ref = ours(*mine), theirs(*ref)
    np.testing.assert_allclose(y.data, y_ref.detach().numpy(), atol=atol, rtol=0)
    g = np.random.default_rng(7).standard_normal(y.shape)
    y.backward(g)
    y_ref.backward(torch.tensor(g))
    for m, r in zip(mine, ref):
        np.testing.assert_allclose(m.grad, r.grad.numpy(), atol=atol, rtol=0)


def test_every_case_is_run(torch):
    assert sorted(UNARY) == sorted(_cases(torch))


@pytest.mark.parametrize("name", UNARY)
def test_unary_matches_torch(torch, rng, name):
    ours, theirs = _cases(torch)[name]
    _compare_with_torch(torch, ours, theirs, [away_from_kinks(rng, (5, 6)) * 2])


@pytest.mark.parametrize("name", UNARY)
def test_unary_gradcheck(torch, rng, name):
    ours, _ = _cases(torch)[name]
    assert gradcheck(ours, [t64(away_from_kinks(rng, (3, 6)))])


@pytest.mark.parametrize("shape", [(7,), (4, 3), (2, 3, 4, 5)])
def test_prelu_matches_torch_and_gradcheck(torch, rng, shape):
    channels = shape[1] if len(shape) >= 2 else 1
    x = away_from_kinks(rng, shape)
    for wsize in {1, channels}:
        w = rng.uniform(0.05, 0.5, size=wsize)
        _compare_with_torch(torch, F.prelu, torch.nn.functional.prelu, [x, w])
        assert gradcheck(F.prelu, [t64(x), t64(w)])


@settings(max_examples=15, deadline=None)
@given(
    name=st.sampled_from(UNARY),
    shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4),
    seed=st.integers(0, 2**16),
)
def test_gradcheck_on_random_shapes(torch, name, shape, seed):
    if name.startswith("maxout"):
        shape = shape[:-1] + (3 * shape[-1],)
    if name.endswith("axis0") and len(shape) < 2:
        shape = (2,) + shape
    ours, theirs = _cases(torch)[name]
    x = away_from_kinks(np.random.default_rng(seed), shape)
    assert gradcheck(ours, [t64(x)])
    _compare_with_torch(torch, ours, theirs, [x])


def test_prelu_bad_weight_names_shapes():
    with pytest.raises(ValueError, match=r"\(5,\).*\(2, 3\).*\(3,\)"):
        F.prelu(Tensor(np.ones((2, 3))), Tensor(np.ones(5)))


def test_swish_learnable_beta_gradcheck_and_torch(torch, rng):
    x = away_from_kinks(rng, (4, 5))
    beta = np.array(0.8)
    _compare_with_torch(torch, F.swish, lambda x, b: x * torch.sigmoid(b * x), [x, beta])
    assert gradcheck(F.swish, [t64(x), t64(beta)])
    per_unit = rng.uniform(0.5, 2.0, size=5)  # one beta per feature, summed over the batch
    assert gradcheck(F.swish, [t64(x), t64(per_unit)])


def _soft_exp_torch(torch):
    def f(x, a):
        av = float(a.detach())
        if av < 0:
            return -torch.log(1 - a * (x + a)) / a
        if av == 0:
            return x + 0 * a
        return (torch.exp(a * x) - 1) / a + a

    return f


@pytest.mark.parametrize("alpha", [-0.3, 0.0, 0.4])
def test_soft_exponential_three_branches(torch, rng, alpha):
    x = rng.uniform(-1.0, 1.0, size=(3, 4))
    a = np.array(alpha)
    assert gradcheck(F.soft_exponential, [t64(x), t64(a)])
    if alpha != 0.0:  # the alpha = 0 branch's d/dalpha is a limit torch cannot see
        _compare_with_torch(torch, F.soft_exponential, _soft_exp_torch(torch), [x, a])
    else:
        xs = t64(x)
        y = F.soft_exponential(xs, t64(a))
        np.testing.assert_array_equal(y.data, x)  # the identity


def test_soft_exponential_alpha_zero_gradient_is_the_limit(rng):
    x = rng.uniform(-1.0, 1.0, size=6)
    grads = []
    for alpha in (-1e-6, 0.0, 1e-6):
        a = t64(np.array(alpha))
        F.soft_exponential(t64(x, requires_grad=False), a).sum().backward()
        grads.append(a.grad)
    np.testing.assert_allclose(grads[1], np.sum(1 + x**2 / 2), rtol=1e-9)
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-5)
    np.testing.assert_allclose(grads[2], grads[1], rtol=1e-5)


def test_soft_exponential_interpolates_log_identity_exp(rng):
    x = rng.uniform(0.1, 2.0, size=8)
    np.testing.assert_allclose(F.soft_exponential(t64(x), -1.0).data, np.log(x), rtol=1e-12)
    np.testing.assert_allclose(F.soft_exponential(t64(x), 0.0).data, x)
    np.testing.assert_allclose(F.soft_exponential(t64(x), 1.0).data, np.exp(x), rtol=1e-12)


def test_soft_exponential_mixed_alpha_per_unit(rng):
    x = rng.uniform(-0.5, 0.5, size=(4, 3))
    alpha = np.array([-0.2, 0.0, 0.3])
    assert gradcheck(F.soft_exponential, [t64(x), t64(alpha)])


def test_soft_exponential_outside_domain_is_value_error():
    with pytest.raises(ValueError, match="1/alpha - alpha"):
        F.soft_exponential(t64(np.array([-5.0])), -1.0)


def test_step_forward_and_zero_gradient(rng):
    x = t64(away_from_kinks(rng, (3, 4)))
    y = F.step(x)
    np.testing.assert_array_equal(y.data, (x.data > 0).astype(np.float64))
    (y * 3.0).sum().backward()
    np.testing.assert_array_equal(x.grad, np.zeros_like(x.data))
    assert F.step(Tensor([0.0])).data[0] == 0.0


def test_step_network_cannot_learn_but_sigmoid_can(rng):
    """The point of the step's zero gradient: gradient descent gets no signal through it."""
    x = rng.standard_normal((16, 2))
    w_step, w_sig = t64(rng.standard_normal((2, 1))), t64(rng.standard_normal((2, 1)))
    F.step(t64(x, False) @ w_step).sum().backward()
    F.sigmoid(t64(x, False) @ w_sig).sum().backward()
    assert np.all(w_step.grad == 0)
    assert np.abs(w_sig.grad).sum() > 1e-3


def test_maxout_layout_and_gradient_to_winner():
    x = t64(np.array([[1.0, 5.0, 2.0, -1.0, -3.0, -2.0]]))
    y = F.maxout(x, 3)  # units take features [0:3] and [3:6]
    np.testing.assert_array_equal(y.data, [[5.0, -1.0]])
    y.backward(np.array([[2.0, 3.0]]))
    np.testing.assert_array_equal(x.grad, [[0, 2.0, 0, 3.0, 0, 0]])
    with pytest.raises(ValueError, match=r"pieces=4.*\(1, 6\)"):
        F.maxout(x, 4)


@pytest.mark.parametrize("big", [1e4, -1e4])
def test_stability_at_1e4(big):
    x = t64(np.array([[big, 0.0, -big, 1.0], [big, big, 2.0, -3.0]]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", divide="raise", invalid="raise"):
            for fn in (F.sigmoid, F.softmax, F.log_softmax, F.tanh, F.elu, F.silu):
                x.grad = None
                y = fn(x)
                y.backward(np.ones_like(y.data))
                assert np.all(np.isfinite(y.data)), fn
                assert np.all(np.isfinite(x.grad)), fn
            for dtype in (np.float32, np.float64):
                s = F.sigmoid(Tensor(np.array([big, -big], dtype=dtype)))
                assert s.dtype == dtype
                np.testing.assert_array_equal(s.data, [1.0, 0.0] if big > 0 else [0.0, 1.0])
    expected = [1, 0, 0, 0] if big > 0 else [0, 0, 1, 0]
    np.testing.assert_allclose(F.softmax(x).data[0], expected, atol=1e-12)
    np.testing.assert_allclose(F.log_softmax(x).data[0, 2 if big > 0 else 0], -2 * abs(big))


def test_softmax_rows_are_distributions_and_shift_invariant(rng):
    x = rng.standard_normal((5, 7))
    p = F.softmax(t64(x)).data
    np.testing.assert_allclose(p.sum(-1), 1.0)
    assert np.all(p > 0)
    np.testing.assert_allclose(F.softmax(t64(x + 100.0)).data, p, atol=1e-14)
    np.testing.assert_allclose(np.exp(F.log_softmax(t64(x)).data), p, atol=1e-14)


def test_float32_stays_float32(rng):
    x = Tensor(rng.standard_normal((3, 4)).astype(np.float32), requires_grad=True)
    for fn in (
        F.sigmoid,
        F.tanh,
        F.relu,
        F.leaky_relu,
        F.elu,
        F.silu,
        F.softsign,
        F.softmax,
        F.log_softmax,
        F.step,
        lambda v: F.swish(v, 2.0),
        lambda v: F.maxout(v, 2),
        lambda v: F.soft_exponential(v, 0.5),
        lambda v: F.prelu(v, Tensor([0.25])),
    ):
        y = fn(x)
        assert y.dtype == np.float32, fn
        x.grad = None
        y.sum().backward()
        assert x.grad.dtype == np.float32, fn


# -- modules -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "module, fn",
    [
        (nn.Identity(), F.identity),
        (nn.Step(), F.step),
        (nn.Sigmoid(), F.sigmoid),
        (nn.Tanh(), F.tanh),
        (nn.ReLU(), F.relu),
        (nn.LeakyReLU(0.1), lambda x: F.leaky_relu(x, 0.1)),
        (nn.ELU(0.7), lambda x: F.elu(x, 0.7)),
        (nn.Swish(1.5), lambda x: F.swish(x, 1.5)),
        (nn.SiLU(), F.silu),
        (nn.Softsign(), F.softsign),
        (nn.SoftExponential(0.2, learnable=False), lambda x: F.soft_exponential(x, 0.2)),
        (nn.Softmax(), F.softmax),
        (nn.LogSoftmax(axis=0), lambda x: F.log_softmax(x, axis=0)),
    ],
)
def test_modules_match_functional(rng, module, fn):
    x = Tensor(rng.standard_normal((3, 4)).astype(np.float32))
    np.testing.assert_array_equal(module(x).data, fn(x).data)
    assert module.parameters() == []


def test_prelu_module_matches_torch(torch, rng):
    m = nn.PReLU(3, init=0.1, dtype=np.float64)
    ref = torch.nn.PReLU(3, init=0.1)
    x = away_from_kinks(rng, (2, 3, 4))
    y = m(t64(x))
    xr = torch.tensor(x, requires_grad=True)
    yr = ref(xr)
    np.testing.assert_allclose(y.data, yr.detach().numpy(), atol=1e-12)
    y.sum().backward()
    yr.sum().backward()
    np.testing.assert_allclose(m.weight.grad, ref.weight.grad.numpy(), atol=1e-10)
    assert [p.shape for p in m.parameters()] == [(3,)]
    assert nn.PReLU().weight.data.tolist() == [0.25]


def test_learnable_swish_and_soft_exponential_learn(rng):
    """A learnable alpha fits exp(x): gradient descent moves alpha from 0 towards 1."""
    x = rng.uniform(-1, 1, size=(64, 1))
    target = np.exp(x)
    act = nn.SoftExponential(alpha=0.0, dtype=np.float64)
    for _ in range(200):
        act.zero_grad()
        loss = F.mse_loss(act(t64(x, False)), t64(target, False))
        loss.backward()
        act.alpha.data -= 0.5 * act.alpha.grad
    assert abs(float(act.alpha.data) - 1.0) < 0.05
    sw = nn.Swish(beta=1.0, learnable=True)
    assert len(sw.parameters()) == 1 and nn.Swish().parameters() == []
    sw(Tensor(rng.standard_normal((2, 3)).astype(np.float32))).sum().backward()
    assert sw.beta.grad is not None and sw.beta.grad.shape == ()


def test_maxout_module_is_max_of_linear_pieces(torch, rng):
    m = nn.Maxout(4, 3, pieces=2, rng=0, dtype=np.float64)
    x = rng.standard_normal((5, 4))
    w, b = m.linear.weight.data, m.linear.bias.data
    pieces = (x @ w + b).reshape(5, 3, 2)
    np.testing.assert_allclose(m(t64(x, False)).data, pieces.max(-1))
    assert [p.shape for p in m.parameters()] == [(4, 6), (6,)]
    xr = torch.tensor(x)
    wr = torch.tensor(w, requires_grad=True)
    br = torch.tensor(b, requires_grad=True)
    (xr @ wr + br).reshape(5, 3, 2).max(-1).values.sum().backward()
    m(t64(x, False)).sum().backward()
    np.testing.assert_allclose(m.linear.weight.grad, wr.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(m.linear.bias.grad, br.grad.numpy(), atol=1e-12)


def test_get_activation():
    assert nn.get_activation("relu") is nn.ReLU
    assert nn.get_activation("LeakyReLU") is nn.LeakyReLU
    assert nn.get_activation("leaky-relu") is nn.LeakyReLU
    assert nn.get_activation("soft_exponential") is nn.SoftExponential
    assert nn.get_activation("linear") is nn.Identity
    for name in (
        "identity",
        "step",
        "sigmoid",
        "tanh",
        "relu",
        "leaky_relu",
        "prelu",
        "elu",
        "swish",
        "silu",
        "softsign",
        "soft_exponential",
        "softmax",
        "log_softmax",
    ):
        assert isinstance(nn.get_activation(name)(), nnparts.nn.Module)
    with pytest.raises(ValueError, match="unknown activation 'gelu2'.*relu"):
        nn.get_activation("gelu2")


@pytest.mark.parametrize("size", [1, 1023, 8191, 8192, 8193, 20_000, 300_000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_forward_against_a_row_of_zeros_is_numpys_maximum_bit_for_bit(rng, size, dtype):
    # ReLU's forward compares with a broadcast row of zeros (NumPy vectorizes maximum only then),
    # in rows of ZERO_ROW values and a remainder, split over threads for the large sizes: the
    # same values as np.maximum(x, 0), NaN, infinities and the sign of zero included
    from nnparts import threads
    from nnparts.functional import activations, layout

    x = (rng.standard_normal(size) * 3).astype(dtype)
    x[::7] = -0.0
    x[1::11] = np.nan
    x[2::13] = -np.inf
    x[3::17] = np.inf
    before = threads.get_num_threads()
    try:
        for n in (1, 2):
            threads.set_num_threads(n)
            got = F.relu(Tensor(x)).data
            assert got.dtype == x.dtype
            np.testing.assert_array_equal(got.view(np.uint8), np.maximum(x, 0).view(np.uint8))
    finally:
        threads.set_num_threads(before)
    zeros = layout.constant(0, activations.ZERO_ROW, dtype)
    assert zeros.flags.writeable is False  # shared: nobody may write it
    # channels-last images: the flat memory order is cut, the layout kept
    img = np.ascontiguousarray(rng.standard_normal((3, 5, 5, 4), dtype=np.float32))
    img = img.transpose(0, 3, 1, 2)
    out = F.relu(Tensor(img)).data
    assert out.strides == img.strides
    np.testing.assert_array_equal(out, np.maximum(img, 0))
