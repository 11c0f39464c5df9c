"""Callbacks: early stopping, checkpoints, the divergence guard.

A callback may define ``on_train_begin(trainer)``, ``on_batch_end(trainer, logs)``,
``on_epoch_end(trainer, logs)`` and ``on_train_end(trainer)``; it stops training by setting
``trainer.stop_training = True`` (checked after every batch and every epoch).

``on_batch_end`` gets, after each optimizer step, ``logs`` with ``epoch``, ``batch`` (within the
epoch, from 1), ``step`` (global, from 1), ``loss``, ``lr``, ``grad_norm`` (the global L2 norm of
all gradients before clipping) and ``batch_size``. The Trainer computes these only when some
callback overrides ``on_batch_end``, so unused per-batch callbacks cost nothing.
Callbacks with state (early stopping) expose ``state_dict()/load_state_dict()`` so that a
resumed run continues exactly.
"""

from __future__ import annotations

import math
import os

import numpy as np


class Callback:
    def on_train_begin(self, trainer):
        pass

    def on_batch_end(self, trainer, logs: dict):
        pass

    def on_epoch_end(self, trainer, logs: dict):
        pass

    def on_train_end(self, trainer):
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict):
        pass


def _better(mode, value, best, min_delta):
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    With ``restore_best=True`` the model gets back the weights of its best epoch at the end.
    """

    def __init__(self, monitor="val_loss", patience=3, min_delta=0.0, restore_best=True):
        if patience is None or patience < 1:
            raise ValueError(f"EarlyStopping patience must be >= 1, got {patience!r}")
        self.monitor, self.patience, self.min_delta = monitor, int(patience), float(min_delta)
        self.restore_best = restore_best
        self.mode = "max" if "acc" in monitor else "min"
        self.best = None
        self.best_epoch = None
        self.wait = 0
        self.best_state = None

    def on_epoch_end(self, trainer, logs):
        if self.monitor not in logs:
            raise ValueError(
                f"EarlyStopping monitors {self.monitor!r}, which this run does not log; "
                f"available: {', '.join(sorted(logs))}"
            )
        value = logs[self.monitor]
        if _better(self.mode, value, self.best, self.min_delta):
            self.best, self.best_epoch, self.wait = value, logs["epoch"], 0
            if self.restore_best:
                self.best_state = trainer.model.state_dict()
        else:
            self.wait += 1
            if self.wait >= self.patience:
                trainer.stop_training = True
                trainer.log(
                    f"early stopping at epoch {logs['epoch']}: {self.monitor} has not improved "
                    f"for {self.patience} epochs (best {self.best:.4f} at epoch {self.best_epoch})"
                )

    def on_train_end(self, trainer):
        if self.restore_best and self.best_state is not None:
            trainer.model.load_state_dict(self.best_state)
            trainer.log(
                f"restored the weights of epoch {self.best_epoch} ({self.monitor}={self.best:.4f})"
            )

    def state_dict(self):
        state = {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}
        if self.best_state is not None:
            state["best_state"] = dict(self.best_state)
        return state

    def load_state_dict(self, state):
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
        self.best_state = state.get("best_state")


class Checkpoint(Callback):
    """Save ``last.npz`` after every epoch and ``best.npz`` when ``monitor`` improves.

    Writes are atomic (temp file + rename), so a crash never leaves a broken checkpoint.
    """

    def __init__(self, folder, monitor="val_loss", save_best=True, save_last=True, metadata=None):
        self.folder, self.monitor = os.fspath(folder), monitor
        self.save_best, self.save_last = save_best, save_last
        # written into every checkpoint's metadata (e.g. the normalization statistics that
        # ``nnparts evaluate`` needs)
        self.metadata = dict(metadata or {})
        self.mode = "max" if "acc" in monitor else "min"
        self.best = None

    @property
    def last_path(self):
        return os.path.join(self.folder, "last.npz")

    @property
    def best_path(self):
        return os.path.join(self.folder, "best.npz")

    def on_epoch_end(self, trainer, logs):
        if self.save_last:
            trainer.save_checkpoint(self.last_path, self.metadata or None)
        value = logs.get(self.monitor)
        if self.save_best and value is not None and _better(self.mode, value, self.best, 0.0):
            self.best = value
            trainer.save_checkpoint(self.best_path, self.metadata or None)

    def state_dict(self):
        return {"best": self.best}

    def load_state_dict(self, state):
        self.best = state["best"]


class LambdaCallback(Callback):
    """A callback from plain functions: ``LambdaCallback(on_batch_end=lambda t, logs: ...)``."""

    def __init__(
        self, on_train_begin=None, on_batch_end=None, on_epoch_end=None, on_train_end=None
    ):
        if on_train_begin is not None:
            self.on_train_begin = on_train_begin
        if on_batch_end is not None:
            self.on_batch_end = on_batch_end
        if on_epoch_end is not None:
            self.on_epoch_end = on_epoch_end
        if on_train_end is not None:
            self.on_train_end = on_train_end


class BatchLogger(Callback):
    """Keep every per-batch ``logs`` dict in ``self.records`` (loss curves per step)."""

    def __init__(self, keys=("step", "loss", "lr", "grad_norm")):
        self.keys = tuple(keys)
        self.records: list[dict] = []

    def on_batch_end(self, trainer, logs):
        self.records.append({k: logs[k] for k in self.keys if k in logs})


def wants_batch_end(callback) -> bool:
    """Whether ``callback`` does something in ``on_batch_end`` (overrides the no-op)."""
    fn = getattr(callback, "on_batch_end", None)
    if fn is None:
        return False
    return getattr(fn, "__func__", None) is not Callback.on_batch_end


class DivergenceError(RuntimeError):
    """Training diverged: the loss or the gradients became NaN or infinite, the loss stayed far
    above its initial value, or the accuracy stayed at chance (see :class:`DivergenceGuard`)."""


#: A learning rate that usually trains each optimizer (for the divergence hint).
TYPICAL_LR = {
    "sgd": 0.1,
    "adam": 1e-3,
    "adamw": 1e-3,
    "nadam": 1e-3,
    "radam": 1e-3,
    "rmsprop": 1e-3,
    "adagrad": 1e-2,
    "adadelta": 1.0,
}


def suggest_lr(lr: float | None, optimizer: str | None = None) -> float | None:
    """A smaller learning rate to try after a divergence: a tenth of ``lr``, or the optimizer's
    usual rate when that is smaller still."""
    if not lr:
        return None
    typical = TYPICAL_LR.get((optimizer or "").lower())
    return min(lr / 10, typical) if typical else lr / 10


def _optimizer_name(trainer) -> str:
    cfg = getattr(trainer, "config", None)
    if cfg and "optimizer" in cfg:
        return str(cfg["optimizer"]["name"]).lower()
    return type(trainer.optimizer).__name__.lower()


class DivergenceGuard(Callback):
    """Stop a run that diverged, also where BatchNorm keeps the loss finite.

    Per step (after each optimizer step, from ``on_batch_end``'s logs; a few float operations):

    * a non-finite gradient norm stops at once;
    * the loss above ``factor`` times its initial value (the loss of the first step, computed
      before any update: about ``log(num_classes)``) for ``patience`` steps in a row stops.

    Per epoch: non-finite weights stop, and so does an accuracy (validation if there is one,
    else training) below ``chance_margin`` times chance (``1 / num_classes``) once
    ``warmup_steps`` steps are done. Put the guard before :class:`Checkpoint` in the callback
    list so the epoch that diverged is never saved as ``last.npz``.

    Raises :class:`DivergenceError` naming the epoch, the step, the likely cause and a
    smaller learning rate to try.
    """

    def __init__(
        self,
        factor: float = 10.0,
        patience: int = 5,
        num_classes: int = 10,
        warmup_steps: int = 200,
        chance_margin: float = 1.5,
    ):
        self.factor, self.patience = factor, patience
        self.num_classes, self.warmup_steps, self.chance_margin = (
            num_classes,
            warmup_steps,
            chance_margin,
        )
        self.reference = None
        self.above = 0

    def _stop(self, trainer, epoch, step, what, cause):
        lr = trainer.lr
        name = _optimizer_name(trainer)
        better = suggest_lr(lr, name)
        hint = "try a smaller learning rate" + (
            f": --optimizer.lr {better:g} or below" if better else ""
        )
        cause = cause.format(lr=f"the learning rate ({lr:g} with {name})")
        raise DivergenceError(
            f"training diverged at epoch {epoch}, step {step}: {what}; likely cause: {cause}; "
            f"{hint}. The last good checkpoint (if any) is unchanged."
        )

    def on_batch_end(self, trainer, logs):
        loss, grad_norm = logs["loss"], logs.get("grad_norm")
        if grad_norm is not None and not math.isfinite(grad_norm):
            self._stop(
                trainer,
                logs["epoch"],
                logs["step"],
                f"the gradient norm became {grad_norm}",
                "{lr} is too large",
            )
        if self.reference is None:
            if math.isfinite(loss):
                self.reference = loss
            return
        if loss > self.factor * self.reference:
            self.above += 1
            if self.above >= self.patience:
                self._stop(
                    trainer,
                    logs["epoch"],
                    logs["step"],
                    f"the loss has been above {self.factor:g}x its initial value "
                    f"{self.reference:.3g} for {self.above} steps (now {loss:.3g})",
                    "{lr} is too large: the weights blow up while BatchNorm can keep the "
                    "loss finite",
                )
        else:
            self.above = 0

    def on_epoch_end(self, trainer, logs):
        step = trainer.global_step
        for name, p in trainer.model.named_parameters():
            if not math.isfinite(float(np.sum(p.data, dtype=np.float64))):
                self._stop(
                    trainer,
                    logs["epoch"],
                    step,
                    f"parameter {name} holds non-finite values",
                    "{lr} is too large",
                )
        chance = 1.0 / self.num_classes
        accuracy = logs.get("val_accuracy", logs.get("train_accuracy"))
        if step >= self.warmup_steps and accuracy is not None:
            if accuracy < self.chance_margin * chance:
                which = "validation" if "val_accuracy" in logs else "training"
                self._stop(
                    trainer,
                    logs["epoch"],
                    step,
                    f"the {which} accuracy is {accuracy:.3f} after {step} steps, about chance "
                    f"({chance:.2f})",
                    "{lr} is too large (or too small, if the loss stays at its initial value)",
                )

    def state_dict(self):
        return {"reference": self.reference, "above": self.above}

    def load_state_dict(self, state):
        self.reference = state.get("reference")
        self.above = int(state.get("above", 0))


def check_finite(loss_value: float, epoch: int, step: int, lr: float | None):
    """The course's "cost becomes NaN when the learning rate is too large" lesson, as a guard."""
    if not math.isfinite(loss_value) or np.isnan(loss_value):
        hint = (
            f"try a smaller learning rate than {lr:g} (e.g. {lr / 10:g})"
            if lr
            else "try a smaller learning rate"
        )
        raise DivergenceError(
            f"training diverged: the loss became {loss_value} at epoch {epoch}, step {step}; "
            f"{hint}. The last good checkpoint (if any) is unchanged."
        )
