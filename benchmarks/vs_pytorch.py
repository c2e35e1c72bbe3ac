"""The speed targets, measured: swishtrain against PyTorch eager and against the machine.

Runs `swishtrain bench --json` (vgg16_bn, vgg16_bn_swish) and benchmarks/torch_vgg.py (ReLU,
SiLU) as separate processes, alternating, for several rounds; each figure is the median over
rounds of a ratio taken within the round, so slow drifts of the machine cancel out. With
--data-dir, one real training epoch also reports the peak memory of a full CIFAR-10 process.

    python benchmarks/vs_pytorch.py --rounds 3 [--data-dir ../shared/data/cifar10]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out[out.index("{"):])


def ours(model, args):
    return run_json([sys.executable, "-m", "train_cli", "bench", "--model", model,
                     "--width", str(args.width), "--batch-size", str(args.batch_size),
                     "--steps", str(args.steps), "--repeats", str(args.repeats), "--json"])


def torch_ref(act, args):
    return run_json([sys.executable, str(HERE / "torch_vgg.py"), "--model", "vgg16_bn",
                     "--act", act, "--width", str(args.width), "--batch-size",
                     str(args.batch_size), "--steps", str(args.steps), "--repeats",
                     str(args.repeats), "--json"])


def real_epoch(data_dir):
    """(summary, metrics row) of one full-width vgg16_bn epoch on 45,000 real images."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "train_cli", "--model", "vgg16_bn", "--epochs", "1",
                        "--data-dir", data_dir, "--val-split", "5000", "--run-dir",
                        f"{tmp}/run"], check=True, capture_output=True)
        lines = Path(f"{tmp}/run/metrics.csv").read_text().splitlines()
        row = dict(zip(lines[0].split(","), map(float, lines[1].split(","))))
        return json.loads(Path(f"{tmp}/run/summary.json").read_text()), row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--data-dir", help="CIFAR-10 folder: also measure a training process's "
                                           "peak memory (one full epoch)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))
    rounds = []
    for r in range(args.rounds):
        jobs = [("relu", lambda: ours("vgg16_bn", args)),
                ("torch", lambda: torch_ref("relu", args)),
                ("swish", lambda: ours("vgg16_bn_swish", args)),
                ("torch_silu", lambda: torch_ref("silu", args))]
        jobs = jobs[r % 4:] + jobs[:r % 4]  # rotate the order between rounds
        got = {name: job() for name, job in jobs}
        rounds.append(got)
        print(f"round {r + 1}: " + ", ".join(f"{k} {v['train_img_per_s']:.1f} img/s"
                                             for k, v in got.items()), flush=True)

    def ratio(fn):
        return statistics.median(fn(g) for g in rounds)

    relu = lambda g: g["relu"]  # noqa: E731
    figures = [
        ("vgg16_bn train img/s: ours / PyTorch eager", ">= 1.4",
         ratio(lambda g: relu(g)["train_img_per_s"] / g["torch"]["train_img_per_s"])),
        ("vgg16_bn_swish / vgg16_bn train img/s (ours)", ">= 0.95",
         ratio(lambda g: g["swish"]["train_img_per_s"] / relu(g)["train_img_per_s"])),
        ("vgg16_bn train GFLOP/s / sgemm ceiling", ">= 0.7",
         ratio(lambda g: relu(g)["achieved_gflops"] / relu(g)["sgemm_gflops"])),
        ("epoch (data + train) / pure train step", ">= 0.95",
         ratio(lambda g: relu(g)["epoch_img_per_s"] / relu(g)["train_img_per_s"])),
        ("evaluation / train img/s", ">= 3",
         ratio(lambda g: relu(g)["eval_img_per_s"] / relu(g)["train_img_per_s"])),
        ("(PyTorch: SiLU / ReLU train img/s)", "",
         ratio(lambda g: g["torch_silu"]["train_img_per_s"] / g["torch"]["train_img_per_s"])),
    ]
    med = lambda key, run="relu": statistics.median(g[run][key] for g in rounds)  # noqa: E731
    print(f"\nmedians over {args.rounds} rounds: ours vgg16_bn {med('train_img_per_s'):.1f}, "
          f"vgg16_bn_swish {med('train_img_per_s', 'swish'):.1f}, PyTorch "
          f"{med('train_img_per_s', 'torch'):.1f} ({rounds[-1]['torch']['memory_format']}) img/s; "
          f"{med('achieved_gflops'):.0f} of {med('sgemm_gflops'):.0f} GFLOP/s")
    print(f"{'figure':48}{'target':>10}{'measured':>10}")
    for name, target, value in figures:
        print(f"{name:48}{target:>10}{value:10.2f}")
    if args.data_dir:
        summary, row = real_epoch(args.data_dir)
        print(f"{'peak RSS of a CIFAR-10 training process, MB':48}{'< 3072':>10}"
              f"{summary['peak_rss_mb']:10.0f}")
        print(f"(that real epoch: 45,000 images in {row['epoch_seconds']:.0f} s including "
              f"validation, {row['train_img_per_s']:.1f} train img/s)")


if __name__ == "__main__":
    main()
