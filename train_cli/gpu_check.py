"""`make gpu-check`: what no machine of this project can run, checked by a person on a GPU.

Prints one PASS/FAIL/SKIP line per check and exits 1 if any failed; on a machine without an
NVIDIA GPU it says so in one line and exits 2. tests/gpu/ runs the same checks under pytest
(skipped there with the reason when there is no GPU). Every check uses tiny synthetic CIFAR-10
files in a temporary folder, so no data set is needed.

    python -m train_cli.gpu_check [--keep DIR]
"""
import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from train_cli import cuda_libs, threads

# a small network and data, so each check takes seconds on any GPU
TINY = ["--model", "vgg11_bn", "--width", "0.25", "--batch-size", "32", "--lr", "0.05",
        "--lr-steps", "1", "--eval-batch-size", "64", "--seed", "3"]


def gpu_ids():
    """The GPUs CUDA sees here ([] without a CUDA build or a driver)."""
    import mxnet as mx
    try:
        return list(range(mx.context.num_gpus()))
    except mx.base.MXNetError:
        return []


def write_tiny_cifar(folder, per_batch=64, test=64):
    """CIFAR-10 binary batches of learnable synthetic images (a class-dependent colour)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", test)]:
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = (labels[:, None] * 25 + rng.normal(0, 20, (n, 3072))).clip(0, 255)
        np.concatenate([labels[:, None], images.astype(np.uint8)], axis=1).tofile(
            folder / f"{name}.bin")
    return folder


def swishtrain(*args, wait=True):
    """Run the swishtrain command in a fresh process (as a user would)."""
    cmd = [sys.executable, "-m", "train_cli", *map(str, args)]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, capture_output=True, text=True)


# -----------------------------------------------------------------------------
# The checks: each returns a one-line detail or raises AssertionError (or says SKIP: ...)
def check_preflight(work):
    """The GPU preflight accepts every GPU here."""
    from train_cli.training.devices import CudaProbe, preflight_gpus
    ids, probe = gpu_ids(), CudaProbe()
    preflight_gpus(ids, probe)
    return ", ".join(f"GPU {g}: {probe.name(g)} ({'.'.join(map(str, probe.capability(g)))})"
                     for g in ids)


def _one_step(model, dtype):
    import mxnet as mx

    from train_cli.config import TrainConfig
    from train_cli.training.engine import Engine
    cfg = TrainConfig(model=model, dtype=dtype, gpus=(0,), batch_size=32)
    engine = Engine(cfg, [mx.gpu(0)])
    rng = np.random.default_rng(0)
    images = rng.normal(0, 1, (32, 3, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 10, 32).astype(np.float32)
    before = engine.net.collect_params()[next(iter(engine.net.collect_params()))].data().asnumpy()
    # float16 may skip a few steps while the loss scale settles (2^16 halves on each overflow);
    # one step must be applied, or the weights never move
    for step in range(1, 9):  # noqa: B007  (reported after the loop)
        stats = engine.step(engine.load(images), engine.load(labels, cast=False)).asnumpy()
        assert np.isfinite(stats[0]), f"loss {stats[0]}"
        skipped = len(stats) > 2 and stats[2]  # only float16 (loss scaling) reports it
        if not skipped:
            break
    mx.nd.waitall()
    after = engine.net.collect_params()[next(iter(engine.net.collect_params()))].data().asnumpy()
    assert not skipped and not np.array_equal(before, after), "no step was applied in 8"
    return (f"loss {stats[0] / 32:.4f}, applied at step {step}, loss scale "
            f"{engine.loss_scale.scale:g}")


def make_step_check(model, dtype):
    def check(work):
        return _one_step(model, dtype)
    check.__name__ = f"check_step_{model}_{dtype}"
    check.__doc__ = f"One training step of {model} in {dtype} on GPU 0."
    return check


def check_one_vs_two_gpus(work):
    """1 GPU and 2 GPUs on the same global batch make the same update (vgg11, no BN/dropout)."""
    import mxnet as mx

    from train_cli.config import TrainConfig
    from train_cli.mxnet_private import structural_params
    from train_cli.training.engine import Engine
    if len(gpu_ids()) < 2:
        return "SKIP: one GPU here"
    rng = np.random.default_rng(1)
    images = rng.normal(0, 1, (32, 3, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 10, 32).astype(np.float32)
    params = []
    for gpus, per_gpu in (((0,), 32), ((0, 1), 16)):
        cfg = TrainConfig(model="vgg11", width=0.25, dropout=0.0, gpus=gpus, batch_size=per_gpu)
        engine = Engine(cfg, [mx.gpu(g) for g in gpus])
        engine.step(engine.load(images), engine.load(labels, cast=False))
        params.append({k: p.data(mx.gpu(0)).asnumpy()
                       for k, p in structural_params(engine.net).items()})
    worst = max(float(np.abs(params[0][k] - params[1][k]).max()) for k in params[0])
    assert worst < 1e-4, f"largest parameter difference {worst:g}"
    return f"largest parameter difference {worst:.2g}"


def check_kill_and_resume(work):
    """A 2-epoch run killed in epoch 2 and resumed ends like one never killed."""
    data = write_tiny_cifar(work / "cifar")
    straight, killed = work / "straight", work / "killed"
    done = swishtrain("--data-dir", data, "--run-dir", straight, "--epochs", 2, "--gpus", 0,
                      *TINY)
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1:]
    proc = swishtrain("--data-dir", data, "--run-dir", killed, "--epochs", 2, "--gpus", 0,
                      *TINY, wait=False)
    deadline = time.time() + 300
    while not (killed / "metrics.csv").exists() and time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-500:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = swishtrain("resume", killed)
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1:]
    a, b = ((p / "metrics.csv").read_text().splitlines() for p in (straight, killed))
    cols = [row.split(",")[2:6] for row in a[1:]], [row.split(",")[2:6] for row in b[1:]]
    exact = cols[0] == cols[1]
    diff = max(abs(float(x) - float(y)) for r, s in zip(*cols) for x, y in zip(r, s))
    assert diff < 1e-3, f"losses/accuracies differ by {diff:g}"
    return "bit-identical metrics" if exact else f"metrics within {diff:.2g} (cuDNN atomics)"


def check_evaluate_on_cpu(work):
    """The GPU run's weights evaluate on the CPU to the accuracy the run recorded."""
    run = work / "straight"
    if not (run / "summary.json").exists():
        check_kill_and_resume(work)
    summary = json.loads((run / "summary.json").read_text())
    done = swishtrain("evaluate", run, "--split", "test")
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1:]
    accuracy = float(done.stdout.split("accuracy of best.params: ")[1].split()[0])
    assert abs(accuracy - summary["best_val_acc"]) <= 1 / 64 + 1e-9, \
        f"CPU {accuracy} vs GPU {summary['best_val_acc']}"
    return f"CPU {accuracy:.4f}, recorded on the GPU {summary['best_val_acc']:.4f}"


CHECKS = [check_preflight] + [make_step_check(m, d) for d in ("float32", "float16")
                              for m in ("vgg16_bn", "vgg16_bn_swish", "vgg16_bn_swishbeta")] + \
    [check_one_vs_two_gpus, check_kill_and_resume, check_evaluate_on_cpu]


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
    threads.configure()
    cuda_libs.preload()
    if not gpu_ids():
        print("gpu-check: no NVIDIA GPU visible to MXNet here (no CUDA build, driver or GPU); "
              "run it on a machine with one", file=sys.stderr)
        return 2
    import mxnet as mx
    print(f"mxnet {mx.__version__}, CUDA build: {mx.runtime.Features().is_enabled('CUDA')}, "
          f"GPUs: {len(gpu_ids())}")
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


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
