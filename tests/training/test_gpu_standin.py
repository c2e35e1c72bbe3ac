"""The GPU code path in full, on CPU stand-ins: `--gpus 0,1` with SWISHTRAIN_GPU_STANDIN=1 runs
on cpu(1), cpu(2), which, like GPUs, are never MXNet's default context (cpu(0)); every decision
--gpus makes is made (batch per device, no CPU-only operator, memory per device, TF32). Only
the kernels are the CPU's, so float16 (no CPU kernels) is not run here (docs/GPU.md).

On today's GPUs-never-tested code these runs failed where a GPU run would: a parameter read
without naming its device means MXNet's default context, which holds no copy.
"""
import json
import os
import re
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from train_cli.analysis.harness import build_engine
from train_cli.config import TrainConfig
from train_cli.model.activations import Swish, SwishBeta
from train_cli.runfolder import read_metrics
from train_cli.training.devices import make_contexts
from train_cli.training.loss_scale import DynamicLossScale

from helpers import assert_all_gone, launched_pids, synthetic_split

# BatchNorm, dropout and Swish-beta (a parameter of its own, float32 in float16 runs)
TINY_GPU = ["--model", "vgg11_bn_swishbeta", "--width", "0.125", "--batch-size", "10",
            "--lr", "0.05", "--lr-steps", "1", "--eval-batch-size", "16", "--seed", "2"]


def accuracy_line(output):
    return float(re.search(r"accuracy of best.params: ([\d.]+)", output).group(1))


def test_the_headline_command_on_two_gpus_trains_resumes_extends_and_evaluates(
        run_cli, cifar_dir, tmp_path, standin_gpus):
    straight, extended = tmp_path / "straight", tmp_path / "extended"
    result = run_cli("--data-dir", cifar_dir, "--run-dir", straight, *TINY_GPU, "--epochs", 2,
                     "--gpus", "0,1")
    assert result.exit_code == 0, result.output
    assert ("on cpu(1), cpu(2) (CPU stand-ins for GPUs 0,1), batch 20, float32 (TF32 off)"
            in result.output)  # --batch-size is per GPU, as on GPUs
    assert os.environ["NVIDIA_TF32_OVERRIDE"] == "0"
    # one epoch, then extended to two on other GPUs: checkpoint, BatchNorm sync, resume; the
    # dropout masks depend on each device's place, not on its id
    assert run_cli("--data-dir", cifar_dir, "--run-dir", extended, *TINY_GPU, "--epochs", 1,
                   "--gpus", "0,1").exit_code == 0
    result = run_cli("resume", extended, "--epochs", 2, "--gpus", "2,3")
    assert result.exit_code == 0, result.output
    a, b = (read_metrics(p / "metrics.csv") for p in (straight, extended))
    drop = ("epoch_seconds", "train_img_per_s")
    assert [{k: v for k, v in r.items() if k not in drop} for r in a] == \
           [{k: v for k, v in r.items() if k not in drop} for r in b]
    for name in ("best.params", "last.ckpt"):
        x, y = (mx.nd.load(str(p / name)) for p in (straight, extended))
        for key in x:
            if key != "meta":
                np.testing.assert_array_equal(x[key].asnumpy(), y[key].asnumpy(), err_msg=key)
    config = json.loads((straight / "config.json").read_text())["config"]
    assert config["gpus"] == [0, 1] and config["tf32"] is False
    # `evaluate` on the same devices gives the accuracy the run recorded
    summary = json.loads((straight / "summary.json").read_text())
    result = run_cli("evaluate", straight, "--split", "test", "--gpus", "0,1")
    assert result.exit_code == 0, result.output
    assert accuracy_line(result.output) == pytest.approx(summary["best_val_acc"], abs=1e-4)


def test_a_swish_network_on_gpus_runs_the_gluon_swish_through_every_engine_step(standin_gpus):
    cfg = TrainConfig(model="vgg11_bn_swish", width=0.125, batch_size=4, gpus=(0, 1))
    contexts = make_contexts(cfg.gpus)
    assert contexts == [mx.cpu(1), mx.cpu(2)]
    engine = build_engine(cfg, contexts)
    blocks = [b for b in engine.net.features if isinstance(b, (Swish, SwishBeta))]
    assert blocks and not any(b.fused for b in blocks)  # the fused op has no GPU kernel
    images, labels = synthetic_split(8)
    engine.step(engine.load(images.astype(np.float32)), engine.load(labels.astype(np.float32),
                                                                     cast=False))
    engine.sync_batchnorm_stats()
    loss, accuracy, n = engine.evaluate(_split(*synthetic_split(6, seed=1)))
    assert n == 6 and np.isfinite(loss)
    assert len(engine.params_digest()) == 40


def _split(images, labels):
    from train_cli.data.cifar10 import Split
    return Split(images, labels.astype(np.int32))


def test_an_overflowing_step_on_two_gpus_is_skipped_on_both(standin_gpus):
    """The float16 skip path (loss scaling) on two devices, driven by a real float32 overflow."""
    cfg = TrainConfig(model="vgg11_bn", width=0.125, dropout=0.0, batch_size=4, gpus=(0, 1))
    scaler = DynamicLossScale(scale=3e38)
    engine = build_engine(cfg, make_contexts(cfg.gpus), loss_scale=scaler)
    trained = [p for p in engine.net.collect_params().values() if p.grad_req != "null"]
    before = [[d.asnumpy() for d in p.list_data()] for p in trained]
    images, labels = synthetic_split(8)
    xs, ys = engine.load(images.astype(np.float32)), engine.load(labels.astype(np.float32),
                                                                 cast=False)
    assert engine.step(xs, ys).asnumpy()[2] == 1 and scaler.scale == 1.5e38
    after = [[d.asnumpy() for d in p.list_data()] for p in trained]  # on every device
    for old, new in zip(before, after):
        for a, b in zip(old, new):
            np.testing.assert_array_equal(a, b)
    scaler.scale = 1024.0
    assert engine.step(xs, ys).asnumpy()[2] == 0


# The issue's reproduction: MXNet's default context moved away from --cpu-devices' contexts
MOVED = ("import sys, mxnet as mx; mx.context.Context._default_ctx.value = mx.cpu(9); "
         "from train_cli.cli import main; sys.argv[0] = 'swishtrain'; main()")


def moved(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1", MXNET_CPU_WORKER_NTHREADS="1")
    return subprocess.run([sys.executable, "-c", MOVED, *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=300)


def test_with_the_default_context_moved_away_a_run_trains_resumes_and_evaluates(cifar_dir,
                                                                                  tmp_path):
    run = tmp_path / "r"
    tiny = [*TINY_GPU, "--cpu-devices", 2]
    done = moved("--data-dir", cifar_dir, "--run-dir", run, *tiny, "--epochs", 1)
    assert done.returncode == 0, done.stderr
    done = moved("resume", run, "--epochs", 2)
    assert done.returncode == 0, done.stderr
    done = moved("evaluate", run, "--split", "test", "--cpu-devices", 2)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert len(read_metrics(run / "metrics.csv")) == 2


def test_bench_runs_on_gpus(run_cli, standin_gpus):
    result = run_cli("bench", "--gpus", "0,1", "--model", "vgg11_bn", "--width", "0.125",
                     "--batch-size", "4", "--eval-batch-size", "4", "--steps", "1",
                     "--repeats", "1", "--sgemm-size", "16")
    assert result.exit_code == 0, result.output
    assert "batch 8 on cpu(1), cpu(2)" in result.output


def test_launch_with_two_gpus_per_worker_keeps_identical_replicas(cifar_dir, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", SWISHTRAIN_GPU_STANDIN="1")
    run = tmp_path / "r"
    done = subprocess.run([sys.executable, "-m", "train_cli", "launch", "-n", "2", "--timeout",
                           "100", "--", "--data-dir", str(cifar_dir), "--run-dir", str(run),
                           *TINY_GPU, "--epochs", "1", "--gpus", "0,1,2,3"],
                          capture_output=True, text=True, env=env, timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "[rank 1] swishtrain" in out and "cpu(3), cpu(4) (CPU stand-ins for GPUs 2,3)" in out
    digests = re.findall(r"\[rank (\d)\] parameters sha1: (\w+)", out)
    assert len(digests) == 2 and len({d for _, d in digests}) == 1, digests
    config = json.loads((run / "config.json").read_text())
    assert config["job_gpus"] == [0, 1, 2, 3] and config["global_batch_size"] == 40
    assert_all_gone(launched_pids(out))
