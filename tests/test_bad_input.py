"""Values and environments that once ended in a traceback, an abort or a hang: each is one line
naming the problem and the fix, the right exit code, and nothing changed on disk."""
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from helpers import REPO, TINY


def assert_one_line(result_code, stderr, code, words):
    errors = [line for line in stderr.strip().splitlines() if not line.startswith("warning:")]
    assert result_code == code, stderr
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    assert words in errors[0], errors[0]


def swishtrain(*args, env=None, timeout=60):
    """The command in a fresh process (what a user's shell runs), time-bounded."""
    done = subprocess.run([sys.executable, "-m", "train_cli", *map(str, args)],
                          capture_output=True, text=True, cwd=REPO, timeout=timeout,
                          env=dict(os.environ, **(env or {})))
    return done.returncode, done.stderr


@pytest.mark.parametrize("option, value", [
    ("--lr", "inf"), ("--lr", "1e39"), ("--wd", "inf"), ("--lr-factor", "inf"),
    ("--momentum", "nan"), ("--width", "inf"), ("--dropout", "nan"), ("--lr", "-inf")])
def test_numbers_float32_cannot_hold_are_refused(run_cli, cifar_dir, tmp_path, option, value):
    result = run_cli("--data-dir", cifar_dir, "--run-dir", tmp_path / "r", *TINY, option, value)
    assert_one_line(result.exit_code, result.stderr, 2, option)
    assert not (tmp_path / "r").exists()


def test_a_config_file_with_inf_is_refused(run_cli, cifar_dir, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("lr = inf\n")
    result = run_cli("--config", config, "--data-dir", cifar_dir, "--run-dir", tmp_path / "r")
    assert_one_line(result.exit_code, result.stderr, 2, "--lr must be a finite number")


@pytest.mark.parametrize("name", ["OMP_NUM_THREADS", "MXNET_CPU_WORKER_NTHREADS"])
def test_a_thread_variable_that_is_not_a_number_is_one_line_not_an_abort(name):
    code, err = swishtrain("models", env={name: "abc"})  # MXNet aborted: exit 134
    assert_one_line(code, err, 2, f"{name}='abc' is not a number of threads")


def test_a_config_that_is_a_device_or_a_pipe_is_refused_at_once(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for config in ("/dev/zero", fifo):  # read without end / blocked forever
        code, err = swishtrain("--config", config, "--run-dir", tmp_path / "r", timeout=30)
        assert_one_line(code, err, 2, "is not a regular file")


def test_the_option_that_makes_the_memory_need_is_the_one_named(run_cli, cifar_dir, tmp_path):
    result = run_cli("--data-dir", cifar_dir, "--run-dir", tmp_path / "r", *TINY,
                     "--eval-batch-size", 1000000000)
    assert_one_line(result.exit_code, result.stderr, 2, "(or --eval-batch-size)")
    assert "--batch-size" not in result.stderr.replace("--eval-batch-size", "")


def test_a_run_name_too_long_for_the_file_system(run_cli, cifar_dir, tmp_path):
    result = run_cli("--data-dir", cifar_dir, "--run-dir", tmp_path / ("r" * 300), *TINY)
    assert_one_line(result.exit_code, result.stderr, 1, "File name too long")


@pytest.fixture
def finished(run_cli, cifar_dir, tmp_path):
    run = tmp_path / "run"
    assert run_cli("--data-dir", cifar_dir, "--run-dir", run, *TINY, "--epochs", 2).exit_code == 0
    return run


def test_evaluate_names_what_is_missing_and_what_to_do(run_cli, cifar_dir, finished):
    result = run_cli("evaluate", finished, "--data-dir", cifar_dir, "--eval-batch-size", 0)
    assert_one_line(result.exit_code, result.stderr, 2, "--eval-batch-size must be at least 1")
    (finished / "best.params").unlink()
    result = run_cli("evaluate", finished, "--data-dir", cifar_dir)
    assert_one_line(result.exit_code, result.stderr, 1, "though 2 epoch(s) completed")
    assert "--params last" in result.stderr


def test_a_hand_edited_checkpoint_record_is_refused_in_one_line(run_cli, finished):
    path = finished / "last.ckpt"
    arrays = mx.nd.load(str(path))
    meta = json.loads(arrays["meta"].asnumpy().tobytes().decode())
    meta["epochs_done"] = "two"
    arrays["meta"] = mx.nd.array(np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                                 dtype=np.uint8)
    mx.nd.save(str(path), arrays)
    result = run_cli("resume", finished, "--epochs", 3)
    assert_one_line(result.exit_code, result.stderr, 1, "corrupt meta record (epochs_done")


def test_a_killed_writes_leftovers_are_removed_when_the_run_resumes(run_cli, finished):
    leftover = finished / ".last.ckpt.999999.tmp"  # a pid that runs no process
    leftover.write_bytes(b"\0" * 1000)
    assert run_cli("resume", finished, "--epochs", 3).exit_code == 0
    assert not leftover.exists()


def test_the_advice_after_divergence_can_be_followed(run_cli, cifar_dir, tmp_path):
    result = run_cli("--data-dir", cifar_dir, "--run-dir", tmp_path / "r", *TINY, "--lr", "1e30")
    assert result.exit_code == 1 and "start a new run with a lower --lr" in result.stderr


def test_a_run_dir_inside_a_file_is_named_as_such(run_cli, cifar_dir, tmp_path):
    (tmp_path / "afile").write_text("x")
    result = run_cli("--data-dir", cifar_dir, "--run-dir", tmp_path / "afile" / "r", *TINY)
    assert_one_line(result.exit_code, result.stderr, 1, "which is a file")
