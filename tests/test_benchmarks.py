"""Every script in benchmarks/ runs its real code path at a tiny size (width 0.125, batch 8, one
step) and prints figures that are numbers; one whose CPU feature is missing says so and exits 2.

The runs are processes of their own, started when the first test asks, two at a time (one
OpenMP thread each: the machine's two cores, not oversubscribed) to keep the file within about a
minute. The scripts that need PyTorch (the `bench` extra, which `make test` installs with the
CPU build) are skipped where it is not installed.
"""
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from train_cli import cpu
from train_cli.training import precision

from helpers import REPO

BENCH = REPO / "benchmarks"
HAS_TORCH = importlib.util.find_spec("torch") is not None
NEEDS_TORCH = pytest.mark.skipif(
    not HAS_TORCH, reason="PyTorch is not installed (the `bench` extra: `make test`, or "
                          "pip install -e '.[bench]')")
HAS_BF16 = precision.bfloat16_isa(cpu.flags()) is not None
TINY = ["--width", "0.125", "--batch-size", "8"]
LIBRARIES = {"onednn_log.py"}  # imported by the scripts below, run through them


def runs(tmp):
    """{name: (command line after python, needs PyTorch)} of every smoke run."""
    step = ["--steps", "1", "--repeats", "1"]
    return {
        "isa": (["isa.py"], False),
        "mx_train_step": (["mx_train_step.py", *TINY, *step, "--warmup", "1", "--sgemm-size",
                           "128", "--json"], False),
        "mx_train_step_bfloat16": (["mx_train_step.py", *TINY, *step, "--warmup", "1",
                                    "--sgemm-size", "128", "--dtype", "bfloat16"], False),
        "conv_as_gemm": (["conv_as_gemm.py", "--channels", "16", "--batch-size", "4",
                          "--rounds", "1", "--reps", "1"], False),
        "swish_variants": (["swish_variants.py", *TINY, "--rounds", "2", "--steps", "1"], False),
        "bfloat16": (["bfloat16.py", *TINY, *step, "--rounds", "1", "--sgemm-size", "128"],
                     False),
        "torch_vgg": (["torch_vgg.py", *TINY, *step, "--warmup", "1", "--json"], True),
        # without PyTorch, MXNet's side alone
        "profile_step": (["profile_step.py", *TINY, "--steps", "1", "--warmup", "1", "--top",
                          "5", "--json", str(tmp / "profile.json")]
                         + ([] if HAS_TORCH else ["--framework", "mxnet"]), False),
        "profile_step_bfloat16": (["profile_step.py", *TINY, "--steps", "1", "--warmup", "1",
                                   "--dtype", "bfloat16"]
                                  + ([] if HAS_TORCH else ["--framework", "mxnet"]), False),
        "vs_pytorch": (["vs_pytorch.py", "--quick", "--rounds", "1", *step, *TINY,
                        "--sgemm-size", "128", "--json", str(tmp / "vs.json")], True),
        "vs_pytorch_bfloat16": (["vs_pytorch.py", "--quick", "--dtype", "bfloat16", "--rounds",
                                 "1", *step, *TINY, "--sgemm-size", "128"], True),
    }


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """name -> (CompletedProcess, folder of its --json files) of every run this venv can do."""
    tmp = tmp_path_factory.mktemp("bench")
    env = dict(os.environ, OMP_NUM_THREADS="1", MXNET_CPU_WORKER_NTHREADS="1",
               # this checkout's train_cli, whatever an editable install points at
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    todo = {name: args for name, (args, torch) in runs(tmp).items() if HAS_TORCH or not torch}

    def run(args):
        return subprocess.run([sys.executable, str(BENCH / args[0]), *args[1:]], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=600)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(run, args) for name, args in todo.items()}
        return {name: (future.result(), tmp) for name, future in futures.items()}


def ok(done):
    """stdout of a run that succeeded (its stderr as the failure's message otherwise)."""
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


def finite(*values):
    """Every value a finite, positive number."""
    return all(isinstance(v, float | int) and math.isfinite(v) and v > 0 for v in values)


def test_every_script_has_a_smoke_run(tmp_path):
    scripts = {path.name for path in BENCH.glob("*.py")}
    assert scripts == {args[0] for args, _ in runs(tmp_path).values()} | LIBRARIES


def test_isa_lists_the_classes_this_cpu_can_run(smoke):
    out = ok(smoke["isa"][0])
    assert out.startswith("machine: ")
    avx2 = next(line for line in out.splitlines() if line.startswith("avx2 "))
    assert ("not available" in avx2) != ({"avx2", "fma"} <= cpu.flags())


def test_mx_train_step_prints_its_figures(smoke):
    result = json.loads(ok(smoke["mx_train_step"][0]))
    assert finite(result["train_img_per_s"], result["achieved_gflops"], result["sgemm_gflops"],
                  result["gflop_per_img"], *result["rates"])
    assert result["sgemm_backend"] == "mxnet_fullyconnected_onednn"
    assert result["fraction_of_ceiling"] is not None or result["notes"]


def test_mx_train_step_bfloat16_runs_or_says_why_not(smoke):
    done = smoke["mx_train_step_bfloat16"][0]
    if HAS_BF16:
        assert re.search(r"bfloat16: [\d.]+ train img/s", ok(done))
    else:
        assert done.returncode == 2, done.stderr[-2000:]
        assert "--dtype bfloat16: not available on this CPU" in done.stdout


def test_conv_as_gemm_agrees_and_times_each_form(smoke):
    out = ok(smoke["conv_as_gemm"][0])
    diffs = re.findall(r"max \|diff\| (\S+) \(max \|value\| (\S+)\)", out)
    assert len(diffs) == 12  # 3 forms x output and 3 gradients
    assert all(float(d) <= 1e-4 * float(v) for d, v in diffs)
    times = re.findall(r"^  (\S+) +([\d.]+) ms   conv/this ([\d.]+)$", out, re.MULTILINE)
    assert [t[0] for t in times] == ["conv", "im2col+gemm", "dense"]
    assert all(finite(float(ms), float(ratio)) for _, ms, ratio in times)


def test_swish_variants_times_every_variant(smoke):
    out = ok(smoke["swish_variants"][0])
    rows = dict((m[0].strip(), m[1:]) for m in re.findall(
        r"^(\S+(?: \S+)?) +([\d.]+) +([\d.]+) +([\d.]+)$", out, re.MULTILINE))
    assert list(rows) == ["relu", "nn.Swish", "x*sigmoid(x)", "elemwise(Activation)", "fused"]
    assert all(finite(*map(float, row)) for row in rows.values())
    assert rows["relu"][2] == "1.00"


def test_bfloat16_measures_float32_and_names_what_this_cpu_lacks(smoke):
    done = smoke["bfloat16"][0]
    assert done.returncode == (0 if HAS_BF16 else 2), done.stderr[-2000:]
    assert re.search(r"^ +0.125 float32 +[\d.]+ +1.00$", done.stdout, re.MULTILINE)
    for variant, isa in (("bfloat16_avx512", precision.BF16_ISA),
                         ("bfloat16_amx", precision.AMX_ISA)):
        runs_here = precision.NEEDS[isa] <= cpu.flags()
        assert (f"{variant}: not available on this CPU" in done.stdout) != runs_here


@NEEDS_TORCH
def test_torch_vgg_prints_its_figures(smoke):
    result = json.loads(ok(smoke["torch_vgg"][0]))
    assert finite(result["train_img_per_s"], *result["by_memory_format"].values())
    assert set(result["by_memory_format"]) == {"nchw", "channels_last"}


def test_profile_step_tabulates_each_framework(smoke):
    done, tmp = smoke["profile_step"]
    out = ok(done)
    report = json.loads((tmp / "profile.json").read_text())
    assert [r["framework"] for r in report["results"]] == (["mxnet", "torch"] if HAS_TORCH
                                                           else ["mxnet"])
    for r in report["results"]:
        assert finite(r["step_ms"], r["verbose_step_ms"], r["profiler_step_ms"])
        assert r["onednn_isa"] and any(p["kind"] == "convolution" for p in r["primitives"])
        assert r["ops"] and all(math.isfinite(ms) for _, _, ms in r["ops"])
    assert out.count(" ms/step (median of 1 steps)") == len(report["results"])
    if HAS_TORCH:  # the per-layer table of both frameworks
        assert "### convolutions per layer shape" in out


def test_profile_step_bfloat16_runs_or_says_why_not(smoke):
    done = smoke["profile_step_bfloat16"][0]
    if HAS_BF16:
        assert "ms/step" in ok(done)
    else:
        assert done.returncode == 2 and "not available on this CPU: --dtype bfloat16" in \
            done.stdout, done.stderr[-2000:]


@NEEDS_TORCH
def test_vs_pytorch_prints_every_figure(smoke):
    done, tmp = smoke["vs_pytorch"]
    out = ok(done)
    report = json.loads((tmp / "vs.json").read_text())
    for isa, rounds in report["rounds"].items():
        for job in ("relu", "torch", "swish", "torch_silu"):
            assert finite(rounds[0][job]["train_img_per_s"]), (isa, job)
        assert f"ISA cap {isa}" in out
    for name, by_isa in report["figures"].items():
        for value in by_isa.values():
            # the GEMM fraction is nan only when the model beat the ceiling, which is then said
            assert finite(value) or ("GEMM ceiling" in name and "note [" in out), name


@NEEDS_TORCH
def test_vs_pytorch_bfloat16_runs_or_says_why_not(smoke):
    done = smoke["vs_pytorch_bfloat16"][0]
    if HAS_BF16:
        assert "ours bfloat16 / ours float32" in ok(done)
    else:
        assert done.returncode == 2, done.stderr[-2000:]
        assert "not available on this CPU: --dtype bfloat16" in done.stdout
