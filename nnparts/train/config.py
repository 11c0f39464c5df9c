"""Training configuration: defaults, YAML files, dotted command-line overrides, validation.

A config is a nested dict. Every field has a default (``DEFAULTS``); a YAML file overrides some
of them and ``--section.key value`` on the command line overrides the file::

    nnparts train --config recipes/cnn.yaml --optimizer.lr 0.01 --train.epochs 5

Validation happens up front and every error names the key, the bad value and what is allowed.
"""

from __future__ import annotations

import copy
import math
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
        "name": "mlp",  # mlp | cnn | resnet | densenet | fast
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
        "whiten_kernel": 3,  # fast: k of the frozen k x k patch-whitening first conv (0: learned)
        "dirac": True,  # fast: start each conv near identity (dirac filters)
    },
    "optimizer": {
        "name": "adam",
        "lr": 0.001,
        "weight_decay": 0.0,  # coupled L2 in the optimizer (decoupled for adamw)
        "momentum": 0.9,  # used by sgd / rmsprop only
        "nesterov": False,
        # lr multiplier of the BatchNorm/LayerNorm biases (their own param group; airbench
        # trains them with a much larger lr than the weights)
        "norm_bias_lr_scale": 1.0,
    },
    "regularization": {"l1": 0.0, "l2": 0.0},  # penalty terms added to the loss
    "scheduler": {
        "name": "cosine",  # none | step | exponential | cosine | warmup | plateau
        "step_size": 3,
        "gamma": 0.5,
        "warmup_epochs": 1,  # warmup: whole epochs; warmup_linear: may be a fraction
        "end_factor": 0.0,  # warmup_linear: the last step's lr as a fraction of the peak
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
        # none | hflip (average the class probabilities of each image and its mirror image) |
        # hflip_shift (also the image and its mirror shifted one pixel left and right)
        "tta": "none",
        # > 0: evaluate and keep an exponential moving average of the weights (per step):
        # w_ema = decay * w_ema + (1 - decay) * w; final.npz holds the averaged weights
        "ema_decay": 0.0,
    },
    # size > 1 trains an ensemble (nnparts.train.ensemble): bagging (bootstrap resamples),
    # seeds (whole set, other seeds) or snapshot (one run, cyclic cosine, a member per cycle)
    "ensemble": {"size": 1, "method": "bagging"},
}

CHOICES = {
    ("model", "name"): ("mlp", "cnn", "resnet", "densenet", "fast"),
    ("model", "norm"): ("none", "batchnorm", "layernorm"),
    ("data", "normalize"): ("standardize", "scale", "none"),
    ("scheduler", "name"): (
        "none",
        "step",
        "exponential",
        "cosine",
        "warmup",
        "plateau",
        "warmup_linear",
    ),
    ("train", "early_stopping", "monitor"): ("val_loss", "val_accuracy"),
    ("train", "tta"): ("none", "hflip", "hflip_shift"),
    ("ensemble", "method"): ("bagging", "seeds", "snapshot"),
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


EXAMPLE_CONFIG = "e.g. `model: {name: cnn}` (see recipes/*.yaml or `nnparts train --show-config`)"


def load_file(path) -> dict:
    """Read a YAML config file (safe loader); a missing, unreadable, empty or non-mapping file
    is a ConfigError that names the path and the fix."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ConfigError(
            f"config file {path} is a directory; pass a YAML file, e.g. --config {path}/cnn.yaml"
        )
    if not os.path.exists(path):
        raise ConfigError(
            f"config file {path} does not exist; check the path (recipes are in recipes/*.yaml)"
        )
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise ConfigError(
            f"config file {path} is not a text (UTF-8) file; pass a YAML file"
        ) from None
    except OSError as e:
        raise ConfigError(f"config file {path} cannot be read ({e.strerror}); check it") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        one_line = " ".join(str(e).split())
        raise ConfigError(f"config file {path} is not valid YAML: {one_line}") from None
    if data is None:
        raise ConfigError(
            f"config file {path} is empty; put the fields to change in it, {EXAMPLE_CONFIG}, "
            "or leave out --config to train with the defaults"
        )
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping of sections, got a YAML "
            f"{type(data).__name__} ({str(data)[:40]!r}); write it as {EXAMPLE_CONFIG}"
        )
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


def allowed_values() -> dict:
    """``CHOICES`` and the fields whose allowed values come from a registry (dataset names,
    hidden activations, initializers, first-order optimizers): dotted path tuple -> names."""
    from nnparts import data, optim
    from nnparts import init as initializers
    from nnparts.nn import activation as activations

    not_hidden = (activations.Maxout, activations.Softmax, activations.LogSoftmax)
    out = dict(CHOICES)
    out[("data", "dataset")] = tuple(data.DATASETS)
    out[("model", "activation")] = tuple(
        sorted(k for k, v in activations._REGISTRY.items() if v not in not_hidden)
    )
    out[("model", "init")] = tuple(sorted(initializers.INITIALIZERS))
    out[("optimizer", "name")] = tuple(
        sorted(
            k for k, v in optim.OPTIMIZERS.items() if v.__module__ != "nnparts.optim.second_order"
        )
    )
    return out


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
        if not math.isfinite(value):
            _fail(".".join(path), value, (what or "expected a number") + " (a finite number)")
        bad = (low is not None and (value < low or (low_open and value == low))) or (
            high is not None and value >= high
        )
        if bad:
            _fail(".".join(path), value, what or f"expected a number in range [{low}, {high})")

    seed = config["seed"]
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        _fail("seed", seed, "expected an integer in [0, 2**32), e.g. 0")
    positive_int(("train", "epochs"))
    positive_int(("train", "batch_size"))
    positive_int(("train", "eval_batch_size"))
    positive_int(("ensemble", "size"))
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
    number(("scheduler", "gamma"), low=0, low_open=True, what="expected a factor > 0, e.g. 0.5")
    for key in ("step_size", "patience"):
        positive_int(("scheduler", key))
    if config["scheduler"]["name"] == "warmup_linear":
        number(("scheduler", "warmup_epochs"), low=0, what="expected warmup_epochs >= 0, e.g. 0.5")
        if config["scheduler"]["warmup_epochs"] >= config["train"]["epochs"]:
            _fail(
                "scheduler.warmup_epochs",
                config["scheduler"]["warmup_epochs"],
                f"the warmup must end before the last of train.epochs={config['train']['epochs']}",
            )
    elif config["scheduler"]["name"] == "warmup":
        positive_int(("scheduler", "warmup_epochs"))
    number(("scheduler", "end_factor"), low=0, what="expected end_factor >= 0, e.g. 0.05")
    number(("optimizer", "norm_bias_lr_scale"), low=0, low_open=True, what="expected a factor > 0")
    number(("train", "ema_decay"), low=0, high=1, what="expected ema_decay in [0, 1), e.g. 0.99")
    k = config["model"]["whiten_kernel"]
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        _fail("model.whiten_kernel", k, "expected a kernel size >= 1 (0: no whitening)")
    if not isinstance(config["model"]["dirac"], bool):
        _fail("model.dirac", config["model"]["dirac"], "expected true or false")
    number(("train", "early_stopping", "min_delta"), low=0, what="expected min_delta >= 0")
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
    check_model_size(model)

    from nnparts.nn import activation as activations

    not_hidden = (activations.Maxout, activations.Softmax, activations.LogSoftmax)
    hidden_activations = allowed_values()[("model", "activation")]
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

    first_order = allowed_values()[("optimizer", "name")]
    if str(config["optimizer"]["name"]).lower() not in first_order:
        _fail(
            "optimizer.name",
            config["optimizer"]["name"],
            f"allowed for training: {', '.join(first_order)} (second-order methods are full-batch)",
        )

    from nnparts import data

    if config["data"]["dataset"] not in data.DATASETS:
        _fail("data.dataset", config["data"]["dataset"], f"allowed: {', '.join(data.DATASETS)}")
    d = config["data"]
    size = data.TRAIN_SIZE.get(d["dataset"])
    if size is not None and d["val_size"] >= size:  # (data.train_subset: see prepare_data)
        _fail(
            "data.val_size",
            d["val_size"],
            f"it leaves no training data out of the {size} training images of {d['dataset']}; "
            f"use a data.val_size below {size}, e.g. {size // 10}",
        )
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


def estimate_parameters(model: dict, in_shape=(1, 28, 28), num_classes: int = 10) -> int:
    """The number of parameters (weights, biases, norm scales/shifts) of the model that
    ``build_model(model, in_shape, num_classes)`` builds, counted without building it."""
    channels, h, w = in_shape
    name = model["name"]

    def bn(c):
        return 2 * c

    if name == "mlp":
        total, width = 0, channels * h * w
        for hidden in model["hidden"]:
            total += width * hidden + hidden + (0 if model["norm"] == "none" else 2 * hidden)
            width = hidden
        return total + width * num_classes + num_classes
    if name == "cnn":
        total, c = 0, channels
        for out in model["channels"]:
            for _ in range(model["convs_per_block"]):
                total += c * out * 9 + (out if model["norm"] == "none" else bn(out))
                c = out
            h, w = h // 2, w // 2
        total += c * h * w * model["dense"] + model["dense"]
        return total + model["dense"] * num_classes + num_classes
    if name == "resnet":
        widths = model["channels"]
        total, c = channels * widths[0] * 9, widths[0]
        for stage, (width, count) in enumerate(zip(widths, model["blocks"])):
            for i in range(count):
                stride = 2 if (stage > 0 and i == 0) else 1
                total += bn(c) + c * width * 9 + bn(width) + width * width * 9
                if stride != 1 or c != width:
                    total += c * width
                c = width
        return total + bn(c) + c * num_classes + num_classes
    if name == "densenet":
        k = model["growth_rate"]
        c = 2 * k
        total = channels * c * 9
        layers = model["block_layers"]
        for i, count in enumerate(layers):
            for _ in range(count):
                if model["bottleneck"]:
                    total += bn(c) + c * 4 * k + bn(4 * k) + 4 * k * k * 9
                else:
                    total += bn(c) + c * k * 9
                c += k
            if i < len(layers) - 1:
                out = max(1, int(math.floor(model["compression"] * c)))
                total += bn(c) + c * out
                c = out
        return total + bn(c) + c * num_classes + num_classes
    if name == "fast":  # the whitening filters are buffers, not parameters
        k = model["whiten_kernel"]
        c, total = 2 * channels * k * k, 0
        if not k:  # a learned 3x3 stem instead
            c = 2 * 9 * channels
            total = channels * c * 9 + c
        for width in model["channels"]:
            total += c * width * 9 + bn(width) + width * width * 9 + bn(width)
            c = width
        return total + c * num_classes
    raise ValueError(f"unknown model {name!r}")


#: Training holds about this many float32 copies of the parameters: the weights, their
#: gradients and up to two optimizer moments (Adam).
TRAINING_COPIES = 4


def memory_bytes() -> int | None:
    """This machine's physical memory in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return None


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_model_size(model: dict, in_shape=(1, 28, 28), num_classes: int = 10) -> int:
    """Refuse, before anything is allocated, a model whose parameters (with their gradients and
    the optimizer's moments) would not fit in this machine's memory; returns the count."""
    if model["name"] == "cnn" and 28 >> len(model["channels"]) == 0:
        _fail(
            "model.channels",
            model["channels"],
            f"{len(model['channels'])} blocks each halve the 28x28 image, leaving nothing for "
            "the dense layer; use at most 4 entries",
        )
    count = estimate_parameters(model, in_shape, num_classes)
    need = count * 4 * TRAINING_COPIES
    have = memory_bytes()
    if have is not None and need > have:
        key = {"mlp": "model.hidden", "cnn": "model.channels / model.dense"}.get(
            model["name"], "model.channels"
        )
        raise ConfigError(
            f"model {model['name']} would have {count:,} parameters = {_gib(count * 4)} of "
            f"float32 weights, about {_gib(need)} to train (weights, gradients, optimizer "
            f"state), more than this machine's {_gib(have)} of memory; make {key} smaller"
        )
    return count


def dump(config: dict, choices: bool = False) -> str:
    """The config as YAML; with ``choices``, each field that takes one of a fixed set of values
    is followed by a comment listing them (``norm: batchnorm  # none | batchnorm | layernorm``)."""
    if not choices:
        return yaml.safe_dump(config, sort_keys=False)

    class FlowLists(yaml.SafeDumper):  # [512, 256] on one line, mappings as blocks
        pass

    FlowLists.add_representer(
        list,
        lambda dumper, value: dumper.represent_sequence(
            "tag:yaml.org,2002:seq", value, flow_style=True
        ),
    )
    text = yaml.dump(config, Dumper=FlowLists, sort_keys=False)
    allowed_by_path = allowed_values()
    lines, stack = [], []
    for line in text.splitlines():
        stripped = line.lstrip(" ")
        indent = (len(line) - len(stripped)) // 2
        if ":" in stripped and not stripped.startswith("- "):
            key = stripped.split(":", 1)[0]
            stack = stack[:indent] + [key]
            allowed = allowed_by_path.get(tuple(stack))
            if allowed:
                line = f"{line}  # allowed: {' | '.join(allowed)}"
        lines.append(line)
    return "\n".join(lines) + "\n"
