"""`swishtrain compare`: the table, the JSON, --plot, --detect, --help and the errors."""
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from run_folders import held_out_groups, make_run

from train_cli.analysis import plot, report, stats
from train_cli.analysis.compare import compare
from train_cli.errors import UserError


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
