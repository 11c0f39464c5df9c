"""Training configuration: defaults, YAML files, dotted command-line overrides, validation.

A config is a nested dict. Every field has a default (``DEFAULTS``); a YAML file overrides some
of them and ``--section.key value`` on the command line overrides the file::

    nnparts train --config recipes/cnn.yaml --optimizer.lr 0.01 --train.epochs 5

Validation happens up front and every error names the key, the bad value and what is allowed.
"""

from __future__ import annotations

import copy
import os

import yaml

DEFAULTS: dict = {
    "seed": 0,
    "data": {
        "dataset": "fashion-mnist",
        "data_dir": None,
        "download": True,
        "val_size": 5000,  # carved from the training split; the test split is never used to choose
        "train_subset": None,  # use only the first N training images (quick runs, tests)
        "test_subset": None,
        "normalize": "standardize",  # standardize | scale | none
        "augment": [],  # list of {"name": ..., **params}; see nnparts.data augmentation
    },
    "model": {
        "name": "mlp",  # mlp | cnn | resnet | densenet
        "hidden": [512, 256],  # mlp: hidden sizes (the course's MultiLayerNetExtend)
        "activation": "relu",
        "init": "he_normal",
        "norm": "batchnorm",  # none | batchnorm | layernorm
        "dropout": 0.2,
        "channels": [32, 64],  # cnn: conv channels; resnet: stage widths
        "dense": 128,  # cnn: width of the dense layer
        "convs_per_block": 1,  # cnn: conv 3x3-BN-activation layers before each max-pool
        "blocks": [2, 2],  # resnet: pre-activation blocks per stage
        "growth_rate": 12,  # densenet: k
        "block_layers": [4, 4, 4],  # densenet: layers per DenseBlock
        "bottleneck": True,  # densenet-B
        "compression": 0.5,  # densenet-C: theta
    },
    "optimizer": {
        "name": "adam",
        "lr": 0.001,
        "weight_decay": 0.0,  # coupled L2 in the optimizer (decoupled for adamw)
        "momentum": 0.9,  # used by sgd / rmsprop only
        "nesterov": False,
    },
    "regularization": {"l1": 0.0, "l2": 0.0},  # penalty terms added to the loss
    "scheduler": {
        "name": "cosine",  # none | step | exponential | cosine | warmup | plateau
        "step_size": 3,
        "gamma": 0.5,
        "warmup_epochs": 1,
        "patience": 2,
    },
    "train": {
        "epochs": 10,
        "batch_size": 128,
        "label_smoothing": 0.0,
        "grad_clip": None,  # max global gradient norm
        "early_stopping": {"monitor": "val_loss", "patience": None, "min_delta": 0.0},
        "eval_batch_size": 1000,
        # test-time augmentation for the final test evaluation, reported beside the plain one:
        # none | hflip (average the class probabilities of each image and its mirror image)
        "tta": "none",
    },
}

CHOICES = {
    ("model", "name"): ("mlp", "cnn", "resnet", "densenet"),
    ("model", "norm"): ("none", "batchnorm", "layernorm"),
    ("data", "normalize"): ("standardize", "scale", "none"),
    ("scheduler", "name"): ("none", "step", "exponential", "cosine", "warmup", "plateau"),
    ("train", "early_stopping", "monitor"): ("val_loss", "val_accuracy"),
    ("train", "tta"): ("none", "hflip"),
}


class ConfigError(ValueError):
    """An invalid configuration: the message names the key, the value and the allowed values."""


def _merge(base: dict, update: dict, path: tuple = ()) -> dict:
    for key, value in update.items():
        if key not in base:
            where = ".".join(path) or "the top level"
            raise ConfigError(
                f"unknown config key {'.'.join(path + (key,))!r}; valid keys in {where}: "
                f"{', '.join(sorted(base))}"
            )
        if isinstance(base[key], dict) and not isinstance(value, dict):
            raise ConfigError(
                f"config key {'.'.join(path + (key,))!r} must be a mapping of "
                f"{', '.join(sorted(base[key]))}, got {value!r}"
            )
        if isinstance(base[key], dict):
            _merge(base[key], value, path + (key,))
        else:
            base[key] = value
    return base


def load_file(path) -> dict:
    """Read a YAML config file (safe loader)."""
    if not os.path.exists(path):
        raise ConfigError(f"config file {path!s} does not exist")
    with open(path, encoding="utf-8") as f:
        try:
            data = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path!s} is not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path!s} must hold a mapping, got {type(data).__name__}")
    return data


def parse_overrides(items: list[str]) -> dict:
    """``["--optimizer.lr", "0.01", "--model.hidden=[100,100]"]`` -> nested dict (YAML-typed)."""
    result: dict = {}
    i = 0
    while i < len(items):
        item = items[i]
        if not item.startswith("--"):
            raise ConfigError(
                f"unexpected argument {item!r}; overrides look like --section.key value"
            )
        key = item[2:]
        if "=" in key:
            key, raw = key.split("=", 1)
            i += 1
        else:
            if i + 1 >= len(items):
                raise ConfigError(f"override {item!r} has no value")
            raw = items[i + 1]
            i += 2
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str):  # YAML 1.1 reads "1e3" as a string; users mean a number
            try:
                value = float(value)
            except ValueError:
                pass
        node = result
        parts = key.replace("-", "_").split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return result


def resolve(file_config: dict | None = None, overrides: dict | None = None) -> dict:
    """Defaults, then the file, then the overrides; validated."""
    config = copy.deepcopy(DEFAULTS)
    if file_config:
        _merge(config, file_config)
    if overrides:
        _merge(config, overrides)
    validate(config)
    return config


def _get(config, path):
    node = config
    for p in path:
        node = node[p]
    return node


def _fail(key, value, allowed):
    raise ConfigError(f"{key}: invalid value {value!r}; {allowed}")


def validate(config: dict) -> dict:
    """Check every field; raise ConfigError naming the key, the bad value and the allowed ones."""
    from nnparts import init as initializers

    for path, allowed in CHOICES.items():
        value = _get(config, path)
        if value not in allowed:
            _fail(".".join(path), value, f"allowed: {', '.join(allowed)}")

    def positive_int(path, allow_none=False):
        value = _get(config, path)
        if value is None and allow_none:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            _fail(".".join(path), value, "expected a positive integer")

    def number(path, low=None, high=None, low_open=False, allow_none=False, what=None):
        value = _get(config, path)
        if value is None and allow_none:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(".".join(path), value, "expected a number")
        bad = (low is not None and (value < low or (low_open and value == low))) or (
            high is not None and value >= high
        )
        if bad:
            _fail(".".join(path), value, what or f"expected a number in range [{low}, {high})")

    if not isinstance(config["seed"], int) or isinstance(config["seed"], bool):
        _fail("seed", config["seed"], "expected an integer")
    positive_int(("train", "epochs"))
    positive_int(("train", "batch_size"))
    positive_int(("train", "eval_batch_size"))
    positive_int(("data", "train_subset"), allow_none=True)
    positive_int(("data", "test_subset"), allow_none=True)
    value = config["data"]["val_size"]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        _fail("data.val_size", value, "expected a non-negative integer")
    number(
        ("optimizer", "lr"), low=0, low_open=True, what="the learning rate must be > 0, e.g. 0.001"
    )
    number(("optimizer", "weight_decay"), low=0, what="expected weight_decay >= 0")
    number(("optimizer", "momentum"), low=0, high=1, what="expected momentum in [0, 1)")
    number(("model", "dropout"), low=0, high=1, what="expected a dropout ratio in [0, 1)")
    number(("regularization", "l1"), low=0, what="expected a penalty >= 0")
    number(("regularization", "l2"), low=0, what="expected a penalty >= 0")
    number(("train", "label_smoothing"), low=0, high=1, what="expected label_smoothing in [0, 1)")
    number(
        ("train", "grad_clip"),
        low=0,
        low_open=True,
        allow_none=True,
        what="expected a positive max norm or null",
    )
    number(("model", "compression"), low=0, low_open=True, what="expected compression in (0, 1]")
    es = config["train"]["early_stopping"]
    if es["patience"] is not None:
        positive_int(("train", "early_stopping", "patience"))

    model = config["model"]
    for key in ("hidden", "channels", "blocks", "block_layers"):
        value = model[key]
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
        ):
            _fail(f"model.{key}", value, "expected a non-empty list of positive integers")
    for key in ("dense", "growth_rate", "convs_per_block"):
        positive_int(("model", key))

    from nnparts.nn import activation as activations

    not_hidden = (activations.Maxout, activations.Softmax, activations.LogSoftmax)
    hidden_activations = sorted(k for k, v in activations._REGISTRY.items() if v not in not_hidden)
    try:
        act = activations.get_activation(model["activation"])
    except ValueError:
        act = None
    if act is None or act in not_hidden:
        _fail("model.activation", model["activation"], f"allowed: {', '.join(hidden_activations)}")
    if str(model["init"]).lower() not in initializers.INITIALIZERS:
        _fail(
            "model.init", model["init"], f"allowed: {', '.join(sorted(initializers.INITIALIZERS))}"
        )

    from nnparts import optim

    first_order = sorted(
        k for k, v in optim.OPTIMIZERS.items() if v.__module__ != "nnparts.optim.second_order"
    )
    if str(config["optimizer"]["name"]).lower() not in first_order:
        _fail(
            "optimizer.name",
            config["optimizer"]["name"],
            f"allowed for training: {', '.join(first_order)} (second-order methods are full-batch)",
        )

    from nnparts import data

    if config["data"]["dataset"] not in data.DATASETS:
        _fail("data.dataset", config["data"]["dataset"], f"allowed: {', '.join(data.DATASETS)}")
    if config["data"]["data_dir"] is not None and not os.path.isdir(config["data"]["data_dir"]):
        _fail("data.data_dir", config["data"]["data_dir"], "the directory does not exist")
    augment = config["data"]["augment"]
    if not isinstance(augment, list):
        _fail("data.augment", augment, "expected a list of {name: ..., ...} mappings")
    if augment:
        try:
            data.build_augmentation(augment)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"invalid data.augment: {e}") from None
    return config


def dump(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False)
