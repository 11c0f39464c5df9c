"""The ``nnparts babysit`` command: the course's babysitting checklist on a training config.

::

    nnparts babysit                                   # the default MLP config
    nnparts babysit --config recipes/cnn.yaml --out runs/babysit-cnn
    nnparts babysit --optimizer.lr 100 --model.init normal --model.norm none

Prints a table of checks (pass / warn / fail) and, with ``--out DIR``, writes
``DIR/babysit.png`` and ``DIR/babysit.json`` (every number). Exit code: 0 when every check ran,
whatever their results (``--strict``: 1 when any check fails); 2 for an invalid config.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "babysit",
        help="the course's babysitting checklist on a training config",
        description="Sanity checks before a long run, on the same configs as `nnparts train`: "
        "initial loss vs ln(C), loss rises with L2, overfit 20 samples, an LR range test, "
        "activation and gradient statistics at init. Override any config field with "
        "--section.key VALUE.",
        epilog="exit code: 0 when every check ran (even if some fail; --strict: 1 when any "
        "fails), 2 for an invalid config",
    )
    parser.add_argument("--config", help="YAML config file (fields not given keep defaults)")
    parser.add_argument("--out", help="folder for babysit.png and babysit.json")
    parser.add_argument(
        "--strict", action="store_true", help="exit with 1 when any check fails (for scripts)"
    )
    parser.add_argument(
        "--overfit-steps", type=int, default=200, help="step budget to fit 20 samples (200)"
    )
    parser.add_argument("--lr-min", type=float, default=1e-6, help="LR range test start (1e-6)")
    parser.add_argument("--lr-max", type=float, default=10.0, help="LR range test end (10)")
    parser.add_argument(
        "--lr-steps", type=int, default=200, help="LR range test steps at most (200)"
    )
    parser.add_argument(
        "--no-layers", action="store_true", help="print only the checks, not the per-layer tables"
    )
    return parser


def run(args) -> int:
    from nnparts.train import babysit
    from nnparts.train import config as configs

    for name in ("overfit_steps", "lr_steps"):
        if getattr(args, name) < 5:
            raise configs.ConfigError(
                f"--{name.replace('_', '-')} {getattr(args, name)}: expected at least 5 steps"
            )
    if not 0 < args.lr_min < args.lr_max:
        raise configs.ConfigError(
            f"--lr-min {args.lr_min:g} --lr-max {args.lr_max:g}: expected 0 < lr-min < lr-max"
        )
    file_cfg = configs.load_file(args.config) if args.config else None
    cfg = configs.resolve(file_cfg, configs.parse_overrides(getattr(args, "overrides", []) or []))
    print(
        f"nnparts babysit: {cfg['model']['name']} on {cfg['data']['dataset']}, "
        f"{cfg['optimizer']['name']} lr {cfg['optimizer']['lr']:g}, seed {cfg['seed']}",
        flush=True,
    )
    report = babysit.run_checks(
        cfg,
        overfit_steps=args.overfit_steps,
        lr_min=args.lr_min,
        lr_max=args.lr_max,
        lr_steps=args.lr_steps,
    )
    print(babysit.format_table(report, layers=not args.no_layers))
    counts = report.as_dict()["counts"]
    print(
        f"\n{counts['pass']} pass, {counts['warn']} warn, {counts['fail']} fail "
        f"({report.seconds:.1f} s)"
    )
    if args.out:
        paths = babysit.write_report(report, args.out)
        print(f"wrote {paths['figure']}, {paths['json']}")
    sys.stdout.flush()
    return 1 if args.strict and counts["fail"] else 0
