"""Run the big array operations of a layer on all CPU cores.

NumPy runs element-wise work (ReLU, BatchNorm, pooling, the copies of im2col) on one core; only
its matrix products use several, through the BLAS library's own threads. Those BLAS threads also
keep spinning for a while after each product, so a second thread of ours that starts right after
a product finds its core busy. nnparts therefore splits the heavy ops itself: a layer cuts its
work into independent chunks (a range of samples, or of channels) and :func:`parallel_for` runs
them on a small pool of Python threads — NumPy releases the GIL inside its loops, so the chunks
run at the same time. While nnparts computes with more than one thread, the BLAS library is kept
to one thread (with ``threadpoolctl``), and matrix products are split the same way.

``nnparts.set_num_threads(1)`` turns all of this off (plain NumPy, BLAS with its own threads).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

_state = {"threads": None, "pool": None, "blas_limited": False, "min_work": 1 << 18}


def _default_threads() -> int:
    """``$NNPARTS_NUM_THREADS``, else the CPU cores available to this process (at most 8)."""
    env = os.environ.get("NNPARTS_NUM_THREADS")
    if env:
        return max(1, int(env))
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def get_num_threads() -> int:
    """Threads nnparts uses for one op (default: the CPU cores available to this process)."""
    if _state["threads"] is None:
        _state["threads"] = _default_threads()
    return _state["threads"]


def set_num_threads(n: int) -> None:
    """Use ``n`` threads for nnparts' array work (1 = plain NumPy, BLAS threads untouched)."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"number of threads must be a positive integer, got {n!r}")
    _state["threads"] = n
    if _state["pool"] is not None:
        _state["pool"].shutdown(wait=True)
        _state["pool"] = None
    if n == 1 and _state["blas_limited"]:
        _state["blas_limited"].restore_original_limits()
        _state["blas_limited"] = False


def set_min_work(elements: int) -> None:
    """Ops on fewer elements than this run on one thread (splitting small ops costs more)."""
    _state["min_work"] = int(elements)


def _pool() -> ThreadPoolExecutor:
    if _state["pool"] is None:
        _state["pool"] = ThreadPoolExecutor(get_num_threads() - 1, thread_name_prefix="nnparts")
    if not _state["blas_limited"]:
        try:
            from threadpoolctl import threadpool_limits

            _state["blas_limited"] = threadpool_limits(1, user_api="blas")
        except ImportError:  # pragma: no cover - threadpoolctl is a dependency
            _state["blas_limited"] = True
    return _state["pool"]


def chunks(total: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous ranges covering ``range(total)`` (sizes differ by at most one)."""
    parts = max(1, min(parts, total))
    bounds = [total * i // parts for i in range(parts + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(parts)]


def parallel_for(total: int, work: int, fn) -> None:
    """Call ``fn(start, stop)`` on chunks of ``range(total)``, on several threads when ``work``
    (elements touched) is large enough. Chunks must write disjoint outputs."""
    threads = get_num_threads()
    if threads == 1:
        fn(0, total)
        return
    pool = _pool()  # also keeps BLAS to one thread, small ops included: same numbers every run
    if total < 2 or work < _state["min_work"]:
        fn(0, total)
        return
    parts = chunks(total, threads)
    futures = [pool.submit(fn, a, b) for a, b in parts[1:]]
    fn(*parts[0])
    for f in futures:
        f.result()


def parallel_map(total: int, work: int, fn) -> list:
    """Like :func:`parallel_for` but returns the list of ``fn(start, stop)`` results in order."""
    threads = get_num_threads()
    if threads == 1:
        return [fn(0, total)]
    pool = _pool()
    if total < 2 or work < _state["min_work"]:
        return [fn(0, total)]
    parts = chunks(total, threads)
    futures = [pool.submit(fn, a, b) for a, b in parts[1:]]
    first = fn(*parts[0])
    return [first] + [f.result() for f in futures]


def parallel_tasks(work: int, *tasks) -> list:
    """Run independent zero-argument callables at the same time; return their results."""
    if get_num_threads() == 1:
        return [task() for task in tasks]
    pool = _pool()
    if work < _state["min_work"] or len(tasks) < 2:
        return [task() for task in tasks]
    futures = [pool.submit(task) for task in tasks[1:]]
    first = tasks[0]()
    return [first] + [f.result() for f in futures]


def matmul(a, b, out=None):
    """``a @ b`` for 2-D arrays, the rows of ``a`` (or columns of ``b``) split over threads."""
    import numpy as np

    n, k = a.shape
    m = b.shape[1]
    if out is None:
        out = np.empty((n, m), dtype=np.result_type(a, b))
    work = n * k * m // 64
    # row blocks of ``a`` write contiguous row blocks of ``out`` (BLAS-friendly); column blocks
    # of ``b`` only when ``a`` has too few rows to share
    if n >= 16 * get_num_threads() or n >= m:
        parallel_for(n, work, lambda s, e: np.matmul(a[s:e], b, out=out[s:e]))
    else:
        parallel_for(m, work, lambda s, e: np.matmul(a, b[:, s:e], out=out[:, s:e]))
    return out
