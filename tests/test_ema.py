"""WeightEMA: equal to torch's AveragedModel with get_ema_multi_avg_fn (weights and BatchNorm
buffers, use_buffers on and off), applied() swaps and restores, checkpoint round trip, and
the average of noisy weights is closer to the optimum than the weights themselves."""

from __future__ import annotations

import numpy as np
import pytest
from optim_helpers import save_and_load

import nnparts.functional as F
from nnparts import Tensor, nn, optim
from nnparts.optim import WeightEMA


def twin_models(torch, rng):
    """Linear-BatchNorm1d-ReLU-Linear in nnparts and torch, same float64 weights."""
    ours = nn.Sequential(
        nn.Linear(4, 6, dtype=np.float64),
        nn.BatchNorm1d(6, dtype=np.float64),
        nn.ReLU(),
        nn.Linear(6, 2, dtype=np.float64),
    )
    ref = torch.nn.Sequential(
        torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6), torch.nn.ReLU(), torch.nn.Linear(6, 2)
    )
    with torch.no_grad():
        for i in (0, 3):
            ref[i].weight.copy_(torch.from_numpy(ours[i].weight.data.T.copy()))
            ref[i].bias.copy_(torch.from_numpy(ours[i].bias.data))
        ref[1].weight.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, 6)))
        ours[1].weight.data[...] = ref[1].weight.detach().numpy()
    return ours, ref


def as_ours(name, tensor):
    value = tensor.detach().numpy()
    return value.T if name.endswith("weight") and value.ndim == 2 else value


def train_both(torch, rng, ours, ref, ema, averaged, steps):
    opt = optim.SGD(ours.parameters(), lr=0.1, momentum=0.9)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    for _ in range(steps):
        x, y = rng.standard_normal((8, 4)), rng.standard_normal((8, 2))
        loss = F.mse_loss(ours(Tensor(x)), Tensor(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        ref_loss = torch.nn.functional.mse_loss(ref(torch.from_numpy(x)), torch.from_numpy(y))
        ref_opt.zero_grad()
        ref_loss.backward()
        ref_opt.step()
        ema.update()
        averaged.update_parameters(ref)


@pytest.mark.parametrize("use_buffers", [True, False])
def test_equals_torch_averaged_model(torch, rng, use_buffers):
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    ours, ref = twin_models(torch, rng)
    decay = 0.8
    ema = WeightEMA(ours, decay=decay, use_buffers=use_buffers)
    averaged = AveragedModel(ref, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=use_buffers)
    train_both(torch, rng, ours, ref, ema, averaged, steps=6)
    assert ema.n_averaged == int(averaged.n_averaged) == 6

    reference = dict(averaged.module.named_parameters())
    reference.update(averaged.module.named_buffers())
    assert set(ema.averages) <= set(reference)
    for name, value in ema.averages.items():
        np.testing.assert_allclose(value, as_ours(name, reference[name]), atol=1e-6, err_msg=name)
    live = dict(ours.named_parameters())
    assert not np.allclose(ema.averages["0.weight"], live["0.weight"].data)  # really averaged

    evaluated = nn.Sequential(
        nn.Linear(4, 6, dtype=np.float64),
        nn.BatchNorm1d(6, dtype=np.float64),
        nn.ReLU(),
        nn.Linear(6, 2, dtype=np.float64),
    )
    evaluated.load_state_dict(ours.state_dict())
    ema.copy_to(evaluated)
    evaluated.eval()
    averaged.eval()
    x = rng.standard_normal((5, 4))
    np.testing.assert_allclose(
        evaluated(Tensor(x)).data, averaged(torch.from_numpy(x)).detach().numpy(), atol=1e-6
    )
    if use_buffers:  # the running statistics were averaged too, so they differ from the model's
        assert not np.allclose(evaluated[1].running_mean, ours[1].running_mean)
    else:  # the model's own buffers were left in place (torch copies them at each update)
        np.testing.assert_array_equal(evaluated[1].running_mean, ours[1].running_mean)
        assert "1.running_mean" not in ema.averages


def test_first_update_copies_then_averages(rng):
    layer = nn.Linear(3, 2, rng=0)
    ema = WeightEMA(layer, decay=0.5)
    w0 = layer.weight.data.copy()
    layer.weight.data[...] = 1.0
    ema.update()  # n_averaged == 0: a copy, not an average with the starting weights
    np.testing.assert_array_equal(ema.averages["weight"], 1.0)
    layer.weight.data[...] = 3.0
    ema.update()
    np.testing.assert_allclose(ema.averages["weight"], 2.0)
    assert ema.averages["weight"].dtype == np.float32
    assert not np.array_equal(w0, ema.averages["weight"])


def test_applied_swaps_in_and_restores(rng):
    model = nn.Sequential(nn.Linear(3, 4, rng=0), nn.BatchNorm1d(4))
    ema = WeightEMA(model, decay=0.5)
    ema.update()
    model[0].weight.data += 1.0
    model[1].running_mean[...] = 7.0
    ema.update()
    original = {k: v.copy() for k, v in model.state_dict().items()}
    with ema.applied() as inside:
        assert inside is model
        np.testing.assert_allclose(model[0].weight.data, ema.averages["0.weight"])
        np.testing.assert_allclose(model[1].running_mean, 3.5)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, original[k])
    with pytest.raises(KeyError), ema.applied():  # restored after an exception too
        raise KeyError("boom")
    np.testing.assert_array_equal(model[0].weight.data, original["0.weight"])


def test_state_dict_round_trip_through_npz_and_json(rng):
    model = nn.Sequential(nn.Linear(3, 4, rng=0), nn.BatchNorm1d(4))
    ema = WeightEMA(model, decay=0.9)
    for _ in range(3):
        model[0].weight.data += rng.standard_normal(model[0].weight.shape).astype(np.float32)
        ema.update()
    restored = WeightEMA(model, decay=0.5)
    restored.load_state_dict(save_and_load(ema.state_dict()))
    assert restored.n_averaged == 3 and restored.decay == 0.9
    for k, v in ema.averages.items():
        np.testing.assert_array_equal(restored.averages[k], v)
    with pytest.raises(ValueError, match="does not match"):
        WeightEMA(model, use_buffers=False).load_state_dict(ema.state_dict())
    with pytest.raises(ValueError, match="does not match"):
        ema.copy_to(nn.Linear(3, 4))


def test_average_of_noisy_weights_is_closer_to_the_optimum(rng):
    """SGD with noisy gradients on a quadratic bowl jitters around w* = 1; the EMA of the
    iterates sits much closer (its variance is smaller by about (1-decay)/(1+decay)/lr)."""
    layer = nn.Linear(50, 20, bias=False, rng=0)
    opt = optim.SGD(layer.parameters(), lr=0.2)
    ema = WeightEMA(layer, decay=0.95)
    for _ in range(300):
        w = layer.weight.data
        layer.weight.grad = (w - 1.0) + rng.standard_normal(w.shape).astype(np.float32)
        opt.step()
        ema.update()
    raw_error = np.mean((layer.weight.data - 1.0) ** 2)
    ema_error = np.mean((ema.averages["weight"] - 1.0) ** 2)
    assert ema_error < raw_error / 5
