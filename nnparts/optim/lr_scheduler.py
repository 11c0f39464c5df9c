"""Learning-rate schedules: StepLR, ExponentialLR, CosineAnnealingLR, LinearWarmup, ConstantLR,
PolynomialLR, WarmupLinear, ReduceLROnPlateau -- the same numbers as ``torch.optim.lr_scheduler``.

A scheduler rewrites ``group["lr"]`` of its optimizer's param groups at every ``step()`` (call it
once per epoch, after ``optimizer.step()``, as in PyTorch). The formulas are PyTorch's
"chainable" recursive forms, so several schedulers can act on one optimizer and the values
match PyTorch's to the last bit. ``state_dict()`` holds only JSON-able numbers.
"""

from __future__ import annotations

import math
import numbers

__all__ = [
    "ConstantLR",
    "CosineAnnealingLR",
    "ExponentialLR",
    "LRScheduler",
    "LinearWarmup",
    "PolynomialLR",
    "ReduceLROnPlateau",
    "StepLR",
    "WarmupLinear",
    "build",
]


def _check_optimizer(optimizer):
    if not hasattr(optimizer, "param_groups"):
        raise ValueError(
            f"optimizer must be an nnparts optimizer with param_groups, got "
            f"{type(optimizer).__name__}"
        )


class LRScheduler:
    """Base class: ``last_epoch`` counts ``step()`` calls; ``get_lr()`` gives the new lrs."""

    def __init__(self, optimizer, last_epoch: int = -1):
        _check_optimizer(optimizer)
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise ValueError(
                        f"param group {i} has no 'initial_lr'; last_epoch={last_epoch} resumes a "
                        "schedule, start with last_epoch=-1"
                    )
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._step_count = 0
        self.step()

    def get_lr(self) -> list[float]:  # pragma: no cover - abstract
        raise NotImplementedError

    def step(self):
        self._step_count += 1
        self.last_epoch += 1
        values = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, values):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        """The learning rates set by the last ``step()`` (one per param group)."""
        return list(self._last_lr)

    def state_dict(self) -> dict:
        """Every attribute except the optimizer (JSON-able numbers and lists)."""
        return {
            k: (list(v) if isinstance(v, list) else v)
            for k, v in self.__dict__.items()
            if k != "optimizer"
        }

    def load_state_dict(self, state_dict: dict):
        self.__dict__.update(
            {k: (list(v) if isinstance(v, list) else v) for k, v in state_dict.items()}
        )


def _positive_int(name, value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"invalid {name}={value!r}: expected an integer >= 1")


def _nonnegative_int(name, value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
        raise ValueError(f"invalid {name}={value!r}: expected an integer >= 0")


def _nonnegative(name, value):
    if not isinstance(value, numbers.Real) or not value >= 0:
        raise ValueError(f"invalid {name}={value!r}: expected a number >= 0")


class StepLR(LRScheduler):
    """Multiply the lr by ``gamma`` every ``step_size`` epochs:
    ``lr_t = lr_0 * gamma ** (t // step_size)``."""

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1):
        _positive_int("step_size", step_size)
        _nonnegative("gamma", gamma)
        self.step_size, self.gamma = int(step_size), float(gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return lrs
        return [lr * self.gamma for lr in lrs]


class ExponentialLR(LRScheduler):
    """``lr_t = lr_0 * gamma ** t``."""

    def __init__(self, optimizer, gamma: float, last_epoch: int = -1):
        _nonnegative("gamma", gamma)
        self.gamma = float(gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        if self.last_epoch == 0:
            return lrs
        return [lr * self.gamma for lr in lrs]


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing (Loshchilov & Hutter, 2017, "SGDR"), without restarts:

        lr_t = eta_min + (lr_0 - eta_min) * (1 + cos(pi * t / T_max)) / 2

    computed with PyTorch's recursive form (same numbers as ``torch``'s scheduler).
    """

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1):  # noqa: N803
        _positive_int("T_max", T_max)
        _nonnegative("eta_min", eta_min)
        self.T_max, self.eta_min = int(T_max), float(eta_min)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        groups = self.optimizer.param_groups
        t, T = self.last_epoch, self.T_max  # noqa: N806
        if t == 0:
            return [g["lr"] for g in groups]
        if self._step_count == 1 and t > 0:
            return [
                self.eta_min + (base - self.eta_min) * (1 + math.cos(t * math.pi / T)) / 2
                for base in self.base_lrs
            ]
        if (t - 1 - T) % (2 * T) == 0:
            return [
                g["lr"] + (base - self.eta_min) * (1 - math.cos(math.pi / T)) / 2
                for base, g in zip(self.base_lrs, groups)
            ]
        return [
            (1 + math.cos(math.pi * t / T))
            / (1 + math.cos(math.pi * (t - 1) / T))
            * (g["lr"] - self.eta_min)
            + self.eta_min
            for g in groups
        ]


class LinearWarmup(LRScheduler):
    """Linear learning-rate warmup, the heuristic the course mentions for Adam (Goyal et al.,
    2017, "Accurate, large minibatch SGD"): start at ``start_factor * lr`` and ramp linearly to
    ``end_factor * lr`` over ``warmup_steps`` steps, then stay there::

        lr_t = lr_0 * (start_factor + (end_factor - start_factor) * min(t, warmup_steps)
                       / warmup_steps)

    Equal to ``torch.optim.lr_scheduler.LinearLR(optimizer, start_factor, end_factor,
    total_iters=warmup_steps)`` (same defaults: 1/3, 1.0, 5), computed with its recursive form.
    ``start_factor`` must be > 0 (as in PyTorch); use e.g. 1e-3 for "from almost zero".
    """

    def __init__(
        self,
        optimizer,
        warmup_steps: int = 5,
        start_factor: float = 1.0 / 3,
        end_factor: float = 1.0,
        last_epoch: int = -1,
    ):
        _positive_int("warmup_steps", warmup_steps)
        if not isinstance(start_factor, numbers.Real) or not 0 < start_factor <= 1:
            raise ValueError(f"invalid start_factor={start_factor!r}: expected a number in (0, 1]")
        if not isinstance(end_factor, numbers.Real) or not 0 <= end_factor <= 1:
            raise ValueError(f"invalid end_factor={end_factor!r}: expected a number in [0, 1]")
        self.warmup_steps = int(warmup_steps)
        self.start_factor, self.end_factor = float(start_factor), float(end_factor)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        t, n = self.last_epoch, self.warmup_steps
        a, b = self.start_factor, self.end_factor
        if t == 0:
            return [lr * a for lr in lrs]
        if t > n:
            return lrs
        return [lr * (1.0 + (b - a) / (n * a + (t - 1) * (b - a))) for lr in lrs]


class ConstantLR(LRScheduler):
    """Hold the lr at ``factor * lr_0`` for the first ``total_iters`` steps, then at ``lr_0``
    (``torch.optim.lr_scheduler.ConstantLR``, same defaults 1/3 and 5, same recursive form)::

        lr_t = lr_0 * factor   for t < total_iters,     lr_t = lr_0   from t = total_iters on
    """

    def __init__(
        self, optimizer, factor: float = 1.0 / 3, total_iters: int = 5, last_epoch: int = -1
    ):
        if not isinstance(factor, numbers.Real) or not 0 < factor <= 1:
            raise ValueError(f"invalid factor={factor!r}: expected a number in (0, 1]")
        _nonnegative_int("total_iters", total_iters)
        self.factor, self.total_iters = float(factor), int(total_iters)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        if self.last_epoch == 0:
            return [lr * self.factor for lr in lrs]
        if self.last_epoch != self.total_iters:
            return lrs
        return [lr * (1.0 / self.factor) for lr in lrs]


class PolynomialLR(LRScheduler):
    """Polynomial decay to zero over ``total_iters`` steps, then zero
    (``torch.optim.lr_scheduler.PolynomialLR``, same defaults 5 and 1.0, same recursive form)::

        lr_t = lr_0 * (1 - min(t, total_iters) / total_iters) ** power

    ``power=1`` is a linear decay, ``power=2`` a quadratic one.
    """

    def __init__(self, optimizer, total_iters: int = 5, power: float = 1.0, last_epoch: int = -1):
        _positive_int("total_iters", total_iters)
        _nonnegative("power", power)
        self.total_iters, self.power = int(total_iters), float(power)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        t, n = self.last_epoch, self.total_iters
        if t == 0 or t > n:
            return lrs
        decay = ((1.0 - t / n) / (1.0 - (t - 1) / n)) ** self.power
        return [lr * decay for lr in lrs]


class WarmupLinear(LRScheduler):
    """Linear warmup, then linear decay: the one-cycle-like schedule airbench and BERT use,
    stepped once per batch (or per epoch; it is a schedule over ``step()`` calls ``t``)::

        lr_t = lr_0 * (s + (1 - s) * t / W)                   for t < W     (warmup)
        lr_t = lr_0 * (1 + (e - 1) * (t - W) / (T - W))       for W <= t < T (decay)
        lr_t = lr_0 * e                                       for t >= T

    with ``W = warmup_steps``, ``T = total_steps``, ``s = start_factor``, ``e = end_factor``;
    the peak ``lr_0`` (each group's own ``initial_lr``) is reached at ``t = W``. Equal to
    PyTorch's ``SequentialLR(opt, [LinearLR(opt, s, 1.0, W), LinearLR(opt, 1.0, e, T - W)],
    milestones=[W])``, computed in closed form from ``base_lrs`` (so it is not chained with
    another scheduler on the same optimizer). ``start_factor=0`` (the default, as Hugging
    Face's ``get_linear_schedule_with_warmup``) makes the first step's lr zero;
    ``warmup_steps=0`` is a plain linear decay.
    """

    def __init__(
        self,
        optimizer,
        total_steps: int,
        warmup_steps: int = 0,
        start_factor: float = 0.0,
        end_factor: float = 0.0,
        last_epoch: int = -1,
    ):
        _positive_int("total_steps", total_steps)
        _nonnegative_int("warmup_steps", warmup_steps)
        if warmup_steps >= total_steps:
            raise ValueError(
                f"invalid warmup_steps={warmup_steps!r}: expected fewer than "
                f"total_steps={total_steps}"
            )
        for name, value in (("start_factor", start_factor), ("end_factor", end_factor)):
            if not isinstance(value, numbers.Real) or not 0 <= value <= 1:
                raise ValueError(f"invalid {name}={value!r}: expected a number in [0, 1]")
        self.total_steps, self.warmup_steps = int(total_steps), int(warmup_steps)
        self.start_factor, self.end_factor = float(start_factor), float(end_factor)
        super().__init__(optimizer, last_epoch)

    def factor(self, t: int) -> float:
        """The multiplier of ``lr_0`` at step ``t``."""
        warmup, total = self.warmup_steps, self.total_steps
        if t < warmup:
            return self.start_factor + (1.0 - self.start_factor) * t / warmup
        if t >= total:
            return self.end_factor
        return 1.0 + (self.end_factor - 1.0) * (t - warmup) / (total - warmup)

    def get_lr(self):
        f = self.factor(self.last_epoch)
        return [base * f for base in self.base_lrs]


class ReduceLROnPlateau:
    """Divide the lr by ``1/factor`` when a metric has stopped improving for ``patience`` epochs
    (``torch.optim.lr_scheduler.ReduceLROnPlateau``: same arguments and rule).

    ``step(metric)`` once per epoch. "Improving" means ``metric < best * (1 - threshold)``
    (mode "min", threshold_mode "rel"), ``< best - threshold`` ("abs"), mirrored for "max".
    After a reduction, ``cooldown`` epochs pass before counting bad epochs again; lrs never go
    below ``min_lr`` and changes smaller than ``eps`` are skipped.
    """

    def __init__(
        self,
        optimizer,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr=0.0,
        eps: float = 1e-8,
    ):
        _check_optimizer(optimizer)
        if not isinstance(factor, numbers.Real) or not 0 <= factor < 1:
            raise ValueError(f"invalid factor={factor!r}: expected a number in [0, 1)")
        if mode not in ("min", "max"):
            raise ValueError(f"invalid mode={mode!r}: expected 'min' or 'max'")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"invalid threshold_mode={threshold_mode!r}: expected 'rel' or 'abs'")
        if not isinstance(patience, numbers.Integral) or patience < 0:
            raise ValueError(f"invalid patience={patience!r}: expected an integer >= 0")
        if not isinstance(cooldown, numbers.Integral) or cooldown < 0:
            raise ValueError(f"invalid cooldown={cooldown!r}: expected an integer >= 0")
        _nonnegative("threshold", threshold)
        self.optimizer = optimizer
        n = len(optimizer.param_groups)
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != n:
                raise ValueError(f"min_lr has {len(min_lr)} values, expected one per group ({n})")
            self.min_lrs = [float(v) for v in min_lr]
        else:
            self.min_lrs = [float(min_lr)] * n
        self.mode, self.factor, self.patience = mode, float(factor), int(patience)
        self.threshold, self.threshold_mode = float(threshold), threshold_mode
        self.cooldown, self.eps = int(cooldown), float(eps)
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0
        self._last_lr = [group["lr"] for group in optimizer.param_groups]

    def _is_better(self, a, best):
        if self.mode == "min":
            ref = (
                best * (1.0 - self.threshold)
                if self.threshold_mode == "rel"
                else best - self.threshold
            )
            return a < ref
        ref = (
            best * (1.0 + self.threshold) if self.threshold_mode == "rel" else best + self.threshold
        )
        return a > ref

    def step(self, metrics):
        current = float(metrics)
        self.last_epoch += 1
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for i, group in enumerate(self.optimizer.param_groups):
                old = float(group["lr"])
                new = max(old * self.factor, self.min_lrs[i])
                if old - new > self.eps:
                    group["lr"] = new
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        return list(self._last_lr)

    def state_dict(self) -> dict:
        return {
            k: (list(v) if isinstance(v, list) else v)
            for k, v in self.__dict__.items()
            if k != "optimizer"
        }

    def load_state_dict(self, state_dict: dict):
        self.__dict__.update(state_dict)


SCHEDULERS = {
    "step": StepLR,
    "steplr": StepLR,
    "exponential": ExponentialLR,
    "exponentiallr": ExponentialLR,
    "cosine": CosineAnnealingLR,
    "cosineannealinglr": CosineAnnealingLR,
    "linear_warmup": LinearWarmup,
    "linearwarmup": LinearWarmup,
    "warmup": LinearWarmup,
    "constant": ConstantLR,
    "constantlr": ConstantLR,
    "polynomial": PolynomialLR,
    "polynomiallr": PolynomialLR,
    "warmup_linear": WarmupLinear,
    "warmuplinear": WarmupLinear,
    "plateau": ReduceLROnPlateau,
    "reducelronplateau": ReduceLROnPlateau,
}


def build(name: str, optimizer, **kwargs):
    """Construct a scheduler by name (``"step"``, ``"cosine"``, ``"CosineAnnealingLR"``, ...)."""
    key = str(name).lower()
    if key not in SCHEDULERS:
        raise ValueError(f"unknown lr scheduler {name!r}; valid names: {sorted(SCHEDULERS)}")
    return SCHEDULERS[key](optimizer, **kwargs)
