"""Benchmark of ``nnparts tune`` (run by hand; not a test).

1. Trials per minute of a small MLP search on Fashion-MNIST with 1 worker and with 2 workers
   (``--workers``; one NumPy/BLAS thread per worker, the 1-worker run too). The rate is measured
   from the first trial's start to the last trial's end (stored in the study), so interpreter
   start-up is not counted; the wall time of the whole command is printed beside it.
   Target: 2 workers >= 1.8x the trials per minute of 1.
2. Storage overhead per trial: the search loop with an objective that does nothing (every storage
   call of a real trial: stale check, count, ask, heartbeat, suggest, user attributes, tell, best
   so far), embedded SQLite vs PostgreSQL. Target: <= 50 ms per trial.

    python benchmarks/bench_tune.py [--trials 16] [--null-trials 100] [--postgres URL]

PostgreSQL: ``--postgres postgresql://user@host:port/db`` or ``$NNPARTS_TEST_POSTGRES_URL``
(``.ci/run`` starts one); skipped without either. Each run uses a fresh study name.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

FASHION = "/usr/share/datasets/fashion-mnist"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def blas_kernel() -> str:
    import numpy  # noqa: F401  (loads the BLAS library)
    from threadpoolctl import threadpool_info

    infos = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return "; ".join(
        f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')}, "
        f"{i.get('num_threads')} threads)"
        for i in infos
    )


def write_config(folder: str) -> str:
    cfg = {
        "seed": 0,
        "data": {
            "data_dir": FASHION,
            "download": False,
            "train_subset": 6000,
            "val_size": 1000,
            "test_subset": 1000,
        },  # fmt: skip
        "model": {"hidden": [128], "norm": "batchnorm", "dropout": 0.1},
        "train": {"epochs": 2, "batch_size": 128},
        "search": {
            "optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
            "model.dropout": {"type": "float", "low": 0.0, "high": 0.5},
        },
        "tune": {"figures": False},
    }
    path = os.path.join(folder, "search.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    return path


def trials_per_minute(config: str, out: str, workers: int, trials: int) -> tuple[float, float]:
    import optuna

    env = dict(os.environ)
    for name in ("NNPARTS_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                 "MKL_NUM_THREADS"):  # fmt: skip
        env[name] = "1"
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "nnparts.tune.cli", "tune", "--config", config, "--out", out,
         "--workers", str(workers), "--trials", str(trials), "--sampler", "random"],
        check=True, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    wall = time.perf_counter() - start
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{out}/study.db")
    done = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    span = max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)
    return len(done) / (span.total_seconds() / 60), wall


def storage_ms_per_trial(url: str, n: int) -> float:
    """Milliseconds per trial of the search loop around an objective that does nothing."""
    import optuna

    from nnparts.tune import objective
    from nnparts.tune import storage as storages
    from nnparts.tune.search import Options, Worker, build_sampler, open_study, run_trial_fn
    from nnparts.tune.space import SearchSpace

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = SearchSpace.parse(
        {
            "optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
            "model.hidden": {"type": "categorical", "choices": [[16], [32, 16]]},
        }
    )
    opts = Options(out=tempfile.mkdtemp(), sampler="random", trials=n)
    real = objective.evaluate
    objective.evaluate = lambda trial, cfg, cv, prune: {
        "value": 0.5, "val_accuracy_curve": [0.4, 0.5], "train_loss_curve": [1.0, 0.9]
    }  # fmt: skip
    try:
        storage = storages.open_storage(url, opts.heartbeat_interval, opts.grace_period)
        name = f"bench-{uuid.uuid4().hex[:8]}"
        lock = storages.StudyLock(url, name)
        study = open_study(storage, url, name, space, build_sampler("random", space, 0),
                           optuna.pruners.NopPruner(), n, lock)  # fmt: skip
        run = run_trial_fn(space, {}, {}, opts, 2, log=lambda m: None)
        start = time.perf_counter()
        Worker(study, storage, space, lock, run, n, opts, log=lambda m: None).run()
        elapsed = time.perf_counter() - start
        assert len(study.get_trials()) == n
        optuna.delete_study(study_name=name, storage=storage)
    finally:
        objective.evaluate = real
    return 1000 * elapsed / n


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--null-trials", type=int, default=100)
    parser.add_argument("--postgres", default=os.environ.get("NNPARTS_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    import optuna

    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical cores)")
    print(f"BLAS: {blas_kernel()}")
    print(f"optuna {optuna.__version__}, python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(tmp)
        rates = {}
        for workers in (1, 2):
            rate, wall = trials_per_minute(config, os.path.join(tmp, f"w{workers}"), workers,
                                           args.trials)  # fmt: skip
            rates[workers] = rate
            print(f"{workers} worker(s): {rate:6.1f} trials/min  ({args.trials} trials, "
                  f"{wall:.1f} s wall with start-up)")  # fmt: skip
        print(f"speed-up with 2 workers: {rates[2] / rates[1]:.2f}x (target >= 1.8x)")
        from nnparts.tune.storage import embedded_url, normalize_url

        ms = storage_ms_per_trial(embedded_url(tmp), args.null_trials)
        print(f"storage overhead, embedded SQLite: {ms:.1f} ms/trial (target <= 50)")
        if args.postgres:
            ms = storage_ms_per_trial(normalize_url(args.postgres), args.null_trials)
            print(f"storage overhead, PostgreSQL:      {ms:.1f} ms/trial (target <= 50)")
        else:
            print("storage overhead, PostgreSQL: skipped (give --postgres URL)")


if __name__ == "__main__":
    main()
