"""The checks of `make gpu-check`, as tests: they run where MXNet sees an NVIDIA GPU and are
skipped, with the reason, everywhere else (every machine this project has)."""
import subprocess
import sys

import pytest

from train_cli import gpu_check

HAS_GPU = bool(gpu_check.gpu_ids())


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("gpu-check")


@pytest.mark.skipif(not HAS_GPU, reason="no NVIDIA GPU visible to MXNet: run `make gpu-check` "
                                        "on a machine with one")
@pytest.mark.parametrize("check", gpu_check.CHECKS, ids=lambda c: c.__name__)
def test_gpu_check(check, work):
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
