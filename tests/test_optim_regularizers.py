"""L1/L2 penalties (finite differences, behavior) and gradient clipping (PyTorch)."""

from __future__ import annotations

import numpy as np
import pytest

import nnparts
from nnparts import optim
from nnparts.nn import Parameter
from nnparts.optim import clip_grad_norm_, clip_grad_value_, l1_penalty, l2_penalty


def params64(rng):
    return [Parameter(rng.normal(size=(3, 4))), Parameter(rng.normal(size=(4,)))]


def test_penalties_gradcheck(rng):
    a, b = params64(rng)
    b.data[np.abs(b.data) < 0.05] = 0.3  # keep |x| away from its kink
    a.data[np.abs(a.data) < 0.05] = 0.3
    assert nnparts.gradcheck(lambda x, y: l2_penalty([x, y], 0.3), [a, b])
    assert nnparts.gradcheck(lambda x, y: l1_penalty([x, y], 0.7), [a, b])


def test_penalty_values(rng):
    ps = params64(rng)
    sq = sum(float(np.sum(p.data**2)) for p in ps)
    ab = sum(float(np.sum(np.abs(p.data))) for p in ps)
    assert float(l2_penalty(ps, 0.2).data) == pytest.approx(0.1 * sq, rel=1e-12)
    assert float(l1_penalty(ps, 0.2).data) == pytest.approx(0.2 * ab, rel=1e-12)


def test_l2_penalty_equals_coupled_weight_decay(rng):
    """SGD on loss + wd/2 ||W||^2 follows the same path as SGD(weight_decay=wd) on the loss."""
    x = rng.normal(size=(8, 3))
    a = Parameter(rng.normal(size=(3, 2)))
    b = Parameter(a.data.copy())
    opt_a = optim.SGD([a], lr=0.1, momentum=0.9)
    opt_b = optim.SGD([b], lr=0.1, momentum=0.9, weight_decay=0.05)
    for _ in range(20):
        for p in (a, b):
            p.grad = None
        ((nnparts.Tensor(x) @ a) ** 2).mean().__add__(l2_penalty([a], 0.05)).backward()
        ((nnparts.Tensor(x) @ b) ** 2).mean().backward()
        opt_a.step()
        opt_b.step()
    np.testing.assert_allclose(a.data, b.data, rtol=0, atol=1e-12)


def test_l1_penalty_makes_weights_sparse(rng):
    """Proximal-free but clear: with only the L1 term, SGD drives weights to (near) zero and
    beyond, whereas L2 alone only shrinks them geometrically."""
    w1 = Parameter(np.array([0.5, -0.3, 0.05]))
    w2 = Parameter(w1.data.copy())
    o1, o2 = optim.SGD([w1], lr=0.01), optim.SGD([w2], lr=0.01)
    for _ in range(60):
        w1.grad = w2.grad = None
        l1_penalty([w1], 1.0).backward()
        l2_penalty([w2], 1.0).backward()
        o1.step()
        o2.step()
    assert np.all(np.abs(w1.data) <= 0.011)  # oscillates around 0 within one step
    np.testing.assert_allclose(w2.data, np.array([0.5, -0.3, 0.05]) * 0.99**60)


@pytest.mark.parametrize(
    "max_norm,norm_type", [(0.5, 2.0), (100.0, 2.0), (0.3, 1.0), (0.2, float("inf"))]
)
def test_clip_grad_norm_equals_torch(torch, rng, max_norm, norm_type):
    ps = params64(rng)
    grads = [rng.normal(size=p.shape) for p in ps]
    ts = [torch.tensor(p.data.copy(), requires_grad=True) for p in ps]
    for p, t, g in zip(ps, ts, grads):
        p.grad = g.copy()
        t.grad = torch.tensor(g.copy())
    total = clip_grad_norm_(ps, max_norm, norm_type)
    ref = torch.nn.utils.clip_grad_norm_(ts, max_norm, norm_type)
    assert total == pytest.approx(float(ref), rel=1e-12)
    for p, t in zip(ps, ts):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=0, atol=1e-14)
    if max_norm < total:
        new = np.sqrt(sum(np.sum(p.grad**2) for p in ps)) if norm_type == 2 else None
        if new is not None:
            assert new == pytest.approx(max_norm, rel=1e-5)


def test_clip_grad_value_equals_torch(torch, rng):
    ps = params64(rng)
    ts = [torch.tensor(p.data.copy(), requires_grad=True) for p in ps]
    for p, t in zip(ps, ts):
        g = rng.normal(size=p.shape)
        p.grad, t.grad = g.copy(), torch.tensor(g.copy())
    clip_grad_value_(ps, 0.4)
    torch.nn.utils.clip_grad_value_(ts, 0.4)
    for p, t in zip(ps, ts):
        np.testing.assert_array_equal(p.grad, t.grad.numpy())
        assert np.max(np.abs(p.grad)) == pytest.approx(0.4)


def test_bad_input(rng):
    ps = params64(rng)
    with pytest.raises(ValueError, match="weight_decay"):
        l2_penalty(ps, -1.0)
    with pytest.raises(ValueError, match="weight"):
        l1_penalty(ps, float("nan"))
    with pytest.raises(ValueError, match="params"):
        l2_penalty([], 0.1)
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm_(ps, -1.0)
    with pytest.raises(ValueError, match="clip_value"):
        clip_grad_value_(ps, -0.1)
