"""Run the big array operations of a layer on all CPU cores — the faster of two ways, measured.

NumPy runs element-wise work (ReLU, BatchNorm, pooling, the copies of im2col) on one core; only
its matrix products use several, through the BLAS library's own threads. nnparts can also split
a heavy op itself: the op cuts its work into independent chunks (a range of samples, or of
channels) and :func:`parallel_for` runs them on a small pool of Python threads — NumPy releases
the GIL inside its loops, so the chunks run at the same time, with BLAS at one thread.

Which of the two is faster is not one fixed bet. It differs by op (a large matrix product is
fastest in BLAS threads, element-wise work and im2col copies only run in parallel in the pool),
by CPU (AVX2 or AVX-512 kernels, cache sizes), and by the moment: on a shared or virtual machine
waking a sleeping pool thread can cost more than the op it runs, and with another process busy
on one core, BLAS threads that wait for each other lose to chunks that can be rebalanced. So the
policy ``"auto"`` measures. The two modes are

* ``pool``: the chunks on nnparts' threads, BLAS at one thread;
* ``serial``: the same chunks one after the other on the calling thread, BLAS at all cores.

Mixing them op by op was measured and rejected: after a product in BLAS threads, OpenBLAS's
threads keep spinning for a while and slow down the next op's pool threads (about 100 ms of a
core each time, measured, even after BLAS is set back to one thread; its compile-time
``THREAD_TIMEOUT``, which ``$OPENBLAS_THREAD_TIMEOUT=4`` shortens only if set before NumPy
loads), so a per-op choice made from per-op timings ended up slower than either mode alone
(the ``cnn`` benchmark step: 160 ms mixed, 105 ms pool, 141 ms serial). ``auto`` therefore
runs *all* ops in one mode at a time, in phases of :data:`PHASE` op calls: after a warm-up it
runs each mode for
:data:`PROBES` phases, times every call site (the chunk function's code, with the op's size) in
each, and picks the mode with the smaller total — the sum over sites of calls x median time.
Then it runs that mode and, every :data:`EXPLOIT` phases (more, the slower the other mode was),
one phase of the other mode, so the choice follows the machine when its load changes. Both modes
run the same chunks and combine them in the same order; runs agree to float32 rounding.

The default is ``"pool"``, not ``"auto"``. Measured on an AMD EPYC (AVX-512, OpenBLAS SkylakeX
kernel), the pool was the fastest or within 10% of the fastest mode on the cnn and MLP
benchmarks, idle and with a busy core, and it gives bit-identical reruns; ``auto`` won on the
idle MLP (0.95x PyTorch vs 1.12x) but misjudged the modes with a busy core (the MLP step 14.0 ms
against 7.1 ms for the pool: the probes of one mode are slowed by the other mode's threads
winding down). It stays available, ``NNPARTS_THREAD_POLICY=auto``, until it is robust.

The pool also watches the machine (:class:`_LoadWatch`): while other processes keep the cores
so busy that fewer than about 1.5 are left to this one, it runs the same chunks *inline*, one
after the other on the calling thread with BLAS at one thread, and goes back to its threads when
the cores are free again. Same chunks, same BLAS kernel, same order: the numbers are the same bit
for bit, so a run does not depend on the machine's load. ``$NNPARTS_LOAD_CHECK=0`` or
:func:`set_load_check` turns that off; :func:`load_report` shows what it saw. The ``auto`` policy
does the same (its phases pause meanwhile: a mode measured on a machine whose cores are taken
says little about either mode).

``set_policy("pool")``, ``"serial"`` or ``"auto"`` sets the policy (``$NNPARTS_THREAD_POLICY``
at start-up); ``nnparts.set_num_threads(1)`` turns all of this off (plain NumPy, BLAS with its
own threads). :func:`policy_report` shows what ``auto`` measured.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

POLICIES = ("auto", "pool", "serial")
PHASE = 32  # op calls per phase of one mode
WARMUP = 32  # op calls before the first phase (workspaces, thread start-up): not timed
SETTLE = 4  # the first calls of a phase are not timed (the other mode's threads wind down)
PROBES = 2  # phases of each mode before the first choice
EXPLOIT = 32  # phases of the chosen mode between two phases of the other (x their time ratio)
WINDOW = 9  # a site's estimate for a mode: the median of its last WINDOW timed calls
PIECES = 2  # chunks per thread of an op of at least 4x min_work, pulled by whichever thread is free

_state = {
    "threads": None,
    "pool": None,
    "min_work": 1 << 18,
    "policy": None,
    "blas": None,  # threadpoolctl controller of NumPy's BLAS, or False where there is none
    "blas_threads": None,  # what the BLAS libraries are set to now (None: untouched)
    "blas_original": None,
}
_sites: dict = {}
_lock = threading.Lock()


def _cgroup_paths(proc_cgroup: str) -> dict:
    """``{"v1": path, "v2": path}``: this process's cgroup of the ``cpu`` controller (v1) and
    its unified cgroup (v2), as ``/proc/self/cgroup`` names them."""
    paths = {}
    try:
        with open(proc_cgroup, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return paths
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            paths["v2"] = path
        elif "cpu" in controllers.split(","):
            paths["v1"] = path
    return paths


def _read_quota(directory: str, version: str) -> float | None:
    """The CPU quota (in cores) set in one cgroup directory, None where none is set."""
    try:
        if version == "v2":
            with open(os.path.join(directory, "cpu.max"), encoding="ascii") as f:
                quota, period = f.read().split()[:2]
            if quota == "max":
                return None
            quota, period = int(quota), int(period)
        else:
            with open(os.path.join(directory, "cpu.cfs_quota_us"), encoding="ascii") as f:
                quota = int(f.read().strip())
            with open(os.path.join(directory, "cpu.cfs_period_us"), encoding="ascii") as f:
                period = int(f.read().strip())
    except (OSError, ValueError):
        return None
    if quota <= 0 or period <= 0:  # -1 (v1): no limit
        return None
    return quota / period


def cgroup_cpu_limit(root: str = "/sys/fs/cgroup", proc_cgroup: str = "/proc/self/cgroup"):
    """The CPU time this process's container may use, in cores (a cgroup CPU quota, as
    ``docker run --cpus=2`` or a Kubernetes CPU limit set it), or None where none is set.

    Such a quota does not show in the CPUs a process may run on (``os.sched_getaffinity`` still
    lists every core of the host), so without it a container limited to 2 cores on a 64-core
    host would start 8 threads and be throttled. Reads cgroup v2 (``cpu.max``) and v1
    (``cpu/cpu.cfs_quota_us`` over ``cpu.cfs_period_us``), at the process's own cgroup and each
    of its parents up to the root (the smallest quota counts), and at the root of the mount
    (inside a container the cgroup named by ``/proc/self/cgroup`` may not be visible)."""
    limits = []
    for version, path in _cgroup_paths(proc_cgroup).items():
        base = root if version == "v2" else os.path.join(root, "cpu")
        if version == "v2" and not os.path.exists(os.path.join(root, "cgroup.controllers")):
            unified = os.path.join(root, "unified")  # hybrid mounts: v2 under .../unified
            base = unified if os.path.isdir(unified) else base
        parts = [p for p in path.split("/") if p and p != ".."]
        dirs = [os.path.join(base, *parts[:i]) for i in range(len(parts), -1, -1)]
        for directory in dirs:
            quota = _read_quota(directory, version)
            if quota is not None:
                limits.append(quota)
    return min(limits) if limits else None


def _default_threads() -> int:
    """``$NNPARTS_NUM_THREADS``, else the CPU cores available to this process (at most 8, and at
    most its container's CPU quota rounded up: :func:`cgroup_cpu_limit`)."""
    env = os.environ.get("NNPARTS_NUM_THREADS")
    if env:
        try:
            value = int(env)
        except ValueError:
            raise ValueError(
                f"NNPARTS_NUM_THREADS must be a positive integer, got {env!r}; "
                "unset it to use all cores"
            ) from None
        return max(1, value)
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        n = os.cpu_count() or 1
    quota = cgroup_cpu_limit()
    if quota is not None:
        n = min(n, math.ceil(quota))
    return max(1, min(n, 8))


def get_num_threads() -> int:
    """Threads nnparts uses for one op (default: the CPU cores available to this process)."""
    if _state["threads"] is None:
        _state["threads"] = _default_threads()
    return _state["threads"]


def set_num_threads(n: int) -> None:
    """Use ``n`` threads for nnparts' array work (1 = plain NumPy, BLAS threads untouched)."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"number of threads must be a positive integer, got {n!r}")
    _state["threads"] = n
    if _state["pool"] is not None:
        _state["pool"].shutdown(wait=True)
        _state["pool"] = None
    _reset_auto()
    if n == 1:
        _restore_blas()
    else:
        pin_blas()


def get_policy() -> str:
    """``"pool"`` (the default), ``"serial"`` or ``"auto"`` (measure both, run the faster)."""
    if _state["policy"] is None:
        env = os.environ.get("NNPARTS_THREAD_POLICY", "pool")
        if env not in POLICIES:
            raise ValueError(
                f"NNPARTS_THREAD_POLICY must be one of {', '.join(POLICIES)}, got {env!r}"
            )
        _state["policy"] = env
    return _state["policy"]


def set_policy(policy: str) -> None:
    """How ops with several threads use the cores: ``"auto"`` (each call site measures both
    ways and keeps the faster), ``"pool"`` (always nnparts' threads, BLAS at one thread) or
    ``"serial"`` (always the calling thread, BLAS at all cores)."""
    if policy not in POLICIES:
        raise ValueError(f"unknown thread policy {policy!r}; choose one of {', '.join(POLICIES)}")
    _state["policy"] = policy
    _reset_auto()
    pin_blas()


def set_min_work(elements: int) -> None:
    """Ops on fewer elements than this run on one thread (splitting small ops costs more)."""
    _state["min_work"] = int(elements)


# -- BLAS threads ---------------------------------------------------------------------------------
def _blas():
    if _state["blas"] is None:
        try:
            from threadpoolctl import ThreadpoolController

            ctl = ThreadpoolController().select(user_api="blas")
            _state["blas"] = ctl if ctl.lib_controllers else False
        except Exception:  # pragma: no cover - threadpoolctl missing or BLAS not found
            _state["blas"] = False
        if _state["blas"]:
            _state["blas_original"] = [lib.num_threads for lib in _state["blas"].lib_controllers]
    return _state["blas"]


def _set_blas_threads(n: int) -> None:
    """BLAS at ``n`` threads (a cheap call into the library; skipped when already so)."""
    if _state["blas_threads"] == n:
        return
    ctl = _blas()
    if ctl:
        for lib in ctl.lib_controllers:
            lib.set_num_threads(n)
    _state["blas_threads"] = n


def pin_blas() -> None:
    """Under the ``"pool"`` policy with several threads, keep BLAS at one thread for *every*
    product, also those too small to split (which call NumPy directly), from the first op on.

    OpenBLAS rounds some products differently at one thread and at several (a 128x784 @ 784x512
    product differs by up to 5e-5: the threaded path blocks the 784-term sums differently). Left
    at BLAS's default until the first split op set it to one thread, the small products of a run
    ran at several threads before that op and at one after it: the first run in a process (or a
    resumed one) and a later one of the same seed differed in the last bits. Called when nnparts is
    imported and when the policy or the thread count changes."""
    if get_num_threads() > 1 and get_policy() == "pool":
        _set_blas_threads(1)


def _restore_blas() -> None:
    if _state["blas_threads"] is not None and _state["blas"]:
        for lib, n in zip(_state["blas"].lib_controllers, _state["blas_original"]):
            lib.set_num_threads(n)
    _state["blas_threads"] = None


def _pool() -> ThreadPoolExecutor:
    if _state["pool"] is None:
        _state["pool"] = ThreadPoolExecutor(get_num_threads() - 1, thread_name_prefix="nnparts")
    return _state["pool"]


# -- sites: measure both modes, keep the faster ----------------------------------------------------
class _Site:
    """One call site's recent timings in each mode."""

    __slots__ = ("name", "times", "calls")

    def __init__(self, name):
        self.name = name
        self.times = {"pool": [], "serial": []}
        self.calls = 0

    def estimate(self, mode):
        t = self.times[mode]
        return statistics.median(t) if t else float("inf")

    def record(self, mode, seconds):
        t = self.times[mode]
        t.append(seconds)
        if len(t) > WINDOW:
            del t[0]


_auto: dict = {}


def _reset_auto() -> None:
    """Forget all measurements (a new thread count or policy: start over)."""
    _sites.clear()
    _auto.update(calls=0, choice="pool", ratio=1.0, cycle_end=None, choices=0)


_reset_auto()


def _totals() -> dict:
    """Expected time of one round of every site measured in both modes, per mode."""
    both = [s for s in _sites.values() if s.times["pool"] and s.times["serial"]]
    return {m: sum(s.calls * s.estimate(m) for s in both) for m in ("pool", "serial")}


def _decide() -> None:
    totals = _totals()
    if totals["pool"] <= 0 and totals["serial"] <= 0:
        return
    best = min(totals, key=totals.get)
    other = "serial" if best == "pool" else "pool"
    _auto["choice"] = best
    _auto["ratio"] = totals[other] / max(totals[best], 1e-12)
    _auto["choices"] += 1


def _auto_mode() -> tuple[str, bool]:
    """The mode of the next op call under the auto policy, and whether to time it."""
    a = _auto
    a["calls"] += 1
    n = a["calls"] - WARMUP - 1
    if n < 0:
        return "pool", False
    phase, pos = divmod(n, PHASE)
    timed = pos >= SETTLE
    if phase < 2 * PROBES:  # probing: pool, serial, pool, serial
        return ("pool", "serial")[phase % 2], timed
    if pos == 0 and (a["cycle_end"] is None or phase >= a["cycle_end"]):
        _decide()  # at the start of each cycle: choose from everything measured so far
        a["cycle_end"] = phase + 1 + EXPLOIT * min(64, max(1, int(a["ratio"])))
    if phase == a["cycle_end"] - 1:  # the last phase of a cycle: the other mode, timed
        return ("serial" if a["choice"] == "pool" else "pool"), timed
    return a["choice"], timed


def _site(fn, total, work):
    code = getattr(fn, "__code__", None)
    key = (code if code is not None else type(fn), total, work)
    site = _sites.get(key)
    if site is None:
        name = getattr(code, "co_qualname", None) or getattr(fn, "__qualname__", repr(fn))
        with _lock:
            site = _sites.setdefault(key, _Site(f"{name} [{total} x, work {work}]"))
    return site


def auto_state():
    """A copy of what the auto policy measured so far (for :func:`set_auto_state`)."""
    return dict(_sites), dict(_auto)


def set_auto_state(state) -> None:
    """Put back measurements taken by :func:`auto_state` (e.g. after a run under another
    policy, as the benchmarks do when they interleave policies)."""
    sites, auto = state
    _sites.clear()
    _sites.update(sites)
    _auto.update(auto)


def policy_report() -> dict:
    """What the auto policy measured: the mode it runs, the expected time of one round of the
    sites in each mode (ms), how many choices it made, and per site its calls and median ms in
    each mode."""
    totals = _totals()
    sites = [
        {
            "site": site.name,
            "calls": site.calls,
            "pool_ms": round(site.estimate("pool") * 1e3, 3),
            "serial_ms": round(site.estimate("serial") * 1e3, 3),
        }
        for site in _sites.values()
    ]
    sites.sort(key=lambda r: -r["calls"] * min(r["pool_ms"], r["serial_ms"]))
    return {
        "policy": get_policy(),
        "mode": _auto["choice"] if _auto["choices"] else "probing",
        "pool_ms": round(totals["pool"] * 1e3, 3),
        "serial_ms": round(totals["serial"] * 1e3, 3),
        "choices": _auto["choices"],
        "sites": sites,
    }


# -- other processes' load: the pool steps aside when the cores are taken -------------------------
LOAD_INTERVAL = 0.5  # seconds between two looks at the machine's CPU use
INLINE_BELOW = 1.4  # cores left free by other processes below which the pool's chunks run inline
POOL_ABOVE = 1.6  # ... and above which they go back to the pool (the gap: no flapping)


def _proc_stat_busy(cpus, path="/proc/stat"):
    """``(busy seconds, cores)`` summed over the CPUs ``cpus`` from ``/proc/stat`` (user, nice,
    system, irq, softirq and steal time: a core the hypervisor gave to someone else is as taken
    as one another process runs on), or None where there is no such file."""
    try:
        with open(path, encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    busy, cores = 0, 0
    for line in lines:
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        fields = line.split()
        try:
            cpu = int(fields[0][3:])
            ticks = [int(v) for v in fields[1:9]]
        except (ValueError, IndexError):
            continue
        if cpus is not None and cpu not in cpus:
            continue
        user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
        busy += user + nice + system + irq + softirq + steal
        cores += 1
    if cores == 0:
        return None
    return busy / _clock_ticks(), cores


def _clock_ticks() -> float:
    try:
        return float(os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 100.0


def _affinity():
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return None


class _LoadWatch:
    """Whether other processes leave this one fewer than two free cores (then the pool's chunks
    run inline: one after the other on the calling thread, BLAS at one thread).

    With a core taken by another process, chunks split over two threads wait for the slower one
    and each op pays for waking a thread that the scheduler then runs late; one thread alone is
    faster (measured: the ``bench_mlp.py`` step 4.84 ms with BLAS at one thread against 5.61 ms
    with the pool, Intel Xeon AVX-512, 2 cores, one busy). The chunks are the same either way,
    so the numbers are too: a run does not depend on the machine's load, bit for bit.

    Every :data:`LOAD_INTERVAL` seconds (checked at the op calls, so a look costs one clock read
    between them) it reads the machine's busy CPU time over the cores this process may use
    (``/proc/stat``), takes away this process's own (``time.process_time``: all its threads), and
    turns the rest into the cores other processes took meanwhile; the free cores are the cores
    less that. Below :data:`INLINE_BELOW` free cores the chunks run inline, above
    :data:`POOL_ABOVE` on the pool again. Where ``/proc/stat`` cannot be read, always the pool.
    """

    def __init__(self, read=None, clock=time.monotonic, own=time.process_time):
        self.read = read if read is not None else (lambda: _proc_stat_busy(_affinity()))
        self.clock, self.own = clock, own
        self.enabled = None  # None: read $NNPARTS_LOAD_CHECK at the first op
        self.reset()

    def reset(self):
        self.last = None  # (wall, machine busy seconds, own cpu seconds)
        self.next_look = 0.0
        self.is_inline = False
        self.free = None
        self.switches = 0

    def look(self, now):
        reading = self.read()
        own = self.own()
        if reading is None:
            self.enabled = False
            self.is_inline = False
            return
        busy, cores = reading
        if self.last is not None and now > self.last[0]:
            wall = now - self.last[0]
            others = max(0.0, (busy - self.last[1]) - (own - self.last[2])) / wall
            self.free = max(0.0, cores - others)
            inline = self.free < INLINE_BELOW if not self.is_inline else self.free <= POOL_ABOVE
            if inline != self.is_inline:
                self.switches += 1
                self.is_inline = inline
        self.last = (now, busy, own)
        self.next_look = now + LOAD_INTERVAL

    def inline(self) -> bool:
        if self.enabled is None:
            env = os.environ.get("NNPARTS_LOAD_CHECK", "1").strip().lower()
            self.enabled = env not in ("0", "false", "no", "off")
        if not self.enabled:
            return False
        now = self.clock()
        if now >= self.next_look:
            self.look(now)
        return self.is_inline


_watch = _LoadWatch()


def set_load_check(enabled: bool) -> None:
    """Whether the ``"pool"`` policy runs its chunks inline while other processes take the
    cores (the default; ``$NNPARTS_LOAD_CHECK=0`` turns it off at start-up)."""
    _watch.reset()
    _watch.enabled = bool(enabled)


def load_report() -> dict:
    """What the load check saw last: whether it is on, the cores other processes left free
    (None before its second look), whether the pool's chunks run inline now, and how many
    times it switched."""
    return {
        "load_check": bool(_watch.enabled),
        "free_cores": None if _watch.free is None else round(_watch.free, 2),
        "inline": _watch.is_inline,
        "switches": _watch.switches,
    }


def _choose(fn, total, work):
    """``(mode, timed, site)`` for the next call of ``fn``'s op. Only the auto policy keeps
    call sites (and times them); a fixed policy costs one lookup."""
    policy = get_policy()
    if policy != "serial" and _watch.inline():  # other processes take the cores (auto: neither
        return "inline", False, None  # mode is measured meanwhile)
    if policy != "auto":
        return policy, False, None
    site = _site(fn, total, work)
    site.calls += 1
    mode, timed = _auto_mode()
    return mode, timed, site


def _run(total, work, fn, parts, collect):
    """Run ``fn`` on ``parts`` in the mode the site (or the policy) picks; time it."""
    mode, timed, site = _choose(fn, total, work)
    results = _execute(mode, timed, site, [functools.partial(fn, *p) for p in parts])
    return results if collect else None


def _execute(mode, timed, site, calls, whole=None):
    """Run an op's chunks, zero-argument ``calls``, in ``mode``; return their results in order.

    ``pool``: the calling thread and the pool's threads pull the chunks in turn, BLAS at one
    thread (:func:`_pull`); ``inline``: one after the other on the calling thread, BLAS at one
    thread (the same numbers); ``serial``: one after the other, BLAS at all cores, or ``whole()``
    instead where given (a product BLAS's threads take at once). Counts the call
    (:func:`pool_stats`) and, for the auto policy, times it for its site."""
    start = time.perf_counter()
    if mode == "pool":
        _set_blas_threads(1)
        results = _pull(calls)
    else:
        _set_blas_threads(1 if mode == "inline" else get_num_threads())
        results = [whole()] if mode == "serial" and whole is not None else [c() for c in calls]
    _count(mode, len(calls), start)
    if timed:
        site.record(mode, time.perf_counter() - start)
    return results


_scratch = threading.local()


def scratch(role: str, size: int, dtype):
    """The first ``size`` elements of this thread's reusable 1-D buffer for ``role`` (grown when
    too small), for arrays that live inside one op call and are never handed to the graph or
    the caller (im2col columns, GEMM blocks, BatchNorm's centred values). Each thread of the pool
    has its own; reusing them skips the page faults of freshly mapped memory, which cost as much
    as the copies themselves."""
    import numpy as np

    buffers = getattr(_scratch, "buffers", None)
    if buffers is None:
        buffers = _scratch.buffers = {}
    key = (role, np.dtype(dtype).str)
    buf = buffers.get(key)
    if buf is None or buf.size < size:
        buf = buffers[key] = np.empty(size, dtype=dtype)
    return buf[:size]


def _pull(calls):
    """Run the chunks ``calls`` on the calling thread and the pool's threads: each thread takes
    the next chunk nobody has taken until none is left; return the results in chunk order.

    Waking a pool thread takes 60-240 us on a virtual machine, more when its core is busy with
    another process, and two cores do not run equally fast from one moment to the next. With one
    fixed chunk per thread the calling thread waited for the late one; pulling, it runs the
    chunks the other has not reached (an op with :data:`PIECES` chunks per thread: a late or slow
    pool thread costs at most about one chunk's time), and a pool thread that has not started by
    the time all chunks are taken is not waited for at all (counted as taken back). Which thread
    runs which chunk changes nothing else: same chunks, same function, BLAS at one thread,
    results combined in chunk order, so the numbers are the same bit for bit.
    """
    n = len(calls)
    results = [None] * n
    order = itertools.count()  # next() on an itertools.count is atomic under the GIL

    def work():
        for i in order:
            if i >= n:
                return
            results[i] = calls[i]()

    pool = _pool()
    helpers = [pool.submit(work) for _ in range(min(get_num_threads() - 1, n - 1))]
    try:
        work()
    finally:
        for helper in helpers:
            if helper.cancel():  # never started: the calling thread ran its share
                _stats["taken_back"] += 1
            elif helper.done():
                helper.result()
            else:
                start = time.perf_counter()
                helper.result()
                _stats["wait_s"] += time.perf_counter() - start
    return results


_stats: dict = {}


def _reset_stats() -> None:
    _stats.update(
        {"pool_ops": 0, "inline_ops": 0, "serial_ops": 0, "handed": 0, "taken_back": 0,
         "wait_s": 0.0, "pool_s": 0.0}
    )  # fmt: skip


_reset_stats()


def _count(mode: str, parts: int, start: float) -> None:
    """Count one op call of ``mode`` (the calling thread only: no lock needed)."""
    _stats[mode + "_ops"] += 1
    if mode == "pool":
        _stats["handed"] += min(get_num_threads() - 1, parts - 1)  # the helpers of _pull
        _stats["pool_s"] += time.perf_counter() - start


def pool_stats(reset: bool = False) -> dict:
    """Where the pool's time goes, since the last reset: op calls per mode (``pool``, ``inline``
    while other processes take the cores, ``serial``), the pool threads asked to help ("chunks
    handed", one per helping thread and op) and how many of them had not started by the time the
    calling thread had run every chunk itself ("taken back"), and how long the calling thread
    waited for pool threads to finish theirs — in all, per pool op call,
    and as a share of the pool ops' time. Waits that are a large share of small ops mean that
    waking a thread costs more than the op gains from it (e.g. an MLP's sub-millisecond
    products); many take-backs mean the pool's threads find their cores busy."""
    st = dict(_stats)
    ops = st["pool_ops"]
    report = {
        "pool_ops": ops,
        "inline_ops": st["inline_ops"],
        "serial_ops": st["serial_ops"],
        "chunks_handed": st["handed"],
        "taken_back": st["taken_back"],
        "taken_back_pct": round(100.0 * st["taken_back"] / st["handed"], 1)
        if st["handed"]
        else 0.0,
        "pool_ms": round(st["pool_s"] * 1e3, 3),
        "wait_ms": round(st["wait_s"] * 1e3, 3),
        "wait_us_per_pool_op": round(st["wait_s"] * 1e6 / ops, 1) if ops else 0.0,
        "wait_pct_of_pool_time": round(100.0 * st["wait_s"] / st["pool_s"], 1)
        if st["pool_s"]
        else 0.0,
    }
    if reset:
        _reset_stats()
    return report


def parallel_for(total: int, work: int, fn) -> None:
    """Call ``fn(start, stop)`` on chunks of ``range(total)``, on several threads when ``work``
    (elements touched) is large enough. Chunks must write disjoint outputs."""
    threads = get_num_threads()
    if threads == 1 or total < 2 or work < _state["min_work"]:
        fn(0, total)
        return
    _run(total, work, fn, op_chunks(total, work, threads), collect=False)


def parallel_map(total: int, work: int, fn) -> list:
    """Like :func:`parallel_for` but returns the list of ``fn(start, stop)`` results in order.

    The chunks depend only on ``total``, ``work`` and the thread count, not on the mode or on
    which thread runs which, so sums of the results come out the same in either mode."""
    threads = get_num_threads()
    if threads == 1 or total < 2 or work < _state["min_work"]:
        return [fn(0, total)]
    return _run(total, work, fn, op_chunks(total, work, threads), collect=True)


def op_chunks(total: int, work: int, threads: int) -> list[tuple[int, int]]:
    """The chunks of an op split over ``threads``: :data:`PIECES` per thread when ``work`` is at
    least four times the smallest op that is split, else one (smaller chunks would cost more in
    calls than they save in waits). Measured step by step in one process on an AMD EPYC (Zen 4,
    AVX-512), two pulled chunks per thread (and the convolutions' equal chunks) against one fixed
    chunk per thread: the fast network's step 2-8% faster (four runs), ``cnn`` 4%, ResNet 1%."""
    per = PIECES if work >= 4 * _state["min_work"] else 1
    return chunks(total, threads * per)


def parallel_tasks(work: int, *tasks) -> list:
    """Run independent zero-argument callables at the same time; return their results."""
    if get_num_threads() == 1 or work < _state["min_work"] or len(tasks) < 2:
        return [task() for task in tasks]

    mode, timed, site = _choose(tasks[0], len(tasks), work)
    return _execute(mode, timed, site, list(tasks))


def chunks(total: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous ranges covering ``range(total)`` (sizes differ by at most one)."""
    parts = max(1, min(parts, total))
    bounds = [total * i // parts for i in range(parts + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(parts)]


def matmul(a, b, out=None):
    """``a @ b`` for 2-D arrays: in pool mode the rows of ``a`` (or columns of ``b``) are split
    over threads; in serial mode BLAS's own threads take the whole product."""
    import numpy as np

    n, k = a.shape
    m = b.shape[1]
    if out is None:
        out = np.empty((n, m), dtype=np.result_type(a, b))
    work = n * k * m // 64
    threads = get_num_threads()
    if threads == 1 or work < _state["min_work"]:
        np.matmul(a, b, out=out)
        return out
    # Each thread packs (copies into BLAS's blocked layout) all of the operand it does not
    # split: row blocks of ``a`` make every thread pack all of ``b`` (k x m), column blocks of
    # ``b`` all of ``a`` (n x k). Split the larger one. An MLP's forward (128 x 784 @ 784 x 512)
    # split by columns ran its SGD step in 3.7 ms against 4.1 by rows (Intel Xeon, SkylakeX
    # kernel), with the same numbers.
    rows = n >= m

    def block(s, e):
        if s == 0 and e == (n if rows else m):
            np.matmul(a, b, out=out)
        elif rows:
            np.matmul(a[s:e], b, out=out[s:e])
        else:
            np.matmul(a, b[:, s:e], out=out[:, s:e])

    length = n if rows else m
    mode, timed, site = _choose(block, length, work)
    # serial: one product in BLAS's threads; equal to the blocks' up to float rounding (OpenBLAS's
    # Haswell sgemm rounds a 20-row block and the whole 40 rows differently)
    blocks = [functools.partial(block, *p) for p in chunks(length, threads)]
    _execute(mode, timed, site, blocks, whole=functools.partial(block, 0, length))
    return out
