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
first reaches ``--target`` (default 0.92). The two runs are sequential, in one process, nnparts
first (``--torch-first`` swaps them).

Prints each side's time and epoch count, the ratio nnparts / PyTorch (issue 16's target:
<= 1.1) and the machine header.

    python benchmarks/bench_time_to_accuracy.py                 # target 0.92
    python benchmarks/bench_time_to_accuracy.py --target 0.90 --json tta.json
"""

from __future__ import annotations

import argparse
import os
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


def nnparts_run(cfg, target, log):
    """Train with nnparts' own Trainer; stop at the first epoch whose validation accuracy (of
    the EMA model) reaches ``target``. Returns (seconds, epochs, accuracies, model)."""
    from nnparts.train import run
    from nnparts.train.callbacks import LambdaCallback

    start = time.perf_counter()
    data = prepare(cfg)
    trainer = run.make_trainer(cfg, data, None, True, False)
    accs = []

    def check(t, logs):
        accs.append(logs["val_accuracy"])
        log(f"  nnparts epoch {logs['epoch']}: val {logs['val_accuracy']:.4f}")
        if logs["val_accuracy"] >= target:
            t.stop_training = True

    trainer.callbacks.append(LambdaCallback(on_epoch_end=check))
    trainer.fit(cfg["train"]["epochs"])
    return time.perf_counter() - start, trainer.epoch, accs, trainer


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


def torch_run(cfg, target, log):
    """The same recipe written with torch.optim, torch's schedulers and AveragedModel."""
    import torch
    from torch import nn as tnn

    from nnparts import data as datasets
    from nnparts.train import run

    start = time.perf_counter()
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
    accs, epochs = [], 0
    for epoch in range(t["epochs"]):
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
        epochs += 1
        ema.eval()
        with torch.no_grad():
            pred = torch.cat([ema(xv[i : i + 1000]).argmax(1) for i in range(0, len(xv), 1000)])
        acc = float((pred.numpy() == yv).mean())
        accs.append(acc)
        log(f"  torch epoch {epoch + 1}: val {acc:.4f}")
        if acc >= target:
            break
    return time.perf_counter() - start, epochs, accs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=os.path.join(ROOT, "recipes", "fast.yaml"))
    ap.add_argument("--target", type=float, default=0.92, help="validation accuracy to reach")
    ap.add_argument("--torch-first", action="store_true")
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

    def log(msg):
        print(msg, flush=True)

    results = {}
    order = ("torch", "nnparts") if args.torch_first else ("nnparts", "torch")
    for side in order:
        if side == "nnparts":
            seconds, epochs, accs, _ = nnparts_run(cfg, args.target, log)
        else:
            seconds, epochs, accs = torch_run(cfg, args.target, log)
        reached = bool(accs) and max(accs) >= args.target
        results[side] = {
            "seconds": seconds,
            "epochs": epochs,
            "val_accuracy": accs,
            "reached": reached,
        }
        log(
            f"{side}: {seconds:.1f} s, {epochs} epochs, best val {max(accs):.4f}"
            + ("" if reached else f" (target {args.target} not reached)")
        )
    ours, theirs = results["nnparts"]["seconds"], results["torch"]["seconds"]
    ratio = ours / theirs
    print(
        f"time to {args.target:.2%} validation accuracy: nnparts {ours:.1f} s, "
        f"pytorch {theirs:.1f} s, ratio nnparts/pytorch {ratio:.2f} (target <= 1.1)"
    )
    if args.json:
        _bench.write_json(
            args.json,
            {
                "header": _bench.header(),
                "config": args.config,
                "target": args.target,
                "results": results,
                "ratio": ratio,
            },
        )


if __name__ == "__main__":
    main()
