"""Learning-rate schedules: equal to torch.optim.lr_scheduler, state round trip, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnparts import optim
from nnparts.nn import Parameter
from nnparts.optim import lr_scheduler


def make_pair(torch, lr=0.1, groups=False):
    p, q = Parameter(np.zeros(2)), Parameter(np.zeros(3))
    tp, tq = torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)
    if groups:
        ours = optim.SGD([{"params": [p]}, {"params": [q], "lr": lr / 10}], lr=lr, momentum=0.9)
        ref = torch.optim.SGD(
            [{"params": [tp]}, {"params": [tq], "lr": lr / 10}], lr=lr, momentum=0.9
        )
    else:
        ours = optim.SGD([p, q], lr=lr)
        ref = torch.optim.SGD([tp, tq], lr=lr)
    return ours, ref


CASES = [
    ("StepLR", dict(step_size=7, gamma=0.5), "StepLR", dict(step_size=7, gamma=0.5)),
    ("ExponentialLR", dict(gamma=0.93), "ExponentialLR", dict(gamma=0.93)),
    ("CosineAnnealingLR", dict(T_max=20), "CosineAnnealingLR", dict(T_max=20)),
    (
        "CosineAnnealingLR",
        dict(T_max=13, eta_min=1e-3),
        "CosineAnnealingLR",
        dict(T_max=13, eta_min=1e-3),
    ),
    ("LinearWarmup", dict(), "LinearLR", dict()),
    (
        "LinearWarmup",
        dict(warmup_steps=10, start_factor=0.01),
        "LinearLR",
        dict(total_iters=10, start_factor=0.01),
    ),
    (
        "LinearWarmup",
        dict(warmup_steps=8, start_factor=0.5, end_factor=0.8),
        "LinearLR",
        dict(total_iters=8, start_factor=0.5, end_factor=0.8),
    ),
]


@pytest.mark.parametrize(
    ("ours_name", "ours_kw", "torch_name", "torch_kw"),
    CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)],
)
@pytest.mark.parametrize("groups", [False, True])
def test_schedule_equals_torch(torch, ours_name, ours_kw, torch_name, torch_kw, groups):
    ours, ref = make_pair(torch, groups=groups)
    sched = getattr(lr_scheduler, ours_name)(ours, **ours_kw)
    ref_sched = getattr(torch.optim.lr_scheduler, torch_name)(ref, **torch_kw)
    assert sched.get_last_lr() == pytest.approx(ref_sched.get_last_lr(), rel=1e-12)
    seen = set()
    for _ in range(50):
        ours.step()
        ref.step()
        sched.step()
        ref_sched.step()
        np.testing.assert_allclose(sched.get_last_lr(), ref_sched.get_last_lr(), rtol=1e-12)
        assert [g["lr"] for g in ours.param_groups] == sched.get_last_lr()
        seen.add(round(sched.get_last_lr()[0], 12))
    assert len(seen) > 2  # the lr really changed


def test_reduce_on_plateau_equals_torch(torch):
    ours, ref = make_pair(torch, groups=True)
    kw = dict(factor=0.5, patience=2, cooldown=1, min_lr=[1e-3, 1e-4], threshold=0.01)
    sched = lr_scheduler.ReduceLROnPlateau(ours, **kw)
    ref_sched = torch.optim.lr_scheduler.ReduceLROnPlateau(ref, **kw)
    metrics = [1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.8, 0.8, 0.8, 0.8, 0.8] + [0.8] * 30
    for m in metrics:
        sched.step(m)
        ref_sched.step(m)
        assert sched.get_last_lr() == pytest.approx(ref_sched.get_last_lr(), rel=1e-12)
    assert sched.get_last_lr() == pytest.approx([1e-3, 1e-4])  # floored at min_lr


@pytest.mark.parametrize("mode,threshold_mode", [("max", "abs"), ("min", "abs"), ("max", "rel")])
def test_reduce_on_plateau_modes_equal_torch(torch, mode, threshold_mode):
    ours, ref = make_pair(torch)
    kw = dict(mode=mode, threshold_mode=threshold_mode, patience=1, threshold=0.05)
    sched = lr_scheduler.ReduceLROnPlateau(ours, **kw)
    ref_sched = torch.optim.lr_scheduler.ReduceLROnPlateau(ref, **kw)
    rng = np.random.default_rng(0)
    for m in np.cumsum(rng.normal(0, 0.1, 40)):
        sched.step(float(m))
        ref_sched.step(float(m))
        assert sched.get_last_lr() == pytest.approx(ref_sched.get_last_lr(), rel=1e-12)


def test_warmup_ramps_linearly_then_holds():
    opt = optim.Adam([Parameter(np.zeros(1))], lr=1e-3)
    sched = lr_scheduler.LinearWarmup(opt, warmup_steps=4, start_factor=0.2)
    lrs = [sched.get_last_lr()[0]]
    for _ in range(7):
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    np.testing.assert_allclose(lrs, 1e-3 * np.array([0.2, 0.4, 0.6, 0.8, 1, 1, 1, 1]), rtol=1e-12)


@pytest.mark.parametrize(
    "name,kw",
    [
        ("StepLR", dict(step_size=3)),
        ("CosineAnnealingLR", dict(T_max=10)),
        ("LinearWarmup", dict(warmup_steps=6)),
        ("ReduceLROnPlateau", dict(patience=1)),
    ],
)
def test_state_dict_round_trip(name, kw):
    def run(sched, opt, steps):
        for _ in range(steps):
            opt.step()
            sched.step(1.0) if name == "ReduceLROnPlateau" else sched.step()
        return sched.get_last_lr()

    opt = optim.SGD([Parameter(np.zeros(1))], lr=0.1)
    sched = getattr(lr_scheduler, name)(opt, **kw)
    run(sched, opt, 4)
    saved = json.loads(json.dumps(sched.state_dict()))  # JSON-able
    opt_saved = opt.state_dict()
    expected = run(sched, opt, 5)

    opt2 = optim.SGD([Parameter(np.zeros(1))], lr=0.1)
    sched2 = getattr(lr_scheduler, name)(opt2, **kw)
    opt2.load_state_dict(opt_saved)
    sched2.load_state_dict(saved)
    assert run(sched2, opt2, 5) == expected


def test_build_and_bad_input():
    opt = optim.SGD([Parameter(np.zeros(1))], lr=0.1)
    assert isinstance(lr_scheduler.build("cosine", opt, T_max=5), lr_scheduler.CosineAnnealingLR)
    with pytest.raises(ValueError, match="valid names"):
        lr_scheduler.build("cosine_restarts", opt)
    with pytest.raises(ValueError, match="step_size"):
        lr_scheduler.StepLR(opt, step_size=0)
    with pytest.raises(ValueError, match="T_max"):
        lr_scheduler.CosineAnnealingLR(opt, T_max=-1)
    with pytest.raises(ValueError, match="start_factor"):
        lr_scheduler.LinearWarmup(opt, start_factor=0.0)
    with pytest.raises(ValueError, match="factor"):
        lr_scheduler.ReduceLROnPlateau(opt, factor=1.5)
    with pytest.raises(ValueError, match="mode"):
        lr_scheduler.ReduceLROnPlateau(opt, mode="lowest")
    with pytest.raises(ValueError, match="optimizer"):
        lr_scheduler.ExponentialLR(object(), gamma=0.9)
