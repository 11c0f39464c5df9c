"""Unit 03 of the lab (normalization, claims 13-16): each verdict rule on handmade records, and
the helpers on cases checked by hand. No experiment is run whole here."""

import numpy as np
import pytest

import nnparts.lab as lab
from nnparts import nn
from nnparts.lab import common
from nnparts.lab import unit03_normalization as u03
from nnparts.tensor import Tensor, no_grad


def verdict(name, records):
    return lab.get(name).rule.verdict(records)[0]


def seeds(*rows, group=None):
    return [{"group": group, "seed": i, **r} for i, r in enumerate(rows)]


# ---------------------------------------------------------------- verdict rules
BN_TEST_OK = dict(faster_wins=14, faster_needed=12, bn_learns=12, plain_learns=2)
BN_TEST_BAD = dict(faster_wins=6, faster_needed=12, bn_learns=3, plain_learns=2)


def test_batch_norm_test_rule():
    assert verdict("batch-norm-test", seeds(BN_TEST_OK, BN_TEST_OK)) == "reproduced"
    assert verdict("batch-norm-test", seeds(BN_TEST_BAD, BN_TEST_BAD)) == "not reproduced"
    assert verdict("batch-norm-test", seeds(BN_TEST_OK, BN_TEST_BAD)) == "mixed"
    # each check alone can fail it: faster on too few stds; learns at < 2x as many stds
    slow = {**BN_TEST_OK, "faster_wins": 11}
    fragile = {**BN_TEST_OK, "bn_learns": 3}
    assert verdict("batch-norm-test", seeds(slow)) == "not reproduced"
    assert verdict("batch-norm-test", seeds(fragile)) == "not reproduced"
    assert verdict("batch-norm-test", seeds({**BN_TEST_OK, "bn_learns": 4})) == "reproduced"


BN_INF_OK = dict(
    fold_rel_diff=4e-7,
    running_mean_err=0.05,
    acc_running=0.80,
    acc_population=0.805,
    eval_changed=0.0,
    train_changed_sorted=0.7,
)


def test_bn_inference_rule():
    bad = {**BN_INF_OK, "eval_changed": 0.01, "train_changed_sorted": 0.01}
    assert verdict("bn-inference", seeds(BN_INF_OK, BN_INF_OK)) == "reproduced"
    assert verdict("bn-inference", seeds(bad, bad)) == "not reproduced"
    assert verdict("bn-inference", seeds(BN_INF_OK, bad)) == "mixed"
    for key, value in [
        ("fold_rel_diff", 1e-3),
        ("running_mean_err", 0.3),
        ("acc_population", 0.83),  # running statistics cost 3 points
        ("eval_changed", 0.001),
        ("train_changed_sorted", 0.04),
    ]:
        assert verdict("bn-inference", seeds({**BN_INF_OK, key: value})) == "not reproduced", key


BATCH_OK = dict(
    bn_drop=0.2,
    bn_range=0.25,
    ln_range=0.03,
    gn_range=0.04,
    ln_batchmate_effect=0.0,
    gn_batchmate_effect=1e-7,
)


def test_norm_batch_size_rule_is_on_the_mean():
    assert verdict("norm-batch-size", seeds(BATCH_OK, BATCH_OK)) == "reproduced"
    # one seed against it, but the mean still holds
    weak = {**BATCH_OK, "bn_drop": 0.01}
    assert verdict("norm-batch-size", seeds(BATCH_OK, weak)) == "reproduced"
    flat = {**BATCH_OK, "bn_drop": 0.0, "bn_range": 0.02}
    assert verdict("norm-batch-size", seeds(flat, flat)) == "not reproduced"
    mixed = seeds(BATCH_OK, group="a") + seeds(flat, group="b")
    assert verdict("norm-batch-size", mixed) == "mixed"
    leaky = {**BATCH_OK, "ln_batchmate_effect": 1e-3}  # LayerNorm depending on the batch
    assert verdict("norm-batch-size", seeds(leaky)) == "not reproduced"
    assert verdict("norm-batch-size", seeds({**BATCH_OK, "gn_range": 0.3})) == "not reproduced"


INIT_OK = dict(bn_range=0.1, plain_range=0.7, bn_mean=0.8, plain_mean=0.3)


def test_bn_init_scale_rule():
    bad = {**INIT_OK, "bn_range": 0.5}
    assert verdict("bn-init-scale", seeds(INIT_OK, INIT_OK)) == "reproduced"
    assert verdict("bn-init-scale", seeds(bad, bad)) == "not reproduced"
    assert verdict("bn-init-scale", seeds(INIT_OK, bad)) == "mixed"
    # a small spread from failing everywhere is not robustness
    uniform_failure = {**INIT_OK, "bn_mean": 0.1}
    assert verdict("bn-init-scale", seeds(uniform_failure)) == "not reproduced"


DROP_OK = dict(
    test_bn=0.70,
    test_plain=0.66,
    gap_bn=0.28,
    gap_plain=0.34,
    dropout_gain_with_bn=0.01,
    dropout_gain_without_bn=0.04,
)


def test_bn_vs_dropout_rule_is_on_the_mean():
    bad = {**DROP_OK, "test_bn": 0.60, "gap_bn": 0.40}
    assert verdict("bn-vs-dropout", seeds(DROP_OK, DROP_OK)) == "reproduced"
    assert verdict("bn-vs-dropout", seeds(bad, bad)) == "not reproduced"
    assert verdict("bn-vs-dropout", seeds(DROP_OK, group="a") + seeds(bad, group="b")) == "mixed"
    more = {**DROP_OK, "dropout_gain_with_bn": 0.05}  # dropout helps more on top of BN
    assert verdict("bn-vs-dropout", seeds(more)) == "not reproduced"


def test_experiments_name_their_claims():
    claims = {e.name: e.claims for e in lab.select("03 normalization")}
    assert claims == {
        "batch-norm-test": [13],
        "bn-inference": [14],
        "norm-batch-size": [15],
        "bn-init-scale": [16],
        "bn-vs-dropout": [16],
    }


# ---------------------------------------------------------------- helpers
def test_norm_mlp_layers():
    net = u03.norm_mlp([6, 20, 10, 3], "gn", rng=0)
    kinds = [type(m).__name__ for m in net]
    assert kinds == ["Linear", "GroupNorm", "ReLU", "Linear", "GroupNorm", "ReLU", "Linear"]
    net = u03.norm_mlp([6, 5, 3], None, dropout=0.5, rng=0)
    assert [type(m).__name__ for m in net] == ["Linear", "ReLU", "Dropout", "Linear"]
    with pytest.raises(ValueError, match="unknown norm"):
        u03.norm_mlp([6, 5, 3], "batchnorm")


def test_scaled_he_std():
    w = u03.scaled_he(3.0)((400, 300), rng=np.random.default_rng(0))
    assert w.dtype == np.float32
    assert w.std() == pytest.approx(3.0 * np.sqrt(2 / 400), rel=0.01)


def test_groupnorm_on_features_equals_the_4d_reshape():
    gn = nn.GroupNorm(u03.GROUPS, 20)
    gn.weight.data = np.linspace(0.5, 2, 20).astype(np.float32)
    x = np.random.default_rng(0).standard_normal((4, 20)).astype(np.float32)
    flat = gn(Tensor(x)).data
    four = gn(Tensor(x.reshape(4, 20, 1, 1))).data.reshape(4, 20)
    np.testing.assert_allclose(flat, four, rtol=1e-6, atol=1e-6)
    # by hand: group 0 of sample 0 is features 0, 1 normalized together
    g = x[0, :2]
    expected = (g - g.mean()) / np.sqrt(g.var() + 1e-5) * gn.weight.data[:2]
    np.testing.assert_allclose(flat[0, :2], expected, rtol=1e-5, atol=1e-5)


def trained_bn_net(seed=0):
    """A tiny BN net with non-trivial running statistics, gamma and beta."""
    rng = np.random.default_rng(seed)
    net = u03.norm_mlp([5, 4, 4, 3], "bn", rng=rng)
    for b in (m for m in net if isinstance(m, nn.BatchNorm1d)):
        b.weight.data = rng.uniform(0.5, 2, 4).astype(np.float32)
        b.bias.data = rng.normal(size=4).astype(np.float32)
    with no_grad():  # training-mode passes move the running statistics
        for _ in range(5):
            net(Tensor(rng.normal(2.0, 3.0, (16, 5)).astype(np.float32)))
    return net.eval(), rng


def test_fold_batchnorm_equals_eval_output():
    net, rng = trained_bn_net()
    folded = u03.fold_batchnorm(net)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in folded)
    x = rng.normal(2.0, 3.0, (7, 5)).astype(np.float32)
    with no_grad():
        np.testing.assert_allclose(
            folded(Tensor(x)).data, net(Tensor(x)).data, rtol=1e-5, atol=1e-5
        )
    # the original net is untouched (the fold works on copies)
    assert any(isinstance(m, nn.BatchNorm1d) for m in net)
    # a training-mode model does not equal its fold
    with no_grad():
        diff = np.abs(folded(Tensor(x)).data - net.train()(Tensor(x)).data).max()
    assert diff > 1e-3


def test_predict_in_batches():
    net, rng = trained_bn_net()
    x = rng.normal(2.0, 3.0, (40, 5)).astype(np.float32)
    before = [m.running_mean.copy() for m in net if isinstance(m, nn.BatchNorm1d)]
    a, b = rng.permutation(40), np.arange(40)
    eval_a, eval_b = (u03.predict_in_batches(net, x, o, 8, training=False) for o in (a, b))
    np.testing.assert_array_equal(eval_a, eval_b)  # labels come back in x's order
    with no_grad():
        np.testing.assert_array_equal(eval_a, net(Tensor(x)).data.argmax(1))
    u03.predict_in_batches(net, x, a, 8, training=True)
    after = [m.running_mean for m in net if isinstance(m, nn.BatchNorm1d)]
    for r0, r1 in zip(before, after):  # the running statistics stayed put
        np.testing.assert_array_equal(r0, r1)
    assert not net.training


def test_batchmate_effect():
    x = np.random.default_rng(1).standard_normal((60, 8)).astype(np.float32)
    effects = {
        v: u03.batchmate_effect(u03.norm_mlp([8, 20, 3], v, rng=0), x, np.random.default_rng(2))
        for v in ("bn", "ln", "gn")
    }
    assert effects["bn"] > 1e-3
    assert effects["ln"] <= 1e-6 and effects["gn"] <= 1e-6


def test_train_curve_pads_a_diverged_run():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 6)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    net = u03.norm_mlp([6, 8, 3], None, init=common.normal_init(50.0), rng=0)
    curve = u03.train_curve(net, x, y, np.random.default_rng(1), lr=1e3, epochs=5, batch_size=20)
    assert len(curve) == 5 and all(0 <= a <= 1 for a in curve)
    fine = u03.norm_mlp([6, 8, 3], "bn", rng=0)
    curve = u03.train_curve(fine, x, y, np.random.default_rng(1), lr=0.1, epochs=5, batch_size=20)
    assert len(curve) == 5 and curve[-1] > 1 / 3  # learns above chance on 40 samples
