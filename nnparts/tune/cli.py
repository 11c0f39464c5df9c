"""``nnparts tune``: hyperparameter search over a training config (Optuna does the searching)."""

from __future__ import annotations

import argparse

EPILOG = """the config is a training config plus a search: section (and optionally tune:):
  search:
    optimizer.lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
    train.batch_size: {type: int, low: 32, high: 256, step: 32}
    model.hidden: {type: categorical, choices: [[100], [200, 100]]}
  tune: {sampler: tpe, trials: 30, pruner: median, cv: 5, refine: {top_k: 3, margin: 0.25}}

examples:
  nnparts tune --config recipes/search-mlp.yaml --out runs/search
  nnparts tune --config recipes/search-grid.yaml --sampler grid --workers 2 --out runs/grid
  # many machines, one PostgreSQL study:
  nnparts tune --config search.yaml --storage postgresql://user:pw@db/optuna --study s1 \\
      --trials 200 --create-only
  nnparts tune --config search.yaml --storage postgresql://user:pw@db/optuna --study s1 --worker
"""


def add_parser(subparsers):
    p = subparsers.add_parser(
        "tune",
        help="hyperparameter search on Optuna (grid, random, TPE, GP; many workers)",
        description="Search hyperparameters of a training config: grid, random, TPE or GP "
        "(Optuna), optional coarse-to-fine second round, k-fold cross-validation and pruning. "
        "The objective is validation accuracy; the test set is never read (except once with "
        "--retrain). Other --section.key VALUE arguments override the training config.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="YAML: a training config with a search: section")
    p.add_argument("--trials", type=int, help="finished trials to reach (grid: its size)")
    p.add_argument("--sampler", choices=["grid", "random", "tpe", "gp"], help="default tpe")
    p.add_argument(
        "--storage",
        help="database URL shared by the workers, e.g. postgresql://user:pw@host/db "
        "(default: DIR/study.db, embedded SQLite)",
    )
    p.add_argument("--study", help="study name (default: search)")
    p.add_argument("--workers", type=int, help="local worker processes, one thread each")
    p.add_argument("--out", help="folder for the results (default: runs/tune)")
    p.add_argument("--resume", action="store_true", help="continue the study in --out/--storage")
    p.add_argument(
        "--retrain",
        action="store_true",
        help="train the best config on train+validation and report test accuracy once",
    )
    p.add_argument("--seed", type=int, help="sampler seed (default: the config's seed)")
    p.add_argument("--pruner", choices=["none", "median", "hyperband"], help="default none")
    p.add_argument("--cv", type=int, help="k-fold cross-validation: the mean over k folds")
    p.add_argument("--refine", action="store_true", help="coarse-to-fine: a second, narrowed round")
    p.add_argument("--top-k", type=int, help="coarse-to-fine: narrow around the best k (3)")
    p.add_argument("--margin", type=float, help="coarse-to-fine: margin, fraction of the range")
    p.add_argument("--refine-trials", type=int, help="trials of the second round")
    p.add_argument("--heartbeat-interval", type=int, help="seconds between heartbeats (10)")
    p.add_argument(
        "--grace-period", type=int, help="seconds without heartbeat before a trial fails (30)"
    )
    p.add_argument("--create-only", action="store_true", help="create the study and exit")
    p.add_argument(
        "--worker",
        action="store_true",
        help="only run trials of an existing or new study (no results written)",
    )
    p.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--options-json", help=argparse.SUPPRESS)
    return p


FLAGS = {
    "trials": "trials",
    "sampler": "sampler",
    "storage": "storage",
    "study": "study",
    "workers": "workers",
    "out": "out",
    "seed": "seed",
    "pruner": "pruner",
    "cv": "cv",
    "top_k": "top_k",
    "margin": "margin",
    "refine_trials": "refine_trials",
    "heartbeat_interval": "heartbeat_interval",
    "grace_period": "grace_period",
}


def run(args) -> int:
    from nnparts.tune.run import tune
    from nnparts.tune.search import Options

    flags = {opt: getattr(args, attr) for attr, opt in FLAGS.items()}
    if args.resume:
        flags["resume"] = True
    if args.refine:
        flags["refine"] = True
    options = Options.from_json(args.options_json) if args.options_json else None
    return tune(
        args.config,
        args.overrides,
        flags,
        worker=args.worker,
        # a hand-started --worker without an index draws its own stream (see tune())
        worker_index=args.worker_index if args.worker or args.worker_index is not None else 0,
        create_only=args.create_only,
        retrain=args.retrain,
        options=options,
    )


def main(argv=None) -> int:
    """``python -m nnparts.tune.cli tune ...``: the worker processes' entry point (the same
    command as ``nnparts tune``, without loading the other subcommands)."""
    import sys

    from nnparts.train.config import ConfigError

    parser = argparse.ArgumentParser(prog="nnparts")
    add_parser(parser.add_subparsers(dest="command"))
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    args.overrides = rest
    try:
        return run(args)
    except (ConfigError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys_exit = main()
    raise SystemExit(sys_exit)
