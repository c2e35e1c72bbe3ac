"""One conv3x3 layer of VGG's last stages, as oneDNN's convolution vs as im2col + one GEMM.

At 2x2 (and 4x4) spatial size with 512 channels, oneDNN 2.4.4's convolution kernels are far from
the GEMM ceiling (backward-weights especially: benchmarks/profile_step.py's per-layer table). The
same layer as im2col -> FullyConnected (one GEMM with K = batch x pixels) -> transpose computes
the same function with the same parameters (weight 512x512x3x3, bias 512). This measures both,
forward + backward (data and weights), interleaved, in one process, and checks they agree.

    python benchmarks/conv_as_gemm.py [--side 2] [--channels 512] [--rounds 5]
    python benchmarks/conv_as_gemm.py --channels 16 --batch-size 4 --rounds 1 --reps 1
                                      (the smoke test's tiny run)
"""
# ruff: noqa: I001, E402
import argparse
import statistics
import time

from train_cli.startup import before_mxnet

before_mxnet()

import mxnet as mx
import numpy as np
from mxnet import autograd


def conv(x, w, b, c):
    """The layer as oneDNN's convolution."""
    return mx.nd.Convolution(x, w, b, kernel=(3, 3), pad=(1, 1), num_filter=c)


def gemm(x, w, b, c):
    """The layer as im2col, one FullyConnected GEMM and a transpose back."""
    n, side = x.shape[0], x.shape[2]
    cols = mx.nd.im2col(x, kernel=(3, 3), pad=(1, 1))  # (n, c*9, side*side)
    rows = mx.nd.reshape(mx.nd.transpose(cols, axes=(0, 2, 1)), shape=(-1, c * 9))
    out = mx.nd.FullyConnected(rows, mx.nd.reshape(w, shape=(0, -1)), b, num_hidden=c)
    return mx.nd.reshape(mx.nd.transpose(mx.nd.reshape(out, shape=(n, side * side, c)),
                                         axes=(0, 2, 1)), shape=(n, c, side, side))


def dense(x, w, b, c):
    """At 2x2 with padding 1 every output pixel sees every input pixel: the layer is one dense
    layer of (c*4) -> (c*4) whose weight is assembled from the 3x3 kernel (16 blocks of c x c),
    so it skips the 5/9 of the convolution's multiply-adds that hit the zero padding."""
    assert x.shape[2] == 2
    blocks = [mx.nd.reshape(mx.nd.slice(w, begin=(None, None, 1 - y, 1 - xx),
                                        end=(None, None, 3 - y, 3 - xx)), shape=(0, 1, -1))
              for y in (0, 1) for xx in (0, 1)]
    m = mx.nd.reshape(mx.nd.concat(*blocks, dim=1), shape=(-3, 0))
    out = mx.nd.FullyConnected(mx.nd.reshape(x, shape=(0, -1)), m,
                               mx.nd.repeat(b, repeats=4), num_hidden=4 * c)
    return mx.nd.reshape(out, shape=(0, c, 2, 2))


def main():
    """Check that the formulations agree, then time them interleaved."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=2)
    parser.add_argument("--channels", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    c, n, s = args.channels, args.batch_size, args.side
    rng = np.random.default_rng(0)
    x = mx.nd.array(rng.standard_normal((n, c, s, s)).astype(np.float32))
    w = mx.nd.array(rng.standard_normal((c, c, 3, 3)).astype(np.float32) * 0.02)
    b = mx.nd.array(rng.standard_normal(c).astype(np.float32))
    head = mx.nd.array(rng.standard_normal((n, c, s, s)).astype(np.float32))
    for a in (x, w, b):
        a.attach_grad()

    def step(fn):
        with autograd.record():
            y = fn(x, w, b, c)
        y.backward(head)
        mx.nd.waitall()
        return y.asnumpy(), x.grad.asnumpy(), w.grad.asnumpy(), b.grad.asnumpy()

    fns = {"conv": conv, "im2col+gemm": gemm}
    if s == 2:
        fns["dense"] = dense
    ref = step(conv)
    for name, fn in fns.items():
        for what, r, a in zip(("output", "grad x", "grad w", "grad b"), ref, step(fn)):
            print(f"{name} {what}: max |diff| {np.abs(r - a).max():.2e} "
                  f"(max |value| {np.abs(r).max():.2e})")
    times = {k: [] for k in fns}
    names = list(fns)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            for _ in range(args.reps):
                step(fns[name])
            times[name].append((time.perf_counter() - start) / args.reps * 1e3)
    print(f"{c}->{c} @{s}x{s}, batch {n}, fwd+bwd ms (median of {args.rounds} rounds; ratio to "
          "conv within each round):")
    for name in names:
        ratio = statistics.median(a / b for a, b in zip(times["conv"], times[name]))
        print(f"  {name:12} {statistics.median(times[name]):7.1f} ms   conv/this {ratio:.2f}")


if __name__ == "__main__":
    main()
