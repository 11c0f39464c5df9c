"""What every benchmark here shares: the machine header, threading policies and a busy core.

* :func:`header` names the CPU (model, cores, AVX2/AVX-512), the BLAS library NumPy uses and the
  kernel it picked (``threadpoolctl``: OpenBLAS ``Haswell``, ``SkylakeX``, ``Zen``...), NumPy's
  and PyTorch's versions and thread counts — ratios differ between machines, so every output
  says which machine it came from.
* :data:`POLICIES` are the ways nnparts can use the cores, switchable inside one process so a
  benchmark can interleave them (rounds of ``policy A, policy B, ...``) and slow phases of a
  shared machine hit all of them alike:

  - ``default``: what nnparts does unless told otherwise (:mod:`nnparts.threads`);
  - ``pool``: every op split over nnparts' thread pool, BLAS at one thread;
  - ``pool-off``: nnparts' pool off, plain NumPy; BLAS runs its own threads;
  - ``blas1``: nnparts' pool off and BLAS at one thread (one core in all).

* :class:`BusyCore` runs a process that keeps one core busy (a spinning loop) while it is
  open: users' machines are rarely idle.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import platform
import statistics

POLICIES = ("default", "pool", "pool-off", "blas1")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    if "avx512f" in flags:
                        return "AVX-512"
                    return "AVX2" if "avx2" in flags else "no AVX2"
    except OSError:
        pass
    return "?"


def blas_info() -> str:
    """``openblas 0.3.31 (SkylakeX kernel, pthreads)`` for NumPy's BLAS."""
    import numpy as np
    from threadpoolctl import threadpool_info

    np.ones((8, 8), np.float32) @ np.ones((8, 8), np.float32)  # make sure BLAS is loaded
    for lib in threadpool_info():
        if lib.get("user_api") == "blas" and "numpy" in lib.get("filepath", ""):
            arch = lib.get("architecture") or "?"
            layer = lib.get("threading_layer") or "?"
            return f"{lib['internal_api']} {lib['version']} ({arch} kernel, {layer})"
    for lib in threadpool_info():
        if lib.get("user_api") == "blas":
            return f"{lib['internal_api']} {lib['version']} ({lib.get('architecture')} kernel)"
    return "BLAS unknown"


def header() -> str:
    import numpy as np

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    line = (
        f"machine: {cpu_model()} ({cores} cores, {cpu_flags()}); BLAS: {blas_info()}; "
        f"numpy {np.__version__}"
    )
    try:
        import torch

        line += f"; torch {torch.__version__} ({torch.get_num_threads()} threads)"
    except ImportError:
        pass
    return line


_blas_limit = {"ctx": None}


def apply_policy(policy: str) -> None:
    """Switch nnparts (and NumPy's BLAS) to ``policy``, in this process, at once."""
    import nnparts
    from nnparts import threads

    if policy not in POLICIES:
        raise SystemExit(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if _blas_limit["ctx"] is not None:
        _blas_limit["ctx"].restore_original_limits()
        _blas_limit["ctx"] = None
    cores = threads._default_threads()
    if policy == "default":
        threads.set_policy("auto")
        nnparts.set_num_threads(cores)
    elif policy == "pool":
        threads.set_policy("pool")
        nnparts.set_num_threads(cores)
    else:
        nnparts.set_num_threads(1)
        if policy == "blas1":
            from threadpoolctl import threadpool_limits

            _blas_limit["ctx"] = threadpool_limits(1, user_api="blas")


def median(values) -> float:
    return statistics.median(values)


def _spin(stop):
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


class BusyCore(contextlib.AbstractContextManager):
    """``with BusyCore(): ...`` keeps one core busy with a spinning process meanwhile."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.proc = None

    def __enter__(self):
        if self.enabled:
            ctx = multiprocessing.get_context("spawn")
            self.stop = ctx.Event()
            self.proc = ctx.Process(target=_spin, args=(self.stop,), daemon=True)
            self.proc.start()
        return self

    def __exit__(self, *exc):
        if self.proc is not None:
            self.stop.set()
            self.proc.join(5)
            if self.proc.is_alive():
                self.proc.terminate()
            self.proc = None
        return False
