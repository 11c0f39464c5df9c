"""Optimizers, learning-rate schedules, regularizers and second-order methods.

``import nnparts.optim as optim``; ``optim.Adam(model.parameters(), lr=1e-3)``. Names and
defaults follow ``torch.optim``; each docstring gives the course's update rule and how it maps
to the code. ``optim.build("adam", params, lr=...)`` constructs one by name (for configs).
"""

from nnparts.optim import lr_scheduler, regularizers
from nnparts.optim.adadelta import Adadelta
from nnparts.optim.adagrad import Adagrad
from nnparts.optim.adam import Adam, AdamW, NAdam, RAdam
from nnparts.optim.adamax import Adamax
from nnparts.optim.asgd import ASGD
from nnparts.optim.ema import WeightEMA
from nnparts.optim.groups import group_parameters
from nnparts.optim.lookahead import Lookahead
from nnparts.optim.optimizer import Optimizer
from nnparts.optim.regularizers import clip_grad_norm_, clip_grad_value_, l1_penalty, l2_penalty
from nnparts.optim.rmsprop import RMSprop
from nnparts.optim.rprop import Rprop
from nnparts.optim.second_order import LBFGS, ConjugateGradient, Newton
from nnparts.optim.sgd import SGD

OPTIMIZERS = {
    "sgd": SGD,
    "adagrad": Adagrad,
    "adadelta": Adadelta,
    "rmsprop": RMSprop,
    "adam": Adam,
    "adamw": AdamW,
    "nadam": NAdam,
    "radam": RAdam,
    "adamax": Adamax,
    "rprop": Rprop,
    "asgd": ASGD,
    "lbfgs": LBFGS,
    "cg": ConjugateGradient,
    "conjugategradient": ConjugateGradient,
    "conjugate_gradient": ConjugateGradient,
    "newton": Newton,
}


def build(name: str, params, lookahead=None, **kwargs):
    """Construct an optimizer by (case-insensitive) name: ``build("adam", params, lr=1e-3)``.

    ``lookahead=dict(k=5, alpha=0.5)`` (or ``True`` for the defaults) wraps the result in
    :class:`Lookahead`. Unknown names raise ValueError listing the valid ones.
    """
    key = str(name).lower()
    if key not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid names: {sorted(OPTIMIZERS)}")
    optimizer = OPTIMIZERS[key](params, **kwargs)
    if lookahead:
        optimizer = Lookahead(optimizer, **(lookahead if isinstance(lookahead, dict) else {}))
    return optimizer


__all__ = [
    "ASGD",
    "LBFGS",
    "SGD",
    "Adadelta",
    "Adagrad",
    "Adamax",
    "Adam",
    "AdamW",
    "ConjugateGradient",
    "Lookahead",
    "NAdam",
    "Newton",
    "OPTIMIZERS",
    "Optimizer",
    "RAdam",
    "RMSprop",
    "Rprop",
    "WeightEMA",
    "build",
    "clip_grad_norm_",
    "clip_grad_value_",
    "group_parameters",
    "l1_penalty",
    "l2_penalty",
    "lr_scheduler",
    "regularizers",
]
