"""A stop request (Ctrl-C, SIGTERM) is never lost, and a stopped study says how to continue it
whole. The signal is sent by the process to itself from inside an evaluation, so it arrives
exactly where a user's Ctrl-C once was dropped."""
import json
import os
import shutil
import signal

import pytest

from train_cli.training.engine import Engine

from helpers import TINY


@pytest.fixture(autouse=True)
def default_sigint():
    """The CLI ignores a further Ctrl-C after a stop: give pytest its handler back."""
    yield
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def signal_in_evaluation(monkeypatch):
    """stop_at(n): the n-th evaluation from now sends SIGINT to this process."""
    calls = {"n": 0, "at": None}
    real = Engine.evaluate

    def evaluate(self, split):
        calls["n"] += 1
        if calls["n"] == calls["at"]:
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, split)
    monkeypatch.setattr(Engine, "evaluate", evaluate)

    def stop_at(n):
        calls.update(n=0, at=n)
    return stop_at


def summary_epochs(study):
    return [json.loads(p.read_text())["epochs"] for p in sorted(study.glob("seed-*/summary.json"))]


def test_a_stop_during_the_last_evaluation_ends_the_run_with_the_signals_code(
        run_cli, cifar_dir, tmp_path, signal_in_evaluation):
    run = tmp_path / "run"
    signal_in_evaluation(2)  # epoch 2 of 2
    result = run_cli("--data-dir", cifar_dir, "--run-dir", run, *TINY, "--epochs", 2)
    assert result.exit_code == 130, result.output
    assert "stopped by SIGINT as the run ended" in result.stderr
    assert json.loads((run / "summary.json").read_text())["epochs"] == 2  # the run is complete


def test_a_stopped_study_stops_and_names_the_command_that_continues_it_all(
        run_cli, cifar_dir, tmp_path, signal_in_evaluation):
    study = tmp_path / "study"
    signal_in_evaluation(1)  # seed 1's only epoch
    result = run_cli("--data-dir", cifar_dir, "--run-dir", study, *TINY, "--epochs", 1,
                     "--seeds", "1,2,3")
    assert result.exit_code == 130, result.output
    assert not (study / "seed-2").exists()  # no seed after the stop
    assert "seeds 2,3 of" in result.stderr
    assert f"Resume the study with: swishtrain resume {study}" in result.stderr
    signal_in_evaluation(None)
    result = run_cli("resume", study)
    assert result.exit_code == 0, result.output
    assert summary_epochs(study) == [1, 1, 1]


def test_an_interrupted_extension_of_a_study_ends_with_every_seed_extended(
        run_cli, cifar_dir, tmp_path, signal_in_evaluation):
    study = tmp_path / "study"
    assert run_cli("--data-dir", cifar_dir, "--run-dir", study, *TINY, "--epochs", 1,
                   "--seeds", "1,2").exit_code == 0
    signal_in_evaluation(1)  # seed 1's second epoch: seed 2 is never extended
    assert run_cli("resume", study, "--epochs", 2).exit_code == 130
    assert summary_epochs(study) == [2, 1]
    signal_in_evaluation(None)
    result = run_cli("resume", study)  # no --epochs: the study's own 2
    assert result.exit_code == 0, result.output
    assert summary_epochs(study) == [2, 2]
    assert "over 2 seed(s)" in result.stdout.strip().splitlines()[-1]


def test_a_seed_resumed_on_its_own_says_what_its_study_still_lacks(run_cli, cifar_dir,
                                                                    tmp_path):
    study = tmp_path / "study"
    assert run_cli("--data-dir", cifar_dir, "--run-dir", study, *TINY, "--epochs", 1,
                   "--seeds", "1,2").exit_code == 0
    (study / "seed-1" / "summary.json").unlink()  # stopped before its summary
    shutil.rmtree(study / "seed-2")  # never started
    result = run_cli("resume", study / "seed-1")
    assert result.exit_code == 0, result.output
    assert "whose seeds 2 are not finished" in result.stdout
    assert f"swishtrain resume {study}" in result.stdout


def test_seed_beside_seeds_is_refused(run_cli, cifar_dir, tmp_path):
    result = run_cli("--data-dir", cifar_dir, "--run-dir", tmp_path / "s", *TINY, "--seed", 3,
                     "--seeds", "1,2")
    assert result.exit_code == 2 and "--seed cannot be combined with --seeds" in result.stderr
    assert not (tmp_path / "s").exists()


def test_a_stop_between_two_seeds_stops_the_study_in_order(run_cli, cifar_dir, tmp_path,
                                                            monkeypatch):
    """Between one seed's run and the next no run holds the signal: the study does."""
    from train_cli.studies import cells
    real = cells.run_cell

    def then_stop(manifest, cell, *args):
        summary = real(manifest, cell, *args)
        if cell.seed == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return summary
    monkeypatch.setattr(cells, "run_cell", then_stop)
    study = tmp_path / "study"
    result = run_cli("--data-dir", cifar_dir, "--run-dir", study, *TINY, "--epochs", 1,
                     "--seeds", "1,2")
    assert result.exit_code == 130, result.output
    assert "Aborted" not in result.output and not (study / "seed-2").exists()
    assert f"seeds 2 of {study} are not finished" in result.stderr
    assert f"Resume the study with: swishtrain resume {study}" in result.stderr
