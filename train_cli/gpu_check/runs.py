"""Checks of whole commands on GPUs: the headline run killed and resumed, float16 extended,
`launch` with GPUs, evaluation on the CPU. Each returns a one-line detail with its figure."""
import json
import signal
import subprocess
import sys
import time

from train_cli.gpu_check.common import TINY, float16_skip, gpu_ids, swishtrain, write_tiny_cifar


def _metrics(run):
    rows = (run / "metrics.csv").read_text().splitlines()
    return [[float(x) for x in row.split(",")[2:6]] for row in rows[1:]]


def _same_run(a, b):
    """'bit-identical' or the largest difference of two runs' losses and accuracies."""
    x, y = _metrics(a), _metrics(b)
    assert len(x) == len(y), f"{len(x)} against {len(y)} epochs"
    if x == y:
        return 0.0
    return max(abs(u - v) for r, s in zip(x, y) for u, v in zip(r, s))


def _headline(work, dtype):
    """The headline command on GPUs 0,1 (or 0) for 2 epochs: straight, and killed during
    epoch 2 then resumed (float16: stopped after epoch 1 and extended). Returns the difference."""
    gpus = "0,1" if len(gpu_ids()) > 1 else "0"
    data = write_tiny_cifar(work / "cifar")
    args = ["--data-dir", data, "--gpus", gpus, "--dtype", dtype, *TINY]
    straight, other = work / f"headline-{dtype}", work / f"headline-{dtype}-resumed"
    done = swishtrain(*args, "--run-dir", straight, "--epochs", 2)
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1:]
    if dtype == "float16":  # extend a finished run: the loss scale's state must carry over
        done = swishtrain(*args, "--run-dir", other, "--epochs", 1)
        assert done.returncode == 0, done.stderr.strip().splitlines()[-1:]
    else:  # killed while epoch 2 runs (its first checkpoint is written)
        proc = swishtrain(*args, "--run-dir", other, "--epochs", 2, wait=False)
        deadline = time.time() + 600
        while not (other / "metrics.csv").exists() and time.time() < deadline:
            assert proc.poll() is None, proc.communicate()[1][-500:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = swishtrain("resume", other, "--epochs", 2)
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1:]
    diff = _same_run(straight, other)
    assert diff < 1e-3, f"losses/accuracies differ by {diff:g}"
    return f"on GPUs {gpus}: " + ("bit-identical metrics" if diff == 0 else
                                  f"metrics within {diff:.2g} (cuDNN's atomic sums)")


def check_headline_killed_and_resumed(work):
    """`swishtrain --model vgg16_bn_swish --gpus 0,1` for 2 epochs, killed in epoch 2 and
    resumed, ends like one never killed."""
    return _headline(work, "float32")


def check_headline_float16_resumed(work):
    """The same in float16 on GPUs 0,1, stopped after epoch 1 and extended to 2."""
    return float16_skip() or _headline(work, "float16")


def check_launch_with_gpus(work):
    """`swishtrain launch -n 2 -- --gpus 0,1`: one GPU per worker, identical replicas."""
    if len(gpu_ids()) < 2:
        return "SKIP: one GPU here"
    data = write_tiny_cifar(work / "cifar")
    done = subprocess.run([sys.executable, "-m", "train_cli", "launch", "-n", "2", "--timeout",
                           "300", "--", "--data-dir", str(data), "--run-dir",
                           str(work / "launched"), "--gpus", "0,1", "--epochs", "1", *TINY],
                          capture_output=True, text=True, timeout=900)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out.strip().splitlines()[-1:]
    digests = {line.split()[-1] for line in out.splitlines() if "parameters sha1:" in line}
    assert len(digests) == 1, f"the workers' parameters differ: {sorted(digests)}"
    return f"2 workers, one GPU each, parameters sha1 {digests.pop()[:12]} on both"


def check_evaluate_on_cpu(work):
    """The GPU run's weights evaluate on the CPU to the accuracy the run recorded."""
    run = work / "headline-float32"
    if not (run / "summary.json").exists():
        check_headline_killed_and_resumed(work)
    summary = json.loads((run / "summary.json").read_text())
    done = swishtrain("evaluate", run, "--split", "test")
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1:]
    accuracy = float(done.stdout.split("accuracy of best.params: ")[1].split()[0])
    assert abs(accuracy - summary["best_val_acc"]) <= 1 / 64 + 1e-9, \
        f"CPU {accuracy} vs GPU {summary['best_val_acc']}"
    return f"CPU {accuracy:.4f}, recorded on the GPU {summary['best_val_acc']:.4f}"
