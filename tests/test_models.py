"""Models from configs: shapes, parameter counts, and a CNN beating an MLP on real images."""

from __future__ import annotations

import numpy as np
import pytest

import nnparts
from nnparts import nn
from nnparts.train import config as configs
from nnparts.train import run
from nnparts.train.models import build_model


def _model_cfg(**model):
    return configs.resolve({"model": model})["model"]


@pytest.mark.parametrize(
    "model",
    [
        {"name": "mlp", "hidden": [32, 16], "norm": "layernorm", "activation": "elu"},
        {"name": "mlp", "hidden": [8], "norm": "none", "dropout": 0.0, "activation": "swish"},
        {"name": "cnn", "channels": [4, 8], "dense": 16},
        {"name": "cnn", "channels": [4, 8], "dense": 16, "convs_per_block": 2},
        {"name": "resnet", "channels": [4, 8], "blocks": [1, 1]},
        {"name": "densenet", "growth_rate": 4, "block_layers": [2, 2], "bottleneck": True},
        {"name": "densenet", "growth_rate": 4, "block_layers": [2], "bottleneck": False},
    ],
)
def test_every_architecture_maps_images_to_logits_and_trains_a_step(model):
    cfg = _model_cfg(**model)
    net = build_model(cfg, (1, 28, 28), 10, rng=np.random.default_rng(0))
    x = nnparts.Tensor(np.random.default_rng(1).random((4, 1, 28, 28), dtype=np.float32))
    logits = net(x)
    assert logits.shape == (4, 10) and logits.dtype == np.float32
    loss = nnparts.functional.cross_entropy(logits, np.array([0, 1, 2, 3]))
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())
    assert net.num_parameters() == sum(p.size for p in net.parameters()) > 0


def test_mlp_is_the_course_multilayer_net():
    cfg = _model_cfg(name="mlp", hidden=[100, 50], norm="batchnorm", dropout=0.5, activation="relu")
    net = build_model(cfg, (1, 28, 28), 10)
    kinds = [type(m).__name__ for m in net]
    assert kinds == [
        "Flatten",
        "Linear",
        "BatchNorm1d",
        "ReLU",
        "Dropout",
        "Linear",
        "BatchNorm1d",
        "ReLU",
        "Dropout",
        "Linear",
    ]
    # 784*100+100 + 2*100 + 100*50+50 + 2*50 + 50*10+10
    assert net.num_parameters() == 78500 + 200 + 5050 + 100 + 510


def test_densenet_channel_bookkeeping():
    cfg = _model_cfg(name="densenet", growth_rate=6, block_layers=[3, 3], compression=0.5)
    net = build_model(cfg, (1, 28, 28), 10)
    blocks = [m for m in net if isinstance(m, nn.DenseBlock)]
    assert blocks[0].out_channels == 12 + 3 * 6
    transition = [m for m in net if isinstance(m, nn.Transition)][0]
    out = transition(nnparts.Tensor(np.zeros((1, 30, 28, 28), np.float32)))
    assert out.shape == (1, 15, 14, 14)


def test_resnet_stage_mismatch_is_a_clear_error():
    cfg = _model_cfg(name="resnet", channels=[8, 16], blocks=[1])
    with pytest.raises(ValueError, match=r"model\.blocks \[1\] and model\.channels \[8, 16\]"):
        build_model(cfg, (1, 28, 28), 10)


@pytest.mark.slow
def test_short_cnn_training_beats_the_same_mlp_training(fashion_dir):
    base = {
        "seed": 0,
        "data": {
            "data_dir": fashion_dir,
            "train_subset": 6000,
            "val_size": 0,
            "test_subset": 2000,
            "download": False,
        },
        "train": {"epochs": 3, "batch_size": 32},
        "scheduler": {"name": "none"},
    }
    mlp = run.train(
        configs.resolve({**base, "model": {"name": "mlp", "hidden": [64]}}),
        quiet=True,
        progress=False,
    )
    cnn = run.train(
        configs.resolve({**base, "model": {"name": "cnn", "channels": [8, 16], "dense": 64}}),
        quiet=True,
        progress=False,
    )
    assert cnn["test_accuracy"] > mlp["test_accuracy"] + 0.01, (
        cnn["test_accuracy"],
        mlp["test_accuracy"],
    )


def test_int_seed_gives_independent_weight_and_bias():
    # one generator per layer: the bias must not repeat the first weights
    for layer in (nn.Linear(5, 3, rng=0), nn.Conv2d(2, 3, 3, rng=0)):
        assert not np.allclose(layer.bias.data, layer.weight.data.reshape(-1)[:3])
        again = type(layer)(*((5, 3) if isinstance(layer, nn.Linear) else (2, 3, 3)), rng=0)
        np.testing.assert_array_equal(again.weight.data, layer.weight.data)


def test_cnn_convs_per_block_stacks_conv_bn_relu_before_each_pool():
    one = build_model(_model_cfg(name="cnn", channels=[4, 8], dense=16), rng=0)
    two = build_model(_model_cfg(name="cnn", channels=[4, 8], dense=16, convs_per_block=2), rng=0)
    kinds = [type(m).__name__ for m in two.children()]
    assert kinds[:9] == ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "ReLU",
                         "MaxPool2d", "Conv2d", "BatchNorm2d"]  # fmt: skip
    convs = [m for m in two.children() if type(m).__name__ == "Conv2d"]
    assert [tuple(c.weight.shape) for c in convs] == [(4, 1, 3, 3), (4, 4, 3, 3), (8, 4, 3, 3),
                                                      (8, 8, 3, 3)]  # fmt: skip
    extra = (4 * 4 * 9 + 2 * 4) + (8 * 8 * 9 + 2 * 8)  # one more conv + BatchNorm per block
    assert two.num_parameters() == one.num_parameters() + extra
    with pytest.raises(configs.ConfigError, match="model.convs_per_block: invalid value 0"):
        _model_cfg(name="cnn", convs_per_block=0)
