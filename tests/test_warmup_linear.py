"""WarmupLinear: equal to torch's SequentialLR of two LinearLRs at every step and for every
param group; the shape of the schedule; by name; state round trip; bad arguments."""

from __future__ import annotations

import numpy as np
import pytest

from nnparts import optim
from nnparts.nn import Parameter
from nnparts.optim import lr_scheduler


def two_group_pair(torch, lr=0.4):
    p, q = Parameter(np.zeros(2)), Parameter(np.zeros(3))
    tp, tq = torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)
    ours = optim.SGD([{"params": [p]}, {"params": [q], "lr": lr / 8}], lr=lr, momentum=0.9)
    ref = torch.optim.SGD([{"params": [tp]}, {"params": [tq], "lr": lr / 8}], lr=lr, momentum=0.9)
    return ours, ref


@pytest.mark.parametrize(
    "total, warmup, start, end", [(20, 5, 0.1, 0.0), (13, 1, 0.5, 0.2), (30, 12, 1e-3, 0.05)]
)
def test_equals_torch_sequential_linear_lr(torch, total, warmup, start, end):
    ours, ref = two_group_pair(torch)
    sched = lr_scheduler.WarmupLinear(
        ours, total_steps=total, warmup_steps=warmup, start_factor=start, end_factor=end
    )
    LinearLR = torch.optim.lr_scheduler.LinearLR  # noqa: N806
    ref_sched = torch.optim.lr_scheduler.SequentialLR(
        ref,
        [LinearLR(ref, start, 1.0, warmup), LinearLR(ref, 1.0, end, total - warmup)],
        milestones=[warmup],
    )
    for _ in range(total + 5):  # past total_steps: stays at end_factor
        np.testing.assert_allclose(
            sched.get_last_lr(), ref_sched.get_last_lr(), rtol=1e-12, atol=1e-15
        )
        assert [g["lr"] for g in ours.param_groups] == sched.get_last_lr()
        ours.step()
        ref.step()
        sched.step()
        ref_sched.step()
    np.testing.assert_allclose(sched.get_last_lr(), [0.4 * end, 0.05 * end], atol=1e-15)


def test_ramps_up_peaks_then_decays():
    opt = optim.SGD([Parameter(np.zeros(1))], lr=1.0)
    sched = lr_scheduler.build("warmup_linear", opt, total_steps=10, warmup_steps=4)
    lrs = [sched.get_last_lr()[0]]
    for _ in range(11):
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    expected = [0, 0.25, 0.5, 0.75, 1.0, 5 / 6, 4 / 6, 0.5, 2 / 6, 1 / 6, 0, 0]
    np.testing.assert_allclose(lrs, expected, atol=1e-15)
    assert max(lrs) == lrs[4] == 1.0


def test_state_dict_resumes_the_schedule():
    opt = optim.SGD([Parameter(np.zeros(1))], lr=0.3)
    sched = lr_scheduler.WarmupLinear(opt, total_steps=8, warmup_steps=2, start_factor=0.2)
    for _ in range(3):
        sched.step()
    state = sched.state_dict()
    opt2 = optim.SGD([Parameter(np.zeros(1))], lr=0.3)
    resumed = lr_scheduler.WarmupLinear(opt2, total_steps=8, warmup_steps=2, start_factor=0.2)
    resumed.load_state_dict(state)
    sched.step()
    resumed.step()
    assert resumed.get_last_lr() == sched.get_last_lr()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(total_steps=0), "total_steps"),
        (dict(total_steps=5, warmup_steps=5), "fewer than total_steps=5"),
        (dict(total_steps=5, start_factor=1.5), "start_factor"),
        (dict(total_steps=5, end_factor=-0.1), "end_factor"),
    ],
)
def test_bad_arguments(kwargs, match):
    opt = optim.SGD([Parameter(np.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match=match):
        lr_scheduler.WarmupLinear(opt, **kwargs)
