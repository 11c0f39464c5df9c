"""Hooks (forward, forward-pre, output-gradient, tensor) and the Trainer's per-batch callbacks."""

import numpy as np
import pytest
import torch

import nnparts
from nnparts import functional as F
from nnparts import nn
from nnparts.data import DataLoader
from nnparts.tensor import Tensor
from nnparts.train.callbacks import BatchLogger, Callback, LambdaCallback, wants_batch_end
from nnparts.train.trainer import Trainer, global_grad_norm


def _net(rng):
    return nn.Sequential(
        nn.Linear(5, 7, init="he_normal", rng=rng),
        nn.Tanh(),
        nn.Linear(7, 3, init="he_normal", rng=rng),
    )


def test_forward_hook_sees_each_layer_output_and_remove_detaches():
    rng = np.random.default_rng(0)
    net = _net(rng)
    x = rng.standard_normal((4, 5)).astype(np.float32)
    seen = {}
    handles = [
        m.register_forward_hook(lambda mod, inp, out, i=i: seen.__setitem__(i, (inp, out.data)))
        for i, m in enumerate(net.children())
    ]
    y = net(Tensor(x))
    h1 = x @ net[0].weight.data + net[0].bias.data
    np.testing.assert_allclose(seen[0][1], h1, rtol=1e-6)
    np.testing.assert_allclose(seen[1][1], np.tanh(h1), rtol=1e-6)
    np.testing.assert_allclose(seen[2][1], y.data)
    assert seen[1][0][0].data is seen[0][1] or np.array_equal(seen[1][0][0].data, seen[0][1])
    for h in handles:
        h.remove()
    seen.clear()
    net(Tensor(x))
    assert seen == {}


def test_forward_hook_can_replace_output_and_pre_hook_the_input():
    layer = nn.Linear(2, 2, init="zeros")
    layer.bias.data[:] = 1.0
    with layer.register_forward_hook(lambda m, i, o: o * 3):
        assert np.allclose(layer(Tensor(np.zeros((1, 2), np.float32))).data, 3.0)
    assert np.allclose(layer(Tensor(np.zeros((1, 2), np.float32))).data, 1.0)  # removed on exit
    layer.weight.data[:] = np.eye(2, dtype=np.float32)
    h = layer.register_forward_pre_hook(lambda m, inputs: (inputs[0] * 0 + 2,))
    assert np.allclose(layer(Tensor(np.zeros((1, 2), np.float32))).data, 3.0)
    h.remove()


def test_tensor_hook_gets_the_gradient_and_can_replace_it():
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    y = x * x
    got = []
    y.register_hook(lambda g: got.append(g.copy()))
    y.sum().backward()
    np.testing.assert_array_equal(got[0], np.ones(3))
    np.testing.assert_array_equal(x.grad, 2 * x.data)
    # replacing the gradient flows on to the inputs (as torch's Tensor.register_hook)
    x2 = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    y2 = x2 * x2
    h = y2.register_hook(lambda g: g * 10)
    y2.sum().backward()
    np.testing.assert_array_equal(x2.grad, 20 * x2.data)
    h.remove()
    # a leaf hook sees its accumulated gradient
    leaf = Tensor(np.array([2.0]), requires_grad=True)
    leaf_seen = []
    leaf.register_hook(lambda g: leaf_seen.append(float(g[0])))
    (leaf * 3 + leaf * 4).sum().backward()
    assert leaf_seen == [7.0]


def test_tensor_hook_matches_torch_on_an_intermediate():
    rng = np.random.default_rng(1)
    xv, wv = rng.standard_normal((4, 3)), rng.standard_normal((3, 2))
    x, w = Tensor(xv, requires_grad=True), Tensor(wv, requires_grad=True)
    h = F.tanh(x @ w)
    ours = []
    h.register_hook(lambda g: ours.append(g.copy()))
    (h * h).sum().backward()
    xt = torch.tensor(xv, requires_grad=True)
    ht = torch.tanh(xt @ torch.tensor(wv))
    theirs = []
    ht.register_hook(lambda g: theirs.append(g.numpy().copy()))
    (ht * ht).sum().backward()
    np.testing.assert_allclose(ours[0], theirs[0], atol=1e-12)
    np.testing.assert_allclose(x.grad, xt.grad.numpy(), atol=1e-12)


def test_register_hook_on_a_constant_is_refused():
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor(np.ones(2)).register_hook(lambda g: None)


def test_output_grad_hook_gives_dloss_doutput_per_layer():
    rng = np.random.default_rng(2)
    net = _net(rng)
    x = rng.standard_normal((6, 5)).astype(np.float64)
    for p in net.parameters():
        p.data = p.data.astype(np.float64)
    grads = {}
    handles = [
        m.register_output_grad_hook(lambda mod, g, i=i: grads.__setitem__(i, g.copy()))
        for i, m in enumerate(net.children())
    ]
    y = rng.integers(0, 3, 6)
    loss = F.cross_entropy(net(Tensor(x)), y)
    loss.backward()
    # the last layer's output gradient is (softmax - onehot) / N
    logits = net(Tensor(x)).data
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(6), y] -= 1
    np.testing.assert_allclose(grads[2], p / 6, atol=1e-12)
    # the tanh's output gradient is the next layer's input gradient: d_out @ W^T
    np.testing.assert_allclose(grads[1], grads[2] @ net[2].weight.data.T, atol=1e-12)
    for h in handles:
        h.remove()
    grads.clear()
    F.cross_entropy(net(Tensor(x)), y).backward()
    assert grads == {}


class _Counter(Callback):
    def __init__(self):
        self.logs = []

    def on_batch_end(self, trainer, logs):
        self.logs.append(dict(logs))


def _trainer(callbacks, n=50, batch=16, grad_clip=None):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, 5)).astype(np.float32)
    y = rng.integers(0, 3, n)
    net = _net(rng)
    opt = nnparts.optim.SGD(net.parameters(), lr=0.1)
    loader = DataLoader(x, y, batch_size=batch, shuffle=True, seed=0)
    return Trainer(
        net, opt, loader, callbacks=callbacks, progress=False, log=None, grad_clip=grad_clip
    )


def test_batch_callbacks_fire_once_per_step_with_loss_lr_grad_norm():
    counter = _Counter()
    t = _trainer([counter])
    t.fit(3)
    steps_per_epoch = int(np.ceil(50 / 16))
    assert len(counter.logs) == 3 * steps_per_epoch
    assert [r["step"] for r in counter.logs] == list(range(1, 3 * steps_per_epoch + 1))
    assert [r["batch"] for r in counter.logs[:steps_per_epoch]] == list(
        range(1, steps_per_epoch + 1)
    )
    assert {r["epoch"] for r in counter.logs} == {1, 2, 3}
    assert all(
        r["lr"] == 0.1 and r["grad_norm"] > 0 and np.isfinite(r["loss"]) for r in counter.logs
    )
    assert sum(r["batch_size"] for r in counter.logs[:steps_per_epoch]) == 50
    # the epoch's mean training loss is the size-weighted mean of its batch losses
    first = counter.logs[:steps_per_epoch]
    mean = sum(r["loss"] * r["batch_size"] for r in first) / 50
    assert t.history[0]["train_loss"] == pytest.approx(mean, rel=1e-6)
    assert t.global_step == 3 * steps_per_epoch


def test_grad_norm_is_the_norm_before_clipping():
    logger = BatchLogger()
    t = _trainer([logger], grad_clip=1e-3)
    seen = []

    class Check(Callback):
        def on_batch_end(self, trainer, logs):
            seen.append(global_grad_norm(trainer.model.parameters()))

    t.callbacks.append(Check())
    t.fit(1)
    assert all(r["grad_norm"] > 1e-3 for r in logger.records)
    assert all(n == pytest.approx(1e-3, rel=1e-4) for n in seen)  # clipped afterwards


def test_a_batch_callback_can_stop_training_mid_epoch():
    stopper = LambdaCallback(
        on_batch_end=lambda t, logs: setattr(t, "stop_training", logs["step"] >= 2)
    )
    t = _trainer([stopper])
    t.fit(5)
    assert t.global_step == 2
    assert t.epoch == 1


def test_callbacks_without_on_batch_end_are_not_called_per_batch():
    class EpochOnly(Callback):
        pass

    assert not wants_batch_end(EpochOnly())
    assert wants_batch_end(_Counter())
    assert wants_batch_end(LambdaCallback(on_batch_end=lambda t, l: None))
    assert not wants_batch_end(LambdaCallback(on_epoch_end=lambda t, l: None))


def test_global_step_survives_state_dict_round_trip():
    t = _trainer([])
    t.fit(2)
    state = t.state_dict()
    t2 = _trainer([])
    t2.load_state_dict(state)
    assert t2.global_step == t.global_step > 0
