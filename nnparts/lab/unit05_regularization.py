"""Unit 05 — regularization: weight decay, dropout, label smoothing, ensembles, bias–variance.

Claims 30, 35, 37, 44 of LAB.md (and, by the same rules, the others of the unit).
"""

from __future__ import annotations

import numpy as np

from nnparts import optim
from nnparts.lab import common
from nnparts.lab.engine import Check, Rule, experiment
from nnparts.optim.regularizers import l2_penalty
from nnparts.tensor import Tensor, no_grad
from nnparts.train.ensemble import bootstrap_indices, combine, softmax_probs

UNIT = "05 regularization"


def _weights(model):
    return [p for name, p in model.named_parameters() if name.endswith("weight")]


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
            ax.plot(
                sizes,
                [r["bias2"] for r in rows],
                "C0-",
                alpha=alpha,
                label="bias$^2$" if first else None,
            )
            ax.plot(
                sizes,
                [r["variance"] for r in rows],
                "C1-",
                alpha=alpha,
                label="variance" if first else None,
            )
            ax.plot(
                sizes,
                [r["error"] for r in rows],
                "C2o",
                alpha=alpha,
                label="measured error" if first else None,
            )
            ax.plot(
                sizes,
                [r["bias2"] + r["variance"] + r["noise"] for r in rows],
                "k:",
                alpha=alpha,
                label="bias$^2$ + variance + noise" if first else None,
            )
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
