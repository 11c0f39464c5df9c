"""Micro-benchmark: one Adam step on a ~1M-parameter MLP, nnparts vs torch.optim.Adam.

Both optimizers update float32 parameters of the same shapes with the same preset gradients,
in the same process (torch with its default thread count). Each step is timed on its own and
the median over many steps is reported, interleaving the two in blocks so that load from
other processes hits both alike. Run by hand:

    python benchmarks/bench_adam_step.py [--steps 300] [--amsgrad] [--weight-decay 0.01]
        [--torch-threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def build_model(rng):
    from nnparts import nn

    return nn.Sequential(
        nn.Linear(784, 1024, rng=rng), nn.Linear(1024, 256, rng=rng), nn.Linear(256, 10, rng=rng)
    )


def time_steps(step, n):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="timed steps per optimizer")
    parser.add_argument("--block", type=int, default=25, help="steps per interleaved block")
    parser.add_argument("--amsgrad", action="store_true")
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch.set_num_threads(N) (default: torch's own default); on a "
        "busy machine torch's default threads can spin-wait, 1 is steadier",
    )
    args = parser.parse_args(argv)

    import torch

    from nnparts import optim

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    rng = np.random.default_rng(0)
    model = build_model(rng)
    params = model.parameters()
    n_params = sum(p.size for p in params)
    for p in params:
        p.grad = rng.normal(0, 1e-2, p.shape).astype(np.float32)
    theirs = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    for p, t in zip(params, theirs):
        t.grad = torch.tensor(p.grad.copy())

    kw = dict(lr=1e-3, weight_decay=args.weight_decay, amsgrad=args.amsgrad)
    ours = optim.Adam(params, **kw)
    ref = torch.optim.Adam(theirs, **kw)

    def torch_step():
        with torch.no_grad():
            ref.step()

    for _ in range(10):  # warm up: state allocation, scratch buffers, caches
        ours.step()
        torch_step()

    # same updates: compare after the warm-up steps (the timed loop runs torch more often)
    diff = max(float(np.max(np.abs(p.data - t.detach().numpy()))) for p, t in zip(params, theirs))
    default_threads = torch.get_num_threads()
    t_ours, t_torch, t_torch1 = [], [], []
    done = 0
    while done < args.steps:
        n = min(args.block, args.steps - done)
        t_ours += time_steps(ours.step, n)
        t_torch += time_steps(torch_step, n)
        if not args.torch_threads and default_threads > 1:  # also torch on one thread
            torch.set_num_threads(1)
            t_torch1 += time_steps(torch_step, n)
            torch.set_num_threads(default_threads)
        done += n

    m_ours, m_torch = statistics.median(t_ours), statistics.median(t_torch)
    print(
        f"model: {n_params:,} float32 parameters in {len(params)} arrays; "
        f"torch {torch.__version__} with {default_threads} threads"
    )
    print(f"nnparts Adam step: median {m_ours * 1e3:.3f} ms")
    print(f"torch   Adam step: median {m_torch * 1e3:.3f} ms ({default_threads} threads)")
    print(f"ratio nnparts/torch: {m_ours / m_torch:.2f}  (target <= 1.20)")
    if t_torch1:
        m_torch1 = statistics.median(t_torch1)
        print(f"torch   Adam step: median {m_torch1 * 1e3:.3f} ms (1 thread)")
        print(f"ratio nnparts/torch(1 thread): {m_ours / m_torch1:.2f}")
    print(f"max |param difference| after 10 identical warm-up steps: {diff:.2e}")


if __name__ == "__main__":
    main()
