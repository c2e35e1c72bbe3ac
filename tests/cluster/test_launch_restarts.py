"""`swishtrain launch --max-restarts`: a job that loses (or hangs) a worker finishes anyway, and
its run folder is the one an uninterrupted job writes. All on 127.0.0.1, time-bounded."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import pytest

from train_cli.cluster.jobspec import JobSpec
from train_cli.runfolder import METRIC_FIELDS, read_metrics

from helpers import assert_all_gone, launched_pids, write_cifar

# 3 epochs of 25 steps; momentum on, so the optimiser state must come back exactly too
TRAIN = ["--model", "vgg11_bn", "--width", "0.125", "--batch-size", "10", "--lr", "0.05",
         "--lr-steps", "2", "--eval-batch-size", "32", "--epochs", "3"]
TIMING = {"epoch_seconds", "train_img_per_s"}  # the only columns a restart may change


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_cifar(tmp_path_factory.mktemp("cifar"), per_batch=100, test=50)


def launch_args(data_dir, run_dir, *options):
    return [sys.executable, "-m", "train_cli", "launch", "-n", "2", "--timeout", "150",
            *options, "--", "--data-dir", str(data_dir), "--run-dir", str(run_dir), *TRAIN]


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory):
    """The same job, never interrupted."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    done = subprocess.run(launch_args(data_dir, run_dir), capture_output=True, text=True,
                          timeout=180, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stdout + done.stderr
    return run_dir


def start(data_dir, run_dir, *options):
    """The launcher, once its first job runs its second epoch; (process, its first output)."""
    proc = subprocess.Popen(launch_args(data_dir, run_dir, *options), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1"))
    head = ""
    for line in proc.stdout:
        head += line
        if line.startswith("[launch] scheduler"):
            break
    deadline = time.time() + 90
    while not (run_dir / "metrics.csv").exists():  # epoch 1 is recorded: epoch 2 runs
        assert time.time() < deadline and proc.poll() is None, head
        time.sleep(0.02)
    return proc, head


def assert_same_run(run_dir, reference):
    """Same metrics (but timings), same summary, bit-identical parameters and optimiser state."""
    rows, ref_rows = read_metrics(run_dir / "metrics.csv"), read_metrics(reference / "metrics.csv")
    keep = [f for f in METRIC_FIELDS if f not in TIMING]
    assert [{k: r.get(k) for k in keep} for r in rows] == \
        [{k: r.get(k) for k in keep} for r in ref_rows]
    for name in ("last.ckpt", "best.params"):
        arrays, ref = mx.nd.load(str(run_dir / name)), mx.nd.load(str(reference / name))
        assert sorted(arrays) == sorted(ref)
        for key in ref:
            if key != "meta":  # its JSON holds the timings
                assert np.array_equal(arrays[key].asnumpy(), ref[key].asnumpy()), (name, key)
    summary, ref_summary = (json.loads((d / "summary.json").read_text())
                            for d in (run_dir, reference))
    for key in ("best_val_acc", "best_epoch", "final_val_acc", "val_images", "epochs",
                "params_sha1", "workers"):
        assert summary[key] == ref_summary[key], key


def test_a_killed_worker_is_restarted_and_the_run_is_as_if_never_killed(data_dir, reference,
                                                                        tmp_path):
    run_dir = tmp_path / "run"
    proc, head = start(data_dir, run_dir, "--max-restarts", "1")
    worker = launched_pids(head)[-1]
    os.kill(worker, signal.SIGKILL)
    out, _ = proc.communicate(timeout=150)
    out = head + out
    assert proc.returncode == 0, out
    assert re.search(rf"\[launch\] restart 1 of 1: worker 1 \(pid {worker}, rank \d\) was killed "
                     rf"by SIGKILL; .* again after epoch 1 with: --resume {run_dir} --epochs 3 "
                     f"--data-dir {data_dir} --eval-batch-size 32", out), out
    assert out.count("resuming after epoch 1 ") == 2  # both workers, from the epoch killed
    assert_same_run(run_dir, reference)
    pids = launched_pids(out)
    assert len(pids) == 8  # two jobs of scheduler, server and two workers
    assert_all_gone(pids)


def test_a_hung_worker_ends_the_job_and_counts_as_a_failure(data_dir, reference, tmp_path):
    run_dir = tmp_path / "run"
    proc, head = start(data_dir, run_dir, "--max-restarts", "1", "--stall-timeout", "4")
    worker = launched_pids(head)[-1]
    os.kill(worker, signal.SIGSTOP)  # alive, not dead; the other worker then waits for it
    stopped = time.time()
    out, _ = proc.communicate(timeout=150)
    out = head + out
    assert proc.returncode == 0, out
    assert re.search(rf"\[launch\] restart 1 of 1: no worker used CPU or printed anything for 4s "
                     rf"\(worker 1 \(pid {worker}, rank \d\) stopped by a signal\): the job is "
                     "hung", out), out
    assert time.time() - stopped < 120
    assert_same_run(run_dir, reference)
    assert_all_gone(launched_pids(out))


def test_restart_resumes_from_the_checkpoint_or_starts_a_new_folder_again(tmp_path):
    args = ("--run-dir", str(tmp_path / "run"), "--epochs", "3")
    train = JobSpec(2, 1, args, str(tmp_path / "run"), "dist_sync", resumable=("--epochs", "3"),
                    fresh_folder=True)
    assert train.restart_args() == [*args, "--overwrite"]  # died before its first checkpoint
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.ckpt").write_bytes(b"")
    assert train.restart_args() == ["--resume", str(tmp_path / "run"), "--epochs", "3"]
    (tmp_path / "run" / "last.ckpt").unlink()
    not_ours = JobSpec(2, 1, args, str(tmp_path / "run"), "dist_sync", fresh_folder=False)
    assert not_ours.restart_args() == list(args)  # never --overwrite a folder it did not make


def test_max_restarts_refuses_a_run_that_cannot_be_resumed(run_cli, tmp_path):
    result = run_cli("launch", "-n", "2", "--max-restarts", "1", "--", "--kvstore", "dist_async",
                     "--run-dir", tmp_path / "r")
    assert result.exit_code == 2
    assert "dist_async runs cannot be" in result.stderr and "\n" not in result.stderr.strip()
