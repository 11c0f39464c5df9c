"""CNN: convolution arithmetic, and the convolution's backward as a convolution (claim 42)."""

from __future__ import annotations

import numpy as np
from scipy import signal

from nnparts import nn
from nnparts.lab.engine import Check, Rule, experiment
from nnparts.tensor import Tensor

UNIT = "cnn"

# (H, K, P, S): odd and even sizes, padding 0..2, strides 1..3, kernels 1..7
CASES = [
    (28, 3, 0, 1),
    (28, 3, 1, 1),
    (28, 5, 2, 1),
    (28, 3, 1, 2),
    (28, 5, 0, 2),
    (27, 3, 1, 2),
    (32, 7, 3, 2),
    (32, 4, 1, 2),
    (15, 3, 0, 3),
    (9, 1, 0, 1),
    (9, 1, 0, 2),
    (10, 5, 2, 3),
    (6, 6, 0, 1),
    (7, 2, 1, 1),
    (224, 7, 3, 2),
]


def full_convolution_grad(dy: np.ndarray, weight: np.ndarray, padding: int, size: int):
    """dX of a stride-1 convolution as the course draws it, independent of our conv code:
    dX[n, c] = sum over output channels o of the *full* 2-D convolution (scipy's, which flips
    the kernel) of dY[n, o] with W[o, c], cropped by the padding."""
    n, out_c = dy.shape[:2]
    in_c = weight.shape[1]
    dx = np.zeros((n, in_c, size, size))
    for i in range(n):  # a handful of images and channels: the definition, not a hot path
        for c in range(in_c):
            for o in range(out_c):
                full = signal.convolve2d(dy[i, o], weight[o, c], mode="full")
                dx[i, c] += full[padding : padding + size, padding : padding + size]
    return dx


@experiment(
    name="conv-arithmetic",
    unit=UNIT,
    claims=[42],
    claim="A convolution's output size is (H + 2P - K) / S + 1 (rounded down); its backward "
    "pass with respect to the input is itself a convolution: the full convolution of the "
    "output gradient with the kernel flipped (rotated 180 degrees).",
    source="002 boostcamp notes",
    setup=f"nn.Conv2d on random float64 inputs (batch 2, 3 -> 4 channels) for {len(CASES)} "
    "cases of (H, K, P, S); for the stride-1 cases, the input gradient from autograd against "
    "the full 2-D convolution (scipy.signal.convolve2d, which flips the kernel) of the output "
    "gradient with each kernel, summed over output channels and cropped by P.",
    measures="max |formula - actual output size| over the table; max |autograd dX - "
    "full-convolution dX| over the stride-1 cases",
    rule=Rule(
        Check("max_size_error", "==", 0),
        Check("max_backward_diff", "<=", 1e-10),
    ),
)
def conv_arithmetic(ctx):
    for seed in ctx.seeds:
        rng = ctx.rng(seed)
        size_errors, diffs, rows = [], [], []
        for h, k, p, s in CASES:
            conv = nn.Conv2d(3, 4, k, stride=s, padding=p, rng=rng)
            conv.weight.data = conv.weight.data.astype(np.float64)
            conv.bias.data = conv.bias.data.astype(np.float64)
            x = Tensor(rng.standard_normal((2, 3, h, h)), requires_grad=True)
            y = conv(x)
            formula = (h + 2 * p - k) // s + 1
            size_errors.append(abs(formula - y.shape[-1]) + abs(formula - y.shape[-2]))
            diff = None
            if s == 1:
                dy = rng.standard_normal(y.shape)
                y.backward(dy)
                full = full_convolution_grad(dy, conv.weight.data, p, h)
                diff = float(np.abs(full - x.grad).max())
                diffs.append(diff)
                last = (x, full, k, p)
            rows.append([h, k, p, s, formula, f"{y.shape[-2]}x{y.shape[-1]}", diff])
        ctx.record(
            seed,
            max_size_error=int(max(size_errors)),
            max_backward_diff=float(max(diffs)),
            cases=len(CASES),
            stride1_cases=len(diffs),
        )
        if seed == ctx.seeds[0]:
            ctx.table(
                "cases (seed 0)", ["H", "K", "P", "S", "formula", "actual", "|dX diff|"], rows
            )
            shown = last
    # figure: the two input gradients of the last stride-1 case, and their difference
    x, full, k, p = shown
    fig, axes = ctx.figure("backward", 1, 3, figsize=(11, 3.4))
    panels = [
        (x.grad[0, 0], "autograd dX (channel 0)"),
        (full[0, 0], f"full convolution of dY with the kernel (crop {p})"),
        (x.grad[0, 0] - full[0, 0], "difference"),
    ]
    for ax, (img, title) in zip(axes, panels):
        im = ax.imshow(img, cmap="coolwarm")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, shrink=0.8)


# the model sections of recipes/cnn.yaml, recipes/resnet.yaml and recipes/densenet.yaml (a test
# checks they still match the recipe files), on top of the config defaults
RECIPE_MODELS = {
    "cnn": {
        "name": "cnn",
        "channels": [32, 64],
        "dense": 128,
        "activation": "relu",
        "init": "he_normal",
        "norm": "batchnorm",
        "dropout": 0.3,
    },
    "resnet": {"name": "resnet", "channels": [32, 64, 128], "blocks": [1, 1, 1], "dropout": 0.0},
    "densenet": {
        "name": "densenet",
        "growth_rate": 12,
        "block_layers": [4, 4, 4],
        "bottleneck": True,
        "compression": 0.5,
        "dropout": 0.0,
    },
}


@experiment(
    name="densenet-vs-resnet",
    unit=UNIT,
    claims=[43],
    claim="DenseNet reuses features (each layer sees every earlier layer's maps), so it needs "
    "fewer parameters than a ResNet for the same accuracy.",
    source="004 devcourse notes (Huang et al. 2017)",
    setup="The models of recipes/cnn.yaml (plain CNN), recipes/resnet.yaml (pre-activation "
    "ResNet 32/64/128) and recipes/densenet.yaml (DenseNet-BC, k = 12, 3 x 4 layers), trained "
    "at a matched budget: the same 4,000 Fashion-MNIST images for 4 epochs each, SGD-Nesterov "
    "lr 0.05 momentum 0.9, cosine schedule, batch 128, no augmentation; 2,000 test images; one "
    "seed (a full training of these recipes takes 5-60 minutes each: see the README's results).",
    quick_setup="512 images, 1 epoch, 300 test images (accuracies near chance: a smoke run).",
    measures="parameters, test accuracy and training seconds of each model",
    rule=Rule(
        Check("params_densenet", "<", "params_resnet"),
        Check("acc_densenet", ">=", "acc_resnet", offset=-0.01),
        note="'The same accuracy' is read as within 1 point of the ResNet's test accuracy.",
    ),
    seeds=1,
)
def densenet_vs_resnet(ctx):
    import time

    from nnparts import optim
    from nnparts.data import DataLoader
    from nnparts.lab import common
    from nnparts.optim.lr_scheduler import CosineAnnealingLR
    from nnparts.train import config as configs
    from nnparts.train.models import build_model
    from nnparts.train.trainer import Trainer

    n, epochs, n_test = ctx.pick(4000, 512), ctx.pick(4, 1), ctx.pick(2000, 300)
    fig, ax = ctx.figure("params-accuracy", figsize=(6, 4))
    for seed in ctx.seeds:
        x, y, xt, yt = common.load("fashion-mnist", n, n_test, seed=seed, flat=False)
        numbers = {}
        for name, section in RECIPE_MODELS.items():
            cfg = configs.resolve({"model": section})["model"]
            rng = ctx.rng(seed, 1)
            model = build_model(cfg, (1, 28, 28), 10, rng=rng)
            opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
            loader = DataLoader(x, y, batch_size=128, shuffle=True, seed=seed)
            trainer = Trainer(
                model,
                opt,
                loader,
                scheduler=CosineAnnealingLR(opt, T_max=epochs),
                progress=ctx.progress,
                log=None,
                rng=rng,
            )
            start = time.perf_counter()
            trainer.fit(epochs)
            numbers[f"seconds_{name}"] = time.perf_counter() - start
            numbers[f"params_{name}"] = model.num_parameters()
            numbers[f"acc_{name}"] = common.accuracy(model, xt, yt, batch_size=500)
            ax.plot(numbers[f"params_{name}"], numbers[f"acc_{name}"], "o", ms=9, label=name)
            ax.annotate(
                f"{name}\n{numbers[f'seconds_{name}']:.0f} s",
                (numbers[f"params_{name}"], numbers[f"acc_{name}"]),
                textcoords="offset points",
                xytext=(6, -4),
                fontsize=8,
            )
        ctx.record(seed, **numbers)
    ax.set(
        xscale="log",
        xlabel="parameters",
        ylabel="test accuracy",
        title=f"matched budget: {n} images x {epochs} epochs",
    )
    ax.legend(fontsize=8)
