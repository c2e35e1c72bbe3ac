"""swishtrain bench: the JSON it prints (shape and consistency, not speed)."""
import json

import pytest

from train_cli.analysis.bench import forward_flops_per_image

KEYS = ["train_img_per_s", "eval_img_per_s", "data_img_per_s", "epoch_img_per_s",
        "gflop_per_img", "achieved_gflops", "sgemm_gflops", "peak_rss_mb"]


def test_bench_json_has_every_figure(run_cli):
    result = run_cli("bench", "--model", "vgg11_bn_swish", "--width", "0.125", "--batch-size",
                     "16", "--eval-batch-size", "16", "--steps", "2", "--repeats", "1",
                     "--sgemm-size", "128", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for key in KEYS:
        assert isinstance(report[key], float) and report[key] > 0, key
    assert report["gflop_per_img"] == pytest.approx(
        3 * forward_flops_per_image("vgg11_bn_swish", 0.125) / 1e9)
    assert report["achieved_gflops"] == pytest.approx(
        report["gflop_per_img"] * report["train_img_per_s"])
    assert report["sgemm_gflops"] == max(report["sgemm_by_backend"].values())
    assert report["spread"]["train_img_per_s"]["min"] <= report["train_img_per_s"]
    assert report["batch_size"] == 16 and report["model"] == "vgg11_bn_swish"


def test_bench_table_names_each_figure(run_cli):
    result = run_cli("bench", "--model", "vgg11", "--width", "0.125", "--batch-size", "8",
                     "--eval-batch-size", "8", "--steps", "1", "--repeats", "1",
                     "--sgemm-size", "128")
    assert result.exit_code == 0, result.output
    for label in ("train step img/s", "eval img/s", "data pipeline img/s", "sgemm ceiling",
                  "fraction of ceiling", "peak RSS MB"):
        assert label in result.stdout


def test_flops_of_vgg16_at_32x32():
    # 313.2M multiply-adds in the convolutions + 19.0M in the dense layers (hand count)
    convs = sum(9 * cin * cout * hw * hw for cin, cout, hw in [
        (3, 64, 32), (64, 64, 32), (64, 128, 16), (128, 128, 16), (128, 256, 8), (256, 256, 8),
        (256, 256, 8), (256, 512, 4), (512, 512, 4), (512, 512, 4), (512, 512, 2), (512, 512, 2),
        (512, 512, 2)])
    dense = 512 * 4096 + 4096 * 4096 + 4096 * 10
    assert forward_flops_per_image("vgg16_bn") == 2 * (convs + dense)
