"""Distributed training on MXNet's parameter-server KVStore, all on 127.0.0.1, time-bounded."""
import os
import re
import signal
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import pytest

from train_cli.runfolder import read_metrics

from helpers import write_cifar

TRAIN = ["--model", "vgg11_bn", "--width", "0.125", "--batch-size", "10", "--lr", "0.05",
         "--eval-batch-size", "32", "--momentum", "0", "--augment", "none"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_cifar(tmp_path_factory.mktemp("cifar"), per_batch=40, test=50)


def launch(*args, timeout=120, workers=2):
    """Run `swishtrain launch`; returns (exit code, output)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "train_cli", "launch", "-n", str(workers),
                           "--timeout", "100", "--", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env)
    return done.returncode, done.stdout + done.stderr


def trainable(run_dir):
    """Trainable weights of a run's last checkpoint (BatchNorm running statistics excluded)."""
    arrays = mx.nd.load(str(run_dir / "last.ckpt"))
    return {k: v.asnumpy() for k, v in arrays.items()
            if k.startswith("param:") and "running" not in k}


@pytest.fixture(scope="module")
def stepped_run(data_dir, tmp_path_factory):
    """2 workers, 2 epochs; after epoch 1 the rate drops by 1e-9 (to ~0)."""
    run_dir = tmp_path_factory.mktemp("dist") / "stepped"
    code, out = launch("--data-dir", data_dir, "--run-dir", run_dir, "--epochs", 2,
                       "--lr-steps", 1, "--lr-factor", 1e-9, *TRAIN)
    assert code == 0, out
    return run_dir, out


def test_two_workers_train_identical_replicas_and_evaluate_the_whole_split(stepped_run):
    run_dir, out = stepped_run
    digests = re.findall(r"\[rank (\d)\] parameters sha1: (\w+)", out)
    assert sorted(rank for rank, _ in digests) == ["0", "1"]
    assert len({digest for _, digest in digests}) == 1, digests  # same weights on both workers
    import json
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["workers"] == 2 and summary["val_images"] == 50  # every image, once
    config = json.loads((run_dir / "config.json").read_text())
    assert config["global_batch_size"] == 20 and config["config"]["kvstore"] == "dist_sync"
    rows = read_metrics(run_dir / "metrics.csv")
    assert [r["lr"] for r in rows] == pytest.approx([0.05, 0.05e-9])
    assert "[rank 1] epoch   2/2" in out  # every rank prints, with its rank


def test_the_learning_rate_schedule_reaches_the_update(stepped_run, data_dir, tmp_path):
    """apache/mxnet#15919: a schedule that never reaches the servers would leave epoch 2's
    update at full size. Here epoch 2 runs at lr*1e-9, so the weights must stay where epoch 1
    left them, while a run without the step moves on."""
    stepped, _ = stepped_run
    one, no_step = tmp_path / "one", tmp_path / "no-step"
    assert launch("--data-dir", data_dir, "--run-dir", one, "--epochs", 1, *TRAIN)[0] == 0
    assert launch("--data-dir", data_dir, "--run-dir", no_step, "--epochs", 2, "--lr-steps", "",
                  *TRAIN)[0] == 0
    after_one, after_step, after_no_step = trainable(one), trainable(stepped), trainable(no_step)
    moved_without_step = max(np.abs(after_no_step[k] - after_one[k]).max() for k in after_one)
    moved_with_step = max(np.abs(after_step[k] - after_one[k]).max() for k in after_one)
    assert moved_without_step > 1e-3
    assert moved_with_step < 1e-6


def test_a_distributed_run_resumes_with_the_same_number_of_workers(stepped_run, tmp_path):
    import shutil
    run_dir = tmp_path / "run"
    shutil.copytree(stepped_run[0], run_dir)
    code, out = launch("--resume", run_dir, "--epochs", 3)
    assert code == 0, out
    assert [r["epoch"] for r in read_metrics(run_dir / "metrics.csv")] == [1, 2, 3]
    code, out = launch("--resume", run_dir, "--epochs", 4, workers=3)
    assert code != 0 and "was trained by 2 worker(s), not 3" in out


def start_launcher(data_dir, run_dir):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "train_cli", "launch", "-n", "2", "--",
                             "--data-dir", str(data_dir), "--run-dir", str(run_dir),
                             "--epochs", "50", *TRAIN], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    pids = None
    for line in proc.stdout:
        if line.startswith("[launch] scheduler"):
            pids = [int(p) for p in re.findall(r"pids? ([\d, ]+)", line.replace(")", " "))
                    for p in p.replace(",", " ").split()]
            break
    deadline = time.time() + 60
    while not (run_dir / "metrics.csv").exists():  # training is under way
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    return proc, pids


def assert_all_gone(pids):
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"process {pid} is still running")


def test_a_killed_worker_ends_the_whole_job_with_a_clear_message(data_dir, tmp_path):
    proc, pids = start_launcher(data_dir, tmp_path / "run")
    worker = pids[-1]
    os.kill(worker, signal.SIGKILL)
    started = time.time()
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert time.time() - started < 30
    assert re.search(rf"worker 1 \(pid {worker}, rank \d\) was killed by SIGKILL; stopped the "
                     "other processes", out), out
    assert_all_gone(pids)


def test_ctrl_c_on_the_launcher_stops_every_process(data_dir, tmp_path):
    proc, pids = start_launcher(data_dir, tmp_path / "run")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "--resume RUN_DIR" in out
    assert_all_gone(pids)


def test_dist_kvstore_without_a_launcher_is_a_usage_error(run_cli, data_dir, tmp_path):
    result = run_cli("--kvstore", "dist_sync", "--data-dir", data_dir, "--run-dir", tmp_path / "r")
    assert result.exit_code == 2 and "swishtrain launch" in result.stderr


@pytest.mark.parametrize("spelling", [["--kvstore", "device"], ["--kvstore=local"]])
def test_launch_refuses_a_local_kvstore(run_cli, spelling):
    result = run_cli("launch", "-n", "2", "--", *spelling)
    assert result.exit_code == 2 and "is not distributed" in result.stderr


def test_a_distributed_run_is_not_resumed_as_a_single_process(run_cli, stepped_run):
    result = run_cli("resume", stepped_run[0], "--epochs", 3)
    assert result.exit_code == 1
    assert f"swishtrain launch -n 2 -- --resume {stepped_run[0]}" in result.stderr


def test_dist_async_trains_and_refuses_to_resume(run_cli, data_dir, tmp_path):
    run_dir = tmp_path / "async"
    code, out = launch("--data-dir", data_dir, "--run-dir", run_dir, "--epochs", 2,
                       "--kvstore", "dist_async", *TRAIN)
    assert code == 0, out
    assert len(read_metrics(run_dir / "metrics.csv")) == 2
    code, out = launch("--resume", run_dir, "--epochs", 3)
    assert code != 0 and "dist_async cannot be resumed" in out
