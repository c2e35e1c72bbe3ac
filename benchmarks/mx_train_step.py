"""swishtrain's train-step figure alone (what `swishtrain bench` reports as train img/s, with the
same Engine, step and sgemm ceiling), without bench's epoch, evaluation and data-pipeline
measurements, which take minutes at full width when the ISA is capped at AVX2.

    python benchmarks/mx_train_step.py --model vgg16_bn --steps 6 --repeats 3 --json
"""
# ruff: noqa: I001, E402  (MXNet reads its thread settings once, at import: configure them first)
import argparse
import json
import os
import statistics

from train_cli.startup import before_mxnet

before_mxnet()

import mxnet as mx

from train_cli.analysis.bench import gemm_gflops, synthetic_split, timed
from train_cli.config import TrainConfig
from train_cli.data.loader import train_batches
from train_cli.model import swish_op
from train_cli.model.spec import uses_fused_op
from train_cli.training.engine import Engine


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg16_bn")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                        help="swishtrain's --dtype (bfloat16: AMX unless DNNL_MAX_CPU_ISA caps "
                             "it lower)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cfg = TrainConfig(model=args.model, width=args.width, batch_size=args.batch_size,
                      dtype=args.dtype)
    engine = Engine(cfg, [mx.cpu()])  # first: it sets the process up for the dtype
    engine.trainer.set_learning_rate(1e-4)  # as bench: keep the weights sane
    split = synthetic_split(args.batch_size)
    images, labels = next(train_batches(split, args.batch_size, cfg.seed, 0, cfg.augment,
                                        shuffle=cfg.shuffle, inputs=cfg.input_norm))
    xs, ys = engine.load(images), engine.load(labels, cast=False)

    def train_steps():
        for _ in range(args.steps):
            engine.step(xs, ys)
        mx.nd.waitall()

    rates = [args.batch_size * args.steps / t for t in timed(train_steps, args.repeats,
                                                              args.warmup)]
    sgemm = gemm_gflops([mx.cpu()], args.dtype)
    gflop = 3 * engine.net.forward_flops() / 1e9
    rate = statistics.median(rates)
    result = {"model": args.model, "width": args.width, "batch_size": args.batch_size,
              "train_img_per_s": rate, "rates": rates, "gflop_per_img": gflop,
              "achieved_gflops": gflop * rate, "sgemm_gflops": max(sgemm.values()),
              "sgemm_by_backend": sgemm,
              "dtype": args.dtype,
              "swish": (swish_op.status() if uses_fused_op(args.model)
                        else "n/a"),
              "env": {k: v for k, v in os.environ.items()
                      if k.startswith(("MXNET_", "OMP_", "KMP_", "DNNL_", "MKLDNN_", "GOMP_"))}}
    print(json.dumps(result) if args.json else result)


if __name__ == "__main__":
    main()
