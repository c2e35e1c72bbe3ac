"""`swishtrain launch` inside a Slurm allocation places its servers and workers with srun, on the
allocation's nodes, not over ssh: a 2-worker job under sbatch on the private one-node Slurm."""
import json
import sys

from helpers import REPO, TINY, write_cifar


def test_launch_under_sbatch_starts_its_processes_as_job_steps(slurm_cluster, tmp_path):
    data = write_cifar(tmp_path / "cifar", per_batch=40, test=30)
    run = tmp_path / "run"
    args = ["launch", "-n", "2", "--", "--data-dir", data, "--run-dir", run, *TINY,
            "--epochs", 1]
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\n"
                      f"#SBATCH --output={tmp_path}/job.log\n"
                      "#SBATCH --ntasks=1\n"
                      f"cd {REPO}\n"
                      f"exec {sys.executable} -m train_cli {' '.join(map(str, args))}\n")
    job = slurm_cluster.sbatch(script)
    records = slurm_cluster.wait_finished(job, timeout=180)
    log = (tmp_path / "job.log").read_text()
    assert records[0]["JobState"] == "COMPLETED", log
    assert f"[launch] over srun: server 0 on {slurm_cluster.node}" in log
    assert "worker 1 on" in log and "ssh" not in log
    summary = json.loads((run / "summary.json").read_text())
    assert summary["workers"] == 2
    assert log.count(f"parameters sha1: {summary['params_sha1']}") == 2  # both replicas agree
