"""One training epoch of an MLP 784-512-BN-ReLU-512-BN-ReLU-10, nnparts vs PyTorch, same process.

Random data of Fashion-MNIST's shape (60000 x 784 float32), batch 128, softmax cross-entropy,
plain SGD (lr 0.01) written inline as ``p.data -= lr * p.grad`` in both libraries. Both start
from the same weights. Prints the median epoch time of each (of ``--epochs`` timed epochs after
one warm-up epoch) and the ratio nnparts / PyTorch.

    python benchmarks/bench_mlp_bn.py
    python benchmarks/bench_mlp_bn.py --epochs 3 --samples 60000 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

LR = 0.01


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


def nnparts_epoch_fn(x, y, weights, batch):
    import nnparts
    from nnparts import functional as F
    from nnparts import nn

    linears = [nn.Linear(784, 512), nn.Linear(512, 512), nn.Linear(512, 10)]
    for lin, w, b in zip(linears, weights[0::2], weights[1::2]):
        lin.weight.data[...] = w
        lin.bias.data[...] = b
    model = nn.Sequential(
        linears[0],
        nn.BatchNorm1d(512),
        nn.ReLU(),
        linears[1],
        nn.BatchNorm1d(512),
        nn.ReLU(),
        linears[2],
    )
    params = model.parameters()

    def epoch():
        for i in range(0, len(x), batch):
            logits = model(nnparts.Tensor(x[i : i + batch]))
            loss = F.cross_entropy(logits, y[i : i + batch])
            for p in params:
                p.grad = None
            loss.backward()
            for p in params:
                p.data -= LR * p.grad
        return float(loss.data)

    return epoch


def torch_epoch_fn(x, y, weights, batch):
    import torch

    linears = [torch.nn.Linear(784, 512), torch.nn.Linear(512, 512), torch.nn.Linear(512, 10)]
    with torch.no_grad():
        for lin, w, b in zip(linears, weights[0::2], weights[1::2]):
            lin.weight.copy_(torch.from_numpy(w.T.copy()))
            lin.bias.copy_(torch.from_numpy(b))
    model = torch.nn.Sequential(
        linears[0],
        torch.nn.BatchNorm1d(512),
        torch.nn.ReLU(),
        linears[1],
        torch.nn.BatchNorm1d(512),
        torch.nn.ReLU(),
        linears[2],
    )
    params = list(model.parameters())
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    loss_fn = torch.nn.CrossEntropyLoss()

    def epoch():
        for i in range(0, len(xt), batch):
            loss = loss_fn(model(xt[i : i + batch]), yt[i : i + batch])
            for p in params:
                p.grad = None
            loss.backward()
            with torch.no_grad():
                for p in params:
                    p.data -= LR * p.grad
        return float(loss.detach())

    return epoch


def time_once(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=60000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per library")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads (NumPy's BLAS: set OMP_NUM_THREADS)",
    )
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    x, y = make_data(args.samples)
    weights = make_weights()
    ours = nnparts_epoch_fn(x, y, weights, args.batch)
    theirs = torch_epoch_fn(x, y, weights, args.batch)
    # interleave the libraries so that background load hits both alike
    t_ours, t_theirs = [], []
    loss_ours, loss_theirs = ours(), theirs()  # warm-up
    for _ in range(args.epochs):
        t_ours.append(time_once(ours))
        t_theirs.append(time_once(theirs))
    m_ours, m_theirs = statistics.median(t_ours), statistics.median(t_theirs)
    print(
        f"MLP 784-512-BN-ReLU-512-BN-ReLU-10, SGD lr {LR}, batch {args.batch}, "
        f"{args.samples} samples, torch {torch.__version__} ({torch.get_num_threads()} threads)"
    )
    print(f"warm-up epoch last-batch loss: nnparts {loss_ours:.4f}, pytorch {loss_theirs:.4f}")
    print(f"nnparts epoch: median {m_ours:.3f} s  {[round(t, 3) for t in t_ours]}")
    print(f"pytorch epoch: median {m_theirs:.3f} s  {[round(t, 3) for t in t_theirs]}")
    print(f"ratio nnparts/pytorch: {m_ours / m_theirs:.2f}")


if __name__ == "__main__":
    main()
