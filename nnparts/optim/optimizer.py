"""The optimizer base class and the update pieces every optimizer shares.

An optimizer owns a list of *parameter groups* (``param_groups``: dicts with ``"params"`` and the
hyperparameters, ``"lr"`` mutable so schedules can change it) and, per parameter, a dict of state
arrays (momentum buffers, moment estimates, step counts). ``step()`` walks the parameters whose
``.grad`` is not None and calls the subclass's ``_update(param, grad, state, group)`` on the raw
NumPy arrays; that update changes ``param`` **in place** (``Module.load_state_dict`` and the
user's references keep seeing the same array) and draws its temporaries from per-dtype scratch
buffers, so a step allocates nothing proportional to the model size.

The pieces that recur across optimizers are written once here, as in Optax's
``chain(scale_by_adam(...), scale_by_learning_rate(...))``:

* :func:`coupled_weight_decay` -- the L2 penalty's gradient ``g + wd * w``,
* :func:`decoupled_weight_decay_` -- AdamW's ``w <- w * (1 - lr * wd)``,
* :func:`ema_` -- a first-moment estimate ``m <- beta * m + (1 - beta) * g``,
* :func:`ema_square_` -- a second-moment estimate ``v <- beta * v + (1 - beta) * g * g``,
* :func:`bias_correction` -- ``1 - beta ** t``, the correction of a zero-initialised average.

``state_dict()`` format (plain NumPy arrays and JSON-able numbers, no pickle)::

    {"state": {"0": {"step": 3, "exp_avg": ndarray, ...}, "1": {...}},   # keyed by str(index)
     "param_groups": [{"lr": 0.001, "betas": [0.9, 0.999], ..., "params": [0, 1]}]}

Parameters are numbered in the order they appear in ``param_groups`` (as PyTorch does), so the
arrays can go to an ``.npz`` under ``"state/<index>/<name>"`` keys and the rest to JSON.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from nnparts.tensor import Tensor, enable_grad

__all__ = [
    "Optimizer",
    "bias_correction",
    "coupled_weight_decay",
    "decoupled_weight_decay_",
    "ema_",
    "ema_square_",
]


# ---------------------------------------------------------------------------------------------
# shared update pieces (all in place, temporaries passed in)


def coupled_weight_decay(grad, param, weight_decay, out):
    """``g + wd * w``: the gradient of the loss plus the L2 penalty ``wd/2 * ||w||^2``.

    Returns ``grad`` itself when ``weight_decay == 0`` (never modified), else ``out``.
    """
    if not weight_decay:
        return grad
    np.multiply(param, weight_decay, out=out)
    out += grad
    return out


def decoupled_weight_decay_(param, lr, weight_decay):
    """AdamW's decay, applied to the weights directly: ``w <- w * (1 - lr * wd)`` (in place)."""
    if weight_decay:
        param *= 1.0 - lr * weight_decay


def ema_(average, value, beta, tmp):
    """``m <- beta * m + (1 - beta) * x`` in place (PyTorch: ``m.lerp_(x, 1 - beta)``)."""
    np.subtract(value, average, out=tmp)
    tmp *= 1.0 - beta
    average += tmp


def ema_square_(average, value, beta, tmp):
    """``v <- beta * v + (1 - beta) * x * x`` in place (PyTorch: ``v.mul_(b).addcmul_(x, x)``)."""
    np.multiply(value, value, out=tmp)
    tmp *= 1.0 - beta
    average *= beta
    average += tmp


def bias_correction(beta, step):
    """``1 - beta ** t``: an average started at zero is too small by this factor at step t."""
    return 1.0 - beta**step


# ---------------------------------------------------------------------------------------------
# validation helpers (errors name the argument and say what would be right)


def check_nonnegative(name, value):
    if not isinstance(value, numbers.Real) or not value >= 0 or math.isinf(value):
        raise ValueError(f"invalid {name}={value!r}: expected a finite number >= 0")


def check_positive(name, value):
    if not isinstance(value, numbers.Real) or not value > 0 or math.isinf(value):
        raise ValueError(f"invalid {name}={value!r}: expected a finite number > 0")


def check_unit_interval(name, value, closed_right=False):
    ok = isinstance(value, numbers.Real) and (0 <= value <= 1 if closed_right else 0 <= value < 1)
    if not ok:
        interval = "[0, 1]" if closed_right else "[0, 1)"
        raise ValueError(f"invalid {name}={value!r}: expected a number in {interval}")


def check_betas(betas):
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"invalid betas={betas!r}: expected a pair (beta1, beta2) in [0, 1)")
    for i, b in enumerate(betas):
        check_unit_interval(f"betas[{i}]", b)


def _jsonable(value):
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


# ---------------------------------------------------------------------------------------------

_MAXIMIZE_SLOT = 7  # the scratch buffer holding -g for maximize=True (updates use slots 0-3)


class Optimizer:
    """Base class: parameter groups, per-parameter state, ``step``, ``zero_grad``, state dicts.

    ``maximize=True`` (a hyperparameter of every first-order optimizer, as in PyTorch) maximizes
    the objective instead: the update rule is applied to ``-g``, before weight decay, exactly
    where ``torch.optim`` negates it.

    Subclasses pass their defaults to ``__init__``, validate a group in ``_check_group`` and
    update one parameter in ``_update(param, grad, state, group)`` (NumPy arrays, in place).

    Args:
        params: an iterable of :class:`~nnparts.nn.Parameter` (or Tensors with
            ``requires_grad=True``), or of dicts ``{"params": [...], "lr": ..., ...}`` whose
            entries override the defaults for that group.
        defaults: the hyperparameters of every group that does not override them.
    """

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        if isinstance(params, Tensor):
            raise ValueError(
                "params should be an iterable of Parameters or of param-group dicts, got a single "
                "Tensor; wrap it in a list: [param]"
            )
        groups = list(params)
        if not groups:
            raise ValueError(
                "params is an empty parameter list: the optimizer needs at least one Parameter "
                "(did the model register its weights as nn.Parameter?)"
            )
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.param_groups: list[dict] = []
        self.state: dict[int, dict] = {}
        self._scratch_buffers: dict = {}
        for group in groups:
            self.add_param_group(group)

    # -- groups ---------------------------------------------------------------------------------
    def add_param_group(self, group: dict):
        """Add a dict ``{"params": [...], <hyperparameter overrides>}`` to ``param_groups``."""
        if not isinstance(group, dict) or "params" not in group:
            raise ValueError(
                f"a param group must be a dict with a 'params' key, got {type(group).__name__}"
            )
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        if not params:
            raise ValueError("params: a param group has an empty parameter list")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise ValueError(
                    f"params[{i}] is a {type(p).__name__}, expected a Parameter/Tensor"
                )
            if not p.requires_grad:
                raise ValueError(f"params[{i}] (shape {p.shape}) does not require a gradient")
            if id(p) in seen:
                raise ValueError(
                    f"params[{i}] (shape {p.shape}) appears in more than one place; "
                    "each parameter may belong to one group only"
                )
            seen.add(id(p))
        unknown = set(group) - set(self.defaults) - {"params", "initial_lr"}
        if unknown:
            raise ValueError(
                f"unknown hyperparameters {sorted(unknown)} for {type(self).__name__}; "
                f"valid: {sorted(self.defaults)}"
            )
        full = dict(self.defaults)
        full.update(group)
        full["params"] = params
        self._check_group(full)
        self.param_groups.append(full)

    def _check_group(self, group: dict):
        check_nonnegative("lr", group["lr"])

    # -- the update -----------------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True):
        """Forget the gradients (``p.grad = None``), as PyTorch does by default."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad[...] = 0

    def step(self, closure=None):
        """One update of every parameter that has a gradient. Returns ``closure()`` if given."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                grad = p.grad
                if grad is None:
                    continue
                if grad.shape != p.data.shape:
                    raise ValueError(
                        f"gradient shape {grad.shape} does not match parameter shape {p.shape}"
                    )
                state = self.state.get(id(p))
                if state is None:
                    state = self.state[id(p)] = {}
                if group.get("maximize"):  # ascend: every rule sees -g (before weight decay)
                    grad = np.negative(grad, out=self._scratch(grad, _MAXIMIZE_SLOT))
                self._update(p.data, grad, state, group)
        return loss

    def _update(self, param, grad, state, group):  # pragma: no cover - abstract
        raise NotImplementedError

    def _scratch(self, like: np.ndarray, slot: int = 0) -> np.ndarray:
        """A reusable temporary with ``like``'s shape and dtype (contents undefined)."""
        key = (like.dtype.str, slot)
        buf = self._scratch_buffers.get(key)
        if buf is None or buf.size < like.size:
            buf = self._scratch_buffers[key] = np.empty(like.size, dtype=like.dtype)
        return buf[: like.size].reshape(like.shape)

    # -- state ----------------------------------------------------------------------------------
    def _all_params(self):
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self) -> dict:
        """Copies of the state: see the module docstring for the format."""
        params = self._all_params()
        index = {id(p): i for i, p in enumerate(params)}
        groups, start = [], 0
        for group in self.param_groups:
            saved = {k: _jsonable(v) for k, v in group.items() if k != "params"}
            saved["params"] = list(range(start, start + len(group["params"])))
            start += len(group["params"])
            groups.append(saved)
        state = {}
        for pid, s in self.state.items():
            if pid in index:
                state[str(index[pid])] = {
                    k: (v.copy() if isinstance(v, np.ndarray) else _jsonable(v))
                    for k, v in s.items()
                }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict):
        """Restore a :meth:`state_dict` (copies the arrays; hyperparameters come from it)."""
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"state_dict has {len(saved_groups)} param groups, this optimizer has "
                f"{len(self.param_groups)}"
            )
        for i, (mine, theirs) in enumerate(zip(self.param_groups, saved_groups)):
            if len(mine["params"]) != len(theirs["params"]):
                raise ValueError(
                    f"param group {i} has {len(mine['params'])} parameters, the state_dict's has "
                    f"{len(theirs['params'])}"
                )
        params = self._all_params()
        new_state = {}
        for key, s in state_dict["state"].items():
            i = int(key)
            if not 0 <= i < len(params):
                raise ValueError(
                    f"state_dict has state for parameter {i}, only {len(params)} exist"
                )
            p = params[i]
            entry = {}
            for name, v in s.items():
                if isinstance(v, np.ndarray):
                    if v.ndim and v.shape != p.shape and name in self._param_shaped_state:
                        raise ValueError(
                            f"state {name!r} of parameter {i} has shape {v.shape}, the parameter "
                            f"has {p.shape}"
                        )
                    entry[name] = np.array(v, copy=True)
                else:
                    entry[name] = v
            new_state[id(p)] = entry
        self.state = new_state
        for mine, theirs in zip(self.param_groups, saved_groups):
            for k, v in theirs.items():
                if k == "params":
                    continue
                mine[k] = tuple(v) if isinstance(v, list) else v

    _param_shaped_state = frozenset(
        {
            "momentum_buffer",
            "sum",
            "square_avg",
            "acc_delta",
            "grad_avg",
            "exp_avg",
            "exp_avg_sq",
            "max_exp_avg_sq",
            "exp_inf",
            "prev",
            "step_size",
            "ax",
        }
    )

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(group):
                if k != "params":
                    lines.append(f"    {k}: {group[k]}")
        lines.append(")")
        return "\n".join(lines)
