"""Activation modules: one Module per activation of :mod:`nnparts.functional.activations`.

Parameter-free activations are thin wrappers; ``PReLU``, ``Swish`` (``learnable=True``) and
``SoftExponential`` own learnable parameters, and ``Maxout`` is a layer (a Linear map to
``out_features * pieces`` units followed by a max over each group of ``pieces``).
:func:`get_activation` looks a module up by its lowercase name (for configs and the CLI).
"""

from __future__ import annotations

import numpy as np

from nnparts import functional as F
from nnparts.nn.linear import Linear
from nnparts.nn.module import Module, Parameter

__all__ = [
    "Identity",
    "Step",
    "Sigmoid",
    "Tanh",
    "ReLU",
    "LeakyReLU",
    "PReLU",
    "ELU",
    "Swish",
    "SiLU",
    "Softsign",
    "SoftExponential",
    "Maxout",
    "Softmax",
    "LogSoftmax",
    "get_activation",
]


class Identity(Module):
    """``y = x`` (the "linear" activation). Extra arguments are accepted and ignored."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return F.identity(x)


class Step(Module):
    """Heaviside step ``1[x > 0]``; zero gradient everywhere."""

    def forward(self, x):
        return F.step(x)


class Sigmoid(Module):
    """``1 / (1 + e^-x)`` (stable)."""

    def forward(self, x):
        return F.sigmoid(x)


class Tanh(Module):
    """Hyperbolic tangent."""

    def forward(self, x):
        return F.tanh(x)


class ReLU(Module):
    """``max(0, x)``."""

    def forward(self, x):
        return F.relu(x)


class LeakyReLU(Module):
    """``x if x > 0 else negative_slope * x``."""

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = float(negative_slope)

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class PReLU(Module):
    """Parametric ReLU with ``num_parameters`` learnable slopes (1, or one per channel of axis 1),
    each starting at ``init`` (PyTorch's defaults: 1 and 0.25)."""

    def __init__(self, num_parameters: int = 1, init: float = 0.25, dtype=np.float32):
        super().__init__()
        if num_parameters < 1:
            raise ValueError(f"PReLU num_parameters must be >= 1, got {num_parameters}")
        self.num_parameters = int(num_parameters)
        self.weight = Parameter(np.full(self.num_parameters, init, dtype=dtype))

    def forward(self, x):
        return F.prelu(x, self.weight)

    def extra_repr(self):
        return f"num_parameters={self.num_parameters}"


class ELU(Module):
    """``x if x > 0 else alpha (e^x - 1)``."""

    def __init__(self, alpha: float = 1.0):
        super().__init__()
        self.alpha = float(alpha)

    def forward(self, x):
        return F.elu(x, self.alpha)

    def extra_repr(self):
        return f"alpha={self.alpha}"


class Swish(Module):
    """``x * sigmoid(beta x)``; with ``learnable=True`` beta is a Parameter (shape ``()``)."""

    def __init__(self, beta: float = 1.0, learnable: bool = False, dtype=np.float32):
        super().__init__()
        self.learnable = bool(learnable)
        if self.learnable:
            self.beta = Parameter(np.asarray(beta, dtype=dtype))
        else:
            self.beta = float(beta)

    def forward(self, x):
        return F.swish(x, self.beta)

    def extra_repr(self):
        return (
            f"beta={float(np.asarray(self.beta.data if self.learnable else self.beta))}, "
            f"learnable={self.learnable}"
        )


class SiLU(Module):
    """``x * sigmoid(x)`` (Swish with beta = 1)."""

    def forward(self, x):
        return F.silu(x)


class Softsign(Module):
    """``x / (1 + |x|)``."""

    def forward(self, x):
        return F.softsign(x)


class SoftExponential(Module):
    """Soft exponential (Godfrey & Gashler 2015) with a learnable ``alpha`` (shape ``()``)
    starting at ``alpha`` (0 = identity); ``learnable=False`` keeps it fixed."""

    def __init__(self, alpha: float = 0.0, learnable: bool = True, dtype=np.float32):
        super().__init__()
        self.learnable = bool(learnable)
        if self.learnable:
            self.alpha = Parameter(np.asarray(alpha, dtype=dtype))
        else:
            self.alpha = float(alpha)

    def forward(self, x):
        return F.soft_exponential(x, self.alpha)

    def extra_repr(self):
        return f"learnable={self.learnable}"


class Maxout(Module):
    """Maxout layer (Goodfellow et al. 2013): ``y_j = max_k (x W_k + b_k)_j``, k = 1..pieces.

    One Linear map ``in_features -> out_features * pieces``; its output column
    ``j * pieces + k`` is piece ``k`` of unit ``j`` (see :func:`nnparts.functional.maxout`).
    ``init`` and ``rng`` are passed to the Linear map.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        pieces: int,
        bias: bool = True,
        init="default",
        rng=None,
        dtype=np.float32,
    ):
        super().__init__()
        if pieces < 1:
            raise ValueError(f"Maxout needs pieces >= 1, got {pieces}")
        self.in_features, self.out_features, self.pieces = in_features, out_features, int(pieces)
        self.linear = Linear(
            in_features, out_features * self.pieces, bias=bias, init=init, rng=rng, dtype=dtype
        )

    def forward(self, x):
        return F.maxout(self.linear(x), self.pieces)

    def extra_repr(self):
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"pieces={self.pieces}"
        )


class Softmax(Module):
    """Softmax along ``axis`` (PyTorch's ``dim``)."""

    def __init__(self, axis: int = -1):
        super().__init__()
        self.axis = axis

    def forward(self, x):
        return F.softmax(x, self.axis)


class LogSoftmax(Module):
    """Log-softmax along ``axis``."""

    def __init__(self, axis: int = -1):
        super().__init__()
        self.axis = axis

    def forward(self, x):
        return F.log_softmax(x, self.axis)


_REGISTRY = {
    "identity": Identity,
    "linear": Identity,
    "step": Step,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "prelu": PReLU,
    "elu": ELU,
    "swish": Swish,
    "silu": SiLU,
    "softsign": Softsign,
    "soft_exponential": SoftExponential,
    "maxout": Maxout,
    "softmax": Softmax,
    "log_softmax": LogSoftmax,
}


def get_activation(name: str):
    """The activation module class for ``name`` (case-insensitive; ``-`` or ``_``, or none:
    ``"leaky_relu"``, ``"LeakyReLU"`` and ``"leaky-relu"`` are the same). Call the result to build
    the module: ``get_activation("elu")(alpha=0.5)``."""
    if isinstance(name, type) and issubclass(name, Module):
        return name
    key = str(name).strip().lower().replace("-", "_")
    if key not in _REGISTRY:
        compact = {k.replace("_", ""): v for k, v in _REGISTRY.items()}
        if key.replace("_", "") in compact:
            return compact[key.replace("_", "")]
        raise ValueError(f"unknown activation {name!r}; valid names are {sorted(_REGISTRY)}")
    return _REGISTRY[key]
