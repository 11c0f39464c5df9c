"""What every benchmark here shares: the machine header, threading policies and a busy core.

* :func:`header` names the CPU (model, cores, AVX2/AVX-512), the BLAS library NumPy uses and the
  kernel it picked (``threadpoolctl``: OpenBLAS ``Haswell``, ``SkylakeX``, ``Zen``...), NumPy's
  and PyTorch's versions and thread counts — ratios differ between machines, so every output
  says which machine it came from.
* :data:`POLICIES` are the ways nnparts can use the cores, switchable inside one process so a
  benchmark can interleave them (rounds of ``policy A, policy B, ...``) and slow phases of a
  shared machine hit all of them alike:

  - ``default``: what nnparts does unless told otherwise (:mod:`nnparts.threads`: its pool,
    every heavy op split over nnparts' threads with BLAS at one thread);
  - ``auto``: nnparts' measuring policy (all ops in the faster of pool / serial-with-BLAS-
    threads, probed while it runs);
  - ``pool-off``: nnparts' pool off, plain NumPy; BLAS runs its own threads;
  - ``blas1``: nnparts' pool off and BLAS at one thread (one core in all).

* :class:`BusyCore` runs a process that keeps one core busy (a spinning loop) while it is
  open: users' machines are rarely idle. :data:`LOADS` names the two conditions, ``idle`` and
  ``busy`` (the measurements inside ``with BusyCore():``).
* :func:`interleave` times nnparts and PyTorch under every (load, policy): per load, rounds in
  which each policy in turn gets a block of nnparts steps and a block of torch steps;
  :func:`summarize` turns the step times into medians, ratios and the verdict "is the default
  within 5% of the best policy", :func:`format_summary` into a table, :func:`write_json` into a
  file. :func:`add_arguments` and :func:`parse_settings` give every script the same
  ``--policies``, ``--load``, ``--rounds``, ``--block`` and ``--json`` options.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import platform
import statistics
import tempfile
import time

POLICIES = ("default", "auto", "pool-off", "blas1")
LOADS = ("idle", "busy")
TOLERANCE_PCT = 5.0  # the default policy must be within this of the best policy


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
DEFAULT_POLICY = os.environ.get("NNPARTS_THREAD_POLICY", "pool")  # nnparts' default
_auto_sites: dict = {}  # the default policy's measurements, kept while another policy runs


def apply_policy(policy: str) -> None:
    """Switch nnparts (and NumPy's BLAS) to ``policy``, in this process, at once.

    Switching clears the call-site measurements of nnparts' ``"auto"`` policy; they are kept
    aside while another policy runs and put back when ``auto`` returns, so that interleaving
    policies does not make the default re-measure every site in every block (which a real run,
    with one policy throughout, never does). :func:`forget_default_measurements` drops them.
    """
    import nnparts
    from nnparts import threads

    if policy not in POLICIES:
        raise SystemExit(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if threads.get_policy() == "auto" and threads.get_num_threads() > 1:
        _auto_sites["state"] = threads.auto_state()
    if _blas_limit["ctx"] is not None:
        _blas_limit["ctx"].restore_original_limits()
        _blas_limit["ctx"] = None
    cores = threads._default_threads()
    if policy in ("default", "auto"):
        threads.set_policy("auto" if policy == "auto" else DEFAULT_POLICY)
        if threads.get_num_threads() != cores:  # keeps the pool's threads alive otherwise
            nnparts.set_num_threads(cores)
        if policy == "auto" and "state" in _auto_sites:
            threads.set_auto_state(_auto_sites["state"])
    else:
        nnparts.set_num_threads(1)
        if policy == "blas1":
            from threadpoolctl import threadpool_limits

            _blas_limit["ctx"] = threadpool_limits(1, user_api="blas")


def forget_default_measurements() -> None:
    """Make the next ``apply_policy("auto")`` start measuring its call sites afresh."""
    from nnparts import threads

    _auto_sites.clear()
    threads.set_policy(threads.get_policy())  # clears the live measurements too


def median(values) -> float:
    return statistics.median(values)


def _spin(stop, parent):
    """Spin until told to stop, or until the benchmark that started it is gone (killed: a
    spinner left behind would slow down everything run after it)."""
    x = 0
    while not stop.is_set() and os.getppid() == parent:
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
            self.proc = ctx.Process(target=_spin, args=(self.stop, os.getpid()), daemon=True)
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


# -- interleaved measurement -----------------------------------------------------------------------
def add_arguments(parser, rounds: int, block: int) -> None:
    """The options every benchmark shares: which policies and loads, how many rounds, JSON."""
    parser.add_argument(
        "--policies", default=",".join(POLICIES),
        help=f"comma list of nnparts threading policies to compare ({', '.join(POLICIES)})",
    )  # fmt: skip
    parser.add_argument(
        "--load", default=",".join(LOADS),
        help="comma list: idle (nothing else running), busy (one core kept busy meanwhile)",
    )  # fmt: skip
    parser.add_argument(
        "--rounds", type=int, default=rounds,
        help="rounds per load; in each, every policy times one block of each library",
    )  # fmt: skip
    parser.add_argument("--block", type=int, default=block, help="steps per timed block")
    parser.add_argument("--json", metavar="PATH", help="also write the medians and ratios here")


def _choices(parser, text: str, choices, what: str) -> list:
    chosen = [c.strip() for c in text.split(",") if c.strip()]
    for c in chosen:
        if c not in choices:
            parser.error(f"unknown {what} {c!r}; choose from {', '.join(choices)}")
    if not chosen:
        parser.error(f"no {what} given; choose from {', '.join(choices)}")
    return chosen


def parse_settings(parser, args) -> tuple[list, list]:
    """``(policies, loads)`` from ``--policies`` and ``--load``; bad names end the script."""
    if args.rounds < 1 or args.block < 1:
        parser.error(f"--rounds and --block must be >= 1, got {args.rounds} and {args.block}")
    policies = _choices(parser, args.policies, POLICIES, "policy")
    loads = _choices(parser, args.load, LOADS, "load")
    return policies, loads


def time_block(step, ks) -> list:
    """Seconds of each ``step(k)`` for ``k`` in ``ks``."""
    times = []
    for k in ks:
        start = time.perf_counter()
        step(k)
        times.append(time.perf_counter() - start)
    return times


def _load_average() -> str:
    """The 1-minute load average, ``"?"`` where unknown: an "idle" phase on a machine that
    other people use may not be idle."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except (AttributeError, OSError):
        return "?"


def _settle_default(step, k: int, block: int, limit: int = 200) -> int:
    """Run nnparts' steps under the auto policy until it has made its first
    choice (probing each mode takes a few hundred op calls; a training run of thousands of
    steps amortizes that, a benchmark of a few dozen would mostly time the probing)."""
    from nnparts import threads

    done = 0
    while threads.get_policy() == "auto" and not threads.policy_report()["choices"]:
        if done >= limit:
            break
        time_block(step, range(k, k + block))
        k += block
        done += block
    return k


def interleave(steps: dict, policies, loads, rounds: int, block: int, log=None) -> dict:
    """Step times of each library of ``steps`` (``{"nnparts": step, "torch": step}``, each
    ``step(k)`` one training step on batch ``k``) under every load and policy.

    For each load (``busy``: inside one :class:`BusyCore`), after one untimed block per policy
    (the default policy measures its call sites then, threads and buffers start), ``rounds``
    rounds run; in each, every policy in turn is applied and times a block of ``block`` steps of
    each library, on the same batches. The policies' order rotates from round to round and
    which library goes first alternates, so that slow phases of a shared machine hit all
    settings alike, while each library still runs several steps in a row (alternating every
    step would let one library's idle threads, which spin after each parallel region, steal
    CPU from the other). PyTorch keeps its threads throughout: its blocks in every slot are the
    same reference, measured each time so that drift hits both sides of a ratio.

    Returns ``{load: {policy: {library: [seconds, ...]}}}``; nnparts is left on ``default``.
    """
    from nnparts import threads

    libraries = list(steps)
    times = {load: {p: {lib: [] for lib in libraries} for p in policies} for load in loads}
    k = 0
    for load in loads:
        start, load_average = time.perf_counter(), _load_average()
        inline = []  # per timed block of the default policy: did the pool's load check run its
        # chunks inline (other processes taking the cores)?
        waits = dict.fromkeys(("pool_ops", "inline_ops", "chunks_handed", "taken_back"), 0)
        waits.update(pool_ms=0.0, wait_ms=0.0)  # the pool's waits in the default's timed blocks
        with BusyCore(load == "busy"):
            forget_default_measurements()
            for policy in policies:  # warm-up
                apply_policy(policy)
                for lib in libraries:
                    time_block(steps[lib], range(k, k + block))
                k += block
                if policy == "auto":  # until auto has probed both modes once, as a
                    k = _settle_default(steps["nnparts"], k, block)  # real run soon has
            for r in range(rounds):
                order = policies[r % len(policies) :] + policies[: r % len(policies)]
                for policy in order:
                    apply_policy(policy)
                    threads.pool_stats(reset=True)
                    for lib in libraries if r % 2 == 0 else libraries[::-1]:
                        times[load][policy][lib] += time_block(steps[lib], range(k, k + block))
                    k += block
                    if policy == "default":
                        inline.append(threads.load_report())
                        stats = threads.pool_stats()
                        for key in waits:
                            waits[key] += stats[key]
        if log is not None:
            log(f"  {load}: {rounds} rounds x {len(policies)} policies x {block} steps per "
                f"library in {time.perf_counter() - start:.0f} s (load average before: "
                f"{load_average})")  # fmt: skip
            if inline and DEFAULT_POLICY == "pool" and inline[-1]["load_check"]:
                log(f"  {load}: the default ran its chunks inline (other processes taking the "
                    f"cores) in {sum(r['inline'] for r in inline)} of {len(inline)} blocks; free "
                    f"cores last seen {inline[-1]['free_cores']}")  # fmt: skip
            if waits["pool_ops"] or waits["inline_ops"]:
                ops = max(1, waits["pool_ops"])
                log(f"  {load}: the default's op calls: {waits['pool_ops']} on the pool, "
                    f"{waits['inline_ops']} inline; pool threads asked to help "
                    f"{waits['chunks_handed']} times, not started before the calling thread had "
                    f"run every chunk {waits['taken_back']} times; waiting "
                    f"for pool threads: {1e3 * waits['wait_ms'] / ops:.0f} us per pool op call, "
                    f"{100 * waits['wait_ms'] / max(waits['pool_ms'], 1e-9):.0f}% of their time"
                    )  # fmt: skip
    apply_policy("default")
    return times


def summarize(times: dict, ours: str = "nnparts", theirs: str = "torch") -> dict:
    """Medians (ms), ratios and, per load, how far the default policy is from the best one.

    The policies are compared by their ratio ``ours / theirs`` (torch measured in the same
    slots, so a slow phase that hit both cancels out); ``gap_pct`` is
    ``100 * (ratio(default) / ratio(best) - 1)``, ``ok`` whether it is within
    :data:`TOLERANCE_PCT`. The same comparison by nnparts' median alone is given too
    (``best_by_nnparts_ms``, ``gap_pct_by_nnparts_ms``): where torch's own times jump between
    slots (its threads spin-wait when other processes take the cores) the two can differ.
    """
    out = {"cells": {}, "verdict": {}}
    for load, by_policy in times.items():
        cells = {}
        for policy, t in by_policy.items():
            m_ours, m_theirs = median(t[ours]), median(t[theirs])
            cells[policy] = {
                f"{ours}_ms": m_ours * 1e3,
                f"{theirs}_ms": m_theirs * 1e3,
                "ratio": m_ours / m_theirs,
                "steps": len(t[ours]),
            }
        out["cells"][load] = cells
        if "default" in cells:
            verdict = _gap(cells, "ratio")
            verdict["ok"] = verdict["gap_pct"] <= TOLERANCE_PCT
            alone = _gap(cells, f"{ours}_ms")
            verdict[f"best_by_{ours}_ms"] = alone["best"]
            verdict[f"gap_pct_by_{ours}_ms"] = alone["gap_pct"]
            out["verdict"][load] = verdict
    return out


def _gap(cells: dict, key: str) -> dict:
    """The policy with the lowest ``key`` and how far (%) the default is above it."""
    best = min(cells, key=lambda p: cells[p][key])
    return {"best": best, "gap_pct": 100.0 * (cells["default"][key] / cells[best][key] - 1.0)}


def format_summary(summary: dict, ours: str = "nnparts", theirs: str = "torch") -> list:
    """The summary as lines: a table load x policy, then one verdict line per load."""
    lines = [f"  {'load':<5} {'policy':<9} {ours + ' ms':>11} {theirs + ' ms':>9} {'ratio':>6}"]
    for load, cells in summary["cells"].items():
        for policy, c in cells.items():
            lines.append(
                f"  {load:<5} {policy:<9} {c[ours + '_ms']:>11.2f} {c[theirs + '_ms']:>9.2f} "
                f"{c['ratio']:>6.2f}"
            )
    for load in summary["cells"]:
        v = summary["verdict"].get(load)
        if v is None:
            lines.append(f"  {load}: default policy not measured, no verdict")
        else:
            lines.append(
                f"  {load}: default is {v['gap_pct']:.1f}% from the best policy "
                f"(best: {v['best']}) {'OK' if v['ok'] else 'MISS'}; by {ours} ms alone: "
                f"{v[f'gap_pct_by_{ours}_ms']:.1f}% (best: {v[f'best_by_{ours}_ms']})"
            )
    return lines


def format_epoch_estimates(times: dict, loads, steps_per_epoch: int, digits: int = 2) -> list:
    """One line per load: the default policy's median step times scaled to an epoch."""
    lines = []
    for load in loads:
        t = times[load]["default"]
        lines.append(
            f"  epoch ({steps_per_epoch} steps) under default, {load}: "
            f"nnparts {median(t['nnparts']) * steps_per_epoch:.{digits}f} s, "
            f"pytorch {median(t['torch']) * steps_per_epoch:.{digits}f} s"
        )
    return lines


def write_json(path: str, data: dict) -> None:
    """Write ``data`` as JSON to ``path`` atomically (a temporary file, then ``os.replace``)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
