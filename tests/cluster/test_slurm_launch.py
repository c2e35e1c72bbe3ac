"""`swishtrain launch` inside a Slurm allocation places its servers and workers with srun, on the
allocation's nodes, not over ssh: a 2-worker job under sbatch, and under salloc, on the private
one-node Slurm."""
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


def test_launch_under_salloc_starts_its_processes_as_job_steps(slurm_cluster, tmp_path):
    """salloc runs the command where it was typed, with the allocation in its environment."""
    data = write_cifar(tmp_path / "cifar", per_batch=40, test=30)
    run = tmp_path / "run"
    done = slurm_cluster.run("salloc", "--ntasks=1", sys.executable, "-m", "train_cli",
                             "launch", "-n", "2", "--", "--data-dir", data, "--run-dir", run,
                             *TINY, "--epochs", 1, cwd=REPO, timeout=180, check=False)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    assert "Granted job allocation" in log  # salloc's own word: this ran inside an allocation
    assert f"[launch] over srun: server 0 on {slurm_cluster.node}" in log
    assert "worker 1 on" in log and "ssh" not in log
    summary = json.loads((run / "summary.json").read_text())
    assert summary["workers"] == 2
    assert log.count(f"parameters sha1: {summary['params_sha1']}") == 2


def test_in_a_multi_node_allocation_the_scheduler_listens_on_this_nodes_address(monkeypatch,
                                                                              tmp_path):
    """No cluster needed: the allocation's nodes and their addresses are given."""
    from train_cli.cli.tools import _train_params
    from train_cli.cluster import jobspec, placement
    addresses = {"node1": "10.0.0.5", "node2": "10.0.0.6"}
    monkeypatch.setattr(placement, "allocation_hosts", lambda nodelist: tuple(addresses))
    monkeypatch.setattr(placement, "this_node", lambda: "node1")
    monkeypatch.setattr(placement, "node_address", addresses.get)
    args = ["--epochs", "1", "--run-dir", str(tmp_path / "run")]
    spec = jobspec.parse(2, 1, args, _train_params(args), "STAMP",
                         environ={"SLURM_JOB_NODELIST": "node[1-2]"})
    assert (spec.via, spec.root_uri, spec.hosts) == ("srun", "10.0.0.5", ("node1", "node2"))
    scheduler, server, worker0, worker1 = placement.plan(spec, 9000)
    assert scheduler.host is None and "DMLC_PS_ROOT_URI=10.0.0.5" in scheduler.describe()
    argv = worker0.argv()
    assert argv[:5] == ["srun", "--overlap", "--nodes=1", "--ntasks=1", "--nodelist=node2"]
    assert "DMLC_NODE_HOST=10.0.0.6" in argv and "train_cli.cluster.remote" in argv
    assert server.host == "node1" and worker1.host == "node1"
