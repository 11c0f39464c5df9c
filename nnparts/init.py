"""Weight initializers.

Each initializer is a function ``f(shape, rng=None, dtype=float32) -> ndarray``. Fans follow
PyTorch, for both of nnparts' weight layouts:

* Linear weight ``(in, out)``: ``fan_in = in``, ``fan_out = out``;
* Conv2d weight ``(out, in, kh, kw)``: ``fan_in = in*kh*kw``, ``fan_out = out*kh*kw``.

=================  ==================================  ==========================
name               distribution                        variance
=================  ==================================  ==========================
zeros / constant   all equal                           0
normal             N(0, std^2), std=0.01 by default    std^2
uniform            U(a, b)                             (b-a)^2/12
lecun_normal       N(0, 1/fan_in)                      1/fan_in
lecun_uniform      U(+-sqrt(3/fan_in))                 1/fan_in
xavier_normal      N(0, 2/(fan_in+fan_out))            2/(fan_in+fan_out)
xavier_uniform     U(+-sqrt(6/(fan_in+fan_out)))       2/(fan_in+fan_out)
he_normal          N(0, 2/fan_in)                      2/fan_in
he_uniform         U(+-sqrt(6/fan_in))                 2/fan_in
default            U(+-1/sqrt(fan_in))                 1/(3 fan_in) (PyTorch's Linear/Conv)
dirac              identity conv (torch dirac_)        deterministic
=================  ==================================  ==========================

The course's own code calls ``sqrt(1/n)`` "Xavier": with ``n`` the number of inputs that is
LeCun's initialization; Glorot & Bengio (2010) average fan-in and fan-out. The course's "He"
(``sqrt(2/n)``, n inputs) is ``he_normal`` here. ``normal`` defaults to std 0.01 and ``uniform``
to U(-0.05, 0.05) (the course's small-weight cases); PyTorch's ``normal_``/``uniform_`` default
to N(0, 1) and U(0, 1).
References: LeCun et al. 1998 (Efficient BackProp); Glorot & Bengio 2010; He et al. 2015.
"""

from __future__ import annotations

import math

import numpy as np

from nnparts.random import get_rng

DTYPE = np.float32


def fans(shape) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a Linear ``(in, out)`` or Conv ``(out, in, *kernel)`` weight.

    The same numbers as ``torch.nn.init._calculate_fan_in_and_fan_out`` on PyTorch's layouts
    (its Linear weight is ``(out, in)``, the transpose of ours). A 1-D shape (a bias) gives
    ``(n, n)``.
    """
    shape = tuple(shape)
    if len(shape) < 1:
        raise ValueError(f"fans need a weight of at least 1 dimension, got shape {shape}")
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:  # Linear, stored (in, out)
        return shape[0], shape[1]
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def zeros(shape, rng=None, dtype=DTYPE):
    """All zeros. For weights this keeps every hidden unit identical (symmetry is never broken)."""
    return np.zeros(shape, dtype=dtype)


def constant(shape, value=0.0, rng=None, dtype=DTYPE):
    """Every element ``value``; like zeros, it cannot break the symmetry between units."""
    return np.full(shape, value, dtype=dtype)


def ones(shape, rng=None, dtype=DTYPE):
    return np.ones(shape, dtype=dtype)


def normal(shape, std=0.01, mean=0.0, rng=None, dtype=DTYPE):
    """N(mean, std^2). ``std=1`` is the course's "standard normal" case, ``0.01`` its small one."""
    return (get_rng(rng).standard_normal(shape, dtype=np.float64) * std + mean).astype(dtype)


def uniform(shape, a=-0.05, b=0.05, rng=None, dtype=DTYPE):
    """U(a, b)."""
    if not a < b:
        raise ValueError(f"uniform needs a < b, got a={a}, b={b}")
    return get_rng(rng).uniform(a, b, size=shape).astype(dtype)


def lecun_normal(shape, rng=None, dtype=DTYPE):
    """N(0, 1/fan_in) — the course's "Xavier" (std = sqrt(1/n))."""
    fan_in, _ = fans(shape)
    return normal(shape, std=math.sqrt(1.0 / fan_in), rng=rng, dtype=dtype)


def lecun_uniform(shape, rng=None, dtype=DTYPE):
    """U(-sqrt(3/fan_in), +sqrt(3/fan_in)): variance 1/fan_in."""
    fan_in, _ = fans(shape)
    limit = math.sqrt(3.0 / fan_in)
    return uniform(shape, -limit, limit, rng=rng, dtype=dtype)


def xavier_normal(shape, gain=1.0, rng=None, dtype=DTYPE):
    """Glorot normal: N(0, gain^2 * 2/(fan_in+fan_out)) (torch.nn.init.xavier_normal_)."""
    fan_in, fan_out = fans(shape)
    return normal(shape, std=gain * math.sqrt(2.0 / (fan_in + fan_out)), rng=rng, dtype=dtype)


def xavier_uniform(shape, gain=1.0, rng=None, dtype=DTYPE):
    """Glorot uniform: U(+-gain*sqrt(6/(fan_in+fan_out))) (torch.nn.init.xavier_uniform_)."""
    fan_in, fan_out = fans(shape)
    limit = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform(shape, -limit, limit, rng=rng, dtype=dtype)


def he_normal(shape, rng=None, dtype=DTYPE):
    """He/Kaiming normal for ReLU: N(0, 2/fan_in) (torch kaiming_normal_, fan_in mode)."""
    fan_in, _ = fans(shape)
    return normal(shape, std=math.sqrt(2.0 / fan_in), rng=rng, dtype=dtype)


def he_uniform(shape, rng=None, dtype=DTYPE):
    """He/Kaiming uniform: U(+-sqrt(6/fan_in)), variance 2/fan_in."""
    fan_in, _ = fans(shape)
    limit = math.sqrt(6.0 / fan_in)
    return uniform(shape, -limit, limit, rng=rng, dtype=dtype)


def default(shape, rng=None, dtype=DTYPE):
    """PyTorch's default for Linear and Conv weights: U(+-1/sqrt(fan_in))."""
    fan_in, _ = fans(shape)
    limit = 1.0 / math.sqrt(fan_in)
    return uniform(shape, -limit, limit, rng=rng, dtype=dtype)


def dirac(shape, groups=1, rng=None, dtype=DTYPE):
    """An identity convolution (``torch.nn.init.dirac_``): with same padding, output channel
    ``g*O/G + i`` of each group ``g`` copies input channel ``i`` of that group's slice.

    For a Conv weight ``(out, in/groups, *kernel)`` (1-, 2- or 3-D kernels)::

        w[g*O/G + i, i, center] = 1   for i < min(O/G, in/groups),   every other entry 0

    with ``center = k // 2`` per kernel axis. Output channels beyond ``in/groups`` in a group
    stay zero (as PyTorch). Deterministic: ``rng`` is accepted for the common signature only.
    Used to start residual-free deep nets at the identity (Zagoruyko & Komodakis 2017,
    "DiracNets").
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (3, 4, 5):
        raise ValueError(
            f"dirac needs a Conv weight (out, in, *kernel) of 3, 4 or 5 dimensions, got shape "
            f"{shape}"
        )
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"dirac groups must be an int >= 1, got {groups!r}")
    if shape[0] % groups:
        raise ValueError(
            f"dirac groups={groups} must divide the out channels {shape[0]} of shape {shape}"
        )
    out_per_group = shape[0] // groups
    n = min(out_per_group, shape[1])
    weight = np.zeros(shape, dtype=dtype)
    inputs = np.arange(n)
    outputs = (np.arange(groups)[:, None] * out_per_group + inputs).reshape(-1)
    center = tuple(k // 2 for k in shape[2:])
    weight[(outputs, np.tile(inputs, groups), *center)] = 1
    return weight


INITIALIZERS = {
    "zeros": zeros,
    "ones": ones,
    "constant": constant,
    "normal": normal,
    "uniform": uniform,
    "lecun_normal": lecun_normal,
    "lecun_uniform": lecun_uniform,
    "xavier_normal": xavier_normal,
    "xavier_uniform": xavier_uniform,
    "glorot_normal": xavier_normal,
    "glorot_uniform": xavier_uniform,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "kaiming_normal": he_normal,
    "kaiming_uniform": he_uniform,
    "default": default,
    "dirac": dirac,
}


def get(name_or_fn):
    """An initializer by name (``"he_normal"``), or a callable returned as it is.

    Unknown names raise ValueError listing the valid ones.
    """
    if callable(name_or_fn):
        return name_or_fn
    if name_or_fn is None:
        return default
    key = str(name_or_fn).lower()
    if key not in INITIALIZERS:
        raise ValueError(
            f"unknown initializer {name_or_fn!r}; valid names: {', '.join(sorted(INITIALIZERS))}"
        )
    return INITIALIZERS[key]
