"""One training epoch of an MLP 784-512-512-10 (ReLU), nnparts vs PyTorch, same process, under
each of nnparts' threading policies, on an idle machine and with one core busy.

Random data of Fashion-MNIST's shape (``--samples`` x 784 float32), batch 128, softmax
cross-entropy, SGD (lr 0.01) or Adam (lr 1e-3) from each library's ``optim``. Both libraries
start from the same weights. The output starts with the machine (``_bench.header()``: CPU,
cores, AVX2/AVX-512, BLAS and its kernel, versions).

Policies (``--policies``, see ``benchmarks/_bench.py``): ``default`` (nnparts' ``auto``, which
measures each call site), ``pool`` (nnparts' thread pool, BLAS at one thread), ``pool-off``
(plain NumPy, BLAS's own threads), ``blas1`` (plain NumPy, BLAS at one thread). Loads
(``--load``): ``idle``, and ``busy``, a process spinning on one core meanwhile. PyTorch keeps
its default threads throughout.

Interleaving: each training step is timed. Per load, after one untimed warm-up block per
policy, ``--rounds`` rounds run; in each, every policy in turn times a block of ``--block``
nnparts steps and a block of torch steps on the same batches (the policies' order rotates, which
library goes first alternates), so slow phases of a shared machine hit every setting alike.
A table gives, per load and policy, the median step of each library and the ratio
nnparts / PyTorch (issue 16's target: <= 0.9), then per load how far the default's ratio is
from the best policy's (the requirement: within 5%, ``OK`` or ``MISS``), and the epoch time
under the default policy: the median step x the steps of one pass over the data.

    python benchmarks/bench_mlp.py                 # SGD (lr 0.01)
    python benchmarks/bench_mlp.py --optimizer adam --json mlp_adam.json
    python benchmarks/bench_mlp.py --samples 6400 --rounds 2 --policies default,pool
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _bench  # noqa: E402
import numpy as np  # noqa: E402


def make_data(samples, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((samples, 784), dtype=np.float32)
    y = rng.integers(0, 10, samples)
    return x, y


def make_weights(seed=1):
    """Linear weights (in, out) and biases, PyTorch's default U(+-1/sqrt(fan_in))."""
    rng = np.random.default_rng(seed)
    weights = []
    for fan_in, fan_out in ((784, 512), (512, 512), (512, 10)):
        bound = 1 / np.sqrt(fan_in)
        weights.append(rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32))
        weights.append(rng.uniform(-bound, bound, fan_out).astype(np.float32))
    return weights


def nnparts_step_fn(x, y, weights, optimizer, batch):
    """``step(i)``: one training step of nnparts on the batch starting at sample ``i``."""
    import nnparts
    from nnparts import functional as F
    from nnparts import nn, optim

    model = nn.Sequential(
        nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)
    )
    for p, w in zip(model.parameters(), weights):
        p.data[...] = w
    opt = (
        optim.SGD(model.parameters(), lr=0.01)
        if optimizer == "sgd"
        else optim.Adam(model.parameters(), lr=1e-3)
    )

    def step(i):
        logits = model(nnparts.Tensor(x[i : i + batch]))
        loss = F.cross_entropy(logits, y[i : i + batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss.data)

    return step


def torch_step_fn(x, y, weights, optimizer, batch):
    """``step(i)``: the same training step in PyTorch."""
    import torch

    model = torch.nn.Sequential(
        torch.nn.Linear(784, 512),
        torch.nn.ReLU(),
        torch.nn.Linear(512, 512),
        torch.nn.ReLU(),
        torch.nn.Linear(512, 10),
    )
    with torch.no_grad():
        for p, w in zip(model.parameters(), weights):
            p.copy_(torch.from_numpy(w.T.copy() if w.ndim == 2 else w))
    opt = (
        torch.optim.SGD(model.parameters(), lr=0.01)
        if optimizer == "sgd"
        else torch.optim.Adam(model.parameters(), lr=1e-3)
    )
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(i):
        loss = loss_fn(model(xt[i : i + batch]), yt[i : i + batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    parser.add_argument("--samples", type=int, default=60000, help="data set size (steps cycle)")
    parser.add_argument("--batch", type=int, default=128)
    _bench.add_arguments(parser, rounds=6, block=50)
    args = parser.parse_args(argv)
    policies, loads = _bench.parse_settings(parser, args)
    if args.samples < args.batch:
        parser.error(f"--samples ({args.samples}) must be at least one batch ({args.batch})")

    header = _bench.header()
    print(header)
    x, y = make_data(args.samples)
    weights = make_weights()
    ours = nnparts_step_fn(x, y, weights, args.optimizer, args.batch)
    theirs = torch_step_fn(x, y, weights, args.optimizer, args.batch)
    batches = args.samples // args.batch
    steps = {
        "nnparts": lambda k: ours(k % batches * args.batch),
        "torch": lambda k: theirs(k % batches * args.batch),
    }
    print(
        f"MLP 784-512-512-10, {args.optimizer}, batch {args.batch}, {args.samples} samples; "
        f"per load {args.rounds} rounds x blocks of {args.block} steps per policy and library",
        flush=True,
    )
    times = _bench.interleave(steps, policies, loads, args.rounds, args.block, log=print)
    summary = _bench.summarize(times)
    print("\n".join(_bench.format_summary(summary)))
    steps_per_epoch = -(-args.samples // args.batch)
    if "default" in policies:
        print("\n".join(_bench.format_epoch_estimates(times, loads, steps_per_epoch)))
    if args.json:
        _bench.write_json(args.json, {"header": header, "settings": vars(args), "mlp": summary})
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
