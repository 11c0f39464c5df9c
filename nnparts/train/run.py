"""What ``nnparts train`` and ``nnparts evaluate`` do, as functions."""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time

import numpy as np

import nnparts
from nnparts import data as datasets
from nnparts import optim, threads
from nnparts.random import manual_seed
from nnparts.train import checkpoint as ckpt
from nnparts.train import config as configs
from nnparts.train.callbacks import Checkpoint, DivergenceError, DivergenceGuard, EarlyStopping
from nnparts.train.metrics import confusion_matrix
from nnparts.train.models import build_model, fit_whitening
from nnparts.train.trainer import Trainer, evaluate_logits, load_model_state, predict


def class_names(dataset: str, num_classes: int = 10) -> list[str]:
    return list(datasets.CLASSES.get(dataset, [str(i) for i in range(num_classes)]))


def versions() -> dict:
    import sys

    return {
        "nnparts": nnparts.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def _to_float(x: np.ndarray, stats: dict) -> np.ndarray:
    """uint8 images -> float32, scaled to [0, 1] and (optionally) standardized."""
    out = x.astype(np.float32)
    out *= np.float32(1 / 255)
    if stats.get("mean") is not None:
        out -= np.float32(stats["mean"])
        out *= np.float32(1 / stats["std"])
    return out


def prepare_data(cfg: dict, seed: int, with_test: bool = True) -> dict:
    """Load, split (validation carved from training data) and normalize with train statistics."""
    d = cfg["data"]
    # data stored sorted by class (mnist-5k) is subset and split stratified, never "first N"
    sorted_by_class = d["dataset"] in datasets.SORTED_BY_CLASS
    x, y = datasets.load_split(
        d["dataset"], split="train", data_dir=d["data_dir"], download=d["download"]
    )
    x, y = datasets.subset(x, y, d["train_subset"], stratified=sorted_by_class)
    if d["val_size"] >= len(x):
        raise configs.ConfigError(
            f"data.val_size={d['val_size']} leaves no training data out of {len(x)} images; "
            f"use a data.val_size below {len(x)} (or a larger data.train_subset)"
        )
    if d["val_size"]:
        x_train, y_train, x_val, y_val = datasets.train_val_split(
            x, y, val_size=d["val_size"], seed=seed, stratify=sorted_by_class
        )
    else:
        x_train, y_train, x_val, y_val = x, y, x[:0], y[:0]
    stats = {"mean": None, "std": None}
    if d["normalize"] == "standardize":
        scaled = x_train.astype(np.float32) / 255
        stats = {"mean": float(scaled.mean()), "std": float(scaled.std())}
        del scaled
    out = {
        "x_train": _to_float(x_train, stats),
        "y_train": y_train,
        "x_val": _to_float(x_val, stats),
        "y_val": y_val,
        "stats": stats,
        "in_shape": tuple(x.shape[1:]),
        "num_classes": int(max(y.max() + 1, 10)),
    }
    if with_test:
        xt, yt = datasets.load_split(
            d["dataset"], split="test", data_dir=d["data_dir"], download=d["download"]
        )
        xt, yt = datasets.subset(xt, yt, d["test_subset"], stratified=sorted_by_class)
        out["x_test"], out["y_test"] = _to_float(xt, stats), yt
    return out


def build_optimizer(cfg: dict, model):
    o = cfg["optimizer"]
    name = o["name"].lower()
    kwargs = {"lr": o["lr"]}
    if o["weight_decay"]:
        kwargs["weight_decay"] = o["weight_decay"]
    if name in ("sgd", "rmsprop"):
        kwargs["momentum"] = o["momentum"]
    if name == "sgd" and o["nesterov"]:
        kwargs["nesterov"] = True
    params = model.parameters()
    if o["norm_bias_lr_scale"] != 1.0:
        params = optim.group_parameters(
            model, o["lr"], o["weight_decay"], norm_bias_lr_scale=o["norm_bias_lr_scale"]
        )
    return optim.build(name, params, **kwargs)


def build_scheduler(cfg: dict, optimizer, steps_per_epoch: int):
    s, epochs = cfg["scheduler"], cfg["train"]["epochs"]
    name = s["name"]
    sched = optim.lr_scheduler
    if name == "none":
        return None
    if name == "step":
        return sched.StepLR(optimizer, step_size=s["step_size"], gamma=s["gamma"])
    if name == "exponential":
        return sched.ExponentialLR(optimizer, gamma=s["gamma"])
    if name == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=epochs)
    if name == "warmup":
        return sched.LinearWarmup(optimizer, warmup_steps=s["warmup_epochs"])
    if name == "plateau":
        return sched.ReduceLROnPlateau(optimizer, factor=s["gamma"], patience=s["patience"])
    if name == "warmup_linear":  # stepped after every batch (Trainer.scheduler_interval)
        total = epochs * steps_per_epoch
        return sched.WarmupLinear(
            optimizer,
            total_steps=total,
            warmup_steps=min(total - 1, round(s["warmup_epochs"] * steps_per_epoch)),
            end_factor=s["end_factor"],
        )
    raise configs.ConfigError(f"unknown scheduler.name {name!r}")


def build_penalty(cfg: dict):
    l1, l2 = cfg["regularization"]["l1"], cfg["regularization"]["l2"]
    if not l1 and not l2:
        return None
    reg = optim.regularizers

    def penalty(model):
        weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
        total = 0.0
        if l1:
            total = total + reg.l1_penalty(weights, l1)
        if l2:
            total = total + reg.l2_penalty(weights, l2)
        return total

    return penalty


def make_trainer(cfg: dict, prepared: dict, out: str | None, quiet: bool, progress: bool):
    seed = cfg["seed"]
    manual_seed(seed)
    rng = np.random.default_rng(seed + 1)
    model = build_model(
        cfg["model"], prepared["in_shape"], prepared["num_classes"], rng=np.random.default_rng(seed)
    )
    fit_whitening(model, prepared["x_train"])  # a fast model's whitening layer, from the data
    optimizer = build_optimizer(cfg, model)
    loader = datasets.DataLoader(
        prepared["x_train"],
        prepared["y_train"],
        batch_size=cfg["train"]["batch_size"],
        shuffle=True,
        seed=seed,
    )
    scheduler = build_scheduler(cfg, optimizer, len(loader))
    # the guard comes first, so an epoch it stops is never saved as last.npz
    callbacks = [DivergenceGuard(num_classes=prepared["num_classes"])]
    es = cfg["train"]["early_stopping"]
    has_val = len(prepared["y_val"]) > 0
    if es["patience"]:
        monitor = es["monitor"] if has_val else "train_loss"
        callbacks.append(EarlyStopping(monitor, es["patience"], es["min_delta"]))
    if out:
        callbacks.append(
            Checkpoint(
                out,
                monitor="val_loss" if has_val else "train_loss",
                metadata={"normalization": prepared["stats"]},
            )
        )
    ema_decay = cfg["train"]["ema_decay"]
    augment = None
    if cfg["data"]["augment"]:
        augment = datasets.build_augmentation(cfg["data"]["augment"])
    trainer = Trainer(
        model,
        optimizer,
        loader,
        val_data=(prepared["x_val"], prepared["y_val"]) if has_val else None,
        scheduler=scheduler,
        callbacks=callbacks,
        augment=augment,
        penalty=build_penalty(cfg),
        grad_clip=cfg["train"]["grad_clip"],
        label_smoothing=cfg["train"]["label_smoothing"],
        progress=progress and not quiet,
        eval_batch_size=cfg["train"]["eval_batch_size"],
        log=None if quiet else print,
        rng=rng,
        scheduler_interval="step" if cfg["scheduler"]["name"] == "warmup_linear" else "epoch",
        ema=optim.WeightEMA(model, ema_decay) if ema_decay else None,
    )
    trainer.config = cfg
    return trainer


def threads_summary() -> dict:
    """How the training's parallel op calls used the cores (:func:`nnparts.threads.pool_stats`
    since the start of training): the policy and thread count, the op calls on the pool and inline
    (other processes took the cores), and the share of the pool ops' time spent waiting for pool
    threads."""
    stats = threads.pool_stats()
    calls = stats["pool_ops"] + stats["inline_ops"] + stats["serial_ops"]
    return {
        "policy": threads.get_policy(),
        "num_threads": threads.get_num_threads(),
        "pool_op_calls": stats["pool_ops"],
        "inline_op_calls": stats["inline_ops"],
        "serial_op_calls": stats["serial_ops"],
        "inline_pct": round(100.0 * stats["inline_ops"] / calls, 1) if calls else 0.0,
        "pool_wait_pct": stats["wait_pct_of_pool_time"],
    }


def tta_metrics(trainer, cfg: dict, x: np.ndarray, y: np.ndarray) -> dict | None:
    """Test accuracy and loss with the config's test-time augmentation (None when it has none);
    reported beside, never instead of, the plain ``test_accuracy``."""
    method = cfg["train"]["tta"]
    if method == "none":
        return None
    result = evaluate_logits(trainer.predict(x, tta=method), y)
    return {"method": method, "test_accuracy": result["accuracy"], "test_loss": result["loss"]}


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)


def train_curve_label(cfg: dict) -> str:
    """Legend of the training curve: the training loss is measured on augmented batches and with
    label smoothing when the config asks for them, so it sits above the validation loss."""
    notes = []
    if cfg["data"]["augment"]:
        notes.append("augmented")
    if cfg["train"]["label_smoothing"]:
        notes.append(f"label smoothing {cfg['train']['label_smoothing']:g}")
    return "train" + (f" ({', '.join(notes)})" if notes else "")


#: The files that make a folder hold a run (``nnparts train --out`` writes them).
RUN_FILES = ("metrics.json", "final.npz", "last.npz", "best.npz")
#: Everything a run writes, removed by ``--overwrite`` before the new run starts.
RUN_OUTPUTS = RUN_FILES + ("curves.png",)


class OutputError(configs.ConfigError):
    """An ``--out`` folder that cannot be written, or holds a run that must not be overwritten."""


def check_out_dir(out) -> str:
    """Make sure ``out`` is (or can be made) a writable directory, before any data is loaded or
    any epoch runs; OutputError naming the path and the fix otherwise."""
    out = os.fspath(out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise OutputError(
            f"--out {out} is a file, not a directory; choose a directory (e.g. --out runs/NAME)"
        )
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        parent = os.path.dirname(os.path.abspath(out))
        while parent and not os.path.exists(parent):
            parent = os.path.dirname(parent)
        why = e.strerror or str(e)
        if os.path.exists(parent) and not os.path.isdir(parent):
            why = f"{parent} is a file"
        raise OutputError(
            f"--out {out} cannot be created ({why}); choose a directory you can write to"
        ) from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(
            f"--out {out} is not writable ({e.strerror or e}); choose a directory you can write "
            "to, or fix its permissions"
        ) from None
    return out


def earlier_run_files(out) -> list[str]:
    """The files of an earlier run in ``out`` (empty if none)."""
    if not out or not os.path.isdir(out):
        return []
    return [f for f in RUN_FILES if os.path.exists(os.path.join(out, f))]


def prepare_out(out, resume=None, overwrite: bool = False) -> str:
    """``nnparts train --out``: refuse to write over an earlier run unless the run is resumed
    from a checkpoint in ``out`` or ``overwrite`` is set (then the old run's files go first)."""
    out = os.fspath(out)
    found = earlier_run_files(out)
    resuming_here = resume is not None and os.path.abspath(
        os.path.dirname(os.path.abspath(resume))
    ) == os.path.abspath(out)
    if found and not resuming_here and not overwrite:
        raise OutputError(
            f"--out {out} already holds a run ({', '.join(found)}); to continue it use "
            f"--resume {os.path.join(out, 'last.npz')}, to keep it choose another --out, "
            "to replace it add --overwrite"
        )
    check_out_dir(out)
    if found and overwrite and not resuming_here:
        for name in RUN_OUTPUTS:
            path = os.path.join(out, name)
            if os.path.exists(path):
                os.unlink(path)
    return out


#: Config fields that never change what a resumed run computes: always accepted.
RESUME_FREE = {
    ("data", "data_dir"),
    ("data", "download"),
    ("train", "eval_batch_size"),
    ("train", "tta"),
}
#: Fields a resumed run can take new values of with ``--force``: the number of epochs (extend
#: or shorten the run), early stopping, gradient clipping, label smoothing, the penalties and
#: augmentation. Anything else (model, dataset and its split, normalization, seed, optimizer,
#: scheduler, batch size) is baked into the weights, the optimizer state or the data order.
RESUME_FORCEABLE_SECTIONS = {
    ("train", "epochs"),
    ("train", "early_stopping"),
    ("train", "grad_clip"),
    ("train", "label_smoothing"),
    ("regularization",),
    ("data", "augment"),
}


def _leaves(cfg: dict, path=()):
    for key, value in cfg.items():
        if isinstance(value, dict):
            yield from _leaves(value, path + (key,))
        else:
            yield path + (key,), value


def resume_differences(cfg: dict, checkpoint_cfg: dict) -> tuple[list[str], list[str]]:
    """Keys where ``cfg`` differs from the config a checkpoint was trained with, as
    ``(forceable, fixed)`` lists of ``"key: old -> new"``; ``forceable`` ones ``--force`` takes."""
    old = configs.resolve(checkpoint_cfg)
    old_leaves = dict(_leaves(old))
    forceable, fixed = [], []
    for path, value in _leaves(cfg):
        before = old_leaves.get(path)
        if path in RESUME_FREE or before == value:
            continue
        item = f"{'.'.join(path)}: {before!r} -> {value!r}"
        if any(path[: len(p)] == p for p in RESUME_FORCEABLE_SECTIONS):
            forceable.append(item)
        else:
            fixed.append(item)
    return forceable, fixed


def check_resume(cfg: dict, checkpoint: str, force: bool = False) -> list[str]:
    """Refuse to resume ``checkpoint`` with a config that changes the model, the data or the
    schedule; with ``force``, accept the changes in :data:`RESUME_FORCEABLE_SECTIONS` (returned)."""
    _, _, meta = ckpt.load(checkpoint)
    if not meta.get("config"):
        raise ckpt.CheckpointError(f"checkpoint {checkpoint} has no config to resume from")
    forceable, fixed = resume_differences(cfg, meta["config"])
    if fixed:
        raise configs.ConfigError(
            f"cannot resume {checkpoint} with a different config: {'; '.join(fixed)}"
            + (f" (and {'; '.join(forceable)})" if forceable else "")
            + "; these are baked into the weights, optimizer state or data order: drop those "
            "options to resume, or start a new run in another --out"
        )
    if forceable and not force:
        raise configs.ConfigError(
            f"cannot resume {checkpoint} with a different config: {'; '.join(forceable)}; "
            "add --force to take the new values (e.g. more train.epochs extend the run), or "
            "drop those options"
        )
    return forceable


def train(
    cfg: dict,
    out: str | None = None,
    quiet: bool = False,
    progress: bool = True,
    resume: str | None = None,
) -> dict:
    """Train the configured model; return (and write to ``out``) the metrics."""
    start = time.perf_counter()
    if out:
        check_out_dir(out)
    prepared = prepare_data(cfg, cfg["seed"])
    trainer = make_trainer(cfg, prepared, out, quiet, progress)
    log = (lambda m: None) if quiet else print
    log(
        f"model {cfg['model']['name']}: {trainer.model.num_parameters():,} parameters; "
        f"data {cfg['data']['dataset']}: {len(prepared['y_train'])} train / "
        f"{len(prepared['y_val'])} validation / {len(prepared['y_test'])} test"
    )
    resumed_after = None
    if resume:
        meta = trainer.load_checkpoint(resume)
        resumed_after = meta["epoch"]
        log(f"resumed from {resume} after epoch {resumed_after}")
    status = "completed"
    message = None
    threads.pool_stats(reset=True)
    try:
        trainer.fit(cfg["train"]["epochs"])
    except DivergenceError as e:
        status, message = "diverged", str(e)
        if out and trainer.epoch:
            message += (
                f" Kept: {os.path.join(out, 'last.npz')} (epoch {trainer.epoch}); "
                "no final.npz is written for a diverged run."
            )
    thread_use = threads_summary()
    if thread_use["inline_pct"] >= 10:
        log(
            f"other processes kept this machine's cores busy: {thread_use['inline_pct']:.0f}% of "
            "the parallel op calls ran on one thread meanwhile (nnparts.threads; the numbers do "
            "not change)"
        )
    if trainer.ema is not None and trainer.ema.n_averaged:
        # from here on the model is the averaged one: the test metrics and final.npz
        trainer.ema.copy_to(trainer.model)
        trainer.ema = None
    logits = trainer.predict(prepared["x_test"])
    test = evaluate_logits(logits, prepared["y_test"])
    preds = logits.argmax(axis=1)
    epoch_seconds = [h["seconds"] for h in trainer.history]
    metrics = {
        "status": status,
        "message": message,
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "best_val_accuracy": max(
            (h.get("val_accuracy", 0.0) for h in trainer.history), default=None
        ),
        "tta": tta_metrics(trainer, cfg, prepared["x_test"], prepared["y_test"]),
        "epochs_completed": trainer.epoch,
        "num_parameters": trainer.model.num_parameters(),
        "history": [{k: v for k, v in h.items() if k != "seconds"} for h in trainer.history],
        "confusion_matrix": confusion_matrix(
            preds, prepared["y_test"], prepared["num_classes"]
        ).tolist(),
        "config": cfg,
        "seed": cfg["seed"],
        "normalization": prepared["stats"],
        "versions": versions(),
        "timing": {
            # this process only; a resumed run's earlier epochs are in training_seconds
            "wall_time_seconds": time.perf_counter() - start,
            "training_seconds": sum(epoch_seconds),
            "epoch_seconds": epoch_seconds,
            "resumed_after_epoch": resumed_after,
            "threads": thread_use,
        },
    }
    if out:
        if status != "diverged":
            trainer.save_checkpoint(
                os.path.join(out, "final.npz"),
                {"normalization": prepared["stats"], "status": status},
            )
        write_json(os.path.join(out, "metrics.json"), metrics)
        if trainer.history:
            from nnparts.train.plots import plot_curves

            plot_curves(
                trainer.history,
                os.path.join(out, "curves.png"),
                f"{cfg['model']['name']} on {cfg['data']['dataset']}: "
                f"test accuracy {test['accuracy']:.4f}",
                train_label=train_curve_label(cfg),
            )
    return metrics


def recover_normalization(checkpoint: str, cfg: dict, data_dir=None, download=True) -> dict:
    """The normalization statistics of a checkpoint written before they were saved in every
    checkpoint (best.npz / last.npz of older runs): from the run's final.npz or metrics.json in
    the same folder, else recomputed from the training data the config describes (the same
    subset and split, so the same numbers)."""
    folder = os.path.dirname(os.path.abspath(checkpoint))
    final = os.path.join(folder, "final.npz")
    if os.path.exists(final) and os.path.abspath(final) != os.path.abspath(checkpoint):
        try:
            stats = ckpt.load(final)[2].get("normalization")
        except ckpt.CheckpointError:
            stats = None
        if stats is not None:
            return stats
    metrics_path = os.path.join(folder, "metrics.json")
    if os.path.exists(metrics_path):
        try:
            with open(metrics_path, encoding="utf-8") as f:
                saved = json.load(f)
            if saved.get("config") and configs.resolve(saved["config"])["model"] == cfg["model"]:
                if saved.get("normalization") is not None:
                    return saved["normalization"]
        except (OSError, ValueError):
            pass
    if cfg["data"]["normalize"] != "standardize":
        return {"mean": None, "std": None}
    d = dict(cfg["data"], download=download)
    if data_dir:
        d["data_dir"] = data_dir
    try:
        return prepare_data(dict(cfg, data=d), cfg["seed"], with_test=False)["stats"]
    except (OSError, ValueError) as e:
        raise ckpt.CheckpointError(
            f"checkpoint {checkpoint} has no normalization statistics (it was written before "
            "they were saved in every checkpoint), and they cannot be recomputed from its "
            f"training data ({e}); evaluate the final.npz of the same run, or pass --data-dir "
            "with the training data"
        ) from None


def evaluate(
    checkpoint: str,
    dataset: str | None = None,
    split: str = "test",
    data_dir: str | None = None,
    out: str | None = None,
    download: bool = True,
    tta: str | None = None,
) -> dict:
    """Evaluate a saved model on a dataset split; write metrics.json and confusion.png.

    ``tta``: test-time augmentation (``none`` or ``hflip``); None takes the checkpoint config's
    ``train.tta``."""
    model_state, states, meta = ckpt.load(checkpoint)
    cfg = meta.get("config")
    if not cfg:
        raise ckpt.CheckpointError(f"checkpoint {checkpoint} has no config in its metadata")
    cfg = configs.resolve(cfg)
    dataset = dataset or cfg["data"]["dataset"]
    x, y = datasets.load_split(
        dataset, split=split, data_dir=data_dir or cfg["data"]["data_dir"], download=download
    )
    stats = meta.get("normalization")
    if stats is None:
        stats = recover_normalization(checkpoint, cfg, data_dir, download)
    model = build_model(cfg["model"], tuple(x.shape[1:]), 10)
    load_model_state(model, model_state, checkpoint)
    tta = cfg["train"]["tta"] if tta is None else tta
    logits = predict(model, _to_float(x, stats), cfg["train"]["eval_batch_size"], tta)
    result = evaluate_logits(logits, y)
    preds = logits.argmax(axis=1)
    cm = confusion_matrix(preds, y, 10)
    names = class_names(dataset)
    metrics = {
        "checkpoint": os.path.abspath(checkpoint),
        "dataset": dataset,
        "split": split,
        "tta": tta,
        "accuracy": result["accuracy"],
        "loss": result["loss"],
        "per_class_accuracy": dict(zip(names, (np.diag(cm) / np.maximum(cm.sum(1), 1)).tolist())),
        "confusion_matrix": cm.tolist(),
        "versions": versions(),
    }
    if out:
        os.makedirs(out, exist_ok=True)
        write_json(os.path.join(out, "metrics.json"), metrics)
        from nnparts.train.plots import plot_confusion

        plot_confusion(
            cm,
            names,
            os.path.join(out, "confusion.png"),
            f"{dataset} {split}: accuracy {metrics['accuracy']:.4f}",
        )
    return metrics
