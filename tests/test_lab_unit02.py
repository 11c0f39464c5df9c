"""Unit 02 (initialization): each verdict rule can give every verdict; the helpers compute what
their docstrings say on cases checked by hand. No whole experiment runs here."""

import numpy as np
import pytest

import nnparts.lab as lab
from nnparts.lab import unit02_initialization as u02


def _verdict(name, records):
    return lab.get(name).rule.verdict(records)[0]


def test_unit_spread_is_the_largest_difference_between_units():
    w = np.array([[1.0, 1.0, 1.5], [0.0, -2.0, 0.0]])  # 2 inputs, 3 units (columns)
    assert u02.unit_spread(w) == pytest.approx(2.0)
    assert u02.unit_spread(np.full((4, 3), 0.7)) == 0.0


def test_activation_fractions_bins():
    a = np.array([0.0, 0.01, 0.5, 0.52, 0.97, -0.99, 1.0, 0.3])
    f = u02.activation_fractions(a)
    assert f["near_0"] == pytest.approx(2 / 8)
    assert f["near_half"] == pytest.approx(2 / 8)
    assert f["near_1"] == pytest.approx(2 / 8)
    assert f["sigmoid_saturated"] == pytest.approx(5 / 8)  # 0, 0.01, 0.97, -0.99, 1
    assert f["tanh_saturated"] == pytest.approx(3 / 8)
    assert f["zero"] == pytest.approx(1 / 8)


def test_histogram_net_and_probe_see_every_layer():
    rng = np.random.default_rng(0)
    net = u02.histogram_net("tanh", u02.INITS["std 0.01"], rng, width=8, depth=3)
    x = rng.standard_normal((5, 8)).astype(np.float32)
    outs = u02.layer_activations(net, x)
    assert len(outs) == 3 and all(o.shape == (5, 8) for o in outs)
    w = [m.weight.data for m in net if hasattr(m, "weight")]
    np.testing.assert_allclose(outs[0], np.tanh(x @ w[0]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outs[2], np.tanh(np.tanh(outs[0] @ w[1]) @ w[2]), atol=1e-6)


HIST_GOOD = {
    "sigmoid_std1_saturated": 0.66,
    "sigmoid_std001_near_half": 1.0,
    "sigmoid_xavier_saturated": 0.0,
    "sigmoid_xavier_near_half": 0.33,
    "tanh_std001_near_0": 1.0,
    "tanh_std1_saturated": 0.85,
    "tanh_xavier_saturated": 0.0,
    "tanh_xavier_near_0": 0.11,
}


def test_init_histograms_rule():
    good = [{"seed": s, **HIST_GOOD} for s in range(3)]
    assert _verdict("init-histograms", good) == "reproduced"
    bad = [{**r, "sigmoid_std1_saturated": 0.3} for r in good]  # no pile-up at 0 and 1
    assert _verdict("init-histograms", bad) == "not reproduced"
    assert _verdict("init-histograms", [good[0], bad[1], good[2]]) == "mixed"
    spread_collapsed = [{**r, "tanh_xavier_near_0": 0.9} for r in good]
    assert _verdict("init-histograms", spread_collapsed) == "not reproduced"


def test_hidden_spread_ignores_the_output_layer():
    model = lab.common.mlp([4, 3, 3, 2], "sigmoid", init=u02.constant_init(0.5), rng=0)
    lab.common.linear_layers(model)[-1].weight.data[0, 0] = 9.0  # output layer: not counted
    assert u02.hidden_spread(model) == (0.0, 0.5)
    lab.common.linear_layers(model)[0].weight.data[1, 2] = -0.5
    assert u02.hidden_spread(model) == (1.0, 0.5)


SYM_GOOD = {
    "zeros_rel_spread": 3e-7,
    "constant_rel_spread": 1e-7,
    "zeros_moved": 0.0015,
    "constant_moved": 0.002,
    "xavier_rel_spread": 1.7,
}


def test_zero_init_symmetry_rule():
    good = [{"seed": s, **SYM_GOOD} for s in range(3)]
    assert _verdict("zero-init-symmetry", good) == "reproduced"
    broken = [{**r, "zeros_rel_spread": 0.3} for r in good]  # units drifted apart
    assert _verdict("zero-init-symmetry", broken) == "not reproduced"
    frozen = [{**r, "constant_moved": 0.0} for r in good]  # identical only because nothing moved
    assert _verdict("zero-init-symmetry", frozen) == "not reproduced"
    assert _verdict("zero-init-symmetry", [good[0], broken[1], good[2]]) == "mixed"


def test_loss_curve_band_plots_the_mean_of_the_smoothed_curves():
    from matplotlib.figure import Figure

    ax = Figure().subplots()
    curves = [np.arange(10.0), np.arange(10.0) + 2]
    u02.loss_curve_band(ax, curves, "x", "k", window=4)
    line = ax.get_lines()[0]
    np.testing.assert_allclose(line.get_ydata(), np.arange(7) + 1.5 + 1)  # mean of the two
    np.testing.assert_allclose(line.get_xdata(), np.arange(7) + 4)  # step where a window ends


XH_GOOD = {
    "xavier_std_ratio": 0.25,
    "he_std_ratio": 0.92,
    "he_final_loss": 1.0,
    "xavier_final_loss": 2.302,
}


def test_relu_xavier_vs_he_rule():
    good = [{"seed": s, **XH_GOOD} for s in range(3)]
    assert _verdict("relu-xavier-vs-he", good) == "reproduced"
    he_shrinks = [{**r, "he_std_ratio": 0.3} for r in good]
    assert _verdict("relu-xavier-vs-he", he_shrinks) == "not reproduced"
    xavier_trains = [{**r, "xavier_final_loss": 1.5} for r in good]
    assert _verdict("relu-xavier-vs-he", xavier_trains) == "not reproduced"
    assert _verdict("relu-xavier-vs-he", [good[0], xavier_trains[1], good[2]]) == "mixed"


CMP_GOOD = {
    "std001_final_loss": 2.3026,
    "xavier_final_loss": 0.52,
    "he_final_loss": 0.44,
    "xavier_mean_loss": 0.83,
    "he_mean_loss": 0.60,
}


def test_weight_init_compare_rule():
    good = [
        {"group": g, "seed": s, **CMP_GOOD} for g in ("fashion-mnist", "mnist-5k") for s in (0, 1)
    ]
    assert _verdict("weight-init-compare", good) == "reproduced"
    xavier_faster = [{**r, "he_mean_loss": 0.9} for r in good]
    assert _verdict("weight-init-compare", xavier_faster) == "not reproduced"
    small_learns = [{**r, "std001_final_loss": 1.0} for r in good]
    assert _verdict("weight-init-compare", small_learns) == "not reproduced"
    one_dataset = [r if r["group"] == "mnist-5k" else xavier_faster[i] for i, r in enumerate(good)]
    assert _verdict("weight-init-compare", one_dataset) == "mixed"
