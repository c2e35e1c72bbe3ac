"""Fixtures of tests/cluster: a private one-node Slurm cluster (slurm_cluster.py)."""
import os

import pytest
from slurm_cluster import SlurmCluster, missing


@pytest.fixture(scope="module")
def slurm_cluster():
    """A started one-node Slurm cluster (a SlurmCluster), stopped after the module's tests."""
    reason = missing()
    if reason:
        pytest.skip(reason)
    cluster = SlurmCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture
def slurm_env(slurm_cluster, monkeypatch):
    """os.environ pointed at slurm_cluster (SLURM_CONF; no outer job's SLURM_* variables), so
    in-process code that runs sbatch or srun reaches it; the cluster is returned."""
    for name in list(os.environ):
        if name.startswith(("SLURM_", "SBATCH_", "SALLOC_", "SRUN_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf_path))
    monkeypatch.setenv("PATH", slurm_cluster.env["PATH"])
    return slurm_cluster
