"""--seeds: one configuration, several seeds, one study folder that compare and resume accept."""
import json
import statistics

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


def test_duplicate_seeds_are_refused(run_cli, cifar_dir, tmp_path):
    result = run_cli("--seeds", "1,1", "--data-dir", cifar_dir, "--run-dir", tmp_path / "s",
                     *TINY)
    assert result.exit_code == 2 and "lists a seed twice" in result.stderr
