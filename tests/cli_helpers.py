"""Running ``nnparts`` as a user does (a subprocess) and checking what they would see."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

#: A run of a few seconds: 150 training images, one epoch, a 16-unit MLP.
TINY = [
    "--data.train_subset", "200", "--data.val_size", "50", "--data.test_subset", "100",
    "--train.epochs", "1", "--model.hidden", "[16]", "--no-progress", "--data.download", "false",
]  # fmt: skip


def nnparts(*args, cwd, timeout=300, env=None) -> subprocess.CompletedProcess:
    """``python -m nnparts.cli ARGS`` in ``cwd`` with a private cache directory."""
    full_env = dict(os.environ, XDG_CACHE_HOME=str(Path(cwd) / ".cache"), COLUMNS="200")
    full_env.pop("NNPARTS_DATA", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "nnparts.cli", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def snapshot(*roots) -> dict:
    """Every file under ``roots`` -> its bytes (to check nothing was changed)."""
    files = {}
    for root in roots:
        root = Path(root)
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in paths:
            if ".cache" not in p.parts:
                files[str(p)] = p.read_bytes()
    return files


def assert_error(result, code: int, *needles: str):
    """Exit ``code``, no traceback, one ``error:`` line on stderr that holds every needle."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]
