"""The lab: the course's claims run on real data, each with figures, numbers and a verdict
computed from a rule stated before the run.

From Python (a notebook)::

    import nnparts.lab as lab
    result = lab.run("conv-arithmetic", quick=True)   # nothing written unless out= is given
    result.verdict, result.records, result.figures     # "reproduced", numbers, matplotlib figures
    lab.run("all", quick=True, out="runs/lab")        # every experiment, index.html + results.json

From the shell: ``nnparts lab list``, ``nnparts lab show NAME``,
``nnparts lab run NAME... | all [--quick] [--seeds N] [--out DIR]``.

One module per unit of the course registers its experiments with the engine
(:mod:`nnparts.lab.engine`); the report (:mod:`nnparts.lab.report`) knows nothing of any claim.
"""

from __future__ import annotations

import importlib
import time

from nnparts.lab import engine as _engine
from nnparts.lab.engine import (
    VERDICTS,
    Check,
    Context,
    Experiment,
    LabError,
    Result,
    Rule,
    experiment,
    run_experiment,
)

# the units, in the course's order; each module registers its experiments on import
UNITS = (
    "nnparts.lab.unit01_activation",
    "nnparts.lab.unit02_initialization",
    "nnparts.lab.unit03_normalization",
    "nnparts.lab.babysitting",
    "nnparts.lab.unit04_optimization",
    "nnparts.lab.unit05_regularization",
    "nnparts.lab.hyperparameters",
    "nnparts.lab.cnn",
)


_loaded = False


def _load_units():
    """Import the units (they register their experiments) on first use, not at import time:
    ``nnparts --help`` and the other commands need not load SciPy and every experiment."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in UNITS:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:  # a unit not written yet
            if e.name != module:
                raise
    # the page's order is the course's (UNITS), then each module's own, whatever imported first
    rank = {module: i for i, module in enumerate(UNITS)}
    ordered = sorted(
        _engine.REGISTRY.values(), key=lambda e: (rank.get(e.fn.__module__, len(UNITS)), e.order)
    )
    for i, exp in enumerate(ordered):
        exp.order = i


def __getattr__(name):
    if name == "REGISTRY":
        _load_units()
        return _engine.REGISTRY
    raise AttributeError(f"module 'nnparts.lab' has no attribute {name!r}")


def get(name: str) -> Experiment:
    """An experiment by name (see :func:`nnparts.lab.engine.get`)."""
    _load_units()
    return _engine.get(name)


def select(names) -> list[Experiment]:
    """Experiments by name, unit or ``"all"`` (see :func:`nnparts.lab.engine.select`)."""
    _load_units()
    return _engine.select(names)


def run(
    names="all",
    quick: bool = False,
    seeds: int | None = None,
    out: str | None = None,
    progress: bool = False,
    log=None,
    keep_going: bool = False,
    update: bool = False,
):
    """Run experiments by name (or unit, or ``"all"``) and return their results.

    Returns one :class:`Result` when ``names`` is a single experiment name, else a list. With
    ``out`` the figures, ``results.json`` and ``index.html`` are written there (the page is
    rewritten after each experiment, so an interrupted run keeps what finished). ``log`` gets
    one line per finished experiment. With ``keep_going`` an experiment that raises is logged
    with its traceback and skipped, and :class:`ExperimentsFailed` is raised at the end. With
    ``update`` the other experiments of an existing ``out/results.json`` stay on the page (rerun
    one experiment without rerunning the rest).
    """
    from nnparts.lab import report

    _load_units()
    single = isinstance(names, str) and names in _engine.REGISTRY
    chosen = select(names)
    results = []
    start = time.perf_counter()
    failed = []
    kept = []
    if out and update:
        try:
            kept = report.read_kept(out, quick)
        except ValueError as e:
            raise LabError(str(e)) from None
    order = {name: e.order for name, e in _engine.REGISTRY.items()}
    for exp in chosen:
        try:
            result = run_experiment(exp, quick=quick, seeds=seeds, progress=progress)
        except Exception:
            if not keep_going:
                raise
            import traceback

            failed.append(exp.name)
            if log is not None:
                log(f"{exp.name:<28} FAILED\n{traceback.format_exc()}")
            continue
        results.append(result)
        if out:
            report.save_figures(result, out)
            report.write(results, out, quick, time.perf_counter() - start, kept, order)
        if log is not None:
            log(f"{exp.name:<28} {result.verdict:<15} {result.seconds:6.1f} s")
    if failed:
        raise ExperimentsFailed(failed, results)
    return results[0] if single else results


class ExperimentsFailed(RuntimeError):
    """Some experiments raised (``names``); ``results`` holds those that finished."""

    def __init__(self, names, results):
        super().__init__(f"{len(names)} experiment(s) failed: {', '.join(names)}")
        self.names, self.results = names, results


__all__ = [
    "ExperimentsFailed",
    "REGISTRY",
    "VERDICTS",
    "Check",
    "Context",
    "Experiment",
    "LabError",
    "Result",
    "Rule",
    "experiment",
    "get",
    "run",
    "run_experiment",
    "select",
]
