"""runs.py: finding and reading run folders, whole, unfinished, old or damaged."""
import json

import pytest
from run_folders import labels_and_sizes, make_run, table_row

from train_cli.analysis import report
from train_cli.analysis.compare import compare
from train_cli.analysis.runs import Unreadable, find_run_dirs, load_run
from train_cli.errors import UserError


def test_runs_with_missing_or_corrupt_files_get_a_note_not_a_crash(tmp_path):
    make_run(tmp_path / "good", [0.5, 0.6])
    (tmp_path / "started").mkdir()  # training began, no epoch finished yet
    (tmp_path / "started" / "config.json").write_text(
        (tmp_path / "good" / "config.json").read_text())
    make_run(tmp_path / "garbled", [0.5, 0.6], finished=False)
    (tmp_path / "garbled" / "metrics.csv").write_text("epoch,val_acc\nthree,0.5\n")
    make_run(tmp_path / "no-csv", [0.5, 0.7])
    (tmp_path / "no-csv" / "metrics.csv").unlink()
    make_run(tmp_path / "old-csv", [0.5, 0.6], finished=False)
    (tmp_path / "old-csv" / "metrics.csv").write_text("epoch,acc\n1,0.5\n")
    make_run(tmp_path / "badconfig", [0.5])
    (tmp_path / "badconfig" / "config.json").write_text("{not json")
    result = compare([tmp_path])
    assert [r.path for r in result.groups[0].runs] == [str(tmp_path / "good"),
                                                       str(tmp_path / "no-csv")]
    assert result.groups[0].stats().best_val_acc.mean == pytest.approx(0.65)
    skipped = {s.path: s.reason for s in result.skipped}
    assert skipped[str(tmp_path / "started")] == \
        "metrics.csv is missing and the run has no summary.json: no completed epoch; skipped"
    assert skipped[str(tmp_path / "garbled")].startswith("metrics.csv is corrupt")
    assert skipped[str(tmp_path / "old-csv")].startswith(
        "metrics.csv lacks some of the columns epoch, train_loss, val_acc, epoch_seconds")
    assert "not a swishtrain config" in skipped[str(tmp_path / "badconfig")]
    table = report.text(result)
    assert f"{tmp_path / 'no-csv'}: metrics.csv is missing: numbers from summary.json" in table
    assert f"{tmp_path / 'started'}: metrics.csv is missing" in table


def test_load_run_returns_a_run_or_raises_unreadable(tmp_path):
    run = load_run(make_run(tmp_path / "good", [0.5, 0.6], seed=4))
    assert (run.path, run.config["seed"], run.epochs_done, run.best_val_acc) == \
        (str(tmp_path / "good"), 4, 2, 0.6)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text("[]")
    with pytest.raises(Unreadable) as caught:
        load_run(tmp_path / "empty")
    assert caught.value.path == str(tmp_path / "empty")
    assert caught.value.reason == "config.json is unreadable or not a swishtrain config; skipped"


def test_a_folder_holding_seed_folders_is_not_a_run_itself(tmp_path):
    parent = make_run(tmp_path / "multi", [0.5], finished=False)
    (parent / "metrics.csv").unlink()
    make_run(parent / "seed-0", [0.5, 0.6])
    make_run(parent / "seed-1", [0.5, 0.7], seed=1)
    assert find_run_dirs([parent, parent / "seed-1"]) == [parent / "seed-0", parent / "seed-1"]


def test_a_config_json_path_means_its_run_folder(tmp_path):
    make_run(tmp_path / "a", [0.5])
    assert find_run_dirs([tmp_path / "a" / "config.json"]) == [tmp_path / "a"]
    with pytest.raises(UserError, match="is a file; pass the run folder"):
        find_run_dirs([tmp_path / "a" / "metrics.csv"])


def test_in_progress_runs_use_their_epochs_so_far_and_are_marked(tmp_path):
    make_run(tmp_path / "s0", [0.5, 0.8, 0.7, 0.75])
    make_run(tmp_path / "s1", [0.6, 0.9], finished=False, epochs=4, seed=1)
    result = compare([tmp_path])
    (group,) = result.groups
    assert [r.in_progress for r in group.runs] == [False, True]
    assert group.stats().best_val_acc.mean == pytest.approx(0.85)
    assert group.stats().final_val_acc.mean == pytest.approx(0.825)
    table = report.text(result)
    assert table_row(table, "vgg16_bn")[:4] == ["2", "(1", "in", "progress)"]
    assert f"{tmp_path / 's1'}: in progress: 2 of 4 epochs done" in table


def test_runs_recorded_before_an_option_existed_group_with_its_default(tmp_path):
    """config.json of an older swishtrain lacks shuffle, input_norm and test_split: those runs
    had the defaults, so they are the same experiment as new runs with the defaults."""
    make_run(tmp_path / "new", [0.5, 0.6], seed=1)
    old = make_run(tmp_path / "old", [0.5, 0.7], seed=2)
    saved = json.loads((old / "config.json").read_text())
    for key in ("shuffle", "input_norm", "test_split"):
        del saved["config"][key]
    (old / "config.json").write_text(json.dumps(saved))
    (group,) = compare([tmp_path]).groups
    assert len(group.runs) == 2 and group.label == "vgg16_bn"


def test_old_run_folders_get_the_job_from_the_config(tmp_path):
    # before workers, global_batch_size and data were recorded: 1 worker, batch x GPUs
    make_run(tmp_path / "old", [0.5, 0.6], legacy=True, gpus=(0, 1))
    make_run(tmp_path / "new", [0.5, 0.7], seed=1, gpus=(2, 3))
    make_run(tmp_path / "held", [0.5, 0.7], legacy=True, gpus=(0, 1), test_acc=0.6)
    result = compare([tmp_path])
    assert labels_and_sizes(result) == [("vgg16_bn val-split=5000", 1),
                                        ("vgg16_bn val-split=0", 2)]
    held, old = result.groups[0].runs[0], result.groups[1].runs[1]
    assert (old.workers, old.global_batch_size, old.val_is_test) == (1, 256, True)
    assert held.val_is_test is False
    detail = report.as_json(result)["groups"][0]["runs_detail"][0]
    assert (detail["path"], detail["selected_on"]) == (held.path, "held-out validation split")
