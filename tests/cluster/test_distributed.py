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

from helpers import assert_all_gone, launched_pids, write_cifar

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


def start_launcher(data_dir, run_dir, *options):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "train_cli", "launch", "-n", "2", *options, "--",
                             "--data-dir", str(data_dir), "--run-dir", str(run_dir),
                             "--epochs", "50", *TRAIN], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    pids = None
    for line in proc.stdout:
        if line.startswith("[launch] scheduler"):
            pids = launched_pids(line)
            break
    deadline = time.time() + 60
    while not (run_dir / "metrics.csv").exists():  # training is under way
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    return proc, pids


def test_a_killed_worker_ends_the_whole_job_with_a_clear_message(data_dir, tmp_path):
    proc, pids = start_launcher(data_dir, tmp_path / "run", "--max-restarts", "0")
    worker = pids[-1]
    os.kill(worker, signal.SIGKILL)
    started = time.time()
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert time.time() - started < 30
    assert re.search(rf"worker 1 \(pid {worker}, rank \d\) was killed by SIGKILL; stopped the "
                     "other processes", out), out
    assert_all_gone(pids)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGUSR1])  # Ctrl-C, time limit
def test_ctrl_c_on_the_launcher_stops_every_process(data_dir, tmp_path, signum):
    proc, pids = start_launcher(data_dir, tmp_path / "run")
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, out
    assert f"with: swishtrain launch -n 2 -- --resume {tmp_path / 'run'}\n" in out
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
                       "--kvstore", "dist_async", "--val-split", 40, *TRAIN)
    assert code == 0, out
    assert len(read_metrics(run_dir / "metrics.csv")) == 2
    # the best epoch's test accuracy: loading best.params must not reset the KVStore
    import json
    assert json.loads((run_dir / "summary.json").read_text())["test_images"] == 50
    code, out = launch("--resume", run_dir, "--epochs", 3)
    assert code != 0 and "dist_async cannot be resumed" in out


def dry_run(run_cli, *args):
    """{process name: (host, the command line it runs)} of `launch --dry-run`."""
    result = run_cli("launch", "--dry-run", *args)
    assert result.exit_code == 0, result.output
    lines = [line.split(": ", 1) for line in result.stdout.splitlines()]
    return {name.rsplit(" on ", 1)[0].removesuffix(" here"):
            (name.rsplit(" on ", 1)[1] if " on " in name else None, command)
            for name, command in lines}


def gpus_of(command):
    found = re.findall(r"--gpus (\S+?)'?(?: |$)", command)
    assert len(found) == 1, command  # the worker's own list replaces the user's
    return found[0]


def test_gpus_are_split_over_the_workers_of_one_machine(run_cli):
    plan = dry_run(run_cli, "-n", "2", "--", "--gpus", "0,1,2,3", "--epochs", "2")
    assert gpus_of(plan["worker 0"][1]) == "0,1" and gpus_of(plan["worker 1"][1]) == "2,3"
    assert "--gpus" not in plan["server 0"][1] and "--gpus" not in plan["scheduler"][1]


def test_gpus_are_split_per_host(run_cli, tmp_path):
    hostfile = tmp_path / "hosts.txt"
    hostfile.write_text("# servers first, then workers, round-robin\n10.0.0.6\n10.0.0.7  # b\n")
    plan = dry_run(run_cli, "-n", "4", "-s", "2", "--hostfile", hostfile, "--root-uri",
                   "10.0.0.5", "--", "--gpus=0,1,2,3")
    assert plan["scheduler"][0] is None and "DMLC_PS_ROOT_URI=10.0.0.5" in plan["scheduler"][1]
    assert [plan[f"server {i}"][0] for i in range(2)] == ["10.0.0.6", "10.0.0.7"]
    hosts = [plan[f"worker {i}"][0] for i in range(4)]
    assert hosts == ["10.0.0.6", "10.0.0.7", "10.0.0.6", "10.0.0.7"]
    assert [gpus_of(plan[f"worker {i}"][1]) for i in range(4)] == ["0,1", "0,1", "2,3", "2,3"]
    for i in range(4):  # ps-lite binds to the host's address; the supervisor ends it with ssh
        command = plan[f"worker {i}"][1]
        assert command.startswith("ssh -T -o BatchMode=yes")
        assert f"DMLC_NODE_HOST={hosts[i]} " in command and "train_cli.cluster.remote" in command


def test_a_launched_run_with_split_gpus_resumes_with_the_same_split(run_cli, tmp_path):
    """config.json's gpus are rank 0's share (0,1); the job's whole list (0,1,2,3) is recorded
    too, so `launch -- --resume` gives each worker its share again, not a share of a share."""
    import json

    from train_cli.config import TrainConfig, to_dict
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cfg = to_dict(TrainConfig(gpus=(0, 1), kvstore="dist_sync", run_dir=str(run_dir)))
    (run_dir / "config.json").write_text(json.dumps(
        {"config": cfg, "workers": 2, "job_gpus": [0, 1, 2, 3], "random_streams": 2}))
    plan = dry_run(run_cli, "-n", "2", "--", "--resume", run_dir, "--epochs", "5")
    assert gpus_of(plan["worker 0"][1]) == "0,1" and gpus_of(plan["worker 1"][1]) == "2,3"
    assert "SWISHTRAIN_JOB_GPUS=0,1,2,3" in plan["worker 0"][1]
    # other GPUs, as many as the job had: each worker its share of them
    plan = dry_run(run_cli, "-n", "2", "--", "--resume", run_dir, "--gpus", "4,5,6,7")
    assert gpus_of(plan["worker 0"][1]) == "4,5" and gpus_of(plan["worker 1"][1]) == "6,7"
    fewer = run_cli("launch", "--dry-run", "-n", "2", "--", "--resume", run_dir, "--gpus", "0,1")
    assert fewer.exit_code == 2 and "as many as the run used (4)" in fewer.stderr


def test_launch_refuses_what_its_workers_would_refuse(run_cli, tmp_path):
    """--seeds and a 1-worker job's run resumed alone fail here, once, with the fix."""
    import json

    from train_cli.config import TrainConfig, to_dict
    seeds = run_cli("launch", "--dry-run", "-n", "2", "--", "--seeds", "1,2")
    assert seeds.exit_code == 2 and "launch one job per seed" in seeds.stderr
    run_dir = tmp_path / "one-worker"
    run_dir.mkdir()
    cfg = to_dict(TrainConfig(kvstore="dist_sync", run_dir=str(run_dir)))
    (run_dir / "config.json").write_text(json.dumps(
        {"config": cfg, "workers": 1, "random_streams": 2}))
    alone = run_cli("resume", run_dir)
    assert alone.exit_code == 1
    assert f"resume it the same way: swishtrain launch -n 1 -- --resume {run_dir}" in \
        alone.stderr


def test_each_worker_can_get_its_own_gpus_but_none_twice(run_cli):
    plan = dry_run(run_cli, "-n", "2", "--worker-gpus", "3", "--worker-gpus", "1,2")
    assert gpus_of(plan["worker 0"][1]) == "3" and gpus_of(plan["worker 1"][1]) == "1,2"
    for args, message in [
            (["-n", "3", "--", "--gpus", "0,1,2,3"],
             "--gpus 0,1,2,3 does not split evenly over the 3 workers on this machine"),
            (["-n", "2", "--worker-gpus", "0,1", "--worker-gpus", "1"],
             "gives GPU 1 on this machine to worker 0 and worker 1"),
            (["-n", "2", "--worker-gpus", "0"], "given 1 time(s) for 2 workers"),
            (["-n", "2", "--worker-gpus", "0", "--worker-gpus", "1", "--", "--gpus", "0,1"],
             "not both")]:
        result = run_cli("launch", "--dry-run", *args)
        assert result.exit_code == 2, result.output
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("text, message", [
    ("", "lists no hosts"), ("# only a comment\n\n", "lists no hosts"),
    ("a\nb slots=4\n", "line 2: 'b slots=4': give one host per line")])
def test_a_bad_hostfile_is_a_one_line_usage_error(run_cli, tmp_path, text, message):
    (tmp_path / "hosts").write_text(text)
    result = run_cli("launch", "-n", "1", "--hostfile", tmp_path / "hosts", "--root-uri",
                     "10.0.0.5", "--dry-run")
    assert result.exit_code == 2 and message in result.stderr


def test_a_root_uri_of_another_machine_is_refused_before_anything_starts(run_cli, tmp_path):
    (tmp_path / "hosts").write_text("10.0.0.6\n")
    result = run_cli("launch", "-n", "1", "--hostfile", tmp_path / "hosts", "--root-uri",
                     "192.0.2.1", "--", "--run-dir", tmp_path / "r")  # TEST-NET-1: never ours
    assert result.exit_code == 2
    assert "--root-uri 192.0.2.1 is not an address of this machine" in result.stderr
