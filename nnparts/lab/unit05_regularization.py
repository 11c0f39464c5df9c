"""Unit 05 — regularization: weight decay, dropout, label smoothing, ensembles, bias–variance.

Claims 30, 35, 37, 44 of LAB.md (and, by the same rules, the others of the unit).
"""

from __future__ import annotations

import functools

import numpy as np

from nnparts import optim
from nnparts.lab import common
from nnparts.lab.engine import Check, Rule, experiment
from nnparts.optim.regularizers import l2_penalty
from nnparts.tensor import Tensor, no_grad
from nnparts.train.callbacks import Callback
from nnparts.train.ensemble import bootstrap_indices, combine, softmax_probs

UNIT = "05 regularization"


def _weights(model):
    return [p for name, p in model.named_parameters() if name.endswith("weight")]


def _penalty(kind, strength, model):
    return kind(_weights(model), strength)


# ------------------------------------------------------------------------------------------------
@experiment(
    name="overfit-regularization",
    unit=UNIT,
    claims=[30],
    claim="Trained on 300 samples for 200 epochs, a deep net reaches 100% training accuracy while "
    "test accuracy stays far lower; weight decay (lambda = 0.1) narrows the gap, and so does "
    "dropout (0.2), which learns more slowly (see it at 300 epochs too).",
    source="003 BITAMIN overfitting slides (the course's overfit_weight_decay / overfit_dropout)",
    setup="The course's setup: 784-[100 x 6]-10, ReLU, He init, 300 training samples "
    "(stratified), batch 100, SGD lr 0.01, 200 epochs (dropout: 300 too); L2 added to the loss "
    "as lambda/2 * sum W^2 with lambda 0.1; dropout 0.2 after every hidden layer. Fashion-MNIST "
    "and mnist-5k (1,000 test images each), the same batches for the three variants.",
    quick_setup="60 epochs (dropout 90), 500 test images, mnist-5k only.",
    measures="train and test accuracy and their gap per variant at epoch 200 (dropout also 300)",
    rule=Rule(
        Check("train_acc_none", ">=", 0.99),
        Check("gap_none", ">", 0.15),
        Check("gap_wd", "<", "gap_none"),
        Check("gap_dropout", "<", "gap_none"),
        over="mean",
        note="Separately reported, not part of the rule: whether test accuracy itself rises "
        "(test_gain_wd, test_gain_dropout > 0).",
    ),
)
def overfit_regularization(ctx):
    epochs = ctx.pick(200, 60)
    datasets = ctx.pick(common.DATASETS, ("mnist-5k",))
    fig, axes = ctx.figure("curves", 1, len(datasets), figsize=(5.5 * len(datasets), 3.8))
    axes = np.atleast_1d(axes)
    for ax, name in zip(axes, datasets):
        for seed in ctx.seeds:
            x, y, xt, yt = common.load(name, 300, ctx.pick(1000, 500), seed=seed)
            numbers, curves = {}, {}
            for variant in ("none", "wd", "dropout"):
                rng = ctx.rng(seed, 1)  # same init and batches for every variant
                model = common.mlp(
                    [784] + [100] * 6 + [10],
                    "relu",
                    "he_normal",
                    dropout=0.2 if variant == "dropout" else 0.0,
                    rng=rng,
                )
                opt = optim.SGD(model.parameters(), lr=0.01)
                penalty = (lambda m: l2_penalty(_weights(m), 0.1)) if variant == "wd" else None
                total = epochs * (3 if variant == "dropout" else 2) // 2
                test_curve = []
                for epoch in range(1, total + 1):
                    common.fit(model, opt, x, y, rng, batch_size=100, epochs=1, penalty=penalty)
                    if epoch % 5 == 0 or epoch == total:
                        test_curve.append((epoch, common.accuracy(model, xt, yt)))
                    if epoch == epochs:
                        tr, te = common.accuracy(model, x, y), test_curve[-1][1]
                        numbers.update(
                            {
                                f"train_acc_{variant}": tr,
                                f"test_acc_{variant}": te,
                                f"gap_{variant}": tr - te,
                            }
                        )
                if variant == "dropout":
                    tr = common.accuracy(model, x, y)
                    numbers.update(
                        {
                            "train_acc_dropout_long": tr,
                            "test_acc_dropout_long": test_curve[-1][1],
                            "gap_dropout_long": tr - test_curve[-1][1],
                        }
                    )
                curves[variant] = test_curve
            numbers["test_gain_wd"] = numbers["test_acc_wd"] - numbers["test_acc_none"]
            numbers["test_gain_dropout"] = numbers["test_acc_dropout"] - numbers["test_acc_none"]
            ctx.record(seed, group=name, **numbers)
            for variant, color in zip(curves, ("C0", "C1", "C2")):
                ep, acc = zip(*curves[variant])
                ax.plot(
                    ep, acc, color=color, alpha=0.7, label=variant if seed == ctx.seeds[0] else None
                )
        ax.axvline(epochs, color="grey", lw=0.8, ls=":")
        ax.set(
            title=f"{name}: test accuracy, 300 training samples",
            xlabel="epoch",
            ylabel="test accuracy",
        )
        ax.legend(title="variant (one line per seed)")


# ------------------------------------------------------------------------------------------------
def calibration(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> dict:
    """Expected calibration error (Guo et al. 2017): sum over equal-width confidence bins of
    (bin size / N) * |accuracy in bin - mean confidence in bin|; also the mean over-confidence
    (mean confidence - accuracy) and the per-bin table for a reliability diagram."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(float)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    acc = np.bincount(which, weights=correct, minlength=bins) / np.maximum(count, 1)
    mean_conf = np.bincount(which, weights=conf, minlength=bins) / np.maximum(count, 1)
    ece = float(np.sum(count / len(y) * np.abs(acc - mean_conf)))
    return {
        "ece": ece,
        "overconfidence": float(conf.mean() - correct.mean()),
        "bin_accuracy": acc,
        "bin_confidence": mean_conf,
        "bin_count": count,
        "confidence": conf,
    }


@experiment(
    name="label-smoothing-calibration",
    unit=UNIT,
    claims=[35],
    claim="Label smoothing lowers over-confidence: a model trained on smoothed targets is "
    "better calibrated (its confidence closer to its accuracy).",
    source="002 boostcamp notes (Szegedy et al. 2016; Mueller et al. 2019)",
    setup="MLP 784-256-256-10 (ReLU, He), Adam lr 1e-3, batch 128, 20 epochs on 10,000 "
    "Fashion-MNIST training images, with label smoothing 0 and 0.1 (same init and batches); "
    "calibration on the 10,000 test images, 15 equal-width confidence bins.",
    quick_setup="3,000 training images, 8 epochs, 3,000 test images.",
    measures="expected calibration error (ECE) and mean over-confidence (confidence - accuracy) "
    "on the test set, with and without smoothing; test accuracy",
    rule=Rule(Check("ece_smooth", "<", "ece_none"), Check("overconf_smooth", "<", "overconf_none")),
)
def label_smoothing_calibration(ctx):
    n, epochs = ctx.pick(10_000, 3_000), ctx.pick(20, 8)
    fig, axes = ctx.figure("reliability", 1, 2, figsize=(10, 4))
    for seed in ctx.seeds:
        x, y, xt, yt = common.load("fashion-mnist", n, ctx.pick(None, 3000), seed=seed)
        out = {}
        for smoothing in (0.0, 0.1):
            rng = ctx.rng(seed, 1)
            model = common.mlp([784, 256, 256, 10], "relu", "he_normal", rng=rng)
            opt = optim.Adam(model.parameters(), lr=1e-3)
            common.fit(
                model, opt, x, y, rng, batch_size=128, epochs=epochs, label_smoothing=smoothing
            )
            with no_grad():
                model.eval()
                probs = softmax_probs(model(Tensor(xt)).data)
            out[smoothing] = calibration(probs, yt)
            out[smoothing]["acc"] = float((probs.argmax(1) == yt).mean())
        ctx.record(
            seed,
            ece_none=out[0.0]["ece"],
            ece_smooth=out[0.1]["ece"],
            overconf_none=out[0.0]["overconfidence"],
            overconf_smooth=out[0.1]["overconfidence"],
            test_acc_none=out[0.0]["acc"],
            test_acc_smooth=out[0.1]["acc"],
        )
        if seed == ctx.seeds[0]:
            centers = (np.arange(15) + 0.5) / 15
            for s, label in ((0.0, "no smoothing"), (0.1, "smoothing 0.1")):
                c = out[s]
                keep = c["bin_count"] > 0
                axes[0].plot(
                    c["bin_confidence"][keep],
                    c["bin_accuracy"][keep],
                    "o-",
                    label=f"{label} (ECE {c['ece']:.3f})",
                )
                axes[1].hist(c["confidence"], bins=30, range=(0, 1), alpha=0.6, label=label)
            axes[0].plot([0, 1], [0, 1], "k:", lw=1, label="perfect calibration")
            axes[0].set(
                title="reliability diagram (seed 0)",
                xlabel="confidence",
                ylabel="accuracy",
                xlim=(0, 1),
                ylim=(0, 1),
            )
            axes[0].legend(fontsize=8)
            axes[1].set(
                title="confidence of the test predictions (seed 0)",
                xlabel="max softmax probability",
                ylabel="images",
                yscale="log",
            )
            axes[1].legend(fontsize=8)
            del centers


# ------------------------------------------------------------------------------------------------
@experiment(
    name="ensembles",
    unit=UNIT,
    claims=[37],
    claim="An ensemble (bagging, or the same net trained from different seeds) beats its "
    "average member.",
    source="002 boostcamp notes, 004 devcourse notes",
    setup="MLP 784-128-10 (ReLU, He), SGD momentum 0.9 lr 0.05, batch 100, 8 epochs on 5,000 "
    "Fashion-MNIST training images; 8 members per method: bagging (bootstrap resample with "
    "replacement + own seed, nnparts.train.ensemble.bootstrap_indices) and seeds (whole set, own "
    "seed); combined by mean probability (and by vote) for k = 1..8 members; 5,000 test images.",
    quick_setup="4 members, 2,000 training images, 4 epochs, 2,000 test images.",
    measures="test accuracy of the k-member ensemble vs the mean of its members, per method",
    rule=Rule(
        Check("ens_bagging", ">", "mean_member_bagging"),
        Check("ens_seeds", ">", "mean_member_seeds"),
    ),
)
def ensembles(ctx):
    k_max, n, epochs = ctx.pick(8, 4), ctx.pick(5000, 2000), ctx.pick(8, 4)
    fig, ax = ctx.figure("accuracy-vs-k", figsize=(6, 4))
    for seed in ctx.seeds:
        x, y, xt, yt = common.load("fashion-mnist", n, ctx.pick(5000, 2000), seed=seed)
        numbers = {}
        for method, color in (("bagging", "C0"), ("seeds", "C1")):
            probs, accs = [], []
            for i in range(k_max):
                rng = ctx.rng(seed, 100 + i)
                idx = bootstrap_indices(n, rng) if method == "bagging" else np.arange(n)
                model = common.mlp([784, 128, 10], "relu", "he_normal", rng=rng)
                opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
                common.fit(model, opt, x[idx], y[idx], rng, batch_size=100, epochs=epochs)
                model.eval()
                with no_grad():
                    probs.append(softmax_probs(model(Tensor(xt)).data))
                accs.append(float((probs[-1].argmax(1) == yt).mean()))
            stack = np.stack(probs)
            by_k = [float((combine(stack[:k], "mean") == yt).mean()) for k in range(1, k_max + 1)]
            numbers[f"ens_{method}"] = by_k[-1]
            numbers[f"vote_{method}"] = float((combine(stack, "vote") == yt).mean())
            numbers[f"mean_member_{method}"] = float(np.mean(accs))
            numbers[f"best_member_{method}"] = float(np.max(accs))
            ax.plot(
                range(1, k_max + 1),
                by_k,
                "o-",
                color=color,
                alpha=0.7,
                label=f"{method} ensemble" if seed == ctx.seeds[0] else None,
            )
            ax.axhline(
                np.mean(accs),
                color=color,
                ls=":",
                alpha=0.7,
                label=f"{method}: mean member" if seed == ctx.seeds[0] else None,
            )
        ctx.record(seed, **numbers)
    ax.set(
        title="ensemble of the first k members (one line per seed)",
        xlabel="members k",
        ylabel="test accuracy (mean probability)",
    )
    ax.legend(fontsize=8)


# ------------------------------------------------------------------------------------------------
def _polyfit(x, y, degree):
    """Least-squares polynomial on the domain scaled to [-1, 1] (well conditioned)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", np.exceptions.RankWarning)
        return np.polynomial.Polynomial.fit(x, y, degree)


def fit_mlps(xs: np.ndarray, ys: np.ndarray, grid: np.ndarray, width: int, rng, steps=300):
    """Train ``S`` independent 1-``width``-1 tanh MLPs at once (one per row of ``xs``, ``ys``:
    batched matmuls, each net with its own weights; Adam lr 0.01, full batch, mean squared
    error) and return their predictions on ``grid``, shape ``(S, len(grid))``."""
    from nnparts import functional as F

    s = xs.shape[0]
    w1 = Tensor(rng.normal(0, 1.0, (s, 1, width)), requires_grad=True)
    b1 = Tensor(rng.uniform(-1, 1, (s, 1, width)), requires_grad=True)
    w2 = Tensor(rng.normal(0, 1 / np.sqrt(width), (s, width, 1)), requires_grad=True)
    b2 = Tensor(np.zeros((s, 1, 1)), requires_grad=True)
    params = [w1, b1, w2, b2]
    opt = optim.Adam(params, lr=0.01)
    x, y = Tensor(xs[:, :, None]), ys[:, :, None]

    def forward(inp):
        return F.tanh(inp @ w1 + b1) @ w2 + b2

    for _ in range(steps):
        loss = ((forward(x) - y) ** 2).mean() * s  # the sum over nets of each net's MSE
        opt.zero_grad()
        loss.backward()
        opt.step()
    with no_grad():
        g = Tensor(np.broadcast_to(grid[None, :, None], (s, grid.size, 1)).copy())
        return forward(g).data[:, :, 0]


def bias_variance(kind, size, n_train, n_sets, noise, rng, bag: int = 0):
    """Bias-variance decomposition of a model of ``kind`` (``"polynomial"`` of degree ``size``,
    or ``"mlp"`` of ``size`` hidden units) fitted to ``sin(2 pi x) + N(0, noise^2)``: ``n_sets``
    independent training sets of ``n_train`` points each give a predictor, evaluated on a fixed
    grid. Returns bias^2 (of the mean prediction against the true function), variance (of the
    predictions around their mean), the known noise ``noise^2`` and the measured expected squared
    error on fresh noisy targets. With ``bag > 0`` each predictor is the mean of ``bag`` fits on
    bootstrap resamples of its training set (bagging)."""
    grid = np.linspace(0, 1, 200)
    truth = np.sin(2 * np.pi * grid)
    xs = rng.uniform(0, 1, (n_sets, n_train))
    ys = np.sin(2 * np.pi * xs) + rng.normal(0, noise, xs.shape)
    if bag:  # each set's bag resamples: (n_sets * bag) training sets of n_train points
        idx = np.stack([bootstrap_indices(n_train, rng) for _ in range(n_sets * bag)])
        rows = np.repeat(np.arange(n_sets), bag)
        xs_fit, ys_fit = xs[rows[:, None], idx], ys[rows[:, None], idx]
    else:
        xs_fit, ys_fit = xs, ys
    if kind == "polynomial":
        fits = np.stack([_polyfit(a, b, size)(grid) for a, b in zip(xs_fit, ys_fit)])
    else:
        fits = fit_mlps(xs_fit, ys_fit, grid, size, rng)
    preds = fits.reshape(n_sets, max(bag, 1), grid.size).mean(axis=1)
    mean_pred = preds.mean(axis=0)
    bias2 = float(np.mean((mean_pred - truth) ** 2))
    variance = float(np.mean(preds.var(axis=0)))
    y_test = truth[None, :] + rng.normal(0, noise, preds.shape)  # fresh noisy targets
    error = float(np.mean((preds - y_test) ** 2))
    return {"bias2": bias2, "variance": variance, "noise": noise**2, "error": error}


SIZES = {"polynomial": [1, 2, 3, 5, 7, 9], "mlp": [1, 2, 4, 8, 32]}


@experiment(
    name="bias-variance",
    unit=UNIT,
    claims=[44],
    claim="Expected error = bias^2 + variance + noise; bias falls and variance grows with "
    "model size, and bagging lowers the variance term.",
    source="002 boostcamp notes",
    setup="y = sin(2 pi x) + N(0, 0.3^2), x ~ U(0, 1), 50 training points; two model families "
    "(groups): least-squares polynomials of degree 1..9, and 1-hidden-layer tanh MLPs of 1..32 "
    "units (Adam lr 0.01, 300 full-batch steps); 200 independent training sets (MLP: 40) drawn "
    "from the known distribution, so the decomposition is checked, not assumed; bias^2 and "
    "variance of the predictions on a 200-point grid, the noise known (0.09), the expected error "
    "measured on fresh noisy targets; bagging: each predictor the mean of 8 fits on bootstrap "
    "resamples of its training set, for the largest model.",
    quick_setup="60 training sets (MLP: 12), bagging over 4 resamples, 2 seeds (MLP: 1).",
    measures="max relative gap between bias^2 + variance + noise and the measured error; bias^2 "
    "and variance of the smallest vs the largest model; the largest model's variance with and "
    "without bagging",
    rule=Rule(
        Check("decomposition_rel_error", "<", 0.05),
        Check("bias2_large", "<", "bias2_small"),
        Check("var_large", ">", "var_small"),
        Check("var_large_bagged", "<", "var_large"),
    ),
)
def bias_variance_experiment(ctx):
    bag = ctx.pick(8, 4)
    fig, axes = ctx.figure("decomposition", 1, 2, figsize=(11, 4.2))
    for ax, kind in zip(axes, SIZES):
        sizes = SIZES[kind]
        n_sets = ctx.pick(200, 60) if kind == "polynomial" else ctx.pick(40, 12)
        n_seeds = ctx.pick(len(ctx.seeds), 2 if kind == "polynomial" else 1)
        for seed in ctx.seeds[:n_seeds]:
            rng = ctx.rng(seed, 0 if kind == "polynomial" else 1)
            rows = [bias_variance(kind, d, 50, n_sets, 0.3, rng) for d in sizes]
            bagged = bias_variance(kind, sizes[-1], 50, n_sets, 0.3, rng, bag=bag)
            rel = max(
                abs(r["bias2"] + r["variance"] + r["noise"] - r["error"]) / r["error"] for r in rows
            )
            ctx.record(
                seed,
                group=kind,
                decomposition_rel_error=rel,
                bias2_small=rows[0]["bias2"],
                bias2_large=rows[-1]["bias2"],
                var_small=rows[0]["variance"],
                var_large=rows[-1]["variance"],
                var_large_bagged=bagged["variance"],
                bias2_large_bagged=bagged["bias2"],
                best_size=sizes[int(np.argmin([r["error"] for r in rows]))],
            )
            first = seed == ctx.seeds[0]
            alpha = 0.8 if first else 0.3
            curves = (
                ("bias2", "C0-", "bias$^2$"),
                ("variance", "C1-", "variance"),
                ("error", "C2o", "measured error"),
                ("total", "k:", "bias$^2$ + variance + noise"),
            )
            for key, style, label in curves:
                values = [
                    r["bias2"] + r["variance"] + r["noise"] if key == "total" else r[key]
                    for r in rows
                ]
                ax.plot(sizes, values, style, alpha=alpha, label=label if first else None)
            ax.plot(
                [sizes[-1]],
                [bagged["variance"]],
                "C3*",
                ms=12,
                alpha=alpha,
                label=f"variance, bagged ({bag} resamples)" if first else None,
            )
        ax.axhline(0.09, color="grey", lw=0.8, ls="--", label="noise $\\sigma^2$")
        ax.set(
            yscale="log",
            xscale="log" if kind == "mlp" else "linear",
            xlabel="degree" if kind == "polynomial" else "hidden units",
            ylabel="squared error",
            title=f"{kind}: bias-variance (one line per seed)",
        )
        ax.legend(fontsize=7)


# ------------------------------------------------------------------------------------------------
@experiment(
    name="l1-vs-l2",
    unit=UNIT,
    claims=[31],
    claim="L1 regularization yields sparse weights (many exactly or nearly zero); L2 yields "
    "small but dense weights.",
    source="000 ToBig's slides, 004 devcourse notes",
    setup="MLP 784-100-10 (ReLU, He), SGD momentum 0.9 lr 0.05, batch 100, 15 epochs on 5,000 "
    "Fashion-MNIST images; penalty on the weights: none, L1 lambda * sum|W| and L2 lambda/2 * "
    "sum W^2 at matched strength (L2's lambda = L1's lambda / RMS of the initial weights, so both "
    "pull equally hard on a weight of typical initial size); L1 lambda = 1e-4.",
    quick_setup="2,000 images, 6 epochs.",
    measures="fraction of first-layer weights with |w| < 1% of the initial RMS ('near zero'); "
    "RMS of the weights; test accuracy (5,000 test images)",
    rule=Rule(
        Check("near_zero_l1", ">", "near_zero_l2", factor=3),
        Check("near_zero_l1", ">", "near_zero_none", factor=3),
        Check("rms_l2", "<", "rms_none"),
    ),
)
def l1_vs_l2(ctx):
    from nnparts.optim.regularizers import l1_penalty

    n, epochs, lam = ctx.pick(5000, 2000), ctx.pick(15, 6), 1e-4
    fig, ax = ctx.figure("weights", figsize=(6.5, 4))
    for seed in ctx.seeds:
        x, y, xt, yt = common.load("fashion-mnist", n, 5000, seed=seed)
        numbers = {}
        for variant in ("none", "l1", "l2"):
            rng = ctx.rng(seed, 1)
            model = common.mlp([784, 100, 10], "relu", "he_normal", rng=rng)
            rms0 = float(np.sqrt(np.mean(model[0].weight.data ** 2)))
            penalty = {
                "none": None,
                "l1": functools.partial(_penalty, l1_penalty, lam),
                "l2": functools.partial(_penalty, l2_penalty, lam / rms0),
            }[variant]
            opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
            common.fit(model, opt, x, y, rng, batch_size=100, epochs=epochs, penalty=penalty)
            w = model[0].weight.data.ravel()
            numbers[f"near_zero_{variant}"] = float(np.mean(np.abs(w) < 0.01 * rms0))
            numbers[f"rms_{variant}"] = float(np.sqrt(np.mean(w**2)))
            numbers[f"test_acc_{variant}"] = common.accuracy(model, xt, yt)
            if seed == ctx.seeds[0]:
                ax.hist(
                    w / rms0,
                    bins=120,
                    range=(-3, 3),
                    histtype="step",
                    lw=1.3,
                    label=f"{variant} ({numbers[f'near_zero_{variant}']:.1%} near 0)",
                )
        ctx.record(seed, **numbers)
    ax.set(
        yscale="log",
        xlabel="first-layer weight / initial RMS",
        ylabel="weights",
        title="weights after training (seed 0)",
    )
    ax.legend(fontsize=8)


# ------------------------------------------------------------------------------------------------
class _TestAccuracyAtEnd(Callback):
    def __init__(self, x, y):
        self.x, self.y, self.accuracy = x, y, None

    def on_train_end(self, trainer):
        self.accuracy = common.accuracy(trainer.model, self.x, self.y)


def _es_trainer(seed, train, val, callbacks):
    """The early-stopping experiment's run: the same init and batches for every call of a seed
    (the generator is ``ctx.rng(seed, 1)``'s)."""
    from nnparts.data import DataLoader
    from nnparts.train.trainer import Trainer

    rng = np.random.default_rng([int(seed), 1])
    model = common.mlp([784, 256, 256, 10], "relu", "he_normal", rng=rng)
    loader = DataLoader(*train, batch_size=64, shuffle=True, seed=seed)
    return Trainer(
        model,
        optim.Adam(model.parameters(), lr=1e-3),
        loader,
        val_data=val,
        callbacks=callbacks,
        progress=False,
        log=None,
        rng=rng,
    )


@experiment(
    name="early-stopping",
    unit=UNIT,
    claims=[32],
    claim="Early stopping halts near the minimum of the validation loss, and restoring the best "
    "weights gives better test accuracy than keeping the last ones.",
    source="000 ToBig's slides, 002 boostcamp notes, 004 devcourse notes",
    setup="MLP 784-256-256-10 (ReLU, He), Adam lr 1e-3, batch 64, up to 60 epochs on 2,000 "
    "Fashion-MNIST images (500 more for validation), nnparts' Trainer with "
    "EarlyStopping(val_loss, patience 5, restore_best); the same run without early stopping "
    "gives the validation curve's minimum over all 60 epochs; 5,000 test images.",
    quick_setup="1,000 training images, up to 30 epochs, patience 3.",
    measures="the early-stopped run's best epoch vs the epoch of the validation minimum of the "
    "full 60-epoch run (min_gap, in epochs); test accuracy with the restored best weights vs "
    "the weights of the last epoch run",
    rule=Rule(
        Check("min_gap", "<=", "patience"),
        Check("test_acc_restored", ">=", "test_acc_last"),
    ),
)
def early_stopping(ctx):
    from nnparts.train.callbacks import EarlyStopping

    n, max_epochs, patience = ctx.pick(2000, 1000), ctx.pick(60, 30), ctx.pick(5, 3)
    fig, ax = ctx.figure("validation", figsize=(6.5, 4))
    for seed in ctx.seeds:
        x, y, xt, yt = common.load("fashion-mnist", n + 500, 5000, seed=seed)
        xv, yv, x, y = x[:500], y[:500], x[500:], y[500:]

        make = functools.partial(_es_trainer, seed, (x, y), (xv, yv))
        full = make([])
        full.fit(max_epochs)
        val = [h["val_loss"] for h in full.history]
        best_epoch = int(np.argmin(val)) + 1
        last = _TestAccuracyAtEnd(xt, yt)  # runs before EarlyStopping restores the best weights
        stopper = EarlyStopping("val_loss", patience=patience, restore_best=True)
        es = make([last, stopper])
        es.fit(max_epochs)
        ctx.record(
            seed,
            stop_epoch=es.epoch,
            es_best_epoch=stopper.best_epoch,
            val_min_epoch=best_epoch,
            min_gap=abs(stopper.best_epoch - best_epoch),
            patience=patience,
            test_acc_restored=common.accuracy(es.model, xt, yt),
            test_acc_last=last.accuracy,
            test_acc_full_run=common.accuracy(full.model, xt, yt),
        )
        (line,) = ax.plot(range(1, len(val) + 1), val, alpha=0.7, label=f"seed {seed}")
        ax.axvline(es.epoch, color=line.get_color(), ls=":", lw=1)
        ax.plot([best_epoch], [val[best_epoch - 1]], "o", color=line.get_color())
    ax.set(
        xlabel="epoch",
        ylabel="validation loss",
        title="validation loss (dot: minimum; dotted: early stop)",
    )
    ax.legend(fontsize=8)


# ------------------------------------------------------------------------------------------------
def _image_mlp(sizes, rng, dropout=0.0):
    from nnparts import nn

    return nn.Sequential(
        nn.Flatten(), common.mlp(sizes, "relu", "he_normal", dropout=dropout, rng=rng)
    )


AUGMENTATIONS = {
    "none": None,
    "flip+shift": [{"name": "hflip"}, {"name": "random_shift", "max_shift": 2}],
    "rotation": [{"name": "rotation", "degrees": 10}],
    "noise": [{"name": "gaussian_noise", "std": 0.1}],
    "elastic": [{"name": "elastic", "alpha": 34.0, "sigma": 4.0}],
}


def _augmenter(spec):
    from nnparts.data import build_augmentation

    if spec is None:
        return None
    transform = build_augmentation(spec)
    return lambda xb, yb, rng: (transform(xb, rng=rng), yb)


@experiment(
    name="augmentation-data-size",
    unit=UNIT,
    claims=[33],
    claim="Data augmentation improves test accuracy, most of all when the training set is small.",
    source="000 ToBig's slides, 002 boostcamp notes, 004 devcourse notes",
    setup="MLP 784-256-10 (ReLU, He) on Fashion-MNIST images in [0, 1], Adam lr 1e-3, batch 128; "
    "1,000 / 5,000 / 55,000 training images for 40 / 12 / 3 epochs; augmentations (nnparts.data): "
    "none, flips + 2-pixel shifts, rotation (10 degrees), Gaussian noise (std 0.1), elastic "
    "(alpha 34, sigma 4) — at 55,000 only none and flips + shifts (the rule's; the others cost "
    "minutes there); 5,000 test images; 2 seeds.",
    quick_setup="1,000 and 3,000 images only, 8 / 3 epochs, 1,000 test images, 1 seed.",
    measures="test-accuracy gain of flips + shifts over none at each size (the rule's "
    "augmentation, chosen before the run); the other augmentations' gains are reported",
    rule=Rule(
        Check("gain_1k", ">", 0),
        Check("gain_1k", ">", "gain_largest"),
        over="mean",
    ),
    seeds=2,
)
def augmentation_data_size(ctx):
    sizes = ctx.pick({1000: 40, 5000: 12, 55000: 3}, {1000: 8, 3000: 3})
    fig, ax = ctx.figure("gain-by-size", figsize=(6.5, 4))
    gains_seen = {name: [] for name in AUGMENTATIONS if name != "none"}
    for seed in ctx.seeds[: ctx.pick(len(ctx.seeds), 1)]:
        numbers = {}
        for n, epochs in sizes.items():
            x, y, xt, yt = common.load(
                "fashion-mnist", n, ctx.pick(5000, 1000), seed=seed, flat=False, normalize="scale"
            )
            accs = {}
            for name, spec in AUGMENTATIONS.items():
                if n == max(sizes) and name not in ("none", "flip+shift"):
                    continue  # the full set: only the rule's augmentation (budget)
                rng = ctx.rng(seed, 1)
                model = _image_mlp([784, 256, 10], rng)
                common.fit(
                    model,
                    optim.Adam(model.parameters(), lr=1e-3),
                    x,
                    y,
                    rng,
                    batch_size=128,
                    epochs=epochs,
                    augment=_augmenter(spec),
                )
                accs[name] = common.accuracy(model, xt, yt)
            label = f"{n // 1000}k"
            for name in gains_seen:
                if name in accs:
                    numbers[f"gain_{name}_{label}"] = accs[name] - accs["none"]
            numbers[f"acc_none_{label}"] = accs["none"]
            numbers[f"gain_{label}"] = accs["flip+shift"] - accs["none"]
        numbers["gain_largest"] = numbers[f"gain_{max(sizes) // 1000}k"]
        ctx.record(seed, **numbers)
        for name in gains_seen:
            gains_seen[name].append([numbers.get(f"gain_{name}_{n // 1000}k") for n in sizes])
    for name, rows in gains_seen.items():
        ran = [i for i, v in enumerate(rows[0]) if v is not None]
        mean = np.mean([[row[i] for i in ran] for row in rows], axis=0)
        ax.plot([list(sizes)[i] for i in ran], mean, "o-", label=name)
    ax.axhline(0, color="k", lw=0.8)
    ax.set(
        xscale="log",
        xlabel="training images",
        ylabel="test accuracy gain over none",
        title="augmentation gain by training-set size (mean over seeds)",
    )
    ax.legend(fontsize=8)


# ------------------------------------------------------------------------------------------------
# the CutMix paper's ImageNet table (Yun et al. 2019, ResNet-50 top-1): baseline 76.3
PAPER_GAINS = {"mixup": 77.4 - 76.3, "cutout": 77.1 - 76.3, "cutmix": 78.6 - 76.3}


@experiment(
    name="mixup-cutout-cutmix",
    unit=UNIT,
    claims=[34],
    claim="mixup, Cutout and CutMix each improve accuracy (CutMix paper, ResNet-50 on ImageNet: "
    "baseline 76.3%, mixup 77.4%, Cutout 77.1%, CutMix 78.6%).",
    source="000 ToBig's slides, 002 boostcamp notes",
    setup="MLP 784-512-256-10 (ReLU, He) on 10,000 Fashion-MNIST images in [0, 1], Adam lr "
    "1e-3, batch 128, 20 epochs; mixup (alpha 0.2), Cutout (8x8 box), CutMix (alpha 1.0) from "
    "nnparts.data, each alone; 5,000 test images; 2 seeds.",
    quick_setup="2,000 images, 4 epochs, 1,000 test images.",
    measures="test accuracy per method and its gain over none, beside the paper's gains "
    "(percentage points)",
    rule=Rule(
        Check("gain_mixup", ">", 0),
        Check("gain_cutout", ">", 0),
        Check("gain_cutmix", ">", 0),
        over="mean",
    ),
    seeds=2,
)
def mixup_cutout_cutmix(ctx):
    from nnparts.data import CutMix, Cutout, Mixup

    n, epochs = ctx.pick(10_000, 2_000), ctx.pick(20, 4)
    methods = {
        "none": None,
        "mixup": Mixup(alpha=0.2, num_classes=10),
        "cutout": Cutout(size=8),
        "cutmix": CutMix(alpha=1.0, num_classes=10),
    }
    fig, ax = ctx.figure("gains", figsize=(6, 4))
    gains = {m: [] for m in PAPER_GAINS}
    for seed in ctx.seeds:
        x, y, xt, yt = common.load(
            "fashion-mnist", n, ctx.pick(5000, 1000), seed=seed, flat=False, normalize="scale"
        )
        accs = {}
        for name, transform in methods.items():
            rng = ctx.rng(seed, 1)
            model = _image_mlp([784, 512, 256, 10], rng)
            augment = None if transform is None else functools.partial(_mix, transform)
            common.fit(
                model,
                optim.Adam(model.parameters(), lr=1e-3),
                x,
                y,
                rng,
                batch_size=128,
                epochs=epochs,
                augment=augment,
            )
            accs[name] = common.accuracy(model, xt, yt)
        numbers = {f"acc_{m}": a for m, a in accs.items()}
        for m in PAPER_GAINS:
            numbers[f"gain_{m}"] = accs[m] - accs["none"]
            gains[m].append(100 * numbers[f"gain_{m}"])
        ctx.record(seed, **numbers)
    pos = np.arange(len(PAPER_GAINS))
    ours = [np.mean(gains[m]) for m in PAPER_GAINS]
    spread = [np.ptp(gains[m]) / 2 for m in PAPER_GAINS]
    ax.bar(pos - 0.2, ours, 0.4, yerr=spread, label="ours: Fashion-MNIST, MLP (mean, half range)")
    ax.bar(pos + 0.2, list(PAPER_GAINS.values()), 0.4, label="CutMix paper: ImageNet, ResNet-50")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(pos, list(PAPER_GAINS))
    ax.set(ylabel="accuracy gain over none (points)", title="gain of each method")
    ax.legend(fontsize=8)
    ctx.note(
        "Paper's gains (points): " + ", ".join(f"{m} +{g:.1f}" for m, g in PAPER_GAINS.items())
    )


def _mix(transform, xb, yb, rng):
    out = transform(xb, yb, rng=rng)
    return out if isinstance(out, tuple) else (out, yb)


# ------------------------------------------------------------------------------------------------
class WeightNoise(Callback):
    """Not a Trainer callback here: adds N(0, std^2 * mean(W^2)) to every weight before a forward
    pass and removes it after the update, so the gradient is taken at perturbed weights."""

    def __init__(self, model, std, rng):
        self.weights, self.std, self.rng = _weights(model), std, rng
        self.noise = None

    def add(self):
        self.noise = []
        for w in self.weights:
            scale = self.std * float(np.sqrt(np.mean(w.data**2)))
            e = self.rng.normal(0, scale, w.shape).astype(w.data.dtype)
            w.data += e
            self.noise.append(e)

    def remove(self):
        for w, e in zip(self.weights, self.noise):
            w.data -= e


def _fit_with_weight_noise(model, opt, x, y, rng, epochs, std):
    from nnparts import functional as F

    noise = WeightNoise(model, std, rng)
    model.train()
    for idx in common.batches(len(x), 100, rng, epochs=epochs):
        noise.add()
        loss = F.cross_entropy(model(Tensor(x[idx])), y[idx])
        opt.zero_grad()
        loss.backward()
        noise.remove()  # the update is applied to the clean weights
        opt.step()


@experiment(
    name="noise-injection",
    unit=UNIT,
    claims=[36],
    claim="Injecting noise — into the inputs or into the weights — regularizes: better test "
    "accuracy on a small training set.",
    source="002 boostcamp notes",
    setup="MLP 784-256-256-10 (ReLU, He) on 1,000 Fashion-MNIST images in [0, 1], SGD momentum "
    "0.9 lr 0.02, batch 100, 60 epochs; input noise N(0, 0.2^2) per pixel per batch "
    "(nnparts.data GaussianNoise); weight noise N(0, (0.1 * RMS(W))^2) added before each forward "
    "pass and removed before the update; 5,000 test images.",
    quick_setup="10 epochs, 1,000 test images, 2 seeds.",
    measures="test accuracy with each noise minus without",
    rule=Rule(Check("gain_input", ">", 0), Check("gain_weight", ">", 0), over="mean"),
)
def noise_injection(ctx):
    epochs = ctx.pick(60, 10)
    fig, ax = ctx.figure("accuracy", figsize=(5.5, 4))
    rows = []
    for seed in ctx.seeds[: ctx.pick(len(ctx.seeds), 2)]:
        x, y, xt, yt = common.load(
            "fashion-mnist", 1000, ctx.pick(5000, 1000), seed=seed, flat=False, normalize="scale"
        )
        accs = {}
        for variant in ("none", "input", "weight"):
            rng = ctx.rng(seed, 1)
            model = _image_mlp([784, 256, 256, 10], rng)
            opt = optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
            if variant == "weight":
                _fit_with_weight_noise(model, opt, x, y, rng, epochs, 0.1)
            else:
                augment = _augmenter(
                    [{"name": "gaussian_noise", "std": 0.2}] if variant == "input" else None
                )
                common.fit(model, opt, x, y, rng, batch_size=100, epochs=epochs, augment=augment)
            accs[variant] = common.accuracy(model, xt, yt)
        ctx.record(
            seed,
            acc_none=accs["none"],
            acc_input=accs["input"],
            acc_weight=accs["weight"],
            gain_input=accs["input"] - accs["none"],
            gain_weight=accs["weight"] - accs["none"],
        )
        rows.append([accs["none"], accs["input"], accs["weight"]])
    rows = np.array(rows)
    ax.boxplot(rows, tick_labels=["none", "input noise", "weight noise"])
    for i in range(3):
        ax.plot(np.full(len(rows), i + 1), rows[:, i], "o", alpha=0.6)
    ax.set(ylabel="test accuracy", title="1,000 training images (dots: seeds)")


# ------------------------------------------------------------------------------------------------
def mean_abs_correlation(h: np.ndarray) -> float:
    """Mean |Pearson correlation| over pairs of hidden units (columns of ``h``), units that
    never vary left out (their correlation is undefined)."""
    h = h[:, h.std(axis=0) > 1e-8]
    if h.shape[1] < 2:
        return float("nan")
    c = np.corrcoef(h, rowvar=False)
    off = c[~np.eye(c.shape[0], dtype=bool)]
    return float(np.abs(off).mean())


@experiment(
    name="dropout-coadaptation",
    unit=UNIT,
    claims=[38],
    claim="Dropout makes training slower but generalizes better, because units cannot co-adapt "
    "(they become less correlated).",
    source="000 ToBig's slides (Srivastava et al. 2014)",
    setup="MLP 784-512-512-10 (ReLU, He) on 5,000 Fashion-MNIST images, SGD momentum 0.9 lr "
    "0.02, batch 100, 40 epochs, dropout 0 vs 0.5 after each hidden layer (same init and "
    "batches); co-adaptation: mean |correlation| between the last hidden layer's units over "
    "2,000 test images, in eval mode; 2 seeds.",
    quick_setup="1,000 images, 8 epochs, 1,000 test images.",
    measures="epochs until 95% training accuracy (slower = more), train - test gap after the "
    "last epoch, mean |correlation| of hidden units",
    rule=Rule(
        Check("epochs_to_95_dropout", ">", "epochs_to_95_none"),
        Check("gap_dropout", "<", "gap_none"),
        Check("corr_dropout", "<", "corr_none"),
        over="mean",
    ),
    seeds=2,
)
def dropout_coadaptation(ctx):
    n, epochs = ctx.pick(5000, 1000), ctx.pick(40, 8)
    fig, axes = ctx.figure("training", 1, 2, figsize=(10, 3.8))
    for seed in ctx.seeds:
        x, y, xt, yt = common.load("fashion-mnist", n, ctx.pick(2000, 1000), seed=seed)
        numbers = {}
        for p, color in ((0.0, "C0"), (0.5, "C1")):
            tag = "none" if p == 0 else "dropout"
            rng = ctx.rng(seed, 1)
            model = common.mlp([784, 512, 512, 10], "relu", "he_normal", dropout=p, rng=rng)
            opt = optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
            train_curve, test_curve = [], []
            for _ in range(epochs):
                common.fit(model, opt, x, y, rng, batch_size=100, epochs=1)
                train_curve.append(common.accuracy(model, x, y))
                test_curve.append(common.accuracy(model, xt, yt))
            reached = [i + 1 for i, a in enumerate(train_curve) if a >= 0.95]
            numbers[f"epochs_to_95_{tag}"] = reached[0] if reached else epochs + 1
            numbers[f"gap_{tag}"] = train_curve[-1] - test_curve[-1]
            numbers[f"test_acc_{tag}"] = test_curve[-1]
            hidden = [m for m in model.modules() if type(m).__name__ == "ReLU"][-1]
            with common.ActivationProbe([hidden]) as probe:
                common.accuracy(model, xt, yt)
            numbers[f"corr_{tag}"] = mean_abs_correlation(probe.outputs[0])
            label = f"dropout {p:g}" if seed == ctx.seeds[0] else None
            axes[0].plot(range(1, epochs + 1), train_curve, color=color, alpha=0.7, label=label)
            axes[1].plot(range(1, epochs + 1), test_curve, color=color, alpha=0.7, label=label)
        ctx.record(seed, **numbers)
    axes[0].set(title="training accuracy (one line per seed)", xlabel="epoch", ylabel="accuracy")
    axes[1].set(title="test accuracy", xlabel="epoch", ylabel="accuracy")
    axes[0].legend()
