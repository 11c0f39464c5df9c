"""The search space: the ``search:`` section of a config, validated, in Optuna's terms.

One entry per dotted config key::

    search:
      optimizer.lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
      train.batch_size: {type: int, low: 32, high: 256, step: 32}
      model.hidden: {type: categorical, choices: [[100], [200, 100]]}
      model.dropout: {type: float, low: 0.0, high: 0.5, grid: [0.0, 0.25, 0.5]}

Every value the search can reach is checked by the same rules as ``nnparts train`` before the
first trial: each categorical choice, each grid value and both bounds of each range are put in
the training config and resolved (:func:`nnparts.train.config.resolve`), so a value the training
run would reject is an error now, not a failed trial later.

Optuna's categorical choices must be scalars; list values (``model.hidden``) are passed to Optuna
as their JSON text (``"[200, 100]"``) and turned back into lists here.
"""

from __future__ import annotations

import copy
import json
import math

from nnparts.train import config as configs
from nnparts.train.config import ConfigError

TYPES = ("float", "int", "categorical")
_ENTRY_KEYS = {
    "float": {"type", "low", "high", "log", "step", "grid"},
    "int": {"type", "low", "high", "log", "step", "grid"},
    "categorical": {"type", "choices"},
}


def set_dotted(cfg: dict, key: str, value) -> dict:
    """``set_dotted(cfg, "optimizer.lr", 0.01)`` sets ``cfg["optimizer"]["lr"]`` (in place)."""
    node = cfg
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"search key {key!r}: {part!r} is not a config section")
    node[parts[-1]] = value
    return cfg


def get_dotted(cfg: dict, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def encode_choice(value):
    """A choice as Optuna stores it: scalars as they are, lists/mappings as JSON text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value)


class SearchSpace:
    """A validated search space: ``entries`` maps a dotted key to its normalized spec."""

    def __init__(self, entries: dict):
        self.entries = entries

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def parse(cls, search: dict, base_file_config: dict | None = None, overrides=None):
        """Validate a ``search:`` mapping against the training config it modifies."""
        if not isinstance(search, dict) or not search:
            raise ConfigError(
                "the config needs a non-empty search: section, e.g. "
                "search: {optimizer.lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}}"
            )
        entries = {}
        for key, spec in search.items():
            entries[key] = _normalize(key, spec)
        space = cls(entries)
        space.check_values(base_file_config, overrides)
        return space

    def check_values(self, base_file_config=None, overrides=None):
        """Resolve the training config with every choice, grid value and range bound."""
        for key, spec in self.entries.items():
            for value in self.reachable_values(key):
                cfg = copy.deepcopy(base_file_config or {})
                # the search value wins over the file; command-line overrides of other keys stay
                ov = copy.deepcopy(overrides or {})
                _drop_dotted(ov, key)
                set_dotted(cfg, key, value)
                try:
                    configs.resolve(cfg, ov)
                except ConfigError as e:
                    what = "choice" if spec["type"] == "categorical" else "value"
                    raise ConfigError(
                        f"search {key}: {what} {value!r} is rejected by the training config: {e}"
                    ) from None

    def reachable_values(self, key: str) -> list:
        spec = self.entries[key]
        if spec["type"] == "categorical":
            return list(spec["choices"])
        values = [spec["low"], spec["high"]]
        if spec.get("grid") is not None:
            values += list(spec["grid"])
        return values

    # -- use ------------------------------------------------------------------------------------
    def suggest(self, trial) -> dict:
        """Ask an Optuna trial for one value per key; returns ``{dotted key: config value}``."""
        values = {}
        for key, spec in self.entries.items():
            if spec["type"] == "categorical":
                encoded = [encode_choice(c) for c in spec["choices"]]
                picked = trial.suggest_categorical(key, encoded)
                values[key] = spec["choices"][encoded.index(picked)]
            elif spec["type"] == "int":
                values[key] = trial.suggest_int(
                    key, spec["low"], spec["high"], step=spec.get("step") or 1, log=spec["log"]
                )
            else:
                values[key] = trial.suggest_float(
                    key, spec["low"], spec["high"], step=spec.get("step"), log=spec["log"]
                )
        return values

    def decode(self, params: dict) -> dict:
        """Optuna's stored params of a trial -> ``{dotted key: config value}``."""
        values = {}
        for key, spec in self.entries.items():
            if key not in params:
                continue
            if spec["type"] == "categorical":
                encoded = [encode_choice(c) for c in spec["choices"]]
                values[key] = spec["choices"][encoded.index(params[key])]
            else:
                values[key] = params[key]
        return values

    def grid(self) -> dict:
        """The grid for Optuna's GridSampler: ``{key: [encoded values]}``."""
        out = {}
        for key, spec in self.entries.items():
            if spec["type"] == "categorical":
                out[key] = [encode_choice(c) for c in spec["choices"]]
            elif spec.get("grid") is not None:
                out[key] = list(spec["grid"])
            else:
                raise ConfigError(
                    f"search {key}: the grid sampler needs the values to try; give "
                    f"grid: [v1, v2, ...] (or use type: categorical), or use --sampler random/tpe"
                )
        return out

    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.grid().values())

    def to_dict(self) -> dict:
        return copy.deepcopy(self.entries)

    def describe(self) -> str:
        lines = []
        for key, spec in self.entries.items():
            if spec["type"] == "categorical":
                lines.append(f"  {key}: one of {spec['choices']}")
            else:
                text = f"  {key}: {spec['type']} in [{spec['low']:g}, {spec['high']:g}]"
                if spec["log"]:
                    text += " (log)"
                if spec.get("step"):
                    text += f" step {spec['step']:g}"
                if spec.get("grid") is not None:
                    text += f" grid {spec['grid']}"
                lines.append(text)
        return "\n".join(lines)


def _drop_dotted(d: dict, key: str):
    parts = key.split(".")
    node = d
    for part in parts[:-1]:
        if not isinstance(node, dict) or part not in node:
            return
        node = node[part]
    if isinstance(node, dict):
        node.pop(parts[-1], None)


def _normalize(key, spec) -> dict:
    where = f"search {key}"
    if not isinstance(key, str) or not key:
        raise ConfigError(f"search keys are dotted config keys like optimizer.lr, got {key!r}")
    if not isinstance(spec, dict):
        raise ConfigError(
            f"{where}: expected a mapping like {{type: float, low: 0.0001, high: 0.1}}, "
            f"got {spec!r}"
        )
    kind = spec.get("type")
    if kind not in TYPES:
        raise ConfigError(f"{where}: type {kind!r} is not one of {', '.join(TYPES)}")
    extra = set(spec) - _ENTRY_KEYS[kind]
    if extra:
        raise ConfigError(
            f"{where}: unknown field(s) {', '.join(sorted(extra))} for type {kind}; "
            f"allowed: {', '.join(sorted(_ENTRY_KEYS[kind]))}"
        )
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: choices must be a non-empty list, got {choices!r}")
        encoded = [encode_choice(c) for c in choices]
        if len(set(map(repr, encoded))) != len(encoded):
            raise ConfigError(f"{where}: choices {choices!r} repeat a value; list each once")
        return {"type": kind, "choices": list(choices)}

    grid = spec.get("grid")
    if grid is not None:
        if not isinstance(grid, list) or not grid or not all(_is_number(v) for v in grid):
            raise ConfigError(f"{where}: grid must be a non-empty list of numbers, got {grid!r}")
        if kind == "int" and not all(isinstance(v, int) for v in grid):
            raise ConfigError(f"{where}: grid of an int entry must hold integers, got {grid!r}")
        if len(set(grid)) != len(grid):
            raise ConfigError(f"{where}: grid {grid!r} repeats a value; list each once")
    low, high = spec.get("low"), spec.get("high")
    if grid is not None and low is None and high is None:
        low, high = min(grid), max(grid)
    for name, value in (("low", low), ("high", high)):
        if not _is_number(value):
            raise ConfigError(f"{where}: {name} must be a number, got {value!r}")
        if kind == "int" and not isinstance(value, int):
            raise ConfigError(f"{where}: {name} of an int entry must be an integer, got {value!r}")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log must be true or false, got {log!r}")
    if low > high:
        raise ConfigError(
            f"{where}: range [{low}, {high}] is inverted; expected low < high "
            f"(swap them: low: {high}, high: {low})"
        )
    if low == high and grid is None:
        raise ConfigError(
            f"{where}: range [{low}, {high}] is empty; widen it or set {key} in the config instead"
        )
    if log and low <= 0:
        raise ConfigError(
            f"{where}: a log range needs bounds > 0, got low={low}; use a positive low (e.g. "
            f"{high / 1000:g}) or log: false"
        )
    step = spec.get("step")
    if step is not None:
        if not _is_number(step) or step <= 0 or (kind == "int" and not isinstance(step, int)):
            raise ConfigError(f"{where}: step must be a positive {kind}, got {step!r}")
        if log:
            raise ConfigError(f"{where}: step and log: true cannot be combined; drop one")
    if grid is not None and any(v < low or v > high for v in grid):
        raise ConfigError(
            f"{where}: grid {grid!r} has values outside [low, high] = [{low}, {high}]"
        )
    out = {"type": kind, "low": low, "high": high, "log": log, "step": step}
    if grid is not None:
        out["grid"] = list(grid)
    return out


def narrow(space: SearchSpace, top_values: list[dict], margin: float) -> SearchSpace:
    """Coarse-to-fine: a new space around the best configurations of a first round.

    For a numeric key with range ``[low, high]`` (in log10 units when ``log: true``) and the
    top-k values ``v_1..v_k``: the new range is
    ``[max(low, min(v) - margin * (high - low)), min(high, max(v) + margin * (high - low))]``,
    integers widened to whole steps. A categorical key keeps only the choices seen in the top-k
    (in their original order); grid values keep those inside the new range (at least the top-k
    ones).

    Args:
        space: the first round's space.
        top_values: ``{key: value}`` of each of the top-k trials (decoded config values).
        margin: fraction of the original width added on each side of the top-k's span.
    """
    if not top_values:
        raise ConfigError("coarse-to-fine: the first round has no finished trial to narrow around")
    if not _is_number(margin) or margin < 0:
        raise ConfigError(f"coarse-to-fine margin must be a number >= 0, got {margin!r}")
    entries = {}
    for key, spec in space.entries.items():
        values = [t[key] for t in top_values if key in t]
        new = dict(spec)
        if spec["type"] == "categorical":
            seen = [json.dumps(v, sort_keys=True) for v in values]
            new["choices"] = [c for c in spec["choices"] if json.dumps(c, sort_keys=True) in seen]
            entries[key] = new
            continue
        fwd = math.log10 if spec["log"] else (lambda v: v)
        inv = (lambda u: 10.0**u) if spec["log"] else (lambda u: u)
        lo, hi = fwd(spec["low"]), fwd(spec["high"])
        width = hi - lo
        new_lo = max(lo, min(fwd(v) for v in values) - margin * width)
        new_hi = min(hi, max(fwd(v) for v in values) + margin * width)
        new_low, new_high = inv(new_lo), inv(new_hi)
        if spec["log"]:  # undo rounding of 10**log10(x) at the original bounds
            new_low = spec["low"] if new_lo == lo else new_low
            new_high = spec["high"] if new_hi == hi else new_high
        if spec["type"] == "int":
            step = spec.get("step") or 1
            base = spec["low"]
            new_low = base + math.floor((new_low - base) / step + 1e-9) * step
            new_high = base + math.ceil((new_high - base) / step - 1e-9) * step
            new_low, new_high = int(max(new_low, spec["low"])), int(min(new_high, spec["high"]))
        elif spec.get("step"):
            step, base = spec["step"], spec["low"]
            new_low = base + math.floor((new_low - base) / step + 1e-9) * step
            new_high = base + math.ceil((new_high - base) / step - 1e-9) * step
            new_low, new_high = max(new_low, spec["low"]), min(new_high, spec["high"])
        new["low"], new["high"] = new_low, new_high
        if spec.get("grid") is not None:
            new["grid"] = [v for v in spec["grid"] if new_low <= v <= new_high or v in values]
            new["low"] = min(new["low"], min(new["grid"]))
            new["high"] = max(new["high"], max(new["grid"]))
        elif new["low"] == new["high"]:  # all top-k at one bound and margin 0: keep one step
            pad = (spec.get("step") or (1 if spec["type"] == "int" else 0)) or None
            if pad is None:
                new = {"type": "categorical", "choices": [new["low"]]}
            else:
                new["high"] = min(spec["high"], new["low"] + pad)
                new["low"] = max(spec["low"], new["high"] - pad)
        entries[key] = new
    return SearchSpace(entries)
