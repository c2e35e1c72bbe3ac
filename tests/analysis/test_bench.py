"""swishtrain bench: the JSON it prints (shape and consistency, not speed)."""
import json

import pytest

from train_cli.model.vgg import build_model

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
        3 * build_model("vgg11_bn_swish", 0.125).forward_flops() / 1e9)
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
    for label in ("train step img/s", "eval img/s", "data pipeline img/s", "GEMM ceiling",
                  "fraction of ceiling", "peak RSS MB"):
        assert label in result.stdout

