"""Shared fixtures. Tests never touch the network or ../shared: data is written under tmp_path."""
import os

import pytest
from click.testing import CliRunner

from train_cli.startup import before_mxnet  # noqa: E402

# as the swishtrain entry point does, before anything imports mxnet
os.environ.setdefault("OMP_NUM_THREADS", "2")
before_mxnet()

from slurm_cluster import SlurmCluster, missing  # noqa: E402

from train_cli.cli import cli  # noqa: E402

from helpers import write_cifar  # noqa: E402


@pytest.fixture(autouse=True)
def no_internet_no_home(monkeypatch, tmp_path_factory):
    """Downloads go to a closed loopback port; the default data folder is a temporary one."""
    monkeypatch.setenv("SWISHTRAIN_CIFAR10_URL", "http://127.0.0.1:9/cifar-10-binary.tar.gz")
    monkeypatch.setenv("SWISHTRAIN_DATA", str(tmp_path_factory.mktemp("default-data")))


@pytest.fixture
def cifar_dir(tmp_path):
    """A small learnable CIFAR-10 binary copy: 200 training and 30 test images."""
    return write_cifar(tmp_path / "cifar", per_batch=40, test=30)


@pytest.fixture
def run_cli():
    """Invoke `swishtrain ARGS...` in-process; returns click's Result."""
    def invoke(*args):
        return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return invoke


@pytest.fixture
def gpu_environment(monkeypatch):
    """The GPU preflight sets process-wide variables in os.environ (TF32, fusion, autotuning):
    restored after the test, as they were."""
    for name in ("MXNET_USE_FUSION", "MXNET_CUDNN_AUTOTUNE_DEFAULT", "NVIDIA_TF32_OVERRIDE"):
        monkeypatch.setenv(name, "")  # recorded, so monkeypatch restores their absence
        monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
def standin_gpus(gpu_environment):
    """`--gpus` runs on the CPU stand-in (training/gpus.py): cpu(1), cpu(2), ..."""
    gpu_environment.setenv("SWISHTRAIN_GPU_STANDIN", "1")
    return gpu_environment

@pytest.fixture(scope="module")
def slurm_cluster():
    """A started one-node Slurm cluster (a SlurmCluster), stopped after the module's tests."""
    reason = missing()
    if reason and os.environ.get("SWISHTRAIN_REQUIRE_SLURM"):  # CI: a skip would hide it
        pytest.fail(f"{reason} (SWISHTRAIN_REQUIRE_SLURM is set)")
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
