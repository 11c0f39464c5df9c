"""What ``nnparts tune`` does, as a function: :func:`tune`.

One process (``--workers 1``, the default) creates or loads the study, runs its trials and
writes the results. ``--workers N`` creates the study, then starts N worker processes
(``nnparts tune ... --worker``; one NumPy/BLAS thread each) that share it through the storage,
waits for them and writes the results. On many machines, point every process at one PostgreSQL
``--storage``: ``--create-only`` once, then ``--worker`` on each machine (any number of times),
then once more without ``--worker`` (or with ``--resume``) to collect the results.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time

from nnparts.train import config as configs
from nnparts.train.config import ConfigError
from nnparts.tune import storage as storages
from nnparts.tune.search import (
    Options,
    Worker,
    build_pruner,
    build_sampler,
    check_options,
    default_target,
    open_study,
    round2_space,
    run_trial_fn,
)
from nnparts.tune.space import SearchSpace

TUNE_KEYS = {
    "sampler",
    "trials",
    "seed",
    "pruner",
    "startup_trials",
    "warmup_epochs",
    "cv",
    "refine",
    "study",
    "storage",
    "heartbeat_interval",
    "grace_period",
    "max_retry",
    "top_n",
    "workers",
    "figures",
}
REFINE_KEYS = {"top_k": "top_k", "margin": "margin", "trials": "refine_trials"}

#: Test hook: a Unix time at which a worker starts (two workers hitting a fresh database at the
#: same instant, the schema race).
START_AT_ENV = "NNPARTS_TUNE_START_AT"


def split_config(path: str | None) -> tuple[dict, dict, dict]:
    """A search config file -> (training config, ``search:`` section, ``tune:`` section)."""
    if not path:
        raise ConfigError(
            "nnparts tune needs --config search.yaml: a training config with a search: section"
        )
    file_cfg = configs.load_file(path)
    search = file_cfg.pop("search", None)
    tune_section = file_cfg.pop("tune", None) or {}
    if search is None:
        raise ConfigError(
            f"config file {path} has no search: section; add one entry per dotted key, e.g. "
            "search: {optimizer.lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}}"
        )
    if not isinstance(tune_section, dict):
        raise ConfigError(f"tune: in {path} must be a mapping, got {tune_section!r}")
    unknown = set(tune_section) - TUNE_KEYS
    if unknown:
        raise ConfigError(
            f"unknown key(s) in tune: {', '.join(sorted(unknown))}; valid keys: "
            f"{', '.join(sorted(TUNE_KEYS))}"
        )
    return file_cfg, search, tune_section


def make_options(tune_section: dict, flags: dict, base_seed: int) -> Options:
    """Defaults < the config's ``tune:`` section < command-line flags (those not None)."""
    values = {"seed": base_seed}
    for key, value in tune_section.items():
        if key == "refine":
            if isinstance(value, bool):
                values["refine"] = value
            elif isinstance(value, dict):
                unknown = set(value) - set(REFINE_KEYS)
                if unknown:
                    raise ConfigError(
                        f"unknown key(s) in tune.refine: {', '.join(sorted(unknown))}; valid: "
                        f"{', '.join(REFINE_KEYS)}"
                    )
                values["refine"] = True
                for k, v in value.items():
                    values[REFINE_KEYS[k]] = v
            else:
                raise ConfigError(f"tune.refine: expected true/false or a mapping, got {value!r}")
        else:
            values[key] = value
    for key, value in flags.items():
        if value is not None:
            values[key] = value
    return Options(**values)


def _child_env() -> dict:
    env = dict(os.environ)
    for name in (
        "NNPARTS_NUM_THREADS",
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "BLIS_NUM_THREADS",
    ):
        env[name] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _spawn_workers(config_path, override_items, opts: Options, log) -> int:
    procs = []
    child = copy.copy(opts)
    child.workers = 1
    child.resume = False
    for i in range(opts.workers):
        cmd = [
            sys.executable,
            "-m",
            "nnparts.tune.cli",  # `nnparts tune`, without loading the other subcommands
            "tune",
            "--config",
            os.path.abspath(config_path),
            "--worker",
            "--worker-index",
            str(i),
            "--options-json",
            child.to_json(),
            *override_items,
        ]
        procs.append(subprocess.Popen(cmd, env=_child_env()))
    log(f"started {len(procs)} workers (pids {', '.join(str(p.pid) for p in procs)})")
    bad = 0
    try:
        for i, p in enumerate(procs):
            rc = p.wait()
            if rc != 0:
                bad += 1
                how = f"signal {-rc}" if rc < 0 else f"exit status {rc}"
                log(
                    f"worker {i} (pid {p.pid}) ended with {how}; a trial it was running is "
                    "retried by the others once its heartbeat is stale"
                )
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait()
        raise
    return bad


def tune(
    config_path: str,
    override_items: list[str] | None = None,
    flags: dict | None = None,
    worker: bool = False,
    worker_index: int | None = 0,
    create_only: bool = False,
    retrain: bool = False,
    options: Options | None = None,
    log=print,
) -> int:
    """Run a search; return the exit code (0 done, 1 incomplete, 130 interrupted)."""
    override_items = list(override_items or [])
    base_file, search, tune_section = split_config(config_path)
    overrides = configs.parse_overrides(override_items)
    base_cfg = configs.resolve(copy.deepcopy(base_file), copy.deepcopy(overrides))
    space = SearchSpace.parse(search, base_file, overrides)
    opts = options or make_options(tune_section, flags or {}, base_cfg["seed"])
    check_options(opts)
    if opts.refine and opts.sampler == "grid" and not worker:
        log("note: coarse-to-fine with the grid sampler keeps the grid values inside each range")
    os.makedirs(opts.out, exist_ok=True)
    import optuna
    import sqlalchemy  # noqa: F401  (imported before the start line below, for the test hook)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    start_at = os.environ.get(START_AT_ENV)
    if start_at:
        time.sleep(max(0.0, float(start_at) - time.time()))
    url = opts.storage_url()
    storage = storages.open_storage(
        url, opts.heartbeat_interval, opts.grace_period, max_retry=opts.max_retry
    )
    embedded = opts.storage is None
    label = ""
    if worker_index is None:  # a worker started by hand (many machines): its own random stream
        worker_index = 0
        seed = opts.seed + 1000 * (os.getpid() % 100003) + 7
        label = f"[pid {os.getpid()}] "
    else:
        seed = opts.seed + 1000 * worker_index
    startup = max(1, min(opts.startup_trials, (opts.trials or 20) // 2 or 1))
    epochs = opts.cv or base_cfg["train"]["epochs"]
    lock = storages.StudyLock(url, opts.study)
    # grid: one seed for all workers (it orders the grid); others: one stream per worker
    sampler = build_sampler(
        opts.sampler, space, opts.seed if opts.sampler == "grid" else seed, startup
    )
    study = open_study(
        storage,
        url,
        opts.study,
        space,
        sampler,
        build_pruner(opts, epochs),
        default_target(opts, space) if opts.trials is not None else None,  # None: as stored
        lock,
        must_be_new=embedded and not opts.resume and not worker,
        must_exist=opts.resume,
    )
    target = default_target(opts, space, study)
    _continue_stream(study, opts, space, seed, startup)
    if study.user_attrs.get("n_trials") is None:
        study.set_user_attr("n_trials", target)
    shown_url = storages.mask_url(url)
    if not worker:
        log(
            f"study {opts.study!r} in {shown_url}: {target} trials, sampler {opts.sampler}, "
            f"pruner {opts.pruner}" + (f", {opts.cv}-fold cross-validation" if opts.cv else "")
        )
        log("search space:\n" + space.describe())
    if create_only:
        log(
            f"created; start workers (any machine, any number) with:\n  nnparts tune --config "
            f"{config_path} --storage '{shown_url}' --study {opts.study} --worker"
        )
        return 0

    rounds = [(study, space)]
    label = label or (f"[w{worker_index}] " if worker else "")
    interrupted = False
    try:
        if opts.workers > 1 and not worker:
            _spawn_workers(config_path, override_items, opts, log)
            if opts.refine:
                s2, sp2 = _round2(storage, url, study, space, opts, seed, startup, epochs, log)
                rounds.append((s2, sp2))
        else:
            run = run_trial_fn(space, base_file, overrides, opts, epochs, log)
            Worker(study, storage, space, lock, run, target, opts, label, log).run()
            if opts.refine:
                s2, sp2 = _round2(
                    storage, url, study, space, opts, seed, startup, epochs, log, not worker
                )
                run2 = run_trial_fn(sp2, base_file, overrides, opts, epochs, log)
                target2 = default_target(_with_trials(opts, opts.refine_trials), sp2, s2)
                Worker(s2, storage, sp2, storages.StudyLock(url, s2.study_name), run2, target2,
                       opts, label, log).run()  # fmt: skip
                rounds.append((s2, sp2))
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: every finished trial is kept in the study; --resume continues it")
    if worker:
        return 130 if interrupted else 0
    code = _report(
        rounds, base_file, overrides, opts, url, target, retrain and not interrupted, log
    )
    return 130 if interrupted else code


def _continue_stream(study, opts, space, seed, startup):
    """A resumed study gets a seed offset by its trial count, so a seeded sampler does not
    repeat the first run's suggestions (the grid keeps its seed: it orders the grid)."""
    existing = len(study.get_trials(deepcopy=False))
    if existing and opts.sampler != "grid":
        study.sampler = build_sampler(opts.sampler, space, seed + 7919 * existing, startup)


def _with_trials(opts: Options, trials):
    o = copy.copy(opts)
    o.trials = trials if trials is not None else opts.trials
    return o


def _round2(storage, url, study, space, opts, seed, startup, epochs, log, announce=True):
    """Coarse-to-fine: open (or create) round 2 around the first round's top-k."""
    import yaml

    space2 = round2_space(study, space, opts)
    name2 = f"{opts.study}.round2"
    o2 = _with_trials(opts, opts.refine_trials)
    sampler2 = build_sampler(
        opts.sampler, space2, opts.seed if opts.sampler == "grid" else seed + 1, startup
    )
    study2 = open_study(
        storage,
        url,
        name2,
        space2,
        sampler2,
        build_pruner(opts, epochs),
        default_target(o2, space2),
        storages.StudyLock(url, name2),
    )
    _continue_stream(study2, opts, space2, seed + 1, startup)
    if announce:
        from nnparts.tune.results import write_text

        log(
            f"round 2 (coarse-to-fine around the top {opts.top_k}, margin {opts.margin:g}), "
            f"study {name2!r}:\n" + space2.describe()
        )
        write_text(
            os.path.join(opts.out, "round2_space.yaml"),
            yaml.safe_dump(space2.to_dict(), sort_keys=False),
        )
    return study2, space2


def _report(rounds, base_file, overrides, opts, url, target, retrain, log) -> int:
    from optuna.trial import TrialState

    from nnparts.tune import results
    from nnparts.tune.objective import trial_config

    counts = {}
    for r, (study, _) in enumerate(rounds, start=1):
        c = {s.name: 0 for s in TrialState}
        for t in study.get_trials(deepcopy=False):
            c[t.state.name] += 1
        counts[f"round{r}"] = c
    best = results.best_of(rounds)
    summary = {
        "study": opts.study,
        "storage": storages.mask_url(url),
        "sampler": opts.sampler,
        "pruner": opts.pruner,
        "cv": opts.cv,
        "requested_trials": target,
        "counts": counts,
        "best": None,
        "dashboard": f"optuna-dashboard {storages.mask_url(url)}"
        + ("  (put the password in place of ***)" if "***" in storages.mask_url(url) else ""),
    }
    best_cfg = None
    if best is not None:
        r, t = best
        values = rounds[r - 1][1].decode(t.params)
        best_cfg = trial_config(base_file, overrides, values)
        summary["best"] = {
            "round": r,
            "number": t.number,
            "value": t.value,
            "cv_sd": t.user_attrs.get("cv_sd"),
            "params": values,
        }
        from nnparts.tune.search import format_params

        sd = f" ± {t.user_attrs['cv_sd']:.4f}" if t.user_attrs.get("cv_sd") is not None else ""
        log(
            f"best: trial {t.number}" + (f" of round {r}" if len(rounds) > 1 else "")
            + f", validation accuracy {t.value:.4f}{sd}  {format_params(values)}"
        )  # fmt: skip
    if retrain and best_cfg is not None:
        from nnparts.train import run as train_run

        cfg = copy.deepcopy(best_cfg)
        cfg["data"]["val_size"] = 0
        metrics = train_run.train(
            cfg, out=os.path.join(opts.out, "retrain"), quiet=True, progress=False
        )
        summary["retrain"] = {
            "test_accuracy": metrics["test_accuracy"],
            "test_loss": metrics["test_loss"],
            "note": "best config retrained on train+validation; the test set is read once, here",
        }
        log(
            f"test accuracy of the best config retrained on train+validation (the only time the "
            f"test set is read): {metrics['test_accuracy']:.4f}"
        )
    written = results.write_all(
        opts.out, rounds, best_cfg, summary, opts.top_n, log, figures=opts.figures
    )
    log(f"wrote {opts.out}/: {', '.join(written['written'])}")
    log(f"open the study in the dashboard (pip install optuna-dashboard): {summary['dashboard']}")
    if best is None:
        log("no trial completed")
        return 1
    return 0
