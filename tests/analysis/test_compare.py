"""`swishtrain compare`: runs.py, compare.py, report.py and plot.py on run folders written by hand
with known numbers."""
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from train_cli.analysis import plot, report, stats
from train_cli.analysis.compare import FINAL_VAL_ACC, TEST_ACC, compare
from train_cli.analysis.runs import Unreadable, find_run_dirs, load_run
from train_cli.config import TrainConfig, to_dict
from train_cli.errors import UserError
from train_cli.runfolder import format_metrics, selected_on


def curve(best, best_epoch, final, epochs):
    """Validation accuracies rising to `best` at `best_epoch` (1-based), then `final` after."""
    accs = [round(best - 0.05 * (best_epoch - e), 6) for e in range(1, best_epoch + 1)]
    return accs + [final] * (epochs - best_epoch)


def make_run(folder, val_accs, finished=True, seconds=10.0, test_acc=None, workers=1,
             legacy=False, **options):
    """A run folder as run.py leaves it, with the given per-epoch validation accuracies.

    test_acc given: validation is a held-out split (--val-split 5000 unless said) and the run
    has a test split. legacy: config.json and summary.json as older versions wrote them.
    """
    folder.mkdir(parents=True)
    options.setdefault("epochs", len(val_accs))
    options.setdefault("lr_steps", (2,))
    if test_acc is not None:
        options.setdefault("val_split", 5000)
    cfg = to_dict(TrainConfig(run_dir=str(folder), **options))
    val_is_test = cfg["val_split"] == 0
    val_images = 10000 if val_is_test else cfg["val_split"]
    info = {"swishtrain": "0.1.0", "config": cfg, "devices": ["cpu(0)"], "sessions": []}
    if not legacy:
        info.update(workers=workers,
                    global_batch_size=cfg["batch_size"] * max(1, len(cfg["gpus"])) * workers,
                    data=dict(source="/data", train_images=50000 - cfg["val_split"],
                              val_images=val_images, val_is_test=val_is_test,
                              test_images=10000 if test_acc is not None or val_is_test else None))
    (folder / "config.json").write_text(json.dumps(info))
    rows = [dict(epoch=e, lr=0.1, train_loss=2.0 / e, train_acc=acc, val_loss=1.0 - acc,
                 val_acc=acc, epoch_seconds=seconds, train_img_per_s=100.0)
            for e, acc in enumerate(val_accs, start=1)]
    (folder / "metrics.csv").write_text(format_metrics(rows))
    if finished:
        best = max(range(len(val_accs)), key=lambda i: val_accs[i])
        summary = dict(
            model=cfg["model"], best_val_acc=val_accs[best], best_epoch=best + 1,
            final_val_acc=val_accs[-1], val_images=val_images, val_is_test=val_is_test,
            test_acc=test_acc, test_images=None if test_acc is None else 10000,
            epochs=len(val_accs), total_seconds=seconds * len(val_accs))
        if not legacy:
            summary.update(workers=workers, peak_rss_mb=100.0,
                           selected_on=selected_on(val_is_test))
        (folder / "summary.json").write_text(json.dumps(summary))
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
    s = result.groups[0].stats()
    assert s.runs == 3 and s.in_progress == 0
    assert s.best_val_acc.mean == pytest.approx(0.92)
    assert s.best_val_acc.std == pytest.approx(0.02)  # sample std (ddof=1)
    assert s.best_epoch_median == 4
    assert s.final_val_acc.mean == pytest.approx(0.91)
    assert s.final_val_acc.std == pytest.approx(0.02)
    assert s.seconds_per_epoch_mean == pytest.approx(12.0)
    assert s.test_acc.mean is None and s.test_acc.std is None and s.test_runs == 0
    assert (s.val_images, s.val_is_test) == (10000, True)
    # validation is the test split: the best val acc is marked as selected on it
    assert table_row(report.text(result), "vgg16_bn") == \
        ["3", "10,000", "=", "test", "92.00", "±", "2.00*", "4", "91.00", "±", "2.00", "-", "12.0"]
    assert table_row(report.text(result), "vgg16_bn_swish") == \
        ["3", "10,000", "=", "test", "96.00", "±", "1.00*", "6", "96.00", "±", "1.00", "-", "20.0"]


def test_table_columns_line_up(two_groups):
    lines = report.text(compare([two_groups])).splitlines()[:3]
    assert len({len(line) for line in lines}) == 1  # right-aligned numbers end together
    assert lines[0].startswith("group") and lines[0].endswith("s/epoch")


def test_clearly_separated_groups_get_a_significant_verdict(two_groups):
    result = compare([two_groups])  # the parent folder is searched recursively
    (d,) = result.differences
    assert (d.better, d.other) == ("vgg16_bn_swish", "vgg16_bn")
    # validation is the test split: the verdict is on the last epoch (0.91 vs 0.96), not the
    # best one (0.92 vs 0.96)
    assert d.metric == FINAL_VAL_ACC and d.diff == pytest.approx(0.05)
    # every resampled difference lies between the worst and best pairing of group means
    assert 0.02 - 1e-9 <= d.ci_low < d.diff < d.ci_high <= 0.08 + 1e-9
    assert report.verdict(d) == (f"vgg16_bn_swish is better by 5.00 points of final val acc "
                                 f"(95% CI [{100 * d.ci_low:.2f}, {100 * d.ci_high:.2f}])")
    table = report.text(result)
    assert f"vgg16_bn_swish vs vgg16_bn: {report.verdict(d)}" in table
    assert "difference in mean final val acc (95% bootstrap CI" in table
    assert d.best_val_diff == pytest.approx(0.04) and d.best_val_on_test
    assert ("    best val acc*: vgg16_bn_swish +4.00 points (selected on the test split: "
            "optimistic, not the verdict's)") in table.splitlines()


def test_identical_groups_are_not_significantly_different(tmp_path):
    for lr in (0.1, 0.05):
        for seed, best in enumerate([0.90, 0.93, 0.91]):
            make_run(tmp_path / f"lr{lr}" / str(seed), curve(best, 2, best, 3), seed=seed, lr=lr)
    result = compare([tmp_path / "lr0.1", tmp_path / "lr0.05"])
    assert [g.label for g in result.groups] == ["vgg16_bn lr=0.1", "vgg16_bn lr=0.05"]
    (d,) = result.differences
    assert d.diff == 0 and d.ci_low < 0 < d.ci_high and not d.significant
    assert report.verdict(d) == "no significant difference in final val acc (95% CI spans 0)"


def test_options_shared_by_all_groups_stay_out_of_labels(tmp_path):
    # seed, run_dir, data_dir, eval_batch_size and hybridize never split a group
    make_run(tmp_path / "a", [0.5, 0.6], seed=1, eval_batch_size=100, hybridize=False)
    make_run(tmp_path / "b", [0.5, 0.6], seed=2, data_dir="/elsewhere")
    make_run(tmp_path / "c", [0.5, 0.6], width=0.5, lr=0.05)
    result = compare([tmp_path])
    assert [g.label for g in result.groups] == ["vgg16_bn lr=0.1 width=1",
                                                "vgg16_bn lr=0.05 width=0.5"]
    assert [len(g.runs) for g in result.groups] == [2, 1]
    assert table_row(report.text(result), "vgg16_bn lr=0.05 width=0.5")[:7] == \
        ["1", "10,000", "=", "test", "60.00", "±", "-*"]  # one run: no std
    assert "no significance test: it needs 2 or more groups with 2 or more runs" in \
        report.text(result)
    assert result.differences == []


def labels_and_sizes(result):
    return [(g.label, len(g.runs)) for g in result.groups]


@pytest.mark.parametrize("options, label", [
    (dict(epochs=3), "epochs=3"),
    (dict(workers=2), "global-batch=256 workers=2"),  # launch -n 2: twice the global batch
    (dict(batch_size=64), "batch-size=64 global-batch=64"),
    (dict(gpus=(0, 1)), "global-batch=256 num-gpus=2"),  # a count: gpus=2 would be an id
    (dict(cpu_devices=2), "cpu-devices=2"),
    (dict(augment="flip"), "augment=flip"),
    (dict(input_norm="none"), "input-norm=none"),
    (dict(shuffle=False), "shuffle=False"),
    (dict(test_split=5000), "test-split=5000"),
    (dict(kvstore="dist_async"), "updates=async"),
])
def test_whatever_changes_the_experiment_splits_groups(tmp_path, options, label):
    make_run(tmp_path / "a", [0.5, 0.6], lr_steps=(1,))
    make_run(tmp_path / "b", [0.5, 0.6, 0.7][:options.get("epochs", 2)], lr_steps=(1,),
             **options)
    result = compare([tmp_path])
    assert labels_and_sizes(result)[1] == (f"vgg16_bn {label}", 1)


def test_what_does_not_change_the_experiment_keeps_one_group(tmp_path):
    # seed, folders, GPU ids, eval batch size, hybridize: the same experiment
    make_run(tmp_path / "a", [0.5, 0.6], seed=1, gpus=(0, 1))
    make_run(tmp_path / "b", [0.5, 0.7], seed=2, gpus=(2, 3), eval_batch_size=100,
             hybridize=False, data_dir="/elsewhere")
    # the same sync update whichever store sums the gradients (launch -n 1 uses dist_sync)
    make_run(tmp_path / "c", [0.5, 0.8], seed=3, gpus=(1, 2), kvstore="dist_sync")
    result = compare([tmp_path])
    assert labels_and_sizes(result) == [("vgg16_bn", 3)]
    assert result.groups[0].config["num_gpus"] == 2
    assert result.groups[0].config["global_batch_size"] == 256
    assert "gpus" not in result.groups[0].config and "seed" not in result.groups[0].config


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


def held_out_groups(tmp_path, relu_tests, swish_tests, **options):
    """Runs with a held-out validation split and a test split (test accs given per seed)."""
    for arm, tests, model in [("relu", relu_tests, "vgg16_bn"),
                              ("swish", swish_tests, "vgg16_bn_swish")]:
        for seed, test in enumerate(tests):
            make_run(tmp_path / arm / str(seed), [0.7, 0.8 + 0.01 * seed, 0.75], seed=seed,
                     test_acc=test, model=model, **options)


def test_verdict_uses_test_acc_when_every_run_holds_out_validation(tmp_path):
    held_out_groups(tmp_path, [0.80, 0.82, 0.84], [0.86, 0.87, 0.88])
    result = compare([tmp_path])
    assert result.metric == TEST_ACC
    (d,) = result.differences
    assert d.diff == pytest.approx(0.05) and not d.best_val_on_test
    assert d.best_val_diff == pytest.approx(0.0)  # the validation curves are the same
    assert report.verdict(d).startswith(
        "vgg16_bn_swish is better by 5.00 points of test acc (95% CI")
    table = report.text(result)
    assert table_row(table, "vgg16_bn") == [
        "3", "5,000", "/", "10,000", "81.00", "±", "1.00", "2", "75.00", "±", "0.00",
        "82.00", "±", "2.00", "10.0"]
    assert "*" not in table  # nothing was selected on the test split
    assert "verdict figure: test acc, the test accuracy at the best validation epoch" in table
    assert "difference in mean test acc (95% bootstrap CI" in table
    assert ("    best val acc: vgg16_bn_swish +0.00 points (selected on the held-out validation "
            "split)") in table.splitlines()
    s = result.groups[0].stats()
    assert (s.val_images, s.test_images, s.test_runs) == (5000, 10000, 3)
    group = report.as_json(result)["groups"][0]
    assert group["selected_on"] == "held-out validation split"
    assert group["best_val_acc_note"] is None


def test_verdict_falls_back_to_the_final_epoch_unless_every_run_has_a_test_acc(tmp_path):
    held_out_groups(tmp_path, [0.80, 0.82, 0.84], [0.86, 0.87, 0.88])
    make_run(tmp_path / "relu" / "3", [0.7, 0.8], seed=3, val_split=5000, finished=False,
             epochs=3)  # in progress: no test acc yet
    result = compare([tmp_path])
    assert result.metric == FINAL_VAL_ACC
    (d,) = result.differences
    assert report.metric_name(d.metric) == "final val acc" and "final val acc" in \
        report.verdict(d)
    assert (d.better, d.diff) == ("vgg16_bn", pytest.approx(0.0125))  # 0.8 is its last epoch
    table = report.text(result)
    assert "verdict figure: final val acc, the validation accuracy of the last epoch" in table
    assert "would need --val-split N and a test split on every run" in " ".join(table.split())


def test_groups_validated_on_different_splits_are_said_to_be(tmp_path):
    held_out_groups(tmp_path, [0.80, 0.82], [0.86, 0.87])
    for seed in range(2):
        make_run(tmp_path / "onset" / str(seed), [0.7, 0.9, 0.9], seed=seed,
                 model="vgg16_bn_swish")
    result = compare([tmp_path])
    assert result.metric == FINAL_VAL_ACC
    marked = {g.label: table_row(report.text(result), g.label)[6] for g in result.groups}
    assert marked == {"vgg16_bn val-split=5000": "0.71", "vgg16_bn_swish val-split=5000": "0.71",
                      "vgg16_bn_swish val-split=0": "0.00*"}
    assert "the groups validate on different splits" in report.text(result)
    pairs = {(d.better, d.other): d.best_val_on_test for d in result.differences}
    assert pairs == {("vgg16_bn_swish val-split=5000", "vgg16_bn val-split=5000"): False,
                     ("vgg16_bn_swish val-split=0", "vgg16_bn val-split=5000"): True,
                     ("vgg16_bn_swish val-split=0", "vgg16_bn_swish val-split=5000"): True}


def test_power_says_what_the_seeds_can_detect(two_groups):
    result = compare([two_groups], detect=0.02)
    (d,) = result.differences
    pooled = np.sqrt((2 * 0.02 ** 2 + 2 * 0.01 ** 2) / 4)
    assert (d.power.n1, d.power.n2) == (3, 3)
    assert d.power.pooled_std == pytest.approx(pooled)
    assert d.power.detectable_difference == \
        pytest.approx((2.776445 + 0.940965) * pooled * np.sqrt(2 / 3), rel=1e-6)
    assert d.power.seeds_per_arm == 11
    # 11 seeds per arm detect 2 points, 10 do not
    assert stats.detectable_difference(pooled, 11, 11) <= 0.02 < \
        stats.detectable_difference(pooled, 10, 10)
    assert ("    power: with 3 and 3 seeds (pooled seed-to-seed std 1.58 points) the smallest "
            "difference detectable at 95% confidence and 80% power is 4.8 points; 2 points "
            "would need 11 seeds per arm") in report.text(result).splitlines()


def test_power_with_no_spread_and_beyond_the_cap(tmp_path):
    for arm in ("a", "b"):
        for seed in range(2):
            make_run(tmp_path / arm / str(seed), [0.5, 0.6 if arm == "a" else 0.7], seed=seed,
                     lr=0.1 if arm == "a" else 0.05)
    (d,) = compare([tmp_path]).differences
    assert (d.power.pooled_std, d.power.detectable_difference, d.power.seeds_per_arm) == \
        (0.0, 0.0, 2)
    assert "no spread seen" in report.power_line(d.power)
    (tmp_path / "a" / "1" / "metrics.csv").unlink()
    (tmp_path / "a" / "1" / "summary.json").write_text((tmp_path / "a" / "1" / "summary.json")
                                                       .read_text().replace("0.6,", "0.2,"))
    (d,) = compare([tmp_path], detect=1e-6).differences
    assert d.power.seeds_per_arm is None
    assert report.power_line(d.power).endswith("would need more than 10,000 seeds per arm")


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
    assert result.stdout.strip() == report.text(compare([two_groups / "relu",
                                                         two_groups / "swish"]))


def test_compare_json(run_cli, two_groups):
    result = run_cli("compare", two_groups, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out) == {"verdict_metric", "groups", "differences", "skipped"}
    assert out["verdict_metric"]["key"] == "final_val_acc"
    assert out["verdict_metric"]["name"] == "final val acc"
    assert "not selected" in out["verdict_metric"]["description"]
    relu, swish = out["groups"]
    assert relu["label"] == "vgg16_bn" and relu["runs"] == 3
    assert relu["best_val_acc_mean"] == pytest.approx(0.92)
    assert relu["best_val_acc_std"] == pytest.approx(0.02)
    assert relu["final_val_acc_mean"] == pytest.approx(0.91)
    assert relu["final_val_acc_std"] == pytest.approx(0.02)
    # validation is the test split: said, with the image counts, and the best figure is marked
    assert relu["selected_on"] == "test split" and relu["val_is_test"] is True
    assert (relu["val_images"], relu["test_images"]) == (10000, 10000)
    assert relu["best_val_acc_note"] == ("selected on the test split (validation = test): an "
                                         "optimistic test figure, not the verdict's")
    assert relu["config"]["model"] == "vgg16_bn" and "seed" not in relu["config"]
    assert [r["seed"] for r in relu["runs_detail"]] == [0, 1, 2]
    assert relu["runs_detail"][1] == dict(
        path=str(two_groups / "relu" / "seed-1"), seed=1, in_progress=False, epochs_done=6,
        best_val_acc=0.92, best_epoch=5, selected_on="test split", val_images=10000,
        final_val_acc=0.91, test_acc=None, test_images=10000, seconds_per_epoch=12.0, note="")
    (d,) = out["differences"]
    assert d["better"] == "vgg16_bn_swish" and d["significant"] is True
    assert d["metric"] == "final_val_acc" and d["diff"] == pytest.approx(0.05)
    assert d["confidence"] == 0.95 and d["resamples"] == 10_000
    assert re.fullmatch(r"vgg16_bn_swish is better by 5\.00 points of final val acc \(95% CI "
                        r"\[\d\.\d\d, \d\.\d\d\]\)", d["verdict"])
    assert d["best_val_acc_diff"] == pytest.approx(0.04)
    assert d["best_val_acc_selected_on_test"] is True
    # final val acc: relu 0.89/0.91/0.93 (std 0.02), swish 0.95/0.96/0.97 (std 0.01)
    pooled = np.sqrt((2 * 0.02 ** 2 + 2 * 0.01 ** 2) / 4)
    assert d["power"]["pooled_std"] == pytest.approx(pooled)
    assert d["power"]["detectable_difference"] == \
        pytest.approx((2.776445 + 0.940965) * pooled * np.sqrt(2 / 3), rel=1e-6)
    assert d["power"]["detect"] == pytest.approx(0.005)
    assert d["power"]["seeds_per_arm"] == 158  # (1.96 + 0.84)^2 * 2 * (1.58 / 0.5)^2 ~ 157
    assert (d["power"]["confidence"], d["power"]["power"]) == (0.95, 0.8)
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


def test_plot_legend_says_when_validation_is_the_test_split(two_groups, tmp_path):
    held_out_groups(tmp_path / "held", [0.80, 0.82], [0.86, 0.87])
    groups = compare([two_groups / "relu", tmp_path / "held"]).groups  # two_groups is tmp_path
    assert [plot.legend_label(g) for g in groups] == [
        "vgg16_bn epochs=6 val-split=0 (n=3, val = test split)",
        "vgg16_bn epochs=3 val-split=5000 (n=2)", "vgg16_bn_swish epochs=3 val-split=5000 (n=2)"]


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


def test_compare_detect_sets_the_difference_in_points(run_cli, two_groups):
    result = run_cli("compare", two_groups, "--detect", "2")
    assert result.exit_code == 0, result.output
    assert "2 points would need 11 seeds per arm" in result.stdout
    out = json.loads(run_cli("compare", two_groups, "--json", "--detect", "2").stdout)
    assert out["differences"][0]["power"]["detect"] == pytest.approx(0.02)


@pytest.mark.parametrize("value", ["0", "-0.5", "nan", "inf"])
def test_compare_detect_must_be_positive(run_cli, two_groups, value):
    result = run_cli("compare", two_groups, "--detect", value)
    assert result.exit_code == 2 and result.stdout == ""
    assert "Invalid value for '--detect': must be a positive number of accuracy points" in \
        result.stderr


def test_compare_help_quotes_the_confidence_and_power_used(run_cli):
    confidence, power = report.percent(stats.CONFIDENCE), report.percent(stats.POWER)
    out = " ".join(run_cli("compare", "--help").stdout.split())
    assert f"every pair gets a {confidence} bootstrap interval of the difference" in out
    assert f"at {confidence} confidence and {power} power" in out and "{" not in out
    assert f"with {confidence} CIs and power" in " ".join(run_cli("--help").stdout.split())


def test_compare_needs_a_run_dir(run_cli):
    result = run_cli("compare")
    assert result.exit_code == 2 and "Missing argument 'RUN_DIR...'" in result.stderr


def test_compare_errors_raise_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        compare([tmp_path / "missing"])


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


def test_a_copied_run_folder_is_one_observation_not_another_seed(run_cli, cifar_dir, tmp_path):
    import shutil

    from helpers import TINY
    run = tmp_path / "runs" / "a"
    assert run_cli("--data-dir", cifar_dir, "--run-dir", run, *TINY, "--epochs", 2).exit_code == 0
    shutil.copytree(run, tmp_path / "runs" / "a-copy")
    result = run_cli("compare", tmp_path / "runs", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [g["runs"] for g in out["groups"]] == [1]
    assert out["skipped"] == [{"path": str(tmp_path / "runs" / "a-copy"),
                               "reason": f"the same run as {run} (options, seed and weights): "
                                         "counted once"}]
