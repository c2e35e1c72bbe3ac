"""`--dtype bfloat16`: who may use it, how the process is set up, and runs that train and resume.

bfloat16 is process-wide in MXNet (amp wraps mx.sym/mx.nd; oneDNN fixes its ISA at its first
primitive), so every run that trains in bfloat16 is a subprocess here. Those runs need a CPU with
AMX or AVX512_BF16 and are skipped elsewhere; what a CPU without it gets is checked on the
machine that has none (and by the decision functions on given flags, everywhere).
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

from train_cli import cpu
from train_cli.config import TrainConfig
from train_cli.errors import UsageError, UserError
from train_cli.runfolder import best_row, read_metrics
from train_cli.runspec.rules import check_options, warnings
from train_cli.training import precision

from helpers import TINY, write_cifar

THIS_CPU = precision.bfloat16_isa(cpu.flags())  # what the flags say


def _usable():
    """The ISA cap bfloat16 runs get here, or None (no support, or Linux refuses AMX)."""
    try:
        return precision.check("bfloat16")  # asks for AMX: harmless, this process's permission
    except UserError:
        return None


USABLE = _usable()
needs_bfloat16 = pytest.mark.skipif(USABLE is None, reason="this machine cannot run bfloat16")
HAS_COMPILER = bool(shutil.which(os.environ.get("CXX", "g++")))

ARGS = ["--model", "vgg11_bn_swish", "--width", "0.25", "--batch-size", "20", "--lr", "0.05",
        "--lr-steps", "2", "--eval-batch-size", "50", "--seed", "5", "--val-split", "40",
        "--dtype", "bfloat16"]


@pytest.mark.parametrize("flags, isa", [
    ({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, "AVX512_CORE_AMX"),
    ({"avx2", "avx512f", "avx512_bf16"}, "AVX512_CORE_BF16"),
    ({"avx2", "amx_bf16"}, None),  # AMX's bfloat16 without its tile registers is no AMX
    ({"avx2", "fma"}, None),
])
def test_which_cpus_run_bfloat16_and_on_which_onednn_isa(flags, isa):
    assert precision.bfloat16_isa(flags) == isa


def test_a_cpu_without_bfloat16_gets_the_flags_it_lacks_and_the_fix():
    assert precision.check("float32", flags={"avx2"}) is None  # nothing to check
    assert precision.check("bfloat16", flags={"avx512_bf16"}, environ={}) == "AVX512_CORE_BF16"
    # a user's cap wins (and then nothing asks Linux for AMX)
    assert precision.check("bfloat16", flags={"amx_bf16", "amx_tile"},
                           environ={"DNNL_MAX_CPU_ISA": "AVX512_CORE_BF16"}) == "AVX512_CORE_BF16"
    with pytest.raises(UserError) as e:
        precision.check("bfloat16", flags={"avx2", "fma", "avx512f"})
    message = str(e.value)
    assert "amx_bf16" in message and "avx512_bf16" in message and "\n" not in message
    assert "train with --dtype float32 (a bfloat16 run resumes only on such a CPU)" in message


def test_cpu_flags_and_model_are_read_as_lscpu_shows_them(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU @ 2GHz\n"
                       "flags\t\t: fpu avx2 amx_bf16 amx_tile\nbugs\t: x\n")
    assert cpu.flags(cpuinfo) == {"fpu", "avx2", "amx_bf16", "amx_tile"}
    assert cpu.model(cpuinfo) == "Some CPU @ 2GHz"
    assert cpu.flags(tmp_path / "missing") == set()


def enable_in_a_subprocess(code, env=None):
    """Run precision.enable in a fresh process (amp would stay on in this one); (stdout, stderr)."""
    script = ("from train_cli import threads; threads.configure()\n"
              "from train_cli.training import precision\n" + code)
    env = {k: v for k, v in os.environ.items() if k != "DNNL_MAX_CPU_ISA"} | (env or {})
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr


def test_a_cpu_with_avx512_bf16_but_no_amx_runs_without_amx_and_is_warned():
    """(No kernel runs, so this works on any CPU: the flags are given.)"""
    out, err = enable_in_a_subprocess(
        "import os; from train_cli import mxnet_private\n"
        "precision.enable('bfloat16', flags={'avx512_bf16', 'avx512f'})\n"
        "print(os.environ['DNNL_MAX_CPU_ISA'], mxnet_private.amp_initialized())")
    assert out.split() == ["AVX512_CORE_BF16", "True"]
    assert "no AMX in use" in err and "0.74-0.81x float32" in err


def test_a_users_cap_below_bfloat16_is_kept_and_warned_about():
    out, err = enable_in_a_subprocess(
        "import os\nprecision.enable('bfloat16', flags={'amx_bf16', 'amx_tile'})\n"
        "print(os.environ['DNNL_MAX_CPU_ISA'])", env={"DNNL_MAX_CPU_ISA": "AVX2"})
    assert out.split() == ["AVX2"]
    assert "DNNL_MAX_CPU_ISA='AVX2' is set, so oneDNN uses at most what it names" in err
    assert "unset it to let swishtrain choose AVX512_CORE_AMX" in err


@pytest.mark.skipif(not HAS_COMPILER, reason="no C++ compiler")
def test_the_swish_library_loads_before_amp_and_never_after_it():
    """Loading an operator library after amp.init would silently undo amp: enable() loads it
    first (and has amp run it in float32); a later load refuses and says why."""
    out, _ = enable_in_a_subprocess(
        "from train_cli.model import swish_op\n"
        "precision.enable('bfloat16', fused_swish=True, flags={'avx512_bf16'})\n"
        "print(swish_op.load(), swish_op.loaded())")
    assert out.split() == ["True", "True"]
    out, err = enable_in_a_subprocess(
        "from train_cli.model import swish_op\n"
        "precision.enable('bfloat16', flags={'avx512_bf16'})\n"
        "print(swish_op.load(), swish_op.loaded())")
    assert out.split() == ["False", "False"]
    assert "bfloat16 was set up in this process before the library was loaded" in err


def test_bfloat16_keeps_float32_parameters_and_inputs():
    assert precision.storage_dtype("bfloat16") == "float32"
    assert precision.storage_dtype("float16") == "float16"
    assert precision.storage_dtype("float32") == "float32"


def test_bfloat16_is_for_the_cpu_and_float16_points_cpu_users_to_it():
    with pytest.raises(UsageError, match="bfloat16 runs on the CPU only.*--dtype float16"):
        check_options(TrainConfig(dtype="bfloat16", gpus=(0,)))
    with pytest.raises(UsageError, match="float16 needs --gpus.*--dtype bfloat16"):
        check_options(TrainConfig(dtype="float16"))
    check_options(TrainConfig(dtype="bfloat16", kvstore="dist_async"))  # float32 weights on servers


@pytest.mark.parametrize("model, width, odd", [
    ("vgg16_bn", 0.25, "16"), ("vgg16_bn", 0.75, "48"), ("vgg16_bn_gelu", 0.25, "16"),
    ("vgg16_bn", 0.5, None), ("vgg16_bn", 1.0, None),
    ("vgg16_bn_swish", 0.25, None), ("vgg16", 0.25, None)])
def test_bfloat16_warns_where_it_was_measured_slower(model, width, odd):
    """Measured against float32: vgg16_bn 0.46x at width 0.25, 0.54x at 0.75, 1.59x at 0.5;
    vgg16_bn_gelu 0.46x at 0.25; but vgg16_bn_swish 1.09x at 0.25 and vgg16 1.26x."""
    said = warnings(TrainConfig(model=model, dtype="bfloat16", width=width, epochs=40))
    if odd:
        assert len(said) == 1 and f"layers of {odd} channels" in said[0] and "slower" in said[0]
    else:
        assert said == []
    assert warnings(TrainConfig(model=model, dtype="float32", width=width, epochs=40)) == []


def test_one_process_cannot_switch_between_float32_and_bfloat16():
    precision.enable("float32")  # what every float32 engine in this test process did
    before = dict(os.environ)
    with pytest.raises(UserError, match="needs a process of its own"):
        precision.enable("bfloat16", flags={"amx_bf16", "amx_tile"})
    assert dict(os.environ) == before  # refused before it touched anything
    from mxnet.contrib.amp import amp
    assert not amp._amp_initialized


def swishtrain(*args, env=None):
    return subprocess.run([sys.executable, "-m", "train_cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_cifar(tmp_path_factory.mktemp("cifar"), per_batch=40, test=30)


def without_bfloat16(tmp_path):
    """A command prefix under which /proc/cpuinfo shows no AMX or AVX512_BF16: a private mount
    namespace with an edited copy bind-mounted over it (this machine's own is untouched). Empty
    where this CPU has none anyway; the test is skipped where namespaces are not allowed."""
    if THIS_CPU is None:
        return []
    if not shutil.which("unshare"):
        pytest.skip("no unshare(1) here to simulate a CPU without bfloat16")
    fake = tmp_path / "cpuinfo"
    fake.write_text("".join(
        " ".join(f for f in line.split(" ") if f.strip() not in ("amx_bf16", "amx_tile",
                                                                  "avx512_bf16")) + "\n"
        if line.startswith("flags") else line
        for line in Path("/proc/cpuinfo").read_text().splitlines(keepends=True)))
    probe = subprocess.run(["unshare", "--mount", "--", "sh", "-c",
                            f"mount --bind {fake} /proc/cpuinfo"], capture_output=True)
    if probe.returncode:
        pytest.skip(f"no private mount namespace here: {probe.stderr.decode().strip()}")
    return ["unshare", "--mount", "--", "sh", "-c",
            f'mount --bind {fake} /proc/cpuinfo && exec "$@"', "sh"]


def test_on_a_cpu_without_bfloat16_the_run_stops_before_it_starts(data_dir, tmp_path, run_cli):
    """Before anything slow or lasting: no run or study folder is made, no data is read (the
    data folder given does not exist, which a later check would report instead), a resumed run's
    checkpoint is not loaded."""
    prefix = without_bfloat16(tmp_path)

    def swishtrain_here(*args):
        return subprocess.run([*prefix, sys.executable, "-m", "train_cli", *map(str, args)],
                              capture_output=True, text=True, timeout=120)

    missing = tmp_path / "no-data-here"
    started = tmp_path / "started"  # a float32 run, relabelled as a bfloat16 one
    assert run_cli("--data-dir", data_dir, "--run-dir", started, *TINY, "--epochs", 1
                   ).exit_code == 0
    saved = json.loads((started / "config.json").read_text())
    saved["config"].update(dtype="bfloat16")
    (started / "config.json").write_text(json.dumps(saved))
    (started / "last.ckpt").write_bytes(b"not read")  # a read would fail differently
    for args in (["--data-dir", missing, "--run-dir", tmp_path / "run", *TINY],
                 ["--data-dir", missing, "--run-dir", tmp_path / "run", *TINY, "--seeds", "1,2"],
                 ["resume", started, "--data-dir", missing]):
        done = swishtrain_here(*args, *([] if args[0] == "resume" else ["--dtype", "bfloat16"]))
        assert done.returncode == 1, done.stderr
        assert done.stderr.strip().splitlines()[-1].startswith(
            "Error: --dtype bfloat16 needs a CPU with AMX"), done.stderr
        assert "Traceback" not in done.stderr and not (tmp_path / "run").exists()


@needs_bfloat16
def test_a_bfloat16_run_uses_the_cpus_bfloat16_kernels(data_dir, tmp_path):
    """oneDNN's log: every convolution runs in bfloat16, on AMX where the CPU has it (the ISA
    must be set before oneDNN's first primitive, which this end-to-end run would catch)."""
    done = swishtrain("--data-dir", data_dir, "--run-dir", tmp_path / "run", *ARGS,
                      "--epochs", "1", env={"MKLDNN_VERBOSE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    convs = [line for line in done.stdout.splitlines()
             if line.startswith("dnnl_verbose,exec,cpu,convolution")]
    assert convs and all("src_bf16" in line for line in convs)
    kernels = {line.split(",")[4] for line in convs}
    if HAS_COMPILER:  # the fused Swish ran (in float32): the Gluon form shows oneDNN's sigmoid
        assert "eltwise_logistic" not in done.stdout and "eltwise_relu" not in done.stdout
    if USABLE == precision.AMX_ISA:
        assert any("amx_bf16" in k for k in kernels), kernels
    assert "batch 20, bfloat16" in done.stdout
    config = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert config["dtype"] == "bfloat16"


@pytest.fixture(scope="module")
def straight(data_dir, tmp_path_factory):
    """A 3-epoch bfloat16 run."""
    run = tmp_path_factory.mktemp("bf16") / "straight"
    done = swishtrain("--data-dir", data_dir, "--run-dir", run, *ARGS, "--epochs", 3)
    assert done.returncode == 0, done.stderr[-2000:]
    return run


@needs_bfloat16
def test_a_resumed_bfloat16_run_equals_one_that_ran_straight(data_dir, tmp_path, straight):
    """Same metrics and bit-identical float32 parameters and momentum: the master weights and
    the optimiser state are float32 in the checkpoint, and the bfloat16 kernels deterministic."""
    split = tmp_path / "split"
    done = swishtrain("--data-dir", data_dir, "--run-dir", split, *ARGS, "--epochs", 2)
    assert done.returncode == 0, done.stderr[-2000:]
    done = swishtrain("resume", split, "--epochs", 3)
    assert done.returncode == 0, done.stderr[-2000:]
    keys = ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc"]
    a, b = read_metrics(split / "metrics.csv"), read_metrics(straight / "metrics.csv")
    assert [[r[k] for k in keys] for r in a] == [[r[k] for k in keys] for r in b]
    assert len(a) == 3
    pa, pb = mx.nd.load(str(split / "last.ckpt")), mx.nd.load(str(straight / "last.ckpt"))
    assert pa.keys() == pb.keys()
    for key in pa:
        if key != "meta":  # meta holds timings
            assert pa[key].dtype == np.float32, key
            np.testing.assert_array_equal(pa[key].asnumpy(), pb[key].asnumpy(), err_msg=key)


@needs_bfloat16
def test_a_bfloat16_run_is_evaluated_in_float32(run_cli, straight):
    """Any CPU can evaluate it (float32 weights, no amp in this process): the loss of the best
    epoch's weights on the validation split is the run's own, up to bfloat16 rounding in the
    run (a wrong set of weights would be far off)."""
    row = best_row(read_metrics(straight / "metrics.csv"))
    result = run_cli("evaluate", straight, "--split", "val")
    assert result.exit_code == 0, result.output
    assert "float32 on cpu(0)" in result.stdout
    loss = float(result.stdout.split("(loss ")[1].split(";")[0])
    assert loss == pytest.approx(float(row["val_loss"]), rel=0.02)
