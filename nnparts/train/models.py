"""Models built from the ``model`` section of a config.

* ``mlp`` — the course's MultiLayerNet(Extend): ``[Linear -> (BatchNorm|LayerNorm) -> activation
  -> Dropout] x len(hidden) -> Linear``.
* ``cnn`` — ``len(channels) x (conv 3x3 -> BatchNorm -> ReLU -> max-pool 2) -> dense -> ReLU
  -> dropout -> dense``; ``convs_per_block: 2`` puts two conv-BN-ReLU layers before each pool
  (VGG's blocks).
* ``resnet`` — a small pre-activation residual network (He et al. 2016, "Identity Mappings"):
  conv 3x3 stem, stages of pre-activation blocks (the first block of each later stage halves the
  size), BN-ReLU, global average pooling, linear.
* ``densenet`` — DenseNet(-BC) (Huang et al. 2017): conv stem with 2k channels, DenseBlocks of
  BN-ReLU-Conv layers (bottleneck optional) joined by transitions (BN-ReLU-1x1 conv with
  compression theta, 2x2 average pool), BN-ReLU, global average pooling, linear.
"""

from __future__ import annotations

import math

import numpy as np

from nnparts import nn


def _norm_1d(kind: str, features: int):
    if kind == "batchnorm":
        return nn.BatchNorm1d(features)
    if kind == "layernorm":
        return nn.LayerNorm(features)
    return None


def build_mlp(cfg: dict, in_features: int, num_classes: int, rng=None) -> nn.Module:
    activation = nn.get_activation(cfg["activation"])
    layers = [nn.Flatten()]
    width = in_features
    for hidden in cfg["hidden"]:
        layers.append(nn.Linear(width, hidden, init=cfg["init"], rng=rng))
        norm = _norm_1d(cfg["norm"], hidden)
        if norm is not None:
            layers.append(norm)
        layers.append(activation())
        if cfg["dropout"] > 0:
            layers.append(nn.Dropout(cfg["dropout"]))
        width = hidden
    layers.append(nn.Linear(width, num_classes, init=cfg["init"], rng=rng))
    return nn.Sequential(*layers)


def build_cnn(cfg: dict, in_shape: tuple, num_classes: int, rng=None) -> nn.Module:
    activation = nn.get_activation(cfg["activation"])
    channels, h, w = in_shape
    layers = []
    for out in cfg["channels"]:
        for _ in range(cfg.get("convs_per_block", 1)):
            bias = cfg["norm"] == "none"
            layers.append(
                nn.Conv2d(channels, out, 3, padding=1, bias=bias, init=cfg["init"], rng=rng)
            )
            if cfg["norm"] != "none":
                layers.append(nn.BatchNorm2d(out))
            layers.append(activation())
            channels = out
        layers.append(nn.MaxPool2d(2))
        h, w = h // 2, w // 2
    layers += [
        nn.Flatten(),
        nn.Linear(channels * h * w, cfg["dense"], init=cfg["init"], rng=rng),
        activation(),
    ]
    if cfg["dropout"] > 0:
        layers.append(nn.Dropout(cfg["dropout"]))
    layers.append(nn.Linear(cfg["dense"], num_classes, rng=rng))
    return nn.Sequential(*layers)


def build_resnet(cfg: dict, in_shape: tuple, num_classes: int, rng=None) -> nn.Module:
    widths, blocks = cfg["channels"], cfg["blocks"]
    if len(blocks) != len(widths):
        raise ValueError(
            f"model.blocks {blocks} and model.channels {widths} must have the same length "
            "(one entry per stage)"
        )
    layers = [
        nn.Conv2d(in_shape[0], widths[0], 3, padding=1, bias=False, init="he_normal", rng=rng)
    ]
    channels = widths[0]
    for stage, (width, count) in enumerate(zip(widths, blocks)):
        for i in range(count):
            stride = 2 if (stage > 0 and i == 0) else 1
            layers.append(nn.PreActBlock(channels, width, stride=stride, rng=rng))
            channels = width
    layers += [nn.BatchNorm2d(channels), nn.ReLU(), nn.GlobalAvgPool2d()]
    if cfg["dropout"] > 0:
        layers.append(nn.Dropout(cfg["dropout"]))
    layers.append(nn.Linear(channels, num_classes, rng=rng))
    return nn.Sequential(*layers)


def build_densenet(cfg: dict, in_shape: tuple, num_classes: int, rng=None) -> nn.Module:
    k = cfg["growth_rate"]
    channels = 2 * k
    layers = [nn.Conv2d(in_shape[0], channels, 3, padding=1, bias=False, init="he_normal", rng=rng)]
    for i, count in enumerate(cfg["block_layers"]):
        block = nn.DenseBlock(count, channels, k, bottleneck=cfg["bottleneck"], rng=rng)
        layers.append(block)
        channels = block.out_channels
        if i < len(cfg["block_layers"]) - 1:
            out = max(1, int(math.floor(cfg["compression"] * channels)))
            layers.append(nn.Transition(channels, out, rng=rng))
            channels = out
    layers += [nn.BatchNorm2d(channels), nn.ReLU(), nn.GlobalAvgPool2d()]
    if cfg["dropout"] > 0:
        layers.append(nn.Dropout(cfg["dropout"]))
    layers.append(nn.Linear(channels, num_classes, rng=rng))
    return nn.Sequential(*layers)


def build_model(
    cfg: dict, in_shape: tuple = (1, 28, 28), num_classes: int = 10, rng=None
) -> nn.Module:
    """The model described by a config's ``model`` section; ``rng`` (a Generator or an int seed)
    draws every layer's initial weights, one stream for the whole model."""
    if isinstance(rng, (int, np.integer)):
        rng = np.random.default_rng(int(rng))
    name = cfg["name"]
    if name == "mlp":
        return build_mlp(cfg, math.prod(in_shape), num_classes, rng=rng)
    if name == "cnn":
        return build_cnn(cfg, in_shape, num_classes, rng=rng)
    if name == "resnet":
        return build_resnet(cfg, in_shape, num_classes, rng=rng)
    if name == "densenet":
        return build_densenet(cfg, in_shape, num_classes, rng=rng)
    raise ValueError(f"unknown model {name!r}; allowed: mlp, cnn, resnet, densenet")
