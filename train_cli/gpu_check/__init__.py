"""`make gpu-check`: what no machine of this project can run, checked by a person on a GPU.

Prints one PASS/FAIL/SKIP line per check, each with the figure it compared, and exits 1 if any
failed; on a machine without an NVIDIA GPU it says so in one line and exits 2. The checks prove
results, not only that things run: the first steps of each Swish network against the CPU in
float32 from the same weights, the headline command on 2 GPUs killed and resumed, float16
resumed and with an overflow forced, `launch` with GPUs, evaluation on the CPU.

tests/gpu/ runs the same checks under pytest: on a GPU, or else on the CPU stand-in
(SWISHTRAIN_GPU_STANDIN=1: two GPUs played by CPU contexts; the float16 checks skip there, as
MXNet's CPU has no float16 kernels), which proves the checks themselves. Every check uses tiny
synthetic CIFAR-10 files in a temporary folder, so no data set is needed.

    python -m train_cli.gpu_check [--keep DIR]
"""
import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

from train_cli.gpu_check.common import gpu_ids
from train_cli.gpu_check.numerics import (
    check_float16_overflow_is_skipped,
    check_float32_is_float32,
    check_one_vs_two_gpus,
    check_preflight,
    make_step_check,
)
from train_cli.gpu_check.runs import (
    check_evaluate_on_cpu,
    check_headline_float16_resumed,
    check_headline_killed_and_resumed,
    check_launch_with_gpus,
)
from train_cli.startup import before_mxnet

__all__ = ["CHECKS", "gpu_ids", "main", "run_check"]

CHECKS = [check_preflight, check_float32_is_float32] + \
    [make_step_check(m, d) for d in ("float32", "float16")
     for m in ("vgg16_bn", "vgg16_bn_swish", "vgg16_bn_swishbeta")] + \
    [check_float16_overflow_is_skipped, check_one_vs_two_gpus,
     check_headline_killed_and_resumed, check_headline_float16_resumed, check_launch_with_gpus,
     check_evaluate_on_cpu]

@dataclasses.dataclass
class Outcome:
    name: str
    status: str  # PASS | FAIL | SKIP
    detail: str

    def line(self):
        return f"{self.status:4}  {self.name}: {self.detail}"


def run_check(check, work):
    """Run one check; its PASS/FAIL/SKIP outcome."""
    try:
        detail = check(work) or ""
    except Exception as e:  # a failing check must not hide the ones after it
        return Outcome(check.__name__, "FAIL", f"{type(e).__name__}: {e}".splitlines()[0])
    if detail.startswith("SKIP: "):
        return Outcome(check.__name__, "SKIP", detail[6:])
    return Outcome(check.__name__, "PASS", detail)


def main(argv=None):
    """Run every check; exit 0 if all passed, 1 if one failed, 2 without a GPU."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="keep the run folders in this folder")
    args = parser.parse_args(argv)
    before_mxnet()
    if not gpu_ids():
        print("gpu-check: no NVIDIA GPU visible to MXNet here (no CUDA build, driver or GPU); "
              "run it on a machine with one", file=sys.stderr)
        return 2
    import mxnet as mx

    from train_cli.training.gpus import standin
    print(f"mxnet {mx.__version__}, CUDA build: {mx.runtime.Features().is_enabled('CUDA')}, "
          f"GPUs: {len(gpu_ids())}" + (" (CPU stand-ins: the checks' code, not a GPU's "
                                       "arithmetic)" if standin() else ""))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        outcomes = []
        for check in CHECKS:
            outcomes.append(run_check(check, work))
            print(outcomes[-1].line(), flush=True)
    failed = [o for o in outcomes if o.status == "FAIL"]
    print(f"{sum(o.status == 'PASS' for o in outcomes)} passed, {len(failed)} failed")
    return 1 if failed else 0
