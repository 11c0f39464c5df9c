"""Weight initializers: moments against theory, fans against PyTorch, symmetry, seeding, names."""

from __future__ import annotations

import math

import numpy as np
import pytest

import nnparts
import nnparts.functional as F
from nnparts import Tensor, init, nn

LINEAR = (1000, 1000)
CONV = (64, 32, 3, 3)


def theory(name, shape):
    """(mean, std) each initializer promises, from the formulas of its paper."""
    fan_in, fan_out = init.fans(shape)
    var = {
        "lecun_normal": 1 / fan_in,
        "lecun_uniform": 1 / fan_in,
        "xavier_normal": 2 / (fan_in + fan_out),
        "xavier_uniform": 2 / (fan_in + fan_out),
        "he_normal": 2 / fan_in,
        "he_uniform": 2 / fan_in,
        "default": 1 / (3 * fan_in),
    }[name]
    return 0.0, math.sqrt(var)


@pytest.mark.parametrize("shape", [LINEAR, CONV])
@pytest.mark.parametrize(
    "name",
    [
        "lecun_normal",
        "lecun_uniform",
        "xavier_normal",
        "xavier_uniform",
        "he_normal",
        "he_uniform",
        "default",
    ],
)
def test_fan_based_initializer_moments(name, shape):
    w = init.get(name)(shape, rng=0)
    mean, std = theory(name, shape)
    assert w.shape == shape and w.dtype == np.float32
    assert abs(w.mean() - mean) < 0.02 * std
    assert abs(w.std() / std - 1) < 0.02


@pytest.mark.parametrize("shape", [LINEAR, CONV])
@pytest.mark.parametrize(
    "fn, mean, std",
    [
        (lambda s, rng: init.normal(s, rng=rng), 0.0, 0.01),
        (lambda s, rng: init.normal(s, std=1.0, rng=rng), 0.0, 1.0),  # the "standard normal" case
        (lambda s, rng: init.uniform(s, -0.3, 0.3, rng=rng), 0.0, 0.6 / math.sqrt(12)),
        (lambda s, rng: init.uniform(s, 1.0, 2.0, rng=rng), 1.5, 1 / math.sqrt(12)),
    ],
)
def test_normal_and_uniform_moments(fn, mean, std, shape):
    w = fn(shape, 0)
    assert abs(w.mean() - mean) < 0.02 * std
    assert abs(w.std() / std - 1) < 0.02


def test_uniform_bounds_are_the_papers():
    fan_in, fan_out = 784, 100
    limits = {
        "lecun_uniform": math.sqrt(3 / fan_in),
        "xavier_uniform": math.sqrt(6 / (fan_in + fan_out)),
        "he_uniform": math.sqrt(6 / fan_in),
    }
    for name, limit in limits.items():
        w = init.get(name)((fan_in, fan_out), rng=0)
        assert np.abs(w).max() <= limit
        assert np.abs(w).max() > 0.99 * limit, name


@pytest.mark.parametrize(
    "shape", [(784, 100), (100, 784), (64, 32, 3, 3), (16, 3, 5, 5), (8, 4, 3, 1)]
)
def test_fans_equal_torch(torch, shape):
    from torch.nn.init import _calculate_fan_in_and_fan_out

    torch_shape = shape[::-1] if len(shape) == 2 else shape  # our Linear weight is (in, out)
    assert init.fans(shape) == _calculate_fan_in_and_fan_out(torch.empty(torch_shape))


def test_torch_kaiming_and_xavier_have_the_same_spread(torch):
    """Same variance as torch.nn.init on the same (transposed) layout."""
    for ours, theirs in [
        ("he_normal", lambda t: torch.nn.init.kaiming_normal_(t, nonlinearity="relu")),
        ("xavier_normal", torch.nn.init.xavier_normal_),
        ("xavier_uniform", torch.nn.init.xavier_uniform_),
    ]:
        torch.manual_seed(0)
        t = theirs(torch.empty(300, 700)).numpy()  # torch layout (out, in)
        w = init.get(ours)((700, 300), rng=0)
        assert abs(w.std() / t.std() - 1) < 0.03, ours


@pytest.mark.parametrize("how", ["zeros", "constant"])
def test_constant_init_gives_every_hidden_unit_the_same_gradient(rng, how):
    """The symmetry the course warns about: with equal weights, every hidden unit of a layer
    receives the same gradient, so gradient descent can never make them differ."""

    def make(name):
        if name == "constant":
            return lambda shape, rng=None, dtype=np.float32: init.constant(shape, 0.3, dtype=dtype)
        return name

    model = nn.Sequential(
        nn.Linear(6, 5, init=make(how)),
        nn.Tanh(),
        nn.Linear(5, 4, init=make(how)),
        nn.Tanh(),
        nn.Linear(4, 3, init=make(how)),
    )
    x = Tensor(rng.standard_normal((8, 6)).astype(np.float32))
    target = rng.integers(0, 3, 8)
    for _ in range(3):  # and it stays so after a few SGD steps
        model.zero_grad()
        F.cross_entropy(model(x), target).backward()
        for layer in (model[0], model[2]):
            g = layer.weight.grad  # (in, out): column j is hidden unit j's incoming weights
            np.testing.assert_allclose(g, np.repeat(g[:, :1], g.shape[1], axis=1), atol=1e-6)
            np.testing.assert_allclose(layer.bias.grad, layer.bias.grad[0], atol=1e-6)
        for p in model.parameters():
            p.data -= 0.5 * p.grad
    w = model[0].weight.data
    np.testing.assert_allclose(w, np.repeat(w[:, :1], w.shape[1], axis=1), atol=1e-6)


def test_random_init_breaks_the_symmetry(rng):
    model = nn.Sequential(nn.Linear(6, 5, init="he_normal", rng=0), nn.Tanh(), nn.Linear(5, 3))
    x = Tensor(rng.standard_normal((8, 6)).astype(np.float32))
    F.cross_entropy(model(x), rng.integers(0, 3, 8)).backward()
    g = model[0].weight.grad
    assert not np.allclose(g, g[:, :1])


@pytest.mark.parametrize("name", sorted(init.INITIALIZERS))
def test_same_seed_same_weights(name):
    fn = init.get(name)
    shape = (20, 30, 3, 3) if name == "dirac" else (20, 30)  # dirac: conv weights only
    a = fn(shape, rng=7)
    b = fn(shape, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    if name not in ("zeros", "ones", "constant", "dirac"):
        assert not np.array_equal(a, fn(shape, rng=8))


def test_default_generator_is_reseeded_by_manual_seed():
    nnparts.manual_seed(3)
    a = nn.Linear(5, 4, init="xavier_uniform").weight.data.copy()
    nnparts.manual_seed(3)
    b = nn.Linear(5, 4, init="xavier_uniform").weight.data
    np.testing.assert_array_equal(a, b)


def test_choose_by_name_function_or_callable():
    lin = nn.Linear(784, 100, init="he_normal", rng=0)
    assert lin.weight.shape == (784, 100) and lin.weight.dtype == np.float32
    assert abs(lin.weight.data.std() / math.sqrt(2 / 784) - 1) < 0.05
    np.testing.assert_array_equal(lin.bias.data, 0)
    np.testing.assert_array_equal(
        nn.Linear(784, 100, init=init.he_normal, rng=0).weight.data, lin.weight.data
    )
    custom = nn.Linear(
        3, 2, init=lambda shape, rng=None, dtype=np.float32: np.full(shape, 2.0, dtype)
    )
    np.testing.assert_array_equal(custom.weight.data, 2.0)
    assert init.get("Xavier_Uniform") is init.xavier_uniform
    assert init.get("kaiming_normal") is init.he_normal


def test_unknown_name_lists_valid_names():
    with pytest.raises(
        ValueError,
        match=r"unknown initializer 'hee_normal'.*he_normal.*"
        r"xavier_uniform",
    ):
        init.get("hee_normal")
    with pytest.raises(ValueError, match="hee_normal"):
        nn.Linear(3, 2, init="hee_normal")


def test_float64_and_bad_arguments():
    assert init.he_normal((4, 3), rng=0, dtype=np.float64).dtype == np.float64
    with pytest.raises(ValueError, match="a < b"):
        init.uniform((2, 2), 1.0, -1.0)
    with pytest.raises(ValueError, match="at least 1 dimension"):
        init.fans(())
