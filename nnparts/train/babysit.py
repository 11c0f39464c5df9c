"""The course's babysitting checklist (CS231n "Babysitting the learning process"), run on any
training config before a long run.

Each check builds the model exactly as ``nnparts train`` does (same config, same seed) and
returns a :class:`CheckResult` (name, ``pass`` / ``warn`` / ``fail``, a one-line summary and
every number it measured):

* ``initial-loss`` -- with small weights and no regularization the softmax is near uniform, so
  the loss at init is ``-ln(1/C) = ln C`` (2.303 for 10 classes);
* ``regularization`` -- adding L2 (``lambda/2 * sum W^2``) to the loss raises it at init
  (the config's ``regularization.l2``, or a probe strength when it has none);
* ``overfit-20`` -- 20 training samples, regularization off: the model reaches 100% training
  accuracy (in evaluation mode) within a step budget, or something is wrong;
* ``lr-range`` -- an LR range test (Smith 2017, "Cyclical learning rates"): one short run whose
  learning rate grows exponentially from ``lr_min`` to ``lr_max``; the suggested range runs from
  the lr of steepest descent of the smoothed loss to a tenth of the lr where the loss blows up;
* ``activations`` / ``gradients`` -- per-layer statistics at init through forward hooks and
  output-gradient hooks: activation scale (std relative to the input's), the fraction of
  saturated activations (local slope ``|f'(x)| < 0.01``: the unit passes back under 1% of the
  gradient) and of dead units (saturated on every sample of the batch), and the norm of the
  gradient of the loss with respect to each weight layer's output relative to its norm at the
  logits; a warning where they vanish or explode.

``run_checks(cfg)`` runs them all; ``format_table`` prints them; ``write_report`` writes
``babysit.json`` (every number) and ``babysit.png``. The lab (``nnparts.lab.babysitting``) calls
the same functions, and :func:`lr_trial` / :func:`coarse_lr_search` (fixed-lr short runs on a
grid: the notes' coarse search).
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from nnparts import functional as F
from nnparts import nn
from nnparts.random import manual_seed
from nnparts.tensor import Tensor, no_grad
from nnparts.train import run as runs
from nnparts.train.callbacks import Callback, DivergenceError, DivergenceGuard
from nnparts.train.metrics import jsonable

STATUSES = ("pass", "warn", "fail")

PROBE_L2 = 1e-3  # L2 strength added for the regularization check when the config has none
# |loss - ln C| / ln C: pass up to 0.3 (logits of std up to ~1.2 at init), warn up to 1, else fail
INITIAL_LOSS_TOL = (0.3, 1.0)
SATURATED_SLOPE = 0.01  # an activation is saturated where |f'(x)| < this
SATURATED_LIMITS = (0.7, 0.95)  # fraction of saturated activations: warn above, fail above
DEAD_LIMITS = (0.1, 0.5)  # fraction of dead units: warn above, fail above
SCALE_WARN = (1e-1, 1e1)  # activation std / input std, gradient norm / logit gradient norm
SCALE_FAIL = (1e-3, 1e3)


@dataclass
class CheckResult:
    """One check: ``status`` is ``pass`` / ``warn`` / ``fail``; ``summary`` is one line."""

    name: str
    status: str
    summary: str
    numbers: dict = field(default_factory=dict)
    seconds: float = 0.0

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"check status {self.status!r}; allowed: {', '.join(STATUSES)}")

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "status": self.status,
            "summary": self.summary,
            "seconds": self.seconds,
            "numbers": jsonable(self.numbers),
        }


def _worst(statuses) -> str:
    statuses = list(statuses)
    return max(statuses, key=STATUSES.index) if statuses else "pass"


# -- data and trainers ---------------------------------------------------------------------------
def prepare(cfg: dict) -> dict:
    """The config's training data (validation split carved off as ``nnparts train`` does; the
    test split is not loaded)."""
    return runs.prepare_data(cfg, cfg["seed"], with_test=False)


def _variant(cfg: dict, **changes) -> dict:
    """A copy of ``cfg`` with dotted keys changed: ``_variant(cfg, **{"optimizer.lr": 0.1})``."""
    out = copy.deepcopy(cfg)
    for key, value in changes.items():
        node = out
        *path, last = key.split(".")
        for part in path:
            node = node[part]
        node[last] = value
    return out


def _plain(cfg: dict, epochs: int, batch_size: int | None = None, **changes) -> dict:
    """The config for a check's short run: no scheduler, no early stopping (the check drives the
    learning rate and decides when to stop)."""
    changes = {
        "scheduler.name": "none",
        "train.early_stopping.patience": None,
        "train.epochs": int(epochs),
        **changes,
    }
    if batch_size is not None:
        changes["train.batch_size"] = int(batch_size)
    return _variant(cfg, **changes)


def _trainer(cfg: dict, prepared: dict, x=None, y=None, val=None):
    """``make_trainer`` on ``(x, y)`` (default: the prepared training data), with ``val`` as the
    validation data (default: none), quiet.

    The divergence guard stays (non-finite loss or gradients, a loss that stays far above its
    initial value), but without its accuracy-at-chance rule: a check's run at a tiny learning
    rate is meant to stay at chance, and each check judges its own result."""
    data = dict(prepared)
    if x is not None:
        data["x_train"], data["y_train"] = x, y
    if val is None:
        val = (data["x_train"][:0], data["y_train"][:0])
    data["x_val"], data["y_val"] = val
    trainer = runs.make_trainer(cfg, data, None, True, False)
    trainer.callbacks = [
        DivergenceGuard(num_classes=data["num_classes"], warmup_steps=sys.maxsize)
        if isinstance(cb, DivergenceGuard)
        else cb
        for cb in trainer.callbacks
    ]
    return trainer


def _set_lr(optimizer, lr: float):
    for group in optimizer.param_groups:
        group["lr"] = float(lr)


class _Steps(Callback):
    """Record each step's loss; call ``on_step(step, loss)``; stop after ``steps`` steps."""

    def __init__(self, steps: int, on_step=None):
        self.steps, self.on_step = int(steps), on_step
        self.losses: list[float] = []
        self.lrs: list[float] = []

    def on_batch_end(self, trainer, logs):
        self.losses.append(float(logs["loss"]))
        self.lrs.append(float(logs["lr"]))
        if self.on_step is not None:
            self.on_step(trainer, len(self.losses), float(logs["loss"]))
        if len(self.losses) >= self.steps:
            trainer.stop_training = True


def _fit(trainer, epochs: int) -> dict | None:
    """Run ``trainer.fit``; on divergence return ``step`` (the updates done when the guard
    stopped the run), the lr, the guard's message (which names the step) and its reason."""
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            trainer.fit(epochs)
    except DivergenceError as e:
        message = str(e)
        # "training diverged at epoch 1, step 8: <what happened>; likely cause: ..."
        reason = message.split(": ", 1)[-1].split(";")[0]
        return {"step": trainer.global_step, "lr": trainer.lr, "message": message,
                "reason": reason}  # fmt: skip
    return None


def _batch(prepared: dict, n: int, seed: int):
    """``n`` training samples drawn at random (seeded)."""
    x, y = prepared["x_train"], prepared["y_train"]
    idx = np.random.default_rng([seed, 11]).permutation(len(y))[: min(n, len(y))]
    return x[idx], y[idx]


def _loss_at_init(cfg, prepared, n, penalty=None) -> tuple[float, float]:
    """(data loss, penalty) of the freshly built model on ``n`` samples, in training mode (the
    loss the first step sees)."""
    trainer = _trainer(cfg, prepared)
    x, y = _batch(prepared, n, cfg["seed"])
    manual_seed(cfg["seed"])
    with no_grad(), np.errstate(over="ignore", invalid="ignore"):
        loss = float(F.cross_entropy(trainer.model(Tensor(x)), y).data)
        extra = float(penalty(trainer.model).data) if penalty is not None else 0.0
    return loss, extra


# -- 1. initial loss -----------------------------------------------------------------------------
def initial_loss(cfg: dict, prepared: dict, n: int = 1000) -> CheckResult:
    """The loss at init with regularization off against ``ln C``."""
    start = time.perf_counter()
    classes = prepared["num_classes"]
    expected = math.log(classes)
    loss, _ = _loss_at_init(cfg, prepared, n)
    rel = abs(loss - expected) / expected if math.isfinite(loss) else math.inf
    status = (
        "pass" if rel <= INITIAL_LOSS_TOL[0] else "warn" if rel <= INITIAL_LOSS_TOL[1] else "fail"
    )
    summary = (
        f"{loss:.3f} at init vs ln({classes}) = {expected:.3f} (regularization off; "
        f"off by {100 * rel:.0f}%, pass up to {100 * INITIAL_LOSS_TOL[0]:.0f}%)"
    )
    if status != "pass":
        summary += (
            "; the logits at init are not small: a smaller init of the last layer, or a bug"
            if loss > expected
            else "; lower than chance before training: check the labels and the loss"
        )
    return CheckResult(
        "initial-loss",
        status,
        summary,
        {"loss": loss, "ln_classes": expected, "classes": classes, "relative_error": rel, "n": n},
        time.perf_counter() - start,
    )


# -- 2. regularization raises the loss -----------------------------------------------------------
def regularization_raises_loss(cfg: dict, prepared: dict, n: int = 1000, probe_l2=PROBE_L2):
    """The loss at init with the config's L2 (or ``probe_l2`` where it has none) added, against
    the loss without regularization."""
    start = time.perf_counter()
    l2 = cfg["regularization"]["l2"]
    probe = not l2
    strength = probe_l2 if probe else l2
    reg_cfg = _variant(cfg, **{"regularization.l1": 0.0, "regularization.l2": strength})
    loss, penalty = _loss_at_init(reg_cfg, prepared, n, runs.build_penalty(reg_cfg))
    total = loss + penalty
    rises = math.isfinite(total) and total > loss
    where = (
        f"probe L2 {strength:g} (the config has none)" if probe else f"the config's L2 {strength:g}"
    )
    summary = f"{loss:.3f} -> {total:.3f} with {where}"
    if cfg["optimizer"]["weight_decay"]:
        summary += "; optimizer.weight_decay acts in the update, not in the loss"
    if not rises:
        summary += ": the penalty does not raise the loss (is it applied to any weight?)"
    return CheckResult(
        "regularization",
        "pass" if rises else "fail",
        summary,
        {"loss": loss, "loss_with_l2": total, "penalty": penalty, "l2": strength, "probe": probe},
        time.perf_counter() - start,
    )


# -- 3. overfit a tiny subset --------------------------------------------------------------------
def small_subset(prepared: dict, n: int, seed: int):
    """``n`` training samples, as many per class as possible (seeded)."""
    x, y = prepared["x_train"], prepared["y_train"]
    rng = np.random.default_rng([seed, 20])
    perm = rng.permutation(len(y))
    ys = y[perm]
    rank = np.empty(len(y), dtype=np.int64)  # position of each sample within its class
    for c in np.unique(ys):
        where = np.flatnonzero(ys == c)
        rank[where] = np.arange(len(where))
    idx = perm[np.argsort(rank, kind="stable")][:n]
    return x[idx], y[idx]


def overfit_small(cfg: dict, prepared: dict, n: int = 20, max_steps: int = 200) -> CheckResult:
    """Train on ``n`` samples (full batch, regularization and augmentation off) until the
    evaluation-mode accuracy on them is 100%, for at most ``max_steps`` steps."""
    start = time.perf_counter()
    x, y = small_subset(prepared, n, cfg["seed"])
    small_cfg = _plain(
        cfg,
        max_steps,
        batch_size=len(y),
        **{
            "regularization.l1": 0.0,
            "regularization.l2": 0.0,
            "optimizer.weight_decay": 0.0,
            "data.augment": [],
        },
    )
    trainer = _trainer(small_cfg, prepared, x, y, val=(x, y))
    curve: dict = {"step": [], "loss": [], "accuracy": []}

    class Reached(Callback):
        def on_epoch_end(self, tr, logs):
            curve["step"].append(tr.global_step)
            curve["loss"].append(logs["train_loss"])
            curve["accuracy"].append(logs["val_accuracy"])
            if logs["val_accuracy"] >= 1.0:
                tr.stop_training = True

    trainer.callbacks.append(Reached())
    diverged = _fit(trainer, max_steps)
    reached = bool(curve["accuracy"]) and curve["accuracy"][-1] >= 1.0
    steps = curve["step"][-1] if reached else None
    best = max(curve["accuracy"], default=0.0)
    if diverged:
        summary = (
            f"the divergence guard stopped it after {diverged['step']} steps "
            f"(lr {diverged['lr']:g}): {diverged['reason']}"
        )
    elif reached:
        summary = (
            f"100% train accuracy on {len(y)} samples after {steps} steps (budget {max_steps})"
        )
    else:
        summary = (
            f"{100 * best:.0f}% train accuracy on {len(y)} samples after {max_steps} steps "
            "(not 100%): the model or the lr cannot fit even a tiny set"
        )
    return CheckResult(
        "overfit-20" if n == 20 else f"overfit-{n}",
        "pass" if reached else "fail",
        summary,
        {
            "n": len(y),
            "max_steps": max_steps,
            "reached": reached,
            "steps": steps,
            "best_accuracy": best,
            "final_loss": curve["loss"][-1] if curve["loss"] else None,
            "diverged": diverged,
            "curve": curve,
        },
        time.perf_counter() - start,
    )


# -- 4. LR range test ----------------------------------------------------------------------------
def ema(values, beta: float = 0.9) -> np.ndarray:
    """Bias-corrected exponential moving average (the LR range test's smoothed loss);
    non-finite values propagate."""
    v = np.asarray(values, dtype=float)
    out = np.empty_like(v)
    avg = 0.0
    for i, value in enumerate(v):
        avg = beta * avg + (1 - beta) * value
        out[i] = avg / (1 - beta ** (i + 1))
    return out


def blowup_index(losses, factor: float = 4.0, beta: float = 0.9) -> int | None:
    """The first step where the loss is not finite or its EMA exceeds ``factor`` times the
    lowest EMA so far (where the LR range test stops); None if it never happens."""
    losses = np.asarray(losses, dtype=float)
    if len(losses) == 0:
        return None
    bad = ~np.isfinite(losses)
    smoothed = ema(np.where(bad, np.inf, losses), beta)
    running_min = np.minimum.accumulate(np.where(np.isfinite(smoothed), smoothed, np.inf))
    over = bad | ~np.isfinite(smoothed) | (smoothed > factor * running_min)
    hits = np.flatnonzero(over)
    return int(hits[0]) if len(hits) else None


def centred_smooth(values, window: int) -> np.ndarray:
    """A centred moving average (the window shrinks at the ends), so a slope is not shifted."""
    v = np.asarray(values, dtype=float)
    half = max(int(window) // 2, 0)
    if half == 0 or len(v) < 3:
        return v.copy()
    csum = np.concatenate([[0.0], np.cumsum(v)])
    i = np.arange(len(v))
    lo, hi = np.maximum(i - half, 0), np.minimum(i + half + 1, len(v))
    return (csum[hi] - csum[lo]) / (hi - lo)


def suggest_lr_range(
    lrs, losses, factor: float = 4.0, fraction: float = 0.1, window: int | None = None
) -> dict:
    """The LR range test's reading of a ``losses`` vs ``lrs`` curve (lrs increasing).

    * ``lr_blowup``: the lr where the loss blows up (:func:`blowup_index`), or None;
    * ``lr_steepest``: the lr where the centred-smoothed loss falls fastest per decade of lr,
      on the way down to its lowest point (before the blow-up);
    * ``lr_min_loss``: the lr of the lowest smoothed loss;
    * ``suggested``: ``(lr_steepest, fraction * lr_blowup)`` (``lr_min_loss`` for the upper end
      when the sweep never blew up); where the steepest descent lies above that upper end, the
      lower end becomes ``fraction`` times the upper end;
    * ``decreased``: whether the smoothed loss fell by at least 10% from its start at all (when
      it did not, no range is suggested).
    """
    lrs = np.asarray(lrs, dtype=float)
    losses = np.asarray(losses, dtype=float)
    if len(lrs) != len(losses) or len(lrs) < 5:
        raise ValueError(f"need at least 5 (lr, loss) points of equal length, got {len(lrs)}")
    if np.any(np.diff(lrs) <= 0):
        raise ValueError("the lrs of an LR range test must increase")
    stop = blowup_index(losses, factor)
    end = len(losses) if stop is None else stop
    if end < 5:
        return {
            "lr_blowup": float(lrs[stop]) if stop is not None else None,
            "blowup_step": stop,
            "lr_steepest": None,
            "lr_min_loss": None,
            "suggested": None,
            "decreased": False,
        }
    window = window or max(5, len(losses) // 20)
    smooth = centred_smooth(losses[:end], window)
    logs = np.log10(lrs[:end])
    slope = np.gradient(smooth, logs)
    lowest = int(np.argmin(smooth))
    steepest = int(np.argmin(slope[: lowest + 1]))  # on the way down to the lowest loss
    decreased = bool(smooth[lowest] < 0.9 * smooth[0])
    lr_blowup = float(lrs[stop]) if stop is not None else None
    out = {
        "lr_blowup": lr_blowup,
        "blowup_step": stop,
        "lr_steepest": float(lrs[steepest]),
        "lr_min_loss": float(lrs[lowest]),
        "min_smoothed_loss": float(smooth[lowest]),
        "start_smoothed_loss": float(smooth[0]),
        "decreased": decreased,
        "suggested": None,
    }
    if decreased:
        high = fraction * lr_blowup if lr_blowup is not None else float(lrs[lowest])
        low = float(lrs[steepest])
        if low >= high:
            low = fraction * high
        out["suggested"] = (low, high)
    return out


def lr_range_test(
    cfg: dict,
    prepared: dict,
    lr_min: float = 1e-6,
    lr_max: float = 10.0,
    steps: int = 200,
    factor: float = 4.0,
) -> CheckResult:
    """One run of at most ``steps`` minibatch steps with the lr growing exponentially from
    ``lr_min`` to ``lr_max`` (the config's optimizer, batch size and regularization); it stops
    where the loss blows up. Passes when the config's lr lies in the suggested range, warns
    within a factor of 10 of it, fails further away or when the loss never falls."""
    start = time.perf_counter()
    if not 0 < lr_min < lr_max:
        raise ValueError(f"the LR range test needs 0 < lr_min < lr_max, got {lr_min}, {lr_max}")
    schedule = lr_min * (lr_max / lr_min) ** (np.arange(steps) / max(steps - 1, 1))
    per_epoch = math.ceil(len(prepared["y_train"]) / cfg["train"]["batch_size"])
    sweep_cfg = _plain(cfg, math.ceil(steps / per_epoch) + 1)
    trainer = _trainer(sweep_cfg, prepared)
    _set_lr(trainer.optimizer, schedule[0])

    def next_lr(tr, step, loss):
        if blowup_index(recorder.losses, factor) is not None:
            tr.stop_training = True
        elif step < steps:
            _set_lr(tr.optimizer, schedule[step])

    recorder = _Steps(steps, next_lr)
    trainer.callbacks.append(recorder)
    diverged = _fit(trainer, sweep_cfg["train"]["epochs"])
    lrs, losses = list(recorder.lrs), list(recorder.losses)
    if diverged:  # the guard stopped the step before its update: record the non-finite loss
        lrs.append(float(schedule[len(lrs)]))
        losses.append(math.nan)
    reading = (
        suggest_lr_range(lrs, losses, factor)
        if len(lrs) >= 5
        else {"suggested": None, "decreased": False, "lr_blowup": lrs[-1] if lrs else None}
    )
    lr = cfg["optimizer"]["lr"]
    suggested = reading["suggested"]
    if suggested is None:
        status = "fail"
        summary = (
            f"the loss did not fall by 10% anywhere in lr {lr_min:g} .. {lrs[-1]:g}: check the "
            "model, the data and the loss"
        )
    else:
        low, high = suggested
        distance = max(low / lr, lr / high, 1.0)
        status = "pass" if distance == 1.0 else "warn" if distance <= 10 else "fail"
        where = "inside" if distance == 1.0 else "below" if lr < low else "above"
        summary = (
            f"suggested lr {low:.2g} .. {high:.2g} "
            f"(steepest descent at {reading['lr_steepest']:.2g}"
            + (
                f", blew up at {reading['lr_blowup']:.2g}"
                if reading["lr_blowup"] is not None
                else f", no blow-up up to {lrs[-1]:.2g}"
            )
            + f"); the config's lr {lr:g} is {where}"
        )
    numbers = {
        "lr_min": lr_min,
        "lr_max": lr_max,
        "steps": steps,
        "steps_run": len(losses),
        "config_lr": lr,
        "lrs": lrs,
        "losses": losses,
        "diverged": diverged,
        **{k: v for k, v in reading.items()},
    }
    return CheckResult("lr-range", status, summary, numbers, time.perf_counter() - start)


def lr_trial(cfg: dict, prepared: dict, lr: float, steps: int, val=None) -> dict:
    """A short run at a fixed ``lr`` (the config otherwise, no scheduler): per-step losses, the
    step where the divergence guard fired (or None) and its message, and the validation
    accuracy at the end when ``val=(x, y)`` is given and the run did not diverge.

    ``diverged_after``: the updates done when the divergence guard stopped the run (its
    ``message`` names the step), or None."""
    per_epoch = math.ceil(len(prepared["y_train"]) / cfg["train"]["batch_size"])
    trial_cfg = _plain(cfg, math.ceil(steps / per_epoch) + 1, **{"optimizer.lr": float(lr)})
    trainer = _trainer(trial_cfg, prepared)
    recorder = _Steps(steps)
    trainer.callbacks.append(recorder)
    diverged = _fit(trainer, trial_cfg["train"]["epochs"])
    out = {
        "lr": float(lr),
        "losses": recorder.losses,
        "diverged_after": diverged["step"] if diverged else None,
        "message": diverged["message"] if diverged else None,
        "val_accuracy": None,
    }
    if val is not None and not diverged:
        out["val_accuracy"] = trainer.evaluate(*val)["accuracy"]
    return out


def coarse_lr_search(
    cfg: dict, prepared: dict, lrs, steps: int, drop: float = 0.5, val=None
) -> dict:
    """The notes' coarse search: a short fixed-lr run per lr of a (log) grid. An lr *works*
    when its run did not diverge and the mean loss of its last tenth of steps is below ``drop``
    times the mean of its first tenth. Returns the trials and the working range (lowest and
    highest working lr, or None)."""
    trials = [lr_trial(cfg, prepared, lr, steps, val) for lr in lrs]
    working = []
    for t in trials:
        losses = np.asarray(t["losses"], dtype=float)
        k = max(1, len(losses) // 10)
        t["loss_start"] = float(losses[:k].mean()) if len(losses) else math.nan
        t["loss_end"] = float(losses[-k:].mean()) if len(losses) else math.nan
        t["works"] = bool(
            t["diverged_after"] is None
            and len(losses) == steps
            and t["loss_end"] < drop * t["loss_start"]
        )
        if t["works"]:
            working.append(t["lr"])
    return {
        "trials": trials,
        "working": working,
        "range": (min(working), max(working)) if working else None,
        "drop": drop,
        "steps": steps,
    }


# -- 5. activations and gradients at init --------------------------------------------------------
def _activation_types() -> tuple:
    from nnparts.nn import activation as A

    skip = (A.Identity, A.Softmax, A.LogSoftmax, A.Maxout)
    return tuple(
        cls
        for cls in vars(A).values()
        if isinstance(cls, type)
        and issubclass(cls, nn.Module)
        and cls.__module__ == A.__name__
        and cls not in skip
        and cls is not nn.Module
    )


def local_slope(module, x: np.ndarray, h: float | None = None) -> np.ndarray:
    """``f'(x)`` of an element-wise activation module by central differences (float64), so any
    activation works without a hand-written derivative. The step ``h`` defaults to 1e-4 times
    the input's std (at most 1e-3), so that tiny inputs are not read across ReLU's kink."""
    x = np.asarray(x, dtype=np.float64)
    if h is None:
        scale = float(x.std()) if x.size else 1.0
        h = min(1e-3, 1e-4 * scale) if scale > 0 else 1e-3
    with no_grad():
        up = module.forward(Tensor(x + h)).data
        down = module.forward(Tensor(x - h)).data
    return (np.asarray(up, np.float64) - np.asarray(down, np.float64)) / (2 * h)


def unit_stats(output: np.ndarray, slope: np.ndarray, threshold: float = SATURATED_SLOPE) -> dict:
    """Statistics of one activation layer's ``output`` given its local ``slope`` (same shape):
    mean, std, ``saturated`` (fraction of entries with ``|slope| < threshold``), ``dead`` (the
    fraction of units -- axis 1: features or channels -- saturated on every sample and position
    of the batch), ``zero`` (fraction of exact zeros)."""
    output = np.asarray(output, dtype=np.float64)
    sat = np.abs(np.asarray(slope)) < threshold
    axes = (0,) + tuple(range(2, sat.ndim))
    dead_units = sat.all(axis=axes) if sat.ndim > 1 else np.array([bool(sat.all())])
    return {
        "mean": float(output.mean()),
        "std": float(output.std()),
        "saturated": float(sat.mean()),
        "dead": float(dead_units.mean()),
        "zero": float((output == 0).mean()),
        "units": int(dead_units.size),
    }


def _scale_status(value: float) -> str:
    if not math.isfinite(value) or not SCALE_FAIL[0] <= value <= SCALE_FAIL[1]:
        return "fail"
    if not SCALE_WARN[0] <= value <= SCALE_WARN[1]:
        return "warn"
    return "pass"


def _limit_status(value: float, limits) -> str:
    return "fail" if value > limits[1] else "warn" if value > limits[0] else "pass"


def layer_statistics(model, x: np.ndarray, y: np.ndarray) -> dict:
    """One forward and backward pass of ``model`` (training mode) on ``(x, y)``, read through
    hooks: per activation layer (forward hooks) :func:`unit_stats` and the std relative to the
    input's; per weight layer (Linear / Conv2d; output-gradient hooks) the norm of d loss / d
    output relative to d loss / d logits, and the weight and weight-gradient norms."""
    act_types = _activation_types()
    names = {id(m): name for name, m in model.named_modules()}
    acts = [m for m in model.modules() if isinstance(m, act_types)]
    weights = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    seen_acts: list = []
    seen_weights: list = []
    grads: dict = {}
    handles = []

    def keep_activation(module, inputs, output):
        seen_acts.append((module, np.array(inputs[0].data, copy=True), np.array(output.data)))

    def keep_weight_call(module, inputs, output):
        if module not in seen_weights:
            seen_weights.append(module)

    def keep_grad(module, grad):
        grads[id(module)] = grads.get(id(module), 0.0) + float(
            np.sum(np.square(grad, dtype=np.float64))
        )

    logit_grad: list = []
    try:
        for m in acts:
            handles.append(m.register_forward_hook(keep_activation))
        for m in weights:
            handles.append(m.register_forward_hook(keep_weight_call))
            handles.append(m.register_output_grad_hook(keep_grad))
        handles.append(
            model.register_output_grad_hook(
                lambda m, g: logit_grad.append(float(np.sum(np.square(g, dtype=np.float64))))
            )
        )
        model.train()
        for p in model.parameters():
            p.grad = None
        with np.errstate(over="ignore", invalid="ignore"):
            loss = F.cross_entropy(model(Tensor(x)), y)
            loss.backward()
    finally:
        for h in handles:
            h.remove()
    input_std = float(np.asarray(x, dtype=np.float64).std()) or 1.0
    layers = []
    for module, inp, out in seen_acts:
        stats = unit_stats(out, local_slope(module, inp))
        stats.update(
            layer=names.get(id(module), "?"),
            kind=type(module).__name__,
            shape=list(out.shape[1:]),
            std_ratio=stats["std"] / input_std,
        )
        layers.append(stats)
    logit_norm = math.sqrt(sum(logit_grad)) if logit_grad else math.nan
    grad_layers = []
    for module in seen_weights:
        weight = module.weight
        g = weight.grad
        grad_layers.append(
            {
                "layer": names.get(id(module), "?"),
                "kind": type(module).__name__,
                "output_grad_norm": math.sqrt(grads.get(id(module), 0.0)),
                "grad_ratio": math.sqrt(grads.get(id(module), 0.0)) / logit_norm
                if logit_norm
                else math.nan,
                "weight_norm": float(np.linalg.norm(weight.data)),
                "weight_grad_norm": float(np.linalg.norm(g)) if g is not None else 0.0,
            }
        )
    for p in model.parameters():
        p.grad = None
    return {
        "loss": float(loss.data),
        "input_std": input_std,
        "logit_grad_norm": logit_norm,
        "activations": layers,
        "gradients": grad_layers,
    }


def activations_and_gradients(cfg: dict, prepared: dict, n: int = 256) -> list[CheckResult]:
    """The ``activations`` and ``gradients`` checks on the freshly built model."""
    start = time.perf_counter()
    trainer = _trainer(cfg, prepared)
    x, y = _batch(prepared, n, cfg["seed"])
    manual_seed(cfg["seed"])
    stats = layer_statistics(trainer.model, x, y)
    seconds = time.perf_counter() - start

    problems, statuses = [], []
    for i, layer in enumerate(stats["activations"], 1):
        label = f"layer {i} ({layer['kind']})"
        scale = _scale_status(layer["std_ratio"])
        sat = _limit_status(layer["saturated"], SATURATED_LIMITS)
        dead = _limit_status(layer["dead"], DEAD_LIMITS)
        layer["status"] = _worst([scale, sat, dead])
        statuses.append(layer["status"])
        if scale != "pass":
            what = "vanish" if layer["std_ratio"] < SCALE_WARN[0] else "explode"
            problems.append(f"{label}: activations {what} (std {layer['std_ratio']:.2g} x input)")
        if sat != "pass":
            problems.append(f"{label}: {100 * layer['saturated']:.0f}% saturated")
        if dead != "pass":
            problems.append(f"{label}: {100 * layer['dead']:.0f}% dead units")
    n_act = len(stats["activations"])
    if n_act == 0:
        act = CheckResult("activations", "warn", "no activation layers found to probe", {}, seconds)
    else:
        worst_sat = max(layer["saturated"] for layer in stats["activations"])
        worst_dead = max(layer["dead"] for layer in stats["activations"])
        ratios = [layer["std_ratio"] for layer in stats["activations"]]
        summary = (
            f"{n_act} layers: std {min(ratios):.2g} .. {max(ratios):.2g} x input, "
            f"saturated <= {100 * worst_sat:.0f}%, dead <= {100 * worst_dead:.0f}%"
        )
        if problems:
            summary += "; " + "; ".join(problems[:3]) + ("; ..." if len(problems) > 3 else "")
        act = CheckResult(
            "activations",
            _worst(statuses),
            summary,
            {"input_std": stats["input_std"], "layers": stats["activations"]},
            seconds,
        )

    g_problems, g_statuses = [], []
    for i, layer in enumerate(stats["gradients"], 1):
        layer["status"] = _scale_status(layer["grad_ratio"])
        g_statuses.append(layer["status"])
        if layer["status"] != "pass":
            what = "vanishes" if layer["grad_ratio"] < SCALE_WARN[0] else "explodes"
            g_problems.append(
                f"layer {i} ({layer['kind']}): gradient {what} "
                f"({layer['grad_ratio']:.2g} x the logits')"
            )
    ratios = [layer["grad_ratio"] for layer in stats["gradients"]]
    g_summary = (
        f"{len(ratios)} weight layers: |dL/d output| {min(ratios):.2g} .. {max(ratios):.2g} x "
        "the logits'"
        if ratios
        else "no weight layers found"
    )
    if g_problems:
        g_summary += "; " + "; ".join(g_problems[:3]) + ("; ..." if len(g_problems) > 3 else "")
    grad = CheckResult(
        "gradients",
        _worst(g_statuses) if ratios else "warn",
        g_summary,
        {
            "logit_grad_norm": stats["logit_grad_norm"],
            "loss": stats["loss"],
            "layers": stats["gradients"],
        },
        0.0,
    )
    return [act, grad]


# -- all of them ---------------------------------------------------------------------------------
CHECKS = ("initial-loss", "regularization", "overfit-20", "lr-range", "activations", "gradients")


@dataclass
class Report:
    config: dict
    checks: list[CheckResult]
    seconds: float
    data: dict

    @property
    def by_name(self) -> dict:
        return {c.name: c for c in self.checks}

    def as_dict(self) -> dict:
        return {
            "checks": [c.as_dict() for c in self.checks],
            "counts": {s: sum(c.status == s for c in self.checks) for s in STATUSES},
            "seconds": self.seconds,
            "data": self.data,
            "config": self.config,
            "versions": runs.versions(),
            "thresholds": {
                "initial_loss_relative": INITIAL_LOSS_TOL,
                "probe_l2": PROBE_L2,
                "saturated_slope": SATURATED_SLOPE,
                "saturated_fraction": SATURATED_LIMITS,
                "dead_fraction": DEAD_LIMITS,
                "scale_warn": SCALE_WARN,
                "scale_fail": SCALE_FAIL,
            },
        }


def run_checks(
    cfg: dict,
    prepared: dict | None = None,
    overfit_steps: int = 200,
    lr_min: float = 1e-6,
    lr_max: float = 10.0,
    lr_steps: int = 200,
    probe_l2: float = PROBE_L2,
    log=None,
) -> Report:
    """Every check on ``cfg`` (a resolved training config); ``prepared`` defaults to the config's
    data. ``log(check)`` is called as each check finishes."""
    start = time.perf_counter()
    if prepared is None:
        prepared = prepare(cfg)
    checks: list[CheckResult] = []

    def add(results):
        for r in results if isinstance(results, list) else [results]:
            checks.append(r)
            if log is not None:
                log(r)

    add(initial_loss(cfg, prepared))
    add(regularization_raises_loss(cfg, prepared, probe_l2=probe_l2))
    add(overfit_small(cfg, prepared, 20, overfit_steps))
    add(lr_range_test(cfg, prepared, lr_min, lr_max, lr_steps))
    add(activations_and_gradients(cfg, prepared))
    data = {
        "dataset": cfg["data"]["dataset"],
        "train": int(len(prepared["y_train"])),
        "validation": int(len(prepared["y_val"])),
        "in_shape": list(prepared["in_shape"]),
        "classes": int(prepared["num_classes"]),
    }
    return Report(cfg, checks, time.perf_counter() - start, data)


def format_table(report: Report, layers: bool = True) -> str:
    """The checks as a text table (and, with ``layers``, the per-layer statistics)."""
    rows = [("check", "status", "result")]
    rows += [(c.name, c.status.upper(), c.summary) for c in report.checks]
    width = max(len(r[0]) for r in rows)
    lines = [f"{name:<{width}}  {status:<6}  {summary}" for name, status, summary in rows]
    lines.insert(1, "-" * width + "  " + "-" * 6 + "  " + "-" * 40)
    by = report.by_name
    if layers and "activations" in by and by["activations"].numbers.get("layers"):
        lines += ["", "activations at init (training mode, one batch):"]
        lines.append(
            f"  {'#':>2}  {'layer':<12} {'kind':<10} {'std/input':>9} {'saturated':>9} "
            f"{'dead':>6}  status"
        )
        for i, a in enumerate(by["activations"].numbers["layers"], 1):
            lines.append(
                f"  {i:>2}  {a['layer']:<12} {a['kind']:<10} {a['std_ratio']:>9.3g} "
                f"{100 * a['saturated']:>8.1f}% {100 * a['dead']:>5.1f}%  {a['status']}"
            )
    if layers and "gradients" in by and by["gradients"].numbers.get("layers"):
        lines += ["", "gradients at init (|dL/d output| of each weight layer / at the logits):"]
        lines.append(
            f"  {'#':>2}  {'layer':<12} {'kind':<10} {'ratio':>9} {'|W|':>9} {'|dL/dW|':>9}  status"
        )
        for i, g in enumerate(by["gradients"].numbers["layers"], 1):
            lines.append(
                f"  {i:>2}  {g['layer']:<12} {g['kind']:<10} {g['grad_ratio']:>9.3g} "
                f"{g['weight_norm']:>9.3g} {g['weight_grad_norm']:>9.3g}  {g['status']}"
            )
    return "\n".join(lines)


_COLORS = {"pass": "tab:green", "warn": "tab:orange", "fail": "tab:red"}


def plot_report(report: Report):
    """A matplotlib Figure (no pyplot state): initial loss, overfitting 20 samples, the LR range
    test, activation scale, saturated / dead fractions, gradient ratios."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 8.4), layout="constrained")
    axes = fig.subplots(2, 3)
    by = report.by_name

    def title(ax, name, text):
        status = by[name].status if name in by else "pass"
        ax.set_title(f"{text} [{status}]", fontsize=10, color=_COLORS[status])

    ax = axes[0, 0]
    if "initial-loss" in by and "regularization" in by:
        init, reg = by["initial-loss"].numbers, by["regularization"].numbers
        values = [init["loss"], reg["loss_with_l2"]]
        labels = ["at init\n(no regularization)", f"with L2 {reg['l2']:g}"]
        ax.bar(labels, values, color=["tab:blue", "tab:purple"])
        ax.axhline(init["ln_classes"], color="k", ls="--", label=f"ln({init['classes']})")
        for i, v in enumerate(values):
            ax.text(i, v, f"{v:.3f}", ha="center", va="bottom", fontsize=9)
        ax.set_ylabel("cross-entropy loss")
        ax.legend(fontsize=8, loc="lower right")
    title(ax, "initial-loss", "initial loss vs ln C")

    ax = axes[0, 1]
    if "overfit-20" in by:
        o = by["overfit-20"].numbers
        curve = o["curve"]
        ax.plot(curve["step"], curve["loss"], color="tab:blue", label="train loss")
        ax.set_xlabel("step (full batch)")
        ax.set_ylabel("loss", color="tab:blue")
        ax.set_yscale("log")
        twin = ax.twinx()
        twin.plot(curve["step"], curve["accuracy"], color="tab:green", label="accuracy (eval)")
        twin.set_ylim(0, 1.05)
        twin.set_ylabel("accuracy on the subset", color="tab:green")
        title(ax, "overfit-20", f"overfit {o['n']} samples (budget {o['max_steps']} steps)")

    ax = axes[0, 2]
    if "lr-range" in by:
        r = by["lr-range"].numbers
        lrs, losses = np.asarray(r["lrs"], float), np.asarray(r["losses"], float)
        ok = np.isfinite(losses)
        ax.plot(lrs[ok], losses[ok], color="0.7", lw=0.8, label="loss per step")
        if ok.sum() >= 3:
            ax.plot(
                lrs[ok],
                centred_smooth(losses[ok], max(5, len(losses) // 20)),
                "tab:blue",
                label="smoothed",
            )
        if r.get("suggested"):
            low, high = r["suggested"]
            ax.axvspan(low, high, color="tab:green", alpha=0.2, label="suggested range")
        if r.get("lr_blowup"):
            ax.axvline(r["lr_blowup"], color="tab:red", ls=":", label="blow-up")
        ax.axvline(r["config_lr"], color="k", ls="--", label=f"config lr {r['config_lr']:g}")
        ax.set_xscale("log")
        finite = losses[ok]
        if len(finite):
            ax.set_ylim(
                0,
                min(float(finite.max()), 3 * float(finite[: max(1, len(finite) // 5)].mean()))
                * 1.05,
            )
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        ax.legend(fontsize=7)
    title(ax, "lr-range", "LR range test")

    acts = by["activations"].numbers.get("layers", []) if "activations" in by else []
    grads = by["gradients"].numbers.get("layers", []) if "gradients" in by else []
    ax = axes[1, 0]
    if acts:
        idx = np.arange(1, len(acts) + 1)
        ax.bar(idx, [a["std_ratio"] for a in acts], color=[_COLORS[a["status"]] for a in acts])
        ax.set_yscale("log")
        for lo, hi, c in ((*SCALE_WARN, "tab:orange"), (*SCALE_FAIL, "tab:red")):
            ax.axhline(lo, color=c, ls=":", lw=1)
            ax.axhline(hi, color=c, ls=":", lw=1)
        ax.set_xticks(idx, [f"{i}\n{a['kind']}" for i, a in zip(idx, acts)], fontsize=7)
        ax.set_ylabel("activation std / input std")
    title(ax, "activations", "activation scale at init")

    ax = axes[1, 1]
    if acts:
        idx = np.arange(1, len(acts) + 1)
        ax.bar(idx - 0.2, [a["saturated"] for a in acts], 0.4, label="saturated (|f'| < 0.01)")
        ax.bar(idx + 0.2, [a["dead"] for a in acts], 0.4, label="dead units")
        ax.axhline(DEAD_LIMITS[0], color="tab:orange", ls=":", lw=1, label="dead: warn")
        ax.set_ylim(0, 1)
        ax.set_xticks(idx, [f"{i}\n{a['kind']}" for i, a in zip(idx, acts)], fontsize=7)
        ax.set_ylabel("fraction")
        ax.legend(fontsize=7)
    title(ax, "activations", "saturated and dead units at init")

    ax = axes[1, 2]
    if grads:
        idx = np.arange(1, len(grads) + 1)
        ax.bar(idx, [g["grad_ratio"] for g in grads], color=[_COLORS[g["status"]] for g in grads])
        ax.set_yscale("log")
        for lo, hi, c in ((*SCALE_WARN, "tab:orange"), (*SCALE_FAIL, "tab:red")):
            ax.axhline(lo, color=c, ls=":", lw=1)
            ax.axhline(hi, color=c, ls=":", lw=1)
        ax.set_xticks(idx, [f"{i}\n{g['kind']}" for i, g in zip(idx, grads)], fontsize=7)
        ax.set_ylabel("|dL/d output| / |dL/d logits|")
    title(ax, "gradients", "gradient norms at init")
    m = report.config["model"]
    fig.suptitle(
        f"nnparts babysit: {m['name']} on {report.data['dataset']} "
        f"({report.data['train']} training images, seed {report.config['seed']})",
        fontsize=11,
    )
    return fig


def write_report(report: Report, out: str) -> dict:
    """Write ``out/babysit.json`` and ``out/babysit.png`` (each atomically); return the paths."""
    os.makedirs(out, exist_ok=True)
    paths = {"json": os.path.join(out, "babysit.json"), "figure": os.path.join(out, "babysit.png")}
    tmp = paths["json"] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(jsonable(report.as_dict()), f, indent=2)
        f.write("\n")
    os.replace(tmp, paths["json"])
    fig = plot_report(report)
    tmp = paths["figure"] + ".tmp"
    fig.savefig(tmp, format="png", dpi=100)
    os.replace(tmp, paths["figure"])
    return paths
