"""Unit 03 — normalization: BatchNorm's speed and robustness, BN at inference, BN at small
batches vs LayerNorm / GroupNorm, BN vs dropout (claims 13-16).

Normalization sits after each hidden Linear and before its ReLU, as in the course's
``MultiLayerNetExtend(use_batchnorm=True)``; the last Linear is never normalized. GroupNorm on an
MLP's ``(N, 100)`` features: ``nn.GroupNorm(10, 100)`` takes the 2-D input directly, which is
the same as reshaping it to ``(N, 100, 1, 1)``: statistics per sample over each group of 10
consecutive features (``LayerNorm`` is the one-group case).
"""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np

from nnparts import nn, optim
from nnparts.lab import common
from nnparts.lab.engine import Check, Rule, experiment
from nnparts.tensor import Tensor, no_grad

UNIT = "03 normalization"
GROUPS = 10  # GroupNorm's groups on 100 features
COLORS = {"bn": "tab:red", "plain": "tab:blue", "ln": "tab:green", "gn": "tab:purple"}
COLORS.update({"dropout": "tab:orange", "bn+dropout": "tab:brown"})


def norm_mlp(sizes, norm=None, init="he_normal", dropout=0.0, rng=None) -> nn.Sequential:
    """Linear, [BatchNorm1d | LayerNorm | GroupNorm(10)], ReLU, [Dropout] per hidden layer; a
    plain Linear last. ``norm`` is None, ``"bn"``, ``"ln"`` or ``"gn"``."""
    make = {
        None: None,
        "bn": nn.BatchNorm1d,
        "ln": nn.LayerNorm,
        "gn": lambda n: nn.GroupNorm(GROUPS, n),
    }
    if norm not in make:
        raise ValueError(f"unknown norm {norm!r}; allowed: None, bn, ln, gn")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b, init=init, rng=rng))
        if i == len(sizes) - 2:
            break
        if norm is not None:
            layers.append(make[norm](b))
        layers.append(nn.ReLU())
        if dropout:
            layers.append(nn.Dropout(dropout, rng=rng))
    return nn.Sequential(*layers)


def scaled_he(gain: float):
    """An initializer N(0, (gain * sqrt(2 / fan_in))^2) for ``nn.Linear(init=...)``."""

    def init(shape, rng=None, dtype=np.float32):
        rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
        std = gain * math.sqrt(2.0 / shape[0])
        return (rng.standard_normal(shape) * std).astype(dtype)

    init.__name__ = f"he_x{gain:g}"
    return init


def train_curve(model, x, y, rng, lr, epochs, batch_size=100, momentum=0.0) -> list[float]:
    """SGD with training accuracy (eval mode) after each epoch; a run whose loss turns
    non-finite stops there and keeps its last accuracy for the remaining epochs."""
    opt = optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    per_epoch = math.ceil(len(x) / batch_size)
    curve: list[float] = []

    def on_step(step, loss):
        if step % per_epoch == 0:
            curve.append(common.accuracy(model, x, y))

    with warnings.catch_warnings(), np.errstate(over="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # exploding runs (they stop), any thread
        common.fit(model, opt, x, y, rng, batch_size=batch_size, epochs=epochs, on_step=on_step)
    last = curve[-1] if curve else common.accuracy(model, x, y)
    return curve + [last] * (epochs - len(curve))


def band(ax, xs, runs, color, label, style="-"):
    """Mean line with a min-max band over seeds (``runs``: seeds x points)."""
    runs = np.asarray(runs, dtype=float)
    ax.plot(xs, runs.mean(0), style, color=color, label=label, lw=1.4)
    ax.fill_between(xs, runs.min(0), runs.max(0), color=color, alpha=0.2, lw=0)


STDS = np.logspace(0, -4, 16)
LEARNS = 0.5  # a final training accuracy that counts as "learns" (five times chance)


@experiment(
    name="batch-norm-test",
    unit=UNIT,
    claims=[13],
    claim="Batch normalization makes learning faster and makes the network robust to the "
    "initial weight scale (the course's 4x4 figure: without BN most weight scales learn slowly "
    "or not at all; with BN most of them learn, and faster).",
    source="000 ToBig's slides, 003 BITAMIN slides, 004 devcourse notes",
    setup="The course's batch_norm_test: 784-[100 x 5]-10, ReLU, MNIST (mnist-5k, 1,000 training "
    "samples stratified, pixels scaled to [0, 1] as the course's normalize=True), batch 100, SGD "
    "lr 0.01, 20 epochs; weights N(0, std^2) with std in logspace(0, -4, 16), biases 0; for "
    "each std a net with BatchNorm (before each ReLU) and one without, same initial weights and "
    "the same batches; 2 seeds (each seed: its own 1,000 samples, weights and batch order) to "
    "keep the unit's budget (16 x 2 runs per seed). A run whose loss turns non-finite stops "
    "and keeps its last accuracy. BatchNorm1d has the library's (PyTorch's) eps 1e-5; the "
    "course's layer adds 1e-6.",
    quick_setup="the first seed, 4 of the 16 stds (1, 0.046, 0.0022, 1e-4), 6 epochs",
    seeds=2,
    measures="training accuracy after each epoch (eval mode), per std and variant; per seed: "
    "the number of stds where BN's mean accuracy over the epochs (area under its curve) is "
    "higher; per variant the number of stds where it learns (final accuracy >= 0.5), and the "
    "mean and sd over the stds of the final training accuracy",
    rule=Rule(
        Check("faster_wins", ">=", "faster_needed", label="faster_wins >= 3/4 of the stds"),
        Check("bn_learns", ">=", "plain_learns", factor=2),
        note="'learns faster' = BN's area under the training-accuracy curve is larger on at "
        "least three quarters of the weight scales (12 of 16); 'robust to the weight scale' = BN "
        "learns (final training accuracy >= 0.5, five times chance) at at least twice as many "
        "weight scales as the plain net. (Changed once, after the first full run: the first rule "
        "compared the sd over the scales of the final accuracy, BN 0.25-0.28 vs plain 0.26-0.27; "
        "but a net that fails at every scale has sd 0, so that sd does not measure robustness.)",
    ),
)
def batch_norm_test(ctx):
    stds, epochs = ctx.pick(STDS, STDS[::5]), ctx.pick(20, 6)
    seeds = ctx.pick(ctx.seeds, ctx.seeds[:1])
    curves = {v: np.zeros((len(seeds), len(stds), epochs)) for v in ("bn", "plain")}
    for s, seed in enumerate(seeds):
        x, y, _, _ = common.load("mnist-5k", 1000, 100, seed=seed, normalize="scale")
        for i, std in enumerate(ctx.bar(stds, len(stds), f"batch-norm-test seed {seed}")):
            for variant in ("bn", "plain"):
                net = norm_mlp(
                    [784] + [100] * 5 + [10],
                    "bn" if variant == "bn" else None,
                    common.normal_init(std),
                    rng=ctx.rng(seed, 100 + i),
                )
                curves[variant][s, i] = train_curve(net, x, y, ctx.rng(seed, 200 + i), 0.01, epochs)
        bn, plain = curves["bn"][s], curves["plain"][s]
        ctx.record(
            seed,
            faster_wins=int((bn.mean(1) > plain.mean(1)).sum()),
            faster_needed=math.ceil(0.75 * len(stds)),
            final_wins=int((bn[:, -1] > plain[:, -1]).sum()),
            bn_final_mean=float(bn[:, -1].mean()),
            plain_final_mean=float(plain[:, -1].mean()),
            bn_learns=int((bn[:, -1] >= LEARNS).sum()),
            plain_learns=int((plain[:, -1] >= LEARNS).sum()),
            bn_final_sd=float(bn[:, -1].std()),
            plain_final_sd=float(plain[:, -1].std()),
        )
    ctx.table(
        "final training accuracy per weight std (mean over seeds)",
        ["std", "BN", "no BN", "BN area", "no-BN area"],
        [
            [f"{std:.2e}"]
            + [round(float(curves[v][:, i, -1].mean()), 3) for v in ("bn", "plain")]
            + [round(float(curves[v][:, i].mean()), 3) for v in ("bn", "plain")]
            for i, std in enumerate(stds)
        ],
    )
    rows = math.ceil(len(stds) / 4)
    fig, axes = ctx.figure("grid", rows, 4, figsize=(12, 2.6 * rows), sharex=True, sharey=True)
    ep = np.arange(1, epochs + 1)
    for i, ax in enumerate(np.ravel(axes)):
        band(ax, ep, curves["bn"][:, i], COLORS["bn"], "BatchNorm")
        band(ax, ep, curves["plain"][:, i], COLORS["plain"], "no BN", "--")
        ax.set_title(f"W std {stds[i]:.2g}", fontsize=9)
        ax.set_ylim(0, 1.02)
        if i % 4 == 0:
            ax.set_ylabel("train accuracy")
        if i >= len(stds) - 4:
            ax.set_xlabel("epoch")
    np.ravel(axes)[0].legend(fontsize=8, loc="upper left")
    fig.suptitle("batch_norm_test: training accuracy (mean, min-max band over seeds)")
    fig, ax = ctx.figure("final", figsize=(5.5, 3.6))
    for v, label in (("bn", "BatchNorm"), ("plain", "no BN")):
        band(ax, stds, curves[v][:, :, -1], COLORS[v], label, "-o" if v == "bn" else "--s")
    ax.set(xscale="log", xlabel="weight std", ylabel=f"train accuracy after {epochs} epochs")
    ax.set_title("final training accuracy vs initial weight scale", fontsize=10)
    ax.legend(fontsize=8)


def fold_batchnorm(model: nn.Sequential) -> nn.Sequential:
    """A copy of ``model`` with every BatchNorm1d absorbed into the Linear before it, through
    ``BatchNorm1d.fold()``: ``W' = W * scale`` (per output column), ``b' = b * scale + shift``."""
    layers: list[nn.Module] = []
    for m in model:
        if isinstance(m, nn.BatchNorm1d):
            scale, shift = m.fold()
            lin = layers[-1]
            if not isinstance(lin, nn.Linear) or lin.bias is None:
                raise ValueError("fold_batchnorm needs a Linear with a bias before each BatchNorm")
            lin.weight.data = lin.weight.data * scale[None, :]
            lin.bias.data = lin.bias.data * scale + shift
        else:
            layers.append(copy.deepcopy(m))
    return nn.Sequential(*layers).eval()


def predict_in_batches(model, x, order, batch_size, training) -> np.ndarray:
    """Predicted labels of ``x`` when fed in the batches ``order`` cuts (labels in x's order);
    the model runs in training or eval mode on a copy, so its running statistics stay put."""
    net = copy.deepcopy(model).train(training)
    labels = np.empty(len(x), dtype=np.int64)
    with no_grad():
        for i in range(0, len(x), batch_size):
            idx = order[i : i + batch_size]
            labels[idx] = net(Tensor(x[idx])).data.argmax(1)
    return labels


@experiment(
    name="bn-inference",
    unit=UNIT,
    claims=[14],
    claim="At inference BatchNorm normalizes with population statistics (the running averages "
    "collected in training), not the batch's; it is then a fixed affine map that folds into "
    "the layer before it; a model left in training mode gives predictions that change with the "
    "other samples in the batch.",
    source="003 BITAMIN slides, 004 devcourse notes",
    setup="784-[100 x 3]-10 with BatchNorm1d (momentum 0.1) before each ReLU, He init, "
    "Fashion-MNIST 2,000 training / 1,000 test samples (standardized), batch 100, SGD lr 0.05 "
    "momentum 0.9, 10 epochs. Population statistics: the mean and variance of each BN input "
    "over the 2,000 training samples of the trained net (read through forward hooks). Batch "
    "composition: the 1,000 test images in batches of 50, once in a random order (twice, two "
    "orders) and once sorted by class (batch-mates of the same class), in eval and in train "
    "mode.",
    quick_setup="the first seed, 3 epochs",
    measures="max |eval output - folded net output| / max |eval output|; the running mean's "
    "distance from the population mean in population sds (mean over units); test accuracy "
    "with the running vs the population statistics; the fraction of test predictions that "
    "change between random and same-class batch-mates, in eval and in train mode",
    rule=Rule(
        Check("fold_rel_diff", "<=", 1e-5),
        Check("running_mean_err", "<=", 0.1),
        Check("acc_running", "~", "acc_population", tol=0.01),
        Check("eval_changed", "==", 0),
        Check("train_changed_sorted", ">=", 0.05),
        note="'population statistics' = the running mean within 0.1 population sd of the "
        "population mean, and eval accuracy with it within 1 point of that with the exact "
        "population statistics; 'folds' = equal to float32 rounding (1e-5 relative); 'changes "
        "with the batch' = at least 5% of the predictions in train mode, none in eval mode.",
    ),
)
def bn_inference(ctx):
    seeds, epochs = ctx.pick(ctx.seeds, ctx.seeds[:1]), ctx.pick(10, 3)
    for seed in seeds:
        x, y, xt, yt = common.load("fashion-mnist", 2000, 1000, seed=seed)
        net = norm_mlp([784, 100, 100, 100, 10], "bn", rng=ctx.rng(seed, 1))
        opt = optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        common.fit(net, opt, x, y, ctx.rng(seed, 2), batch_size=100, epochs=epochs)
        net.eval()
        with no_grad():
            out_eval = net(Tensor(xt)).data
            out_fold = fold_batchnorm(net)(Tensor(xt)).data
        bns = [m for m in net if isinstance(m, nn.BatchNorm1d)]
        with common.ActivationProbe(common.linear_layers(net)[:-1]) as probe, no_grad():
            net(Tensor(x))  # eval mode: the inputs of each BN over the whole training set
        pop = [(o.mean(0), o.var(0)) for o in probe.outputs]
        err = [np.abs(b.running_mean - m) / np.sqrt(v) for b, (m, v) in zip(bns, pop)]
        var_ratio = [b.running_var / v for b, (m, v) in zip(bns, pop)]
        acc_running = common.accuracy(net, xt, yt)
        pop_net = copy.deepcopy(net)
        for b, (m, v) in zip([m for m in pop_net if isinstance(m, nn.BatchNorm1d)], pop):
            b.running_mean[...], b.running_var[...] = m, v
        rng = ctx.rng(seed, 3)
        orders = [rng.permutation(len(xt)), rng.permutation(len(xt)), np.argsort(yt, kind="stable")]
        pred = {
            mode: [predict_in_batches(net, xt, o, 50, mode == "train") for o in orders]
            for mode in ("eval", "train")
        }
        ctx.record(
            seed,
            fold_rel_diff=float(np.abs(out_eval - out_fold).max() / np.abs(out_eval).max()),
            running_mean_err=float(np.concatenate(err).mean()),
            running_var_ratio=float(np.concatenate(var_ratio).mean()),
            acc_running=acc_running,
            acc_population=common.accuracy(pop_net, xt, yt),
            eval_changed=float(np.mean(pred["eval"][0] != pred["eval"][2])),
            train_changed_random=float(np.mean(pred["train"][0] != pred["train"][1])),
            train_changed_sorted=float(np.mean(pred["train"][0] != pred["train"][2])),
            acc_train_mode_random=float(np.mean(pred["train"][0] == yt)),
            acc_train_mode_sorted=float(np.mean(pred["train"][2] == yt)),
        )
        if seed == seeds[0]:
            shown = (bns, pop, out_eval, out_fold)
    bns, pop, out_eval, out_fold = shown
    fig, axes = ctx.figure("inference", 1, 3, figsize=(12, 3.6))
    for layer, (b, (m, v)) in enumerate(zip(bns, pop), 1):
        axes[0].scatter(m, b.running_mean, s=6, label=f"BN {layer}")
        axes[1].scatter(v, b.running_var, s=6, label=f"BN {layer}")
    for ax, what in zip(axes[:2], ("mean", "variance")):
        lo, hi = ax.get_xlim()
        ax.plot([lo, hi], [lo, hi], "k:", lw=1)
        ax.set(xlabel=f"population {what} (2,000 training samples)", ylabel=f"running {what}")
        ax.set_title(f"running vs population {what} (seed {seeds[0]})", fontsize=9)
        ax.legend(fontsize=7)
    axes[1].set(xscale="log", yscale="log")
    means = ctx.records[-len(seeds) :]
    names = ["eval", "train mode,\nrandom", "train mode,\nsame class"]
    accs = [[r[k] for r in means] for k in ("acc_running", "acc_train_mode_random")]
    accs.append([r["acc_train_mode_sorted"] for r in means])
    axes[2].bar(names, [np.mean(a) for a in accs], color=["tab:green", "tab:orange", "tab:red"])
    for i, a in enumerate(accs):
        axes[2].plot([i] * len(a), a, "k.", ms=5)
    axes[2].set(ylabel="test accuracy", ylim=(0, 1))
    axes[2].set_title("1,000 test images in batches of 50 (dots: seeds)", fontsize=9)


BATCH_SIZES = (1, 2, 4, 8, 32)
NORMS = {"bn": "BatchNorm", "ln": "LayerNorm", "gn": f"GroupNorm({GROUPS})"}


def batchmate_effect(net, x, rng, k: int = 10, batch: int = 32) -> float:
    """How much the training-mode outputs of ``x[:k]`` change when their ``batch - k``
    batch-mates are replaced by others: max |change| / max |output| (0: batch-independent)."""
    net = copy.deepcopy(net).train()
    outs = []
    with no_grad():
        for _ in range(2):
            mates = k + rng.choice(len(x) - k, batch - k, replace=False)
            outs.append(net(Tensor(np.concatenate([x[:k], x[mates]]))).data[:k])
    return float(np.abs(outs[0] - outs[1]).max() / np.abs(outs[0]).max())


@experiment(
    name="norm-batch-size",
    unit=UNIT,
    claims=[15],
    claim="BatchNorm degrades at small batches (1 to 8): its statistics come from the batch. "
    "LayerNorm and GroupNorm normalize each sample on its own, so they do not depend on the "
    "batch size.",
    source="000 ToBig's slides",
    setup="784-[100 x 2]-10 MLP, ReLU, He init, with BatchNorm1d, LayerNorm(100) or "
    f"GroupNorm({GROUPS}, 100) on the (N, 100) features (= GroupNorm on (N, 100, 1, 1): groups "
    "of 10 features per sample) before each ReLU; Fashion-MNIST, a small training set of 500 "
    "samples (so the batch-size-1 runs, 1,500 steps, stay within budget) and 2,000 test samples; "
    "batch sizes 1, 2, 4, 8, 32 at equal epochs (3), SGD momentum 0.9 with the linear scaling "
    "rule lr = 0.0025 x batch size (0.08 at 32), so each batch size gets about the same "
    "progress per epoch. BatchNorm at batch size 1: the library raises in training (a single "
    "sample has no batch statistics), so that case is recorded as unusable, not as an "
    "accuracy. Batch-mate effect: a trained net (batch 32) in training mode on 10 test images "
    "with two different sets of 22 batch-mates.",
    quick_setup="the first seed, 100 training / 1,000 test samples, 2 epochs",
    measures="test accuracy (eval mode) per norm and batch size; per norm its range (max - min) "
    "over batch sizes 2..32; BN's drop from batch 32 to 2; the batch-mate effect per norm",
    rule=Rule(
        Check("bn_drop", ">", 0.02),
        Check("bn_range", ">", "ln_range"),
        Check("bn_range", ">", "gn_range"),
        Check("ln_batchmate_effect", "<=", 1e-5),
        Check("gn_batchmate_effect", "<=", 1e-5),
        over="mean",
        note="'degrades' = BN's test accuracy at batch 2 is more than 2 points below batch 32, "
        "and BN's accuracy varies more over batch sizes 2..32 than LayerNorm's and GroupNorm's; "
        "'do not depend on the batch' = their outputs do not change with the batch-mates (float32 "
        "rounding aside). On the mean over seeds (the accuracies move by a point or two per seed).",
    ),
)
def norm_batch_size(ctx):
    seeds = ctx.pick(ctx.seeds, ctx.seeds[:1])
    n_train, n_test, epochs = ctx.pick(500, 100), ctx.pick(2000, 1000), ctx.pick(3, 2)
    acc = {v: np.full((len(seeds), len(BATCH_SIZES)), np.nan) for v in NORMS}
    for s, seed in enumerate(seeds):
        x, y, xt, yt = common.load("fashion-mnist", n_train, n_test, seed=seed)
        numbers, effects = {}, {}
        for v in ctx.bar(NORMS, len(NORMS), f"norm-batch-size seed {seed}"):
            for j, bs in enumerate(BATCH_SIZES):
                net = norm_mlp([784, 100, 100, 10], v, rng=ctx.rng(seed, 10 + j))
                opt = optim.SGD(net.parameters(), lr=0.0025 * bs, momentum=0.9)
                try:
                    common.fit(net, opt, x, y, ctx.rng(seed, 20 + j), batch_size=bs, epochs=epochs)
                except ValueError:  # BatchNorm1d in training mode on a batch of one
                    numbers[f"{v}_{bs}_raises"] = 1
                    continue
                acc[v][s, j] = numbers[f"acc_{v}_{bs}"] = common.accuracy(net, xt, yt)
            effects[f"{v}_batchmate_effect"] = batchmate_effect(net, xt, ctx.rng(seed, 30))
            numbers[f"{v}_range"] = float(np.ptp(acc[v][s, 1:]))
        ctx.record(seed, bn_drop=acc["bn"][s, -1] - acc["bn"][s, 1], **numbers, **effects)
    fig, axes = ctx.figure("batch-size", 1, 2, figsize=(11, 3.8))
    for v, label in NORMS.items():
        ok = ~np.isnan(acc[v][0])
        band(axes[0], np.array(BATCH_SIZES)[ok], acc[v][:, ok], COLORS[v], label, "-o")
    if np.isnan(acc["bn"][:, 0]).all():
        axes[0].plot([1], [0.02], "x", color=COLORS["bn"], ms=9, mew=2)
        axes[0].annotate("BN at batch 1: raises", (1, 0.02), (1.3, 0.05), fontsize=8)
    axes[0].set(xscale="log", xlabel="batch size", ylabel="test accuracy", ylim=(0, 1))
    axes[0].set_xticks(BATCH_SIZES, [str(b) for b in BATCH_SIZES])
    axes[0].set_title(f"{epochs} epochs on {n_train} samples, lr = 0.0025 x batch", fontsize=9)
    axes[0].legend(fontsize=8)
    means = [np.mean([r[f"{v}_batchmate_effect"] for r in ctx.records]) for v in NORMS]
    axes[1].bar(list(NORMS.values()), np.maximum(means, 1e-9), color=[COLORS[v] for v in NORMS])
    axes[1].set(yscale="log", ylim=(1e-9, 10), ylabel="max |output change| / max |output|")
    axes[1].set_title("train mode: same 10 images, other batch-mates (0 shown at 1e-9)", fontsize=9)


GAINS = (0.01, 0.1, 1.0, 10.0)  # multiples of He's std sqrt(2 / fan_in); 1 is He


@experiment(
    name="bn-init-scale",
    unit=UNIT,
    claims=[16],
    claim="With batch normalization the network is much less sensitive to its initialization: "
    "it trains to about the same accuracy over a wide range of initial weight scales.",
    source="001 CS231n-style notes",
    setup="784-[100 x 4]-10, ReLU, Fashion-MNIST 2,000 training / 2,000 test samples "
    "(standardized), weights N(0, (g * sqrt(2 / fan_in))^2) for g = 0.01, 0.1, 1 (He), 10, "
    "biases 0; with BatchNorm before each ReLU and without, same initial "
    "weights and batches; batch 100, SGD lr 0.01 momentum 0.9, 10 epochs. A run whose loss "
    "turns non-finite stops there (its accuracy is what it reached).",
    quick_setup="the first seed, g in (0.01, 1, 10), 1,000 training samples, 3 epochs",
    measures="final test accuracy per gain and variant; per variant the range (max - min) of "
    "the test accuracy over the gains, and its mean over the gains",
    rule=Rule(
        Check("bn_range", "<=", "plain_range", factor=0.5),
        Check("bn_mean", ">", "plain_mean"),
        note="'matters less' = the spread of BN's test accuracy over the initial scales is at "
        "most half of the plain net's, and BN is better on average over the scales (so a small "
        "spread is not a uniform failure).",
    ),
)
def bn_init_scale(ctx):
    seeds, epochs = ctx.pick(ctx.seeds, ctx.seeds[:1]), ctx.pick(10, 3)
    gains, n_train = ctx.pick(GAINS, GAINS[::2] + GAINS[-1:]), ctx.pick(2000, 1000)
    acc = {v: np.zeros((len(seeds), len(gains))) for v in ("bn", "plain")}
    for s, seed in enumerate(seeds):
        x, y, xt, yt = common.load("fashion-mnist", n_train, 2000, seed=seed)
        for i, gain in enumerate(ctx.bar(gains, len(gains), f"bn-init-scale seed {seed}")):
            for v in ("bn", "plain"):
                net = norm_mlp(
                    [784] + [100] * 4 + [10],
                    v if v == "bn" else None,
                    scaled_he(gain),
                    rng=ctx.rng(seed, 40 + i),
                )
                train_curve(net, x, y, ctx.rng(seed, 50 + i), 0.01, epochs, momentum=0.9)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    acc[v][s, i] = common.accuracy(net, xt, yt)
        ctx.record(
            seed,
            **{f"{v}_range": float(np.ptp(acc[v][s])) for v in acc},
            **{f"{v}_mean": float(acc[v][s].mean()) for v in acc},
            **{f"acc_{v}_x{g:.2g}": float(acc[v][s, i]) for v in acc for i, g in enumerate(gains)},
        )
    fig, ax = ctx.figure("init-scale", figsize=(5.5, 3.6))
    for v, label in (("bn", "BatchNorm"), ("plain", "no BN")):
        band(ax, gains, acc[v], COLORS[v], label, "-o" if v == "bn" else "--s")
    ax.set(xscale="log", xlabel="initial weight std / He std", ylabel="test accuracy", ylim=(0, 1))
    ax.set_title(f"test accuracy after {epochs} epochs vs initial scale", fontsize=10)
    ax.legend(fontsize=8)


DROPOUT_VARIANTS = {  # name: (norm, dropout ratio)
    "plain": (None, 0.0),
    "bn": ("bn", 0.0),
    "dropout": (None, 0.2),
    "bn+dropout": ("bn", 0.2),
}


@experiment(
    name="bn-vs-dropout",
    unit=UNIT,
    claims=[16],
    claim="BatchNorm also regularizes (each sample's output is jittered by its batch-mates), so "
    "it partly replaces dropout: with BN, dropout adds less than it does without BN.",
    source="001 CS231n-style notes",
    setup="The course's overfit_dropout setup: 784-[100 x 6]-10, ReLU, He init, 300 training "
    "samples (Fashion-MNIST, stratified, standardized), batch 100, SGD lr 0.01, 200 epochs; "
    "four nets from the same initial weights and batches: plain, BatchNorm (before each ReLU), "
    "dropout 0.2 (after each ReLU), and both. Test on 2,000 samples.",
    quick_setup="the first seed, 30 epochs",
    measures="train and test accuracy (eval mode) after training; the generalization gap "
    "(train - test); the test gain from adding dropout, without BN (dropout - plain) and with "
    "BN (bn+dropout - bn)",
    rule=Rule(
        Check("test_bn", ">", "test_plain"),
        Check("gap_bn", "<", "gap_plain"),
        Check("dropout_gain_with_bn", "<", "dropout_gain_without_bn"),
        over="mean",
        note="BN regularizes = higher test accuracy and a smaller gap than the plain net; 'partly "
        "replaces dropout' = dropout's test gain is smaller on top of BN than on a plain net. On "
        "the mean over seeds: 300 training samples make single seeds noisy.",
    ),
)
def bn_vs_dropout(ctx):
    seeds, epochs = ctx.pick(ctx.seeds, ctx.seeds[:1]), ctx.pick(200, 30)
    curves = {v: [] for v in DROPOUT_VARIANTS}
    for seed in ctx.bar(seeds, len(seeds), "bn-vs-dropout"):
        x, y, xt, yt = common.load("fashion-mnist", 300, 2000, seed=seed)
        numbers = {}
        for v, (norm, ratio) in DROPOUT_VARIANTS.items():
            net = norm_mlp([784] + [100] * 6 + [10], norm, dropout=ratio, rng=ctx.rng(seed, 60))
            curves[v].append(train_curve(net, x, y, ctx.rng(seed, 61), 0.01, epochs))
            numbers[f"train_{v}"] = common.accuracy(net, x, y)
            numbers[f"test_{v}"] = common.accuracy(net, xt, yt)
            numbers[f"gap_{v}"] = numbers[f"train_{v}"] - numbers[f"test_{v}"]
        ctx.record(
            seed,
            dropout_gain_without_bn=numbers["test_dropout"] - numbers["test_plain"],
            dropout_gain_with_bn=numbers["test_bn+dropout"] - numbers["test_bn"],
            **numbers,
        )
    fig, axes = ctx.figure("dropout", 1, 2, figsize=(11, 3.8))
    ep = np.arange(1, epochs + 1)
    for v in DROPOUT_VARIANTS:
        band(axes[0], ep, curves[v], COLORS[v], v)
    axes[0].set(xlabel="epoch", ylabel="train accuracy (eval mode)", ylim=(0, 1.02))
    axes[0].set_title("training accuracy, 300 samples (mean, min-max over seeds)", fontsize=9)
    axes[0].legend(fontsize=8)
    names = list(DROPOUT_VARIANTS)
    for k, (what, shift) in enumerate((("train", -0.2), ("test", 0.2))):
        vals = [[r[f"{what}_{v}"] for r in ctx.records] for v in names]
        axes[1].bar(
            np.arange(4) + shift,
            [np.mean(a) for a in vals],
            0.4,
            label=what,
            color=["tab:gray", "tab:cyan"][k],
        )
        for i, a in enumerate(vals):
            axes[1].plot([i + shift] * len(a), a, "k.", ms=4)
    axes[1].set_xticks(range(4), names)
    axes[1].set(ylabel="accuracy", ylim=(0, 1.05))
    axes[1].set_title("after training: train vs test (dots: seeds)", fontsize=9)
    axes[1].legend(fontsize=8)
