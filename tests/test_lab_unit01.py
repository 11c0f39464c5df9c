"""Unit 01 of the lab (activation functions): each verdict rule can give every verdict, and the
helpers compute what they say on cases checked by hand."""

import numpy as np
import pytest

import nnparts.lab as lab
from nnparts.lab import common
from nnparts.lab import unit01_activation as u
from nnparts.tensor import Tensor


def verdict(name, records):
    return lab.get(name).rule.verdict(records)[0]


def three_ways(name, good, bad, group=None):
    """The rule gives reproduced on all-good seeds, not reproduced on all-bad, mixed on both."""
    rec = lambda seed, nums: {"group": group, "seed": seed, **nums}  # noqa: E731
    assert verdict(name, [rec(0, good), rec(1, good)]) == "reproduced"
    assert verdict(name, [rec(0, bad), rec(1, bad)]) == "not reproduced"
    assert verdict(name, [rec(0, good), rec(1, bad)]) == "mixed"


# --- rules -------------------------------------------------------------------------------------


def test_xor_spirals_rule():
    good = dict(
        acc_logistic=0.7, acc_deep_linear=0.7, acc_relu=1.0, acc_tanh=0.99, composed_error=1e-7
    )
    three_ways("xor-spirals", good, {**good, "acc_relu": 0.9})
    three_ways("xor-spirals", good, {**good, "acc_deep_linear": 0.97})
    three_ways("xor-spirals", good, {**good, "composed_error": 1e-2})
    # per dataset: XOR fits, spirals do not -> mixed
    records = [
        {"group": "xor", "seed": 0, **good},
        {"group": "spirals", "seed": 0, **good, "acc_tanh": 0.8},
    ]
    assert verdict("xor-spirals", records) == "mixed"


def test_softmax_overflow_rule():
    good = dict(
        naive_bad_rows_1000_f32=1000,
        naive_bad_rows_1000_f64=990,
        stable_bad_rows=0,
        stable_vs_library=0.0,
    )
    three_ways("softmax-overflow", good, {**good, "naive_bad_rows_1000_f64": 0})
    three_ways("softmax-overflow", good, {**good, "stable_bad_rows": 3})


def test_softmax_ce_gradient_rule():
    good = dict(
        fd_error=1e-8, library_error=0.0, library_error_large=1e-15, library_nonfinite_large=0
    )
    three_ways("softmax-ce-gradient", good, {**good, "fd_error": 1e-3})
    three_ways("softmax-ce-gradient", good, {**good, "library_nonfinite_large": 4})


# --- helpers -----------------------------------------------------------------------------------


def test_composed_linear_equals_the_stack():
    model = common.mlp([3, 5, 4, 2], "identity", rng=np.random.default_rng(0))
    for layer in common.linear_layers(model):  # non-zero biases, so the bias folding is tested
        layer.bias.data = np.arange(layer.bias.data.size, dtype=np.float32) - 1.5
    w, b = u.composed_linear(model)
    assert w.shape == (3, 2) and b.shape == (2,)
    x = np.random.default_rng(1).standard_normal((7, 3)).astype(np.float32)
    np.testing.assert_allclose(x @ w + b, model(Tensor(x)).data, rtol=1e-5, atol=1e-5)


def test_composed_linear_by_hand():
    model = common.mlp([1, 1, 1], "identity", rng=np.random.default_rng(0))
    first, second = common.linear_layers(model)
    first.weight.data[...] = 2.0
    first.bias.data[...] = 1.0
    second.weight.data[...] = 3.0
    second.bias.data[...] = -4.0
    w, b = u.composed_linear(model)  # 3 * (2x + 1) - 4 = 6x - 1
    assert w[0, 0] == 6.0 and b[0] == -1.0


def test_softmax_naive_overflows_and_stable_does_not():
    z = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]])
    naive, stable = u.naive_softmax(z), u.stable_softmax(z)
    assert np.isnan(naive[0]).any() and np.isfinite(naive[1]).all()
    np.testing.assert_allclose(stable[0], [1.0, 0.0, 0.0])
    e = np.exp([1.0, 2.0, 3.0])
    np.testing.assert_allclose(stable[1], e / e.sum())
    np.testing.assert_allclose(naive[1], stable[1])


def test_sign_agreement_by_hand():
    g = np.array([[1.0, 1.0, 0.0, 2.0], [2.0, -1.0, 0.0, -1.0], [3.0, -1.0, 0.0, 5.0]])
    # columns: all positive; 1 of 3 positive; all zero; 2 of 3 positive
    np.testing.assert_allclose(u.sign_agreement(g, axis=0), [1.0, 2 / 3, 1.0, 2 / 3])
    np.testing.assert_allclose(u.sign_agreement(g.T, axis=1), [1.0, 2 / 3, 1.0, 2 / 3])


def test_roughness():
    gx, gy = np.meshgrid(np.linspace(-1, 1, 21), np.linspace(-1, 1, 21))
    assert u.roughness(3 * gx - 2 * gy + 1) == pytest.approx(0.0, abs=1e-12)
    # |x| on a grid of spacing h = 0.1: one kink column with second difference 2h = 0.2,
    # i.e. mean |d2x| = 0.2 / 19 along x and 0 along y; range 1
    assert u.roughness(np.abs(gx)) == pytest.approx(0.2 / 19 / 2)
    # the number is scale-free
    assert u.roughness(10 * np.abs(gx) + 5) == pytest.approx(u.roughness(np.abs(gx)))


def test_vanishing_gradients_rule():
    good = dict(
        max_dsigmoid=0.25,
        ratio_sigmoid_init=1e-6,
        ratio_tanh_init=0.05,
        ratio_relu_init=1.1,
        ratio_sigmoid_trained=1e-6,
        ratio_tanh_trained=0.02,
        ratio_relu_trained=0.9,
    )
    three_ways("vanishing-gradients", good, {**good, "ratio_tanh_init": 0.23})
    three_ways("vanishing-gradients", good, {**good, "ratio_relu_trained": 0.01})
    three_ways("vanishing-gradients", good, {**good, "max_dsigmoid": 0.3})


def test_sign_agreement_rule():
    good = dict(
        agree_sample_sigmoid=1.0,
        agree_sample_tanh=0.54,
        agree_batch_sigmoid=0.89,
        agree_batch_tanh=0.54,
        toy_same_sign_sigmoid=1.0,
        toy_path_ratio_sigmoid=3.4,
        toy_path_ratio_tanh=1.4,
    )
    three_ways("sign-agreement", good, {**good, "agree_sample_sigmoid": 0.7})
    three_ways("sign-agreement", good, {**good, "agree_batch_tanh": 0.95})
    three_ways("sign-agreement", good, {**good, "toy_path_ratio_sigmoid": 1.2})


def test_layer_grad_norms_read_by_hooks():
    model = common.mlp([4, 3, 3, 2], "tanh", rng=np.random.default_rng(0))
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((5, 4)).astype(np.float32), np.array([0, 1, 1, 0, 1])
    layers = common.linear_layers(model)
    norms = u.layer_grad_norms(model, layers, x, y)
    # the last layer's output is the logits: its gradient is (softmax - onehot) / n
    p = u.stable_softmax(model(Tensor(x)).data.astype(np.float64))
    expect = np.linalg.norm((p - np.eye(2)[y]) / len(y))
    assert norms.shape == (3,) and norms[-1] == pytest.approx(expect, rel=1e-5)
    assert all(p.grad is None for p in model.parameters())


def test_sgd_path_moves_along_the_inputs():
    inputs = np.array([[1.0, 2.0], [0.5, 0.5]])
    path = u.sgd_path(inputs, np.array([1.0, -1.0]), lr=0.1)
    # step 1: err = 0 - (1 - 2) = 1 -> w = -0.1 * (1, 2); step 2: err = -0.15 - 0 -> +0.0075 x
    np.testing.assert_allclose(path[1], [-0.1, -0.2])
    np.testing.assert_allclose(path[2], [-0.1 + 0.0075, -0.2 + 0.0075])


def test_dying_relu_rule():
    good = dict(
        dead_relu_init=0.0,
        dead_relu_small=0.01,
        dead_relu_large=0.2,
        dead_leaky_relu_large=0.02,
        dead_elu_large=0.0,
    )
    three_ways("dying-relu", good, {**good, "dead_relu_large": 0.05})
    three_ways("dying-relu", good, {**good, "dead_elu_large": 0.15})
    three_ways("dying-relu", good, {**good, "dead_relu_small": 0.3})
    # a diverged run records NaN: the rule does not hold on it
    three_ways("dying-relu", good, {**good, "dead_relu_large": float("nan")})


def test_stuck_fraction_by_hand():
    z = np.array([[-1.0, 0.5, 0.0, -2.0], [-0.1, -3.0, 0.0, 1e-6]])
    # unit 0: negative everywhere; unit 1: positive once; unit 2: exactly 0 (ReLU outputs 0)
    assert u.stuck_fraction(z) == 0.5


def test_swish_landscape_rule():
    good = dict(roughness_identity=1e-7, roughness_relu=3e-3, roughness_swish=1e-3)
    three_ways("swish-landscape", good, {**good, "roughness_swish": 4e-3})


def test_activation_shootout_rule_on_the_mean():
    """One group, decided on the mean: reproduced or not reproduced (mixed needs several groups,
    and this experiment has one)."""

    def seeds(relu, elu, leaky):
        return [
            {
                "group": None,
                "seed": s,
                "acc_relu": relu[s],
                "acc_elu": elu[s],
                "acc_leaky_relu": leaky[s],
            }
            for s in range(3)
        ]

    name = "activation-shootout"
    assert verdict(name, seeds([0.85] * 3, [0.86] * 3, [0.87] * 3)) == "reproduced"
    assert verdict(name, seeds([0.87] * 3, [0.86] * 3, [0.85] * 3)) == "not reproduced"
    # seed 2 breaks the order but the means keep it: decided on the mean
    assert verdict(name, seeds([0.85, 0.85, 0.87], [0.86] * 3, [0.87, 0.87, 0.86])) == "reproduced"
    # one part of the order holds, the other does not
    assert verdict(name, seeds([0.85] * 3, [0.87] * 3, [0.86] * 3)) == "not reproduced"
