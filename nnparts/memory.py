"""Keep freed array memory for reuse instead of handing it back to the OS after every op.

A training step allocates and frees the same large arrays again and again: each layer's output,
its gradient, BatchNorm's and pooling's temporaries (megabytes each at batch 128-256). glibc's
``malloc`` serves a block above its *mmap threshold* with a fresh ``mmap`` and returns it to the
kernel on ``free``; the next step's array then starts on fresh pages, and the kernel takes a page
fault and zeroes a page for every 4 KiB first touched. Its threshold adapts upward, but freed
memory at the top of the heap is still trimmed back to the kernel above the *trim threshold*,
with the same faults on the next step. Those faults cost as much as a real pass over the data:
measured on the fast network's training step (batch 128, Intel Xeon with AVX-512, 2 cores),
105-116 ms with glibc's defaults, 96.6 ms with the mmap threshold at its maximum (32 MiB), and
87 ms with the trim threshold raised as well — 20% of the whole step, most of it in max-pooling's
backward (13 -> 9 ms) and the convolutions.

:func:`tune_malloc` (called when nnparts is imported, on Linux with glibc) sets

* ``M_MMAP_THRESHOLD`` to 32 MiB, glibc's upper limit: blocks below it come from the heap,
  whose freed memory is reused by the next allocation;
* ``M_TRIM_THRESHOLD`` to 256 MiB: up to that much free memory stays mapped at the top of the
  heap instead of being returned to the kernel after each free.

The price: a process keeps up to 256 MiB of freed memory mapped (reused, not leaked) and its
resident size does not shrink back after a peak. Peak memory is unchanged (``benchmarks/``
measures it). Set ``NNPARTS_TUNE_MALLOC=0`` before importing nnparts to leave ``malloc`` as it
is. The setting is per process and also applies to everything else in it (NumPy, PyTorch).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit glibc: the largest allowed
TRIM_THRESHOLD = 256 << 20

_applied: dict = {}


def tune_malloc(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Set glibc's mmap and trim thresholds (see the module docstring); returns whether both
    settings were applied (False off Linux, on another C library, or when
    ``$NNPARTS_TUNE_MALLOC`` is ``0``)."""
    if os.environ.get("NNPARTS_TUNE_MALLOC", "1").strip() in ("0", "false", "no", "off"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    ok = mallopt(M_MMAP_THRESHOLD, int(mmap_threshold)) == 1
    ok = mallopt(M_TRIM_THRESHOLD, int(trim_threshold)) == 1 and ok
    _applied.update(mmap_threshold=mmap_threshold, trim_threshold=trim_threshold, ok=ok)
    return ok


def malloc_settings() -> dict:
    """What :func:`tune_malloc` set in this process (empty if it did not run or was disabled)."""
    return dict(_applied)
