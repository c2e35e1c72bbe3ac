"""Runs that lose nothing: exact resume after SIGKILL, Ctrl-C/SIGTERM, divergence, full disks."""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import pytest

from train_cli.runfolder import read_metrics
from train_cli.training import checkpoint

from helpers import write_cifar

DiskUsage = type(shutil.disk_usage("/"))

# Long enough epochs (~1 s here) that a signal lands inside one; small enough to stay cheap.
ARGS = ["--model", "vgg11_bn", "--width", "0.25", "--batch-size", "20", "--lr", "0.05",
        "--lr-steps", "2,3", "--eval-batch-size", "50", "--augment", "crop-flip", "--seed", "3"]
EPOCHS = 4
DETERMINISTIC = ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_cifar(tmp_path_factory.mktemp("cifar"), per_batch=80, test=50)


def start(data_dir, run_dir, *extra):
    env = dict(os.environ, OMP_NUM_THREADS="2", MXNET_CPU_WORKER_NTHREADS="1",
               PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "train_cli", "--data-dir", str(data_dir), "--run-dir",
         str(run_dir), "--epochs", str(EPOCHS), *ARGS, *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_epochs(proc, run_dir, n, timeout=120):
    """Block until metrics.csv has n rows (the checkpoint of epoch n is written before it)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        path = run_dir / "metrics.csv"
        if path.exists() and len(read_metrics(path)) >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"no {n} epochs within {timeout}s")


def finish(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def params_of(path):
    return {k: v.asnumpy() for k, v in mx.nd.load(str(path)).items()}


@pytest.fixture(scope="module")
def straight_run(data_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    code, out, err = finish(start(data_dir, run_dir))
    assert code == 0, err
    return run_dir


def assert_same_run(resumed, straight):
    a, b = read_metrics(resumed / "metrics.csv"), read_metrics(straight / "metrics.csv")
    assert [[r[k] for k in DETERMINISTIC] for r in a] == [[r[k] for k in DETERMINISTIC] for r in b]
    for name in ("best.params", "last.ckpt"):
        pa, pb = params_of(resumed / name), params_of(straight / name)
        assert pa.keys() == pb.keys()
        for key in pa:
            if key != "meta":  # meta holds timings
                np.testing.assert_array_equal(pa[key], pb[key], err_msg=f"{name}: {key}")


def test_sigkill_during_epoch_3_then_resume_matches_an_uninterrupted_run(
        data_dir, tmp_path, straight_run, run_cli):
    run_dir = tmp_path / "run"
    proc = start(data_dir, run_dir)
    wait_for_epochs(proc, run_dir, 2)
    time.sleep(0.3)  # into epoch 3
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert checkpoint.load(run_dir / "last.ckpt").meta["epochs_done"] == 2  # epoch 3 unfinished
    result = run_cli("resume", run_dir)
    assert result.exit_code == 0, result.output
    assert "resuming after epoch 2" in result.stdout
    assert_same_run(run_dir, straight_run)  # bit-identical: parameters, momentum, metrics


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_stops_at_a_batch_boundary_and_prints_the_resume_command(
        data_dir, tmp_path, straight_run, run_cli, signum, code):
    run_dir = tmp_path / "run"
    proc = start(data_dir, run_dir)
    wait_for_epochs(proc, run_dir, 1)
    time.sleep(0.3)
    proc.send_signal(signum)
    returncode, out, err = finish(proc)
    assert returncode == code, err
    assert f"Resume with: swishtrain resume {run_dir}" in err
    assert "Traceback" not in err
    assert checkpoint.load(run_dir / "last.ckpt").meta["epochs_done"] == 1
    assert not (run_dir / "summary.json").exists()
    result = run_cli("--resume", run_dir)  # the option form
    assert result.exit_code == 0, result.output
    assert_same_run(run_dir, straight_run)


def test_second_ctrl_c_quits_at_once_leaving_a_readable_checkpoint(data_dir, tmp_path):
    run_dir = tmp_path / "run"
    proc = start(data_dir, run_dir, "--width", "0.5")  # slower batches: the stop takes a while
    wait_for_epochs(proc, run_dir, 1)
    proc.send_signal(signal.SIGINT)
    for line in proc.stderr:  # the first Ctrl-C has been seen: a stop is under way
        if "stopping at the next batch" in line:
            break
    proc.send_signal(signal.SIGINT)
    returncode, out, err = finish(proc)
    assert returncode == -signal.SIGINT  # ended by the signal itself (a shell reports 130)
    assert "Resume with" not in err  # it did not wait to stop gracefully
    assert checkpoint.load(run_dir / "last.ckpt").meta["epochs_done"] == 1
    assert len(read_metrics(run_dir / "metrics.csv")) == 1


def test_divergence_stops_with_the_last_good_checkpoint(run_cli, data_dir, tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("--data-dir", data_dir, "--run-dir", run_dir, *ARGS, "--lr", "1e30",
                     "--epochs", EPOCHS)
    assert result.exit_code == 1
    assert "NaN/inf at epoch 1, batch" in result.stderr and "lower --lr" in result.stderr
    assert checkpoint.load(run_dir / "last.ckpt").meta["epochs_done"] == 0
    assert not (run_dir / "summary.json").exists()


def test_a_blow_up_in_the_last_update_of_an_epoch_is_never_checkpointed(run_cli, tmp_path):
    """One batch per epoch: epoch 1's only loss is computed before its (exploding) update, so
    no training loss shows it; the validation loss and the weights do, before anything is saved.
    """
    data = write_cifar(tmp_path / "cifar", per_batch=8, test=20)  # 40 training images
    run_dir = tmp_path / "run"
    result = run_cli("--data-dir", data, "--run-dir", run_dir, "--model", "vgg11",
                     "--width", "0.125", "--batch-size", "40", "--lr", "1e30", "--epochs", 2,
                     "--dropout", "0")
    assert result.exit_code == 1, result.output
    assert "became NaN/inf at the end of epoch 1" in result.stderr
    assert checkpoint.load(run_dir / "last.ckpt").meta["epochs_done"] == 0  # the last good one
    assert not (run_dir / "best.params").exists() and not (run_dir / "metrics.csv").exists()


def test_best_params_are_the_evaluated_weights_with_three_devices(run_cli, data_dir, tmp_path):
    """Gluon's save_parameters would save the mean of the 3 replicas, which rounds differently
    from each of them; what is saved must be what was evaluated (and what last.ckpt holds)."""
    run_dir = tmp_path / "run"
    result = run_cli("--data-dir", data_dir, "--run-dir", run_dir, "--model", "vgg11_bn",
                     "--width", "0.125", "--batch-size", "30", "--cpu-devices", "3",
                     "--epochs", 1, "--lr", "0.05", "--eval-batch-size", "30")
    assert result.exit_code == 0, result.output
    best = mx.nd.load(str(run_dir / "best.params"))
    last = checkpoint.load(run_dir / "last.ckpt").params
    assert best.keys() == last.keys()
    for name in best:
        np.testing.assert_array_equal(best[name].asnumpy(), last[name].asnumpy(), err_msg=name)


# -----------------------------------------------------------------------------
@pytest.fixture
def finished_run(run_cli, data_dir, tmp_path):
    run_dir = tmp_path / "done"
    result = run_cli("--data-dir", data_dir, "--run-dir", run_dir, *ARGS, "--epochs", 2,
                     "--width", "0.125")
    assert result.exit_code == 0, result.output
    return run_dir


def test_resume_extends_a_finished_run(run_cli, finished_run):
    result = run_cli("resume", finished_run, "--epochs", 3)
    assert result.exit_code == 0, result.output
    assert [r["epoch"] for r in read_metrics(finished_run / "metrics.csv")] == [1, 2, 3]
    assert json.loads((finished_run / "summary.json").read_text())["epochs"] == 3
    sessions = json.loads((finished_run / "config.json").read_text())["sessions"]
    assert [s["resumed"] for s in sessions] == [False, True]


@pytest.mark.parametrize("args, code, message", [
    (["--lr", "0.5"], 2, "--lr cannot change when resuming (the run used 0.05)"),
    (["--model", "vgg16"], 2, "--model cannot change when resuming"),
    (["--epochs", "1"], 2, "--epochs 1 is fewer than the 2 epochs"),
])
def test_resume_refuses_conflicting_options(run_cli, finished_run, args, code, message):
    result = run_cli("--resume", finished_run, *args)
    assert result.exit_code == code and message in result.stderr, result.output


def test_resume_of_a_missing_folder(run_cli, tmp_path):
    result = run_cli("resume", tmp_path / "nope")
    assert result.exit_code == 1 and "does not exist" in result.stderr


def test_resume_of_a_corrupt_checkpoint(run_cli, finished_run):
    (finished_run / "last.ckpt").write_bytes(b"\x12garbage" * 100)
    result = run_cli("resume", finished_run, "--epochs", 3)
    assert result.exit_code == 1 and "is corrupt" in result.stderr
    assert "Traceback" not in result.output


def test_resume_with_a_checkpoint_of_another_model(run_cli, finished_run, data_dir, tmp_path):
    other = tmp_path / "other"
    assert run_cli("--data-dir", data_dir, "--run-dir", other, *ARGS, "--epochs", 1,
                   "--model", "vgg11", "--width", "0.125").exit_code == 0
    (finished_run / "last.ckpt").write_bytes((other / "last.ckpt").read_bytes())
    result = run_cli("resume", finished_run, "--epochs", 3)
    assert result.exit_code == 1 and "holds a 'vgg11' model" in result.stderr


@pytest.mark.parametrize("failure", ["oserror", "mxnet"])
def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(
        run_cli, data_dir, tmp_path, monkeypatch, failure):
    """The disk fills while epoch 2's checkpoint is written: as an OSError(ENOSPC), or as the
    MXNetError that mx.nd.save raises (then only the free space tells it was the disk)."""
    real_save, calls = mx.nd.save, []

    def save_until_disk_full(fname, data):
        if fname.endswith(".tmp") and "last.ckpt" in fname:  # atomic_write's temporary file
            calls.append(fname)
            if len(calls) == 3:  # epoch-0, epoch-1 checkpoints fit; epoch 2's does not
                with open(fname, "wb") as f:
                    f.write(b"partial")
                if failure == "oserror":
                    raise OSError(errno.ENOSPC, "No space left on device")
                monkeypatch.setattr(shutil, "disk_usage", lambda p: DiskUsage(10**9, 10**9, 0))
                raise mx.base.MXNetError("[dmlc] Check failed: fo.good(): write failed")
        return real_save(fname, data)

    monkeypatch.setattr(mx.nd, "save", save_until_disk_full)
    run_dir = tmp_path / "run"
    result = run_cli("--data-dir", data_dir, "--run-dir", run_dir, *ARGS, "--width", "0.125",
                     "--epochs", EPOCHS)
    assert result.exit_code == 1
    assert "no space left on the device while writing" in result.stderr
    assert checkpoint.load(run_dir / "last.ckpt").meta["epochs_done"] == 1
    assert not list(run_dir.glob(".*tmp*"))  # no partial files left behind
    monkeypatch.undo()
    result = run_cli("resume", run_dir)
    assert result.exit_code == 0 and len(read_metrics(run_dir / "metrics.csv")) == EPOCHS


def test_resume_with_two_cpu_devices_and_batchnorm_is_exact(run_cli, data_dir, tmp_path):
    """Two devices each keep BatchNorm statistics; a resumed run must still match exactly."""
    args = ["--data-dir", data_dir, *ARGS, "--width", "0.125", "--cpu-devices", "2"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert run_cli(*args, "--run-dir", straight, "--epochs", 3).exit_code == 0
    assert run_cli(*args, "--run-dir", resumed, "--epochs", 1).exit_code == 0
    assert run_cli("resume", resumed, "--epochs", 3).exit_code == 0
    a, b = params_of(straight / "last.ckpt"), params_of(resumed / "last.ckpt")
    for key in a:
        if key != "meta":
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    summary = json.loads((straight / "summary.json").read_text())
    evaluated = run_cli("evaluate", straight, "--split", "val")
    assert f"val accuracy of best.params: {summary['best_val_acc']:.4f}" in evaluated.stdout


def test_a_run_of_other_random_streams_is_not_resumed(run_cli, cifar_dir, tmp_path):
    """Runs of swishtrain 0.1 drew shuffles and augmentations from untagged streams: continuing
    one here would silently train on other batches than the run did."""
    from helpers import TINY
    run_dir = tmp_path / "run"
    assert run_cli("--data-dir", cifar_dir, "--run-dir", run_dir, *TINY, "--epochs", 1) \
        .exit_code == 0
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["random_streams"] == 2
    del saved["random_streams"]  # as 0.1.0 wrote it
    (run_dir / "config.json").write_text(json.dumps(saved))
    result = run_cli("resume", run_dir, "--epochs", 2)
    assert result.exit_code == 1
    assert "drew its data order, augmentation and dropout differently" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
