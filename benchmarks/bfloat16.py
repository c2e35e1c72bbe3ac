"""`--dtype bfloat16` against float32, per CPU kind and network width (train step, img/s).

Variants, each a child process of benchmarks/mx_train_step.py (swishtrain's Engine and step):
  float32            the default
  bfloat16_avx512    --dtype bfloat16 with oneDNN capped at AVX512_CORE_BF16 (what a CPU with
                     AVX512_BF16 but no AMX runs: Cooper Lake, Zen 4)
  bfloat16_amx       --dtype bfloat16 as swishtrain runs it on an AMX CPU (Sapphire Rapids on)
Rounds are paired: every variant once per round, order rotated; a figure is the median of the
within-round ratios to float32, so drifts of the machine cancel out. Variants the CPU cannot
run are left out, each with a line saying so (machine line: benchmarks/isa.py).

    python benchmarks/bfloat16.py --rounds 3 [--width 1 --width 0.5 --width 0.25]
                                  [--model vgg16_bn_swish]
    python benchmarks/bfloat16.py --width 0.125 --batch-size 8 --steps 1 --repeats 1 --rounds 1
                                  --sgemm-size 128     (the smoke test's tiny run)

Exit status 0 when a bfloat16 variant was measured; 2 when this CPU can run none (no AMX, no
AVX512_BF16): the float32 variant is still measured, and each bfloat16 one is named as not
available.
"""
# ruff: noqa: E402
import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import isa as isa_mod  # noqa: I001

from train_cli import cpu  # noqa: E402
from train_cli.training import precision  # noqa: E402 (no mxnet import)

VARIANTS = {  # name: (dtype, DNNL_MAX_CPU_ISA or None, lscpu flags needed)
    "float32": ("float32", None, set()),
    "bfloat16_avx512": ("bfloat16", precision.BF16_ISA, precision.NEEDS[precision.BF16_ISA]),
    "bfloat16_amx": ("bfloat16", None, precision.NEEDS[precision.AMX_ISA]),
}


def step_rate(variant, args, width):
    """The JSON of mx_train_step.py for one variant at one width, in a process of its own."""
    dtype, cap, _ = VARIANTS[variant]
    env = isa_mod.environ("native")
    env.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))
    if cap:
        env["DNNL_MAX_CPU_ISA"] = cap
    cmd = [sys.executable, str(HERE / "mx_train_step.py"), "--model", args.model, "--width",
           str(width), "--batch-size", str(args.batch_size), "--steps", str(args.steps),
           "--repeats", str(args.repeats), "--sgemm-size", str(args.sgemm_size), "--dtype", dtype,
           "--json"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{variant} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout[proc.stdout.index("{"):])


def main():
    """Measure the variants this CPU can run in paired rounds; print the ratios to float32."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg16_bn")
    parser.add_argument("--width", type=float, action="append")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sgemm-size", type=int, default=2048,
                        help="mx_train_step.py's GEMM ceiling size (the ceiling is not reported "
                             "here: smaller is faster)")
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS))
    parser.add_argument("--json")
    args = parser.parse_args()
    flags = cpu.flags()
    variants = [v for v in (args.variant or VARIANTS) if VARIANTS[v][2] <= flags]
    widths = args.width or [1.0]
    print(f"machine: {isa_mod.machine_line()}")
    for v in args.variant or VARIANTS:
        if v not in variants:
            print(f"{v}: not available on this CPU (needs lscpu flags "
                  f"{' '.join(sorted(VARIANTS[v][2]))})")
    results = {}
    for width in widths:
        rounds = []
        for r in range(args.rounds):
            order = variants[r % len(variants):] + variants[:r % len(variants)]
            got = {v: step_rate(v, args, width) for v in order}
            rounds.append(got)
            print(f"width {width:g} round {r + 1}: " + ", ".join(
                f"{v} {got[v]['train_img_per_s']:.1f}" for v in variants) + " img/s", flush=True)
        results[width] = rounds
    print(f"\n{args.model}, batch {args.batch_size}, medians of {args.rounds} paired rounds:")
    print(f"{'width':>6} {'variant':16}{'img/s':>9}{'x float32':>11}")
    for width, rounds in results.items():
        for v in variants:
            rate = statistics.median(g[v]["train_img_per_s"] for g in rounds)
            ratio = (statistics.median(g[v]["train_img_per_s"] / g["float32"]["train_img_per_s"]
                                       for g in rounds) if "float32" in variants else float("nan"))
            print(f"{width:6g} {v:16}{rate:9.1f}{ratio:11.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": isa_mod.machine_line(),
                                               "rounds": {str(w): r for w, r in results.items()}},
                                              indent=1))


    return 0 if any(VARIANTS[v][0] == "bfloat16" for v in variants) else 2


if __name__ == "__main__":
    sys.exit(main())
