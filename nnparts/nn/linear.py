"""Fully connected layer and Flatten."""

from __future__ import annotations

import numpy as np

from nnparts import init as initializers
from nnparts.functional.layers import linear
from nnparts.functional.math import flatten
from nnparts.nn.module import Module, Parameter
from nnparts.random import get_rng


class Linear(Module):
    """``y = x W + b`` with ``W`` stored ``(in_features, out_features)``.

    The course writes the affine layer as ``Y = X·W + B`` with ``W`` of shape (in, out); that is
    the layout here, so ``weight.T`` is PyTorch's ``(out, in)`` weight.

    Args:
        init: an initializer name from :mod:`nnparts.init` (``"he_normal"``, ``"xavier_uniform"``
            ...) or a callable ``f(shape, rng=...)``. The default is PyTorch's
            ``U(+-1/sqrt(in_features))``. The bias starts at zero unless ``init="default"``
            (PyTorch draws it from the same uniform).
        rng: seed or ``numpy.random.Generator`` for the initial weights.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        init="default",
        rng=None,
        dtype=np.float32,
    ):
        super().__init__()
        if in_features <= 0 or out_features <= 0:
            raise ValueError(
                f"Linear needs positive sizes, got in_features={in_features}, "
                f"out_features={out_features}"
            )
        self.in_features, self.out_features = int(in_features), int(out_features)
        init_fn = initializers.get(init)
        rng = get_rng(rng)  # one generator for weight and bias (an int seed would repeat)
        self.weight = Parameter(init_fn((in_features, out_features), rng=rng, dtype=dtype))
        if bias:
            if init_fn is initializers.default:
                bound = 1.0 / np.sqrt(in_features)
                b = initializers.uniform((out_features,), -bound, bound, rng=rng, dtype=dtype)
            else:
                b = np.zeros(out_features, dtype=dtype)
            self.bias = Parameter(b)
        else:
            self.bias = None

    def forward(self, x):
        return linear(x, self.weight, self.bias)

    def extra_repr(self):
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


class Flatten(Module):
    """(N, d1, d2, ...) -> (N, d1*d2*...)."""

    def __init__(self, start_dim: int = 1):
        super().__init__()
        self.start_dim = start_dim

    def forward(self, x):
        return flatten(x, self.start_dim)
