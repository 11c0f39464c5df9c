"""The lab's engine: experiments, verdict rules, runs. It knows nothing of any one claim.

An experiment is a declaration (the claim in the course's words, its source, the setup, what is
measured, and the verdict rule as data) plus one function that measures::

    @experiment(
        name="conv-arithmetic",
        unit="cnn",
        claims=[42],
        claim="The output size of a convolution is (H + 2P - K) / S + 1.",
        source="002 boostcamp notes",
        setup="Conv2d on random inputs over a table of (H, K, P, S).",
        measures="the largest |formula - actual output size| over the table",
        rule=Rule(Check("max_size_error", "==", 0)),
    )
    def conv_arithmetic(ctx):
        for seed in ctx.seeds:
            ...
            ctx.record(seed, max_size_error=0)
        fig, ax = ctx.figure("sizes")
        ...

The function records numbers with ``ctx.record(seed, group=None, **numbers)`` — once per seed
(and per group, e.g. per dataset) — and draws figures with ``ctx.figure(name)``. The engine
computes the verdict from the recorded numbers with the rule; nothing else decides it:

* a :class:`Check` compares a recorded number with a constant or with another number;
* a :class:`Rule` holds when all its checks hold. It is evaluated on each (group, seed) record
  (``over="seeds"``), or on the per-group mean over seeds (``over="mean"``), and the verdict is
  **reproduced** where it holds on every one, **not reproduced** where it holds on none, and
  **mixed** otherwise.
"""

from __future__ import annotations

import math
import operator
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

VERDICTS = ("reproduced", "not reproduced", "mixed")

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
}


class LabError(ValueError):
    """A bad experiment name, declaration or record: the message names it and the fix."""


@dataclass(frozen=True)
class Check:
    """``left op factor * right (+ offset)``, or ``|left - right| <= tol`` with ``op="~"``.

    ``left`` names a recorded number; ``right`` is a number or the name of another recorded
    number. Examples: ``Check("acc_relu", ">=", 0.95)``; ``Check("loss_he", "<", "loss_xavier")``;
    ``Check("std_ratio", ">", 10)``; ``Check("max_dsigmoid", "~", 0.25, tol=1e-3)``;
    ``Check("dead_relu", ">", "dead_leaky", factor=2)`` (at least twice as many).
    """

    left: str
    op: str
    right: float | str
    factor: float = 1.0
    offset: float = 0.0
    tol: float = 0.0
    label: str | None = None

    def __post_init__(self):
        if self.op not in _OPS and self.op != "~":
            raise LabError(f"unknown check operator {self.op!r}; allowed: {', '.join(_OPS)}, ~")

    def names(self) -> list[str]:
        return [self.left] + ([self.right] if isinstance(self.right, str) else [])

    def text(self) -> str:
        right = self.right if isinstance(self.right, str) else f"{self.right:g}"
        if self.op == "~":
            return self.label or f"|{self.left} - {right}| <= {self.tol:g}"
        if self.factor != 1.0:
            right = f"{self.factor:g} * {right}"
        if self.offset:
            right = f"{right} {'+' if self.offset > 0 else '-'} {abs(self.offset):g}"
        return self.label or f"{self.left} {self.op} {right}"

    def evaluate(self, numbers: dict) -> tuple[bool, float, float]:
        """(holds, left value, right value) on one record."""
        left = _number(numbers, self.left)
        right = _number(numbers, self.right) if isinstance(self.right, str) else float(self.right)
        if self.op == "~":
            return bool(abs(left - right) <= self.tol), left, right
        target = self.factor * right + self.offset
        if math.isnan(left) or math.isnan(target):
            return False, left, target
        return bool(_OPS[self.op](left, target)), left, target


def _number(numbers: dict, name: str) -> float:
    if name not in numbers:
        raise LabError(
            f"the rule needs the number {name!r}, which the experiment did not record; "
            f"recorded: {', '.join(sorted(numbers)) or 'nothing'}"
        )
    value = numbers[name]
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise LabError(f"the rule's number {name!r} is not a number: {value!r}") from None


@dataclass(frozen=True)
class Rule:
    """All ``checks`` must hold; ``over`` is ``"seeds"`` (each record) or ``"mean"`` (the mean
    of each group over its seeds). ``note`` is shown beside the rule on the page."""

    checks: tuple[Check, ...]
    over: str = "seeds"
    note: str = ""

    def __init__(self, *checks: Check, over: str = "seeds", note: str = ""):
        if not checks:
            raise LabError("a Rule needs at least one Check")
        if over not in ("seeds", "mean"):
            raise LabError(f"Rule over={over!r}; allowed: seeds, mean")
        object.__setattr__(self, "checks", tuple(checks))
        object.__setattr__(self, "over", over)
        object.__setattr__(self, "note", note)

    def text(self) -> str:
        where = "on every seed" if self.over == "seeds" else "on the mean over seeds"
        return " and ".join(c.text() for c in self.checks) + f" ({where})"

    def as_dict(self) -> dict:
        return {
            "text": self.text(),
            "over": self.over,
            "note": self.note,
            "checks": [
                {
                    "left": c.left,
                    "op": c.op,
                    "right": c.right,
                    "factor": c.factor,
                    "offset": c.offset,
                    "tol": c.tol,
                    "text": c.text(),
                }
                for c in self.checks
            ],
        }

    def verdict(self, records: list[dict]) -> tuple[str, list[dict]]:
        """The verdict and, for each evaluated unit, which checks held (for the page)."""
        if not records:
            raise LabError("the experiment recorded no numbers, so no verdict can be computed")
        units = records if self.over == "seeds" else mean_records(records)
        details = []
        for unit in units:
            results = [c.evaluate(unit) for c in self.checks]
            details.append(
                {
                    "group": unit.get("group"),
                    "seed": unit.get("seed") if self.over == "seeds" else "mean",
                    "holds": all(r[0] for r in results),
                    "checks": [
                        {"text": c.text(), "holds": r[0], "left": r[1], "right": r[2]}
                        for c, r in zip(self.checks, results)
                    ],
                }
            )
        held = sum(d["holds"] for d in details)
        if held == len(details):
            return "reproduced", details
        if held == 0:
            return "not reproduced", details
        return "mixed", details


def mean_records(records: list[dict]) -> list[dict]:
    """One record per group: the mean (and ``_std``) of each numeric field over the seeds."""
    groups: dict = {}
    for r in records:
        groups.setdefault(r.get("group"), []).append(r)
    out = []
    for group, rows in groups.items():
        mean: dict[str, Any] = {"group": group, "seed": "mean", "n_seeds": len(rows)}
        for key in rows[0]:
            if key in ("group", "seed"):
                continue
            values = [row.get(key) for row in rows]
            if all(_is_scalar(v) for v in values):
                arr = np.asarray(values, dtype=float)
                mean[key] = float(arr.mean())
                mean[key + "_std"] = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
        out.append(mean)
    return out


def _is_scalar(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating, bool, np.bool_))


@dataclass
class Experiment:
    """A claim of the course, how we test it, and the rule that decides the verdict."""

    name: str
    unit: str
    claims: list[int]
    claim: str
    source: str
    setup: str
    measures: str
    rule: Rule
    fn: Callable
    seeds: int = 3
    quick_setup: str = ""
    order: int = 0

    def describe(self) -> str:
        lines = [
            f"{self.name}  (unit {self.unit}; claims {', '.join(map(str, self.claims))})",
            f"claim:    {self.claim}  [{self.source}]",
            f"setup:    {self.setup}",
        ]
        if self.quick_setup:
            lines.append(f"--quick:  {self.quick_setup}")
        lines += [
            f"measures: {self.measures}",
            f"verdict:  reproduced if {self.rule.text()}; not reproduced if it holds on none; "
            "mixed otherwise",
        ]
        if self.rule.note:
            lines.append(f"note:     {self.rule.note}")
        lines.append(f"seeds:    {self.seeds} by default")
        return "\n".join(lines)


REGISTRY: dict[str, Experiment] = {}


def experiment(
    *,
    name: str,
    unit: str,
    claims: list[int],
    claim: str,
    source: str,
    setup: str,
    measures: str,
    rule: Rule,
    seeds: int = 3,
    quick_setup: str = "",
):
    """Register the decorated ``fn(ctx)`` as an experiment (see the module docstring)."""

    def register(fn):
        if name in REGISTRY:
            raise LabError(f"experiment {name!r} is registered twice")
        if not claims or not all(isinstance(c, int) and 1 <= c <= 45 for c in claims):
            raise LabError(f"experiment {name!r}: claims must be claim numbers 1..45, got {claims}")
        REGISTRY[name] = Experiment(
            name=name,
            unit=unit,
            claims=list(claims),
            claim=claim,
            source=source,
            setup=setup,
            measures=measures,
            rule=rule,
            fn=fn,
            seeds=seeds,
            quick_setup=quick_setup,
            order=len(REGISTRY),
        )
        return fn

    return register


class Context:
    """What an experiment's function gets: its seeds, quick mode, and where to put results.

    Attributes:
        seeds: the list of seeds to run (0, 1, 2, ... by default).
        quick: smaller data / fewer epochs; the same code path.
        progress: whether to show progress bars (``ctx.bar(iterable, total, desc)``).
    """

    def __init__(self, exp: Experiment, seeds: list[int], quick: bool, progress: bool = False):
        self.experiment = exp
        self.seeds = list(seeds)
        self.quick = bool(quick)
        self.progress = progress
        self.records: list[dict] = []
        self.figures: dict[str, Any] = {}
        self.tables: dict[str, dict] = {}
        self.notes: list[str] = []
        self.extra: dict[str, Any] = {}

    def pick(self, full, quick):
        """``quick`` in quick mode, else ``full`` (sizes, epochs, ...)."""
        return quick if self.quick else full

    def rng(self, seed: int, stream: int = 0) -> np.random.Generator:
        """A generator for ``seed`` (and an independent ``stream`` of it)."""
        return np.random.default_rng([int(seed), int(stream)])

    def record(self, seed, group: str | None = None, **numbers):
        """Record the numbers of one seed (and group). The verdict rule reads these."""
        for key, value in numbers.items():
            if isinstance(value, np.generic):
                numbers[key] = value.item()
        self.records.append({"group": group, "seed": seed, **numbers})

    def figure(self, name: str, nrows: int = 1, ncols: int = 1, figsize=None, **kwargs):
        """A new matplotlib figure (no pyplot state) saved as ``<experiment>-<name>.png``;
        returns ``(fig, axes)`` as ``plt.subplots`` does."""
        from matplotlib.figure import Figure

        if name in self.figures:
            raise LabError(f"experiment {self.experiment.name!r} made figure {name!r} twice")
        if figsize is None:
            figsize = (4.2 * ncols, 3.4 * nrows)
        fig = Figure(figsize=figsize, layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=True, **kwargs)
        self.figures[name] = fig
        return fig, axes

    def table(self, name: str, columns: list[str], rows: list[list]):
        """An extra table of numbers shown on the page (e.g. a per-layer breakdown)."""
        self.tables[name] = {"columns": list(columns), "rows": [list(r) for r in rows]}

    def note(self, text: str):
        """A sentence shown under the numbers (what we noticed; never the verdict)."""
        self.notes.append(text)

    def bar(self, iterable, total=None, desc=None):
        """A progress bar over ``iterable`` when progress is on (long experiments)."""
        if not self.progress:
            return iterable
        import sys

        from tqdm.auto import tqdm

        return tqdm(
            iterable,
            total=total,
            desc=desc or self.experiment.name,
            leave=False,
            dynamic_ncols=True,
            file=sys.stderr,
        )


@dataclass
class Result:
    """What one experiment produced: numbers, verdict, figures (matplotlib), timing."""

    experiment: Experiment
    records: list[dict]
    verdict: str
    details: list[dict]
    figures: dict[str, Any]
    tables: dict[str, dict]
    notes: list[str]
    seconds: float
    quick: bool
    seeds: list[int]
    figure_paths: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.experiment.name

    @property
    def mean(self) -> list[dict]:
        return mean_records(self.records)

    def as_dict(self) -> dict:
        e = self.experiment
        return {
            "name": e.name,
            "unit": e.unit,
            "claims": list(e.claims),
            "claim": e.claim,
            "source": e.source,
            "setup": e.quick_setup if (self.quick and e.quick_setup) else e.setup,
            "measures": e.measures,
            "verdict": self.verdict,
            "rule": e.rule.as_dict(),
            "rule_details": self.details,
            "numbers": {"per_seed": self.records, "mean": self.mean},
            "tables": self.tables,
            "notes": self.notes,
            "figures": list(self.figure_paths.values()),
            "seeds": self.seeds,
            "quick": self.quick,
            "seconds": self.seconds,
        }


def get(name: str) -> Experiment:
    if name not in REGISTRY:
        import difflib

        close = difflib.get_close_matches(name, REGISTRY, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise LabError(
            f"unknown experiment {name!r}{hint} (`nnparts lab list` shows all {len(REGISTRY)})"
        )
    return REGISTRY[name]


def select(names) -> list[Experiment]:
    """Experiments by name, unit name or ``"all"``, in registry order, without repeats."""
    if isinstance(names, str):
        names = [names]
    chosen: dict[str, Experiment] = {}
    for name in names:
        if name == "all":
            chosen.update(REGISTRY)
            continue
        units = [e for e in REGISTRY.values() if e.unit == name]
        if units and name not in REGISTRY:
            chosen.update({e.name: e for e in units})
            continue
        e = get(name)
        chosen[e.name] = e
    return sorted(chosen.values(), key=lambda e: e.order)


def run_experiment(
    exp: Experiment | str, quick: bool = False, seeds: int | None = None, progress: bool = False
) -> Result:
    """Run one experiment and compute its verdict; files are written by ``lab.report``."""
    if isinstance(exp, str):
        exp = get(exp)
    n = exp.seeds if seeds is None else int(seeds)
    if n < 1:
        raise LabError(f"seeds must be >= 1, got {n}")
    ctx = Context(exp, list(range(n)), quick=quick, progress=progress)
    start = time.perf_counter()
    # experiments drive nets to divergence on purpose (large learning rates, tiny inits): the
    # overflow is measured and reported, so NumPy's floating-point warnings are not printed
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        exp.fn(ctx)
    seconds = time.perf_counter() - start
    verdict, details = exp.rule.verdict(ctx.records)
    return Result(
        experiment=exp,
        records=ctx.records,
        verdict=verdict,
        details=details,
        figures=ctx.figures,
        tables=ctx.tables,
        notes=ctx.notes,
        seconds=seconds,
        quick=quick,
        seeds=ctx.seeds,
    )
