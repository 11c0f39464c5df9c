"""The search loop: a study per round, workers that share it, results at the end.

A worker repeats, until the study holds the requested number of finished trials:

1. under the study lock: fail stale trials (heartbeat older than the grace period; their retry
   is queued with the same parameters), count the trials, and ask for a new one (a queued retry
   first) only while ``COMPLETE + PRUNED + RUNNING + WAITING`` is below the target — so no two
   workers overshoot the count, and the grid sampler never hands the same point out twice;
2. train the trial's config with a heartbeat thread running; tell the result.

A trial counts once it is COMPLETE or PRUNED (a diverged config is PRUNED, with the message in its
``diverged`` attribute). A FAIL never counts: a killed worker's trial is retried, and an
interrupted one (Ctrl-C) is marked FAIL and queued again for ``--resume``.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import warnings
from dataclasses import asdict, dataclass

from nnparts.train.config import ConfigError
from nnparts.tune import storage as storages
from nnparts.tune.space import SearchSpace, narrow

SPACE_ATTR = "nnparts_search_space"
SAMPLERS = ("grid", "random", "tpe", "gp")
PRUNERS = ("none", "median", "hyperband")


@dataclass
class Options:
    """Everything a search needs besides the configs (also what a worker process receives)."""

    out: str = "runs/tune"
    storage: str | None = None  # None: the embedded SQLite file in ``out``
    study: str = "search"
    sampler: str = "tpe"
    trials: int | None = None  # None: the study's stored target, else the grid size or 20
    seed: int = 0
    pruner: str = "none"
    startup_trials: int = 5  # pruner: trials before pruning starts; tpe/gp: random trials first
    warmup_epochs: int = 0  # pruner: epochs (or folds) never pruned
    cv: int | None = None
    refine: bool = False  # coarse-to-fine: a second round around the first round's top-k
    top_k: int = 3
    margin: float = 0.25
    refine_trials: int | None = None
    workers: int = 1
    heartbeat_interval: int = 10
    grace_period: int = 30
    max_retry: int = 3
    resume: bool = False
    top_n: int = 12  # learning curves in the figure
    figures: bool = True

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Options:
        return cls(**json.loads(text))

    def storage_url(self) -> str:
        if self.storage:
            return storages.normalize_url(self.storage)
        return storages.embedded_url(self.out)


def check_options(opts: Options):
    if opts.sampler not in SAMPLERS:
        raise ConfigError(f"--sampler {opts.sampler!r}: allowed: {', '.join(SAMPLERS)}")
    if opts.pruner not in PRUNERS:
        raise ConfigError(f"pruner {opts.pruner!r}: allowed: {', '.join(PRUNERS)}")
    for name in ("trials", "refine_trials", "cv"):
        value = getattr(opts, name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
    if opts.trials is not None and opts.trials < 1:
        raise ConfigError(f"--trials {opts.trials}: expected at least 1")
    if opts.cv is not None and opts.cv < 2:
        raise ConfigError(f"cv: {opts.cv}: k-fold cross-validation needs k >= 2 (or no cv)")
    if not isinstance(opts.workers, int) or opts.workers < 1:
        raise ConfigError(f"--workers {opts.workers!r}: expected a positive integer")
    if not isinstance(opts.top_k, int) or opts.top_k < 1:
        raise ConfigError(f"coarse-to-fine top_k {opts.top_k!r}: expected a positive integer")
    if not isinstance(opts.margin, (int, float)) or opts.margin < 0:
        raise ConfigError(f"coarse-to-fine margin {opts.margin!r}: expected a number >= 0")
    for name in ("heartbeat_interval", "grace_period"):
        value = getattr(opts, name)
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} {value!r}: expected a whole number of seconds >= 1")
    if opts.grace_period <= opts.heartbeat_interval:
        raise ConfigError(
            f"grace_period {opts.grace_period} must exceed heartbeat_interval "
            f"{opts.heartbeat_interval} (a live trial would be failed)"
        )


# -- samplers and pruners ------------------------------------------------------------------------
def _grid_sampler_class():
    import optuna

    class GridSampler(optuna.samplers.GridSampler):
        """Optuna's grid sampler without its ``study.stop()`` after the last point (that only
        works inside ``study.optimize``; :class:`Worker` stops by counting). Every worker must
        use the same seed: the seed shuffles the grid, and a grid id names a point."""

        def after_trial(self, study, trial, state, values):
            pass

    return GridSampler


def build_sampler(name: str, space: SearchSpace, seed: int, startup_trials: int = 5):
    import optuna

    if name == "grid":
        return _grid_sampler_class()(space.grid(), seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials)
    if name == "gp":
        try:
            import torch  # noqa: F401
        except ImportError:
            raise ConfigError(
                "--sampler gp (Optuna's GPSampler) needs PyTorch, which is not installed: "
                "pip install 'nnparts[gp]' (torch==2.13.0, CPU), or use --sampler tpe"
            ) from None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup_trials)
    raise ConfigError(f"--sampler {name!r}: allowed: {', '.join(SAMPLERS)}")


def build_pruner(opts: Options, epochs: int):
    import optuna

    if opts.pruner == "none":
        return optuna.pruners.NopPruner()
    if opts.pruner == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=opts.startup_trials, n_warmup_steps=opts.warmup_epochs
        )
    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, epochs))


# -- one round -----------------------------------------------------------------------------------
def _same_space(stored, space: SearchSpace) -> bool:
    return json.dumps(stored, sort_keys=True) == json.dumps(
        json.loads(json.dumps(space.to_dict())), sort_keys=True
    )


def _space_difference(stored: dict, space: SearchSpace) -> str:
    new = json.loads(json.dumps(space.to_dict()))
    keys = sorted(set(stored) | set(new))
    diff = [
        k
        for k in keys
        if json.dumps(stored.get(k), sort_keys=True) != json.dumps(new.get(k), sort_keys=True)
    ]
    return ", ".join(diff)


def open_study(
    storage,
    url: str,
    name: str,
    space: SearchSpace,
    sampler,
    pruner,
    target: int | None,
    lock,
    must_be_new: bool = False,
    must_exist: bool = False,
):
    """Create the study, or load it when it exists with the same search space."""
    import optuna

    with lock():
        try:
            study = optuna.load_study(
                study_name=name, storage=storage, sampler=sampler, pruner=pruner
            )
        except KeyError:
            study = None
        if study is not None:
            stored = study.user_attrs.get(SPACE_ATTR)
            if stored is not None and not _same_space(stored, space):
                raise ConfigError(
                    f"study {name!r} in {storages.mask_url(url)} already exists with another "
                    f"search space (differs in: {_space_difference(stored, space)}); use another "
                    "--study name, or the search: section it was created with"
                )
            if must_be_new and study.get_trials(deepcopy=False):
                raise ConfigError(
                    f"study {name!r} in {storages.mask_url(url)} already has "
                    f"{len(study.get_trials(deepcopy=False))} trials; pass --resume to continue "
                    "it, or choose another --out or --study"
                )
            if stored is None:
                study.set_user_attr(SPACE_ATTR, space.to_dict())
            if target is not None and study.user_attrs.get("n_trials") != target:
                study.set_user_attr("n_trials", target)
            return study
        if must_exist:
            raise ConfigError(
                f"--resume: there is no study {name!r} in {storages.mask_url(url)} to continue"
            )
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            sampler=sampler,
            pruner=pruner,
            direction="maximize",
            load_if_exists=True,
        )
        study.set_user_attr(SPACE_ATTR, space.to_dict())
        if target is not None:
            study.set_user_attr("n_trials", target)
        return study


class Heartbeat:
    """Record the trial's heartbeat every ``interval`` seconds on a daemon thread."""

    def __init__(self, storage, trial_id: int, interval: float):
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(self.interval):
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception as e:  # a lost connection: the trial may be failed and retried
                print(
                    f"warning: heartbeat of trial id {self.trial_id} failed: {e}", file=sys.stderr
                )

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def format_params(values: dict) -> str:
    return "{" + ", ".join(f"{k}: {_fmt(v)}" for k, v in values.items()) + "}"


class Worker:
    """Runs trials of one study until it holds ``target`` finished trials."""

    def __init__(self, study, storage, space, lock, run_trial, target, opts, label="", log=print):
        self.study, self.storage, self.space, self.lock = study, storage, space, lock
        self.run_trial, self.target, self.opts = run_trial, target, opts
        self.label, self.log = label, log
        self.is_grid = opts.sampler == "grid"
        self.started = 0

    def _counts(self):
        from optuna.trial import TrialState

        counts = {s: 0 for s in TrialState}
        for t in self.study.get_trials(deepcopy=False):
            counts[t.state] += 1
        return counts

    def _next_trial(self):
        import optuna
        from optuna.trial import TrialState

        with self.lock():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(self.study)
            c = self._counts()
            waiting, running = c[TrialState.WAITING], c[TrialState.RUNNING]
            counted = c[TrialState.COMPLETE] + c[TrialState.PRUNED] + running + waiting
            exhausted = self.is_grid and self.study.sampler.is_exhausted(self.study)
            if waiting or (counted < self.target and not exhausted):
                with warnings.catch_warnings():  # heartbeats are ours (Heartbeat), not optimize's
                    warnings.filterwarnings("ignore", message="Heartbeat of storage")
                    trial = self.study.ask()
                self.storage.record_heartbeat(trial._trial_id)
                trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
                return trial, running, waiting
            return None, running, waiting

    def run(self):
        poll = min(1.0, self.opts.heartbeat_interval / 2)
        while True:
            trial, running, waiting = self._next_trial()
            if trial is None:
                if running == 0 and waiting == 0:
                    return
                time.sleep(poll)  # others are still running; one may die and need a retry
                continue
            self.started += 1
            with Heartbeat(self.storage, trial._trial_id, self.opts.heartbeat_interval):
                self.run_trial(self.study, trial, self.label)


def run_trial_fn(space, base_file, overrides, opts: Options, epochs: int, log=print):
    """The function a :class:`Worker` calls for each trial: train, tell, print one line."""
    import optuna
    from optuna.trial import TrialState

    from nnparts.train.callbacks import DivergenceError
    from nnparts.tune import objective

    prune = opts.pruner != "none"

    def tell(study, trial, **kwargs):
        try:
            study.tell(trial, **kwargs)
            return True
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError, ValueError) as e:
            log(
                f"warning: trial {trial.number} was already finished by another worker "
                f"(missed heartbeats?); its retry runs it again ({e})"
            )
            return False

    def run(study, trial, label):
        start = time.perf_counter()
        values = space.suggest(trial)
        cfg = objective.trial_config(base_file, overrides, values)
        extra = ""
        try:
            result = objective.evaluate(trial, cfg, opts.cv, prune)
        except objective.Pruned as e:
            trial.set_user_attr("val_accuracy_curve", e.curve)
            state, value, extra = TrialState.PRUNED, None, f" ({e})"
        except DivergenceError as e:
            trial.set_user_attr("diverged", str(e))
            state, value, extra = TrialState.PRUNED, None, " (diverged)"
        except KeyboardInterrupt:
            # not a result: FAIL, and queue the same parameters again for --resume
            if tell(study, trial, state=TrialState.FAIL):
                storages.retry_callback(None)(study, study._storage.get_trial(trial._trial_id))
            raise
        except BaseException:
            tell(study, trial, state=TrialState.FAIL)
            raise
        else:
            for key in ("val_accuracy_curve", "cv_scores", "cv_sd"):  # one write each: few
                if key in result:
                    trial.set_user_attr(key, result[key])
            state, value = TrialState.COMPLETE, result["value"]
            if "cv_sd" in result:
                extra = f" ± {result['cv_sd']:.4f} ({opts.cv}-fold)"
        seconds = time.perf_counter() - start
        trial.set_user_attr("seconds", seconds)
        if state == TrialState.COMPLETE:
            ok = tell(study, trial, values=value)
        else:
            ok = tell(study, trial, state=state)
        if not ok:
            return
        shown = f"val_acc {value:.4f}{extra}" if value is not None else f"-{extra}"
        try:
            best = study.best_trial
            best_text = f"best {best.value:.4f} (trial {best.number})"
        except ValueError:
            best_text = "best -"
        log(
            f"{label}trial {trial.number:>3}  {state.name:<8} {shown}  "
            f"{format_params(values)}  {seconds:.1f} s  | {best_text}"
        )

    return run


def top_trials(study, k: int):
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    done.sort(key=lambda t: (-t.value, t.number))
    return done[:k]


def round2_space(study, space: SearchSpace, opts: Options) -> SearchSpace:
    top = top_trials(study, opts.top_k)
    return narrow(space, [space.decode(t.params) for t in top], opts.margin)


def default_target(opts: Options, space: SearchSpace, study=None) -> int:
    target = opts.trials
    if target is None and study is not None:
        target = study.user_attrs.get("n_trials")
    if opts.sampler == "grid":
        size = space.grid_size()
        return size if target is None else min(target, size)
    return 20 if target is None else target
