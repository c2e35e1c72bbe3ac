"""`swishtrain compare` and compare.py/plot.py: run folders written by hand with known numbers."""
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from train_cli.analysis import plot
from train_cli.analysis.compare import bootstrap_diff, compare, find_run_dirs
from train_cli.config import TrainConfig, to_dict
from train_cli.errors import UserError
from train_cli.runfolder import format_metrics


def curve(best, best_epoch, final, epochs):
    """Validation accuracies rising to `best` at `best_epoch` (1-based), then `final` after."""
    accs = [round(best - 0.05 * (best_epoch - e), 6) for e in range(1, best_epoch + 1)]
    return accs + [final] * (epochs - best_epoch)


def make_run(folder, val_accs, finished=True, seconds=10.0, test_acc=None, **options):
    """A run folder as run.py leaves it, with the given per-epoch validation accuracies."""
    folder.mkdir(parents=True)
    options.setdefault("epochs", len(val_accs))
    options.setdefault("lr_steps", (2,))
    cfg = to_dict(TrainConfig(run_dir=str(folder), **options))
    (folder / "config.json").write_text(json.dumps(
        {"swishtrain": "0.1.0", "config": cfg, "devices": ["cpu(0)"], "sessions": []}))
    rows = [dict(epoch=e, lr=0.1, train_loss=2.0 / e, train_acc=acc, val_loss=1.0 - acc,
                 val_acc=acc, epoch_seconds=seconds, train_img_per_s=100.0)
            for e, acc in enumerate(val_accs, start=1)]
    (folder / "metrics.csv").write_text(format_metrics(rows))
    if finished:
        best = max(range(len(val_accs)), key=lambda i: val_accs[i])
        (folder / "summary.json").write_text(json.dumps(dict(
            model=cfg["model"], best_val_acc=val_accs[best], best_epoch=best + 1,
            final_val_acc=val_accs[-1], val_images=10000, val_is_test=test_acc is None,
            test_acc=test_acc, test_images=None if test_acc is None else 10000,
            epochs=len(val_accs), total_seconds=seconds * len(val_accs))))
    return folder


@pytest.fixture
def two_groups(tmp_path):
    """relu: best 0.90/0.92/0.94 at epochs 3/5/4; swish: best 0.95/0.96/0.97 (clearly better)."""
    for seed, (best, epoch, final, secs) in enumerate([(0.90, 3, 0.89, 10.0), (0.92, 5, 0.91, 12.0),
                                                       (0.94, 4, 0.93, 14.0)]):
        make_run(tmp_path / "relu" / f"seed-{seed}", curve(best, epoch, final, 6), seed=seed,
                 seconds=secs, model="vgg16_bn")
    for seed, best in enumerate([0.95, 0.96, 0.97]):
        make_run(tmp_path / "swish" / f"seed-{seed}", curve(best, 6, best, 6), seed=seed,
                 seconds=20.0, model="vgg16_bn_swish")
    return tmp_path


def table_row(table, label):
    """The cells after `label` in the table row of that group, split on spaces."""
    (line,) = [line for line in table.splitlines() if line.split("  ")[0].strip() == label]
    return line[len(label):].split()


def test_group_statistics_are_exact(two_groups):
    result = compare([two_groups / "relu", two_groups / "swish"])
    assert [g.label for g in result.groups] == ["vgg16_bn", "vgg16_bn_swish"]
    stats = result.groups[0].stats()
    assert stats["runs"] == 3 and stats["in_progress"] == 0
    assert stats["best_val_acc_mean"] == pytest.approx(0.92)
    assert stats["best_val_acc_std"] == pytest.approx(0.02)  # sample std (ddof=1)
    assert stats["best_epoch_median"] == 4
    assert stats["final_val_acc_mean"] == pytest.approx(0.91)
    assert stats["seconds_per_epoch_mean"] == pytest.approx(12.0)
    assert stats["test_acc_mean"] is None
    assert table_row(result.format_table(), "vgg16_bn") == \
        ["3", "92.00", "±", "2.00", "4", "91.00", "-", "12.0"]
    assert table_row(result.format_table(), "vgg16_bn_swish") == \
        ["3", "96.00", "±", "1.00", "6", "96.00", "-", "20.0"]


def test_table_columns_line_up(two_groups):
    lines = compare([two_groups]).format_table().splitlines()[:3]
    assert len({len(line) for line in lines}) == 1  # right-aligned numbers end together
    assert lines[0].startswith("group") and lines[0].endswith("s/epoch")


def test_clearly_separated_groups_get_a_significant_verdict(two_groups):
    result = compare([two_groups])  # the parent folder is searched recursively
    (d,) = result.differences
    assert (d.better, d.other) == ("vgg16_bn_swish", "vgg16_bn")
    assert d.diff == pytest.approx(0.04)
    # every resampled difference lies between the worst and best pairing of group means
    assert 0.01 - 1e-9 <= d.ci_low < d.diff < d.ci_high <= 0.07 + 1e-9
    assert d.verdict() == (f"vgg16_bn_swish is better by 4.00 points (95% CI "
                           f"[{100 * d.ci_low:.2f}, {100 * d.ci_high:.2f}])")
    assert f"vgg16_bn_swish vs vgg16_bn: {d.verdict()}" in result.format_table()


def test_identical_groups_are_not_significantly_different(tmp_path):
    for lr in (0.1, 0.05):
        for seed, best in enumerate([0.90, 0.93, 0.91]):
            make_run(tmp_path / f"lr{lr}" / str(seed), curve(best, 2, best, 3), seed=seed, lr=lr)
    result = compare([tmp_path / "lr0.1", tmp_path / "lr0.05"])
    assert [g.label for g in result.groups] == ["vgg16_bn lr=0.1", "vgg16_bn lr=0.05"]
    (d,) = result.differences
    assert d.diff == 0 and d.ci_low < 0 < d.ci_high and not d.significant
    assert d.verdict() == "no significant difference (95% CI spans 0)"


def test_bootstrap_is_seeded_and_resamples():
    a, b = [0.901, 0.923, 0.947, 0.912, 0.905, 0.931], [0.933, 0.951, 0.922, 0.944]
    assert bootstrap_diff(a, b) == bootstrap_diff(a, b)  # default_rng(0): reproducible
    assert bootstrap_diff(a, b, seed=1) != bootstrap_diff(a, b)  # a real resampling
    diff, low, high = bootstrap_diff(a, b)
    assert diff == pytest.approx(np.mean(b) - np.mean(a)) and low < diff < high
    assert bootstrap_diff([0.9, 0.9], [0.95, 0.95]) == pytest.approx((0.05, 0.05, 0.05))


def test_options_shared_by_all_groups_stay_out_of_labels(tmp_path):
    # seed, run_dir, data_dir, eval_batch_size, hybridize and epochs never split a group
    make_run(tmp_path / "a", [0.5, 0.6], seed=1, eval_batch_size=100, hybridize=False)
    make_run(tmp_path / "b", [0.5, 0.7, 0.6], seed=2, data_dir="/elsewhere")
    make_run(tmp_path / "c", [0.5, 0.6], width=0.5, lr=0.05)
    result = compare([tmp_path])
    assert [g.label for g in result.groups] == ["vgg16_bn lr=0.1 width=1",
                                                "vgg16_bn lr=0.05 width=0.5"]
    assert [len(g.runs) for g in result.groups] == [2, 1]
    assert table_row(result.format_table(), "vgg16_bn lr=0.05 width=0.5")[:4] == \
        ["1", "60.00", "±", "-"]  # one run: no std
    assert "no significance test: it needs 2 or more groups with 2 or more runs" in \
        result.format_table()
    assert result.differences == []


def test_in_progress_runs_use_their_epochs_so_far_and_are_marked(tmp_path):
    make_run(tmp_path / "s0", [0.5, 0.8, 0.7, 0.75])
    make_run(tmp_path / "s1", [0.6, 0.9], finished=False, epochs=4, seed=1)
    result = compare([tmp_path])
    (group,) = result.groups
    assert [r.in_progress for r in group.runs] == [False, True]
    assert group.stats()["best_val_acc_mean"] == pytest.approx(0.85)
    assert group.stats()["final_val_acc_mean"] == pytest.approx(0.825)
    table = result.format_table()
    assert table_row(table, "vgg16_bn")[:4] == ["2", "(1", "in", "progress)"]
    assert f"{tmp_path / 's1'}: in progress: 2 of 4 epochs done" in table


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
    assert result.groups[0].stats()["best_val_acc_mean"] == pytest.approx(0.65)
    skipped = dict(result.skipped)
    assert skipped[str(tmp_path / "started")] == \
        "metrics.csv is missing and the run has no summary.json: no completed epoch; skipped"
    assert skipped[str(tmp_path / "garbled")].startswith("metrics.csv is corrupt")
    assert skipped[str(tmp_path / "old-csv")].startswith(
        "metrics.csv lacks some of the columns epoch, train_loss, val_acc, epoch_seconds")
    assert "not a swishtrain config" in skipped[str(tmp_path / "badconfig")]
    table = result.format_table()
    assert f"{tmp_path / 'no-csv'}: metrics.csv is missing: numbers from summary.json" in table
    assert f"{tmp_path / 'started'}: metrics.csv is missing" in table


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


def test_compare_does_not_import_mxnet(two_groups):
    # compare reads files only: it must stay fast and work where mxnet cannot load
    code = ("import sys; from train_cli.cli import cli; "
            f"cli(['compare', {str(two_groups)!r}], standalone_mode=False); "
            "assert 'mxnet' not in sys.modules, 'mxnet was imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "vgg16_bn_swish vs vgg16_bn" in done.stdout


def test_curves_average_the_runs_that_reached_each_epoch(tmp_path):
    make_run(tmp_path / "a", [0.5, 0.6, 0.7])
    make_run(tmp_path / "b", [0.3, 0.8], finished=False, epochs=3)
    epochs, mean, low, high = plot.curves(compare([tmp_path]).groups[0], "val_acc")
    assert epochs.tolist() == [1, 2, 3]
    assert mean.tolist() == pytest.approx([0.4, 0.7, 0.7])
    assert low.tolist() == pytest.approx([0.3, 0.6, 0.7])
    assert high.tolist() == pytest.approx([0.5, 0.8, 0.7])


# -----------------------------------------------------------------------------
# The command
def test_compare_prints_the_table(run_cli, two_groups):
    result = run_cli("compare", two_groups / "relu", two_groups / "swish")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == compare([two_groups / "relu",
                                             two_groups / "swish"]).format_table()


def test_compare_json(run_cli, two_groups):
    result = run_cli("compare", two_groups, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out) == {"groups", "differences", "skipped"}
    relu, swish = out["groups"]
    assert relu["label"] == "vgg16_bn" and relu["runs"] == 3
    assert relu["best_val_acc_mean"] == pytest.approx(0.92)
    assert relu["best_val_acc_std"] == pytest.approx(0.02)
    assert relu["config"]["model"] == "vgg16_bn" and "seed" not in relu["config"]
    assert [r["seed"] for r in relu["runs_detail"]] == [0, 1, 2]
    assert relu["runs_detail"][1] == dict(
        path=str(two_groups / "relu" / "seed-1"), seed=1, in_progress=False, epochs_done=6,
        best_val_acc=0.92, best_epoch=5, final_val_acc=0.91, test_acc=None,
        seconds_per_epoch=12.0, note="")
    (d,) = out["differences"]
    assert d["better"] == "vgg16_bn_swish" and d["significant"] is True
    assert d["confidence"] == 0.95 and d["resamples"] == 10_000
    assert re.fullmatch(r"vgg16_bn_swish is better by 4\.00 points \(95% CI \[\d\.\d\d, "
                        r"\d\.\d\d\]\)", d["verdict"])
    assert out["skipped"] == []


def png_size(data):
    """(width, height) from a PNG's IHDR chunk, after checking the 8-byte signature."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_plot_writes_a_png_of_the_figure_size(run_cli, two_groups, tmp_path):
    make_run(two_groups / "swish" / "seed-3", [0.9, 0.95], finished=False, epochs=6, seed=3,
             model="vgg16_bn_swish")  # shorter curves are fine
    out = tmp_path / "curves.png"
    result = run_cli("compare", two_groups, "--plot", out)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith(f"curves written to {out}")
    size = png_size(out.read_bytes())
    assert size == (round(plot.FIGSIZE[0] * plot.DPI), round(plot.FIGSIZE[1] * plot.DPI))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no tmp left


def test_plot_with_different_lr_steps_per_group(two_groups, tmp_path):
    make_run(two_groups / "other", [0.5, 0.6, 0.7], lr_steps=(1,), model="vgg11")
    plot.plot_comparison(compare([two_groups]), tmp_path / "c.png")
    assert png_size((tmp_path / "c.png").read_bytes())[0] == plot.FIGSIZE[0] * plot.DPI


def test_plot_without_matplotlib_names_the_extra(run_cli, two_groups, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    result = run_cli("compare", two_groups, "--plot", tmp_path / "c.png")
    assert result.exit_code == 1
    assert result.stderr.strip() == \
        "Error: --plot needs matplotlib: pip install 'swishtrain[plot]'"
    assert result.stdout == "" and not (tmp_path / "c.png").exists()


@pytest.mark.parametrize("args, message", [
    (["{tmp}/nowhere"], "nowhere does not exist"),
    (["{tmp}/empty"], "no run folders (folders with config.json) found under"),
    (["{tmp}/started"], "no run under"),
    (["{tmp}/started", "--plot", "{tmp}/c.png"], "no run under"),
    (["{tmp}/ok", "--plot", "{tmp}/c.jpg"], "give a file name ending in .png"),
])
def test_compare_errors_are_one_line(run_cli, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "started").mkdir()
    (tmp_path / "started" / "config.json").write_text(json.dumps({"config": {"model": "x"}}))
    make_run(tmp_path / "ok", [0.5])
    result = run_cli("compare", *[a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 1, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_compare_needs_a_run_dir(run_cli):
    result = run_cli("compare")
    assert result.exit_code == 2 and "Missing argument 'RUN_DIR...'" in result.stderr


def test_compare_errors_raise_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        compare([tmp_path / "missing"])
