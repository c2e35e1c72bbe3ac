"""The private Slurm cluster that the sweep and launch tests run on: job arrays, srun's tasks,
a requeue that signals the batch script and runs it again, and every daemon gone at the end."""
import subprocess
import time

import pytest
from slurm_cluster import SlurmCluster, alive, missing, wait_for

REQUEUED = """#!/bin/bash
# first run: wait to be requeued; the TERM trap leaves a file. Second run: finish.
restart=${SLURM_RESTART_COUNT:-0}
echo "$restart" > "$OUT/started.$restart"
trap 'echo "$restart" > "$OUT/term.$restart"; exit 143' TERM
if [ "$restart" = 0 ]; then sleep 60 & wait; fi
echo "$restart" > "$OUT/finished.$restart"
"""


def test_array_runs_every_task(slurm_cluster, tmp_path):
    task = "$SLURM_ARRAY_TASK_ID"
    job = slurm_cluster.sbatch("--array=0-2", "-o", tmp_path / "%A_%a.log", "--wrap",
                               f'echo "{task}" > {tmp_path}/task.{task}')
    records = slurm_cluster.wait_finished(job)
    assert sorted(r["JobState"] for r in records) == ["COMPLETED"] * 3
    assert {p.name: p.read_text().strip() for p in tmp_path.glob("task.*")} == {
        "task.0": "0", "task.1": "1", "task.2": "2"}


def test_srun_runs_two_tasks(slurm_env):
    # through os.environ (slurm_env), as code under test that runs srun itself would
    done = subprocess.run(["srun", "-n", "2", "--kill-on-bad-exit=1", "bash", "-c",
                           'echo "$SLURM_PROCID/$SLURM_NTASKS $$"'],
                          capture_output=True, text=True, timeout=30, check=True)
    lines = sorted(done.stdout.split("\n")[:-1])
    assert [line.split()[0] for line in lines] == ["0/2", "1/2"], done.stdout
    assert len({line.split()[1] for line in lines}) == 2  # two processes, not one twice


def test_requeue_signals_the_script_and_runs_it_again(slurm_cluster, tmp_path):
    script = tmp_path / "job.sh"
    script.write_text(REQUEUED)
    job = slurm_cluster.sbatch("--requeue", "-o", tmp_path / "job-%j.log",
                               f"--export=ALL,OUT={tmp_path}", script)
    wait_for((tmp_path / "started.0").exists, 30, "the first run started")
    slurm_cluster.run("scontrol", "requeue", job)
    # requeued jobs wait for their credentials to expire (CRED_EXPIRE) before they run again
    records = slurm_cluster.wait_finished(job, timeout=40)
    assert (tmp_path / "term.0").read_text() == "0\n"  # the first run got TERM
    assert (tmp_path / "finished.1").read_text() == "1\n"  # SLURM_RESTART_COUNT=1
    assert not (tmp_path / "finished.0").exists()
    assert [(r["JobState"], r["Restarts"]) for r in records] == [("COMPLETED", "1")]


@pytest.mark.skipif(missing() is not None, reason=str(missing()))
def test_stop_leaves_no_daemon_running(tmp_path):
    cluster = SlurmCluster().start()
    # a job still running at stop() (its slurmstepd outlives slurmd unless stopped)
    cluster.sbatch("-o", "/dev/null", "--wrap",
                   f"sleep 60 & echo $$ $! > {tmp_path}/pids.tmp; mv {tmp_path}/pids.tmp "
                   f"{tmp_path}/pids; wait")
    wait_for((tmp_path / "pids").exists, 30, "the job started")
    job_pids = [int(pid) for pid in (tmp_path / "pids").read_text().split()]
    pids = cluster.pids
    assert sorted(pids) == ["munged", "slurmctld", "slurmd"]
    assert all(alive(pid) for pid in pids.values())
    started = time.monotonic()
    cluster.stop()
    assert time.monotonic() - started < 15
    assert not [pid for pid in pids.values() if alive(pid)]
    assert not [pid for pid in job_pids if alive(pid)]  # the batch shell and its sleep
    assert not cluster.folder.exists()
