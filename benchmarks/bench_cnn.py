"""One CNN training epoch, nnparts vs PyTorch (CPU), same process, same weights.

Two networks on random data of Fashion-MNIST's shape ((1, 28, 28) float32, 10 classes), batch
128, softmax cross-entropy, plain SGD written inline (``p.data -= lr * p.grad``) on both sides:

* ``cnn`` (issue 6's config): 2 x (conv 3x3 pad 1 -> BatchNorm2d -> ReLU -> max-pool 2)
  with 32 and 64 channels -> dense 128 -> ReLU -> dropout 0.5 -> dense 10;
* ``simple`` (the course's SimpleConvNet): conv 30 5x5 -> ReLU -> max-pool 2 -> dense 100 ->
  ReLU -> dense 10;
* ``resnet`` (``recipes/resnet.yaml``'s network): a pre-activation ResNet, conv 3x3 stem with 32
  channels, one pre-activation block per stage at 32, 64 and 128 channels (the later two halve
  the size, with a 1x1 strided shortcut), BN-ReLU, global average pooling, dense 10.

Each training step is timed; the two libraries alternate in blocks of 10 steps (after a
warm-up) so slow phases of a shared machine hit both alike. The epoch time is the median step
time x 469 steps (60000 samples), printed with the plain sum of the steps scaled to
60000 samples and the ratio nnparts / PyTorch (issue 7's target: <= 1.5).

Peak memory: each library trains one epoch in its own subprocess, which reports its peak
resident set size during the epoch minus its RSS before it (after imports, data and model
creation): the kernel's peak mark ``VmHWM`` is reset through ``/proc/self/clear_refs`` before
the epoch and read after it (falling back to ``ru_maxrss`` off Linux; ``ru_maxrss`` alone is
polluted by the parent's peak across fork+exec). tracemalloc is not used: it misses BLAS and
torch buffers.

    python benchmarks/bench_cnn.py                       # both models, timing + memory
    python benchmarks/bench_cnn.py --models cnn --epochs 5
    python benchmarks/bench_cnn.py --models resnet --epochs 1
    python benchmarks/bench_cnn.py --no-memory --samples 60000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

LR = 0.01


def make_data(samples, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((samples, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, samples)
    return x, y


RESNET = {"name": "resnet", "channels": [32, 64, 128], "blocks": [1, 1, 1], "dropout": 0.0}


def build_nnparts(model: str, seed=1):
    from nnparts import nn

    if model == "resnet":
        from nnparts.train.models import build_model

        return build_model(RESNET, (1, 28, 28), 10, rng=seed)
    if model == "cnn":
        net = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1, rng=seed),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1, rng=seed + 1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, 128, rng=seed + 2),
            nn.ReLU(),
            nn.Dropout(0.5, rng=seed + 3),
            nn.Linear(128, 10, rng=seed + 4),
        )
    else:
        net = nn.Sequential(
            nn.Conv2d(1, 30, 5, rng=seed),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(30 * 12 * 12, 100, rng=seed + 1),
            nn.ReLU(),
            nn.Linear(100, 10, rng=seed + 2),
        )
    return net


def torch_resnet(widths):
    """The pre-activation ResNet of ``nnparts.train.models`` in PyTorch, its parameters
    registered in the same order (bn1, conv1, bn2, conv2, shortcut)."""
    import torch

    T = torch.nn

    class PreActBlock(T.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.bn1 = T.BatchNorm2d(cin)
            self.conv1 = T.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn2 = T.BatchNorm2d(cout)
            self.conv2 = T.Conv2d(cout, cout, 3, 1, 1, bias=False)
            needs = stride != 1 or cin != cout
            self.shortcut = T.Conv2d(cin, cout, 1, stride, bias=False) if needs else None

        def forward(self, x):
            pre = torch.relu(self.bn1(x))
            skip = x if self.shortcut is None else self.shortcut(pre)
            return self.conv2(torch.relu(self.bn2(self.conv1(pre)))) + skip

    layers, channels = [T.Conv2d(1, widths[0], 3, padding=1, bias=False)], widths[0]
    for stage, width in enumerate(widths):
        layers.append(PreActBlock(channels, width, 2 if stage else 1))
        channels = width
    layers += [T.BatchNorm2d(channels), T.ReLU(), T.AdaptiveAvgPool2d(1), T.Flatten(),
               T.Linear(channels, 10)]  # fmt: skip
    return T.Sequential(*layers)


def build_torch(model: str, weights):
    """The same network in PyTorch, loaded with nnparts' initial weights (Linear transposed)."""
    import torch

    T = torch.nn
    if model == "resnet":
        net = torch_resnet(RESNET["channels"])
    elif model == "cnn":
        net = T.Sequential(
            T.Conv2d(1, 32, 3, padding=1), T.BatchNorm2d(32), T.ReLU(), T.MaxPool2d(2),
            T.Conv2d(32, 64, 3, padding=1), T.BatchNorm2d(64), T.ReLU(), T.MaxPool2d(2),
            T.Flatten(), T.Linear(64 * 7 * 7, 128), T.ReLU(), T.Dropout(0.5), T.Linear(128, 10),
        )  # fmt: skip
    else:
        net = T.Sequential(
            T.Conv2d(1, 30, 5), T.ReLU(), T.MaxPool2d(2), T.Flatten(),
            T.Linear(30 * 12 * 12, 100), T.ReLU(), T.Linear(100, 10),
        )  # fmt: skip
    params = list(net.parameters())
    assert len(params) == len(weights), (len(params), len(weights))
    with torch.no_grad():
        for p, (kind, w) in zip(params, weights):
            w = w.T if kind == "linear_weight" else w
            p.copy_(torch.from_numpy(np.ascontiguousarray(w)))
    return net


def nnparts_weights(net):
    from nnparts import nn

    out = []
    for m in net.modules():
        if list(m.children()):  # containers and blocks: their leaves come next
            continue
        if isinstance(m, nn.Linear):
            out += [("linear_weight", m.weight.data), ("bias", m.bias.data)]
        else:
            out += [("other", p.data) for p in m.parameters()]
    return out


def nnparts_epoch_fn(model, x, y, batch):
    import nnparts
    from nnparts import functional as F

    net = build_nnparts(model)
    params = net.parameters()

    def step(i):
        loss = F.cross_entropy(net(nnparts.Tensor(x[i : i + batch])), y[i : i + batch])
        for p in params:
            p.grad = None
        loss.backward()
        for p in params:
            p.data -= LR * p.grad  # LR is a Python float: stays float32
        return float(loss.data)

    return step, net


def torch_epoch_fn(model, x, y, batch, weights):
    import torch

    net = build_torch(model, weights)
    params = list(net.parameters())
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(i):
        loss = loss_fn(net(xt[i : i + batch]), yt[i : i + batch])
        for p in params:
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for p in params:
                p -= LR * p.grad
        return float(loss.detach())

    return step


def epoch_of(step, samples, batch):
    def epoch():
        for i in range(0, samples, batch):
            step(i)

    return epoch


def time_steps(ours, theirs, samples, batch, epochs, block=10):
    """Per-step times of both libraries. They alternate in blocks of ``block`` steps (which
    library goes first alternates too), so that slow phases of a shared machine hit both alike,
    while each library still runs several steps in a row: alternating every single step would
    let the idle thread pool of one library (OpenMP and OpenBLAS threads spin after each
    parallel region) steal CPU from the other. Returns two lists of seconds."""
    t_ours, t_theirs = [], []
    starts = list(range(0, samples - batch + 1, batch)) * epochs
    for b, first in enumerate(range(0, len(starts), block)):
        chunk = starts[first : first + block]
        pair = ((ours, t_ours), (theirs, t_theirs))
        for step, times in pair if b % 2 == 0 else pair[::-1]:
            for i in chunk:
                start = time.perf_counter()
                step(i)
                times.append(time.perf_counter() - start)
    return t_ours, t_theirs


def _proc_status_mib(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    """Peak resident set size of this process: VmHWM, else ru_maxrss.

    ru_maxrss alone can be wrong in a child: Linux carries the parent's peak across fork+exec.
    """
    hwm = _proc_status_mib("VmHWM")
    if hwm is not None:
        return hwm
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def memory_child(library, model, samples, batch):
    """Run in a subprocess: train one epoch and print the peak-RSS growth as JSON."""
    x, y = make_data(samples)
    net_np = build_nnparts(model)
    if library == "nnparts":
        step, _ = nnparts_epoch_fn(model, x, y, batch)
    else:
        import torch  # noqa: F401  (imported before the baseline is taken)

        step = torch_epoch_fn(model, x, y, batch, nnparts_weights(net_np))
    before = _proc_status_mib("VmRSS") if reset_peak_rss() else peak_rss_mib()
    epoch_of(step, samples, batch)()
    peak = peak_rss_mib()
    print(json.dumps({"peak_growth_mib": peak - before, "peak_mib": peak}))


def measure_memory(library, model, samples, batch):
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", library,
           "--models", model, "--samples", str(samples), "--batch", str(batch)]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="cnn,simple", help="comma list of cnn, simple, resnet")
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per library")
    parser.add_argument(
        "--threads", type=int, default=0,
        help="limit both libraries to this many threads (torch.set_num_threads and OpenBLAS via "
        "threadpoolctl); 0 keeps the defaults. 1 gives steadier numbers on a shared machine",
    )  # fmt: skip
    parser.add_argument("--no-memory", action="store_true", help="skip the subprocess runs")
    parser.add_argument("--memory-child", choices=["nnparts", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        if m not in ("cnn", "simple", "resnet"):
            parser.error(f"unknown model {m!r}; choose from cnn, simple, resnet")
    if args.memory_child:
        memory_child(args.memory_child, models[0], args.samples, args.batch)
        return

    import torch

    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
        torch.set_num_threads(args.threads)
    x, y = make_data(args.samples)
    print(
        f"{args.samples} samples (times scaled to a 60000-sample epoch), batch {args.batch}, "
        f"float32, SGD lr {LR}; torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"numpy {np.__version__}, {os.cpu_count()} CPUs"
    )
    steps_per_epoch = -(-60000 // args.batch)
    for model in models:
        ours, net = nnparts_epoch_fn(model, x, y, args.batch)
        theirs = torch_epoch_fn(model, x, y, args.batch, nnparts_weights(net))
        for i in range(0, 4 * args.batch, args.batch):  # warm-up
            ours(i)
            theirs(i)
        t_ours, t_theirs = time_steps(ours, theirs, args.samples, args.batch, args.epochs)
        m_ours, m_theirs = statistics.median(t_ours), statistics.median(t_theirs)
        print(f"[{model}] {net.num_parameters()} parameters, {len(t_ours)} timed steps each")
        for name, m, t in (("nnparts", m_ours, t_ours), ("pytorch", m_theirs, t_theirs)):
            print(
                f"  {name}: median step {m * 1e3:.1f} ms -> epoch {m * steps_per_epoch:.1f} s "
                f"(sum of steps scaled: {sum(t) * 60000 / (args.samples * args.epochs):.1f} s)"
            )
        print(f"  ratio nnparts/pytorch: {m_ours / m_theirs:.2f}")
        if not args.no_memory:
            mem = {lib: measure_memory(lib, model, args.samples, args.batch)
                   for lib in ("nnparts", "torch")}  # fmt: skip
            print(
                "  peak RSS growth during one epoch (own subprocess, VmHWM): "
                f"nnparts {mem['nnparts']['peak_growth_mib']:.0f} MiB, "
                f"pytorch {mem['torch']['peak_growth_mib']:.0f} MiB"
            )


if __name__ == "__main__":
    main()
