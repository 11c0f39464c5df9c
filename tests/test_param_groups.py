"""group_parameters: which parameters land in which group; SGD (Nesterov, momentum, weight
decay) on two groups of different lr equals torch.optim.SGD; schedulers keep the groups'
lr ratio exactly as torch's do."""

from __future__ import annotations

import numpy as np
import pytest

from nnparts import nn, optim
from nnparts.optim import group_parameters, lr_scheduler


def small_net():
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, rng=0),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 8, rng=1),
        nn.LayerNorm(8),
        nn.Linear(8, 2, rng=2),
    )


def test_groups_split_norm_biases_norm_weights_biases_and_weights():
    model = small_net()
    groups = group_parameters(
        model,
        lr=0.1,
        weight_decay=5e-4,
        norm_bias_lr_scale=64,
        norm_weight_decay=0.0,
        bias_weight_decay=1e-5,
    )
    ids = [[id(p) for p in g["params"]] for g in groups]
    assert ids == [
        [id(model[1].bias), id(model[5].bias)],
        [id(model[1].weight), id(model[5].weight)],
        [id(model[0].bias), id(model[4].bias), id(model[6].bias)],
        [id(model[0].weight), id(model[4].weight), id(model[6].weight)],
    ]
    assert [(g["lr"], g["weight_decay"]) for g in groups] == [
        (6.4, 0.0),
        (0.1, 0.0),
        (0.1, 1e-5),
        (0.1, 5e-4),
    ]
    assert sorted(i for g in ids for i in g) == sorted(id(p) for p in model.parameters())


def test_kinds_with_equal_settings_share_a_group():
    model = small_net()
    two = group_parameters(model, lr=0.2, weight_decay=1e-4, norm_bias_lr_scale=10)
    assert [len(g["params"]) for g in two] == [2, 8]
    assert [g["lr"] for g in two] == pytest.approx([2.0, 0.2])
    assert len(group_parameters(model, lr=0.2)) == 1
    optim.SGD(two, lr=0.2)  # every key is a hyperparameter the optimizer knows
    with pytest.raises(ValueError, match="norm_bias_lr_scale"):
        group_parameters(model, lr=0.1, norm_bias_lr_scale=-1)


def twin_groups(torch, model, **kwargs):
    """Our groups and torch groups over float64 copies of the same parameters."""
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    groups = group_parameters(model, **kwargs)
    ref = [
        {
            "params": [torch.tensor(p.data, requires_grad=True) for p in g["params"]],
            "lr": g["lr"],
            "weight_decay": g["weight_decay"],
        }
        for g in groups
    ]
    return groups, ref


def feed_same_gradients(torch, rng, ours, ref):
    for group, ref_group in zip(ours.param_groups, ref.param_groups):
        for p, q in zip(group["params"], ref_group["params"]):
            g = rng.standard_normal(p.shape)
            p.grad = g
            q.grad = torch.from_numpy(g.copy())


def assert_same_params(ours, ref, atol=1e-12):
    for group, ref_group in zip(ours.param_groups, ref.param_groups):
        for p, q in zip(group["params"], ref_group["params"]):
            np.testing.assert_allclose(p.data, q.detach().numpy(), atol=atol, rtol=1e-10)


def test_sgd_two_groups_equals_torch(torch, rng):
    groups, ref_groups = twin_groups(
        torch, small_net(), lr=0.05, weight_decay=1e-3, norm_bias_lr_scale=8
    )
    ours = optim.SGD(groups, lr=0.05, momentum=0.9, nesterov=True)
    ref = torch.optim.SGD(ref_groups, lr=0.05, momentum=0.9, nesterov=True)
    start = [p.data.copy() for p in ours.param_groups[0]["params"]]
    for _ in range(5):
        feed_same_gradients(torch, rng, ours, ref)
        ours.step()
        ref.step()
        assert_same_params(ours, ref)
    moved = [np.abs(p.data - s).max() for p, s in zip(ours.param_groups[0]["params"], start)]
    assert min(moved) > 0.1  # the norm biases' lr really is 8x larger


@pytest.mark.parametrize(
    "ours_name, ours_kw, torch_name, torch_kw",
    [
        ("CosineAnnealingLR", dict(T_max=20), "CosineAnnealingLR", None),
        ("LinearWarmup", dict(warmup_steps=4, start_factor=0.1), "LinearLR", "warmup"),
    ],
)
def test_schedulers_keep_each_groups_lr_ratio(torch, rng, ours_name, ours_kw, torch_name, torch_kw):
    groups, ref_groups = twin_groups(
        torch, small_net(), lr=0.1, weight_decay=5e-4, norm_bias_lr_scale=10
    )
    ours = optim.SGD(groups, lr=0.1, momentum=0.9)
    ref = torch.optim.SGD(ref_groups, lr=0.1, momentum=0.9)
    sched = getattr(lr_scheduler, ours_name)(ours, **ours_kw)
    if torch_kw == "warmup":
        torch_kw = dict(total_iters=4, start_factor=0.1)
    ref_sched = getattr(torch.optim.lr_scheduler, torch_name)(ref, **(torch_kw or ours_kw))
    for _ in range(10):
        lrs = sched.get_last_lr()
        np.testing.assert_allclose(lrs, ref_sched.get_last_lr(), rtol=1e-12)
        assert lrs[0] / lrs[1] == pytest.approx(10.0, rel=1e-12)
        feed_same_gradients(torch, rng, ours, ref)
        ours.step()
        ref.step()
        sched.step()
        ref_sched.step()
        assert_same_params(ours, ref)
    assert [g["initial_lr"] for g in ours.param_groups] == pytest.approx([1.0, 0.1])
