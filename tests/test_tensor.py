"""The autograd core: graph order, accumulation, broadcasting, no_grad, detach, dtype rules."""

from __future__ import annotations

import weakref

import numpy as np
import pytest

import nnparts
from nnparts import Tensor, gradcheck, no_grad
from nnparts import functional as F
from nnparts.tensor import Function


def t64(a, requires_grad=True):
    return Tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def test_chain_rule_through_a_diamond():
    # y = x^2 feeds two branches that join again: z = y*3 + exp(y); dz/dx = (3 + e^y) 2x
    x = t64([0.5, -1.0, 2.0])
    y = x * x
    z = (y * 3.0 + y.exp()).sum()
    z.backward()
    xv = x.data
    np.testing.assert_allclose(x.grad, (3 + np.exp(xv**2)) * 2 * xv, rtol=1e-12)


def test_backward_runs_in_topological_order():
    """Each node's backward runs only after every consumer of the node has sent its gradient."""
    calls = []

    class Record(Function):
        @staticmethod
        def forward(ctx, a, tag):
            ctx.tag = tag
            return a.copy()

        @staticmethod
        def backward(ctx, g):
            calls.append((ctx.tag, float(g.sum())))
            return g

    x = t64([1.0])
    a = Record.apply(x, tag="a")
    b = Record.apply(a, tag="b")  # a -> b -> d and a -> c -> d: a must run last, with both
    c = Record.apply(a * 2.0, tag="c")
    d = Record.apply(b + c, tag="d")
    d.sum().backward()
    assert [tag for tag, _ in calls][0] == "d"
    assert [tag for tag, _ in calls][-1] == "a"
    assert dict(calls)["a"] == pytest.approx(3.0)  # 1 from b, 2 from c, received at once
    assert sorted(tag for tag, _ in calls) == ["a", "b", "c", "d"]  # each once
    np.testing.assert_allclose(x.grad, [3.0])


def test_tensor_used_twice_accumulates():
    x = t64([2.0, 3.0])
    (x * x + x).sum().backward()  # d/dx (x^2 + x) = 2x + 1
    np.testing.assert_allclose(x.grad, [5.0, 7.0])


def test_grad_accumulates_across_backward_calls_until_zeroed():
    x = t64([1.0, 2.0])
    (x * 3.0).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad, [6.0, 6.0])
    x.zero_grad()
    assert x.grad is None
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad, [3.0, 3.0])


@pytest.mark.parametrize(
    "shape_a, shape_b",
    [((3, 4), (4,)), ((3, 4), (3, 1)), ((2, 1, 4), (3, 1)), ((1,), (2, 3)), ((), (2, 3))],
)
def test_broadcasting_sums_gradient_back(shape_a, shape_b, rng):
    a = t64(rng.standard_normal(shape_a))
    b = t64(rng.standard_normal(shape_b))
    out = a * b + a - b
    g = rng.standard_normal(out.shape)
    out.backward(g)
    assert a.grad.shape == shape_a and b.grad.shape == shape_b
    bb = np.broadcast_to(b.data, out.shape)
    ab = np.broadcast_to(a.data, out.shape)
    expect_a = (g * (bb + 1)).sum(axis=tuple(range(out.ndim - len(shape_a))))
    expect_a = expect_a.sum(axis=tuple(i for i, n in enumerate(shape_a) if n == 1), keepdims=True)
    np.testing.assert_allclose(a.grad, expect_a.reshape(shape_a), rtol=1e-12)
    assert gradcheck(lambda p, q: p * q + p - q, [a, b])
    _ = ab


def test_no_grad_records_nothing_and_restores():
    x = t64([1.0, 2.0])
    with no_grad():
        y = x * 2.0
        assert not nnparts.is_grad_enabled()
    assert nnparts.is_grad_enabled()
    assert not y.requires_grad and y.is_leaf
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()
    with pytest.raises(ZeroDivisionError):  # restored even when the block raises
        with no_grad():
            1 / 0
    assert nnparts.is_grad_enabled()


def test_detach_shares_data_and_cuts_the_graph():
    x = t64([1.0, 2.0])
    y = x * 3.0
    d = y.detach()
    assert d.data is y.data and not d.requires_grad and d.is_leaf
    (d * x).sum().backward()  # only the x path carries a gradient
    np.testing.assert_allclose(x.grad, [3.0, 6.0])


def test_dtype_rules():
    assert Tensor([1.0, 2.0]).dtype == np.float32  # Python floats: float32
    assert Tensor(2.5).dtype == np.float32
    assert Tensor(np.zeros(2)).dtype == np.float64  # float64 arrays stay float64
    assert Tensor(np.zeros(2, dtype=np.float16)).dtype == np.float32
    assert Tensor([1, 2]).dtype.kind == "i"  # integers stay integer
    x32 = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    # Python scalars are weak: they take the tensor's dtype
    for y in (x32 + 1, 2 * x32, x32 - 0.5, 1.5 / x32, x32**2, 2.0**x32, -x32):
        assert y.dtype == np.float32, y
    # mixed arrays follow NumPy promotion: float32 with float64 computes in float64
    assert (x32 * Tensor(np.ones(3))).dtype == np.float64
    assert (x32 * np.ones(3)).dtype == np.float64
    y = (x32 * 3.0).sum()
    y.backward()
    assert x32.grad.dtype == np.float32
    assert Tensor([1.0], dtype=np.float64).dtype == np.float64
    assert nnparts.tensor([1, 2], dtype=np.float32).dtype == np.float32


def test_integer_tensors_never_require_grad():
    with pytest.raises(ValueError, match="floating-point.*int64"):
        Tensor(np.array([1, 2]), requires_grad=True)
    i = Tensor(np.array([1, 2]))
    with pytest.raises(ValueError, match="floating"):
        i.requires_grad = True
    x = t64([1.0, 2.0])
    y = (x * i).sum()  # an int operand just gets no gradient
    y.backward()
    np.testing.assert_allclose(x.grad, [1.0, 2.0])
    assert i.grad is None
    with no_grad():
        pass
    assert not (x > 1.0).requires_grad


def test_backward_argument_checks():
    x = t64(np.ones((2, 3)))
    y = x * 2.0
    with pytest.raises(ValueError, match=r"scalar output.*\(2, 3\)"):
        y.backward()
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 3\)"):
        y.backward(np.ones(3))
    y.backward(np.ones((2, 3)))
    np.testing.assert_allclose(x.grad, 2.0)


def test_retain_graph_allows_second_backward():
    x = t64([1.0, 2.0])
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad, [4.0, 8.0])


def test_deep_graph_has_no_recursion_limit():
    x = t64([1.0])
    y = x
    for _ in range(3000):
        y = y + 1.0
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0])


def test_intermediate_grads_are_not_stored_and_graph_is_freed():
    x = t64([1.0])
    y = x * 2.0
    z = (y * y).sum()
    z.backward()
    assert y.grad is None
    assert not z.is_leaf and y._ctx[1] is None  # saved arrays released
    np.testing.assert_allclose(x.grad, [8.0])


def test_second_backward_through_a_freed_graph_is_an_error():
    """Not a silent zero: a second loss sharing a freed intermediate would lose its gradient."""
    x = t64([1.0, 2.0])
    y = x * 2.0
    y.sum().backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        (y * 3.0).sum().backward()
    loss = (x * x).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()


def test_data_and_grad_assignable_and_operators(rng):
    a = t64(rng.standard_normal((2, 3)))
    a.data = np.ones((2, 3))
    a.grad = np.zeros((2, 3))
    assert a.shape == (2, 3) and a.ndim == 2 and a.size == 6 and len(a) == 2
    b = t64(rng.standard_normal((3, 2)))
    assert (a @ b).shape == (2, 2) and a.T.shape == (3, 2)
    assert a.transpose(1, 0).shape == (3, 2) and a.reshape(3, 2).shape == (3, 2)
    assert a.reshape((6,)).shape == (6,) and a[0].shape == (3,)
    assert a.sum(axis=0).shape == (3,) and a.mean(keepdims=True).shape == (1, 1)
    assert np.asarray(a).shape == (2, 3)
    assert "requires_grad=True" in repr(a)
    assert a.astype(np.float32).dtype == np.float32


def test_astype_gradient_goes_back_in_input_dtype():
    x = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    (x.astype(np.float64) * 2.0).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad, 2.0)


def test_gradcheck_catches_a_wrong_backward():
    class WrongSquare(Function):
        @staticmethod
        def forward(ctx, a):
            ctx.save(a)
            return a * a

        @staticmethod
        def backward(ctx, g):
            (a,) = ctx.saved
            return g * a  # should be 2 a

    x = t64([1.0, 2.0])
    with pytest.raises(nnparts.GradcheckError, match="input 0"):
        gradcheck(WrongSquare.apply, [x])
    assert gradcheck(WrongSquare.apply, [x], raise_exception=False) is False
    with pytest.raises(ValueError, match="float64"):
        gradcheck(F.exp, [Tensor(np.ones(2, dtype=np.float32), requires_grad=True)])


def test_gradcheck_works_on_non_contiguous_inputs(rng):
    x = Tensor(rng.standard_normal((4, 3)).T, requires_grad=True)  # a transposed view
    assert not x.data.flags.c_contiguous
    assert gradcheck(lambda v: (v * v).sum(axis=0), [x])


def test_an_intermediate_no_op_saved_is_freed_when_dropped_and_backward_still_works():
    """The graph keeps each computed input's node, not its array (as PyTorch): a BatchNorm output
    that only feeds a ReLU (which saves its own output) is freed as soon as the caller drops it,
    instead of living until the backward. Hooks registered on it before still run."""
    import gc
    import weakref

    import nnparts.functional as F

    rng = np.random.default_rng(0)
    x = nnparts.Tensor(rng.standard_normal((8, 3, 5, 5)), requires_grad=True)
    y = F.batch_norm(x, None, None, training=True)
    seen = []
    y.register_hook(lambda g: seen.append(g.shape))
    freed = weakref.ref(y.data)
    z = F.relu(y)
    del y
    gc.collect()
    assert freed() is None  # BatchNorm's output is gone; the ReLU kept only its output
    loss = (z * z).sum()
    loss.backward()
    assert seen == [(8, 3, 5, 5)]
    # the same gradient as with every intermediate kept alive
    x2 = nnparts.Tensor(x.data.copy(), requires_grad=True)
    y2 = F.batch_norm(x2, None, None, training=True)
    (F.relu(y2) * F.relu(y2)).sum().backward()
    np.testing.assert_array_equal(x.grad, x2.grad)
    # a saved input stays alive (the ReLU's output, saved by the ReLU and the product)
    assert z.data is not None and not z.is_leaf and z._ctx[0] is None  # freed record after use


def test_a_dropped_intermediate_used_twice_still_accumulates_its_gradient():
    x = t64([1.0, 2.0])
    y = x * 3.0
    a, b = y * 2.0, y * 5.0  # two consumers of y, which is then dropped
    del y
    (a + b).sum().backward()
    np.testing.assert_allclose(x.grad, [21.0, 21.0])


class _Fresh(Function):
    """Identity whose backward returns a new array and remembers which one (``returned``: weak
    references, which do not count as holding it)."""

    returned: list = []
    kept: list = []  # arrays the backward also keeps (when ``keep``)

    @staticmethod
    def forward(ctx, x, keep=False):
        ctx.keep = keep
        return x.copy()

    @staticmethod
    def backward(ctx, g):
        out = g * 1.0
        _Fresh.returned.append(weakref.ref(out))
        if ctx.keep:
            _Fresh.kept.append(out)
        return (out,)


def test_a_leaf_keeps_a_fresh_gradient_without_copying_it():
    """The gradient an op hands a leaf becomes ``.grad`` itself when nothing else refers to it
    (PyTorch's AccumulateGrad "steals" it the same way): no 2.7 MB copy per MLP step."""
    _Fresh.returned.clear()
    x = t64([1.0, 2.0, 3.0])
    _Fresh.apply(x).sum().backward()
    assert x.grad is _Fresh.returned[-1]()
    np.testing.assert_array_equal(x.grad, [1.0, 1.0, 1.0])


def test_a_leaf_copies_a_gradient_someone_else_still_holds():
    """An array the op (or a hook, or a second input) still refers to is copied: changing
    ``.grad`` in place (the next backward's +=, an optimizer) must not change theirs."""
    _Fresh.kept.clear()
    x = t64([1.0, 2.0])
    _Fresh.apply(x, keep=True).sum().backward()
    assert x.grad is not _Fresh.kept[-1]
    x.grad += 10.0
    np.testing.assert_array_equal(_Fresh.kept[-1], [1.0, 1.0])
    # a hook that stores the gradient
    seen = []
    y = t64([1.0, 2.0])
    z = _Fresh.apply(y)
    z.register_hook(lambda g: seen.append(g))
    _Fresh.apply(z).sum().backward()
    y.grad *= 3.0
    np.testing.assert_array_equal(seen[0], [1.0, 1.0])
    # one array handed to two leaves (an addition returns the same gradient for both inputs)
    a, b = t64([1.0, 2.0]), t64([3.0, 4.0])
    (a + b).sum().backward()
    assert a.grad is not b.grad
    a.grad += 5.0
    np.testing.assert_array_equal(b.grad, [1.0, 1.0])
    # the caller's own gradient array, passed to backward() on a leaf
    c = t64([1.0, 2.0])
    mine = np.array([0.5, 0.25])
    c.backward(mine)
    assert c.grad is not mine
    c.grad += 1.0
    np.testing.assert_array_equal(mine, [0.5, 0.25])


def test_stolen_gradients_accumulate_and_stay_separate_across_steps(rng):
    """Across backward calls the kept arrays are the leaf's own: a second backward adds into
    ``.grad``, zeroing the gradients and running again gives the same numbers, and a
    Linear layer's weight, bias and input gradients never share memory."""
    from nnparts import nn

    layer = nn.Linear(4, 3, rng=0)
    x = Tensor(rng.standard_normal((5, 4)), requires_grad=True)
    (layer(x) ** 2).sum().backward()
    first = [p.grad.copy() for p in layer.parameters()] + [x.grad.copy()]
    (layer(x) ** 2).sum().backward()
    for got, want in zip([p.grad for p in layer.parameters()] + [x.grad], first):
        np.testing.assert_allclose(got, 2 * want)
    arrays = [p.grad for p in layer.parameters()] + [x.grad]
    for i, a in enumerate(arrays):
        for b in arrays[i + 1 :]:
            assert not np.shares_memory(a, b)
    for p in layer.parameters():
        p.grad = None
    x.grad = None
    (layer(x) ** 2).sum().backward()
    for got, want in zip([p.grad for p in layer.parameters()] + [x.grad], first):
        np.testing.assert_array_equal(got, want)
