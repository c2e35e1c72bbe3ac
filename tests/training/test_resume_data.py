"""Resume continues on the data a run was trained on, or refuses (config.json's digests)."""
import hashlib
import json
import shutil

import pytest
from click.testing import CliRunner

from train_cli.cli import cli
from train_cli.data import cifar10 as data

from helpers import TINY, synthetic_split, write_bin_batch, write_cifar


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(data folder, run folder) of a 1-epoch run, and the same with --val-split 50."""
    base = tmp_path_factory.mktemp("trained")
    cifar = write_cifar(base / "cifar", per_batch=40, test=30)
    runs = {}
    for name, extra in (("plain", []), ("held-out", ["--val-split", 50])):
        runs[name] = base / name
        result = invoke("--data-dir", cifar, "--run-dir", runs[name], *TINY, "--epochs", 1, *extra)
        assert result.exit_code == 0, result.output
    return cifar, runs


@pytest.fixture
def run_copy(trained, tmp_path):
    """A fresh copy of one of the trained runs (resuming changes its folder)."""
    def copy(name="plain"):
        return shutil.copytree(trained[1][name], tmp_path / f"run-{name}")
    return copy


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def config(run):
    return json.loads((run / "config.json").read_text())


def assert_refused(result, code, *messages):
    assert result.exit_code == code, result.output
    errors = [line for line in result.stderr.splitlines() if not line.startswith("warning:")]
    assert len(errors) == 1 and errors[0].startswith("Error: "), result.stderr
    for message in messages:
        assert message in errors[0], errors[0]
    assert "Traceback" not in result.output


def test_config_records_each_splits_size_and_sha256(trained):
    cifar, runs = trained
    d = data.load_cifar10(cifar, val_split=50, warn=lambda m: None)
    splits = config(runs["held-out"])["data"]["splits"]
    for name, split in (("train", d.train), ("val", d.val), ("test", d.test)):
        digest = hashlib.sha256(split.images.tobytes() + split.labels.astype("<i4").tobytes())
        assert splits[name] == {"images": len(split), "sha256": digest.hexdigest()}, name
    assert [splits[n]["images"] for n in ("train", "val", "test")] == [150, 50, 30]
    plain = config(runs["plain"])["data"]["splits"]  # validation on the test batch
    assert plain["val"] == plain["test"] and plain["val"]["images"] == 30


def test_resume_on_data_of_other_sizes_is_refused_and_changes_nothing(trained, run_copy,
                                                                      tmp_path):
    cifar, _ = trained
    run = run_copy()
    other = write_cifar(tmp_path / "other", per_batch=30, test=30)
    before = snapshot(run)
    result = invoke("resume", run, "--data-dir", other, "--epochs", 2)
    assert_refused(result, 2, f"{other} is not the data {run} was trained on: its training split "
                              "has 150 images where the run's had 200 images",
                   f"resume it with the data it was trained on: --data-dir {cifar}")
    assert snapshot(run) == before


def test_resume_on_other_images_of_the_same_sizes_is_refused(trained, run_copy, tmp_path):
    run = run_copy()
    other = write_cifar(tmp_path / "other", per_batch=40, test=30, seed=7)
    before = snapshot(run)
    result = invoke("resume", run, "--data-dir", other, "--epochs", 2)
    assert_refused(result, 2, "its training split has as many images (200) but other ones; its "
                              "validation (test) split has as many images (30) but other ones")
    assert snapshot(run) == before


def test_resume_names_the_one_split_that_differs(trained, run_copy, tmp_path):
    cifar, _ = trained
    run = run_copy("held-out")
    other = shutil.copytree(cifar, tmp_path / "other")
    write_bin_batch(other / "test_batch.bin", *synthetic_split(30, seed=99))  # only the test batch
    result = invoke("resume", run, "--data-dir", other, "--epochs", 2)
    assert_refused(result, 2, ": its test split has as many images (30) but other ones; resume")


def test_data_changed_in_place_is_refused(trained, run_copy, tmp_path):
    cifar, _ = trained
    moved = shutil.copytree(cifar, tmp_path / "cifar")
    run = run_copy()
    result = invoke("resume", run, "--data-dir", moved, "--epochs", 2)  # moved: the same data
    assert result.exit_code == 0, result.output
    write_bin_batch(moved / "data_batch_5.bin", *synthetic_split(40, seed=99))
    before = snapshot(run)
    result = invoke("resume", run, "--epochs", 3)  # the folder it was resumed on, changed
    assert_refused(result, 1, "its training split has as many images (200) but other ones; the "
                              "data changed since the run was trained")
    assert snapshot(run) == before


def test_moved_data_resumes_and_is_recorded(trained, run_copy, tmp_path):
    cifar, _ = trained
    run = run_copy()
    moved = shutil.copytree(cifar, tmp_path / "moved")
    result = invoke("resume", run, "--data-dir", moved, "--epochs", 2)
    assert result.exit_code == 0, result.output
    assert "could not be checked" not in result.stderr
    saved = config(run)
    assert saved["data"]["source"] == str(moved)
    assert saved["data"]["splits"] == config(trained[1]["plain"])["data"]["splits"]


def test_run_without_recorded_digests_resumes_with_a_note(trained, run_copy, tmp_path):
    cifar, _ = trained
    run = run_copy()
    saved = config(run)
    del saved["data"]["splits"]  # as swishtrain wrote it before digests were recorded
    (run / "config.json").write_text(json.dumps(saved))
    other = write_cifar(tmp_path / "other", per_batch=30, test=30)  # its sizes are still checked
    result = invoke("resume", run, "--data-dir", other, "--epochs", 2)
    assert_refused(result, 2, "its training split has 150 images where the run's had 200 images")
    result = invoke("resume", run, "--epochs", 2)
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if "digest" in line]
    assert notes == [f"note: {run} was begun before swishtrain recorded a digest of its data, so "
                     f"the images in {cifar} could not be checked to be the ones it was trained "
                     "on (only their numbers)"]
    assert "sha256" in config(run)["data"]["splits"]["train"]  # recorded from now on
