"""Unit 02 — weight initialization: symmetry, activation histograms, Xavier vs He (claims 9-12).

The course's initializers, by the names its code uses (DLfS-1 ch06, ``weight_init_std``):
``std 1`` and ``std 0.01`` are N(0, std^2); its "Xavier" is N(0, 1/n) with ``n`` the number of
inputs (``init.lecun_normal``; Glorot & Bengio's fan-average equals it for square layers); its
"He" is N(0, 2/n) (``init.he_normal``). Biases start at zero.
"""

from __future__ import annotations

import math

import numpy as np

from nnparts import init as initializers
from nnparts import nn, optim
from nnparts.lab import common
from nnparts.lab.engine import Check, Rule, experiment
from nnparts.tensor import Tensor, no_grad

UNIT = "02 initialization"
LN10 = math.log(10)

# the course's weight_init_std cases, as initializers for nn.Linear(init=...)
INITS = {
    "std 1": common.normal_init(1.0),
    "std 0.01": common.normal_init(0.01),
    "Xavier": "lecun_normal",
    "He": "he_normal",
}
COLORS = {"std 1": "tab:red", "std 0.01": "tab:blue", "Xavier": "tab:orange", "He": "tab:green"}


def unit_spread(weight: np.ndarray) -> float:
    """The largest difference between two units' incoming weight vectors (max norm):
    ``max_{i,j} max_k |W[k, i] - W[k, j]|`` for a Linear weight ``W`` of shape (in, out)."""
    w = np.asarray(weight)
    return float((w.max(axis=1) - w.min(axis=1)).max())


def constant_init(value: float):
    """Every weight ``value`` (``init.constant``) as a ``nn.Linear(init=...)`` initializer."""

    def init(shape, rng=None, dtype=np.float32):
        return initializers.constant(shape, value, dtype=dtype)

    init.__name__ = f"constant_{value:g}"
    return init


SYMMETRY_INITS = {
    "zeros": initializers.zeros,
    "constant": constant_init(0.05),
    "xavier": "lecun_normal",
}


def hidden_spread(model) -> tuple[float, float]:
    """(largest unit_spread, largest |w|) over the hidden Linear layers (not the output layer)."""
    hidden = [m.weight.data for m in common.linear_layers(model)[:-1]]
    return max(unit_spread(w) for w in hidden), max(float(np.abs(w).max()) for w in hidden)


@experiment(
    name="zero-init-symmetry",
    unit=UNIT,
    claims=[9],
    claim="If every weight starts at zero (or at any one constant), every hidden unit computes the "
    "same output and receives the same gradient, so the units stay identical through training: "
    "the symmetry never breaks, and a layer is worth one unit. Random init breaks it.",
    source="000 ToBig's slides, 001 CS231n-style notes",
    setup="Fashion-MNIST, 5,000 training images (stratified), pixels in [0, 1]; MLP 784-50-50-10, "
    "sigmoid (with ReLU or tanh, zero weights give zero gradients and nothing moves at all), "
    "biases zero; weights all 0, all 0.05, or the course's Xavier N(0, 1/n); SGD lr 0.1, "
    "batch 100, 500 steps; the three nets see the same batches.",
    quick_setup="1,000 training images, 100 steps; otherwise the same.",
    measures="spread = the largest difference between two hidden units' incoming weight vectors "
    "(max over inputs and over both hidden layers), before and after training, relative to the "
    "largest hidden weight; how far the weights moved; test accuracy",
    rule=Rule(
        Check("zeros_rel_spread", "<=", 1e-4),
        Check("constant_rel_spread", "<=", 1e-4),
        Check("zeros_moved", ">", 1e-3),
        Check("constant_moved", ">", 1e-3),
        Check("xavier_rel_spread", ">=", 0.1),
        note="'identical' = equal up to float32 rounding (relative spread <= 1e-4); the weights "
        "must have moved (> 1e-3), else identical would be trivially true; the random init is the "
        "contrast (its units differ by at least 10% of the largest weight).",
    ),
)
def zero_init_symmetry(ctx):
    n_train, steps = ctx.pick((5000, 500), (1000, 100))
    rows, shown = [], {}
    for seed in ctx.seeds:
        x, y, xt, yt = common.load("fashion-mnist", n_train, 1000, seed=seed, normalize="scale")
        numbers = {}
        for name, init in SYMMETRY_INITS.items():
            model = common.mlp([784, 50, 50, 10], "sigmoid", init=init, rng=ctx.rng(seed, 1))
            before = [m.weight.data.copy() for m in common.linear_layers(model)[:-1]]
            spread_before, _ = hidden_spread(model)
            opt = optim.SGD(model.parameters(), lr=0.1)
            common.fit(model, opt, x, y, ctx.rng(seed, 2), batch_size=100, steps=steps)
            spread, scale = hidden_spread(model)
            after = [m.weight.data for m in common.linear_layers(model)[:-1]]
            moved = max(float(np.abs(a - b).max()) for a, b in zip(after, before))
            numbers[f"{name}_rel_spread"] = spread / scale if scale > 0 else 0.0
            numbers[f"{name}_moved"] = moved
            numbers[f"{name}_test_acc"] = common.accuracy(model, xt, yt)
            rows.append(
                [
                    seed,
                    name,
                    f"{spread_before:.3g}",
                    f"{spread:.3g}",
                    f"{scale:.3g}",
                    f"{numbers[f'{name}_rel_spread']:.3g}",
                    f"{moved:.3g}",
                    f"{numbers[f'{name}_test_acc']:.3f}",
                ]
            )
            if seed == ctx.seeds[0]:
                shown[name] = after[0] - before[0]
        ctx.record(seed, **numbers)
    cols = [
        "seed",
        "init",
        "spread before",
        "spread after",
        "max |w|",
        "relative spread",
        "moved",
        "test acc",
    ]
    ctx.table("hidden units' incoming weights", cols, rows)
    fig, axes = ctx.figure("first-layer-units", 3, 6, figsize=(11, 6))
    for r, (name, w) in enumerate(shown.items()):
        lim = float(np.abs(w).max()) or 1.0
        for j in range(6):
            ax = axes[r, j]
            ax.imshow(w[:, j].reshape(28, 28), cmap="coolwarm", vmin=-lim, vmax=lim)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{name}: unit {j + 1}", fontsize=8)
    fig.suptitle(
        f"How training changed the first 6 hidden units' incoming weights (W after - W before; "
        f"seed {ctx.seeds[0]})"
    )


def histogram_net(activation: str, init, rng, width: int = 100, depth: int = 5):
    """The course's histogram net: ``depth`` layers of ``width`` units, no bias."""
    act = nn.get_activation(activation)
    layers = []
    for _ in range(depth):
        layers += [nn.Linear(width, width, bias=False, init=init, rng=rng), act()]
    return nn.Sequential(*layers)


def layer_activations(net, x: np.ndarray) -> list[np.ndarray]:
    """Each activation module's output on ``x``, read through forward hooks."""
    acts = [m for m in net if not isinstance(m, nn.Linear)]
    with common.ActivationProbe(acts) as probe, no_grad():
        net(Tensor(x))
    return probe.outputs


def activation_fractions(a: np.ndarray) -> dict:
    """Fractions of activations in the bins the claims name (over all of a layer's values):
    ``near_0`` |a| < 0.05, ``near_half`` |a - 0.5| < 0.05, ``near_1`` a > 0.95,
    ``sigmoid_saturated`` a < 0.05 or a > 0.95 (sigmoid's flat ends), ``tanh_saturated``
    |a| > 0.95 (tanh's flat ends), ``zero`` a == 0 (ReLU's dead side)."""
    a = np.asarray(a, dtype=np.float64)
    return {
        "near_0": float(np.mean(np.abs(a) < 0.05)),
        "near_half": float(np.mean(np.abs(a - 0.5) < 0.05)),
        "near_1": float(np.mean(a > 0.95)),
        "sigmoid_saturated": float(np.mean((a < 0.05) | (a > 0.95))),
        "tanh_saturated": float(np.mean(np.abs(a) > 0.95)),
        "zero": float(np.mean(a == 0)),
    }


HIST_CASES = [  # (activation, init name), in the course's order
    ("sigmoid", "std 1"),
    ("sigmoid", "std 0.01"),
    ("sigmoid", "Xavier"),
    ("tanh", "std 0.01"),
    ("tanh", "std 1"),
    ("tanh", "Xavier"),
]


def _key(activation, init_name, what):
    return f"{activation}_{init_name.replace(' ', '').replace('.', '')}_{what}".lower()


@experiment(
    name="init-histograms",
    unit=UNIT,
    claims=[10],
    claim="Sigmoid with N(0, 1) weights: activations pile up at 0 and 1 (saturation, vanishing "
    "gradients); with N(0, 0.01): they collapse onto 0.5 (every unit says the same); Xavier "
    "keeps them spread out. tanh: std 0.01 collapses them to 0; std 1.0 saturates them at +-1; "
    "Xavier keeps them spread.",
    source="000 ToBig's slides, 001 CS231n-style notes, 003 BITAMIN slides",
    setup="The course's weight_init_activation_histogram: input randn(1000, 100), 5 layers of 100 "
    "units, no bias; weights N(0, std^2) with std 1, 0.01 and Xavier sqrt(1/100); sigmoid and "
    "tanh. Bins over all 100,000 activations of a layer: sigmoid saturated a < 0.05 or a > 0.95, "
    "collapsed |a - 0.5| < 0.05; tanh saturated |a| > 0.95, collapsed |a| < 0.05. The rule reads "
    "the last (5th) layer, where the course's figures show each effect.",
    measures="per layer and case: the fractions near 0, near 0.5, near 1 and saturated; mean and "
    "std of the activations; histograms per layer (a row per case, as the course's figures)",
    rule=Rule(
        Check("sigmoid_std1_saturated", ">=", 0.5),
        Check("sigmoid_std001_near_half", ">=", 0.9),
        Check("sigmoid_xavier_saturated", "<=", 0.1),
        Check("sigmoid_xavier_near_half", "<=", 0.5),
        Check("tanh_std001_near_0", ">=", 0.9),
        Check("tanh_std1_saturated", ">=", 0.5),
        Check("tanh_xavier_saturated", "<=", 0.1),
        Check("tanh_xavier_near_0", "<=", 0.5),
        note="'pile up' / 'saturate' = at least half the last layer's activations in the flat "
        "ends; 'collapse' = at least 90% within 0.05 of the collapse point; 'spread' = at most "
        "10% saturated and at most half collapsed.",
    ),
)
def init_histograms(ctx):
    rows = []
    for seed in ctx.seeds:
        rng = ctx.rng(seed)
        x = rng.standard_normal((1000, 100)).astype(np.float32)
        numbers, layers_of = {}, {}
        for activation, init_name in HIST_CASES:
            outs = layer_activations(histogram_net(activation, INITS[init_name], rng), x)
            layers_of[activation, init_name] = outs
            last = activation_fractions(outs[-1])
            collapse = "near_half" if activation == "sigmoid" else "near_0"
            numbers[_key(activation, init_name, "saturated")] = last[f"{activation}_saturated"]
            numbers[_key(activation, init_name, collapse)] = last[collapse]
            numbers[_key(activation, init_name, "std")] = float(outs[-1].std())
            if seed == ctx.seeds[0]:
                for i, a in enumerate(outs, 1):
                    f = activation_fractions(a)
                    rows.append(
                        [f"{activation}, {init_name}", i, f"{a.mean():.3f}", f"{a.std():.3f}"]
                        + [f"{f[k]:.3f}" for k in ("near_0", "near_half", "near_1")]
                        + [f"{f[f'{activation}_saturated']:.3f}"]
                    )
        ctx.record(seed, **numbers)
        if seed == ctx.seeds[0]:
            shown = layers_of
    cols = ["case", "layer", "mean", "std", "near 0", "near 0.5", "near 1", "saturated"]
    ctx.table(f"per layer (seed {ctx.seeds[0]})", cols, rows)
    fig, axes = ctx.figure("histograms", len(HIST_CASES), 5, figsize=(14, 2.1 * len(HIST_CASES)))
    for r, (activation, init_name) in enumerate(HIST_CASES):
        lo = 0 if activation == "sigmoid" else -1
        for i, a in enumerate(shown[activation, init_name]):
            ax = axes[r, i]
            ax.hist(a.ravel(), bins=30, range=(lo, 1), color=COLORS[init_name])
            ax.set_title(f"{activation}, {init_name}: layer {i + 1}", fontsize=8)
            ax.set_yticks([])
            ax.tick_params(labelsize=7)
            if r == len(HIST_CASES) - 1:
                ax.set_xlabel("activation", fontsize=8)
    fig.suptitle(
        f"Activation histograms, randn(1000, 100) through 5x100 layers (seed {ctx.seeds[0]})"
    )
