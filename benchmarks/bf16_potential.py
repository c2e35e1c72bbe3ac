"""What a `--dtype bfloat16` would buy on CPUs with AVX512_BF16 or AMX (not an option yet).

MXNet 1.9.1's mx.contrib.amp with target_dtype="bfloat16" runs Convolution and FullyConnected
in bfloat16 on oneDNN 2.4.4's bf16 kernels (float32 master weights, cast every step; BatchNorm,
pooling and ReLU then run on the bfloat16 activations, the loss in float32). AMX needs two
things oneDNN 2.4.4 does not do by itself: DNNL_MAX_CPU_ISA=AVX512_CORE_AMX (AMX is opt-in in
2.4), and Linux's permission for the AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM), else the
first AMX instruction dies with SIGILL.

speed: paired rounds of benchmarks/mx_train_step.py children, order rotated each round:
  float32 (native ISA) | bf16 on AVX512_BF16 (AMX off) | bf16 on AMX; the figure is the median of
  the within-round ratios to float32.
train: one real training run with amp bfloat16 (the `swishtrain` command in this process, after
  amp.init), to set against float32 runs of the same configuration and seeds, e.g. a study's.

    python benchmarks/bf16_potential.py speed --rounds 3 [--width 1]
    python benchmarks/bf16_potential.py train [--amx] -- --model vgg16_bn --width 0.25 ...
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

VARIANTS = {
    "float32": ([], {}),
    "bf16_avx512": (["--amp-bf16"], {"DNNL_MAX_CPU_ISA": "AVX512_CORE_BF16"}),
    "bf16_amx": (["--amp-bf16", "--amx"], {"DNNL_MAX_CPU_ISA": "AVX512_CORE_AMX"}),
}


def available_variants():
    flags = isa_mod.cpu_flags()
    return [v for v, need in (("float32", set()), ("bf16_avx512", {"avx512_bf16"}),
                              ("bf16_amx", {"amx_bf16", "amx_tile"})) if need <= flags]


def speed(args):
    variants = args.variant or available_variants()
    print(f"machine: {isa_mod.machine_line()}")
    rounds = []
    for r in range(args.rounds):
        order = variants[r % len(variants):] + variants[:r % len(variants)]
        got = {}
        for v in order:
            flags, env = VARIANTS[v]
            e = isa_mod.environ("native")
            e.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))
            e.update(env)
            cmd = [sys.executable, str(HERE / "mx_train_step.py"), "--model", args.model,
                   "--width", str(args.width), "--batch-size", str(args.batch_size), "--steps",
                   str(args.steps), "--repeats", str(args.repeats), "--json", *flags]
            proc = subprocess.run(cmd, env=e, capture_output=True, text=True)
            if proc.returncode:
                raise SystemExit(f"{v} failed:\n{proc.stderr[-3000:]}")
            got[v] = json.loads(proc.stdout[proc.stdout.index("{"):])
        rounds.append(got)
        print(f"round {r + 1}: " + ", ".join(f"{v} {got[v]['train_img_per_s']:.1f}"
                                             for v in variants) + " img/s", flush=True)
    print(f"\n{args.model} width {args.width:g} batch {args.batch_size}, medians of "
          f"{args.rounds} paired rounds:")
    print(f"{'variant':14}{'DNNL_MAX_CPU_ISA':>20}{'img/s':>10}{'x float32':>12}")
    for v in variants:
        rate = statistics.median(g[v]["train_img_per_s"] for g in rounds)
        ratio = statistics.median(g[v]["train_img_per_s"] / g["float32"]["train_img_per_s"]
                                  for g in rounds) if "float32" in variants else float("nan")
        print(f"{v:14}{VARIANTS[v][1].get('DNNL_MAX_CPU_ISA', '(native)'):>20}{rate:10.1f}"
              f"{ratio:12.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": isa_mod.machine_line(),
                                               "rounds": rounds}, indent=1))


def train(args, rest):
    """`swishtrain <rest>` in this process, with amp bfloat16 initialised first."""
    from train_cli import threads
    threads.configure()
    if args.amx:
        import ctypes
        os.environ["DNNL_MAX_CPU_ISA"] = "AVX512_CORE_AMX"  # before mxnet loads oneDNN
        if ctypes.CDLL(None).syscall(158, 0x1023, 18) != 0:
            raise SystemExit("the kernel refused AMX (arch_prctl ARCH_REQ_XCOMP_PERM)")
    from mxnet.contrib import amp
    amp.init(target_dtype="bfloat16")
    from train_cli.cli import cli
    sys.argv = ["swishtrain", *rest]
    cli()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--model", default="vgg16_bn")
    s.add_argument("--width", type=float, default=1.0)
    s.add_argument("--batch-size", type=int, default=128)
    s.add_argument("--steps", type=int, default=6)
    s.add_argument("--repeats", type=int, default=3)
    s.add_argument("--rounds", type=int, default=3)
    s.add_argument("--variant", action="append", choices=sorted(VARIANTS))
    s.add_argument("--json")
    t = sub.add_parser("train")
    t.add_argument("--amx", action="store_true")
    argv = sys.argv[1:]
    rest = []
    if "--" in argv:
        i = argv.index("--")
        argv, rest = argv[:i], argv[i + 1:]
    args = parser.parse_args(argv)
    return speed(args) if args.mode == "speed" else train(args, rest)


if __name__ == "__main__":
    main()
