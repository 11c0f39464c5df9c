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

    def __init__(self, folder, monitor="val_loss", save_best=True, save_last=True):
        self.folder, self.monitor = os.fspath(folder), monitor
        self.save_best, self.save_last = save_best, save_last
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
            trainer.save_checkpoint(self.last_path)
        value = logs.get(self.monitor)
        if self.save_best and value is not None and _better(self.mode, value, self.best, 0.0):
            self.best = value
            trainer.save_checkpoint(self.best_path)

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
    """The loss became NaN or infinite."""


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
