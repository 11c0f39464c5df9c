"""Unit 05's experiments: verdict rules (each outcome) and the measurement helpers."""

import numpy as np
import pytest

from nnparts import lab
from nnparts.lab.unit05_regularization import bias_variance, calibration, fit_mlps


def records(*rows, group=None):
    return [{"group": group, "seed": i, **r} for i, r in enumerate(rows)]


def outcomes(name, good, bad):
    rule = lab.get(name).rule
    assert rule.verdict(records(good, good, good))[0] == "reproduced"
    assert rule.verdict(records(bad, bad, bad))[0] == "not reproduced"
    if rule.over == "seeds":
        assert rule.verdict(records(good, bad, good))[0] == "mixed"
    else:
        mixed = records(good, good, group="a") + records(bad, bad, group="b")
        assert rule.verdict(mixed)[0] == "mixed"


def test_overfit_rule():
    good = {"train_acc_none": 1.0, "gap_none": 0.3, "gap_wd": 0.2, "gap_dropout": 0.1}
    bad = {"train_acc_none": 1.0, "gap_none": 0.3, "gap_wd": 0.35, "gap_dropout": 0.1}
    outcomes("overfit-regularization", good, bad)


def test_label_smoothing_rule():
    good = {"ece_none": 0.05, "ece_smooth": 0.02, "overconf_none": 0.05, "overconf_smooth": 0.0}
    bad = {"ece_none": 0.05, "ece_smooth": 0.08, "overconf_none": 0.05, "overconf_smooth": 0.0}
    outcomes("label-smoothing-calibration", good, bad)


def test_ensemble_rule():
    good = {
        "ens_bagging": 0.85,
        "mean_member_bagging": 0.82,
        "ens_seeds": 0.86,
        "mean_member_seeds": 0.83,
    }
    bad = dict(good, ens_seeds=0.82)
    outcomes("ensembles", good, bad)


def test_bias_variance_rule():
    good = {
        "decomposition_rel_error": 0.01,
        "bias2_large": 0.01,
        "bias2_small": 0.2,
        "var_large": 0.1,
        "var_small": 0.01,
        "var_large_bagged": 0.05,
    }
    bad = dict(good, var_large_bagged=0.2)
    outcomes("bias-variance", good, bad)


def test_calibration_hand_computed():
    # two bins hit: confidence 0.9 (2 samples, one right) and 0.6 (2 samples, both right)
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    y = np.array([0, 1, 1, 1])
    c = calibration(probs, y, bins=10)
    # ECE = 2/4 * |0.5 - 0.9| + 2/4 * |1.0 - 0.6| = 0.4
    assert c["ece"] == pytest.approx(0.4)
    assert c["overconfidence"] == pytest.approx(0.75 - 0.75)
    perfect = calibration(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1]))
    assert perfect["ece"] == pytest.approx(0.0)


def test_bias_variance_decomposition_adds_up_and_orders():
    rng = np.random.default_rng(0)
    low = bias_variance("polynomial", 1, 50, 300, 0.3, rng)
    high = bias_variance("polynomial", 5, 50, 300, 0.3, rng)
    for r in (low, high):
        assert r["bias2"] + r["variance"] + r["noise"] == pytest.approx(r["error"], rel=0.05)
    assert high["bias2"] < low["bias2"] and high["variance"] > low["variance"]
    # a line cannot follow a sine: bias^2 of the best line is large
    assert low["bias2"] > 0.1


def test_batched_mlps_are_independent_and_fit():
    rng = np.random.default_rng(1)
    xs = rng.uniform(0, 1, (3, 40))
    ys = np.stack([np.zeros(40), np.ones(40), 2 * xs[2] - 1])
    grid = np.linspace(0, 1, 11)
    preds = fit_mlps(xs, ys, grid, 8, rng, steps=400)
    np.testing.assert_allclose(preds[0], 0, atol=0.1)
    np.testing.assert_allclose(preds[1], 1, atol=0.1)
    np.testing.assert_allclose(preds[2], 2 * grid - 1, atol=0.15)


def test_rules_of_the_other_experiments():
    outcomes(
        "l1-vs-l2",
        {
            "near_zero_l1": 0.3,
            "near_zero_l2": 0.01,
            "near_zero_none": 0.01,
            "rms_l2": 0.04,
            "rms_none": 0.05,
        },
        {
            "near_zero_l1": 0.02,
            "near_zero_l2": 0.01,
            "near_zero_none": 0.01,
            "rms_l2": 0.04,
            "rms_none": 0.05,
        },
    )
    outcomes(
        "early-stopping",
        {"min_gap": 0, "patience": 5, "test_acc_restored": 0.8, "test_acc_last": 0.79},
        {"min_gap": 9, "patience": 5, "test_acc_restored": 0.8, "test_acc_last": 0.79},
    )
    outcomes(
        "augmentation-data-size",
        {"gain_1k": 0.03, "gain_largest": 0.0},
        {"gain_1k": -0.03, "gain_largest": 0.0},
    )
    outcomes(
        "mixup-cutout-cutmix",
        {"gain_mixup": 0.01, "gain_cutout": 0.01, "gain_cutmix": 0.02},
        {"gain_mixup": 0.01, "gain_cutout": -0.01, "gain_cutmix": 0.02},
    )
    outcomes(
        "noise-injection",
        {"gain_input": 0.01, "gain_weight": 0.01},
        {"gain_input": -0.01, "gain_weight": 0.01},
    )
    outcomes(
        "dropout-coadaptation",
        {
            "epochs_to_95_dropout": 9,
            "epochs_to_95_none": 4,
            "gap_dropout": 0.05,
            "gap_none": 0.1,
            "corr_dropout": 0.1,
            "corr_none": 0.2,
        },
        {
            "epochs_to_95_dropout": 9,
            "epochs_to_95_none": 4,
            "gap_dropout": 0.05,
            "gap_none": 0.1,
            "corr_dropout": 0.3,
            "corr_none": 0.2,
        },
    )


def test_mean_abs_correlation_hand_made():
    from nnparts.lab.unit05_regularization import mean_abs_correlation

    a = np.linspace(0, 1, 50)
    h = np.stack([a, 2 * a, -a, np.zeros(50)], axis=1)  # the dead unit is left out
    assert mean_abs_correlation(h) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    assert mean_abs_correlation(rng.standard_normal((20000, 4))) < 0.02


def test_weight_noise_is_removed_exactly():
    from nnparts.lab import common
    from nnparts.lab.unit05_regularization import WeightNoise

    rng = np.random.default_rng(0)
    model = common.mlp([6, 5, 3], rng=rng)
    before = [p.data.copy() for p in model.parameters()]
    noise = WeightNoise(model, 0.1, rng)
    noise.add()
    assert not np.allclose(model[0].weight.data, before[0])
    noise.remove()
    for p, b in zip(model.parameters(), before):
        np.testing.assert_allclose(p.data, b, atol=1e-7)
