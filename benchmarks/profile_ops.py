"""Where a training step's time goes, op by op (nnparts only).

Every differentiable op of nnparts is a :class:`nnparts.tensor.Function` subclass; this script
wraps each one's ``forward`` and ``backward`` with a wall clock, trains a benchmark network for a
number of steps and prints, per op, the milliseconds it took per step (forward and backward
apart), its share of the step, and what is left over: the optimizer step, and the rest — Python
overhead of the tape, module calls and the loop, outside any op.

The ops run on the thread pool of :mod:`nnparts.threads` inside their forward/backward, so the
wall clock of an op includes its parallel part. Run it under each threading policy to see what
changes (``--policy default|pool-off|blas1``, see ``benchmarks/_bench.py``).

    python benchmarks/profile_ops.py --model cnn
    python benchmarks/profile_ops.py --model resnet --steps 40 --policy pool-off
    python benchmarks/profile_ops.py --model mlp_bn
    python benchmarks/profile_ops.py --model fast --batch-size 256   # recipes/fast.yaml's net
    python benchmarks/profile_ops.py --model densenet --steps 10     # recipes/densenet.yaml's

``--shapes`` keys the convolutions by their channels, kernel, stride and input map size
(``Conv2d(32->64 3x3/2 @28)``). ``--torch``
(models ``cnn``, ``resnet`` and ``fast``) then profiles the same network in PyTorch, with the
same weights and batch: blocks of steps interleaved with nnparts' (both median step times and
their ratio first), then ``torch.profiler``'s self CPU time per aten op, convolutions by input
shape — where the two libraries' steps differ, layer by layer::

    python benchmarks/profile_ops.py --model fast --batch-size 256 --shapes --torch
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _bench  # noqa: E402
import numpy as np  # noqa: E402


def _all_functions():
    from nnparts.tensor import Function

    seen, todo = [], [Function]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.append(sub)
                todo.append(sub)
    return seen


def _conv_key(name, kind, args, kwargs):
    """``Conv2d(C->O 3x3 @H)``, ``/2`` appended for stride 2: a convolution's key by its shapes
    (forward's input, weight and stride; the backward gets the key from its context, which the
    forward tags)."""
    ctx = args[0]
    if kind == "forward":
        x, w = args[1], args[2]
        stride = kwargs.get("stride", args[4] if len(args) > 4 else 1)
        step = stride[0] if isinstance(stride, tuple) else stride
        ctx.profile_key = (
            f"{name}({x.shape[1]}->{w.shape[0]} {w.shape[2]}x{w.shape[3]}"
            + (f"/{step}" if step != 1 else "")
            + f" @{x.shape[2]})"
        )
    return getattr(ctx, "profile_key", name)


def instrument(totals: dict, shapes: bool = False):
    """Wrap forward/backward of every Function subclass; return a function that undoes it.
    With ``shapes``, convolutions are keyed by their shapes (:func:`_conv_key`)."""
    undo = []
    for cls in _all_functions():
        for kind in ("forward", "backward"):
            if kind not in cls.__dict__:
                continue
            original = cls.__dict__[kind]
            fn = original.__func__ if isinstance(original, staticmethod) else original
            by_shape = shapes and cls.__name__.startswith("Conv2d")

            def timed(*args, _fn=fn, _name=cls.__name__, _kind=kind, _shape=by_shape, **kwargs):
                key = (_conv_key(_name, _kind, args, kwargs) if _shape else _name, _kind)
                start = time.perf_counter()
                try:
                    return _fn(*args, **kwargs)
                finally:
                    totals[key] += time.perf_counter() - start

            setattr(cls, kind, staticmethod(timed))
            undo.append((cls, kind, original))

    def restore():
        for cls, kind, original in undo:
            setattr(cls, kind, original)

    return restore


def build(model: str):
    from nnparts import nn

    if model == "cnn" or model == "resnet":
        import bench_cnn

        net = bench_cnn.build_nnparts(model)
        shape = (1, 28, 28)
    elif model in ("mlp", "mlp_bn"):
        layers, width = [], 784
        for _ in range(3):
            layers.append(nn.Linear(width, 512, rng=len(layers)))
            if model == "mlp_bn":
                layers.append(nn.BatchNorm1d(512))
            layers.append(nn.ReLU())
            width = 512
        layers.append(nn.Linear(width, 10, rng=99))
        net = nn.Sequential(*layers)
        shape = (784,)
    elif model in ("fast", "densenet"):  # recipes/fast.yaml's / recipes/densenet.yaml's network
        from nnparts.train import config as configs
        from nnparts.train.models import build_model, fit_whitening

        root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
        cfg = configs.resolve(configs.load_file(os.path.join(root, "recipes", f"{model}.yaml")))
        net = build_model(cfg["model"], (1, 28, 28), 10, rng=0)
        fit_whitening(net, np.random.default_rng(0).random((512, 1, 28, 28), dtype=np.float32))
        shape = (1, 28, 28)
    else:
        raise SystemExit(
            f"unknown model {model!r}; choose cnn, resnet, mlp, mlp_bn, fast or densenet"
        )
    return net, shape


TWINS = ("cnn", "resnet", "fast")  # the models build_torch has a PyTorch twin of


def _no_twin(model: str) -> SystemExit:
    return SystemExit(f"--torch: no PyTorch twin of {model!r} here; use " + ", ".join(TWINS))


def build_torch(model: str, net):
    """The PyTorch twin of ``build(model)``'s network ``net``, with its weights."""
    if model in ("cnn", "resnet"):
        import bench_cnn

        return bench_cnn.build_torch(model, bench_cnn.nnparts_weights(net))
    if model == "fast":
        import bench_time_to_accuracy

        root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
        cfg = bench_time_to_accuracy.load_config(os.path.join(root, "recipes", "fast.yaml"))
        return bench_time_to_accuracy.torch_model(cfg, net)
    raise _no_twin(model)


def torch_profile(model, net, x, y, steps, nnparts_step):
    """Time ``steps`` torch steps interleaved with nnparts' ``nnparts_step``, then profile the
    torch steps; print both median step times, their ratio and torch's self time per op."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    tnet = build_torch(model, net)
    tparams = list(tnet.parameters())
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        for p in tparams:
            p.grad = None
        loss_fn(tnet(xt), yt).backward()
        with torch.no_grad():
            for p in tparams:
                if p.grad is not None:
                    p -= 0.01 * p.grad

    for _ in range(5):
        step()
    # blocks of `block` steps, not single steps in turn: after each of its ops PyTorch's OpenMP
    # threads spin for a while, and the next library's first op then shares a core with them
    ours, theirs = [], []
    block = 4
    for r in range(max(1, steps // block)):
        turns = ((nnparts_step, ours), (step, theirs))
        for fn, times in turns if r % 2 == 0 else turns[::-1]:
            for _ in range(block):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
    print(
        f"interleaved blocks of {block} steps: nnparts {_bench.median(ours) * 1e3:.1f} ms, "
        f"torch {_bench.median(theirs) * 1e3:.1f} ms, ratio of the medians "
        f"{_bench.median(ours) / _bench.median(theirs):.3f}"
    )
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            step()
    per = 1000.0 / steps
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) * 1e-6 * per
    print(
        f"torch {torch.__version__}, self CPU time per op (ms/step; under the profiler, which "
        f"slows some networks: {total:.1f} ms in all against the step's median above):"
    )
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total):
        if e.self_cpu_time_total * 1e-6 * per < 0.05:
            break
        print(f"  {e.key:<46}{e.self_cpu_time_total * 1e-6 * per:>9.2f}")
    print("torch convolutions by input shapes [input, weight or grad_output, ...]:")
    for e in sorted(
        prof.key_averages(group_by_input_shape=True), key=lambda e: -e.self_cpu_time_total
    ):
        if "conv" in e.key and e.self_cpu_time_total * 1e-6 * per >= 0.05:
            shapes = str(e.input_shapes[:2])
            print(f"  {e.key:<30}{shapes:<48}{e.self_cpu_time_total * 1e-6 * per:>9.2f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="cnn", help="cnn | resnet | mlp | mlp_bn | fast | densenet")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--policy", default="default", choices=_bench.POLICIES)
    ap.add_argument(
        "--shapes", action="store_true", help="convolutions by channels, kernel, stride, map"
    )
    ap.add_argument("--torch", action="store_true", help="then the same network in PyTorch")
    args = ap.parse_args(argv)
    if args.torch and args.model not in TWINS:
        raise _no_twin(args.model)
    _bench.apply_policy(args.policy)

    import nnparts.functional as F
    from nnparts.tensor import Tensor

    net, shape = build(args.model)
    rng = np.random.default_rng(0)
    x = rng.random((args.batch_size, *shape), dtype=np.float32)
    y = rng.integers(0, 10, args.batch_size)
    params = list(net.parameters())

    def step():
        for p in params:
            p.grad = None
        loss = F.cross_entropy(net(Tensor(x)), y)
        loss.backward()
        t0 = time.perf_counter()
        for p in params:
            p.data -= 0.01 * p.grad
        return time.perf_counter() - t0

    for _ in range(5):  # warm-up: workspaces, thread pool, BLAS buffers
        step()
    totals = collections.defaultdict(float)
    restore = instrument(totals, args.shapes)
    try:
        opt = 0.0
        start = time.perf_counter()
        for _ in range(args.steps):
            opt += step()
        wall = time.perf_counter() - start
    finally:
        restore()

    print(_bench.header())
    print(f"[{args.model}] batch {args.batch_size}, {args.steps} steps, policy {args.policy}")
    per = 1000.0 / args.steps
    step_ms = wall * per
    rows = sorted(totals.items(), key=lambda kv: -kv[1])
    print(f"{'op':<28}{'pass':<10}{'ms/step':>9}{'share':>8}")
    for (name, kind), seconds in rows:
        if seconds * per < 0.05:
            continue
        print(f"{name:<28}{kind:<10}{seconds * per:>9.2f}{seconds / wall:>8.1%}")
    in_ops = sum(totals.values())
    print(f"{'optimizer (p -= lr*g)':<38}{opt * per:>9.2f}{opt / wall:>8.1%}")
    rest = wall - in_ops - opt
    print(f"{'outside ops (Python, tape)':<38}{rest * per:>9.2f}{rest / wall:>8.1%}")
    print(f"{'step':<38}{step_ms:>9.2f}")
    if args.torch:
        torch_profile(args.model, net, x, y, args.steps, step)


if __name__ == "__main__":
    main()
