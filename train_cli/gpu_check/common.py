"""What every check uses: the GPUs here (or the CPU stand-in's), tiny data, the command."""
import subprocess
import sys

import numpy as np

TINY = ["--model", "vgg16_bn_swish", "--width", "0.25", "--batch-size", "32", "--lr", "0.05",
        "--lr-steps", "1", "--eval-batch-size", "64", "--seed", "3"]


def gpu_ids():
    """The GPUs CUDA sees here ([] without a CUDA build, its libraries or a driver; two under
    the CPU stand-in). Call startup.before_mxnet() first: a CUDA build needs it to import."""
    from train_cli.training.gpus import standin
    if standin():
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


def probe():
    """What the preflight asks: the machine's CUDA, or the CPU stand-in's answers."""
    from train_cli.training.gpus import CudaProbe, StandInProbe, standin
    return StandInProbe() if standin() else CudaProbe()


def context(gpu):
    """GPU `gpu`'s MXNet context (the CPU stand-in's under SWISHTRAIN_GPU_STANDIN=1)."""
    return probe().context(gpu)


def float16_skip():
    """Why float16 cannot be checked here, or None (the CPU stand-in has no float16 kernels)."""
    from train_cli.training.gpus import standin
    return "SKIP: float16 needs a real GPU (MXNet's CPU has no float16 GEMM)" if standin() else None
