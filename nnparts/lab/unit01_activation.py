"""Unit 01: activation functions (claims 1-8 of LAB.md).

Linear maps compose into one linear map; sigmoid's derivative is at most 1/4 and gradients vanish
with depth; sigmoid outputs are not zero-centred; ReLU units die; Swish is smoother than ReLU;
the naive softmax overflows; the softmax + cross-entropy gradient is p - y; and which activation
wins on Fashion-MNIST.
"""

from __future__ import annotations

import numpy as np

from nnparts import data, optim
from nnparts import functional as F
from nnparts.lab import common
from nnparts.lab.engine import Check, Rule, experiment
from nnparts.tensor import Tensor, no_grad

UNIT = "01 activation"


# --- helpers (tested in tests/test_lab_unit01.py) --------------------------------------------


def composed_linear(model) -> tuple[np.ndarray, np.ndarray]:
    """The one affine map ``x @ W + b`` that a stack of Linear layers (no activation) computes:
    ``W = W1 W2 ... WL`` and ``b = (...((b1 W2 + b2) W3 + b3) ...) WL + bL``."""
    layers = common.linear_layers(model)
    w = np.asarray(layers[0].weight.data, dtype=np.float64)
    b = _bias(layers[0], w.shape[1])
    for layer in layers[1:]:
        wl = np.asarray(layer.weight.data, dtype=np.float64)
        w, b = w @ wl, b @ wl + _bias(layer, wl.shape[1])
    return w, b


def _bias(layer, n: int) -> np.ndarray:
    return np.zeros(n) if layer.bias is None else np.asarray(layer.bias.data, dtype=np.float64)


def naive_softmax(z: np.ndarray) -> np.ndarray:
    """``exp(z) / sum exp(z)`` as written, without subtracting the max (overflows)."""
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)


def stable_softmax(z: np.ndarray) -> np.ndarray:
    """``exp(z - max z) / sum exp(z - max z)``: the same function, no overflow."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sign_agreement(g: np.ndarray, axis: int = 0) -> np.ndarray:
    """Per unit: the fraction of its non-zero weight gradients that share the majority sign,
    ``max(#positive, #negative) / #non-zero`` along ``axis`` (1 = all one sign, 0.5 = half).
    A unit with no non-zero gradient counts as 1 (nothing disagrees)."""
    pos = (g > 0).sum(axis=axis)
    neg = (g < 0).sum(axis=axis)
    return np.maximum(pos, neg) / np.maximum(pos + neg, 1) + (pos + neg == 0)


def roughness(f: np.ndarray) -> float:
    """Mean absolute second difference of a 2-D grid of values along both axes, divided by the
    range of the values (0 for an affine landscape; scale-free)."""
    d2x = np.abs(f[2:, :] - 2 * f[1:-1, :] + f[:-2, :])
    d2y = np.abs(f[:, 2:] - 2 * f[:, 1:-1] + f[:, :-2])
    span = float(f.max() - f.min())
    return float((d2x.mean() + d2y.mean()) / 2 / span) if span > 0 else 0.0


def _grid(x: np.ndarray, n: int, pad: float = 0.3):
    lo, hi = x.min(0) - pad, x.max(0) + pad
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n))
    return gx, gy, np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)


def _predict(model, x: np.ndarray) -> np.ndarray:
    with no_grad():
        return model(Tensor(x)).data


# --- claim 1 -----------------------------------------------------------------------------------

MODELS_1 = {  # name -> (hidden sizes, activation)
    "logistic": ([], "identity"),
    "deep_linear": ([32, 32, 32, 32], "identity"),
    "relu": ([32, 32, 32], "relu"),
    "tanh": ([32, 32, 32], "tanh"),
}


@experiment(
    name="xor-spirals",
    unit=UNIT,
    claims=[1],
    claim="A linear model cannot fit XOR or two spirals; a stack of layers without an activation "
    "is still one linear map (its composed matrix); with a non-linearity the net fits.",
    source="000 ToBig's slides",
    setup="XOR (4 Gaussian blobs, noise 0.2) and two spirals (1.5 turns, noise 0.05), 400 points "
    "each. Logistic regression (2-2 softmax), a deep linear net 2-[32 x 4]-2 without activations, "
    "and 2-[32 x 3]-2 nets with ReLU and with tanh (He init); full-batch Adam lr 0.01, 300 "
    "steps. The deep linear net's composed W = W1...W5 and b are applied to the inputs and "
    "compared with the net's output.",
    quick_setup="100 steps",
    measures="training accuracy of each model; max |x W + b - net(x)| / max |net(x)| of the deep "
    "linear net",
    rule=Rule(
        Check("acc_logistic", "<=", 0.8),
        Check("acc_deep_linear", "<=", 0.8),
        Check("acc_relu", ">=", 0.95),
        Check("acc_tanh", ">=", 0.95),
        Check("composed_error", "<=", 1e-5),
        note="'fails' = at most 80% training accuracy (the best line on XOR gets ~75%); 'fits' = "
        "at least 95%. Evaluated per dataset and seed.",
    ),
)
def xor_spirals(ctx):
    steps = ctx.pick(300, 100)
    makers = {
        "xor": lambda s: data.xor(400, noise=0.2, seed=s),
        "spirals": lambda s: data.spirals(400, noise=0.05, seed=s),
    }
    shown = {}
    for group, make in makers.items():
        for seed in ctx.bar(ctx.seeds, desc=f"xor-spirals {group}"):
            x, y = make(ctx.rng(seed, 1))
            rng = ctx.rng(seed, 2)
            models, numbers = {}, {}
            for name, (hidden, act) in MODELS_1.items():
                model = common.mlp([2, *hidden, 2], act, init="he_normal", rng=rng)
                opt = optim.Adam(model.parameters(), lr=0.01)
                common.fit(model, opt, x, y, rng, batch_size=len(x), steps=steps)
                numbers[f"acc_{name}"] = common.accuracy(model, x, y)
                models[name] = model
            w, b = composed_linear(models["deep_linear"])
            out = _predict(models["deep_linear"], x).astype(np.float64)
            err = np.abs(x.astype(np.float64) @ w + b - out).max() / np.abs(out).max()
            ctx.record(seed, group=group, composed_error=float(err), **numbers)
            if seed == ctx.seeds[0]:
                shown[group] = (x, y, models, w, b)
    fig, axes = ctx.figure("boundaries", 2, 4, figsize=(13, 6.4))
    for row, (group, (x, y, models, w, b)) in enumerate(shown.items()):
        gx, gy, pts = _grid(x, 150)
        for col, (name, model) in enumerate(models.items()):
            ax = axes[row, col]
            p = stable_softmax(_predict(model, pts).astype(np.float64))[:, 1].reshape(gx.shape)
            ax.contourf(gx, gy, p, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.7)
            ax.scatter(*x.T, c=y, cmap="RdBu_r", s=6, edgecolors="k", linewidths=0.2)
            acc = common.accuracy(model, x, y)
            ax.set_title(f"{group}: {name} (train acc {acc:.2f})", fontsize=9)
            ax.set_xlabel("x1")
            ax.set_ylabel("x2")
        ctx.table(
            f"{group}: composed map of the deep linear net (seed {ctx.seeds[0]})",
            ["", "class 0", "class 1"],
            [["W row x1", *w[0].round(4)], ["W row x2", *w[1].round(4)], ["b", *b.round(4)]],
        )
    fig.suptitle("Decision regions (colour: P(class 1)); seed " + str(ctx.seeds[0]))


# --- claim 2 -----------------------------------------------------------------------------------

INITS_2 = {"sigmoid": "xavier_normal", "tanh": "xavier_normal", "relu": "he_normal"}


def layer_grad_norms(model, layers, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``||d loss / d output||`` of each of ``layers`` on one batch, read by output-grad hooks."""
    with common.GradientProbe(layers) as probe:
        F.cross_entropy(model(Tensor(x)), y).backward()
    for p in model.parameters():
        p.grad = None
    return np.array([np.linalg.norm(g) for g in probe.grads])


@experiment(
    name="vanishing-gradients",
    unit=UNIT,
    claims=[2],
    claim="Sigmoid's derivative is at most 1/4, so gradients shrink layer after layer: they vanish "
    "with depth in sigmoid and tanh nets, not in ReLU nets.",
    source="000 ToBig's slides, 001 CS231n-style notes",
    setup="sigmoid'(x) by autograd on 200,001 points of [-10, 10] (float64). 784-[100 x 10]-10 "
    "nets on 2,000 Fashion-MNIST images, sigmoid and tanh with Xavier init, ReLU with He init "
    "(each with its customary init); SGD lr 0.1, batch 100, 200 steps. Gradient norms "
    "||dL/dz_l|| of the 10 hidden Linear outputs (output-grad hooks) on 500 held-out images, at "
    "init and after training.",
    quick_setup="500 images, 30 steps",
    measures="max sigmoid'(x); ratio = ||dL/dz_1|| / ||dL/dz_10|| (first hidden layer over the "
    "last) per activation, at init and after training",
    rule=Rule(
        Check("max_dsigmoid", "~", 0.25, tol=1e-6),
        Check("ratio_sigmoid_init", "<=", 0.1),
        Check("ratio_tanh_init", "<=", 0.1),
        Check("ratio_relu_init", ">=", 0.1),
        Check("ratio_sigmoid_trained", "<=", 0.1),
        Check("ratio_tanh_trained", "<=", 0.1),
        Check("ratio_relu_trained", ">=", 0.1),
        note="'vanishes' = the first hidden layer's gradient is at most 1/10 of the last's over "
        "the 10 layers; 'does not vanish' = more than 1/10.",
    ),
)
def vanishing_gradients(ctx):
    n_train, steps = ctx.pick(2000, 500), ctx.pick(200, 30)
    grid = Tensor(np.linspace(-10.0, 10.0, 200001), requires_grad=True)
    F.sigmoid(grid).sum().backward()
    max_dsigmoid = float(grid.grad.max())
    norms = {}  # (activation, phase) -> per-seed arrays of 10 norms
    for seed in ctx.bar(ctx.seeds, desc="vanishing-gradients"):
        x, y, xe, ye = common.load("fashion-mnist", n_train, 500, seed=seed)
        numbers = {"max_dsigmoid": max_dsigmoid}
        for act, init in INITS_2.items():
            rng = ctx.rng(seed, 1)
            model = common.mlp([784] + [100] * 10 + [10], act, init=init, rng=rng)
            hidden = common.linear_layers(model)[:10]
            before = layer_grad_norms(model, hidden, xe, ye)
            opt = optim.SGD(model.parameters(), lr=0.1)
            common.fit(model, opt, x, y, rng, batch_size=100, steps=steps)
            after = layer_grad_norms(model, hidden, xe, ye)
            for phase, g in (("init", before), ("trained", after)):
                norms.setdefault((act, phase), []).append(g)
                numbers[f"ratio_{act}_{phase}"] = float(g[0] / g[-1])
        ctx.record(seed, **numbers)
    fig, axes = ctx.figure("grad-norms", 1, 2, figsize=(10, 3.8), sharey=True)
    layers = np.arange(1, 11)
    for ax, phase in zip(axes, ("init", "trained")):
        for i, act in enumerate(INITS_2):
            g = np.array(norms[(act, phase)])
            ax.plot(layers, g.mean(0), "o-", color=f"C{i}", label=act, ms=3)
            ax.fill_between(layers, g.min(0), g.max(0), color=f"C{i}", alpha=0.2)
        ax.set_yscale("log")
        ax.set_xlabel("hidden layer (1 = nearest the input)")
        ax.set_title(f"||dL/dz|| per layer, {'at init' if phase == 'init' else 'after training'}")
        ax.legend(fontsize=8, title="mean, band min-max", title_fontsize=7)
    axes[0].set_ylabel("gradient norm (log)")
    ctx.table(
        "mean gradient norm per hidden layer (1 ... 10)",
        ["activation", "phase", *map(str, layers)],
        [
            [act, phase, *[f"{v:.2e}" for v in np.mean(norms[(act, phase)], 0)]]
            for act in INITS_2
            for phase in ("init", "trained")
        ],
    )


# --- claim 3 -----------------------------------------------------------------------------------


def sgd_path(inputs: np.ndarray, w_star: np.ndarray, lr: float) -> np.ndarray:
    """Per-sample SGD on ``(x . w - x . w_star)^2 / 2`` from w = 0: the path of w (steps + 1, 2).
    Each update is ``-lr * err * x``: parallel to the input x."""
    w = np.zeros(2)
    path = [w]
    for x in inputs:
        w = w - lr * float(x @ w - x @ w_star) * x
        path.append(w)
    return np.array(path)


@experiment(
    name="sign-agreement",
    unit=UNIT,
    claims=[3],
    claim="Sigmoid outputs are not zero-centred (all positive), so the gradients of a unit's "
    "incoming weights all share one sign, and updates zig-zag; tanh is zero-centred.",
    source="000 ToBig's slides, 001 CS231n-style notes",
    setup="784-100-100-10 nets (Xavier) with sigmoid vs tanh on 256 Fashion-MNIST images; the "
    "second Linear layer's per-sample weight gradients h_n (x) delta_n from a forward hook on the "
    "first activation (h) and an output-grad hook on the layer (delta), and its batch gradient "
    "(summed loss). Toy: one unit w . x fitted to w* = (1, -1) by per-sample SGD (lr 0.5, 300 "
    "steps) with inputs sigmoid(z) vs tanh(z), z ~ N(0, I).",
    quick_setup="64 images",
    measures="sign agreement = per unit, the fraction of its incoming-weight gradients sharing "
    "the majority sign (1 = all one sign, 0.5 = half), averaged over units (and samples); toy: "
    "fraction of updates with both components of one sign, path length / distance travelled",
    rule=Rule(
        Check("agree_sample_sigmoid", ">=", 0.99),
        Check("agree_sample_tanh", "<=", 0.8),
        Check("agree_batch_sigmoid", ">", "agree_batch_tanh"),
        Check("toy_same_sign_sigmoid", ">=", 0.99),
        Check("toy_path_ratio_sigmoid", ">", "toy_path_ratio_tanh"),
    ),
)
def sign_agreement_experiment(ctx):
    n = ctx.pick(256, 64)
    w_star = np.array([1.0, -1.0])
    shown = {}
    for seed in ctx.seeds:
        x, y, _, _ = common.load("fashion-mnist", n, 10, seed=seed)
        numbers = {}
        for act in ("sigmoid", "tanh"):
            model = common.mlp([784, 100, 100, 10], act, init="xavier_normal", rng=ctx.rng(seed))
            layer = common.linear_layers(model)[1]
            with common.ActivationProbe([model[1]]) as a, common.GradientProbe([layer]) as g:
                F.cross_entropy(model(Tensor(x)), y, reduction="sum").backward()
            per_sample = a.outputs[0][:, :, None] * g.grads[0][:, None, :]  # (n, in, out)
            batch = layer.weight.grad
            numbers[f"agree_sample_{act}"] = float(sign_agreement(per_sample, axis=1).mean())
            numbers[f"agree_batch_{act}"] = float(sign_agreement(batch, axis=0).mean())
            numbers[f"sum_error_{act}"] = float(
                np.abs(per_sample.sum(0) - batch).max() / np.abs(batch).max()
            )
            squash = {"sigmoid": lambda z: 1 / (1 + np.exp(-z)), "tanh": np.tanh}[act]
            path = sgd_path(squash(ctx.rng(seed, 1).standard_normal((300, 2))), w_star, lr=0.5)
            d = np.diff(path, axis=0)
            moved = (d != 0).all(1)
            numbers[f"toy_same_sign_{act}"] = float(
                (np.sign(d[moved, 0]) == np.sign(d[moved, 1])).mean()
            )
            numbers[f"toy_path_ratio_{act}"] = float(
                np.linalg.norm(d, axis=1).sum() / np.linalg.norm(path[-1] - path[0])
            )
            numbers[f"toy_final_distance_{act}"] = float(np.linalg.norm(path[-1] - w_star))
            if seed == ctx.seeds[0]:
                shown[act] = (path, sign_agreement(batch, axis=0))
        ctx.record(seed, **numbers)
    fig, axes = ctx.figure("zigzag", 1, 2, figsize=(10, 4))
    for i, (act, (path, per_unit)) in enumerate(shown.items()):
        axes[0].plot(*path.T, "-", color=f"C{i}", lw=0.8, label=f"inputs {act}(z)")
        per_sample = ctx.records[0][f"agree_sample_{act}"]
        axes[1].hist(
            per_unit,
            bins=np.linspace(0.5, 1, 26),
            color=f"C{i}",
            alpha=0.6,
            label=f"{act} (per-sample gradients: {per_sample:.2f})",
        )
    axes[0].plot(*w_star, "k*", ms=12, label="w* = (1, -1)")
    axes[0].plot(0, 0, "ko", ms=4)
    axes[0].set_xlabel("w1")
    axes[0].set_ylabel("w2")
    axes[0].set_title(f"per-sample SGD path from 0 (seed {ctx.seeds[0]})", fontsize=9)
    axes[0].legend(fontsize=8)
    axes[1].set_xlabel("sign agreement of a unit's incoming-weight gradients (batch)")
    axes[1].set_ylabel("units of layer 2")
    axes[1].set_title(f"batch gradient, per unit (seed {ctx.seeds[0]})", fontsize=9)
    axes[1].legend(fontsize=8)


# --- claim 4 -----------------------------------------------------------------------------------

ACTS_4 = ("relu", "leaky_relu", "elu")
LRS_4 = {"small": 0.01, "large": 0.1}  # 0.5 diverged (NaN) for all three; 0.2 for ELU


def stuck_fraction(pre_activations: np.ndarray) -> float:
    """The fraction of units whose pre-activation is <= 0 on every sample (rows) of a batch: for
    ReLU the units that output 0 everywhere (dead); for Leaky ReLU / ELU the units stuck in the
    negative regime (they still pass a gradient, so they may come back)."""
    return float((pre_activations.max(axis=0) <= 0).mean())


@experiment(
    name="dying-relu",
    unit=UNIT,
    claims=[4],
    claim="Dying ReLU: with a large learning rate many ReLU units die (10-20% in CS231n) and never "
    "activate again; Leaky ReLU and ELU keep them alive.",
    source="000 ToBig's slides, 001 CS231n-style notes",
    setup="784-[100 x 3]-10 nets (He init) with ReLU, Leaky ReLU (0.01), ELU (1.0) on 5,000 "
    "Fashion-MNIST images; plain SGD, batch 100, 3 epochs, lr 0.1 (large: the "
    "largest of 0.05, 0.1, 0.2, 0.3, 0.5 at which none of the three diverges on seed 0), and "
    "lr 0.01 for ReLU as the baseline; hidden "
    "biases initialized to 0 or to -1 (negative-bias init), one group each. The three activations "
    "start from the same weights and see the same batches.",
    quick_setup="1,000 images, 1 epoch",
    measures="dead fraction = hidden units (all 300) whose pre-activation is <= 0 on every one of "
    "1,000 held-out images (a ReLU unit then outputs 0 for all of them; a Leaky/ELU unit is then "
    "'stuck negative', the comparable measure); NaN if training diverged; also ReLU's fraction "
    "at init (before training); test accuracy",
    rule=Rule(
        Check("dead_relu_large", ">=", 0.10),
        Check("dead_relu_large", ">", "dead_relu_small"),
        Check("dead_leaky_relu_large", "<=", "dead_relu_large", factor=0.5),
        Check("dead_elu_large", "<=", "dead_relu_large", factor=0.5),
        note="'many die' = at least 10% dead at the large lr, and more than at the small lr; "
        "'keep them alive' = at most half of ReLU's fraction stuck. Per bias group and seed.",
    ),
)
def dying_relu(ctx):
    n_train, epochs = ctx.pick(5000, 1000), ctx.pick(3, 1)
    for group, bias in (("bias 0", 0.0), ("bias -1", -1.0)):
        for seed in ctx.bar(ctx.seeds, desc=f"dying-relu {group}"):
            x, y, xt, yt = common.load("fashion-mnist", n_train, 1000, seed=seed)
            numbers = {}
            for lr_tag, lr in [("init", 0.0), *LRS_4.items()]:
                for act in ACTS_4 if lr_tag == "large" else ("relu",):
                    rng = ctx.rng(seed, 1)  # same weights and batches for every activation
                    model = common.mlp([784, 100, 100, 100, 10], act, init="he_normal", rng=rng)
                    hidden = common.linear_layers(model)[:-1]
                    for layer in hidden:
                        layer.bias.data[...] = bias
                    if lr_tag == "init":  # before any training: the baseline
                        with common.ActivationProbe(hidden) as probe:
                            _predict(model, xt)
                        numbers["dead_relu_init"] = stuck_fraction(np.hstack(probe.outputs))
                        continue
                    opt = optim.SGD(model.parameters(), lr=lr)
                    run = common.fit(model, opt, x, y, rng, batch_size=100, epochs=epochs)
                    with common.ActivationProbe(hidden) as probe:
                        _predict(model, xt)
                    z = np.concatenate(probe.outputs, axis=1)
                    ok = run["diverged_at"] is None and np.isfinite(z).all()
                    numbers[f"dead_{act}_{lr_tag}"] = stuck_fraction(z) if ok else float("nan")
                    numbers[f"acc_{act}_{lr_tag}"] = common.accuracy(model, xt, yt)
            ctx.record(seed, group=group, **numbers)
    fig, axes = ctx.figure("dead-units", 1, 2, figsize=(10, 3.8), sharey=True)
    for ax, group in zip(axes, ("bias 0", "bias -1")):
        rows = [r for r in ctx.records if r["group"] == group]
        for j, lr_tag in enumerate(LRS_4):
            for i, act in enumerate(ACTS_4):
                if f"dead_{act}_{lr_tag}" not in rows[0]:
                    continue
                v = np.array([r[f"dead_{act}_{lr_tag}"] for r in rows])
                pos = i + 0.38 * (j - 0.5)
                label = f"lr {LRS_4[lr_tag]}" if i == 0 else None
                ax.bar(pos, np.nanmean(v), 0.36, color=f"C{j}", alpha=0.6, label=label)
                ax.plot(np.full(len(v), pos), v, "k.", ms=4)
        init = np.mean([r["dead_relu_init"] for r in rows])
        ax.hlines(init, -0.45, 0.45, colors="k", linestyles="--", label="ReLU at init (mean)")
        ax.set_xticks(range(len(ACTS_4)), ACTS_4)
        ax.set_title(f"hidden biases at init: {group.split()[1]} (bars: mean; dots: seeds)")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("fraction of units <= 0 on all held-out images")


# --- claim 5 -----------------------------------------------------------------------------------


@experiment(
    name="swish-landscape",
    unit=UNIT,
    claims=[5],
    claim="Swish gives a smoother output landscape than ReLU for a randomly initialized network "
    "(Ramachandran et al. 2017, the output-landscape figure).",
    source="000 ToBig's slides",
    setup="A random 2-[64 x 6]-1 net (He-normal weights, biases N(0, 1)), the same weights with "
    "linear, ReLU and Swish (beta 1) activations, evaluated on a 200 x 200 grid over [-3, 3]^2.",
    quick_setup="60 x 60 grid",
    measures="roughness = mean |second difference| of the output along both grid axes / range of "
    "the output (0 for a plane)",
    rule=Rule(Check("roughness_swish", "<", "roughness_relu")),
)
def swish_landscape(ctx):
    n = ctx.pick(200, 60)
    g = np.linspace(-3, 3, n)
    gx, gy = np.meshgrid(g, g)
    pts = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)
    acts = ("identity", "relu", "swish")
    shown = {}
    for seed in ctx.seeds:
        numbers = {}
        for act in acts:
            rng = ctx.rng(seed)  # the same weights and biases for every activation
            model = common.mlp([2] + [64] * 6 + [1], act, init="he_normal", rng=rng)
            for layer in common.linear_layers(model):
                layer.bias.data = rng.standard_normal(layer.bias.data.shape).astype(np.float32)
            f = _predict(model, pts).reshape(n, n).astype(np.float64)
            numbers[f"roughness_{act}"] = roughness(f)
            if seed == ctx.seeds[0]:
                shown[act] = f
        ctx.record(seed, **numbers)
    fig, axes = ctx.figure("landscapes", 1, 4, figsize=(15, 3.6))
    for ax, act in zip(axes, acts):
        im = ax.imshow(shown[act], extent=(-3, 3, -3, 3), origin="lower", cmap="viridis")
        r = ctx.records[0][f"roughness_{act}"]
        ax.set_title(f"{act} (seed {ctx.seeds[0]}), roughness {r:.1e}", fontsize=9)
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
        fig.colorbar(im, ax=ax, shrink=0.8)
    for i, act in enumerate(acts[1:]):
        v = [r[f"roughness_{act}"] for r in ctx.records]
        axes[3].plot(np.full(len(v), i), v, "o", color=f"C{i}")
        axes[3].hlines(np.mean(v), i - 0.2, i + 0.2, color=f"C{i}")
    axes[3].set_xticks([0, 1], acts[1:])
    axes[3].set_xlim(-0.6, 1.6)
    axes[3].set_yscale("log")
    axes[3].set_ylabel("roughness (log)")
    axes[3].set_title("each seed (dots) and the mean (line)", fontsize=9)


# --- claims 6 and 7 ----------------------------------------------------------------------------

SCALES_6 = [1, 10, 50, 88, 100, 300, 709, 710, 1000]


@experiment(
    name="softmax-overflow",
    unit=UNIT,
    claims=[6],
    claim="The naive softmax exp(z) / sum exp(z) overflows at large logits; subtracting the max "
    "logit first gives the same function without overflow.",
    source="000 ToBig's slides",
    setup="For each logit scale s in 1 ... 1000, 1,000 rows of 10 logits drawn U(-s, s) with one "
    "entry set to s, in float32 and float64; the naive and the max-subtracted softmax in NumPy, "
    "and the library's F.softmax.",
    quick_setup="200 rows per scale",
    measures="rows with an inf or NaN at s = 1000 (naive, stable, in both dtypes); the smallest "
    "scale where the naive one breaks; max |stable - F.softmax| (float64)",
    rule=Rule(
        Check("naive_bad_rows_1000_f32", ">", 0),
        Check("naive_bad_rows_1000_f64", ">", 0),
        Check("stable_bad_rows", "==", 0),
        Check("stable_vs_library", "<=", 1e-12),
    ),
)
def softmax_overflow(ctx):
    rows = ctx.pick(1000, 200)
    curves = {}
    for seed in ctx.seeds:
        rng = ctx.rng(seed)
        numbers, stable_bad, lib_diff = {}, 0, 0.0
        for dtype, tag in ((np.float32, "f32"), (np.float64, "f64")):
            bad = []
            for s in SCALES_6:
                z = rng.uniform(-s, s, size=(rows, 10))
                z[np.arange(rows), rng.integers(0, 10, rows)] = s
                z = z.astype(dtype)
                naive, stable = naive_softmax(z), stable_softmax(z)
                bad.append(int((~np.isfinite(naive)).any(1).sum()))
                stable_bad += int((~np.isfinite(stable)).any(1).sum())
                if dtype == np.float64:
                    lib = F.softmax(Tensor(z)).data
                    lib_diff = max(lib_diff, float(np.abs(lib - stable).max()))
            numbers[f"naive_bad_rows_1000_{tag}"] = bad[-1]
            first = [s for s, b in zip(SCALES_6, bad) if b > 0]
            numbers[f"naive_breaks_at_{tag}"] = first[0] if first else float("nan")
            curves.setdefault(tag, []).append(np.array(bad) / rows)
        ctx.record(seed, stable_bad_rows=stable_bad, stable_vs_library=lib_diff, **numbers)
    fig, ax = ctx.figure("overflow")
    for tag, style in (("f32", "o-"), ("f64", "s--")):
        c = np.array(curves[tag])
        ax.plot(SCALES_6, c.mean(0), style, label=f"naive, {tag} (mean; band min-max)")
        ax.fill_between(SCALES_6, c.min(0), c.max(0), alpha=0.2)
    ax.plot(SCALES_6, np.zeros(len(SCALES_6)), "k:", label="max-subtracted, both dtypes")
    ax.set_xscale("log")
    ax.set_xlabel("logit scale s (max logit)")
    ax.set_ylabel("fraction of rows with inf/NaN")
    ax.set_title("Naive vs max-subtracted softmax")
    ax.legend(fontsize=8)


@experiment(
    name="softmax-ce-gradient",
    unit=UNIT,
    claims=[7],
    claim="The gradient of softmax followed by cross-entropy with respect to the logits is p - y "
    "(the softmax output minus the one-hot target).",
    source="000 ToBig's slides",
    setup="64 x 10 float64 logits N(0, 3^2) with random labels; the summed loss "
    "-sum log softmax(z)_y. p - y against central finite differences (eps 1e-6) of the loss over "
    "every logit, and against the library's fused F.cross_entropy backward (reduction 'sum'), "
    "also at logits scaled to max |z| = 1000.",
    quick_setup="16 x 10 logits",
    measures="max |p - y - finite difference|; max |p - y - library grad| at normal and at large "
    "logits; non-finite entries in the library's gradient at large logits",
    rule=Rule(
        Check("fd_error", "<=", 1e-6),
        Check("library_error", "<=", 1e-12),
        Check("library_error_large", "<=", 1e-12),
        Check("library_nonfinite_large", "==", 0),
    ),
)
def softmax_ce_gradient(ctx):
    n, c, eps = ctx.pick(64, 16), 10, 1e-6

    def loss(z, y):  # summed cross-entropy of each row set in z (..., n, c)
        m = z.max(-1, keepdims=True)
        lse = np.log(np.exp(z - m).sum(-1)) + m[..., 0]
        return (lse - z[..., np.arange(len(y)), y]).sum(-1)

    for seed in ctx.seeds:
        rng = ctx.rng(seed)
        z = 3.0 * rng.standard_normal((n, c))
        y = rng.integers(0, c, n)
        analytic = stable_softmax(z) - np.eye(c)[y]
        bump = np.eye(n * c).reshape(n * c, n, c) * eps  # one perturbed copy per logit
        fd = ((loss(z + bump, y) - loss(z - bump, y)) / (2 * eps)).reshape(n, c)
        numbers = {"fd_error": float(np.abs(fd - analytic).max())}
        for tag, zz in (("", z), ("_large", z * 1000 / np.abs(z).max())):
            t = Tensor(zz, requires_grad=True)
            F.cross_entropy(t, y, reduction="sum").backward()
            expect = stable_softmax(zz) - np.eye(c)[y]
            numbers[f"library_error{tag}"] = float(np.abs(t.grad - expect).max())
            if tag:
                numbers["library_nonfinite_large"] = int((~np.isfinite(t.grad)).sum())
        ctx.record(seed, **numbers)
        if seed == ctx.seeds[0]:
            shown = (analytic, fd, t.grad, expect)
    analytic, fd, lib_large, expect_large = shown
    fig, axes = ctx.figure("gradients", 1, 2, figsize=(8.4, 3.6))
    axes[0].scatter(analytic.ravel(), fd.ravel(), s=6)
    axes[0].set_xlabel("p - y")
    axes[0].set_ylabel("finite difference dL/dz")
    axes[0].set_title("logits N(0, 9): p - y vs finite differences", fontsize=9)
    axes[1].scatter(expect_large.ravel(), lib_large.ravel(), s=6, c="C1")
    axes[1].set_xlabel("p - y (max-subtracted softmax)")
    axes[1].set_ylabel("F.cross_entropy backward")
    axes[1].set_title("logits up to |z| = 1000: library vs p - y", fontsize=9)
    for ax in axes:
        ax.plot([-1, 1], [-1, 1], "k:", lw=0.8)


# --- claim 8 -----------------------------------------------------------------------------------

ACTS_8 = {  # activation -> its customary init
    "relu": "he_normal",
    "leaky_relu": "he_normal",
    "elu": "he_normal",
    "swish": "he_normal",
    "tanh": "xavier_normal",
    "sigmoid": "xavier_normal",
}


@experiment(
    name="activation-shootout",
    unit=UNIT,
    claims=[8],
    claim="In practice ReLU < ELU < Leaky ReLU (the notes' claimed order, worst to best).",
    source="001 CS231n-style notes",
    setup="The same 784-100-100-10 MLP with ReLU, Leaky ReLU (0.01), ELU, Swish (He init) and "
    "tanh, sigmoid (Xavier init) on 10,000 Fashion-MNIST training images (stratified), Adam lr "
    "1e-3, batch 100, 5 epochs; test accuracy on the 10,000 test images. Per seed, every "
    "activation starts from the same generator state and sees the same batches.",
    quick_setup="2,000 training / 1,000 test images, 1 epoch",
    measures="test accuracy per activation; the ranking by the mean over seeds, with sd and range",
    rule=Rule(
        Check("acc_relu", "<", "acc_elu"),
        Check("acc_elu", "<", "acc_leaky_relu"),
        over="mean",
        note="the claimed order, by mean test accuracy; the spread over seeds is on the page.",
    ),
)
def activation_shootout(ctx):
    n_train, n_test, epochs = ctx.pick(10000, 2000), ctx.pick(10000, 1000), ctx.pick(5, 1)
    for seed in ctx.bar(ctx.seeds, desc="activation-shootout"):
        x, y, xt, yt = common.load("fashion-mnist", n_train, n_test, seed=seed)
        numbers = {}
        for act, init in ACTS_8.items():
            rng = ctx.rng(seed, 1)
            model = common.mlp([784, 100, 100, 10], act, init=init, rng=rng)
            opt = optim.Adam(model.parameters(), lr=1e-3)
            common.fit(model, opt, x, y, rng, batch_size=100, epochs=epochs)
            numbers[f"acc_{act}"] = common.accuracy(model, xt, yt)
        ctx.record(seed, **numbers)
    acc = {a: np.array([r[f"acc_{a}"] for r in ctx.records]) for a in ACTS_8}
    order = sorted(ACTS_8, key=lambda a: -acc[a].mean())
    ctx.table(
        "ranking by mean test accuracy",
        ["rank", "activation", "mean", "sd", "min", "max"],
        [
            [
                i + 1,
                a,
                f"{acc[a].mean():.4f}",
                f"{acc[a].std(ddof=1) if len(acc[a]) > 1 else 0:.4f}",
                f"{acc[a].min():.4f}",
                f"{acc[a].max():.4f}",
            ]
            for i, a in enumerate(order)
        ],
    )
    family = ("relu", "elu", "leaky_relu")
    gap = max(acc[a].mean() for a in family) - min(acc[a].mean() for a in family)
    sd = np.mean([acc[a].std(ddof=1) for a in family]) if len(ctx.seeds) > 1 else float("nan")
    paired = {
        f"{a} - elu": np.round(acc[a] - acc["elu"], 4).tolist() for a in ("relu", "leaky_relu")
    }
    ctx.note(
        f"ReLU family: the means span {gap:.4f}; the mean sd over seeds is {sd:.4f}. Per-seed "
        f"paired differences (same init stream and batches): {paired}."
    )
    fig, ax = ctx.figure("accuracy", figsize=(7, 3.8))
    for i, a in enumerate(order):
        ax.plot(np.full(len(acc[a]), i), acc[a], "o", color=f"C{i}", ms=5, alpha=0.7)
        ax.hlines(acc[a].mean(), i - 0.3, i + 0.3, color=f"C{i}", lw=2)
    ax.set_xticks(range(len(order)), order)
    ax.set_ylabel("test accuracy")
    ax.set_title("Fashion-MNIST, same MLP: each seed (dots) and the mean (line), best first")
