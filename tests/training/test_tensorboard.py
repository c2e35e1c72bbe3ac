"""Every run writes its curves as TensorBoard event files (RUN_DIR/tensorboard/); read back with
TensorBoard's own reader, each scalar is metrics.csv's value at every epoch, once per epoch, also
across resumes; a failure to write them is one warning, never a stopped run."""
import errno
import math
import shutil

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from train_cli.runfolder import CURVES, TENSORBOARD, read_metrics
from train_cli.training import checkpoint, tensorboard
from train_cli.training.tensorboard import EventWriter

from helpers import TINY


def curves(run):
    """{tag: [(step, value), ...]} as TensorBoard reads the run's event files."""
    reader = EventAccumulator(str(run / TENSORBOARD), size_guidance={"scalars": 0})  # keep all
    reader.Reload()
    return {tag: [(e.step, e.value) for e in reader.Scalars(tag)]
            for tag in reader.Tags()["scalars"]}


def assert_curves_equal_metrics(run, epochs):
    """One value per epoch for every curve: metrics.csv's (to the 6 digits it prints), and
    exactly the checkpoint's record of it in float32 (what an event holds)."""
    rows = read_metrics(run / "metrics.csv")
    exact = checkpoint.load(run / "last.ckpt").meta["metrics"]
    assert [r["epoch"] for r in rows] == [r["epoch"] for r in exact] == list(range(1, epochs + 1))
    found = curves(run)
    assert sorted(found) == sorted(CURVES)
    for tag in CURVES:
        assert [step for step, _ in found[tag]] == list(range(1, epochs + 1)), (tag, found[tag])
        for (_, value), row, record in zip(found[tag], rows, exact):
            assert value == float(np.float32(record[tag])), (tag, value, record[tag])
            assert math.isclose(value, row[tag], rel_tol=1e-5, abs_tol=1e-7), (tag, value, row)


def train(run_cli, cifar_dir, run, *args):
    result = run_cli("--data-dir", cifar_dir, "--run-dir", run, *TINY, *args)
    assert result.exit_code == 0, result.output
    return result


def test_every_curve_equals_metrics_csv_at_every_epoch(run_cli, cifar_dir, tmp_path):
    run = tmp_path / "run"
    result = train(run_cli, cifar_dir, run, "--epochs", 2)
    assert "TensorBoard" not in result.stderr
    assert len(list((run / TENSORBOARD).iterdir())) == 1  # one session, one file
    assert_curves_equal_metrics(run, epochs=2)


def test_a_resumed_run_shows_each_epoch_once_with_the_checkpoints_value(run_cli, cifar_dir,
                                                                          tmp_path):
    run = tmp_path / "run"
    train(run_cli, cifar_dir, run, "--epochs", 1)
    # a session killed after writing epoch 2's events but before its last.ckpt: on resume the
    # epoch is recomputed, and TensorBoard must show the recomputed values, not these
    orphan = EventWriter(run, warn=pytest.fail)
    orphan.record([{"epoch": epoch, **{tag: -1.0 for tag in CURVES}} for epoch in (1, 2)])
    orphan.close()
    assert len(list((run / TENSORBOARD).iterdir())) == 2
    assert run_cli("resume", run, "--epochs", 2).exit_code == 0
    assert len(list((run / TENSORBOARD).iterdir())) == 3  # a new file per session: merged
    assert_curves_equal_metrics(run, epochs=2)


def test_events_a_kill_kept_from_being_written_are_filled_in_on_resume(run_cli, cifar_dir,
                                                                       tmp_path):
    """The kill came after last.ckpt but before the events: the next session writes them."""
    run = tmp_path / "run"
    train(run_cli, cifar_dir, run, "--epochs", 1)
    shutil.rmtree(run / TENSORBOARD)
    assert run_cli("resume", run, "--epochs", 2).exit_code == 0
    assert_curves_equal_metrics(run, epochs=2)


def test_a_failed_event_write_is_one_warning_and_the_run_goes_on(run_cli, cifar_dir, tmp_path,
                                                                 monkeypatch):
    def disk_full(self, step, values):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(tensorboard._EventFile, "scalars", disk_full)
    run = tmp_path / "run"
    result = train(run_cli, cifar_dir, run, "--epochs", 2)
    warnings = [line for line in result.stderr.splitlines() if "TensorBoard" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: cannot write TensorBoard "
                                                         "events"), result.stderr
    assert "No space left on device" in warnings[0]
    assert len(read_metrics(run / "metrics.csv")) == 2 and (run / "summary.json").is_file()
    monkeypatch.undo()
    assert run_cli("resume", run, "--epochs", 3).exit_code == 0  # the next session rebuilds all
    assert_curves_equal_metrics(run, epochs=3)


def test_without_tensorboardx_a_run_says_so_once(tmp_path, monkeypatch):
    def missing():
        raise ModuleNotFoundError("No module named 'tensorboardX'", name="tensorboardX")
    monkeypatch.setattr(tensorboard, "_tensorboardx", missing)
    said = []
    writer = EventWriter(tmp_path, warn=said.append)
    for epochs in (1, 2):
        writer.record([{"epoch": e, "lr": 0.1} for e in range(1, epochs + 1)])
    assert len(said) == 1 and "tensorboardX is not installed" in said[0]


def test_overwrite_deletes_the_event_files_and_refuses_anything_else_there(run_cli, cifar_dir,
                                                                           tmp_path):
    run = tmp_path / "run"
    train(run_cli, cifar_dir, run, "--epochs", 1)
    notes = run / TENSORBOARD / "notes.txt"
    notes.write_text("mine")
    result = run_cli("--data-dir", cifar_dir, "--run-dir", run, "--overwrite", *TINY,
                     "--epochs", 1)
    assert result.exit_code == 1 and f"{notes} is not something swishtrain writes" in \
        result.stderr, result.output
    assert notes.read_text() == "mine"
    notes.unlink()
    train(run_cli, cifar_dir, run, "--overwrite", "--epochs", 1)
    assert len(list((run / TENSORBOARD).iterdir())) == 1  # the old session's file is gone
    assert_curves_equal_metrics(run, epochs=1)
