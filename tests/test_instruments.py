"""Optimization instruments: effective learning rates (by hand, against the update itself and
against torch.optim's state) and sharpness (zero at radius 0, quadratic growth, closed form on a
quadratic bowl, weights restored bit for bit)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import nnparts.functional as F
from nnparts import Tensor
from nnparts.nn import Parameter
from nnparts.optim.adadelta import Adadelta
from nnparts.optim.adagrad import Adagrad
from nnparts.optim.adam import Adam, AdamW, RAdam
from nnparts.optim.instruments import effective_lr, sharpness, summarize
from nnparts.optim.lookahead import Lookahead
from nnparts.optim.rmsprop import RMSprop
from nnparts.optim.sgd import SGD

GRADS = [
    np.array([0.5, -1.0, 2.0]),
    np.array([-0.3, 0.2, 1.5]),
    np.array([1.0, -0.1, -0.5]),
]
W0 = np.array([0.1, -0.2, 0.3])


def run_steps(make, grads=GRADS):
    """A float64 parameter stepped with the given gradients; returns (optimizer, param, the
    parameter before the last step)."""
    p = Parameter(W0.copy())
    opt = make([p])
    before = None
    for g in grads:
        before = p.data.copy()
        p.grad = g.copy()
        opt.step()
    return opt, p, before


# --- effective lr by hand --------------------------------------------------------------------


def test_adagrad_by_hand():
    opt, p, before = run_steps(lambda ps: Adagrad(ps, lr=0.1))
    h = sum(g * g for g in GRADS)
    expected = 0.1 / (np.sqrt(h) + 1e-10)
    (eff,) = effective_lr(opt)
    np.testing.assert_allclose(eff, expected, rtol=1e-12)
    np.testing.assert_allclose(before - p.data, eff * GRADS[-1], rtol=1e-12)  # the update


def test_adagrad_lr_decay_by_hand():
    opt, _, _ = run_steps(lambda ps: Adagrad(ps, lr=0.1, lr_decay=0.5))
    h = sum(g * g for g in GRADS)
    expected = 0.1 / (1 + 2 * 0.5) / (np.sqrt(h) + 1e-10)
    np.testing.assert_allclose(effective_lr(opt)[0], expected, rtol=1e-12)


def test_adagrad_rate_shrinks_with_steps():
    opt, _, _ = run_steps(lambda ps: Adagrad(ps, lr=0.1), grads=GRADS[:1])
    first = effective_lr(opt)[0]
    for g in GRADS[1:]:
        opt.param_groups[0]["params"][0].grad = g.copy()
        opt.step()
    assert np.all(effective_lr(opt)[0] < first)


def test_rmsprop_by_hand():
    opt, p, before = run_steps(lambda ps: RMSprop(ps, lr=0.01, alpha=0.9))
    v = np.zeros(3)
    for g in GRADS:
        v = 0.9 * v + 0.1 * g * g
    expected = 0.01 / (np.sqrt(v) + 1e-8)
    (eff,) = effective_lr(opt)
    np.testing.assert_allclose(eff, expected, rtol=1e-12)
    np.testing.assert_allclose(before - p.data, eff * GRADS[-1], rtol=1e-12)


def test_rmsprop_centered_by_hand():
    opt, p, before = run_steps(lambda ps: RMSprop(ps, lr=0.01, alpha=0.9, centered=True))
    v, gbar = np.zeros(3), np.zeros(3)
    for g in GRADS:
        v = 0.9 * v + 0.1 * g * g
        gbar = 0.9 * gbar + 0.1 * g
    expected = 0.01 / (np.sqrt(v - gbar**2) + 1e-8)
    (eff,) = effective_lr(opt)
    np.testing.assert_allclose(eff, expected, rtol=1e-10)
    np.testing.assert_allclose(before - p.data, eff * GRADS[-1], rtol=1e-10)


@pytest.mark.parametrize("cls", [Adam, AdamW])
def test_adam_by_hand(cls):
    b1, b2, lr, eps = 0.9, 0.99, 0.01, 1e-8
    opt, p, before = run_steps(lambda ps: cls(ps, lr=lr, betas=(b1, b2), weight_decay=0.0))
    m, v = np.zeros(3), np.zeros(3)
    for g in GRADS:
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
    t = len(GRADS)
    m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
    expected = lr / (1 - b1**t) / (np.sqrt(v_hat) + eps)  # the rate that multiplies m
    (eff,) = effective_lr(opt)
    np.testing.assert_allclose(eff, expected, rtol=1e-12)
    np.testing.assert_allclose(eff * m, lr * m_hat / (np.sqrt(v_hat) + eps), rtol=1e-12)
    np.testing.assert_allclose(before - p.data, eff * m, rtol=1e-10)


def test_adam_amsgrad_uses_the_running_max():
    grads = [np.full(3, 100.0), np.full(3, 0.1), np.full(3, 0.1)]  # v falls after step 1
    opt, p, before = run_steps(lambda ps: Adam(ps, lr=0.01, amsgrad=True), grads=grads)
    (eff,) = effective_lr(opt)
    m = opt.state[id(p)]["exp_avg"]
    np.testing.assert_allclose(before - p.data, eff * m, rtol=1e-10)
    plain, _, _ = run_steps(lambda ps: Adam(ps, lr=0.01), grads=grads)
    assert np.all(eff < effective_lr(plain)[0])  # the max keeps the large early v


def test_radam_before_and_after_rectification():
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(3) for _ in range(12)]
    lr, b1 = 0.01, 0.9
    for steps in (2, 12):  # rho_2 < 5 (momentum SGD); rho_12 > 5 (rectified Adam)
        opt, p, before = run_steps(lambda ps: RAdam(ps, lr=lr), grads=grads[:steps])
        (eff,) = effective_lr(opt)
        m = opt.state[id(p)]["exp_avg"]
        np.testing.assert_allclose(before - p.data, eff * m, rtol=1e-10)
        if steps == 2:
            np.testing.assert_allclose(eff, lr / (1 - b1**2))
        else:
            assert np.ptp(eff) > 0  # per-weight (adaptive) again


def test_sgd_lookahead_none_and_unsupported():
    p = Parameter(W0.copy())
    np.testing.assert_array_equal(effective_lr(SGD([p], lr=0.3))[0], np.full(3, 0.3))
    inner = Adagrad([p], lr=0.1)
    assert effective_lr(Lookahead(inner)) == [None]  # no step yet: no state
    p.grad = GRADS[0].copy()
    inner.step()
    np.testing.assert_array_equal(effective_lr(Lookahead(inner))[0], effective_lr(inner)[0])
    with pytest.raises(TypeError, match="Adadelta"):
        effective_lr(Adadelta([p]))

    class Variant(Adam):  # a subclass may change the rule: not silently treated as Adam
        pass

    with pytest.raises(TypeError, match="Variant"):
        effective_lr(Variant([p]))


def test_summarize():
    arrays = [np.array([1.0, 4.0]), None, np.array([[16.0]])]
    assert summarize(arrays) == 4.0
    assert summarize(arrays, "mean") == pytest.approx(7.0)
    assert summarize(arrays, "geomean") == pytest.approx(4.0)
    with pytest.raises(ValueError, match="step"):
        summarize([None])
    with pytest.raises(ValueError, match="median"):
        summarize(arrays, "max")


# --- against torch.optim's state ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("Adagrad", dict(lr=0.1)),
        ("RMSprop", dict(lr=0.01, alpha=0.9)),
        ("Adam", dict(lr=0.01, betas=(0.9, 0.99))),
    ],
)
def test_against_torch_state(name, kwargs):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((16, 3)), rng.standard_normal(16)
    ours = Parameter(W0.copy())
    theirs = torch.tensor(W0.copy(), requires_grad=True)
    opt = {"Adagrad": Adagrad, "RMSprop": RMSprop, "Adam": Adam}[name]([ours], **kwargs)
    topt = getattr(torch.optim, name)([theirs], **kwargs)
    for _ in range(5):  # the same loss, gradients from each library's autograd
        ours.grad = None
        F.mean((F.linear(Tensor(x), ours.reshape(3, 1)).reshape(16) - Tensor(y)) ** 2).backward()
        opt.step()
        topt.zero_grad()
        ((torch.tensor(x) @ theirs - torch.tensor(y)) ** 2).mean().backward()
        topt.step()
    state = topt.state[theirs]
    if name == "Adagrad":
        expected = kwargs["lr"] / (state["sum"].numpy() ** 0.5 + 1e-10)
    elif name == "RMSprop":
        expected = kwargs["lr"] / (state["square_avg"].numpy() ** 0.5 + 1e-8)
    else:
        t = float(state["step"])
        b1, b2 = kwargs["betas"]
        v_hat = state["exp_avg_sq"].numpy() / (1 - b2**t)
        expected = kwargs["lr"] / (1 - b1**t) / (v_hat**0.5 + 1e-8)
    np.testing.assert_allclose(effective_lr(opt)[0], expected, rtol=1e-9)


# --- sharpness ---------------------------------------------------------------------------------

A = np.diag([1.0, 2.0, 3.0, 4.0, 10.0])
C = np.array([1.0, -2.0, 0.5, 3.0, -1.0])


def bowl(params):
    """L = (w - c).A.(w - c) / 2 as a Tensor (through the library's autograd ops)."""
    (w,) = params
    d = w - Tensor(C)
    return 0.5 * (d * Tensor(np.diag(A)) * d).sum()


def at_minimum():
    return [Parameter(C.copy())]


def test_zero_radius_is_zero():
    out = sharpness(at_minimum(), bowl, radius=0.0, n_directions=5, rng=np.random.default_rng(0))
    assert out["mean"] == 0.0 and out["max"] == 0.0 and out["base"] == 0.0


def test_grows_quadratically_with_the_radius():
    means = []
    for r in (0.01, 0.02, 0.04, 0.08):
        out = sharpness(at_minimum(), bowl, r, n_directions=20, rng=np.random.default_rng(1))
        means.append(out["mean"])
    assert np.all(np.diff(means) > 0)
    # the same directions (same seed): doubling the step quadruples the rise on a quadratic
    np.testing.assert_allclose(np.array(means[1:]) / np.array(means[:-1]), 4.0, rtol=1e-9)


@pytest.mark.parametrize("relative", [True, False])
def test_closed_form_on_a_quadratic_bowl(relative):
    r, n = 0.1, C.size
    out = sharpness(at_minimum(), bowl, r, 4000, rng=np.random.default_rng(2), relative=relative)
    step = r * np.linalg.norm(C) if relative else r
    mean_rise = step**2 * np.trace(A) / (2 * n)  # E[u.A.u] = tr(A) / n on the unit sphere
    assert out["mean"] == pytest.approx(mean_rise, rel=0.05)
    assert out["max"] <= step**2 * A.max() / 2 * (1 + 1e-12)  # u.A.u <= lambda_max
    assert out["max"] > mean_rise


def test_sharper_bowl_is_sharper():
    flat = sharpness(at_minimum(), bowl, 0.05, 50, rng=np.random.default_rng(4))

    def steep(params):
        return 10 * bowl(params)

    sharp = sharpness(at_minimum(), steep, 0.05, 50, rng=np.random.default_rng(4))
    assert sharp["mean"] == pytest.approx(10 * flat["mean"], rel=1e-9)


def test_relative_per_tensor_leaves_zero_tensors_and_restores_exactly():
    rng = np.random.default_rng(5)
    w = Parameter(rng.standard_normal((4, 3)).astype(np.float32))
    zero = Parameter(np.zeros(3, dtype=np.float32))
    before = [w.data.copy(), zero.data.copy()]
    ref = w.data  # the same array object must stay in place

    def only_zero(params):
        return float(np.sum(params[1].data ** 2))

    out = sharpness([w, zero], only_zero, 0.5, 4, rng=np.random.default_rng(6))
    assert out["max"] == 0.0  # the all-zero tensor is not moved
    assert w.data is ref
    assert w.data.tobytes() == before[0].tobytes() and zero.data.tobytes() == before[1].tobytes()


def test_restores_when_the_loss_raises():
    params = at_minimum()
    calls = []

    def fails_second(ps):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return bowl(ps)

    with pytest.raises(RuntimeError, match="boom"):
        sharpness(params, fails_second, 0.3, 3, rng=np.random.default_rng(7))
    assert params[0].data.tobytes() == C.tobytes()


def test_works_on_a_module_and_checks_arguments():
    from nnparts import nn

    model = nn.Linear(3, 2, rng=np.random.default_rng(8))
    x, y = np.random.default_rng(9).standard_normal((10, 3)).astype(np.float32), np.arange(10) % 2
    saved = [p.data.copy() for p in model.parameters()]
    out = sharpness(model, lambda m: F.cross_entropy(m(Tensor(x)), y), 0.1, 8)
    assert out["rises"].shape == (8,) and math.isfinite(out["mean"])
    assert all(p.data.tobytes() == s.tobytes() for p, s in zip(model.parameters(), saved))
    with pytest.raises(ValueError, match="radius"):
        sharpness(model, lambda m: 0.0, -1.0)
    with pytest.raises(ValueError, match="n_directions"):
        sharpness(model, lambda m: 0.0, 0.1, n_directions=0)
