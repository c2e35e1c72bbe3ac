"""`sweep --executor slurm` on a real one-node Slurm (tests/slurm_cluster.py): a job array whose
cells equal the local executor's bit for bit; a task requeued, or warned of its time limit, in
mid-epoch that ends as an uninterrupted one; a task Slurm no longer holds shown stopped."""
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from slurm_cluster import wait_for
from test_sweep import cell_results, sweep_args

from helpers import write_cifar


def test_the_array_asks_for_the_time_limit_warning_the_tasks_act_on():
    from types import SimpleNamespace

    from train_cli.studies.slurm import sbatch_args
    args = sbatch_args(SimpleNamespace(path=Path("study")), [0, 1, 2, 5], 2, {"time": "1:00:00"})
    assert "--signal=B:USR1@120" in args and "--array=0-2,5%2" in args
    assert "--requeue" in args and "--time=1:00:00" in args


def job_of(result):
    """The job array id `sweep --executor slurm` printed."""
    return int(re.search(r"submitted job array (\d+)", result.stdout).group(1))


def local_sweep(*args):
    """A sweep run by the local executor in a process of its own, one thread per cell (as each
    Slurm task of --cpus-per-task 1 has)."""
    subprocess.run([sys.executable, "-m", "train_cli", *map(str, args)], check=True,
                   env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True)


def test_a_job_array_trains_the_cells_the_local_executor_does(run_cli, cifar_dir, tmp_path,
                                                               slurm_env):
    study = tmp_path / "slurm"
    result = run_cli(*sweep_args(cifar_dir, study, "1-2", "--executor", "slurm", "--jobs", 2,
                                 "--cpus-per-task", 1, "--partition", slurm_env.partition))
    assert result.exit_code == 0, result.output
    twice = run_cli(*sweep_args(cifar_dir, study, "1-2", "--executor", "slurm"))
    assert twice.exit_code == 1 and "still queued or running" in twice.stderr  # not twice
    records = slurm_env.wait_finished(job_of(result), timeout=240)
    assert sorted(r["ArrayTaskId"] for r in records) == ["0", "1", "2", "3"]
    assert all(r["JobState"] == "COMPLETED" for r in records), records
    assert {r.get("ArrayTaskThrottle") for r in records} == {"2"}, records  # 2 at a time
    local = tmp_path / "local"
    local_sweep(*sweep_args(cifar_dir, local, "1-2"))
    assert cell_results(study) == cell_results(local)
    again = run_cli(*sweep_args(cifar_dir, study, "1-2", "--executor", "slurm"))
    assert again.exit_code == 0 and "nothing to submit" in again.stdout
    status = run_cli("sweep", "--status", study)
    assert "4 done of 4 cells" in status.stdout


@pytest.mark.parametrize("how", ["requeued", "time limit"])
def test_a_requeued_task_resumes_and_ends_as_an_uninterrupted_run(run_cli, tmp_path,
                                                                   slurm_env, how):
    """Requeued by Slurm (as a preemption does: SIGTERM, then back in the queue), or warned of
    its time limit (SIGUSR1, as the array's --signal=B:USR1@120 sends; sent here at once): the
    task stops at a batch, goes back in the queue (by itself, at the time limit), resumes, and
    ends identical to an uninterrupted run."""
    data = write_cifar(tmp_path / "cifar", per_batch=300, test=30)  # epochs of 75 steps
    study = tmp_path / "requeued"
    args = sweep_args(data, study, "1", models="vgg11_bn", epochs=3)
    result = run_cli(*args, "--executor", "slurm", "--cpus-per-task", 1)
    assert result.exit_code == 0, result.output
    job = job_of(result)
    metrics = study / "vgg11_bn" / "seed-1" / "metrics.csv"

    def in_epoch_two():  # epoch 1 recorded, epoch 2 under way
        return metrics.exists() and len(metrics.read_text().splitlines()) == 2
    wait_for(in_epoch_two, 120, "epoch 1 recorded")
    if how == "requeued":
        slurm_env.run("scontrol", "requeue", f"{job}_0")
    else:
        slurm_env.run("scancel", "--batch", "--signal=USR1", f"{job}_0")
    records = slurm_env.wait_finished(job, timeout=240)
    assert records[0]["JobState"] == "COMPLETED" and records[0]["Restarts"] == "1", records
    log = next((study / ".sweep").glob(f"slurm-{job}_0.log")).read_text()
    signal = "SIGTERM" if how == "requeued" else "SIGUSR1"
    assert f"{signal}: stopping at the next batch" in log and "resuming" in log, log
    assert ("requeued itself; it resumes from that checkpoint" in log) == (how == "time limit")
    local = tmp_path / "uninterrupted"
    local_sweep(*[str(local) if a == study else a for a in args])
    assert cell_results(study) == cell_results(local)


def test_a_task_slurm_no_longer_holds_is_shown_stopped(run_cli, cifar_dir, tmp_path, slurm_env):
    """A cell whose task on another node recorded "running": --status asks Slurm, so once the
    task is gone without a word (killed, its node lost) the cell shows stopped, not running."""
    study = tmp_path / "study"
    assert run_cli(*sweep_args(cifar_dir, study, "1", models="vgg11_bn")).exit_code == 0
    (study / "vgg11_bn" / "seed-1" / "summary.json").unlink()  # begun, not finished
    script = tmp_path / "task.sh"
    script.write_text("#!/bin/bash\nsleep 300\n")
    job = slurm_env.sbatch("--array=0", f"--output={tmp_path}/task.log", script)
    wait_for(lambda: slurm_env.jobs(job)[0].get("JobState") == "RUNNING", 30, "task running")
    state = study / ".sweep" / "vgg11_bn-seed-1.json"
    state.write_text(json.dumps(dict(state="running", pid=1, host="another-node",
                                     job=str(job), task="0")))
    assert "1 running of 1 cells" in run_cli("sweep", "--status", study).stdout
    held = slurm_env.sbatch("--array=0", "--hold", f"--output={tmp_path}/held.log", script)
    try:  # the same cell's task, requeued and waiting
        state.write_text(json.dumps(dict(state="stopped", pid=1, host="another-node",
                                         job=str(held), task="0")))
        assert "1 queued of 1 cells" in run_cli("sweep", "--status", study).stdout
    finally:
        slurm_env.run("scancel", str(held))
    state.write_text(json.dumps(dict(state="running", pid=1, host="another-node",
                                     job=str(job), task="0")))
    slurm_env.run("scancel", "--signal=KILL", "--full", str(job))
    slurm_env.wait_finished(job, timeout=30)
    status = run_cli("sweep", "--status", study).stdout
    assert "1 stopped of 1 cells" in status, status
    assert json.loads(state.read_text())["state"] == "running"  # what the task left behind


def test_a_task_that_finished_no_epoch_before_its_time_limit_is_not_requeued(run_cli, tmp_path,
                                                                              slurm_env):
    """It would only start the same epoch again, forever: it stays stopped and says why."""
    data = write_cifar(tmp_path / "cifar", per_batch=1000, test=30)  # epochs of 250 steps
    study = tmp_path / "study"
    result = run_cli(*sweep_args(data, study, "1", models="vgg11_bn", epochs=2),
                     "--executor", "slurm", "--cpus-per-task", 1)
    assert result.exit_code == 0, result.output
    job = job_of(result)
    log = study / ".sweep" / f"slurm-{job}_0.log"
    wait_for(lambda: log.exists() and "run folder:" in log.read_text(), 120, "the run began")
    time.sleep(1)  # inside epoch 1 (the header is the last word before training)
    slurm_env.run("scancel", "--batch", "--signal=USR1", f"{job}_0")
    records = slurm_env.wait_finished(job, timeout=120)
    said = log.read_text()
    assert records[0]["Restarts"] == "0" and records[0]["JobState"] == "FAILED", records
    assert "stopped by SIGUSR1 during epoch 1" in said and "not requeued" in said, said
    status = run_cli("sweep", "--status", study).stdout
    assert "1 stopped of 1 cells" in status, status
