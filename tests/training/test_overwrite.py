"""--overwrite replaces only what swishtrain made: a folder is a run (or a study) only if it
carries swishtrain's marker, or its own config.json / study.json, and nothing else; nothing is
followed through a symbolic link; the old run is emptied only after every check has passed."""
import json

import pytest

from train_cli.runfolder import MARKER, SWEEP_STATE, read_metrics

from helpers import TINY


def snapshot(folder):
    """{relative path: bytes or '->target' for links} of every entry under folder."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        out[rel] = f"->{p.readlink()}" if p.is_symlink() else \
            (p.read_bytes() if p.is_file() else "dir")
    return out


def one_line_error(result, words):
    err = "\n".join(line for line in result.stderr.strip().splitlines()
                    if not line.startswith("warning:"))
    assert result.exit_code == 1 and "\n" not in err and "Traceback" not in result.output, \
        result.output
    assert words in err, err
    return err


def test_a_users_folder_with_a_config_json_is_never_deleted(run_cli, cifar_dir, tmp_path):
    """The issue's case: a project folder that happens to hold a config.json."""
    project, outside = tmp_path / "P", tmp_path / "outside"
    (project / "src").mkdir(parents=True)
    (project / ".ssh").mkdir()
    outside.mkdir()
    (outside / "keep.txt").write_text("outside")
    (project / "config.json").write_text("{}")
    (project / "src" / "main.py").write_text("x\n")
    (project / ".ssh" / "id_ed25519").write_text("secret")
    (project / "link").symlink_to(outside)
    before, before_outside = snapshot(project), snapshot(outside)
    result = run_cli("--data-dir", cifar_dir, "--run-dir", project, "--overwrite", *TINY,
                     "--epochs", 1)
    one_line_error(result, "is not a folder swishtrain made")
    assert snapshot(project) == before and snapshot(outside) == before_outside


@pytest.fixture
def finished_run(run_cli, cifar_dir, tmp_path):
    run = tmp_path / "run"
    assert run_cli("--data-dir", cifar_dir, "--run-dir", run, *TINY, "--epochs", 1).exit_code == 0
    return run


def test_a_run_folder_holding_anything_else_is_refused_whole(run_cli, cifar_dir, finished_run,
                                                               tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "data.bin").write_bytes(b"precious")
    for extra in ("notes.txt", "plots", "link"):
        path = finished_run / extra
        if extra == "notes.txt":
            path.write_text("mine")
        elif extra == "plots":
            path.mkdir()
        else:
            path.symlink_to(outside)
        before = snapshot(finished_run)
        result = run_cli("--data-dir", cifar_dir, "--run-dir", finished_run, "--overwrite",
                         *TINY, "--epochs", 1)
        one_line_error(result, f"{path} is not something swishtrain writes")
        assert snapshot(finished_run) == before
        path.unlink() if not path.is_dir() or path.is_symlink() else path.rmdir()
    assert (outside / "data.bin").read_bytes() == b"precious"


def test_a_link_to_a_run_folder_is_not_overwritten(run_cli, cifar_dir, finished_run, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(finished_run)
    before = snapshot(finished_run)
    result = run_cli("--data-dir", cifar_dir, "--run-dir", link, "--overwrite", *TINY)
    one_line_error(result, "is a symbolic link")
    assert snapshot(finished_run) == before


def test_a_failing_check_deletes_nothing(run_cli, cifar_dir, finished_run, tmp_path):
    before = snapshot(finished_run)
    result = run_cli("--data-dir", cifar_dir, "--run-dir", finished_run, "--overwrite", *TINY,
                     "--width", "100")  # the memory preflight refuses it
    assert result.exit_code == 2 and snapshot(finished_run) == before
    study = tmp_path / "study"  # a study replaced its folder before its first seed's checks
    args = ["--data-dir", cifar_dir, "--run-dir", study, *TINY, "--epochs", 1, "--seeds", "1"]
    assert run_cli(*args).exit_code == 0
    before = snapshot(study)
    assert run_cli(*args, "--overwrite", "--width", "100").exit_code == 2
    assert snapshot(study) == before


def test_overwrite_replaces_a_run_and_a_study_it_made(run_cli, cifar_dir, finished_run, tmp_path):
    assert json.loads((finished_run / MARKER).read_text())["kind"] == "run"
    (finished_run / ".metrics.csv.999999.tmp").write_text("a killed write")  # ours too
    result = run_cli("--data-dir", cifar_dir, "--run-dir", finished_run, "--overwrite", *TINY,
                     "--epochs", 2)
    assert result.exit_code == 0, result.output
    assert len(read_metrics(finished_run / "metrics.csv")) == 2
    assert not (finished_run / ".metrics.csv.999999.tmp").exists()
    study = tmp_path / "study"
    args = ["--data-dir", cifar_dir, "--run-dir", study, *TINY, "--epochs", 1, "--seeds", "1,2"]
    assert run_cli(*args).exit_code == 0
    assert run_cli(*args, "--overwrite").exit_code == 0
    assert sorted(p.name for p in study.iterdir()) == sorted(
        [MARKER, SWEEP_STATE, "seed-1", "seed-2", "study.json"])  # each seed's state: --status
