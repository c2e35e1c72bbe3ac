"""compare.py: grouping runs by experiment, their statistics, differences and power (and the
words report.py gives them), on run folders with known numbers."""
import json

import numpy as np
import pytest
from run_folders import curve, held_out_groups, labels_and_sizes, make_run, table_row

from train_cli.analysis import report, stats
from train_cli.analysis.compare import FINAL_VAL_ACC, TEST_ACC, compare


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
