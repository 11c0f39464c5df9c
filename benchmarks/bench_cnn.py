"""One CNN training epoch, nnparts vs PyTorch (CPU), same process, same weights, under each of
nnparts' threading policies, on an idle machine and with one core busy.

Three networks on random data of Fashion-MNIST's shape ((1, 28, 28) float32, 10 classes), batch
128, softmax cross-entropy, plain SGD written inline (``p.data -= lr * p.grad``) on both sides:

* ``cnn`` (issue 6's config): 2 x (conv 3x3 pad 1 -> BatchNorm2d -> ReLU -> max-pool 2)
  with 32 and 64 channels -> dense 128 -> ReLU -> dropout 0.5 -> dense 10;
* ``simple`` (the course's SimpleConvNet): conv 30 5x5 -> ReLU -> max-pool 2 -> dense 100 ->
  ReLU -> dense 10;
* ``resnet`` (``recipes/resnet.yaml``'s network): a pre-activation ResNet, conv 3x3 stem with 32
  channels, one pre-activation block per stage at 32, 64 and 128 channels (the later two halve
  the size, with a 1x1 strided shortcut), BN-ReLU, global average pooling, dense 10.

The output starts with the machine (``_bench.header()``: CPU, cores, AVX2/AVX-512, BLAS and its
kernel, versions).

Policies (``--policies``, see ``benchmarks/_bench.py``): ``default`` (nnparts' ``auto``, which
measures each call site), ``pool`` (nnparts' thread pool, BLAS at one thread), ``pool-off``
(plain NumPy, BLAS's own threads), ``blas1`` (plain NumPy, BLAS at one thread). Loads
(``--load``): ``idle``, and ``busy``, a process spinning on one core meanwhile. PyTorch keeps
its default threads throughout.

Interleaving: each training step is timed. Per load, after one untimed warm-up block per
policy, ``--rounds`` rounds run; in each, every policy in turn times a block of ``--block``
nnparts steps and a block of torch steps on the same batches (the policies' order rotates, which
library goes first alternates), so slow phases of a shared machine hit every setting alike.
Per model a table gives, per load and policy, the median step of each library and the ratio
nnparts / PyTorch (issue 7's target: <= 1.5), then per load how far the default's ratio is from
the best policy's (the requirement: within 5%, ``OK`` or ``MISS``), and the epoch time under the
default policy: the median step time x 469 steps (60000 samples), with the plain sum of the
steps scaled to 60000 samples.

Peak memory (under the default policy): each library trains one epoch in its own subprocess,
which reports its peak resident set size during the epoch minus its RSS before it (after
imports, data and model creation): the kernel's peak mark ``VmHWM`` is reset through
``/proc/self/clear_refs`` before the epoch and read after it (falling back to ``ru_maxrss`` off
Linux; ``ru_maxrss`` alone is polluted by the parent's peak across fork+exec). tracemalloc is not
used: it misses BLAS and torch buffers.

    python benchmarks/bench_cnn.py                       # cnn and simple, timing + memory
    python benchmarks/bench_cnn.py --models cnn --rounds 8 --json cnn.json
    python benchmarks/bench_cnn.py --models resnet --policies default,pool --load idle
    python benchmarks/bench_cnn.py --no-memory --samples 1280 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _bench  # noqa: E402
import numpy as np  # noqa: E402

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
    _bench.apply_policy("default")
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


def epoch_line(times, load, batch):
    """The epoch time of both libraries from their step ``times`` (a dict of lists)."""
    steps_per_epoch = -(-60000 // batch)
    medians = [_bench.median(times[lib]) * steps_per_epoch for lib in ("nnparts", "torch")]
    sums = [sum(times[lib]) * 60000 / (len(times[lib]) * batch) for lib in ("nnparts", "torch")]
    return (
        f"  epoch ({steps_per_epoch} steps) under default, {load}: nnparts {medians[0]:.1f} s, "
        f"pytorch {medians[1]:.1f} s (sums of steps scaled to 60000 samples: {sums[0]:.1f} s, "
        f"{sums[1]:.1f} s)"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="cnn,simple", help="comma list of cnn, simple, resnet")
    parser.add_argument("--samples", type=int, default=10000, help="data set size (steps cycle)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument(
        "--threads", type=int, default=0,
        help="torch.set_num_threads (0: torch's default); nnparts' threads follow --policies",
    )  # fmt: skip
    parser.add_argument("--no-memory", action="store_true", help="skip the subprocess runs")
    parser.add_argument("--memory-child", choices=["nnparts", "torch"], help=argparse.SUPPRESS)
    _bench.add_arguments(parser, rounds=6, block=10)
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        if m not in ("cnn", "simple", "resnet"):
            parser.error(f"unknown model {m!r}; choose from cnn, simple, resnet")
    if args.memory_child:
        memory_child(args.memory_child, models[0], args.samples, args.batch)
        return
    policies, loads = _bench.parse_settings(parser, args)
    if args.samples < args.batch:
        parser.error(f"--samples ({args.samples}) must be at least one batch ({args.batch})")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    header = _bench.header()
    print(header)
    x, y = make_data(args.samples)
    print(
        f"{args.samples} samples, batch {args.batch}, float32, SGD lr {LR}; per load "
        f"{args.rounds} rounds x blocks of {args.block} steps per policy and library"
    )
    batches = args.samples // args.batch
    report = {"header": header, "settings": vars(args), "models": {}}
    for model in models:
        ours, net = nnparts_epoch_fn(model, x, y, args.batch)
        theirs = torch_epoch_fn(model, x, y, args.batch, nnparts_weights(net))
        steps = {
            "nnparts": lambda k, step=ours: step(k % batches * args.batch),
            "torch": lambda k, step=theirs: step(k % batches * args.batch),
        }
        print(f"[{model}] {net.num_parameters()} parameters", flush=True)
        times = _bench.interleave(steps, policies, loads, args.rounds, args.block, log=print)
        summary = _bench.summarize(times)
        print("\n".join(_bench.format_summary(summary)))
        if "default" in policies:
            for load in loads:
                print(epoch_line(times[load]["default"], load, args.batch))
        if not args.no_memory:
            mem = {lib: measure_memory(lib, model, args.samples, args.batch)
                   for lib in ("nnparts", "torch")}  # fmt: skip
            summary["peak_rss_growth_mib"] = {k: v["peak_growth_mib"] for k, v in mem.items()}
            print(
                "  peak RSS growth during one epoch (own subprocess, VmHWM, default policy): "
                f"nnparts {mem['nnparts']['peak_growth_mib']:.0f} MiB, "
                f"pytorch {mem['torch']['peak_growth_mib']:.0f} MiB"
            )
        report["models"][model] = summary
    if args.json:
        _bench.write_json(args.json, report)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
