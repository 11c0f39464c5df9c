"""The multithreaded paths give the same numbers as one thread (and as PyTorch)."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

import nnparts
from nnparts import functional as F
from nnparts import threads


@pytest.fixture
def many_threads():
    """Split every op, however small, over 3 threads (odd, so chunks are uneven)."""
    threads.set_num_threads(3)
    threads.set_min_work(0)
    yield
    threads.set_min_work(1 << 18)
    threads.set_num_threads(1)
    threads.set_num_threads(threads._default_threads())


@pytest.fixture
def pool_of_two():
    """The pool policy on 2 threads, every op split however small; put back afterwards."""
    threads.set_num_threads(2)
    threads.set_min_work(0)
    previous = threads.get_policy()
    threads.set_policy("pool")
    yield
    threads.set_min_work(1 << 18)
    threads.set_policy(previous)
    threads.set_num_threads(threads._default_threads())


def test_chunks_cover_the_range_once():
    for total in (1, 2, 7, 100):
        for parts in (1, 2, 3, 8):
            ranges = threads.chunks(total, parts)
            covered = [i for s, e in ranges for i in range(s, e)]
            assert covered == list(range(total))
    with pytest.raises(ValueError, match="positive integer"):
        threads.set_num_threads(0)


def _grads(fn, *arrays):
    tensors = [nnparts.Tensor(a.copy(), requires_grad=True) for a in arrays]
    out = fn(*tensors)
    weights = np.random.default_rng(9).standard_normal(out.shape)
    out.backward(weights)
    return out.data, [t.grad for t in tensors]


CONV_CASES = {"conv_pad_stride": {"stride": 2, "padding": 1}, "conv_plain": {}}


@pytest.mark.parametrize("name", sorted(CONV_CASES))
def test_threaded_conv_equals_single_threaded_and_torch(name, many_threads, torch):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 3, 9, 8))
    w = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)
    kw = CONV_CASES[name]

    def fn(x, w, b):
        return F.conv2d(x, w, b, **kw)

    out3, grads3 = _grads(fn, x, w, b)
    threads.set_num_threads(1)
    out1, grads1 = _grads(fn, x, w, b)
    np.testing.assert_allclose(out3, out1, atol=1e-12)
    for g3, g1 in zip(grads3, grads1):
        np.testing.assert_allclose(g3, g1, atol=1e-10)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ref = torch.nn.functional.conv2d(tx, tw, tb, **kw)
    ref.backward(torch.tensor(np.random.default_rng(9).standard_normal(ref.shape)))
    np.testing.assert_allclose(out3, ref.detach().numpy(), atol=1e-8)
    for g3, t in zip(grads3, (tx, tw, tb)):
        np.testing.assert_allclose(g3, t.grad.numpy(), atol=1e-8)


UNARY = {
    "relu": (lambda x: F.relu(x), lambda t, x: t.relu(x)),
    "max_pool_2": (lambda x: F.max_pool2d(x, 2), lambda t, x: t.nn.functional.max_pool2d(x, 2)),
    "max_pool_3s2p1": (
        lambda x: F.max_pool2d(x, 3, stride=2, padding=1),
        lambda t, x: t.nn.functional.max_pool2d(x, 3, stride=2, padding=1),
    ),
    "batch_norm": (
        lambda x: F.batch_norm(x, None, None, training=True),
        lambda t, x: t.nn.functional.batch_norm(x, None, None, training=True),
    ),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_threaded_unary_ops_equal_torch(name, many_threads, torch):
    ours, theirs = UNARY[name]
    x = np.random.default_rng(2).standard_normal((5, 7, 6, 6))
    x[0, 0, :2, :2] = 0.0  # ties for the pools
    out, (gx,) = _grads(ours, x)
    tx = torch.tensor(x, requires_grad=True)
    ref = theirs(torch, tx)
    ref.backward(torch.tensor(np.random.default_rng(9).standard_normal(ref.shape)))
    np.testing.assert_allclose(out, ref.detach().numpy(), atol=1e-10)
    np.testing.assert_allclose(gx, tx.grad.numpy(), atol=1e-8)


def test_threaded_linear_equals_torch(many_threads, torch):
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((10, 6)), rng.standard_normal((6, 5)), rng.standard_normal(5)
    out, (gx, gw, gb) = _grads(F.linear, x, w, b)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w.T.copy(), b))
    ref = torch.nn.functional.linear(tx, tw, tb)
    ref.backward(torch.tensor(np.random.default_rng(9).standard_normal(ref.shape)))
    np.testing.assert_allclose(out, ref.detach().numpy(), atol=1e-10)
    np.testing.assert_allclose(gx, tx.grad.numpy(), atol=1e-10)
    np.testing.assert_allclose(gw, tw.grad.numpy().T, atol=1e-10)
    np.testing.assert_allclose(gb, tb.grad.numpy(), atol=1e-10)


def test_threaded_adam_is_bit_identical_to_one_thread(many_threads, torch):
    from nnparts import nn, optim

    def run(num_threads):
        threads.set_num_threads(num_threads)
        rng = np.random.default_rng(3)
        params = [nn.Parameter(rng.standard_normal(s)) for s in ((13, 7), (7,), (5, 3, 2))]
        opt = optim.Adam(params, lr=0.01)
        for _ in range(20):
            for p in params:
                p.grad = rng.standard_normal(p.shape)
            opt.step()
        return [p.data.copy() for p in params]

    threaded, single = run(3), run(1)
    for a, b in zip(threaded, single):
        np.testing.assert_array_equal(a, b)
    # and the same trajectory as torch.optim.Adam
    rng = np.random.default_rng(3)
    tparams = [
        torch.tensor(rng.standard_normal(s), requires_grad=True) for s in ((13, 7), (7,), (5, 3, 2))
    ]
    topt = torch.optim.Adam(tparams, lr=0.01)
    for _ in range(20):
        for p in tparams:
            p.grad = torch.tensor(rng.standard_normal(tuple(p.shape)))
        topt.step()
    for a, t in zip(threaded, tparams):
        np.testing.assert_allclose(a, t.detach().numpy(), atol=1e-10)


def _train_steps(policy, steps=4):
    """A few SGD steps of a small CNN + MLP head under ``policy``; returns the final weights."""
    from nnparts import nn

    previous = threads.get_policy()
    threads.set_num_threads(2)
    threads.set_policy(policy)
    threads.set_min_work(0)
    try:
        net = nn.Sequential(
            nn.Conv2d(1, 6, 3, padding=1, rng=0),
            nn.BatchNorm2d(6),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 8, 3, stride=2, padding=1, rng=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(8 * 4 * 4, 64, rng=2),
            nn.ReLU(),
            nn.Linear(64, 10, rng=3),
        )
        rng = np.random.default_rng(4)
        for _ in range(steps):
            x = rng.standard_normal((40, 1, 16, 16)).astype(np.float32)
            y = rng.integers(0, 10, 40)
            for p in net.parameters():
                p.grad = None
            F.cross_entropy(net(nnparts.Tensor(x)), y).backward()
            for p in net.parameters():
                p.data -= 0.1 * p.grad
        return [p.data.copy() for p in net.parameters()], threads.policy_report()
    finally:
        threads.set_min_work(1 << 18)
        threads.set_policy(previous)
        threads.set_num_threads(threads._default_threads())


def test_pool_and_serial_modes_give_the_same_numbers(monkeypatch):
    """The auto policy switches all ops between the modes every few calls: on this network
    that must not change the numbers beyond float rounding (same chunks, combined in the same
    order). Not bit for bit: the serial mode hands a matrix product to BLAS whole, the pool in
    row blocks, and OpenBLAS's result can depend on the block (its Haswell kernel rounds a 20-row
    block of a 40x128 @ 128x64 sgemm differently from the whole; SkylakeX did not) and on its own
    thread count. The chunked ops (convolution, BatchNorm, pooling) are bit-identical."""
    pool, _ = _train_steps("pool")
    serial, _ = _train_steps("serial")
    for name, value in {"PHASE": 4, "WARMUP": 2, "SETTLE": 1, "EXPLOIT": 1}.items():
        monkeypatch.setattr(threads, name, value)  # switch modes every 4 op calls
    auto, report = _train_steps("auto", steps=12)
    auto_pool, _ = _train_steps("pool", steps=12)
    for a, b in zip(pool, serial):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(auto, auto_pool):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert report["sites"], "the auto policy measured no call site"


def test_chunked_ops_are_bit_identical_in_either_mode(monkeypatch):
    """Convolution (every lowering), BatchNorm, max pooling and ReLU split the batch into the
    same chunks in both modes and sum per-chunk results in the same order: bit for bit, with
    BLAS held at one thread (serial mode would give it all cores, and OpenBLAS's own result can
    depend on its thread count)."""
    from threadpoolctl import threadpool_limits

    from nnparts import nn
    from nnparts.functional import conv

    monkeypatch.setattr(threads, "_set_blas_threads", lambda n: None)
    limit = threadpool_limits(1)

    threads.set_num_threads(2)
    threads.set_min_work(0)
    previous = threads.get_policy()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 6, 16, 16)).astype(np.float32)
    try:
        for layout, skip in (("nchw", "never"), ("nhwc", "never"), ("nhwc", "always")):
            monkeypatch.setattr(conv, "LAYOUT", layout)
            monkeypatch.setattr(conv, "SKIP_PADDING", skip)  # "always": taps inside the image
            results = {}
            for policy in ("pool", "serial"):
                threads.set_policy(policy)
                net = nn.Sequential(
                    nn.Conv2d(6, 8, 3, padding=1, rng=1), nn.BatchNorm2d(8), nn.ReLU(),
                    nn.MaxPool2d(2), nn.Conv2d(8, 4, 3, stride=2, padding=1, rng=2),
                )  # fmt: skip
                X = nnparts.Tensor(x, requires_grad=True)
                y = net(X)
                y.backward(np.random.default_rng(1).standard_normal(y.shape).astype(np.float32))
                results[policy] = [y.data, X.grad] + [p.grad for p in net.parameters()]
            for a, b in zip(results["pool"], results["serial"]):
                np.testing.assert_array_equal(a, b)
    finally:
        limit.restore_original_limits()
        threads.set_min_work(1 << 18)
        threads.set_policy(previous)
        threads.set_num_threads(threads._default_threads())


@pytest.fixture
def short_phases(monkeypatch):
    """The auto policy with phases of 4 op calls, so a test sees many of them quickly."""
    for name, value in {"PHASE": 4, "WARMUP": 2, "SETTLE": 1, "EXPLOIT": 3}.items():
        monkeypatch.setattr(threads, name, value)
    previous = threads.get_policy()
    threads.set_num_threads(2)
    threads.set_policy("auto")
    yield
    threads.set_policy(previous)
    threads.set_num_threads(threads._default_threads())


def _modes_of(calls):
    """'pool' for a call whose chunks ran on nnparts' threads, else 'serial'."""
    return ["pool" if any(n.startswith("nnparts") for n in c) else "serial" for c in calls]


def test_auto_policy_runs_every_op_in_the_faster_mode(short_phases):
    calls = []

    # chunks that overlap in time: the pool halves the wall time. Sleeps of several ms, so that
    # a pool thread's wake-up on a loaded machine (pytest-xdist's other worker; up to a few ms)
    # does not blur the factor of 2 between the modes
    def parallel_site(s, e):
        calls[-1].append(threading.current_thread().name)
        time.sleep(0.008)

    def other_site(s, e):
        calls[-1].append(threading.current_thread().name)
        time.sleep(0.004)

    for _ in range(60):
        for fn in (parallel_site, other_site):
            calls.append([])
            threads.parallel_for(4, 1 << 30, fn)
    report = threads.policy_report()
    assert report["mode"] == "pool", report
    assert report["serial_ms"] > 1.5 * report["pool_ms"]
    modes = _modes_of(calls)
    # after warm-up and probing (2 + 4 phases of 4 calls) all ops run in one mode, except one
    # phase of the other mode per cycle (3 x ratio ~2 phases of the chosen one, then 1)
    late = modes[2 + 4 * 4 :]
    assert late.count("pool") > 0.75 * len(late)
    assert {r["site"].split(" ")[0].split(".")[-1] for r in report["sites"]} == {
        "parallel_site",
        "other_site",
    }


def test_auto_policy_picks_serial_where_the_pool_threads_are_slow(short_phases):
    calls = []

    def pool_hurts_site(s, e):  # a pool thread is slow here (a busy core, a slow wake-up)
        calls[-1].append(threading.current_thread().name)
        time.sleep(0.006 if threading.current_thread().name.startswith("nnparts") else 0.001)

    for _ in range(60):
        calls.append([])
        threads.parallel_for(4, 1 << 30, pool_hurts_site)
    report = threads.policy_report()
    assert report["mode"] == "serial", report
    late = _modes_of(calls)[2 + 4 * 4 :]
    assert late.count("serial") > 0.75 * len(late)
    assert "pool" in late  # the other mode is still tried now and then


def test_thread_policy_names_are_checked(monkeypatch):
    with pytest.raises(ValueError, match="unknown thread policy 'fast'.*auto, pool, serial"):
        threads.set_policy("fast")
    monkeypatch.setenv("NNPARTS_NUM_THREADS", "two")
    with pytest.raises(ValueError, match="NUM_THREADS must be a positive integer, got 'two'"):
        threads._default_threads()
    monkeypatch.setenv("NNPARTS_THREAD_POLICY", "turbo")
    threads._state["policy"] = None
    try:
        with pytest.raises(ValueError, match="NNPARTS_THREAD_POLICY must be one of"):
            threads.get_policy()
    finally:
        threads._state["policy"] = None  # read $NNPARTS_THREAD_POLICY again


def test_auto_policy_reproduces_a_training_run_to_float_rounding(fashion_dir):
    """Under "auto" the modes follow the timings, so two runs of one seed may split some ops
    differently; the numbers agree to float32 rounding (bit-identical runs: policy "pool")."""
    from nnparts.train import config as configs
    from nnparts.train import run

    cfg = configs.resolve(
        {
            "data": {
                "data_dir": fashion_dir,
                "download": False,
                "train_subset": 1200,
                "val_size": 200,
                "test_subset": 300,
            },
            "model": {"name": "cnn", "channels": [8, 16], "dense": 32},
            "train": {"epochs": 1, "batch_size": 100},
        }
    )
    previous = threads.get_policy()
    threads.set_policy("auto")
    try:
        first = run.train(cfg, quiet=True, progress=False)
        second = run.train(cfg, quiet=True, progress=False)
    finally:
        threads.set_policy(previous)
    for key in ("train_loss", "val_loss"):
        a, b = first["history"][0][key], second["history"][0][key]
        assert a == pytest.approx(b, rel=1e-5), key
    assert first["test_loss"] == pytest.approx(second["test_loss"], rel=1e-5)


def test_a_chunk_no_pool_thread_has_started_runs_on_the_calling_thread(pool_of_two):
    """A pool thread held up elsewhere (its core busy with another process) never holds up an op:
    the calling thread takes back the chunk nobody started, and the results are the same."""
    release = threading.Event()
    try:
        blocker = threads._pool().submit(release.wait, 10)  # the only pool thread is busy
        ran_on = {}

        def chunk(s, e):
            ran_on[(s, e)] = threading.get_ident()
            return sum(range(s, e))

        results = threads.parallel_map(10, 1 << 20, chunk)
        assert threads.op_chunks(10, 1 << 20, 2) == [(0, 2), (2, 5), (5, 7), (7, 10)]
        assert results == [sum(range(s, e)) for s, e in [(0, 2), (2, 5), (5, 7), (7, 10)]]
        assert set(ran_on.values()) == {threading.get_ident()}
        out = np.zeros(10)
        threads.parallel_for(10, 1 << 20, lambda s, e: out.__setitem__(slice(s, e), 1.0))
        assert out.sum() == 10
        assert not blocker.done()
    finally:
        release.set()
    blocker.result()
    # and when the pool thread is free, it does take its chunk
    idents = set()

    def slow(s, e):
        idents.add(threading.get_ident())
        time.sleep(0.2)

    threads.parallel_for(2, 1 << 20, slow)
    assert len(idents) == 2


# -- the pool's load check ------------------------------------------------------------------------
class _FakeMachine:
    """Readings of a made-up 2-core machine: ``others`` cores' worth of other processes' work
    and ``own`` cores' worth of ours per second, advanced by ``tick(seconds)``."""

    def __init__(self, cores=2):
        self.cores, self.now, self.busy, self.own_cpu = cores, 0.0, 0.0, 0.0
        self.others, self.own = 0.0, 1.0

    def tick(self, seconds):
        self.now += seconds
        self.busy += (self.others + self.own) * seconds
        self.own_cpu += self.own * seconds

    def watch(self):
        return threads._LoadWatch(
            read=lambda: (self.busy, self.cores), clock=lambda: self.now, own=lambda: self.own_cpu
        )


def test_load_check_runs_inline_while_another_process_takes_a_core_and_returns_to_the_pool():
    machine = _FakeMachine()
    watch = machine.watch()
    watch.enabled = True
    seen = []
    # idle, then a busy process on one core, then idle again; our own work (up to two cores)
    # must not count as someone else's
    for others, own in [(0.0, 2.0)] * 4 + [(1.0, 1.0)] * 4 + [(0.05, 1.9)] * 4:
        machine.others, machine.own = others, own
        machine.tick(threads.LOAD_INTERVAL)
        seen.append(watch.inline())
    assert seen[:4] == [False] * 4
    assert seen[4:8] == [True] * 4
    assert seen[8:] == [False] * 4
    assert watch.switches == 2
    assert watch.free == pytest.approx(1.95)


def test_load_check_does_not_flap_between_the_thresholds_and_looks_only_every_interval():
    machine = _FakeMachine()
    watch = machine.watch()
    watch.enabled = True
    machine.others = 0.5  # 1.5 cores free: between INLINE_BELOW and POOL_ABOVE
    for _ in range(6):
        machine.tick(threads.LOAD_INTERVAL)
        assert watch.inline() is False
    machine.others = 0.9
    machine.tick(threads.LOAD_INTERVAL)
    assert watch.inline() is True
    machine.others = 0.5  # back between the thresholds: stays inline
    for _ in range(6):
        machine.tick(threads.LOAD_INTERVAL)
        assert watch.inline() is True
    # between two looks nothing is read: a burst shorter than the interval changes nothing
    machine.others = 0.0
    machine.tick(threads.LOAD_INTERVAL / 10)
    reads = []
    watch.read = lambda: reads.append(1) or (machine.busy, machine.cores)
    assert watch.inline() is True and reads == []


def test_load_check_without_proc_stat_keeps_the_pool():
    watch = threads._LoadWatch(read=lambda: None)
    watch.enabled = True
    assert watch.inline() is False
    assert watch.enabled is False  # and stops looking


def test_proc_stat_parsing(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text(
        "cpu  999 0 999 999 0 0 0 0 0 0\n"
        "cpu0 100 10 50 1000 7 3 2 5 0 0\n"
        "cpu1 200 0 100 900 0 0 0 0 0 0\n"
        "cpu2 9999 0 0 0 0 0 0 0 0 0\n"
        "intr 12345\n"
    )
    ticks = threads._clock_ticks()
    busy, cores = threads._proc_stat_busy({0, 1}, path=str(stat))
    assert cores == 2
    assert busy == pytest.approx((100 + 10 + 50 + 3 + 2 + 5 + 200 + 100) / ticks)
    assert threads._proc_stat_busy({5}, path=str(stat)) is None
    assert threads._proc_stat_busy(None, path=str(tmp_path / "missing")) is None
    real = threads._proc_stat_busy(threads._affinity())
    if real is not None:  # Linux: the machine's own counters
        assert real[0] > 0 and real[1] >= 1


def test_threads_pull_the_chunks_so_a_late_pool_thread_costs_at_most_a_chunk(pool_of_two):
    """A large op is cut into PIECES chunks per thread and each thread takes the next chunk nobody
    has taken: while the pool thread is held up, the calling thread runs the chunks it has not
    reached; the results come back in chunk order either way, and small ops keep one chunk per
    thread."""
    threads.set_min_work(1000)
    assert threads.op_chunks(8, 4000, 2) == threads.chunks(8, 2 * threads.PIECES)
    assert threads.op_chunks(8, 3999, 2) == threads.chunks(8, 2)
    assert threads.op_chunks(3, 4000, 2) == [(0, 1), (1, 2), (2, 3)]  # never empty chunks
    late = threading.Event()
    ran_on = {}

    def chunk(s, e):
        if threading.current_thread() is threading.main_thread():
            assert late.wait(10)  # (so that the pool thread does take a chunk)
        else:
            late.set()
            time.sleep(0.3)  # the pool thread's chunk takes long (its core is slow)
        ran_on[s] = threading.current_thread() is threading.main_thread()
        return s

    threads.pool_stats(reset=True)
    out = threads.parallel_map(8, 1 << 20, chunk)
    assert out == [s for s, _ in threads.op_chunks(8, 1 << 20, 2)] == [0, 2, 4, 6]
    assert sorted(ran_on) == [0, 2, 4, 6] and sum(ran_on.values()) == 3  # the pool thread: 1
    stats = threads.pool_stats()
    assert (stats["chunks_handed"], stats["taken_back"]) == (1, 0)


def test_inline_chunks_give_the_pools_numbers_bit_for_bit(monkeypatch, pool_of_two):
    """Inline runs the pool's chunks one after the other at BLAS one thread: a conv + linear
    training step gives the same bits in both, so a run does not depend on the machine's load."""
    from nnparts import nn

    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 3, 10, 10)).astype(np.float32)
    a = rng.standard_normal((40, 300)).astype(np.float32)
    b = rng.standard_normal((300, 77)).astype(np.float32)
    ran_on = set()
    real_matmul = np.matmul

    def step(inline):
        monkeypatch.setattr(threads._watch, "inline", lambda: inline)
        nnparts.manual_seed(0)
        net = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(8 * 25, 10),
        )  # fmt: skip
        X = nnparts.Tensor(x.copy(), requires_grad=True)
        net(X).sum().backward()
        ran_on.clear()
        prod = threads.matmul(a, b)
        return [X.grad, prod] + [p.grad for p in net.parameters()], set(ran_on)

    def spy(*args, **kwargs):
        ran_on.add(threading.current_thread().name)
        return real_matmul(*args, **kwargs)

    monkeypatch.setattr(np, "matmul", spy)
    pooled, _ = step(False)
    inline, inline_threads = step(True)
    assert inline_threads == {threading.current_thread().name}  # (the pool's may be too: a
    # chunk no pool thread has started by then is taken back)
    for p, q in zip(pooled, inline):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("n, m", [(128, 512), (512, 128), (40, 40)])
def test_matmul_splits_the_larger_of_a_rows_and_b_columns(monkeypatch, pool_of_two, n, m):
    """Every thread packs all of the operand it does not split, so the pool splits ``a``'s rows
    when ``n >= m`` (each thread then packs all of ``b``) and ``b``'s columns otherwise; either
    way the product is ``a @ b``, and bit-identical to its chunks run inline."""
    rng = np.random.default_rng(5)
    a = rng.standard_normal((n, 300)).astype(np.float32)
    b = rng.standard_normal((300, m)).astype(np.float32)
    shapes = []
    real_matmul = np.matmul

    def spy(x, y, *args, **kwargs):
        shapes.append((x.shape, y.shape))
        return real_matmul(x, y, *args, **kwargs)

    monkeypatch.setattr(np, "matmul", spy)
    pooled = threads.matmul(a, b)
    if n >= m:
        assert sorted(shapes) == [((n // 2, 300), (300, m))] * 2
    else:
        assert sorted(shapes) == [((n, 300), (300, m // 2))] * 2
    monkeypatch.setattr(threads._watch, "inline", lambda: True)
    inline = threads.matmul(a, b)
    np.testing.assert_array_equal(pooled, inline)
    np.testing.assert_allclose(pooled, real_matmul(a, b), rtol=1e-5, atol=1e-4)


# -- a container's CPU quota caps the default thread count ----------------------------------------
def _cgroup_tree(tmp_path, proc_lines, files):
    tmp_path.mkdir(parents=True, exist_ok=True)
    proc = tmp_path / "proc_cgroup"
    proc.write_text("".join(line + "\n" for line in proc_lines))
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(root), str(proc)


def test_cgroup_v2_quota(tmp_path):
    root, proc = _cgroup_tree(
        tmp_path,
        ["0::/kubepods/pod1/ctr"],
        {
            "cgroup.controllers": "cpu memory",
            "kubepods/pod1/ctr/cpu.max": "max 100000",
            "kubepods/pod1/cpu.max": "150000 100000",  # the pod's limit: 1.5 cores
            "kubepods/cpu.max": "800000 100000",
        },
    )
    assert threads.cgroup_cpu_limit(root, proc) == pytest.approx(1.5)
    # no quota anywhere: "max"
    root, proc = _cgroup_tree(
        tmp_path / "b", ["0::/"], {"cgroup.controllers": "cpu", "cpu.max": "max 100000"}
    )
    assert threads.cgroup_cpu_limit(root, proc) is None


def test_cgroup_v1_quota_and_a_container_that_sees_only_its_own_cgroup(tmp_path):
    # cgroup v1 (cpu,cpuacct controllers): -1 means no limit
    root, proc = _cgroup_tree(
        tmp_path,
        ["12:memory:/docker/abc", "4:cpu,cpuacct:/docker/abc", "0::/docker/abc"],
        {"cpu/cpu.cfs_quota_us": "200000", "cpu/cpu.cfs_period_us": "100000"},
    )  # /proc/self/cgroup names /docker/abc, but the mount shows the container's own cgroup
    assert threads.cgroup_cpu_limit(root, proc) == pytest.approx(2.0)
    root, proc = _cgroup_tree(
        tmp_path / "b",
        ["1:cpu:/"],
        {"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"},
    )
    assert threads.cgroup_cpu_limit(root, proc) is None
    # garbage and missing files are no limit, not an error
    root, proc = _cgroup_tree(
        tmp_path / "c",
        ["1:cpu:/", "not a cgroup line"],
        {"cpu/cpu.cfs_quota_us": "lots", "cpu/cpu.cfs_period_us": "100000"},
    )
    assert threads.cgroup_cpu_limit(root, proc) is None
    assert threads.cgroup_cpu_limit(str(tmp_path / "none"), str(tmp_path / "none")) is None


def test_default_threads_follow_the_cpu_quota(monkeypatch):
    monkeypatch.delenv("NNPARTS_NUM_THREADS", raising=False)
    cores = len(os.sched_getaffinity(0))
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: 1.5)
    assert threads._default_threads() == min(cores, 2, 8)
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: 0.5)
    assert threads._default_threads() == 1
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: None)
    assert threads._default_threads() == min(cores, 8)
    monkeypatch.setenv("NNPARTS_NUM_THREADS", "3")  # an explicit setting wins
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: 1.0)
    assert threads._default_threads() == 3


def test_a_real_cgroup_quota_caps_the_threads(tmp_path):
    """A child process put into a real cgroup with half a core of quota starts one thread (needs a
    writable cgroup v1 ``cpu`` hierarchy or a cgroup v2 root with the ``cpu`` controller: root on
    most Linux machines and CI runners)."""
    import subprocess
    import sys
    import uuid

    name = f"nnparts-test-{uuid.uuid4().hex[:8]}"
    v1 = os.path.join("/sys/fs/cgroup/cpu", name)
    v2 = os.path.join("/sys/fs/cgroup", name)
    made = None
    try:
        if os.path.isdir("/sys/fs/cgroup/cpu") and os.access("/sys/fs/cgroup/cpu", os.W_OK):
            os.mkdir(v1)
            made = v1
            with open(os.path.join(v1, "cpu.cfs_period_us"), "w") as f:
                f.write("100000")
            with open(os.path.join(v1, "cpu.cfs_quota_us"), "w") as f:
                f.write("50000")
        elif os.access("/sys/fs/cgroup/cgroup.subtree_control", os.W_OK):
            with open("/sys/fs/cgroup/cgroup.subtree_control") as f:
                if "cpu" not in f.read().split():
                    pytest.skip("cgroup v2 without the cpu controller enabled for children")
            os.mkdir(v2)
            made = v2
            with open(os.path.join(v2, "cpu.max"), "w") as f:
                f.write("50000 100000")
        else:
            pytest.skip("no writable cgroup hierarchy here (not root, or cgroups not mounted)")
    except OSError as e:
        if made:
            os.rmdir(made)
        pytest.skip(f"cannot make a cgroup here: {e}")
    try:
        code = "import nnparts.threads as t; print(t.cgroup_cpu_limit(), t._default_threads())"
        env = {k: v for k, v in os.environ.items() if k != "NNPARTS_NUM_THREADS"}
        out = subprocess.run(
            ["sh", "-c", f'echo $$ > {made}/cgroup.procs && exec "$0" -c "$1"', sys.executable,
             code],
            capture_output=True, text=True, env=env, timeout=120, check=True,
        ).stdout.split()  # fmt: skip
        assert out == ["0.5", "1"], out
    finally:
        os.rmdir(made)


def test_pool_stats_count_take_backs_waits_and_inline_ops(monkeypatch, pool_of_two):
    threads.pool_stats(reset=True)
    # the only pool thread is busy elsewhere: the chunk handed to it is taken back
    release = threading.Event()
    blocker = threads._pool().submit(release.wait, 10)
    try:
        threads.parallel_for(2, 1 << 20, lambda s, e: None)
    finally:
        release.set()
    blocker.result()
    stats = threads.pool_stats(reset=True)
    assert (stats["pool_ops"], stats["chunks_handed"], stats["taken_back"]) == (1, 1, 1)
    assert stats["taken_back_pct"] == 100.0 and stats["wait_ms"] == 0.0
    # the pool thread starts its chunk (the calling thread's chunk waits for that) and takes
    # 0.1 s more: the calling thread waits for it, and the wait is counted
    started = threading.Event()

    def chunk(s, e):
        if s == 0:
            assert started.wait(10)
        else:
            started.set()
            time.sleep(0.1)

    threads.parallel_for(2, 1 << 20, chunk)
    stats = threads.pool_stats()
    assert stats["taken_back"] == 0 and stats["chunks_handed"] == 1
    assert stats["wait_ms"] >= 50.0  # the 0.1 s sleep, less what the calling thread did
    assert 0 < stats["wait_pct_of_pool_time"] <= 100
    # other processes take the cores: the op runs inline and is counted so
    monkeypatch.setattr(threads._watch, "inline", lambda: True)
    threads.pool_stats(reset=True)
    threads.parallel_for(2, 1 << 20, lambda s, e: None)
    a = np.ones((64, 8), np.float32)
    threads.matmul(a, a.T)
    stats = threads.pool_stats()
    assert (stats["pool_ops"], stats["inline_ops"], stats["chunks_handed"]) == (0, 2, 0)


def test_auto_policy_runs_inline_and_measures_nothing_while_the_cores_are_taken(monkeypatch):
    threads.set_num_threads(2)
    threads.set_min_work(0)
    previous = threads.get_policy()
    threads.set_policy("auto")
    try:
        monkeypatch.setattr(threads._watch, "inline", lambda: True)
        ran_on = set()
        for _ in range(3 * threads.PHASE):
            threads.parallel_for(2, 1 << 20, lambda s, e: ran_on.add(threading.get_ident()))
        assert ran_on == {threading.get_ident()}
        assert threads._auto["calls"] == 0 and not threads._sites  # no phase advanced
        assert threads.pool_stats()["inline_ops"] >= 3 * threads.PHASE
    finally:
        threads.set_min_work(1 << 18)
        threads.set_policy(previous)
        threads.set_num_threads(threads._default_threads())


def test_importing_nnparts_puts_blas_at_one_thread_under_the_pool_policy():
    """From the first op on, every product runs at BLAS one thread under the pool policy (the
    small ones too, which call NumPy directly): a first run in a process and a later one (or a
    resumed one) of the same seed give the same bits. A fresh process, 2 threads."""
    import subprocess
    import sys

    code = (
        "import nnparts\n"
        "from threadpoolctl import threadpool_info\n"
        "print([i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'])\n"
        "nnparts.set_num_threads(1)\n"  # off: BLAS back to its own threads
        "print([i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'])\n"
    )
    env = dict(os.environ, NNPARTS_NUM_THREADS="2", NNPARTS_THREAD_POLICY="pool",
               OPENBLAS_NUM_THREADS="2")  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout.splitlines()
    assert out[0] == "[1]", out
    assert out[1] == "[2]", out
