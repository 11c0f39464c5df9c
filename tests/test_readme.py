"""The README's two set-up commands, run as a user would, in a fresh virtualenv (slow)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block, "README.md must open with a ```bash block holding the set-up commands"
    commands = [
        line
        for line in block.group(1).splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert len(commands) == 2, commands
    return commands


def test_readme_opens_with_install_train_and_test_commands():
    train, test = readme_commands()
    assert "pip install" in train and train.rstrip().endswith("nnparts train")
    assert "pip install" in test and "pytest" in test and "[test" in test


def _copy_project(dest: Path) -> Path:
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in files:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, target)
    return dest


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("NNPARTS_NESTED_README") == "1", reason="already nested")
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git to list the project files")
def test_readme_commands_work_in_a_fresh_virtualenv(tmp_path, fashion_dir):
    project = _copy_project(tmp_path / "project")
    train, test = readme_commands()
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join(
        p for p in env["PATH"].split(os.pathsep) if ".venv" not in p and "venv/bin" not in p
    )
    env["NNPARTS_NESTED_README"] = "1"
    result = subprocess.run(
        ["bash", "-c", train], cwd=project, env=env, capture_output=True, text=True, timeout=1200
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    match = re.search(r"test accuracy (0\.\d+)", result.stdout)
    assert match, result.stdout[-2000:]
    assert float(match.group(1)) >= 0.85
    # the second command, with pytest narrowed to one quick file (the full suite is this run)
    quick = test.replace(" tests", " tests/test_train_config.py")
    result = subprocess.run(
        ["bash", "-c", quick], cwd=project, env=env, capture_output=True, text=True, timeout=1200
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout
    assert sys.version_info >= (3, 10)


def test_readme_python_example_runs(capsys):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```python\n(.*?)```", text, re.S)
    assert block, "README.md has a ```python example"
    exec(compile(block.group(1), "README.md", "exec"), {})
    assert capsys.readouterr().out.strip() == "True"  # its gradcheck line
