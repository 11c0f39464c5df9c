"""Shared test fixtures."""

from __future__ import annotations

import os

import numpy as np
import pytest

FASHION_DIR = "/usr/share/datasets/fashion-mnist"

# Bit-identical reruns (same seed, resume) need one fixed way of splitting the work: the opt-in
# "auto" thread policy picks the mode by timing, which reproduces a run to float rounding but not
# bit for bit. "pool" is the library's default too; pinning it here keeps the tests independent
# of $NNPARTS_THREAD_POLICY. Tests of the auto policy (test_threads.py) set it explicitly. Set at
# import, so subprocesses (the CLI tests) inherit it.
os.environ.setdefault("NNPARTS_THREAD_POLICY", "pool")
# The pool's load check runs chunks inline while other processes take the cores (pytest-xdist's
# other worker, here): the numbers do not change, but tests that check which thread ran a chunk
# would follow the machine's load. Off here; test_threads.py tests it with readings it makes up.
os.environ.setdefault("NNPARTS_LOAD_CHECK", "0")


@pytest.fixture
def rng():
    """A seeded generator: every test sees the same numbers."""
    return np.random.default_rng(1234)


@pytest.fixture
def torch32():
    """PyTorch at float32, its own default (the session's ``torch`` fixture switches the default
    dtype to float64; the benchmarks' twins of nnparts' networks are float32 like nnparts)."""
    torch = pytest.importorskip(
        "torch", reason="PyTorch reference not installed (pip install -e '.[test]')"
    )
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    yield torch
    torch.set_default_dtype(before)


@pytest.fixture(scope="session")
def torch():
    """PyTorch, the test-time reference (float64 comparisons)."""
    torch = pytest.importorskip(
        "torch", reason="PyTorch reference not installed (pip install -e '.[test]')"
    )
    torch.set_default_dtype(torch.float64)
    return torch


@pytest.fixture(scope="session")
def fashion_dir():
    """Directory with the real Fashion-MNIST IDX files (Debian's dataset-fashion-mnist)."""
    path = os.environ.get("NNPARTS_FASHION_DIR", FASHION_DIR)
    if not os.path.exists(os.path.join(path, "t10k-labels-idx1-ubyte.gz")):
        pytest.skip(
            f"real Fashion-MNIST not found in {path} (apt-get install dataset-fashion-mnist)"
        )
    return path
