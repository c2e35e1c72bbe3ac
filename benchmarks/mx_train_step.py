r"""swishtrain's train-step figure alone (what `swishtrain bench` reports as train img/s: the same
harness, train_cli/analysis/harness.py, with its GEMM ceiling and CPU peak), without bench's
epoch, evaluation and data-pipeline measurements, which take minutes at full width when the ISA
is capped at AVX2.

    python benchmarks/mx_train_step.py --model vgg16_bn --steps 6 --repeats 3 --json
    python benchmarks/mx_train_step.py --width 0.125 --batch-size 8 --steps 1 --repeats 1 \
        --warmup 1 --sgemm-size 128        (the smoke test's tiny run)

Exit status 0; 2 when this CPU cannot run --dtype (bfloat16 needs AMX or AVX512_BF16), after
one line saying so.
"""
# ruff: noqa: I001, E402  (MXNet reads its thread settings once, at import: configure them first)
import argparse
import json
import os
import statistics
import sys

from train_cli.startup import before_mxnet

before_mxnet()

import mxnet as mx

from train_cli.analysis.harness import TrainStep, gemm_ceiling, judge, machine_peak
from train_cli.config import TrainConfig
from train_cli.errors import UserError
from train_cli.model import swish_op
from train_cli.model.spec import uses_fused_op
from train_cli.training import precision


def main():
    """Measure the train step of one configuration; print a line or one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg16_bn")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--sgemm-size", type=int, default=2048,
                        help="side of the square matrices of the GEMM ceiling")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                        help="swishtrain's --dtype (bfloat16: AMX unless DNNL_MAX_CPU_ISA caps "
                             "it lower)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    try:
        precision.check(args.dtype)
    except UserError as e:
        print(f"--dtype {args.dtype}: not available on this CPU ({e})")
        return 2
    cfg = TrainConfig(model=args.model, width=args.width, batch_size=args.batch_size,
                      dtype=args.dtype)
    contexts = [mx.cpu()]
    step = TrainStep(cfg, contexts)  # first: the engine sets the process up for the dtype
    rates = step.rates(args.steps, args.repeats, args.warmup)
    ceiling, backend, by_backend = gemm_ceiling(contexts, args.dtype, args.sgemm_size)
    peak = machine_peak(contexts, args.dtype)
    gflop, rate = step.gflop_per_img(), statistics.median(rates)
    result = {"model": args.model, "width": args.width, "batch_size": args.batch_size,
              "train_img_per_s": rate, "rates": rates, "gflop_per_img": gflop,
              "achieved_gflops": gflop * rate, "sgemm_gflops": ceiling, "sgemm_backend": backend,
              "sgemm_by_backend": by_backend, "peak": peak, "peak_gflops": peak["gflops"],
              **judge(gflop * rate, ceiling, peak["gflops"]), "dtype": args.dtype,
              "swish": swish_op.status() if uses_fused_op(args.model) else "n/a",
              "env": {k: v for k, v in os.environ.items()
                      if k.startswith(("MXNET_", "OMP_", "KMP_", "DNNL_", "MKLDNN_", "GOMP_"))}}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.model} width {args.width:g}, batch {args.batch_size}, {args.dtype}: "
          f"{rate:.1f} train img/s (median of {args.repeats}), {gflop * rate:.1f} GFLOP/s; "
          f"GEMM ceiling {ceiling:.1f} ({backend}), CPU peak "
          + (f"{peak['gflops']:.1f}" if peak["gflops"] else "unknown"))
    for note in result["notes"]:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
