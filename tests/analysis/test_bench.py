"""swishtrain bench: the JSON it prints (shape and consistency, not speed), and the arithmetic
that judges a measured GFLOP/s (the CPU's peak, the fractions and what is said instead)."""
import json

import pytest

from train_cli import cpu
from train_cli.analysis.harness import judge
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
    # on the CPU the ceiling is oneDNN's inner product, whatever OpenBLAS or numpy reach
    assert report["sgemm_backend"] == "mxnet_fullyconnected_onednn"
    assert report["sgemm_gflops"] == report["sgemm_by_backend"]["mxnet_fullyconnected_onednn"]
    assert set(report["sgemm_by_backend"]) >= {"mxnet_dot_openblas", "numpy_matmul"}
    if report["fraction_of_ceiling"] is None:  # only when the model beat the ceiling
        assert report["achieved_gflops"] > report["sgemm_gflops"] and report["notes"]
    else:
        assert report["fraction_of_ceiling"] == pytest.approx(
            report["achieved_gflops"] / report["sgemm_gflops"])
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



AVX2 = {"sse2", "avx", "avx2", "fma"}
AVX512 = AVX2 | {"avx512f", "avx512bw", "avx512vl", "avx512dq"}


@pytest.mark.parametrize("flags, dtype, flop", [
    (AVX2, "float32", 32),  # 2 FMA units x 8 float32 lanes x 2
    (AVX512, "float32", 64),  # 16 lanes
    ({"sse2", "avx"}, "float32", 16),  # no FMA: a multiply and an add port of 8 lanes
    ({"sse2"}, "float32", 8),
    (AVX512 | {"avx512_bf16"}, "bfloat16", 128),
    (AVX512 | {"avx512_bf16", "amx_bf16", "amx_tile"}, "bfloat16", 1024),
])
def test_flop_per_cycle_follows_the_widest_unit_the_flags_show(flags, dtype, flop):
    assert cpu.flop_per_cycle(flags, dtype)[0] == flop


def test_peak_is_cores_times_clock_times_flop_per_cycle():
    peak = cpu.peak_gflops(AVX2, ghz=2.445, cores=2)
    assert peak["gflops"] == pytest.approx(2 * 2.445 * 32)  # 156.5: this project's 2-core EPYC
    assert cpu.peak_gflops(AVX512, ghz=3.0, cores=4)["gflops"] == pytest.approx(768)


def test_no_peak_without_a_clock_or_a_known_unit():
    assert cpu.peak_gflops(AVX2, ghz=None, cores=2)["gflops"] is None
    assert cpu.peak_gflops(AVX2, ghz=2.0, cores=2, dtype="bfloat16")["gflops"] is None
    assert cpu.peak_gflops(set(), ghz=2.0, cores=2)["gflops"] is None


def test_clock_prefers_cpufreqs_maximum_then_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\ncpu MHz\t\t: 2445.404\nflags\t\t: fpu avx2\n")
    maximum = tmp_path / "cpuinfo_max_freq"
    maximum.write_text("3500000\n")  # kHz
    assert cpu.clock(cpuinfo, maximum)[0] == pytest.approx(3.5)
    ghz, source = cpu.clock(cpuinfo, tmp_path / "absent")
    assert ghz == pytest.approx(2.445404) and "cpu MHz" in source
    assert cpu.clock(tmp_path / "absent", tmp_path / "absent")[0] is None


def test_fractions_of_bounds_that_hold():
    verdict = judge(achieved=70.0, ceiling=100.0, peak=150.0)
    assert verdict == {"fraction_of_ceiling": 0.7, "fraction_of_peak": pytest.approx(70 / 150),
                       "notes": []}


def test_a_model_above_the_ceiling_gets_a_sentence_not_a_ratio():
    # the AMD Zen 4: vgg16_bn at 184 GFLOP/s against a 162 GFLOP/s "ceiling"
    verdict = judge(achieved=184.0, ceiling=162.0, peak=500.0)
    assert verdict["fraction_of_ceiling"] is None
    assert verdict["fraction_of_peak"] == pytest.approx(184 / 500)
    assert len(verdict["notes"]) == 1 and "above the GEMM ceiling" in verdict["notes"][0]


def test_a_ceiling_above_the_peak_voids_the_peak():
    # a hypervisor's nominal clock: the cores run faster than /proc/cpuinfo says
    verdict = judge(achieved=50.0, ceiling=163.0, peak=156.5)
    assert verdict["fraction_of_ceiling"] == pytest.approx(50 / 163)
    assert verdict["fraction_of_peak"] is None
    assert "above the CPU's peak" in verdict["notes"][0]
    both = judge(achieved=170.0, ceiling=163.0, peak=156.5)
    assert both["fraction_of_ceiling"] is None and both["fraction_of_peak"] is None
    assert len(both["notes"]) == 3


def test_no_peak_known_no_fraction_of_it():
    assert judge(achieved=50.0, ceiling=100.0, peak=None)["fraction_of_peak"] is None


def test_bench_table_says_why_instead_of_a_ratio_above_one(run_cli, monkeypatch):
    from train_cli.analysis import bench
    # a ceiling far below any model: the table must not print a fraction above 1
    monkeypatch.setattr(bench, "gemm_ceiling", lambda contexts, dtype, n: (
        1e-6, "mxnet_fullyconnected_onednn", {"mxnet_fullyconnected_onednn": 1e-6,
                                              "mxnet_dot_openblas": 2e-6}))
    result = run_cli("bench", "--model", "vgg11", "--width", "0.125", "--batch-size", "8",
                     "--eval-batch-size", "8", "--steps", "1", "--repeats", "1")
    assert result.exit_code == 0, result.output
    line = next(x for x in result.stdout.splitlines() if x.startswith("fraction of ceiling"))
    assert "n/a" in line
    assert "note: the model's" in result.stdout and "above the GEMM ceiling" in result.stdout


def test_bench_refuses_options_that_cannot_go_together_before_the_devices(run_cli):
    """As a run does: the rule's own message, not the GPU preflight's."""
    result = run_cli("bench", "--gpus", "0", "--cpu-devices", "2")
    assert result.exit_code == 2 and "cannot be combined with --gpus" in result.stderr
    result = run_cli("bench", "--gpus", "0", "--dtype", "bfloat16")
    assert result.exit_code == 2 and "bfloat16 runs on the CPU only" in result.stderr
