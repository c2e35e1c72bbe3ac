"""`make gpu-check`: what no machine of this project can run, checked by a person on a GPU.

Prints one PASS/FAIL/SKIP line per check, each with the figure it compared, and exits 1 if any
failed; on a machine without an NVIDIA GPU it says so in one line and exits 2. The checks prove
results, not only that things run: the first steps of each Swish network against the CPU in
float32 from the same weights, the headline command on 2 GPUs killed and resumed, float16
resumed and with an overflow forced, `launch` with GPUs, evaluation on the CPU.

tests/gpu/ runs the same checks under pytest: on a GPU, or else on the CPU stand-in
(SWISHTRAIN_GPU_STANDIN=1: two GPUs played by CPU contexts; the float16 checks skip there, as
MXNet's CPU has no float16 kernels), which proves the checks themselves. Every check uses tiny
synthetic CIFAR-10 files in a temporary folder, so no data set is needed.

    python -m train_cli.gpu_check [--keep DIR]
"""
import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from train_cli.startup import before_mxnet

# the headline network, small, on small data, so each check takes seconds on any GPU
TINY = ["--model", "vgg16_bn_swish", "--width", "0.25", "--batch-size", "32", "--lr", "0.05",
        "--lr-steps", "1", "--eval-batch-size", "64", "--seed", "3"]


def gpu_ids():
    """The GPUs CUDA sees here ([] without a CUDA build, its libraries or a driver; two under
    the CPU stand-in). Call startup.before_mxnet() first: a CUDA build needs it to import."""
    from train_cli.training.devices import STANDIN_ENV
    if os.environ.get(STANDIN_ENV) == "1":
        return [0, 1]
    try:
        import mxnet as mx
    except (ImportError, OSError):  # no mxnet, or a CUDA build missing a library
        return []
    try:
        return list(range(mx.context.num_gpus()))
    except mx.base.MXNetError:  # CUDA cannot start: no driver, no device
        return []


def write_tiny_cifar(folder, per_batch=64, test=64):
    """CIFAR-10 binary batches of learnable synthetic images (a class-dependent colour)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", test)]:
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = (labels[:, None] * 25 + rng.normal(0, 20, (n, 3072))).clip(0, 255)
        np.concatenate([labels[:, None], images.astype(np.uint8)], axis=1).tofile(
            folder / f"{name}.bin")
    return folder


def swishtrain(*args, wait=True):
    """Run the swishtrain command in a fresh process (as a user would)."""
    cmd = [sys.executable, "-m", "train_cli", *map(str, args)]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, capture_output=True, text=True)


# -----------------------------------------------------------------------------
# The checks: each returns a one-line detail with the figure it compared, or raises
# AssertionError (or says SKIP: ...). Tolerances: float32 on a GPU is float32 (TF32 is off
# unless --tf32) but sums in another order; float16 keeps a 10-bit mantissa.
FLOAT32_TOLERANCE = 1e-4  # largest relative difference from the CPU, losses and weights
FLOAT16_TOLERANCE = 2e-2
REFERENCE_STEPS = 3


def probe():
    """What the preflight asks: the machine's CUDA, or the CPU stand-in's answers."""
    from train_cli.training.devices import CudaProbe, StandInProbe, standin
    return StandInProbe() if standin() else CudaProbe()


def context(gpu):
    """GPU `gpu`'s MXNet context (the CPU stand-in's under SWISHTRAIN_GPU_STANDIN=1)."""
    return probe().context(gpu)


def float16_skip():
    """Why float16 cannot be checked here, or None (the CPU stand-in has no float16 kernels)."""
    from train_cli.training.devices import standin
    return "SKIP: float16 needs a real GPU (MXNet's CPU has no float16 GEMM)" if standin() else None


def check_preflight(work):
    """The GPU preflight accepts every GPU here, its cuDNN, cuBLAS and NVRTC included."""
    from train_cli.training.devices import preflight_gpus
    ids, asked = gpu_ids(), probe()
    preflight_gpus(ids, asked)
    return ", ".join(f"GPU {g}: {asked.name(g)} ({'.'.join(map(str, asked.capability(g)))})"
                     for g in ids)


def check_float32_is_float32(work):
    """Training's float32 products on GPU 0 are float32's (TF32 off by default): a dense layer
    (cuBLAS in TF32 math mode, linalg_impl.h:209) and a convolution (cuDNN's default math,
    cudnn_convolution-inl.h:424), against float64. mx.nd.dot would prove nothing: it never
    uses TF32 (dot_engine-inl.h:633)."""
    import mxnet as mx

    from train_cli.training.devices import preflight_gpus
    preflight_gpus([0], probe())  # sets NVIDIA_TF32_OVERRIDE=0 before cuBLAS is first used
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((512, 512)), rng.standard_normal((512, 512))
    x, w = rng.standard_normal((8, 64, 16, 16)), rng.standard_normal((64, 64, 3, 3))
    ctx = context(0)
    dense = mx.nd.FullyConnected(mx.nd.array(a, ctx=ctx), mx.nd.array(b, ctx=ctx),
                                 num_hidden=512, no_bias=True).asnumpy()
    conv = mx.nd.Convolution(mx.nd.array(x, ctx=ctx), mx.nd.array(w, ctx=ctx), kernel=(3, 3),
                             num_filter=64, no_bias=True).asnumpy()
    exact_conv = mx.nd.Convolution(mx.nd.array(x, dtype="float64"),
                                   mx.nd.array(w, dtype="float64"), kernel=(3, 3),
                                   num_filter=64, no_bias=True).asnumpy()
    errors = {"dense": _relative(dense, a @ b.T), "convolution": _relative(conv, exact_conv)}
    worst = max(errors.values())
    assert worst < 1e-5, f"relative errors {errors}: TF32 (~1e-3), not float32 (~1e-7)"
    return ("relative error against float64: "
            + ", ".join(f"{k} {v:.2g}" for k, v in errors.items()))


def _engine(model, dtype, contexts, batch):
    from train_cli.config import TrainConfig
    from train_cli.training.engine import Engine
    cfg = TrainConfig(model=model, width=0.25, dropout=0.0, dtype=dtype, batch_size=batch,
                      gpus=(0,) if dtype == "float16" else (), lr=0.05)
    return Engine(cfg, contexts)


def _weights(engine):
    from train_cli.mxnet_private import structural_params
    return {k: p.list_data()[0].asnumpy().astype(np.float64)
            for k, p in structural_params(engine.net).items()}


def _relative(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def compare_with_cpu(model, dtype):
    """REFERENCE_STEPS training steps on GPU 0 against the CPU in float32 from the same
    weights and batch: the largest relative difference of the losses, and the relative
    difference (L2) of all the weights afterwards."""
    import mxnet as mx

    from train_cli.mxnet_private import structural_params
    from train_cli.training.loss_scale import DynamicLossScale
    rng = np.random.default_rng(0)
    images = rng.normal(0, 1, (32, 3, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 10, 32).astype(np.float32)
    reference = _engine(model, "float32", [mx.cpu()], 32)
    gpu = _engine(model, dtype, [context(0)], 32)
    if dtype == "float16":  # a scale that never overflows here, so no step is skipped
        gpu.loss_scale = DynamicLossScale(scale=8.0)
    for name, p in structural_params(gpu.net).items():  # the CPU's initial weights
        p.set_data(structural_params(reference.net)[name].data().astype(p.dtype))
    losses = []
    for _ in range(REFERENCE_STEPS):
        pair = []
        for engine in (reference, gpu):
            stats = engine.step(engine.load(images), engine.load(labels, cast=False)).asnumpy()
            assert len(stats) < 3 or stats[2] == 0, "a float16 step was skipped"
            pair.append(stats[0])
        losses.append(_relative(pair[1], pair[0]))
    # all weights as one vector: a bias before BatchNorm has no gradient, only rounding noise
    want, got = _weights(reference), _weights(gpu)
    want, got = (np.concatenate([w[k].ravel() for k in sorted(want)]) for w in (want, got))
    return max(losses), float(np.linalg.norm(got - want) / np.linalg.norm(want))


def make_step_check(model, dtype):
    def check(work):
        if dtype == "float16" and float16_skip():
            return float16_skip()
        tolerance = FLOAT16_TOLERANCE if dtype == "float16" else FLOAT32_TOLERANCE
        loss, weights = compare_with_cpu(model, dtype)
        assert loss < tolerance and weights < tolerance, \
            f"loss differs by {loss:.2g}, weights by {weights:.2g} (tolerance {tolerance:g})"
        return (f"{REFERENCE_STEPS} steps from the CPU's weights: losses within {loss:.2g}, "
                f"weights (L2) within {weights:.2g} of the CPU's float32 (tolerance "
                f"{tolerance:g})")
    check.__name__ = f"check_steps_{model}_{dtype}"
    check.__doc__ = f"First steps of {model} in {dtype} on GPU 0 match the CPU in float32."
    return check


def check_float16_overflow_is_skipped(work):
    """A float16 step whose scaled gradients overflow is skipped, the scale halved, no weight
    touched; the next step at a smaller scale is applied."""
    if float16_skip():
        return float16_skip()
    from train_cli.training.loss_scale import DynamicLossScale
    engine = _engine("vgg16_bn_swish", "float16", [context(0)], 32)
    engine.loss_scale = DynamicLossScale(scale=2.0 ** 30)  # 2^30 x a loss of ~70 > 65504
    rng = np.random.default_rng(2)
    images = rng.normal(0, 1, (32, 3, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 10, 32).astype(np.float32)
    before = _weights(engine)
    stats = engine.step(engine.load(images), engine.load(labels, cast=False)).asnumpy()
    assert stats[2] == 1 and engine.loss_scale.scale == 2.0 ** 29, "the overflow was not seen"
    unchanged = all(np.array_equal(before[k], w) for k, w in _weights(engine).items()
                    if "running" not in k)
    assert unchanged, "a skipped step changed weights"
    engine.loss_scale.scale = 8.0
    stats = engine.step(engine.load(images), engine.load(labels, cast=False)).asnumpy()
    assert stats[2] == 0, "a step at scale 8 was skipped"
    return "skipped at scale 2^30 (weights untouched, scale halved), applied at scale 8"


def check_one_vs_two_gpus(work):
    """1 GPU and 2 GPUs on the same global batch make the same update (vgg11, no BN/dropout)."""
    from train_cli.config import TrainConfig
    from train_cli.mxnet_private import structural_params
    from train_cli.training.engine import Engine
    if len(gpu_ids()) < 2:
        return "SKIP: one GPU here"
    rng = np.random.default_rng(1)
    images = rng.normal(0, 1, (32, 3, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 10, 32).astype(np.float32)
    params = []
    for gpus, per_gpu in (((0,), 32), ((0, 1), 16)):
        cfg = TrainConfig(model="vgg11", width=0.25, dropout=0.0, gpus=gpus, batch_size=per_gpu)
        engine = Engine(cfg, [context(g) for g in gpus])
        engine.step(engine.load(images), engine.load(labels, cast=False))
        params.append({k: p.list_data()[0].asnumpy()
                       for k, p in structural_params(engine.net).items()})
    worst = max(float(np.abs(params[0][k] - params[1][k]).max()) for k in params[0])
    assert worst < 1e-4, f"largest parameter difference {worst:g}"
    return f"largest parameter difference {worst:.2g}"


def _metrics(run):
    rows = (run / "metrics.csv").read_text().splitlines()
    return [[float(x) for x in row.split(",")[2:6]] for row in rows[1:]]


def _same_run(a, b):
    """'bit-identical' or the largest difference of two runs' losses and accuracies."""
    x, y = _metrics(a), _metrics(b)
    assert len(x) == len(y), f"{len(x)} against {len(y)} epochs"
    if x == y:
        return 0.0
    return max(abs(u - v) for r, s in zip(x, y) for u, v in zip(r, s))


def _headline(work, dtype):
    """The headline command on GPUs 0,1 (or 0) for 2 epochs: straight, and killed during
    epoch 2 then resumed (float16: stopped after epoch 1 and extended). Returns the difference."""
    gpus = "0,1" if len(gpu_ids()) > 1 else "0"
    data = write_tiny_cifar(work / "cifar")
    args = ["--data-dir", data, "--gpus", gpus, "--dtype", dtype, *TINY]
    straight, other = work / f"headline-{dtype}", work / f"headline-{dtype}-resumed"
    done = swishtrain(*args, "--run-dir", straight, "--epochs", 2)
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1:]
    if dtype == "float16":  # extend a finished run: the loss scale's state must carry over
        done = swishtrain(*args, "--run-dir", other, "--epochs", 1)
        assert done.returncode == 0, done.stderr.strip().splitlines()[-1:]
    else:  # killed while epoch 2 runs (its first checkpoint is written)
        proc = swishtrain(*args, "--run-dir", other, "--epochs", 2, wait=False)
        deadline = time.time() + 600
        while not (other / "metrics.csv").exists() and time.time() < deadline:
            assert proc.poll() is None, proc.communicate()[1][-500:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = swishtrain("resume", other, "--epochs", 2)
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1:]
    diff = _same_run(straight, other)
    assert diff < 1e-3, f"losses/accuracies differ by {diff:g}"
    return f"on GPUs {gpus}: " + ("bit-identical metrics" if diff == 0 else
                                  f"metrics within {diff:.2g} (cuDNN's atomic sums)")


def check_headline_killed_and_resumed(work):
    """`swishtrain --model vgg16_bn_swish --gpus 0,1` for 2 epochs, killed in epoch 2 and
    resumed, ends like one never killed."""
    return _headline(work, "float32")


def check_headline_float16_resumed(work):
    """The same in float16 on GPUs 0,1, stopped after epoch 1 and extended to 2."""
    return float16_skip() or _headline(work, "float16")


def check_launch_with_gpus(work):
    """`swishtrain launch -n 2 -- --gpus 0,1`: one GPU per worker, identical replicas."""
    if len(gpu_ids()) < 2:
        return "SKIP: one GPU here"
    data = write_tiny_cifar(work / "cifar")
    done = subprocess.run([sys.executable, "-m", "train_cli", "launch", "-n", "2", "--timeout",
                           "300", "--", "--data-dir", str(data), "--run-dir",
                           str(work / "launched"), "--gpus", "0,1", "--epochs", "1", *TINY],
                          capture_output=True, text=True, timeout=900)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out.strip().splitlines()[-1:]
    digests = {line.split()[-1] for line in out.splitlines() if "parameters sha1:" in line}
    assert len(digests) == 1, f"the workers' parameters differ: {sorted(digests)}"
    return f"2 workers, one GPU each, parameters sha1 {digests.pop()[:12]} on both"


def check_evaluate_on_cpu(work):
    """The GPU run's weights evaluate on the CPU to the accuracy the run recorded."""
    run = work / "headline-float32"
    if not (run / "summary.json").exists():
        check_headline_killed_and_resumed(work)
    summary = json.loads((run / "summary.json").read_text())
    done = swishtrain("evaluate", run, "--split", "test")
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1:]
    accuracy = float(done.stdout.split("accuracy of best.params: ")[1].split()[0])
    assert abs(accuracy - summary["best_val_acc"]) <= 1 / 64 + 1e-9, \
        f"CPU {accuracy} vs GPU {summary['best_val_acc']}"
    return f"CPU {accuracy:.4f}, recorded on the GPU {summary['best_val_acc']:.4f}"


CHECKS = [check_preflight, check_float32_is_float32] + \
    [make_step_check(m, d) for d in ("float32", "float16")
     for m in ("vgg16_bn", "vgg16_bn_swish", "vgg16_bn_swishbeta")] + \
    [check_float16_overflow_is_skipped, check_one_vs_two_gpus,
     check_headline_killed_and_resumed, check_headline_float16_resumed, check_launch_with_gpus,
     check_evaluate_on_cpu]


@dataclasses.dataclass
class Outcome:
    name: str
    status: str  # PASS | FAIL | SKIP
    detail: str

    def line(self):
        return f"{self.status:4}  {self.name}: {self.detail}"


def run_check(check, work):
    """Run one check; its PASS/FAIL/SKIP outcome."""
    try:
        detail = check(work) or ""
    except Exception as e:  # a failing check must not hide the ones after it
        return Outcome(check.__name__, "FAIL", f"{type(e).__name__}: {e}".splitlines()[0])
    if detail.startswith("SKIP: "):
        return Outcome(check.__name__, "SKIP", detail[6:])
    return Outcome(check.__name__, "PASS", detail)


def main(argv=None):
    """Run every check; exit 0 if all passed, 1 if one failed, 2 without a GPU."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="keep the run folders in this folder")
    args = parser.parse_args(argv)
    before_mxnet()
    if not gpu_ids():
        print("gpu-check: no NVIDIA GPU visible to MXNet here (no CUDA build, driver or GPU); "
              "run it on a machine with one", file=sys.stderr)
        return 2
    import mxnet as mx

    from train_cli.training.devices import standin
    print(f"mxnet {mx.__version__}, CUDA build: {mx.runtime.Features().is_enabled('CUDA')}, "
          f"GPUs: {len(gpu_ids())}" + (" (CPU stand-ins: the checks' code, not a GPU's "
                                       "arithmetic)" if standin() else ""))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        outcomes = []
        for check in CHECKS:
            outcomes.append(run_check(check, work))
            print(outcomes[-1].line(), flush=True)
    failed = [o for o in outcomes if o.status == "FAIL"]
    print(f"{sum(o.status == 'PASS' for o in outcomes)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
