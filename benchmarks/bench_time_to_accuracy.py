"""Time to accuracy: the fast recipe in nnparts and in PyTorch, until a validation target.

Both sides train ``recipes/fast.yaml`` (or ``--config``) on Fashion-MNIST — the same network
(the frozen patch-whitening conv with the same fitted filters, conv groups conv-pool-BN-ReLU-
conv-BN-ReLU with dirac starts, global max pool, linear without bias), the same per-step
warmup-then-linear-decay schedule, SGD-Nesterov with weight decay and the BatchNorm biases at
``norm_bias_lr_scale`` times the lr, label smoothing, an EMA of the weights, and the same
augmentation (nnparts' own flip + shift code feeds both, so the images are identical) — from
the same data split, the same batch order and the same initial weights (nnparts' are copied
into the torch model). After each epoch the EMA model is scored on the validation set (the test
set is never looked at); the clock runs from before the data is loaded until the epoch that
first reaches ``--target`` (default 0.92); a side's clock counts only its own work.

Both run in one process and take turns epoch by epoch (A B B A A B ...: each side goes first
in half of the rounds), so a slow phase of a shared machine, where its speed can move by 2x
within minutes, lands on both; ``--sequential`` runs one to the end, then the other (nnparts
first, ``--torch-first`` swaps). One race per ``--seeds`` value: the seed sets the data split,
the initial weights and the batch order, and with them the epoch at which each side crosses
the target — one epoch more or less moves a ratio by 20-25%, so a single seed says little.

Prints the machine header, each side's time, epochs and median epoch time per seed, the ratio
nnparts / PyTorch (issue 16's target: <= 1.1) per seed and their median, and the ratio of the
median epoch times (after the first, which also loads the data): the speed alone, whatever the
trajectory.

    python benchmarks/bench_time_to_accuracy.py                 # target 0.92, seed 0
    python benchmarks/bench_time_to_accuracy.py --seeds 0 1 2 --json tta.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _bench  # noqa: E402
import numpy as np  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def load_config(path):
    from nnparts.train import config as configs

    return configs.resolve(configs.load_file(path))


def prepare(cfg):
    from nnparts.train import run

    return run.prepare_data(cfg, cfg["seed"], with_test=False)


def nnparts_epochs(cfg):
    """nnparts' own Trainer, one epoch per ``next()``: the first call loads the data and builds
    the trainer too. Yields the validation accuracy (of the EMA model) after each epoch."""
    from nnparts.train import run

    data = prepare(cfg)
    trainer = run.make_trainer(cfg, data, None, True, False)
    for epoch in range(1, cfg["train"]["epochs"] + 1):
        trainer.fit(epoch)  # fit continues the count: one more epoch
        yield trainer.history[-1]["val_accuracy"]


def torch_model(cfg, nn_model):
    """The fast network in torch, with nnparts' initial weights (whitening filters included)."""
    import torch
    from torch import nn as tnn

    from nnparts import nn as pnn

    layers = []
    for m in nn_model.children():
        if isinstance(m, pnn.PatchWhitening):
            conv = tnn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, padding=m.padding)
            conv.bias = None
            conv.weight = tnn.Parameter(torch.from_numpy(np.array(m.weight)), requires_grad=False)
            layers.append(conv)
        elif isinstance(m, pnn.Conv2d):
            o, c, kh, kw = m.weight.shape
            conv = tnn.Conv2d(c, o, kh, padding=kh // 2, bias=False)
            conv.weight.data = torch.from_numpy(m.weight.data.copy())
            layers.append(conv)
        elif isinstance(m, pnn.BatchNorm2d):
            bn = tnn.BatchNorm2d(m.weight.shape[0], eps=m.eps, momentum=m.momentum)
            layers.append(bn)
        elif isinstance(m, pnn.ReLU):
            layers.append(tnn.ReLU())
        elif isinstance(m, pnn.MaxPool2d):
            layers.append(tnn.MaxPool2d(m.kernel_size))
        elif isinstance(m, pnn.Flatten):
            layers.append(tnn.Flatten())
        elif isinstance(m, pnn.Linear):
            lin = tnn.Linear(*m.weight.shape, bias=False)
            lin.weight.data = torch.from_numpy(m.weight.data.T.copy())
            layers.append(lin)
        else:
            raise SystemExit(f"no torch twin for {type(m).__name__}; use the fast model")
    return tnn.Sequential(*layers)


def torch_epochs(cfg):
    """The same recipe written with torch.optim, torch's schedulers and AveragedModel, one epoch
    per ``next()`` (the first also loads the data and builds the model); yields the EMA model's
    validation accuracy after each epoch."""
    import torch
    from torch import nn as tnn

    from nnparts import data as datasets
    from nnparts.train import run

    data = prepare(cfg)
    # the same initial weights and whitening filters: build nnparts' model, copy it over
    seed = cfg["seed"]
    nn_model = run.build_model(
        cfg["model"], data["in_shape"], data["num_classes"], rng=np.random.default_rng(seed)
    )
    run.fit_whitening(nn_model, data["x_train"])
    model = torch_model(cfg, nn_model)
    o, s, t = cfg["optimizer"], cfg["scheduler"], cfg["train"]
    norm_bias = [m.bias for m in model.modules() if isinstance(m, tnn.BatchNorm2d)]
    ids = {id(p) for p in norm_bias}
    others = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    opt = torch.optim.SGD(
        [{"params": others}, {"params": norm_bias, "lr": o["lr"] * o["norm_bias_lr_scale"]}],
        lr=o["lr"],
        momentum=o["momentum"],
        nesterov=o["nesterov"],
        weight_decay=o["weight_decay"],
    )
    loader = datasets.DataLoader(
        data["x_train"], data["y_train"], batch_size=t["batch_size"], shuffle=True, seed=seed
    )
    total = t["epochs"] * len(loader)
    warm = min(total - 1, round(s["warmup_epochs"] * len(loader)))
    sched = torch.optim.lr_scheduler.SequentialLR(
        opt,
        [
            torch.optim.lr_scheduler.LinearLR(opt, 1e-8, 1.0, warm),
            torch.optim.lr_scheduler.LinearLR(opt, 1.0, s["end_factor"] + 1e-8, total - warm),
        ],
        milestones=[warm],
    )
    ema = torch.optim.swa_utils.AveragedModel(
        model,
        multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(t["ema_decay"]),
        use_buffers=True,
    )
    augment = (
        datasets.build_augmentation(cfg["data"]["augment"]) if cfg["data"]["augment"] else None
    )
    rng = np.random.default_rng(seed + 1)
    loss_fn = tnn.CrossEntropyLoss(label_smoothing=t["label_smoothing"])
    xv, yv = torch.from_numpy(data["x_val"]), data["y_val"]
    for _ in range(t["epochs"]):
        model.train()
        for xb, yb in loader:
            if augment is not None:  # alternating flips also get the batch's indices
                xb, yb = datasets.augment_batch(augment, xb, yb, rng, loader.current_batch)
            loss = loss_fn(model(torch.from_numpy(np.ascontiguousarray(xb))), torch.from_numpy(yb))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            ema.update_parameters(model)
        ema.eval()
        with torch.no_grad():
            pred = torch.cat([ema(xv[i : i + 1000]).argmax(1) for i in range(0, len(xv), 1000)])
        yield float((pred.numpy() == yv).mean())


SIDES = {"nnparts": nnparts_epochs, "torch": torch_epochs}


def race(cfg, target, interleave=True, torch_first=False, log=None):
    """Train both sides until each reaches ``target``; return ``{side: result}``.

    A side's clock is the sum of its own ``next()`` calls: loading the data, building the
    model, and its epochs with their validation. Interleaved, the sides take turns epoch by
    epoch in the order A B B A A B ... (each goes first in half of the rounds), so a slow
    phase of a shared machine lands on both; a side that has reached the target drops out.
    Otherwise one side runs to the end, then the other."""
    log = log or (lambda msg: print(msg, flush=True))
    first, second = ("torch", "nnparts") if torch_first else ("nnparts", "torch")
    runs = {side: SIDES[side](cfg) for side in (first, second)}
    results = {side: {"seconds": 0.0, "epoch_seconds": [], "val_accuracy": []} for side in runs}
    active = [first, second]
    rounds = 0
    while active:
        if interleave:
            turns = list(active) if rounds % 2 == 0 else active[::-1]
        else:
            turns = active[:1]
        rounds += 1
        for side in turns:
            res = results[side]
            start = time.perf_counter()
            acc = next(runs[side], None)
            took = time.perf_counter() - start
            if acc is None:  # all of the config's epochs done, target not reached
                active.remove(side)
                continue
            res["seconds"] += took
            res["epoch_seconds"].append(took)
            res["val_accuracy"].append(acc)
            log(f"  {side} epoch {len(res['val_accuracy'])}: val {acc:.4f} ({took:.1f} s)")
            if acc >= target:
                active.remove(side)
    for res in results.values():
        res["epochs"] = len(res["val_accuracy"])
        res["reached"] = bool(res["val_accuracy"]) and max(res["val_accuracy"]) >= target
        # the speed alone, whatever the trajectory: the median epoch after the first (the first
        # also loads the data and builds the model)
        later = res["epoch_seconds"][1:] or res["epoch_seconds"]
        res["median_epoch_seconds"] = statistics.median(later)
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=os.path.join(ROOT, "recipes", "fast.yaml"))
    ap.add_argument("--target", type=float, default=0.92, help="validation accuracy to reach")
    ap.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0],
        help="one race per seed (data split, "
        "initial weights, batch order); the summary gives the median ratio",
    )
    ap.add_argument(
        "--sequential",
        action="store_true",
        help="one side to the end, then the other (default: epochs interleaved)",
    )
    ap.add_argument("--torch-first", action="store_true", help="PyTorch takes the first turn")
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    if cfg["model"]["name"] != "fast":
        raise SystemExit(f"{args.config}: this benchmark runs model.name 'fast' configs only")
    print(_bench.header(), flush=True)
    print(
        f"{args.config}: up to {cfg['train']['epochs']} epochs, "
        f"batch {cfg['train']['batch_size']}; "
        f"target validation accuracy {args.target}",
        flush=True,
    )

    runs = []
    for seed in args.seeds:
        cfg["seed"] = seed
        print(f"seed {seed}:", flush=True)
        results = race(cfg, args.target, not args.sequential, args.torch_first)
        for side, res in results.items():
            print(
                f"  {side}: {res['seconds']:.1f} s, {res['epochs']} epochs, best val "
                f"{max(res['val_accuracy']):.4f}"
                + ("" if res["reached"] else f" (target {args.target} not reached)")
                + f"; median epoch {res['median_epoch_seconds']:.1f} s",
                flush=True,
            )
        ours, theirs = results["nnparts"], results["torch"]
        run = {
            "seed": seed,
            "results": results,
            "ratio": ours["seconds"] / theirs["seconds"],
            "epoch_ratio": ours["median_epoch_seconds"] / theirs["median_epoch_seconds"],
        }
        runs.append(run)
        print(
            f"  time to {args.target:.2%}: ratio nnparts/pytorch {run['ratio']:.2f} "
            f"(epochs {ours['epochs']} / {theirs['epochs']}); per epoch {run['epoch_ratio']:.2f}",
            flush=True,
        )
    ratios = [r["ratio"] for r in runs]
    epoch_ratios = [r["epoch_ratio"] for r in runs]
    summary = {
        "median_ratio": statistics.median(ratios),
        "ratio_range": [min(ratios), max(ratios)],
        "median_epoch_ratio": statistics.median(epoch_ratios),
    }
    print(
        f"time to {args.target:.2%} validation accuracy over {len(runs)} seed(s): ratio "
        f"nnparts/pytorch median {summary['median_ratio']:.2f} "
        f"(range {min(ratios):.2f}-{max(ratios):.2f}; target <= 1.1); epoch time ratio median "
        f"{summary['median_epoch_ratio']:.2f}"
    )
    if args.json:
        _bench.write_json(
            args.json,
            {
                "header": _bench.header(),
                "config": args.config,
                "target": args.target,
                "interleaved": not args.sequential,
                "runs": runs,
                **summary,
            },
        )
    return runs


if __name__ == "__main__":
    main()
