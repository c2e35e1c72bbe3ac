"""What each way of computing Swish costs in VGG16-BN training, against ReLU.

Variants: ReLU; Gluon's nn.Swish (x * sigmoid(beta * x), beta = 1); x * F.sigmoid(x);
F.elemwise_mul(F.Activation(x, "sigmoid"), x) (swishtrain's fallback); the fused C++ operator
(swishtrain's default). Each variant is a block class that the model registry
(activations.BLOCKS["swish"], called with the run's `fused` argument) builds in place of the
product's Swish while that variant's network is built; every network is then checked to hold
the variant's blocks. All networks live in one process, each trained by the benchmark harness's
step (train_cli/analysis/harness.py), stepped round-robin with the order rotated each round, so
every variant sees the same machine; the figure is the median over rounds of each variant's
step time relative to ReLU's in the same round.

    python benchmarks/swish_variants.py --rounds 6 [--width 1.0]
    python benchmarks/swish_variants.py --width 0.125 --batch-size 8 --rounds 2 --steps 1
                                        (the smoke test's tiny run)
"""
# ruff: noqa: I001, E402  (MXNet reads its thread settings once, at import: configure them first)
import argparse
import statistics
import time
from unittest import mock

from train_cli.startup import before_mxnet

before_mxnet()

import mxnet as mx
from mxnet.gluon import nn

from train_cli.analysis.harness import TrainStep
from train_cli.config import TrainConfig
from train_cli.model import activations


class GluonSwish(nn.Swish):
    """Gluon's own nn.Swish (x * sigmoid(beta * x) with a constant beta of 1)."""

    def __init__(self, fused=None, **kwargs):  # the registry's argument; this one never fuses
        super().__init__(**kwargs)


class PlainSwish(nn.HybridBlock):
    """x * F.sigmoid(x), the textbook formula in Gluon ops."""

    def __init__(self, fused=None, **kwargs):  # the registry's argument; this one never fuses
        super().__init__(**kwargs)

    def hybrid_forward(self, F, x):
        return x * F.sigmoid(x)


class FallbackSwish(activations.Swish):
    """swishtrain's Swish where the fused operator is unavailable (elemwise_mul of sigmoid)."""

    def __init__(self, fused=None, **kwargs):
        super().__init__(fused=False, **kwargs)


class FusedSwish(activations.Swish):
    """swishtrain's Swish with the fused C++ operator (an error if it cannot be loaded)."""

    def __init__(self, fused=None, **kwargs):
        super().__init__(fused=True, **kwargs)


VARIANTS = {  # name: (model, the block the registry builds for "swish", or None: unchanged)
    "relu": ("vgg16_bn", None),
    "nn.Swish": ("vgg16_bn_swish", GluonSwish),
    "x*sigmoid(x)": ("vgg16_bn_swish", PlainSwish),
    "elemwise(Activation)": ("vgg16_bn_swish", FallbackSwish),
    "fused": ("vgg16_bn_swish", FusedSwish),
}


def build(model, block, width, batch):
    """The harness's train step for model, its Swish layers built as `block`."""
    cfg = TrainConfig(model=model, width=width, batch_size=batch)
    if block is None:
        return TrainStep(cfg, [mx.cpu()])
    with mock.patch.dict(activations.BLOCKS, {"swish": block}):
        step = TrainStep(cfg, [mx.cpu()])
    kinds = {type(b) for b in step.engine.net.features._children.values()
             if isinstance(b, (nn.Swish, activations.Swish, PlainSwish))}
    if kinds != {block}:  # the registry did not build the variant: its figure would be a lie
        raise SystemExit(f"{model} was built with {kinds}, not {block.__name__}")
    return step


def main():
    """Time every variant, interleaved; print each one's step time and ratio to ReLU."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    steps = {name: build(model, block, args.width, args.batch_size)
             for name, (model, block) in VARIANTS.items()}
    for step in steps.values():  # warm-up: graph build, memory plan, oneDNN primitive caches
        step.run(2)
    names, ratios = list(steps), {name: [] for name in steps}
    times = {name: [] for name in steps}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        seconds = {}
        for name in order:
            start = time.perf_counter()
            steps[name].run(args.steps)
            seconds[name] = (time.perf_counter() - start) / args.steps
        for name in names:
            times[name].append(seconds[name])
            ratios[name].append(seconds["relu"] / seconds[name])
    print(f"{args.rounds} rounds of {args.steps} steps, vgg16_bn width {args.width:g}, batch "
          f"{args.batch_size}; vs ReLU: median over rounds of ReLU's step time / this one's")
    print(f"{'variant':24}{'s/step':>10}{'img/s':>10}{'vs ReLU':>10}")
    for name in names:
        t = statistics.median(times[name])
        ratio = statistics.median(ratios[name])
        print(f"{name:24}{t:10.3f}{args.batch_size / t:10.1f}{ratio:10.2f}")


if __name__ == "__main__":
    main()
