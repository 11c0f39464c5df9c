"""The babysitting unit's verdict rules on synthetic records, and its helpers on cases checked
by hand (no whole experiment runs here)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnparts import lab
from nnparts.lab import babysitting as unit

LN10 = math.log(10)


def verdict(name, records):
    return lab.get(name).rule.verdict(records)[0]


def rec(seed, group=None, **numbers):
    return {"group": group, "seed": seed, **numbers}


def test_initial_loss_rule():
    good = dict(initial_loss=LN10 + 0.01, **{"loss_l2_1e-3": 2.32, "loss_l2_1": 4.3})
    far = dict(good, initial_loss=2.9)  # He-init-like logits: not ≈ ln 10
    flat = dict(good, **{"loss_l2_1e-3": LN10 + 0.01})  # L2 does not raise it
    assert verdict("initial-loss", [rec(s, **good) for s in range(3)]) == "reproduced"
    assert verdict("initial-loss", [rec(0, **far), rec(1, **flat)]) == "not reproduced"
    assert verdict("initial-loss", [rec(0, **good), rec(1, **far)]) == "mixed"


def test_overfit_rule_needs_every_config_and_seed():
    def r(seed, group, reached):
        return rec(seed, group, reached=reached, steps=30, final_loss=0.1, diverged=0)

    both = [r(s, g, 1) for s in range(2) for g in ("notes", "default")]
    assert verdict("overfit-20", both) == "reproduced"
    assert verdict("overfit-20", [r(0, "notes", 0), r(0, "default", 0)]) == "not reproduced"
    assert verdict("overfit-20", [r(0, "notes", 0), r(0, "default", 1)]) == "mixed"


def test_lr_sweep_rule():
    good = {"diverged_at_10": 1, "change_at_1e-6": 1e-5, "n_working": 2}
    no_blowup = dict(good, diverged_at_10=0)
    moves = dict(good, **{"change_at_1e-6": 0.05})  # lr 1e-6 is not "too small"
    nothing_works = dict(good, n_working=0)
    assert verdict("lr-sweep", [rec(s, **good) for s in range(3)]) == "reproduced"
    assert verdict("lr-sweep", [rec(0, **no_blowup), rec(1, **moves)]) == "not reproduced"
    assert verdict("lr-sweep", [rec(0, **good), rec(1, **nothing_works)]) == "mixed"


def test_zero_centring_rule():
    faster = {"steps_raw": 900, "steps_centred": 400, "steps_standardized": 300}
    same = dict(faster, steps_centred=900)  # both censored at the budget: not faster
    assert verdict("zero-centring", [rec(s, **faster) for s in range(3)]) == "reproduced"
    assert verdict("zero-centring", [rec(0, **same)]) == "not reproduced"
    assert verdict("zero-centring", [rec(0, **faster), rec(1, **same)]) == "mixed"


def test_whitening_rule_per_group():
    ok = {"max_offdiag": 1e-8, "max_diag_error": 2e-4, "dims_off": 0}
    bad = {"max_offdiag": 0.2, "max_diag_error": 1.0, "dims_off": 50}
    assert verdict("whitening", [rec(0, "PCA", **ok), rec(0, "ZCA", **ok)]) == "reproduced"
    assert verdict("whitening", [rec(0, "PCA", **bad), rec(0, "ZCA", **bad)]) == "not reproduced"
    assert verdict("whitening", [rec(0, "PCA", **ok), rec(0, "ZCA", **bad)]) == "mixed"


def test_every_experiment_names_claims_17_to_20():
    names = ["initial-loss", "overfit-20", "lr-sweep", "zero-centring", "whitening"]
    claims = {n: lab.get(n).claims for n in names}
    assert claims == {
        "initial-loss": [17],
        "overfit-20": [18],
        "lr-sweep": [19],
        "zero-centring": [20],
        "whitening": [20],
    }
    assert all(lab.get(n).unit == "babysitting" for n in names)


def test_covariance_and_identity_errors_by_hand():
    z = np.array([[1.0, 2.0], [3.0, 0.0], [2.0, 1.0], [2.0, 1.0]])
    cov = unit.covariance(z)
    assert cov == pytest.approx(np.cov(z.T, bias=True))
    errors = unit.identity_errors(np.array([[1.1, -0.3], [0.2, 0.5]]))
    assert errors["max_offdiag"] == pytest.approx(0.3)
    assert errors["max_diag_error"] == pytest.approx(0.5)
    white = np.random.default_rng(0).standard_normal((20000, 3))
    assert unit.identity_errors(unit.covariance(white))["max_diag_error"] < 0.05


def test_notes_config_is_a_valid_training_config():
    cfg = unit.notes_config(3, optimizer={"lr": 0.5})
    assert cfg["seed"] == 3 and cfg["model"]["hidden"] == [50]
    assert cfg["model"]["init"] == "normal" and cfg["model"]["norm"] == "none"
    assert cfg["optimizer"] == {**cfg["optimizer"], "name": "sgd", "lr": 0.5, "momentum": 0.0}


def test_steps_to_target_stops_when_reached_and_censors_otherwise():
    rng = np.random.default_rng(0)
    # an easy, separable problem: the class is the brightest of ten pixel blocks
    y = rng.integers(0, 10, 600)
    x = rng.normal(0, 0.1, (600, 784)).astype(np.float32)
    x[np.arange(600)[:, None], (y[:, None] * 78 + np.arange(78))] += 1.0
    steps, curve = unit.steps_to_target(x, y, x[:200], y[:200], 0, rng, 0.9, 400, every=10)
    assert steps <= 400 and curve[-1] == (steps, curve[-1][1]) and curve[-1][1] >= 0.9
    never, _ = unit.steps_to_target(x, y, x[:200], y[:200], 0, rng, 1.01, 20, every=10)
    assert never == 30  # max_steps + every: never reached
