"""Adamax, Rprop, ASGD, maximize=True, ConstantLR and PolynomialLR: trajectories equal to
torch.optim's, state round trips, and the behaviour each is for."""

from __future__ import annotations

import json

import numpy as np
import pytest
from optim_helpers import save_and_load

import nnparts
import nnparts.functional as F
from nnparts import optim
from nnparts.nn import Parameter
from nnparts.optim import lr_scheduler


def make_mlp(seed=0):
    rng = np.random.default_rng(seed)
    shapes = [(4, 8), (8,), (8, 3), (3,)]
    return [Parameter(rng.normal(0, 0.5, s)) for s in shapes]


def make_data(seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(16, 4)), rng.normal(size=(16, 3))


def compute_grads(params, x, y, sign=1.0):
    for p in params:
        p.grad = None
    w1, b1, w2, b2 = params
    h = F.linear(nnparts.Tensor(x), w1, b1)
    h = F.log(F.exp(h) + 1.0)  # softplus
    out = F.linear(h, w2, b2)
    (F.mean((out - y) ** 2) * sign).backward()


def run_against_torch(torch, name, kwargs, steps=40, sign=1.0):
    x, y = make_data()
    ours = make_mlp()
    theirs = [torch.tensor(p.data.copy(), requires_grad=True) for p in ours]
    opt = getattr(optim, name)(ours, **kwargs)
    ref = getattr(torch.optim, name)(theirs, **kwargs)
    for _ in range(steps):
        compute_grads(ours, x, y, sign)
        for p, q in zip(ours, theirs):
            q.grad = torch.tensor(p.grad.copy())
        opt.step()
        ref.step()
    return ours, theirs, opt, ref


NEW_CASES = [
    ("Adamax", dict()),
    ("Adamax", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.01)),
    ("Rprop", dict()),
    ("Rprop", dict(lr=0.001, etas=(0.3, 1.5), step_sizes=(1e-4, 0.02))),
    ("ASGD", dict(lr=0.05)),
    ("ASGD", dict(lr=0.05, lambd=1e-2, alpha=0.6, t0=10, weight_decay=0.01)),
]


@pytest.mark.parametrize(("name", "kwargs"), NEW_CASES, ids=str)
def test_new_optimizers_equal_torch(torch, name, kwargs):
    ours, theirs, opt, ref = run_against_torch(torch, name, kwargs)
    for p, q in zip(ours, theirs):
        np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=1e-10, atol=1e-12)
    if name == "ASGD":  # the averaged weights too
        for p, q in zip(ours, theirs):
            ax = opt.state[id(p)]["ax"]
            np.testing.assert_allclose(ax, ref.state[q]["ax"].numpy(), rtol=1e-10, atol=1e-12)


MAXIMIZE_CASES = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("Adagrad", dict(lr=0.1, weight_decay=0.01)),
    ("Adadelta", dict(weight_decay=0.01)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5, weight_decay=0.01)),
    ("Adam", dict(lr=0.01, weight_decay=0.01)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
    ("NAdam", dict(lr=0.01, weight_decay=0.01)),
    ("RAdam", dict(lr=0.01, weight_decay=0.01)),
    ("Adamax", dict(lr=0.01, weight_decay=0.01)),
    ("Rprop", dict()),
    ("ASGD", dict(lr=0.05, t0=5, weight_decay=0.01)),
]


@pytest.mark.parametrize(("name", "kwargs"), MAXIMIZE_CASES, ids=str)
def test_maximize_equals_torch(torch, name, kwargs):
    # maximize -loss: the same path as minimizing the loss, for us and for torch
    ours, theirs, _, _ = run_against_torch(torch, name, dict(kwargs, maximize=True), sign=-1.0)
    for p, q in zip(ours, theirs):
        np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=1e-10, atol=1e-12)
    plain, _, _, _ = run_against_torch(torch, name, kwargs, sign=1.0)
    for p, q in zip(ours, plain):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["SGD", "Adam", "Adamax", "Rprop", "ASGD"])
def test_maximize_climbs_a_concave_function(name):
    """Behaviour: maximize=True finds the top of -(w - 3)^2."""
    w = Parameter(np.array([0.0]))
    lr = {"SGD": 0.1, "Adam": 0.1, "Adamax": 0.1, "Rprop": 0.1, "ASGD": 0.1}[name]
    opt = getattr(optim, name)([w], lr=lr, maximize=True)
    for _ in range(300):
        w.grad = None
        (-((w - 3.0) ** 2)).sum().backward()
        opt.step()
    assert w.data[0] == pytest.approx(3.0, abs=1e-2)
    assert opt.param_groups[0]["maximize"] is True
    with pytest.raises(TypeError):  # keyword-only, as in torch
        optim.Adam([w], 0.1, (0.9, 0.999), 1e-8, 0.0, False, True)


def test_adamax_step_is_lr_whatever_the_gradient_scale():
    """Behaviour: with a constant gradient every Adamax step has size lr (the infinity norm
    normalizes the scale away)."""
    for scale in (1e-3, 1.0, 1e3):
        w = Parameter(np.zeros(3))
        opt = optim.Adamax([w], lr=0.01, eps=0.0 + 1e-12)
        prev = w.data.copy()
        for _ in range(5):
            w.grad = np.array([1.0, -2.0, 0.5]) * scale
            opt.step()
            np.testing.assert_allclose(np.abs(w.data - prev), 0.01, rtol=1e-6)
            prev = w.data.copy()


def test_rprop_step_grows_while_the_sign_holds_and_shrinks_on_a_flip():
    w = Parameter(np.zeros(1))
    opt = optim.Rprop([w], lr=0.1, etas=(0.5, 1.2), step_sizes=(1e-6, 1.0))
    steps = []
    for _ in range(5):
        before = w.data.copy()
        w.grad = np.array([1.0])  # same sign: 0.1, 0.12, 0.144, ...
        opt.step()
        steps.append(float(before[0] - w.data[0]))
    np.testing.assert_allclose(steps, 0.1 * 1.2 ** np.arange(5), rtol=1e-12)
    w.grad = np.array([-1.0])  # flip: step size halves, this step is skipped
    before = w.data.copy()
    opt.step()
    assert w.data[0] == before[0]
    assert opt.state[id(w)]["step_size"][0] == pytest.approx(0.1 * 1.2**4 * 0.5)
    for _ in range(40):  # capped at step_max
        w.grad = np.array([1.0])
        opt.step()
    assert opt.state[id(w)]["step_size"][0] == 1.0


def test_asgd_average_is_the_mean_of_the_iterates_after_t0():
    rng = np.random.default_rng(0)
    w = Parameter(np.zeros(2))
    opt = optim.ASGD([w], lr=0.1, lambd=0.0, t0=3)
    iterates = []
    for _ in range(12):
        w.grad = rng.normal(size=2) + w.data
        opt.step()
        iterates.append(w.data.copy())
    # mu_t = 1 / max(1, t - 1 - t0): the average restarts at step t0 + 2 and is then a mean
    np.testing.assert_allclose(opt.averaged()[0], np.mean(iterates[4:], axis=0), rtol=1e-12)


@pytest.mark.parametrize(("name", "kwargs"), NEW_CASES[1::2] + [("Adam", dict(maximize=True))])
def test_state_dict_round_trip_continues_identically(name, kwargs):
    x, y = make_data()
    a = make_mlp()
    opt_a = getattr(optim, name)(a, **kwargs)
    for _ in range(12):
        compute_grads(a, x, y)
        opt_a.step()
    saved = save_and_load(opt_a.state_dict())
    b = [Parameter(p.data.copy()) for p in a]
    opt_b = getattr(optim, name)(b)  # hyperparameters come from the state_dict
    opt_b.load_state_dict(saved)
    assert opt_b.param_groups[0]["maximize"] == kwargs.get("maximize", False)
    for _ in range(12):
        compute_grads(a, x, y)
        compute_grads(b, x, y)
        opt_a.step()
        opt_b.step()
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p.data, q.data)


def test_build_knows_the_new_optimizers_and_checks_their_arguments():
    p = [Parameter(np.zeros(2))]
    assert isinstance(optim.build("adamax", p), optim.Adamax)
    assert isinstance(optim.build("Rprop", p), optim.Rprop)
    assert isinstance(optim.build("asgd", p, lr=0.1), optim.ASGD)
    assert optim.build("adam", p, maximize=True).param_groups[0]["maximize"] is True
    with pytest.raises(ValueError, match=r"etas=\(1\.5, 1\.2\).*0 < eta_minus < 1 < eta_plus"):
        optim.Rprop(p, etas=(1.5, 1.2))
    with pytest.raises(ValueError, match=r"step_sizes=\(1, 0\.1\)"):
        optim.Rprop(p, step_sizes=(1, 0.1))
    with pytest.raises(ValueError, match=r"betas"):
        optim.Adamax(p, betas=(1.0, 0.9))
    with pytest.raises(ValueError, match=r"lambd=-1"):
        optim.ASGD(p, lambd=-1)


# ---------------------------------------------------------------------------------------------
# schedules


def make_pair(torch, lr=0.1):
    p, q = Parameter(np.zeros(2)), Parameter(np.zeros(3))
    tp, tq = torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)
    ours = optim.SGD([{"params": [p]}, {"params": [q], "lr": lr / 10}], lr=lr, momentum=0.9)
    ref = torch.optim.SGD([{"params": [tp]}, {"params": [tq], "lr": lr / 10}], lr=lr, momentum=0.9)
    return ours, ref


SCHEDULES = [
    ("ConstantLR", dict()),
    ("ConstantLR", dict(factor=0.1, total_iters=7)),
    ("ConstantLR", dict(factor=0.5, total_iters=0)),
    ("PolynomialLR", dict()),
    ("PolynomialLR", dict(total_iters=12, power=2.0)),
    ("PolynomialLR", dict(total_iters=9, power=0.5)),
]


@pytest.mark.parametrize(("name", "kwargs"), SCHEDULES, ids=str)
def test_new_schedules_equal_torch(torch, name, kwargs):
    ours, ref = make_pair(torch)
    sched = getattr(lr_scheduler, name)(ours, **kwargs)
    ref_sched = getattr(torch.optim.lr_scheduler, name)(ref, **kwargs)
    np.testing.assert_allclose(sched.get_last_lr(), ref_sched.get_last_lr(), rtol=1e-12)
    seen = set()
    for _ in range(20):
        ours.step()
        ref.step()
        sched.step()
        ref_sched.step()
        np.testing.assert_allclose(
            sched.get_last_lr(), ref_sched.get_last_lr(), rtol=1e-12, atol=1e-15
        )
        seen.add(round(sched.get_last_lr()[0], 12))
    assert len(seen) >= 2 or kwargs.get("total_iters") == 0


def test_chained_with_another_schedule_equals_torch(torch):
    ours, ref = make_pair(torch)
    a = [
        lr_scheduler.ConstantLR(ours, factor=0.5, total_iters=3),
        lr_scheduler.ExponentialLR(ours, 0.9),
    ]
    b = [
        torch.optim.lr_scheduler.ConstantLR(ref, factor=0.5, total_iters=3),
        torch.optim.lr_scheduler.ExponentialLR(ref, 0.9),
    ]
    for _ in range(8):
        ours.step()
        ref.step()
        for s in a + b:
            s.step()
        np.testing.assert_allclose(a[-1].get_last_lr(), b[-1].get_last_lr(), rtol=1e-12)


def test_polynomial_decay_reaches_zero_and_constant_returns_to_base():
    opt = optim.SGD([Parameter(np.zeros(1))], lr=0.2)
    sched = lr_scheduler.PolynomialLR(opt, total_iters=4, power=2.0)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(6):
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    np.testing.assert_allclose(lrs[:5], 0.2 * (1 - np.arange(5) / 4) ** 2, atol=1e-15)
    assert lrs[5:] == [0.0, 0.0]
    opt = optim.SGD([Parameter(np.zeros(1))], lr=0.3)
    sched = lr_scheduler.ConstantLR(opt, factor=0.25, total_iters=2)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(3):
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == pytest.approx([0.075, 0.075, 0.3, 0.3])


@pytest.mark.parametrize(("name", "kwargs"), SCHEDULES[1::3] + SCHEDULES[4:5], ids=str)
def test_schedule_state_dict_round_trip(name, kwargs):
    def run(sched, opt, steps):
        for _ in range(steps):
            opt.step()
            sched.step()
        return sched.get_last_lr()

    opt = optim.SGD([Parameter(np.zeros(1))], lr=0.1)
    sched = getattr(lr_scheduler, name)(opt, **kwargs)
    run(sched, opt, 3)
    saved = json.loads(json.dumps(sched.state_dict()))
    opt_saved = opt.state_dict()
    expected = run(sched, opt, 6)
    opt2 = optim.SGD([Parameter(np.zeros(1))], lr=0.1)
    sched2 = getattr(lr_scheduler, name)(opt2, **kwargs)
    opt2.load_state_dict(opt_saved)
    sched2.load_state_dict(saved)
    assert run(sched2, opt2, 6) == expected


def test_schedule_build_and_bad_input():
    opt = optim.SGD([Parameter(np.zeros(1))], lr=0.1)
    assert isinstance(lr_scheduler.build("constant", opt), lr_scheduler.ConstantLR)
    assert isinstance(lr_scheduler.build("PolynomialLR", opt), lr_scheduler.PolynomialLR)
    with pytest.raises(ValueError, match=r"factor=1\.5.*\(0, 1\]"):
        lr_scheduler.ConstantLR(opt, factor=1.5)
    with pytest.raises(ValueError, match=r"total_iters=0.*>= 1"):
        lr_scheduler.PolynomialLR(opt, total_iters=0)
    with pytest.raises(ValueError, match=r"power=-1"):
        lr_scheduler.PolynomialLR(opt, power=-1)
