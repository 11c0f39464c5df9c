"""Micro-benchmark: one Adam step on a ~1M-parameter MLP, nnparts vs torch.optim.Adam, under
each of nnparts' threading policies, on an idle machine and with one core busy.

Both optimizers update float32 parameters of the same shapes with the same preset gradients,
in the same process (torch with its default thread count, or ``--torch-threads``); after 10
warm-up steps of each the parameters are compared. The output starts with the machine
(``_bench.header()``: CPU, cores, AVX2/AVX-512, BLAS and its kernel, versions).

Policies (``--policies``, see ``benchmarks/_bench.py``): ``default`` (nnparts' ``auto``, which
measures each call site), ``pool`` (nnparts' thread pool, BLAS at one thread), ``pool-off``
(plain NumPy, BLAS's own threads), ``blas1`` (plain NumPy, BLAS at one thread). Loads
(``--load``): ``idle``, and ``busy``, a process spinning on one core meanwhile.

Interleaving: each step is timed on its own. Per load, after one untimed warm-up block per
policy, ``--rounds`` rounds run; in each, every policy in turn times a block of ``--block``
nnparts steps and a block of torch steps (the policies' order rotates, which library goes
first alternates), so that load from other processes hits every setting alike. A table gives,
per load and policy, the median step of each and the ratio nnparts / torch (target: <= 1.20),
then per load how far the default's ratio is from the best policy's (the requirement: within
5%, ``OK`` or ``MISS``). Run by hand:

    python benchmarks/bench_adam_step.py [--rounds 8] [--block 25] [--amsgrad]
        [--weight-decay 0.01] [--torch-threads 1] [--policies default,pool] [--load idle]
        [--json adam.json]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _bench  # noqa: E402
import numpy as np  # noqa: E402


def build_model(rng):
    from nnparts import nn

    return nn.Sequential(
        nn.Linear(784, 1024, rng=rng), nn.Linear(1024, 256, rng=rng), nn.Linear(256, 10, rng=rng)
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--amsgrad", action="store_true")
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch.set_num_threads(N) (default: torch's own default); on a "
        "busy machine torch's default threads can spin-wait, 1 is steadier",
    )
    _bench.add_arguments(parser, rounds=8, block=25)
    args = parser.parse_args(argv)
    policies, loads = _bench.parse_settings(parser, args)

    import torch

    from nnparts import optim

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    header = _bench.header()
    print(header)

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
    # same updates: compare after the warm-up steps (the timed steps change both further)
    diff = max(float(np.max(np.abs(p.data - t.detach().numpy()))) for p, t in zip(params, theirs))

    print(
        f"model: {n_params:,} float32 parameters in {len(params)} arrays; per load "
        f"{args.rounds} rounds x blocks of {args.block} steps per policy and library",
        flush=True,
    )
    steps = {"nnparts": lambda k: ours.step(), "torch": lambda k: torch_step()}
    times = _bench.interleave(steps, policies, loads, args.rounds, args.block, log=print)
    summary = _bench.summarize(times)
    print("\n".join(_bench.format_summary(summary)))
    print(f"max |param difference| after 10 identical warm-up steps: {diff:.2e}")
    if args.json:
        report = {"header": header, "settings": vars(args), "max_param_diff": diff}
        report["adam_step"] = summary
        _bench.write_json(args.json, report)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
