"""Parameter groups: normalization biases with their own learning rate and weight decay."""

from __future__ import annotations

from nnparts.nn.normalization import GroupNorm, InstanceNorm2d, LayerNorm, _BatchNorm

__all__ = ["NORM_TYPES", "group_parameters"]

NORM_TYPES = (_BatchNorm, LayerNorm, InstanceNorm2d, GroupNorm)
"""The normalization layers whose ``weight``/``bias`` :func:`group_parameters` sets apart."""


def group_parameters(
    model,
    lr: float,
    weight_decay: float = 0.0,
    norm_bias_lr_scale: float = 1.0,
    norm_weight_decay: float | None = None,
    bias_weight_decay: float | None = None,
) -> list[dict]:
    """Param-group dicts for an optimizer, with separate hyperparameters for the parameters
    of normalization layers and for biases.

    Each parameter of ``model`` falls in one of four kinds (walking ``model.named_modules()``;
    normalization layers are the :data:`NORM_TYPES`, BatchNorm/LayerNorm/InstanceNorm/
    GroupNorm)::

        kind          which parameters               lr                       weight decay
        norm biases   ``bias`` of the norm layers    lr * norm_bias_lr_scale  norm_weight_decay
        norm weights  ``weight`` of the norm layers  lr                       norm_weight_decay
        biases        other params named ``bias``    lr                       bias_weight_decay
        other         everything else                lr                       weight_decay

    ``None`` for ``norm_weight_decay``/``bias_weight_decay`` means ``weight_decay``. Kinds with
    equal ``(lr, weight_decay)`` share one group; groups come in the order of the table (so the
    norm biases, when they have their own lr, are ``groups[0]``), empty ones are left out, and
    within a group parameters keep the model's order. Every group carries ``lr`` and
    ``weight_decay`` (so the optimizer must take a ``weight_decay``; an explicit 0 also
    overrides AdamW's default 0.01). Schedulers then scale each group's own ``initial_lr``, so
    the groups keep their lr ratio.

    The usual uses: no weight decay on biases and BatchNorm parameters (``norm_weight_decay=0,
    bias_weight_decay=0``; Goyal et al. 2017, "Accurate, Large Minibatch SGD"), and airbench's
    much larger lr for the BatchNorm biases (``norm_bias_lr_scale=64``, Jordan 2024).

    Example:
        >>> groups = group_parameters(model, 0.1, 5e-4, norm_weight_decay=0)  # doctest: +SKIP
        >>> opt = SGD(groups, lr=0.1, momentum=0.9, nesterov=True)   # doctest: +SKIP
    """
    for name, value in (("lr", lr), ("weight_decay", weight_decay)):
        if not value >= 0:
            raise ValueError(f"group_parameters: invalid {name}={value!r}, expected >= 0")
    if not norm_bias_lr_scale >= 0:
        raise ValueError(
            f"group_parameters: invalid norm_bias_lr_scale={norm_bias_lr_scale!r}, expected >= 0"
        )
    norm_wd = weight_decay if norm_weight_decay is None else norm_weight_decay
    bias_wd = weight_decay if bias_weight_decay is None else bias_weight_decay
    settings = {
        "norm_bias": (lr * norm_bias_lr_scale, norm_wd),
        "norm_weight": (lr, norm_wd),
        "bias": (lr, bias_wd),
        "other": (lr, weight_decay),
    }
    kind_of = {}  # id(param) -> kind, decided by the module that owns the parameter
    for _, module in model.named_modules():
        is_norm = isinstance(module, NORM_TYPES)
        for name, p in module._parameters.items():
            if p is None or id(p) in kind_of:
                continue
            if is_norm:
                kind_of[id(p)] = "norm_bias" if name == "bias" else "norm_weight"
            else:
                kind_of[id(p)] = "bias" if name == "bias" else "other"
    by_setting: dict[tuple, list] = {}
    for setting in settings.values():  # the table's order decides the groups' order
        by_setting.setdefault(setting, [])
    for p in model.parameters():
        by_setting[settings[kind_of[id(p)]]].append(p)
    return [
        {"params": params, "lr": group_lr, "weight_decay": group_wd}
        for (group_lr, group_wd), params in by_setting.items()
        if params
    ]
