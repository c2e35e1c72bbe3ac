"""What each way of computing Swish costs in VGG16-BN training, against ReLU.

Variants: ReLU; Gluon's nn.Swish (x * sigmoid(beta * x)); x * F.sigmoid(x);
F.elemwise_mul(F.Activation(x, "sigmoid"), x) (swishtrain's fallback); the fused C++ operator
(swishtrain's default). All networks live in one process and are stepped round-robin, with the
order rotated each round, so every variant sees the same machine; the figure is the median over
rounds of each variant's step time relative to ReLU's in the same round.

    python benchmarks/swish_variants.py --rounds 6 [--width 1.0]
"""
# ruff: noqa: I001, E402  (MXNet reads its thread settings once, at import: configure them first)
import argparse
import statistics
import time

from train_cli.startup import before_mxnet

before_mxnet()

import mxnet as mx
import numpy as np
from mxnet.gluon import nn

from train_cli.model import activations
from train_cli.config import TrainConfig
from train_cli.training.engine import Engine


class PlainSwish(nn.HybridBlock):
    def hybrid_forward(self, F, x):
        return x * F.sigmoid(x)


FusedOrGluon = activations.Swish  # the product's block (patched below while building)
VARIANTS = {
    "relu": ("vgg16_bn", None),
    "nn.Swish": ("vgg16_bn_swish", lambda: nn.Swish()),
    "x*sigmoid(x)": ("vgg16_bn_swish", PlainSwish),
    "elemwise(Activation)": ("vgg16_bn_swish", lambda: FusedOrGluon(fused=False)),
    "fused": ("vgg16_bn_swish", lambda: FusedOrGluon(fused=True)),
}


def build(model, swish, width, batch):
    original = activations.Swish
    if swish is not None:  # the registry builds its Swish blocks through this name
        activations.Swish = lambda: swish()
    try:
        engine = Engine(TrainConfig(model=model, width=width, batch_size=batch), [mx.cpu()])
    finally:
        activations.Swish = original
    engine.trainer.set_learning_rate(1e-4)
    rng = np.random.default_rng(0)
    xs = engine.load(rng.standard_normal((batch, 3, 32, 32)).astype(np.float32))
    ys = engine.load(rng.integers(0, 10, batch).astype(np.float32))
    return lambda: engine.step(xs, ys)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    steps = {name: build(model, swish, args.width, args.batch_size)
             for name, (model, swish) in VARIANTS.items()}
    for step in steps.values():  # warm-up: graph build, memory plan, oneDNN primitive caches
        step(), step()
    mx.nd.waitall()
    names, ratios = list(steps), {name: [] for name in steps}
    times = {name: [] for name in steps}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        seconds = {}
        for name in order:
            start = time.perf_counter()
            for _ in range(args.steps):
                steps[name]()
            mx.nd.waitall()
            seconds[name] = (time.perf_counter() - start) / args.steps
        for name in names:
            times[name].append(seconds[name])
            ratios[name].append(seconds["relu"] / seconds[name])
    print(f"{'variant':24}{'s/step':>10}{'img/s':>10}{'vs ReLU':>10}")
    for name in names:
        t = statistics.median(times[name])
        ratio = statistics.median(ratios[name])
        print(f"{name:24}{t:10.3f}{args.batch_size / t:10.1f}{ratio:10.2f}")


if __name__ == "__main__":
    main()
