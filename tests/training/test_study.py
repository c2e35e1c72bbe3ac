"""--seeds: one configuration, several seeds, one study folder that compare and resume accept."""
import json
import statistics

import pytest

from helpers import TINY


def summaries(folder):
    return {p.parent.name: json.loads(p.read_text())
            for p in sorted(folder.glob("seed-*/summary.json"))}


def test_seeds_train_one_run_per_seed_and_report_the_mean(run_cli, cifar_dir, tmp_path):
    study = tmp_path / "study"
    result = run_cli("--seeds", "1,2", "--epochs", 1, "--data-dir", cifar_dir, "--run-dir",
                     study, *TINY)
    assert result.exit_code == 0, result.output
    done = summaries(study)
    assert list(done) == ["seed-1", "seed-2"]
    seeds = [json.loads((study / name / "config.json").read_text())["config"]["seed"]
             for name in done]
    assert seeds == [1, 2]
    accs = [s["best_val_acc"] for s in done.values()]
    assert result.stdout.strip().splitlines()[-1] == (
        f"Best validation accuracy: mean {statistics.mean(accs):.4f} ± "
        f"{statistics.stdev(accs):.4f} over 2 seed(s)")
    compared = run_cli("compare", study, "--json")
    assert compared.exit_code == 0 and '"runs": 2' in compared.output


def test_resume_of_a_study_continues_every_seed(run_cli, cifar_dir, tmp_path):
    study = tmp_path / "study"
    assert run_cli("--seeds", "3,4", "--epochs", 1, "--data-dir", cifar_dir, "--run-dir", study,
                   *TINY).exit_code == 0
    result = run_cli("resume", study, "--epochs", 2)
    assert result.exit_code == 0, result.output
    assert [s["epochs"] for s in summaries(study).values()] == [2, 2]


def test_resume_of_a_study_starts_the_seeds_that_never_began(run_cli, cifar_dir, tmp_path):
    import shutil
    study = tmp_path / "study"
    assert run_cli("--seeds", "5,6", "--epochs", 1, "--data-dir", cifar_dir, "--run-dir", study,
                   *TINY).exit_code == 0
    shutil.rmtree(study / "seed-6")  # as if stopped before seed 6 started
    result = run_cli("resume", study)
    assert result.exit_code == 0, result.output
    assert list(summaries(study)) == ["seed-5", "seed-6"]
    assert "seed 5 (1/2): finished" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("Best validation accuracy: mean")


def test_seeds_overwrite_replaces_an_earlier_study(run_cli, cifar_dir, tmp_path):
    args = ["--seeds", "1", "--epochs", 1, "--data-dir", cifar_dir, "--run-dir",
            tmp_path / "s", *TINY]
    assert run_cli(*args).exit_code == 0
    assert run_cli(*args).exit_code == 1  # refused without --overwrite
    assert run_cli(*args, "--overwrite").exit_code == 0
    assert list(summaries(tmp_path / "s")) == ["seed-1"]


@pytest.mark.parametrize("seeds", ["1,1", "", "-1"])
def test_bad_seed_lists_are_refused_before_anything_is_written(run_cli, cifar_dir, tmp_path,
                                                                 seeds):
    result = run_cli("--seeds", seeds, "--data-dir", cifar_dir, "--run-dir", tmp_path / "s",
                     *TINY)
    assert result.exit_code == 2 and "--seeds" in result.stderr, result.output
    assert not (tmp_path / "s").exists()
