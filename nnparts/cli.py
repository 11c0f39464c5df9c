"""The ``nnparts`` command line."""

from __future__ import annotations

import argparse
import sys

import nnparts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnparts",
        description="Neural-network parts written by hand on NumPy: train, evaluate, tune, lab.",
    )
    parser.add_argument("--version", action="version", version=f"nnparts {nnparts.__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
