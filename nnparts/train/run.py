"""What ``nnparts train`` and ``nnparts evaluate`` do, as functions."""

from __future__ import annotations

import json
import os
import platform
import time

import numpy as np

import nnparts
from nnparts import data as datasets
from nnparts import optim
from nnparts.random import manual_seed
from nnparts.train import checkpoint as ckpt
from nnparts.train import config as configs
from nnparts.train.callbacks import Checkpoint, DivergenceError, EarlyStopping
from nnparts.train.metrics import confusion_matrix
from nnparts.train.models import build_model
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
    x, y = datasets.load(
        d["dataset"], split="train", data_dir=d["data_dir"], download=d["download"]
    )
    if d["train_subset"]:
        x, y = x[: d["train_subset"]], y[: d["train_subset"]]
    if d["val_size"] >= len(x):
        raise configs.ConfigError(
            f"data.val_size={d['val_size']} leaves no training data out of {len(x)} images"
        )
    if d["val_size"]:
        x_train, y_train, x_val, y_val = datasets.train_val_split(
            x, y, val_size=d["val_size"], seed=seed
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
        xt, yt = datasets.load(
            d["dataset"], split="test", data_dir=d["data_dir"], download=d["download"]
        )
        if d["test_subset"]:
            xt, yt = xt[: d["test_subset"]], yt[: d["test_subset"]]
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
    return optim.build(name, model.parameters(), **kwargs)


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
    optimizer = build_optimizer(cfg, model)
    loader = datasets.DataLoader(
        prepared["x_train"],
        prepared["y_train"],
        batch_size=cfg["train"]["batch_size"],
        shuffle=True,
        seed=seed,
    )
    scheduler = build_scheduler(cfg, optimizer, len(loader))
    callbacks = []
    es = cfg["train"]["early_stopping"]
    has_val = len(prepared["y_val"]) > 0
    if es["patience"]:
        monitor = es["monitor"] if has_val else "train_loss"
        callbacks.append(EarlyStopping(monitor, es["patience"], es["min_delta"]))
    if out:
        callbacks.append(Checkpoint(out, monitor="val_loss" if has_val else "train_loss"))
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
    )
    trainer.config = cfg
    return trainer


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
        os.makedirs(out, exist_ok=True)
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
    try:
        trainer.fit(cfg["train"]["epochs"])
    except DivergenceError as e:
        status, message = "diverged", str(e)
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
        },
    }
    if out:
        trainer.save_checkpoint(
            os.path.join(out, "final.npz"), {"normalization": prepared["stats"], "status": status}
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
    x, y = datasets.load(
        dataset, split=split, data_dir=data_dir or cfg["data"]["data_dir"], download=download
    )
    stats = meta.get("normalization")
    if stats is None:
        raise ckpt.CheckpointError(
            f"checkpoint {checkpoint} has no normalization statistics; evaluate final.npz, "
            "best.npz or last.npz written by `nnparts train --out`"
        )
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
