"""The ``nnparts`` command line.

``nnparts train``     train a model from a config (defaults: an MLP on Fashion-MNIST)
``nnparts evaluate``  evaluate a checkpoint, write metrics and a confusion-matrix figure
``nnparts export``    a checkpoint's weights as safetensors with PyTorch's names and layouts
``nnparts data``      where the datasets are, download them
``nnparts lab``       run the course's claims on real data: numbers, figures, verdicts
``nnparts tune``      hyperparameter search on Optuna (grid, random, TPE, GP; many workers)
``nnparts babysit``   the course's babysitting checklist on a training config

Each command other than train/evaluate lives in its own module, which defines
``add_parser(subparsers)`` and ``run(args) -> int``; ``SUBCOMMANDS`` wires them in.
"""

from __future__ import annotations

import argparse
import importlib
import sys

import nnparts

EXAMPLES = """examples:
  nnparts train                                   # MLP on Fashion-MNIST, about a minute
  nnparts train --config recipes/cnn.yaml --out runs/cnn
  nnparts train --optimizer.name sgd --optimizer.lr 0.1 --model.hidden [512,512]
  nnparts train --resume runs/cnn/last.npz --out runs/cnn
  nnparts evaluate --checkpoint runs/cnn/final.npz --out runs/cnn/eval
  nnparts export --checkpoint runs/cnn/final.npz --out runs/cnn/model.safetensors
"""


# command name -> module with add_parser(subparsers) and run(args) -> exit code
SUBCOMMANDS = {
    "data": "nnparts.data.cli",
    "lab": "nnparts.lab.cli",
    "tune": "nnparts.tune.cli",
    "babysit": "nnparts.train.babysit_cli",
}


# commands whose unknown --section.key VALUE arguments are config overrides (args.overrides)
TAKES_OVERRIDES = {"train", "babysit", "tune"}


def _subcommand_modules():
    for name, module in SUBCOMMANDS.items():
        try:
            yield name, importlib.import_module(module)
        except ModuleNotFoundError as e:  # a command whose module is not built yet
            if e.name is None or not (module == e.name or module.startswith(e.name + ".")):
                raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnparts",
        description="Neural-network parts written by hand on NumPy: train, evaluate, data.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"nnparts {nnparts.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = sub.add_parser(
        "train",
        help="train a model from a config",
        description="Train a model. Any config field can be overridden with --section.key VALUE "
        "(values are parsed as YAML: 0.01, true, [256,128]).",
        epilog="config sections and defaults: see `nnparts train --show-config`",
    )
    train.add_argument("--config", help="YAML config file (fields not given keep defaults)")
    train.add_argument(
        "--out",
        help="folder for metrics.json, curves.png and checkpoints (without it nothing is saved)",
    )
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in --out (its metrics, curves and checkpoints)",
    )
    train.add_argument("--quiet", action="store_true", help="print only the final result")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--resume", help="continue from a checkpoint (last.npz) of the same run")
    train.add_argument(
        "--force",
        action="store_true",
        help="with --resume: take new values of train.epochs, early stopping, grad_clip, "
        "label_smoothing, regularization and data.augment",
    )
    train.add_argument(
        "--show-config",
        action="store_true",
        help="print the resolved config, with the allowed values of each field, and exit",
    )

    ev = sub.add_parser("evaluate", help="evaluate a checkpoint")
    ev.add_argument("--checkpoint", required=True, help="a .npz written by nnparts train --out")
    ev.add_argument("--dataset", help="dataset name (default: the one it was trained on)")
    ev.add_argument("--split", default="test", choices=["train", "test"])
    ev.add_argument("--data-dir", help="folder with the dataset files")
    ev.add_argument("--out", help="folder for metrics.json and confusion.png")
    ev.add_argument(
        "--tta",
        choices=["none", "hflip", "hflip_shift"],
        help="test-time augmentation (default: the checkpoint config's train.tta); "
        "hflip averages the probabilities of each image and its mirror image",
    )

    ex = sub.add_parser(
        "export",
        help="export a checkpoint's weights as safetensors for PyTorch",
        description="Write a checkpoint's weights as a .safetensors file with PyTorch's key names "
        "and layouts (Linear weights transposed to (out, in); BatchNorm running statistics and "
        "num_batches_tracked), for torch's load_state_dict on the same architecture.",
    )
    ex.add_argument("--checkpoint", required=True, help="a .npz written by nnparts train --out")
    ex.add_argument("--out", required=True, help="the .safetensors file to write")
    ex.add_argument("--overwrite", action="store_true", help="replace --out if it exists")

    for _, module in _subcommand_modules():
        module.add_parser(sub)
    return parser


def _train(args, overrides) -> int:
    from nnparts.train import config as configs
    from nnparts.train import run

    file_cfg = configs.load_file(args.config) if args.config else None
    if args.force and not args.resume:
        raise configs.ConfigError("--force only applies with --resume CHECKPOINT; drop --force")
    if args.resume and not args.config:
        from nnparts.train import checkpoint as ckpt

        _, _, meta = ckpt.load(args.resume)
        file_cfg = meta.get("config")
    cfg = configs.resolve(file_cfg, configs.parse_overrides(overrides))
    if args.show_config:
        print(configs.dump(cfg, choices=True), end="")
        return 0
    if args.resume:
        taken = run.check_resume(cfg, args.resume, force=args.force)
        if taken and not args.quiet:
            print(f"resuming with the new values of {'; '.join(taken)}")
    if args.out:
        run.prepare_out(args.out, resume=args.resume, overwrite=args.overwrite)
    else:
        print(
            "note: no --out given, so nothing is saved (no metrics.json, curves or checkpoints); "
            "add --out runs/NAME to keep them",
            file=sys.stderr,
        )
    if cfg["ensemble"]["size"] > 1:
        return _train_ensemble(cfg, args)
    metrics = run.train(
        cfg, out=args.out, quiet=args.quiet, progress=not args.no_progress, resume=args.resume
    )
    if metrics["status"] == "diverged":
        print(f"error: {metrics['message']}", file=sys.stderr)
        return 1
    if args.quiet:
        print(f"test accuracy {metrics['test_accuracy']:.4f}")
    else:
        timing = metrics["timing"]
        took = f"{timing['wall_time_seconds']:.0f} s"
        if timing.get("resumed_after_epoch") is not None:
            took += (
                f" in this process; {timing['training_seconds']:.0f} s of training over "
                f"{metrics['epochs_completed']} epochs"
            )
        print(
            f"test accuracy {metrics['test_accuracy']:.4f}  test loss {metrics['test_loss']:.4f}"
            f"  ({took})"
        )
        if metrics.get("tta"):
            tta = metrics["tta"]
            print(
                f"with test-time augmentation ({tta['method']}): test accuracy "
                f"{tta['test_accuracy']:.4f}  test loss {tta['test_loss']:.4f}"
            )
        if args.out:
            print(f"wrote {args.out}/metrics.json, curves.png, final.npz")
    return 0


def _train_ensemble(cfg, args) -> int:
    from nnparts.train import config as configs
    from nnparts.train import ensemble

    if args.resume:
        raise configs.ConfigError(
            "--resume continues one run; an ensemble (ensemble.size > 1) is trained anew: drop "
            "--resume, or resume a member with --ensemble.size 1"
        )
    e = cfg["ensemble"]
    metrics = ensemble.train_ensemble(
        cfg, e["size"], e["method"], out=args.out, quiet=args.quiet,
        progress=not args.no_progress,
    )  # fmt: skip
    ens = metrics["ensemble"]
    print(
        f"ensemble of {ens['size']} ({ens['method']}): test accuracy "
        f"{ens['test_accuracy_mean_prob']:.4f} (mean probability), {ens['test_accuracy_vote']:.4f} "
        f"(vote); members {metrics['member_test_accuracy_mean']:.4f} ± "
        f"{metrics['member_test_accuracy_std']:.4f}"
    )
    if args.out:
        print(f"wrote {args.out}/metrics.json, ensemble.json, member-*/final.npz")
    return 0


def _export(args) -> int:
    from nnparts.train import export

    info = export.export_checkpoint(args.checkpoint, args.out, overwrite=args.overwrite)
    print(
        f"wrote {args.out}: {info['tensors']} tensors, {info['parameters']:,} parameters "
        f"(model {info['model']}); load with torch's load_state_dict(safetensors.torch."
        "load_file(...)) on the same architecture"
    )
    return 0


def _evaluate(args) -> int:
    import os

    from nnparts.train import run

    if args.out:
        if os.path.isdir(args.out) and os.path.exists(os.path.join(args.out, "final.npz")):
            raise run.OutputError(
                f"--out {args.out} holds a training run, whose metrics.json evaluate would "
                f"replace; choose another folder, e.g. --out {os.path.join(args.out, 'eval')}"
            )
        run.check_out_dir(args.out)
    from nnparts.train import ensemble

    if ensemble.is_ensemble(args.checkpoint):
        metrics = ensemble.evaluate_ensemble(
            args.checkpoint, dataset=args.dataset, split=args.split, data_dir=args.data_dir,
            out=args.out, tta=args.tta,
        )  # fmt: skip
        print(
            f"{metrics['dataset']} {metrics['split']}: ensemble of {metrics['members']} "
            f"({metrics['combine']}): accuracy {metrics['accuracy']:.4f}  (members "
            f"{metrics['member_accuracy_mean']:.4f} ± {metrics['member_accuracy_std']:.4f})"
        )
        if args.out:
            print(f"wrote {args.out}/metrics.json")
        return 0
    metrics = run.evaluate(
        args.checkpoint,
        dataset=args.dataset,
        split=args.split,
        data_dir=args.data_dir,
        out=args.out,
        tta=args.tta,
    )
    print(
        f"{metrics['dataset']} {metrics['split']}"
        + (f" (test-time augmentation {metrics['tta']})" if metrics["tta"] != "none" else "")
        + f": accuracy {metrics['accuracy']:.4f}  "
        f"loss {metrics['loss']:.4f}"
    )
    if args.out:
        print(f"wrote {args.out}/metrics.json, confusion.png")
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args, rest = parser.parse_known_args(argv)
    if rest and args.command not in TAKES_OVERRIDES:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.overrides = rest  # --section.key value pairs for the commands that read a config
    from nnparts.data.idx import DataFileError
    from nnparts.train.checkpoint import CheckpointError
    from nnparts.train.config import ConfigError

    try:
        if args.command == "train":
            return _train(args, rest)
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "export":
            return _export(args)
        if args.command in SUBCOMMANDS:
            return importlib.import_module(SUBCOMMANDS[args.command]).run(args)
    except BrokenPipeError:  # `nnparts lab list | head`: the reader has gone, nothing to say
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ConfigError, CheckpointError, DataFileError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError, ImportError) as e:  # e.g. a dataset not found, disk full
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the last checkpoint (if any) is intact", file=sys.stderr)
        return 130
    parser.print_help()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
