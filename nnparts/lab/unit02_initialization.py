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
    "sigmoid (with ReLU or tanh, zero weights make every hidden output 0 and every weight "
    "gradient 0, so nothing moves), "
    "biases zero; weights all 0, all 0.05, or the course's Xavier N(0, 1/n); SGD lr 0.1, "
    "batch 100, 500 steps; the three nets see the same batches.",
    quick_setup="1,000 training images, 100 steps, the first seed only; otherwise the same.",
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
    for seed in ctx.pick(ctx.seeds, ctx.seeds[:1]):
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
            shown_numbers = (spread_before, spread, scale, numbers[f"{name}_rel_spread"], moved)
            rows.append([seed, name, *(f"{v:.3g}" for v in shown_numbers)])
            rows[-1].append(f"{numbers[f'{name}_test_acc']:.3f}")
            if seed == ctx.seeds[0]:
                shown[name] = after[0] - before[0]
        ctx.record(seed, **numbers)
    cols = "seed,init,spread before,spread after,max |w|,relative spread,moved,test acc".split(",")
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
            counts, edges = np.histogram(a, bins=30, range=(lo, 1))
            ax.stairs(counts, edges, fill=True, color=COLORS[init_name])
            ax.set_xticks([lo, (lo + 1) / 2, 1])
            ax.set_title(f"{activation}, {init_name}: layer {i + 1}", fontsize=8)
            ax.set_yticks([])
            ax.tick_params(labelsize=7)
            if r == len(HIST_CASES) - 1:
                ax.set_xlabel("activation", fontsize=8)
    fig.suptitle(
        f"Activation histograms, randn(1000, 100) through 5x100 layers (seed {ctx.seeds[0]})"
    )


def train_course_sgd(model, x, y, rng, steps: int, lr: float = 0.01) -> list[float]:
    """The course's loop: SGD, batches of 128 drawn with replacement; the per-step losses."""
    opt = optim.SGD(model.parameters(), lr=lr)
    return common.fit(model, opt, x, y, rng, batch_size=128, steps=steps, replacement=True)["loss"]


def loss_curve_band(ax, curves, label, color, window=50):
    """Mean of the smoothed curves with their min-max band over seeds."""
    sm = np.array([common.smooth(c, window) for c in curves])
    steps = np.arange(sm.shape[1]) + min(window, len(curves[0]))
    ax.plot(steps, sm.mean(0), color=color, label=label)
    ax.fill_between(steps, sm.min(0), sm.max(0), color=color, alpha=0.25, lw=0)


@experiment(
    name="relu-xavier-vs-he",
    unit=UNIT,
    claims=[11],
    claim="With ReLU, Xavier's weights make the activations' spread shrink layer by layer (ReLU "
    "zeroes half of them, halving the variance each layer); He's N(0, 2/n) keeps it. A 30-layer "
    "ReLU net trains with He and stalls with Xavier (He et al. 2015, fig. 3).",
    source="000 ToBig's slides, 001 CS231n-style notes",
    setup="(a) the course's histogram setup with ReLU: randn(1000, 100), 5 layers of 100 units, "
    "no bias, Xavier sqrt(1/100) vs He sqrt(2/100). (b) a 30-layer ReLU MLP (784-[100 x 29]-10, "
    "30 Linear layers, biases zero) on Fashion-MNIST (pixels in [0, 1]), SGD lr 0.01, batch 128 "
    "sampled with replacement, 300 steps, the two nets on the same batches; test on 2,000 images.",
    quick_setup="(b) 60 steps, 500 test images, the first seed only; otherwise the same.",
    measures="(a) activation std per layer, and layer 5 / layer 1; (b) activation std per layer at "
    "init on a training batch; training loss (final = mean over the last 10% of steps); test "
    "accuracy",
    rule=Rule(
        Check("xavier_std_ratio", "<", 0.5),
        Check("he_std_ratio", ">", 0.5),
        Check("he_std_ratio", "<", 2),
        Check("he_final_loss", "<=", 0.5 * LN10),
        Check("xavier_final_loss", ">=", 0.9 * LN10),
        note="'shrinks' = layer 5's std under half of layer 1's (halving the variance each layer "
        "predicts 0.25); 'keeps' = within a factor 2; 'trains' = final loss at most half the "
        "chance loss ln 10; 'stalls' = it stays within 10% of ln 10.",
    ),
)
def relu_xavier_vs_he(ctx):
    steps, n_test = ctx.pick((300, 2000), (60, 500))
    depth_stds = {"Xavier": [], "He": []}
    deep_stds, curves = {"Xavier": [], "He": []}, {"Xavier": [], "He": []}
    seeds = ctx.pick(ctx.seeds, ctx.seeds[:1])
    for seed in seeds:
        rng = ctx.rng(seed)
        x = rng.standard_normal((1000, 100)).astype(np.float32)
        x_tr, y_tr, x_te, y_te = common.load("fashion-mnist", None, n_test, seed, normalize="scale")
        numbers = {}
        for name in ("Xavier", "He"):
            outs = layer_activations(histogram_net("relu", INITS[name], rng), x)
            stds = [float(a.std()) for a in outs]
            depth_stds[name].append(stds)
            numbers[f"{name.lower()}_std_ratio"] = stds[-1] / stds[0]
            model = common.mlp([784] + [100] * 29 + [10], "relu", INITS[name], rng=ctx.rng(seed, 1))
            relus = [m for m in model if isinstance(m, nn.ReLU)]
            with common.ActivationProbe(relus) as probe, no_grad():
                model(Tensor(x_tr[:128]))
            deep_stds[name].append([float(a.std()) for a in probe.outputs])
            loss = train_course_sgd(model, x_tr, y_tr, ctx.rng(seed, 2), steps)
            curves[name].append(loss)
            numbers[f"{name.lower()}_final_loss"] = float(np.mean(loss[-steps // 10 :]))
            numbers[f"{name.lower()}_test_acc"] = common.accuracy(model, x_te, y_te)
            deep = deep_stds[name][-1]
            numbers[f"{name.lower()}_deep_std_ratio"] = deep[-1] / deep[0]
        ctx.record(seed, **numbers)
    fig, axes = ctx.figure("depth-and-training", 1, 3, figsize=(13, 3.6))
    for name in ("Xavier", "He"):
        for ax, stds in ((axes[0], depth_stds[name]), (axes[1], deep_stds[name])):
            s = np.array(stds)
            layers = np.arange(1, s.shape[1] + 1)
            ax.plot(
                layers, s.mean(0), "o-" if ax is axes[0] else "-", color=COLORS[name], label=name
            )
            ax.fill_between(layers, s.min(0), s.max(0), color=COLORS[name], alpha=0.25, lw=0)
        loss_curve_band(axes[2], curves[name], name, COLORS[name], window=ctx.pick(20, 5))
    axes[0].set(
        title="histogram setup (randn, 5x100, ReLU)", xlabel="layer", ylabel="activation std"
    )
    axes[1].set(
        title="30-layer MLP at init (Fashion-MNIST batch)",
        xlabel="layer",
        ylabel="activation std",
        yscale="log",
    )
    axes[2].axhline(LN10, color="gray", ls=":", zorder=0, label="ln 10 (chance)")
    axes[2].set(
        title=f"30-layer MLP training ({len(seeds)} seeds)",
        xlabel="step",
        ylabel="training loss (smoothed)",
    )
    for ax in axes:
        ax.legend(fontsize=8)


COMPARE = {"std 0.01": "std001", "Xavier": "xavier", "He": "he"}


@experiment(
    name="weight-init-compare",
    unit=UNIT,
    claims=[12],
    claim="With weights N(0, 0.01^2) the net does not learn at all; with Xavier and He it does, "
    "and He learns fastest (the course's weight_init_compare on MNIST).",
    source="000 ToBig's slides",
    setup="The course's weight_init_compare: 784-[100 x 4]-10, ReLU, biases zero, SGD lr 0.01, "
    "batch 128 sampled with replacement, 2,000 iterations, the three nets on the same batches; "
    "pixels in [0, 1]. Fashion-MNIST (60,000 training, 10,000 test images) and mnist-5k (4,000 "
    "training, 1,000 test digits, split stratified per seed).",
    quick_setup="200 iterations, 3,000 training and 1,000 test images per dataset, the first "
    "seed only; otherwise the same.",
    seeds=2,
    measures="training loss per iteration (figure: smoothed over 50, mean and min-max band over "
    "seeds); final loss = mean over the last 10% of iterations; mean loss over all iterations "
    "(the area under the curve: lower = learns faster); test accuracy",
    rule=Rule(
        Check("std001_final_loss", ">=", 0.9 * LN10),
        Check("xavier_final_loss", "<=", 0.5 * LN10),
        Check("he_final_loss", "<=", 0.5 * LN10),
        Check("he_mean_loss", "<", "xavier_mean_loss"),
        note="'does not learn' = final loss within 10% of the chance loss ln 10; 'learns' = final "
        "loss at most half of ln 10; 'fastest' = He's mean loss over the run below Xavier's, on "
        "the same batches.",
    ),
)
def weight_init_compare(ctx):
    iters, n_train, n_test = ctx.pick((2000, None, None), (200, 3000, 1000))
    seeds, curves = ctx.pick(ctx.seeds, ctx.seeds[:1]), {}
    for group in common.DATASETS:
        for seed in seeds:
            x, y, xt, yt = common.load(group, n_train, n_test, seed, normalize="scale")
            numbers = {}
            for name, key in COMPARE.items():
                model = common.mlp(
                    [784, 100, 100, 100, 100, 10], "relu", INITS[name], rng=ctx.rng(seed, 1)
                )
                loss = train_course_sgd(model, x, y, ctx.rng(seed, 2), iters)
                curves.setdefault((group, name), []).append(loss)
                numbers[f"{key}_final_loss"] = float(np.mean(loss[-iters // 10 :]))
                numbers[f"{key}_mean_loss"] = float(np.mean(loss))
                numbers[f"{key}_test_acc"] = common.accuracy(model, xt, yt)
            ctx.record(seed, group=group, **numbers)
    fig, axes = ctx.figure("loss-curves", 1, 2, figsize=(11, 3.8))
    for ax, group in zip(axes, common.DATASETS):
        for name in COMPARE:
            loss_curve_band(ax, curves[group, name], name, COLORS[name], window=ctx.pick(50, 10))
        ax.axhline(LN10, color="gray", ls=":", zorder=0, label="ln 10 (chance)")
        ax.set(
            title=f"{group}: 784-[100 x 4]-10, ReLU, SGD lr 0.01 ({len(seeds)} seeds)",
            xlabel="iteration",
            ylabel="training loss (smoothed)",
        )
        ax.legend(fontsize=8)
