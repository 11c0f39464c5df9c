"""The ``nnparts lab`` command.

::

    nnparts lab list                          name, unit, claims, the claim in one line
    nnparts lab show NAME                     claim, setup, what is measured, the verdict rule
    nnparts lab run NAME... | all [--quick] [--seeds N] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import time

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "lab",
        help="the course's claims on real data: numbers, figures, verdicts",
        description="Run the course's claims on real data. Each experiment reports its numbers, "
        "figures and a verdict (reproduced / not reproduced / mixed) computed from a rule "
        "stated before the run.",
    )
    sub = parser.add_subparsers(dest="lab_command", metavar="ACTION")
    sub.add_parser("list", help="every experiment: name, unit, claims, the claim in one line")
    show = sub.add_parser("show", help="an experiment's claim, setup and verdict rule")
    show.add_argument("name")
    run_p = sub.add_parser("run", help="run experiments and write the report")
    run_p.add_argument("names", nargs="+", metavar="NAME", help="experiment or unit names, or all")
    run_p.add_argument(
        "--quick", action="store_true", help="smaller data, fewer epochs (same code path)"
    )
    run_p.add_argument("--seeds", type=int, help="seeds per experiment (default: each one's own)")
    run_p.add_argument(
        "--out", default="runs/lab", help="folder for index.html, results.json, figures"
    )
    run_p.add_argument("--no-progress", action="store_true", help="no progress bars")
    run_p.add_argument(
        "--update",
        action="store_true",
        help="keep the other experiments of an existing DIR/results.json (rerun only these)",
    )
    return parser


def run(args) -> int:
    from nnparts import lab

    command = getattr(args, "lab_command", None)
    try:
        if command == "list":
            width = max((len(n) for n in lab.REGISTRY), default=10)
            for e in lab.select("all"):
                claims = ",".join(map(str, e.claims))
                line = textwrap.shorten(e.claim, 90, placeholder="...")
                print(f"{e.name:<{width}}  {e.unit:<16} claims {claims:<7} {line}")
            return 0
        if command == "show":
            print(lab.get(args.name).describe())
            return 0
        if command == "run":
            if args.seeds is not None and args.seeds < 1:
                raise lab.LabError(f"--seeds must be >= 1, got {args.seeds}")
            chosen = lab.select(args.names)
            print(
                f"running {len(chosen)} experiment(s){' (quick)' if args.quick else ''}; "
                f"writing {args.out}/index.html"
            )
            start = time.perf_counter()
            failed = []
            try:
                results = lab.run(
                    [e.name for e in chosen],
                    quick=args.quick,
                    seeds=args.seeds,
                    out=args.out,
                    progress=not args.no_progress and sys.stderr.isatty(),
                    log=lambda line: print(line, flush=True),
                    keep_going=True,
                    update=args.update,
                )
            except lab.ExperimentsFailed as e:
                results, failed = e.results, e.names
            counts = {v: sum(r.verdict == v for r in results) for v in lab.VERDICTS}
            print(
                f"{len(results)} experiments in {time.perf_counter() - start:.0f} s: "
                + ", ".join(f"{n} {v}" for v, n in counts.items())
                + f"; report: {args.out}/index.html"
            )
            if failed:
                print(
                    f"error: {len(failed)} experiment(s) raised: {', '.join(failed)}",
                    file=sys.stderr,
                )
                return 1
            return 0
    except lab.LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("usage: nnparts lab {list,show,run} ...  (nnparts lab --help)", file=sys.stderr)
    return 2
