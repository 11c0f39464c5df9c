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
* ``fast`` — the time-to-accuracy network of ``recipes/fast.yaml`` (after Keller Jordan's
  airbench): a frozen :class:`~nnparts.nn.PatchWhitening` first convolution (PCA whitening of
  k x k patches, fitted on the training images), then one *conv group* per entry of
  ``channels`` — conv 3x3 -> max-pool 2 -> BN -> activation -> conv 3x3 -> BN -> activation,
  the pool right after the first conv so the normalization and activations run on the pooled
  (4x smaller) maps — global max pooling and a linear layer. ``dirac: true`` starts the convs
  near identity: the first ``min(out, in)`` filters of each are :func:`nnparts.init.dirac`.
  ``whiten_kernel: 0`` replaces the whitening by a learned 3x3 conv of the same width (the
  recipe's ablation).
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


def _dirac_start(conv) -> None:
    """Overwrite the first ``min(out, in)`` filters of ``conv`` with identity (dirac) filters,
    as airbench does (the other filters keep their random init, so none starts dead)."""
    from nnparts import init

    out, cin = conv.weight.shape[:2]
    n = min(out, cin)
    conv.weight.data[:n] = init.dirac((n, *conv.weight.shape[1:]), dtype=conv.weight.dtype)


def build_fast(cfg: dict, in_shape: tuple, num_classes: int, rng=None) -> nn.Module:
    activation = nn.get_activation(cfg["activation"])
    k = cfg["whiten_kernel"]
    if k:
        stem = nn.PatchWhitening(in_shape[0], kernel_size=k, padding=(k - 1) // 2)
        channels = stem.out_channels
    else:  # the ablation without whitening: a learned 3x3 stem of the same width
        k, channels = 3, 2 * 9 * in_shape[0]
        stem = nn.Conv2d(in_shape[0], channels, 3, padding=1, init=cfg["init"], rng=rng)
    layers = [stem, activation()]
    h = in_shape[1] + 2 * ((k - 1) // 2) - k + 1
    for width in cfg["channels"]:
        first = nn.Conv2d(channels, width, 3, padding=1, bias=False, init=cfg["init"], rng=rng)
        second = nn.Conv2d(width, width, 3, padding=1, bias=False, init=cfg["init"], rng=rng)
        if cfg["dirac"]:
            _dirac_start(first)
            _dirac_start(second)
        layers += [first, nn.MaxPool2d(2), nn.BatchNorm2d(width), activation()]
        layers += [second, nn.BatchNorm2d(width), activation()]
        channels, h = width, h // 2
        if h < 1:
            raise ValueError(
                f"model.channels {cfg['channels']} has more conv groups than the "
                f"{in_shape[1]}x{in_shape[2]} images allow (each halves the size)"
            )
    layers += [nn.MaxPool2d(h), nn.Flatten(), nn.Linear(channels, num_classes, bias=False, rng=rng)]
    return nn.Sequential(*layers)


def fit_whitening(model: nn.Module, x: np.ndarray, max_images: int = 10000) -> int:
    """Fit every unfitted :class:`~nnparts.nn.PatchWhitening` layer of ``model`` on (at most
    ``max_images`` of) the training images ``x``; returns how many it fitted."""
    fitted = 0
    for module in model.modules():
        if isinstance(module, nn.PatchWhitening) and not bool(module.fitted):
            module.fit(np.asarray(x[:max_images]))
            fitted += 1
    return fitted


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
    if name == "fast":
        return build_fast(cfg, in_shape, num_classes, rng=rng)
    raise ValueError(f"unknown model {name!r}; allowed: mlp, cnn, resnet, densenet, fast")
