"""The hyperparameter unit: verdict rules (each outcome) and its helpers."""

import numpy as np

from nnparts import lab
from nnparts.lab.hyperparameters import grid_vs_random_regret, trials_to_target


def records(*rows, group=None):
    return [{"group": group, "seed": i, **r} for i, r in enumerate(rows)]


def outcomes(name, good, bad):
    rule = lab.get(name).rule
    assert rule.verdict(records(good, good))[0] == "reproduced"
    assert rule.verdict(records(bad, bad))[0] == "not reproduced"
    if rule.over == "seeds":
        assert rule.verdict(records(good, bad))[0] == "mixed"
    else:
        both = records(good, group="a") + records(bad, group="b")
        assert rule.verdict(both)[0] == "mixed"


def test_rules():
    good = {
        f"regret_{m}_{b}": (0.1 if m == "random" else 0.5)
        for m in ("grid", "random")
        for b in (9, 16, 25)
    }
    outcomes("grid-vs-random", good, dict(good, regret_random_16=0.9))
    good = {
        "top10_median_log_lr": -3,
        "round2_best": 0.8,
        "round1_best": 0.7,
        "round2_mean": 0.5,
        "round1_mean": 0.2,
    }
    outcomes("course-random-search", good, dict(good, top10_median_log_lr=-5))
    outcomes(
        "bayesian-vs-random",
        {"trials_tpe": 5, "trials_random": 12},
        {"trials_tpe": 12, "trials_random": 5},
    )
    good = {"sd_kfold_5": 0.01, "sd_kfold_2": 0.015, "sd_holdout": 0.03}
    outcomes("kfold-vs-holdout", good, dict(good, sd_kfold_5=0.05))


def test_trials_to_target_counts_the_first_hit_or_censors():
    assert trials_to_target([0.5, 0.79, 0.8, 0.9], 0.8) == 3
    assert trials_to_target([0.5, None, 0.6], 0.8) == 4
    assert trials_to_target([0.81], 0.8) == 1


def test_grid_tries_few_distinct_values_so_random_wins_on_one_important_axis():
    rng = np.random.default_rng(0)
    grid, random = grid_vs_random_regret(5, 4000, rng)
    assert random < grid
    assert 0 <= random and 0 <= grid <= 1.01
