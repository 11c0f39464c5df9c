"""The fast recipe's 3x3 convolutions one layer at a time, nnparts vs PyTorch (CPU).

For each convolution of ``recipes/fast.yaml``'s network (batch 256, Fashion-MNIST sizes: 8 ->
32 channels at 27x27, 32 -> 32 and 32 -> 64 at 13x13, 64 -> 64 and 64 -> 128 at 6x6, 128 -> 128
at 3x3; 3x3 kernels, padding 1) it times forward + backward (input and weight gradients) and the
forward alone, on the same random input, weights and output gradient, interleaving the two
libraries in rounds, and prints the medians and the ratio nnparts / PyTorch. nnparts gets its
input and output gradient channels-last, as its network hands them over (``--memory nchw``:
NCHW, which costs the transposing copies the network avoids). ``--layout`` forces one of
nnparts' im2col lowerings (``nchw``, ``nhwc``; default ``auto``: channels-last for a
channels-last input, else the rule of ``nnparts.functional.conv._channels_last``).

    python benchmarks/bench_conv_layers.py
    python benchmarks/bench_conv_layers.py --layout nchw --json conv-nchw.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _bench  # noqa: E402
import numpy as np  # noqa: E402

LAYERS = [(8, 32, 27), (32, 32, 13), (32, 64, 13), (64, 64, 6), (64, 128, 6), (128, 128, 3)]


def time_layer(c: int, o: int, h: int, batch: int, rounds: int, memory: str, block: int) -> list:
    """Medians (ms) of nnparts fwd+bwd, torch fwd+bwd, nnparts fwd, torch fwd for one layer."""
    import torch

    import nnparts.functional as F
    from nnparts.tensor import Tensor

    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, c, h, h)).astype(np.float32)
    w = (rng.standard_normal((o, c, 3, 3)) * 0.1).astype(np.float32)
    g = rng.standard_normal((batch, o, h, h)).astype(np.float32)
    tx, tw, tg = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True), \
        torch.tensor(g)  # fmt: skip
    if memory == "channels_last":  # as in the network: after the first layer every activation
        x, g = (np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2) for a in (x, g))

    def ours_train():
        xt, wt = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
        F.conv2d(xt, wt, padding=1).backward(Tensor(g))

    def ours_forward():
        F.conv2d(Tensor(x), Tensor(w), padding=1)

    def torch_train():
        torch.nn.functional.conv2d(tx, tw, padding=1).backward(tg)

    def torch_forward():
        with torch.no_grad():
            torch.nn.functional.conv2d(tx, tw, padding=1)

    fns = [ours_train, torch_train, ours_forward, torch_forward]
    for fn in fns:  # warm-up: workspaces, thread pools
        fn()
    times = [[] for _ in fns]
    for r in range(rounds):  # interleaved; the order flips every round
        for i in range(len(fns)) if r % 2 == 0 else reversed(range(len(fns))):
            # one untimed call first: the other library's threads wind down meanwhile (PyTorch's
            # OpenMP threads keep spinning after their work and slow whatever runs next)
            fns[i]()
            for _ in range(block):
                start = time.perf_counter()
                fns[i]()
                times[i].append(time.perf_counter() - start)
    return [_bench.median(t) * 1e3 for t in times]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--block", type=int, default=3, help="timed calls per library per round")
    ap.add_argument("--layout", default="auto", choices=["auto", "nchw", "nhwc"])
    ap.add_argument("--policy", default="default", choices=_bench.POLICIES)
    ap.add_argument(
        "--memory",
        default="channels_last",
        choices=["channels_last", "nchw"],
        help="memory of nnparts' input and output gradient (default: channels-last, as the "
        "network hands them over; PyTorch gets NCHW, its default)",
    )
    ap.add_argument("--json", metavar="PATH", help="also write the medians and ratios here")
    args = ap.parse_args(argv)
    _bench.apply_policy(args.policy)

    from nnparts.functional import conv

    conv.LAYOUT = args.layout
    print(_bench.header())
    print(f"batch {args.batch}, 3x3 convolutions, padding 1, float32; layout {args.layout}; "
          f"memory {args.memory}; policy {args.policy}; median of {args.rounds} interleaved "
          f"rounds of {args.block} calls after an untimed one")  # fmt: skip
    print(f"{'layer':<22}{'fwd+bwd nnparts':>16}{'torch':>9}{'ratio':>7}"
          f"{'fwd nnparts':>13}{'torch':>9}{'ratio':>7}")  # fmt: skip
    rows, sums = [], {"nnparts": 0.0, "torch": 0.0}
    for c, o, h in LAYERS:
        a, b, cf, d = time_layer(c, o, h, args.batch, args.rounds, args.memory, args.block)
        sums["nnparts"] += a
        sums["torch"] += b
        name = f"{c}->{o} at {h}x{h}"
        print(f"{name:<22}{a:>13.1f} ms{b:>9.1f}{a / b:>7.2f}{cf:>10.1f} ms{d:>9.1f}{cf / d:>7.2f}")
        rows.append({"layer": name, "train_ms": [a, b], "forward_ms": [cf, d]})
    total = sums["nnparts"] / sums["torch"]
    print(f"{'all six, fwd+bwd':<22}{sums['nnparts']:>13.1f} ms{sums['torch']:>9.1f}{total:>7.2f}")
    if args.json:
        _bench.write_json(
            args.json,
            {
                "header": _bench.header(),
                "layout": args.layout,
                "memory": args.memory,
                "rows": rows,
                "ratio": total,
            },
        )


if __name__ == "__main__":
    main()
