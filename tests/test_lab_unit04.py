"""Unit 04 (optimization): each experiment's verdict rule on handmade records (every outcome),
and the unit's helpers on cases checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnparts import lab
from nnparts.lab import unit04_optimization as u
from nnparts.nn import Parameter
from nnparts.optim.adam import Adam
from nnparts.optim.sgd import SGD


def records(*rows, group=None):
    return [{"group": group, "seed": i, **r} for i, r in enumerate(rows)]


def outcomes(name, good, bad, groups=None):
    """The rule of ``name`` gives each verdict: all good, all bad, one of each."""
    rule = lab.get(name).rule
    if groups is None:
        assert rule.verdict(records(good, good, good))[0] == "reproduced"
        assert rule.verdict(records(bad, bad))[0] == "not reproduced"
        assert rule.verdict(records(good, bad, good))[0] == "mixed"
    else:  # over="mean": one unit per group
        g1, g2 = groups

        def both(a, b):
            return records(a, a, group=g1) + records(b, b, group=g2)

        assert rule.verdict(both(good, good))[0] == "reproduced"
        assert rule.verdict(both(bad, bad))[0] == "not reproduced"
        assert rule.verdict(both(good, bad))[0] == "mixed"


# --- the rules ---------------------------------------------------------------------------------


def test_optimizer_paths_rule():
    good = {
        "zigzag_SGD": 1.0,
        "dist_SGD": 0.36,
        "dist_Momentum": 0.1,
        "dist_AdaGrad": 0.12,
        "dist_Adam": 0.3,
    }
    outcomes("optimizer-paths", good, {**good, "dist_Momentum": 0.9})
    outcomes("optimizer-paths", good, {**good, "zigzag_SGD": 0.2})


def test_optimizer_compare_rule():
    names = ["Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"]
    good = {"last_SGD": 1.5, **{f"last_{n}": 0.7 for n in names}}
    outcomes("optimizer-compare", good, {**good, "last_RMSprop": 1.6})
    outcomes("optimizer-compare", good, {**good, "last_SGD": 0.5})


def test_effective_lr_rule():
    good = {"slope_AdaGrad": -0.45, "slope_RMSprop": 0.1}
    outcomes("effective-lr", good, {**good, "slope_AdaGrad": -0.1})
    outcomes("effective-lr", good, {**good, "slope_RMSprop": -0.4})


def test_adam_bias_correction_rule():
    good = {"update_ratio": 0.5, "early_loss_nobc": 1.2, "early_loss_bc": 1.0}
    outcomes("adam-bias-correction", good, {**good, "update_ratio": 4.0})
    outcomes("adam-bias-correction", good, {**good, "early_loss_nobc": 0.9})


def test_warmup_radam_rule():
    good = {"spread_Adam": 0.1, "spread_Adam+warmup": 0.05, "spread_RAdam": 0.04}
    outcomes("warmup-radam", good, {**good, "spread_RAdam": 0.2})
    outcomes("warmup-radam", good, {**good, "spread_Adam+warmup": 0.1})


def test_lookahead_rule():
    good = {
        "sd_lr_plain": 0.2,
        "sd_lr_lookahead": 0.1,
        "seed_sd_plain": 0.03,
        "seed_sd_lookahead": 0.02,
    }
    outcomes("lookahead", good, {**good, "sd_lr_lookahead": 0.3}, groups=("SGD", "Adam"))
    outcomes("lookahead", good, {**good, "seed_sd_lookahead": 0.05}, groups=("SGD", "Adam"))


def test_basins_rule():
    good = {"minima_himmelblau": 4, "minima_bowl": 1}
    outcomes("basins", good, {**good, "minima_himmelblau": 1})
    outcomes("basins", good, {**good, "minima_bowl": 2})


def test_batch_size_sharpness_rule():
    good = {"acc_small": 0.85, "acc_large": 0.8, "sharp_small": 0.01, "sharp_large": 0.05}
    outcomes("batch-size-sharpness", good, {**good, "acc_large": 0.845})  # within 1 point
    outcomes("batch-size-sharpness", good, {**good, "sharp_large": 0.005})


def test_second_order_iterations_rule():
    good = {"newton_quadratic_iters": 1, "iters_GD": 400, "iters_CG": 13, "iters_LBFGS": 14}
    outcomes("second-order-iterations", good, {**good, "newton_quadratic_iters": 2})
    outcomes("second-order-iterations", good, {**good, "iters_LBFGS": 100})


def test_newton_cost_rule():
    outcomes("newton-cost", {"exponent_dense": 2.9}, {"exponent_dense": 1.2})
    outcomes("newton-cost", {"exponent_dense": 3.7}, {"exponent_dense": 3.9})


def test_every_unit04_experiment_is_tested():
    names = {e.name for e in lab.REGISTRY.values() if e.unit == u.UNIT}
    tested = {
        "optimizer-paths",
        "optimizer-compare",
        "effective-lr",
        "adam-bias-correction",
        "warmup-radam",
        "lookahead",
        "basins",
        "batch-size-sharpness",
        "second-order-iterations",
        "newton-cost",
    }
    assert names == tested
    claims = sorted({c for e in lab.REGISTRY.values() if e.unit == u.UNIT for c in e.claims})
    assert claims == list(range(21, 30))


# --- the helpers -------------------------------------------------------------------------------


def test_descend_sgd_on_the_bowl_is_the_closed_form():
    lr, steps = 0.3, 12
    path = u.descend(lambda ps: SGD(ps, lr=lr), np.array([-7.0, 2.0]), u.elongated_bowl, steps)
    t = np.arange(steps + 1)
    # grad = (x / 10, 2 y): x_t = x_0 (1 - lr / 10)^t, y_t = y_0 (1 - 2 lr)^t
    np.testing.assert_allclose(path[:, 0], -7.0 * (1 - lr / 10) ** t, rtol=1e-12)
    np.testing.assert_allclose(path[:, 1], 2.0 * (1 - 2 * lr) ** t, rtol=1e-12)


def test_descend_moves_every_row_by_its_own_gradient():
    starts = np.array([[-7.0, 2.0], [3.0, -1.0]])
    both = u.descend(lambda ps: SGD(ps, lr=0.1), starts, u.elongated_bowl, 5)[-1]
    for i in range(2):
        one = u.descend(lambda ps: SGD(ps, lr=0.1), starts[i], u.elongated_bowl, 5)[-1]
        np.testing.assert_allclose(both[i], one, rtol=1e-14)


def test_himmelblau_minima_have_zero_value_and_gradient():
    minima = np.array(
        [[3.0, 2.0], [-2.805118, 3.131312], [-3.779310, -3.283186], [3.584428, -1.848126]]
    )
    p = Parameter(minima.copy())
    value = u.himmelblau(p)
    value.backward()
    assert float(value.data) < 1e-9
    assert np.abs(p.grad).max() < 1e-4


def test_zigzag_fraction():
    flips = np.array([[0, 1.0], [0, -0.9], [0, 0.8], [0, -0.7], [0, 0.6]])
    assert u.zigzag_fraction(flips) == 1.0
    monotone = np.array([[0, 1.0], [0, 0.5], [0, 0.25], [0, 0.1]])
    assert u.zigzag_fraction(monotone) == 0.0
    half = np.array([[0, 0.0], [0, 1.0], [0, 2.0], [0, 1.0], [0, 0.5]])  # + + - -
    assert u.zigzag_fraction(half) == pytest.approx(1 / 3)


def test_first_below():
    assert u.first_below([5.0, 1.0, 0.05, 0.01], 0.1) == 2.0
    assert u.first_below([0.01, 1.0], 0.1) == 0.0
    assert math.isnan(u.first_below([5.0, 1.0], 0.1))


def test_distinct_points():
    pts = np.array([[0, 0], [0.001, 0], [1, 1], [1, 1.005], [3, 0]], dtype=float)
    reps = u.distinct_points(pts, 0.01)
    np.testing.assert_array_equal(reps, [[0, 0], [1, 1], [3, 0]])
    assert u.distinct_points(np.empty((0, 2)), 0.01).shape == (0, 2)


def test_loglog_slope():
    t = np.array([10, 100, 1000])
    assert u.loglog_slope(t, 3.0 * t**-0.5) == pytest.approx(-0.5)
    assert u.loglog_slope(t, np.full(3, 2.0)) == pytest.approx(0.0, abs=1e-12)


def test_adam_without_bias_correction_by_hand():
    b1, b2, lr, eps = 0.9, 0.999, 1e-3, 1e-8
    g = np.array([0.3, -2.0, 1e-3])
    ours = Parameter(np.zeros(3))
    opt = u.AdamNoBiasCorrection([ours], lr=lr)
    ref = Parameter(np.zeros(3))
    adam = Adam([ref], lr=lr)
    m = v = np.zeros(3)
    for t in range(1, 4):
        ours.grad, ref.grad = g.copy(), g.copy()
        before, before_ref = ours.data.copy(), ref.data.copy()
        opt.step()
        adam.step()
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        np.testing.assert_allclose(before - ours.data, lr * m / (np.sqrt(v) + eps), rtol=1e-10)
        # with a steady gradient, the uncorrected step is (1 - b1^t) / sqrt(1 - b2^t) times Adam's
        factor = (1 - b1**t) / math.sqrt(1 - b2**t)
        np.testing.assert_allclose(
            (before - ours.data)[:2], factor * (before_ref - ref.data)[:2], rtol=1e-5
        )
    assert factor > 1  # larger, not smaller


def test_train_together_shares_batches():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 6)).astype(np.float32)
    y = rng.integers(0, 3, 50)
    models = u.same_init_mlps([6, 5, 3], 2, seed=1)
    opts = [SGD(m.parameters(), lr=0.1) for m in models]
    losses = u.train_together(models, opts, x, y, np.random.default_rng(2), 8, 5)
    np.testing.assert_array_equal(losses[0], losses[1])  # same init, same batches, same rule
    opts = [SGD(models[0].parameters(), lr=0.1), SGD(models[1].parameters(), lr=0.0)]
    losses = u.train_together(models, opts, x, y, np.random.default_rng(2), 8, 5)
    assert not np.array_equal(losses[0], losses[1])


def test_smoothness_bounds_the_logistic_hessian():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 3))
    y = (rng.random(40) < 0.5).astype(float)
    lam = 0.01
    prob = u.LogisticRegression(x, y, lam)
    # the Hessian at w = 0 (sigmoid' = 1/4 there) attains the bound
    xb = np.hstack([x, np.ones((40, 1))])
    h = xb.T @ xb / 4 / 40 + lam * np.diag([1, 1, 1, 0])
    assert np.linalg.eigvalsh(h).max() <= u.smoothness(x, lam) + 1e-12
    prob.closure()
    grad = np.concatenate([prob.params[0].grad.ravel(), prob.params[1].grad.ravel()])
    np.testing.assert_allclose(grad, xb.T @ (0.5 - y) / 40, rtol=1e-10)


def test_iterations_to_counts_until_the_target():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((30, 2))
    y = (x[:, 0] > 0).astype(float)
    prob = u.LogisticRegression(x, y, 0.1)
    opt = SGD(prob.params, lr=1.0)
    start = prob.value()
    iters, secs = u.iterations_to(prob, opt, start - 1e-3, 50, use_closure=False)
    assert 1 <= iters < 50 and secs >= 0
    prob = u.LogisticRegression(x, y, 0.1)
    iters, _ = u.iterations_to(prob, SGD(prob.params, lr=1.0), -1.0, 7, use_closure=False)
    assert iters == 7  # never reached: the budget
