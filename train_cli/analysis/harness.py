"""The one benchmark harness, shared by `swishtrain bench` and every script in benchmarks/.

A training step as the benchmarks time it: swishtrain's Engine (built by build_engine, the only
place analysis/ and benchmarks/ construct one) at learning rate 1e-4, one synthetic batch
already on the devices, warm-up calls, then timed steps, in img/s. Beside it, what a step's
GFLOP/s is judged against: the GEMM ceiling measured with the library the network's layers run
on, and the CPU's arithmetic peak (cores x clock x flop per cycle, train_cli.cpu).

FLOPs per image are counted from the network's layer shapes (VGG.forward_flops): 2 per
multiply-add of the convolutions and dense layers (BatchNorm, activations and pooling are
memory-bound and left out), and training is 3x the forward pass (forward, gradient of the
inputs, gradient of the weights).
"""
import os
import statistics
import time

import mxnet as mx
import numpy as np

from train_cli import cpu, threads
from train_cli.data.cifar10 import Split
from train_cli.data.loader import train_batches
from train_cli.training.devices import acts_as_gpu, make_contexts

LR = 1e-4  # small: the weights stay sane over any number of benchmark steps on one batch


def build_engine(cfg, contexts, loss_scale=None):
    """The Engine of cfg on contexts, in this process alone, that every benchmark, `swishtrain
    bench` and `evaluate` build (the one place they make one): its spec resolved, the process
    set up for its dtype first. loss_scale: float16's, if not a fresh one."""
    from train_cli import runspec
    from train_cli.training import precision
    from train_cli.training.engine import Engine
    spec = runspec.one_process(cfg)
    precision.set_up(spec)
    return Engine(spec, contexts, loss_scale=loss_scale)


def timed(fn, repeats, warmup=1):
    """Seconds of each of `repeats` calls of fn, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def spread(values):
    """Median, min and max of a list of figures."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def synthetic_split(n, seed=0):
    """n random CIFAR-shaped uint8 images with labels (no dataset needed)."""
    rng = np.random.default_rng(seed)
    return Split(rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8),
                 rng.integers(0, 10, size=n).astype(np.int32))


class TrainStep:
    """An Engine for cfg at lr 1e-4 with one synthetic training batch loaded on its devices."""

    def __init__(self, cfg, contexts=None):
        self.cfg = cfg
        self.contexts = contexts or make_contexts(cfg.gpus, cfg.cpu_devices, tf32=cfg.tf32)
        self.engine = build_engine(cfg, self.contexts)
        self.engine.trainer.set_learning_rate(LR)
        self.batch = self.engine.global_batch
        images, labels = next(train_batches(synthetic_split(self.batch), self.batch, cfg.seed, 0,
                                            cfg.augment, shuffle=cfg.shuffle,
                                            inputs=cfg.input_norm))
        # labels stay float32 whatever the dtype (as the training loop loads them)
        self.xs, self.ys = self.engine.load(images), self.engine.load(labels, cast=False)

    def run(self, steps=1):
        """`steps` optimiser steps on the batch, waited for."""
        for _ in range(steps):
            self.engine.step(self.xs, self.ys)
        mx.nd.waitall()

    def rates(self, steps, repeats, warmup):
        """img/s of each of `repeats` timings of `steps` steps, after `warmup` untimed ones."""
        return [self.batch * steps / t for t in timed(lambda: self.run(steps), repeats, warmup)]

    def gflop_per_img(self):
        """GFLOP of one training image (3x the forward pass's convolutions and dense layers)."""
        return 3 * self.engine.net.forward_flops() / 1e9


# ---------------------------------------------------------------------------------------------
# what a step's GFLOP/s is judged against

def ceiling_backend(contexts, dtype="float32"):
    """The name of the GEMM that is the ceiling: on the CPU oneDNN's inner product, the library
    (and JIT code generator) the convolutions run on, not OpenBLAS's `dot`, whose kernels may be
    narrower than oneDNN's on the same CPU (AVX2 against AVX-512 on AMD Zen 4); on GPUs None
    (the best of dot and FullyConnected)."""
    if acts_as_gpu(contexts[0]):
        return None
    return "mxnet_fullyconnected_onednn" + ("_bfloat16" if dtype == "bfloat16" else "")


def gemm_backends(contexts, dtype="float32", n=2048):
    """{name: (call, devices)}: the GEMMs measured beside the ceiling, the ceiling's among them.

    On the CPU, MXNet's FullyConnected is oneDNN's inner product (`x64:gemm:jit` in its verbose
    log); under --dtype bfloat16 amp casts it to bfloat16, as it casts the network's dense
    layers. On GPUs, one GPU's GEMMs in the training dtype, counted once per GPU."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    ctx = contexts[0]
    if acts_as_gpu(ctx):
        ga, gb = (mx.nd.array(m, ctx=ctx, dtype=dtype) for m in (a, b))
        # FullyConnected runs in the math mode training's dense layers use (TF32 with --tf32);
        # dot never uses TF32 (dot_engine-inl.h:633 at 1.9.1)
        return {f"mxnet_dot_{dtype}_{ctx}": (lambda: mx.nd.dot(ga, gb).wait_to_read(),
                                             len(contexts)),
                f"mxnet_fullyconnected_{dtype}_{ctx}": (lambda: mx.nd.FullyConnected(
                    ga, gb, no_bias=True, num_hidden=n).wait_to_read(), len(contexts))}
    ma, mb = mx.nd.array(a), mx.nd.array(b)
    return {
        ceiling_backend(contexts, dtype): (lambda: mx.nd.FullyConnected(
            ma, mb, no_bias=True, num_hidden=n).wait_to_read(), 1),
        "mxnet_dot_openblas": (lambda: mx.nd.dot(ma, mb).wait_to_read(), 1),
        "numpy_matmul": (lambda: a @ b, 1),
    }


def gemm_gflops(contexts, dtype="float32", n=2048, repeats=5):
    """Best measured matrix-multiply GFLOP/s per backend (n x n times n x n), all devices."""
    return {name: devices * 2 * n ** 3 / min(timed(fn, repeats)) / 1e9
            for name, (fn, devices) in gemm_backends(contexts, dtype, n).items()}


def gemm_ceiling(contexts, dtype="float32", n=2048, repeats=5):
    """(ceiling GFLOP/s, its backend, {backend: GFLOP/s}) for these devices and dtype."""
    by_backend = gemm_gflops(contexts, dtype, n, repeats)
    name = ceiling_backend(contexts, dtype) or max(by_backend, key=by_backend.get)
    return by_backend[name], name, by_backend


def machine_peak(contexts, dtype="float32", environ=os.environ):
    """The CPU's arithmetic peak for dtype (train_cli.cpu.peak_gflops, plus where the clock was
    read), over the cores the benchmark's threads run on; None on GPUs."""
    if acts_as_gpu(contexts[0]):
        return None
    omp = environ.get("OMP_NUM_THREADS", "")
    cores = threads.available_cores()
    if omp.isdigit() and int(omp) >= 1:  # MXNet's OpenMP team is no wider than this
        cores = min(cores, int(omp))
    ghz, source = cpu.clock()
    peak = cpu.peak_gflops(cpu.flags(), ghz, cores, dtype)
    peak["clock_source"] = source
    return peak


def judge(achieved, ceiling, peak):
    """{'fraction_of_ceiling', 'fraction_of_peak', 'notes'} of a model's achieved GFLOP/s.

    A fraction is None where its bound is none: a model above the GEMM ceiling (that GEMM is
    not the machine's fastest kernel), a ceiling or a model above the peak (the clock read is
    not the one the cores run at); a ratio would read as if the bound held. Each such case is
    one sentence in notes instead. peak None: unknown (GPUs, no clock)."""
    notes = []
    if peak and ceiling > peak:
        notes.append(f"the GEMM ceiling ({ceiling:.0f} GFLOP/s) is above the CPU's peak "
                     f"({peak:.0f}): the clock read is below the one the cores run at (turbo, "
                     "or a hypervisor's nominal clock), so that peak is no bound here")
    if peak and achieved > peak:
        notes.append(f"the model's {achieved:.0f} GFLOP/s are above the CPU's peak "
                     f"({peak:.0f}): the clock read is below the one the cores run at, or the "
                     "kernels compute fewer FLOPs than counted (e.g. Winograd convolutions)")
    if achieved > ceiling:
        notes.append(f"the model's {achieved:.0f} GFLOP/s are above the GEMM ceiling "
                     f"({ceiling:.0f}): that GEMM is not this machine's fastest kernel, so it "
                     "is no ceiling here")
    peak_holds = peak and ceiling <= peak and achieved <= peak
    return {"fraction_of_ceiling": achieved / ceiling if achieved <= ceiling else None,
            "fraction_of_peak": achieved / peak if peak_holds else None, "notes": notes}
