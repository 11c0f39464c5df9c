"""The ``nnparts data`` command: where the datasets are, and how to download them.

::

    nnparts data info [NAME] [--data-dir DIR]      where each split is found, shapes, class counts
    nnparts data download NAME [--data-dir DIR]    fetch the IDX files (SHA-256 checked)

The lead's ``nnparts/cli.py`` wires it in with ``add_parser(subparsers)`` and dispatches to
``run(args)``.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from nnparts.data import download as _dl
from nnparts.data.datasets import CLASSES, DATASETS, load, locate

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``data`` command (with ``info`` and ``download``) to ``subparsers``."""
    parser = subparsers.add_parser(
        "data",
        help="datasets: where they are, download them",
        description="Datasets: where each is found (data dir, cache, system), and downloads.",
    )
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
    info = sub.add_parser("info", help="where each dataset is found, its shapes and class counts")
    info.add_argument("name", nargs="?", choices=list(DATASETS), help="one dataset (default: all)")
    info.add_argument("--data-dir", default=None, help="directory searched first")
    dl = sub.add_parser("download", help="download a dataset's IDX files (SHA-256 checked)")
    dl.add_argument("name", choices=list(_dl.MIRRORS))
    dl.add_argument(
        "--data-dir", default=None, help=f"target directory (default: {_dl.cache_dir('NAME')})"
    )
    dl.add_argument("--split", choices=["train", "test", "all"], default="all")
    dl.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


def _info(name, data_dir, out) -> int:
    names = [name] if name else list(DATASETS)
    for n in names:
        print(f"{n}:", file=out)
        for split in DATASETS[n]:
            paths = locate(n, split, data_dir)
            if paths is None:
                print(f"  {split}: not found (nnparts data download {n})", file=out)
                continue
            x, y = load(n, split, data_dir=data_dir, download=False)
            counts = np.bincount(y, minlength=len(CLASSES[n]))
            print(f"  {split}: {paths[0]}", file=out)
            print(f"    x {x.dtype} {x.shape}, y {y.dtype} {y.shape}", file=out)
            print(f"    per class: {' '.join(str(int(c)) for c in counts)}", file=out)
    return 0


def run(args, out=None) -> int:
    """Run ``nnparts data ...`` from parsed ``args``; returns the exit status."""
    out = out or sys.stdout
    action = getattr(args, "data_command", None)
    if action is None or action == "info":
        return _info(getattr(args, "name", None), getattr(args, "data_dir", None), out)
    if action == "download":
        splits = ("train", "test") if args.split == "all" else (args.split,)
        try:
            target = _dl.download_dataset(
                args.name, splits=splits, data_dir=args.data_dir, progress=not args.no_progress
            )
        except OSError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        print(f"{args.name}: files in {target}", file=out)
        return 0
    print(f"error: unknown data action {action!r}; use info or download", file=sys.stderr)
    return 2
