"""The checks of `make gpu-check`, as tests. On a machine with an NVIDIA GPU they check it; on
every other machine (all of this project's) they run on the CPU stand-in for two GPUs, which
proves the checks themselves (the float16 ones skip: MXNet's CPU has no float16 kernels)."""
import subprocess
import sys

import pytest

from train_cli import gpu_check
from train_cli.training.gpus import STANDIN_ENV

HAS_GPU = bool(gpu_check.gpu_ids())


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("gpu-check")


@pytest.fixture
def gpus(gpu_environment):
    """The real GPUs, or else the stand-in (its variable reaches the checks' subprocesses)."""
    if not HAS_GPU:
        gpu_environment.setenv(STANDIN_ENV, "1")


@pytest.mark.parametrize("check", gpu_check.CHECKS, ids=lambda c: c.__name__)
def test_gpu_check(check, work, gpus):
    outcome = gpu_check.run_check(check, work)
    if outcome.status == "SKIP":
        pytest.skip(outcome.detail)
    assert outcome.status == "PASS", outcome.line()


@pytest.mark.skipif(HAS_GPU, reason="this machine has a GPU")
def test_without_a_gpu_gpu_check_says_so_in_one_line_and_exits_2():
    done = subprocess.run([sys.executable, "-m", "train_cli.gpu_check"], capture_output=True,
                          text=True)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("gpu-check: no NVIDIA GPU")
    assert len(done.stderr.strip().splitlines()) == 1 and done.stdout == ""
