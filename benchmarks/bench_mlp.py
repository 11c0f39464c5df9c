"""One training epoch of an MLP 784-512-512-10 (ReLU), nnparts vs PyTorch, same process.

Random data of Fashion-MNIST's shape (60000 x 784 float32), batch 128, softmax cross-entropy.
Both libraries start from the same weights. Prints the median epoch time of each and the ratio
nnparts / PyTorch (target: <= 1.10).

    python benchmarks/bench_mlp.py                 # SGD (lr 0.01)
    python benchmarks/bench_mlp.py --optimizer adam
    python benchmarks/bench_mlp.py --epochs 5 --samples 60000
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def make_data(samples, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((samples, 784), dtype=np.float32)
    y = rng.integers(0, 10, samples)
    return x, y


def nnparts_epoch_fn(x, y, weights, optimizer, batch):
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

    def epoch():
        for i in range(0, len(x), batch):
            logits = model(nnparts.Tensor(x[i : i + batch]))
            loss = F.cross_entropy(logits, y[i : i + batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
        return float(loss.data)

    return epoch


def torch_epoch_fn(x, y, weights, optimizer, batch):
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

    def epoch():
        for i in range(0, len(xt), batch):
            loss = loss_fn(model(xt[i : i + batch]), yt[i : i + batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
        return float(loss.detach())

    return epoch


def time_once(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    parser.add_argument("--samples", type=int, default=60000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per library")
    args = parser.parse_args(argv)

    import torch

    x, y = make_data(args.samples)
    rng = np.random.default_rng(1)
    weights = []
    for fan_in, fan_out in ((784, 512), (512, 512), (512, 10)):
        bound = 1 / np.sqrt(fan_in)
        weights.append(rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32))
        weights.append(rng.uniform(-bound, bound, fan_out).astype(np.float32))

    ours = nnparts_epoch_fn(x, y, weights, args.optimizer, args.batch)
    theirs = torch_epoch_fn(x, y, weights, args.optimizer, args.batch)
    # interleave the libraries so that background load hits both alike
    t_ours, t_theirs = [], []
    ours()  # warm-up
    theirs()
    for _ in range(args.epochs):
        t_ours.append(time_once(ours))
        t_theirs.append(time_once(theirs))
    m_ours, m_theirs = statistics.median(t_ours), statistics.median(t_theirs)
    print(
        f"MLP 784-512-512-10, {args.optimizer}, batch {args.batch}, {args.samples} samples, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    )
    print(f"nnparts epoch: median {m_ours:.3f} s  {[round(t, 3) for t in t_ours]}")
    print(f"pytorch epoch: median {m_theirs:.3f} s  {[round(t, 3) for t in t_theirs]}")
    print(f"ratio nnparts/pytorch: {m_ours / m_theirs:.2f}")


if __name__ == "__main__":
    main()
