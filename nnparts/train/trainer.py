"""The Trainer: epochs over a DataLoader, evaluation, callbacks, resumable state."""

from __future__ import annotations

import sys
import time

import numpy as np

import nnparts
from nnparts import functional as F
from nnparts import random as nnrandom
from nnparts.data.augment import augment_batch
from nnparts.optim.lr_scheduler import ReduceLROnPlateau
from nnparts.tensor import Tensor, no_grad
from nnparts.train import checkpoint as ckpt
from nnparts.train.callbacks import check_finite, wants_batch_end
from nnparts.train.metrics import accuracy


def _progress(iterable, total, desc, enabled):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr)


class Trainer:
    """Train a classifier with softmax cross-entropy.

    Args:
        model: an ``nnparts.nn.Module`` mapping a float32 batch to logits.
        optimizer: an ``nnparts.optim`` optimizer over ``model.parameters()``.
        loader: a ``nnparts.data.DataLoader`` over the (preprocessed float32) training data.
        val_data: ``(x, y)`` arrays for validation after each epoch, or None.
        scheduler: an lr scheduler stepped once per epoch (ReduceLROnPlateau gets val_loss).
        callbacks: list of :class:`~nnparts.train.callbacks.Callback`.
        augment: callable ``(x, y, rng) -> (x, targets)`` applied to each training batch;
            targets may be soft label rows (mixup, CutMix). One whose ``needs_index`` is true
            (alternating flips) is also given the batch's ``index=`` and ``epoch=`` from the
            loader's ``current_batch``.
        penalty: callable ``model -> Tensor`` added to the loss (L1/L2 regularization).
        grad_clip: max global gradient norm, or None.
        progress: show a progress bar (only where stderr is a terminal).
        rng: generator for augmentation and dropout (defaults to the library's generator).
    """

    def __init__(
        self,
        model,
        optimizer,
        loader,
        val_data=None,
        scheduler=None,
        callbacks=(),
        augment=None,
        penalty=None,
        grad_clip=None,
        label_smoothing=0.0,
        progress=True,
        eval_batch_size=1000,
        log=print,
        rng=None,
        scheduler_interval="epoch",
        ema=None,
    ):
        self.model, self.optimizer, self.loader = model, optimizer, loader
        self.val_data = val_data
        self.scheduler = scheduler
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(
                f"scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}"
            )
        self.scheduler_interval = scheduler_interval
        self.ema = ema
        self.callbacks = list(callbacks)
        self.augment, self.penalty, self.grad_clip = augment, penalty, grad_clip
        if getattr(augment, "needs_index", False) and not hasattr(loader, "current_batch"):
            raise ValueError(
                f"augment {augment!r} needs the dataset indices of each batch, which "
                f"{type(loader).__name__} does not give (no current_batch); use "
                "nnparts.data.DataLoader"
            )
        self.label_smoothing = label_smoothing
        self.progress = progress and sys.stderr.isatty()
        self.eval_batch_size = eval_batch_size
        self._log = log
        self.rng = rng if rng is not None else nnrandom.default_rng()
        self.history: list[dict] = []
        self.epoch = 0  # epochs completed
        self.global_step = 0  # optimizer steps taken (counts on across a resume)
        self.stop_training = False
        self.config: dict | None = None

    def log(self, message: str):
        if self._log is not None:
            self._log(message)

    @property
    def lr(self) -> float:
        """The lr of the group with the most weights (the main lr when some parameters, e.g.
        the norm biases, have a group with a scaled lr of their own)."""
        groups = self.optimizer.param_groups
        main = max(groups, key=lambda g: sum(p.data.size for p in g["params"]))
        return float(main["lr"])

    # -- one epoch ------------------------------------------------------------------------------
    def train_epoch(self) -> dict:
        self.model.train()
        total_loss, total_correct, total_seen = 0.0, 0.0, 0
        batches = _progress(self.loader, len(self.loader), f"epoch {self.epoch + 1}", self.progress)
        batch_callbacks = [cb for cb in self.callbacks if wants_batch_end(cb)]
        for step, (xb, yb) in enumerate(batches):
            targets = yb
            if self.augment is not None:  # alternating flips also get the batch's indices
                batch = getattr(self.loader, "current_batch", None)
                xb, targets = augment_batch(self.augment, xb, yb, self.rng, batch)
            logits = self.model(Tensor(xb))
            loss = F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)
            if self.penalty is not None:
                loss = loss + self.penalty(self.model)
            value = float(loss.data)
            check_finite(value, self.epoch + 1, step + 1, self.lr)
            self.optimizer.zero_grad()
            loss.backward()
            if batch_callbacks:
                grad_norm = global_grad_norm(self.model.parameters())
            if self.grad_clip is not None:
                nnparts.optim.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            self.optimizer.step()
            self.global_step += 1
            if self.ema is not None:
                self.ema.update(self.model)
            if self.scheduler is not None and self.scheduler_interval == "step":
                self.scheduler.step()
            n = len(xb)
            if batch_callbacks:
                logs = {
                    "epoch": self.epoch + 1,
                    "batch": step + 1,
                    "step": self.global_step,
                    "loss": value,
                    "lr": self.lr,
                    "grad_norm": grad_norm,
                    "batch_size": n,
                }
                for cb in batch_callbacks:
                    cb.on_batch_end(self, logs)
                if self.stop_training:
                    total_loss += value * n
                    total_correct += accuracy(logits.data, targets) * n
                    total_seen += n
                    break
            total_loss += value * n
            total_correct += accuracy(logits.data, targets) * n
            total_seen += n
            if self.progress and step % 10 == 0:
                batches.set_postfix(
                    loss=f"{total_loss / total_seen:.4f}", acc=f"{total_correct / total_seen:.4f}"
                )
        return {"train_loss": total_loss / total_seen, "train_accuracy": total_correct / total_seen}

    def predict(self, x: np.ndarray, tta: str = "none") -> np.ndarray:
        """Logits for ``x`` in evaluation mode, in batches.

        ``tta="hflip"`` (test-time augmentation): the log of the mean class probabilities of
        each image and its mirror image, ``log((softmax(f(x)) + softmax(f(flip(x)))) / 2)`` —
        logits whose softmax is that mean, so accuracy and cross-entropy read them as usual.
        """
        if self.ema is not None and self.ema.n_averaged:  # evaluate the averaged weights
            with self.ema.applied(self.model):
                return predict(self.model, x, self.eval_batch_size, tta)
        return predict(self.model, x, self.eval_batch_size, tta)

    def evaluate(self, x: np.ndarray, y: np.ndarray, tta: str = "none") -> dict:
        logits = self.predict(x, tta)
        return evaluate_logits(logits, y)

    # -- the loop -------------------------------------------------------------------------------
    def fit(self, epochs: int) -> list[dict]:
        """Train until ``epochs`` epochs in total are done (a resumed run continues the count)."""
        self.stop_training = False
        for cb in self.callbacks:
            cb.on_train_begin(self)
        while self.epoch < epochs and not self.stop_training:
            start = time.perf_counter()
            logs = {"epoch": self.epoch + 1, "lr": self.lr}
            logs.update(self.train_epoch())
            if self.val_data is not None and len(self.val_data[0]):
                val = self.evaluate(*self.val_data)
                logs["val_loss"], logs["val_accuracy"] = val["loss"], val["accuracy"]
            logs["seconds"] = time.perf_counter() - start
            self.epoch += 1
            if self.scheduler is not None and self.scheduler_interval == "epoch":
                if isinstance(self.scheduler, ReduceLROnPlateau):
                    self.scheduler.step(logs.get("val_loss", logs["train_loss"]))
                else:
                    self.scheduler.step()
            self.history.append(logs)
            self.log(
                f"epoch {logs['epoch']:>3}/{epochs}  loss {logs['train_loss']:.4f}  "
                f"acc {logs['train_accuracy']:.4f}"
                + (
                    f"  val_loss {logs['val_loss']:.4f}  val_acc {logs['val_accuracy']:.4f}"
                    if "val_loss" in logs
                    else ""
                )
                + f"  lr {logs['lr']:.3g}  {logs['seconds']:.1f}s"
            )
            for cb in self.callbacks:
                cb.on_epoch_end(self, logs)
        for cb in self.callbacks:
            cb.on_train_end(self)
        return self.history

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything a resumed run needs to continue bit-identically."""
        state = {
            "epoch": self.epoch,
            "global_step": self.global_step,
            "history": self.history,
            "optimizer": self.optimizer.state_dict(),
            "loader": self.loader.state_dict(),
            "rng": self.rng.bit_generator.state,
            "default_rng": nnrandom.default_rng().bit_generator.state,
            "callbacks": [cb.state_dict() for cb in self.callbacks],
            "callback_types": [type(cb).__name__ for cb in self.callbacks],
        }
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

    def load_state_dict(self, state: dict):
        self.epoch = int(state["epoch"])
        self.global_step = int(state.get("global_step", 0))
        self.history = list(state["history"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.loader.load_state_dict(state["loader"])
        self.rng.bit_generator.state = state["rng"]
        nnrandom.default_rng().bit_generator.state = state["default_rng"]
        for cb, cb_state in _pair_callback_states(self.callbacks, state):
            cb.load_state_dict(cb_state)
        if self.scheduler is not None and "scheduler" in state:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None and "ema" in state:
            self.ema.load_state_dict(state["ema"])

    def save_checkpoint(self, path, extra_metadata: dict | None = None):
        meta = {
            "epoch": self.epoch,
            "config": self.config,
            "versions": {"nnparts": nnparts.__version__, "numpy": np.__version__},
        }
        if extra_metadata:
            meta.update(extra_metadata)
        ckpt.save(path, self.model.state_dict(), {"trainer": self.state_dict()}, meta)

    def load_checkpoint(self, path):
        model_state, states, meta = ckpt.load(path)
        load_model_state(self.model, model_state, path)
        self.load_state_dict(states["trainer"])
        return meta


def _pair_callback_states(callbacks, state: dict):
    """(callback, saved state) pairs: by type name and order where the checkpoint records the
    types, so a callback added since (e.g. the divergence guard) starts fresh; else in order."""
    states = state["callbacks"]
    types = state.get("callback_types")
    if types is None:
        if len(states) < len(callbacks):  # written before the divergence guard existed
            callbacks = [cb for cb in callbacks if type(cb).__name__ != "DivergenceGuard"]
        return list(zip(callbacks, states))
    pending = list(zip(types, states))
    pairs = []
    for cb in callbacks:
        for i, (name, cb_state) in enumerate(pending):
            if name == type(cb).__name__:
                pairs.append((cb, cb_state))
                del pending[i]
                break
    return pairs


def global_grad_norm(parameters) -> float:
    """The L2 norm of all gradients together, sqrt(sum of every squared gradient entry)."""
    total = 0.0
    for p in parameters:
        if p.grad is not None:
            g = p.grad.ravel()
            total += float(np.dot(g, g))
    return float(np.sqrt(total))


TTA_METHODS = ("none", "hflip", "hflip_shift")


def _shift(x: np.ndarray, dx: int) -> np.ndarray:
    """Images moved ``dx`` pixels right (left if negative), the vacated column repeating the
    edge (as a translated crop of a padded image would; no wrap-around)."""
    out = np.empty_like(x)
    if dx > 0:
        out[..., dx:] = x[..., :-dx]
        out[..., :dx] = x[..., :1]
    else:
        out[..., :dx] = x[..., -dx:]
        out[..., dx:] = x[..., -1:]
    return out


def _tta_views(x: np.ndarray, tta: str) -> list:
    """(view, weight) pairs whose weighted class probabilities are averaged; the first view is
    ``x`` itself. ``hflip``: x and its mirror, 1/2 each. ``hflip_shift`` (airbench's TTA): x and
    its mirror 1/4 each, and both shifted one pixel left and right, 1/8 each."""
    mirror = np.ascontiguousarray(x[..., ::-1])
    if tta == "hflip":
        return [(x, 0.5), (mirror, 0.5)]
    views = [(x, 0.25), (mirror, 0.25)]
    for img in (x, mirror):
        for dx in (1, -1):
            views.append((_shift(img, dx), 0.125))
    return views


def predict(model, x: np.ndarray, batch_size: int = 1000, tta: str = "none") -> np.ndarray:
    """Logits of ``model`` for ``x`` in evaluation mode, in batches (see :meth:`Trainer.predict`
    for ``tta``)."""
    if tta not in TTA_METHODS:
        raise ValueError(
            f"unknown test-time augmentation {tta!r}; allowed: {', '.join(TTA_METHODS)}"
        )
    was_training = model.training
    model.eval()
    outs = []
    with no_grad():
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size]
            logits = model(Tensor(xb)).data
            if tta != "none":
                views = _tta_views(xb, tta)
                probs = F.softmax(Tensor(logits), axis=-1).data * views[0][1]
                for view, weight in views[1:]:
                    probs += F.softmax(model(Tensor(view)), axis=-1).data * weight
                logits = np.log(np.maximum(probs, np.finfo(probs.dtype).tiny))
            outs.append(logits)
    model.train(was_training)
    return np.concatenate(outs) if outs else np.zeros((0,), np.float32)


def evaluate_logits(logits: np.ndarray, y: np.ndarray) -> dict:
    """Mean cross-entropy and accuracy of ``logits`` against class indices ``y``."""
    with no_grad():
        loss = float(F.cross_entropy(Tensor(logits), y).data)
    return {"loss": loss, "accuracy": accuracy(logits, y)}


def load_model_state(model, model_state: dict, path="checkpoint"):
    """Load weights, turning a key/shape mismatch into a CheckpointError that names the cause."""
    try:
        model.load_state_dict(model_state)
    except (KeyError, ValueError) as e:
        msg = e.args[0] if e.args else str(e)
        raise ckpt.CheckpointError(
            f"checkpoint {path} does not fit this model (was it saved from a different "
            f"architecture or config?): {msg}"
        ) from None
