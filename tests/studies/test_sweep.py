"""`swishtrain sweep`: a grid of models x seeds, each cell a run in its own folder; the same
command continues it; a pool of processes gives the same runs as one after another."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest
from slurm_cluster import wait_for

from train_cli.parsing import parse_seeds
from train_cli.runfolder import read_metrics

from helpers import TINY, write_cifar

MODELS = "vgg11_bn,vgg11_bn_swish"
TIMING = {"epoch_seconds", "train_img_per_s"}


def sweep_args(cifar_dir, study, seeds="1-2", *more, models=MODELS, epochs=1):
    """A sweep's command line: models x seeds of TINY runs."""
    options = [a for a in TINY if a not in ("--model", "vgg11_bn")]
    return ["sweep", "--models", models, "--seeds", seeds, "--run-dir", study,
            "--data-dir", cifar_dir, "--epochs", epochs, *options, *more]


def cell_results(study):
    """{cell folder: (metrics without timing, best.params bytes)} of every finished cell."""
    found = {}
    for summary in sorted(study.glob("*/seed-*/summary.json")):
        folder = summary.parent
        rows = [{k: v for k, v in r.items() if k not in TIMING}
                for r in read_metrics(folder / "metrics.csv")]
        found[f"{folder.parent.name}/{folder.name}"] = (rows, (folder / "best.params").read_bytes())
    return found


def test_seed_lists_take_ranges():
    assert parse_seeds("1-3,7") == (1, 2, 3, 7)
    assert parse_seeds("5") == (5,)
    with pytest.raises(ValueError, match="runs backwards"):
        parse_seeds("3-1")
    with pytest.raises(ValueError, match="neither a seed nor a range"):
        parse_seeds("1,x")


def test_a_sweep_trains_every_cell_and_the_same_command_continues_it(run_cli, cifar_dir,
                                                                     tmp_path):
    study = tmp_path / "study"
    result = run_cli(*sweep_args(cifar_dir, study))
    assert result.exit_code == 0, result.output
    manifest = json.loads((study / "study.json").read_text())
    assert [(c["model"], c["seed"], c["dir"]) for c in manifest["cells"]] == [
        ("vgg11_bn", 1, "vgg11_bn/seed-1"), ("vgg11_bn", 2, "vgg11_bn/seed-2"),
        ("vgg11_bn_swish", 1, "vgg11_bn_swish/seed-1"),
        ("vgg11_bn_swish", 2, "vgg11_bn_swish/seed-2")]
    assert all(c["config"]["model"] == c["model"] and c["config"]["seed"] == c["seed"]
               and c["config"]["width"] == 0.125 for c in manifest["cells"])
    first = cell_results(study)
    assert len(first) == 4
    assert "Best validation accuracy of vgg11_bn_swish: mean" in result.stdout
    # again: nothing is trained, everything is reported
    again = run_cli(*sweep_args(cifar_dir, study))
    assert again.exit_code == 0, again.output
    assert again.stdout.count(": finished, in ") == 4 and cell_results(study) == first
    # a cell that lost its end is resumed, a missing one started, and they equal the first ones
    (study / "vgg11_bn" / "seed-2" / "summary.json").unlink()
    shutil.rmtree(study / "vgg11_bn_swish" / "seed-1")
    third = run_cli(*sweep_args(cifar_dir, study))
    assert third.exit_code == 0, third.output
    assert "vgg11_bn seed 2 (2/4): resuming" in third.stdout
    assert "vgg11_bn_swish seed 1 (3/4) -> " in third.stdout
    assert cell_results(study) == first
    compared = run_cli("compare", study, "--json")
    assert compared.exit_code == 0, compared.output
    assert [g["runs"] for g in json.loads(compared.stdout)["groups"]] == [2, 2]


def test_more_seeds_add_cells_and_other_options_are_refused(run_cli, cifar_dir, tmp_path):
    study = tmp_path / "study"
    assert run_cli(*sweep_args(cifar_dir, study, "1")).exit_code == 0
    before = (study / "study.json").read_text()
    refused = run_cli(*sweep_args(cifar_dir, study, "1", "--lr", "0.01"))
    assert refused.exit_code == 2
    assert "--lr 0.05 -> 0.01" in refused.stderr and "another --run-dir" in refused.stderr
    dropped = run_cli(*[a if a != MODELS else "vgg11_bn" for a in sweep_args(cifar_dir, study,
                                                                              "1")])
    assert dropped.exit_code == 2 and "also has vgg11_bn_swish seed 1" in dropped.stderr
    assert (study / "study.json").read_text() == before  # refused: nothing changed
    added = run_cli(*sweep_args(cifar_dir, study, "1-2"))
    assert added.exit_code == 0, added.output
    assert "adding to" in added.stdout and "vgg11_bn seed 2, vgg11_bn_swish seed 2" in added.stdout
    assert added.stdout.count(": finished, in ") == 2 and len(cell_results(study)) == 4


def test_a_pool_of_two_gives_the_runs_one_after_another_gives(run_cli, cifar_dir, tmp_path):
    """Paired with a sweep of one cell at a time on one thread, as each of the pool's two cells
    has (oneDNN's sums, and so the last bits, depend on the number of threads)."""
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run([sys.executable, "-m", "train_cli", *map(str, sweep_args(cifar_dir, one))],
                   env=dict(os.environ, OMP_NUM_THREADS="1"), check=True, capture_output=True)
    result = run_cli(*sweep_args(cifar_dir, two, "1-2", "--jobs", "2"))
    assert result.exit_code == 0, result.output
    assert "running 4, 2 at a time (1 core(s) each)" in result.stdout
    assert "[vgg11_bn_swish seed 2] " in result.stdout  # each cell's lines carry its name
    assert cell_results(two) == cell_results(one)
    status = run_cli("sweep", "--status", two)
    assert status.exit_code == 0, status.output
    cells = [line for line in status.stdout.splitlines() if line.startswith("vgg11")]
    assert len(cells) == 4 and all(" done " in line for line in cells)
    assert "4 done of 4 cells" in status.stdout and "time left: none" in status.stdout


def test_status_shows_what_is_left(run_cli, cifar_dir, tmp_path):
    study = tmp_path / "study"
    assert run_cli(*sweep_args(cifar_dir, study, "1")).exit_code == 0
    (study / "vgg11_bn_swish" / "seed-1" / "summary.json").unlink()
    manifest = json.loads((study / "study.json").read_text())
    manifest["seeds"].append(2)  # a cell that never began
    manifest["cells"].append(dict(manifest["cells"][0], seed=2, dir="vgg11_bn/seed-2"))
    (study / "study.json").write_text(json.dumps(manifest))
    status = run_cli("sweep", "--status", study)
    assert status.exit_code == 0, status.output
    lines = {line.split()[0] + " " + line.split()[2]: line for line in status.stdout.splitlines()
             if line.startswith("vgg11")}
    assert " done " in lines["vgg11_bn 1"] and "1 / 1" in lines["vgg11_bn 1"]
    assert " queued " in lines["vgg11_bn 2"] and "0 / 1" in lines["vgg11_bn 2"]
    assert " stopped " in lines["vgg11_bn_swish 1"]  # begun, not finished
    assert "1 done, 1 queued, 1 stopped of 3 cells" in status.stdout
    assert "cell-hours of training" in status.stdout and " s with " not in status.stdout
    relu_epoch = float(lines["vgg11_bn 1"].split()[-1])
    assert lines["vgg11_bn 2"].split()[-1] == f"~{relu_epoch:.1f}"  # its model's epoch time
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # the begun cell runs again (its one epoch done): the never-begun one waits for it
        state = study / ".sweep" / "vgg11_bn_swish-seed-1.json"
        state.write_text(json.dumps(dict(json.loads(state.read_text()), state="running",
                                         pid=other.pid)))
        running = run_cli("sweep", "--status", study).stdout
    finally:
        other.kill()
        other.wait()
    assert "1 done, 1 running, 1 queued of 3 cells" in running
    wall = re.search(r"time left: about (\d+) s with 1 cell\(s\) at once", running)
    assert wall and abs(int(wall.group(1)) - relu_epoch) <= 1, running
    assert "1 done, 1 queued, 1 stopped" in run_cli("sweep", "--status", study).stdout  # ended


def test_time_left_lets_each_waiting_cell_start_when_a_running_one_ends():
    from train_cli.studies.status import wall_seconds
    assert wall_seconds([10, 100], [50, 50]) == 110  # both waiting cells follow the short one
    assert wall_seconds([30, 30], [30, 30, 30]) == 90
    assert wall_seconds([5], []) == 5


def test_a_continued_sweep_keeps_its_epochs_unless_given_more(run_cli, cifar_dir, tmp_path):
    study = tmp_path / "study"
    args = sweep_args(cifar_dir, study, "1", models="vgg11_bn")
    assert run_cli(*args).exit_code == 0
    without = [a for i, a in enumerate(args) if "--epochs" not in args[max(0, i - 1):i + 1]]
    again = run_cli(*without)  # --epochs left out: the study's own 1, not the default 40
    assert again.exit_code == 0 and ": finished, in " in again.stdout, again.output
    assert json.loads((study / "study.json").read_text())["config"]["epochs"] == 1
    same = run_cli(*without, "--epochs", 1)
    assert same.exit_code == 0
    more = run_cli(*without, "--epochs", 2)
    assert more.exit_code == 0, more.output
    assert len(read_metrics(study / "vgg11_bn" / "seed-1" / "metrics.csv")) == 2
    less = run_cli(*without, "--epochs", 1)
    assert less.exit_code == 2 and "a study only grows" in less.stderr


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_failed_cell_is_named_and_the_others_go_on(run_cli, cifar_dir, tmp_path, jobs):
    study = tmp_path / "study"
    args = sweep_args(cifar_dir, study, "1-2", models="vgg11_bn")
    assert run_cli(*args).exit_code == 0
    shutil.rmtree(study / "vgg11_bn" / "seed-1")
    (study / "vgg11_bn" / "seed-1").mkdir()
    (study / "vgg11_bn" / "seed-1" / "notes.txt").write_text("a user's file")  # not ours
    result = run_cli(*args, "--epochs", 2, "--jobs", jobs)
    assert result.exit_code == 1
    assert "seeds 1 of" in result.stderr and "failed" in result.stderr, result.output
    assert (study / "vgg11_bn" / "seed-1" / "notes.txt").exists()  # nothing of it deleted
    assert len(read_metrics(study / "vgg11_bn" / "seed-2" / "metrics.csv")) == 2  # went on


def test_a_cell_another_process_runs_is_not_run_twice(run_cli, cifar_dir, tmp_path):
    study = tmp_path / "study"
    args = sweep_args(cifar_dir, study, "1", models="vgg11_bn")
    assert run_cli(*args).exit_code == 0
    (study / "vgg11_bn" / "seed-1" / "summary.json").unlink()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        state = study / ".sweep" / "vgg11_bn-seed-1.json"
        saved = json.loads(state.read_text())
        state.write_text(json.dumps(dict(saved, state="running", pid=other.pid)))
        result = run_cli(*args)
        assert result.exit_code == 1 and f"running already (pid {other.pid}" in result.stderr
    finally:
        other.kill()
        other.wait()


def test_ctrl_c_stops_a_pool_at_a_batch_and_the_same_command_finishes_it(tmp_path):
    """Ctrl-C at the terminal (SIGINT to the foreground process group, which the pool's cells
    share) while both cells train: each stops at a batch boundary with its checkpoint intact,
    the study names them, and the same command ends them identical to uninterrupted runs."""
    data = write_cifar(tmp_path / "cifar", per_batch=600, test=30)  # epochs of 150 steps
    study, whole = tmp_path / "study", tmp_path / "whole"
    command = [sys.executable, "-m", "train_cli",
               *map(str, sweep_args(data, study, "1", "--jobs", 2, epochs=3))]
    out, err = tmp_path / "out", tmp_path / "err"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        pool = subprocess.Popen(command, start_new_session=True, stdout=stdout, stderr=stderr)
    try:
        metrics = [study / m / "seed-1" / "metrics.csv" for m in MODELS.split(",")]
        wait_for(lambda: all(m.exists() and len(m.read_text().splitlines()) >= 2
                             for m in metrics), 120, "epoch 1 of both cells recorded",
                 lambda: out.read_text() + err.read_text())
        os.killpg(pool.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        pool.wait(timeout=60)
    finally:
        if pool.poll() is None:
            os.killpg(pool.pid, signal.SIGKILL)
            pool.wait()
    out, err = out.read_text(), err.read_text()
    assert pool.returncode == 130, out + err
    assert "stopped by SIGINT" in err and "vgg11_bn seed 1, vgg11_bn_swish seed 1" in err, err
    assert all(1 <= len(read_metrics(m)) < 3 for m in metrics)  # stopped before the end
    states = [json.loads(p.read_text())["state"] for p in (study / ".sweep").glob("*.json")]
    assert states == ["stopped", "stopped"]
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count(": resuming ") == 2
    subprocess.run([sys.executable, "-m", "train_cli",
                    *map(str, sweep_args(data, whole, "1", epochs=3))],
                   env=dict(os.environ, OMP_NUM_THREADS="1"), check=True, capture_output=True)
    assert cell_results(study) == cell_results(whole)
