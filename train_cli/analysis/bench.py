"""`swishtrain bench`: how fast training runs here, and how close to the machine's ceiling.

Measures, in one process and after warm-up, each several times (median, min, max):
- train img/s: the optimiser step alone, on a batch already on the device;
- epoch img/s: the real training loop (data pipeline, augmentation, per-batch bookkeeping);
- eval img/s: exact evaluation at --eval-batch-size;
- data img/s: the shuffling + augmentation + normalisation pipeline alone (one thread);
- GEMM GFLOP/s, the practical compute ceiling of the devices trained on: on the CPU the best of
  MXNet's dot (OpenBLAS), FullyConnected (oneDNN) and numpy matmul on square float32 matrices;
  on GPUs MXNet's dot on the first GPU in the training dtype (float16: cuBLAS's SgemmEx, float16
  in and out with float32 accumulation), times the number of GPUs. Under --dtype bfloat16 the
  FullyConnected one runs in bfloat16 (amp casts it, as it casts the network's dense layers), so
  the ceiling is the bfloat16 one (AMX's where the CPU has it).
FLOPs per image are counted from the network's layer shapes (VGG.forward_flops): 2 per
multiply-add of the convolutions and dense layers (BatchNorm, activations and pooling are
memory-bound and left out), and training is 3x the forward pass (forward, gradient of the
inputs, gradient of the weights).
"""
import resource
import statistics
import time

import mxnet as mx
import numpy as np

from train_cli import runspec
from train_cli.data.cifar10 import Split
from train_cli.data.loader import Prefetcher, train_batches
from train_cli.model import swish_op
from train_cli.model.spec import uses_fused_op
from train_cli.model.vgg import count_params
from train_cli.training import precision
from train_cli.training.devices import acts_as_gpu, make_contexts
from train_cli.training.engine import Engine


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
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def gemm_backends(contexts, dtype="float32", n=2048):
    """{name: (call, devices)}: the GEMMs whose best rate is the ceiling for these devices."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n),
                                                                             dtype=np.float32)
    ctx = contexts[0]
    if acts_as_gpu(ctx):  # one GPU's GEMM in the training dtype, for each GPU
        ga, gb = (mx.nd.array(m, ctx=ctx, dtype=dtype) for m in (a, b))
        # FullyConnected runs in the math mode training's dense layers use (TF32 with --tf32);
        # dot never uses TF32 (dot_engine-inl.h:633 at 1.9.1)
        return {f"mxnet_dot_{dtype}_{ctx}": (lambda: mx.nd.dot(ga, gb).wait_to_read(),
                                             len(contexts)),
                f"mxnet_fullyconnected_{dtype}_{ctx}": (lambda: mx.nd.FullyConnected(
                    ga, gb, no_bias=True, num_hidden=n).wait_to_read(), len(contexts))}
    ma, mb = mx.nd.array(a), mx.nd.array(b)
    fc = "mxnet_fullyconnected_onednn" + ("_bfloat16" if dtype == "bfloat16" else "")
    return {
        "mxnet_dot_openblas": (lambda: mx.nd.dot(ma, mb).wait_to_read(), 1),
        fc: (lambda: mx.nd.FullyConnected(
            ma, mb, no_bias=True, num_hidden=n).wait_to_read(), 1),
        "numpy_matmul": (lambda: a @ b, 1),
    }


def gemm_gflops(contexts, dtype="float32", n=2048, repeats=5):
    """Best measured matrix-multiply GFLOP/s per backend (n x n times n x n), all devices."""
    return {name: devices * 2 * n ** 3 / min(timed(fn, repeats)) / 1e9
            for name, (fn, devices) in gemm_backends(contexts, dtype, n).items()}


def synthetic_split(n, seed=0):
    rng = np.random.default_rng(seed)
    return Split(rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8),
                 rng.integers(0, 10, size=n).astype(np.int32))


def run_bench(cfg, steps=10, repeats=3, warmup=2, sgemm_size=2048):
    """Measure one configuration; returns a JSON-ready dict."""
    contexts = make_contexts(cfg.gpus, cfg.cpu_devices, tf32=cfg.tf32)
    spec = runspec.one_process(cfg)
    precision.set_up(spec)
    engine = Engine(spec, contexts)
    batch = engine.global_batch
    split = synthetic_split(batch * steps)
    engine.trainer.set_learning_rate(1e-4)  # keep the weights sane over many benchmark steps

    def epoch_batches():  # the training loop's batches of one epoch
        return train_batches(split, batch, cfg.seed, 0, cfg.augment, shuffle=cfg.shuffle,
                             inputs=cfg.input_norm)

    first = next(epoch_batches())
    xs, ys = engine.load(first[0]), engine.load(first[1], cast=False)  # labels stay float32

    def train_steps():
        for _ in range(steps):
            engine.step(xs, ys)
        mx.nd.waitall()

    def train_epoch():
        with Prefetcher(epoch_batches()) as batches:
            engine.train_epoch(batches, 1e-4, cfg.seed, 0)

    def data_pipeline():
        for _ in epoch_batches():
            pass

    eval_split = synthetic_split(engine.eval_batch_size * 4, seed=1)
    images = batch * steps
    train = [images / t for t in timed(train_steps, repeats, warmup)]
    epoch = [images / t for t in timed(train_epoch, repeats, 1)]
    evaluation = [len(eval_split) / t
                  for t in timed(lambda: engine.evaluate(eval_split), repeats, 1)]
    data = [images / t for t in timed(data_pipeline, repeats, 1)]
    sgemm = gemm_gflops(contexts, cfg.dtype, sgemm_size)
    gflop_per_img = 3 * engine.net.forward_flops() / 1e9
    train_img_per_s = statistics.median(train)
    return {
        "model": cfg.model, "width": cfg.width, "parameters": count_params(cfg.model, cfg.width),
        "batch_size": batch, "eval_batch_size": engine.eval_batch_size, "dtype": cfg.dtype,
        "devices": [str(c) for c in contexts], "augment": cfg.augment,
        "swish": (swish_op.status() if uses_fused_op(cfg.model)
                  else "n/a"),
        "train_img_per_s": train_img_per_s, "epoch_img_per_s": statistics.median(epoch),
        "eval_img_per_s": statistics.median(evaluation),
        "data_img_per_s": statistics.median(data),
        "spread": {"train_img_per_s": spread(train), "epoch_img_per_s": spread(epoch),
                   "eval_img_per_s": spread(evaluation), "data_img_per_s": spread(data)},
        "gflop_per_img": gflop_per_img, "achieved_gflops": gflop_per_img * train_img_per_s,
        "sgemm_gflops": max(sgemm.values()), "sgemm_by_backend": sgemm,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "steps": steps, "repeats": repeats, "sgemm_size": sgemm_size,
    }


def format_report(r):
    """The table `swishtrain bench` prints."""
    lines = [f"{r['model']} (width {r['width']:g}, {r['parameters']:,} parameters), batch "
             f"{r['batch_size']} on {', '.join(r['devices'])}, {r.get('dtype', 'float32')}; "
             f"swish: {r['swish']}",
             f"{'':28}{'median':>10}{'min':>10}{'max':>10}"]
    labels = {"train_img_per_s": "train step img/s", "epoch_img_per_s": "epoch img/s (with data)",
              "eval_img_per_s": "eval img/s", "data_img_per_s": "data pipeline img/s"}
    for key, label in labels.items():
        s = r["spread"][key]
        lines.append(f"{label:28}{s['median']:10.1f}{s['min']:10.1f}{s['max']:10.1f}")
    lines += [
        f"{'GFLOP per image (train)':28}{r['gflop_per_img']:10.3f}",
        f"{'achieved GFLOP/s':28}{r['achieved_gflops']:10.1f}",
        f"{'GEMM ceiling GFLOP/s':28}{r['sgemm_gflops']:10.1f}   (best of "
        + ", ".join(f"{k} {v:.0f}" for k, v in r["sgemm_by_backend"].items()) + ")",
        f"{'fraction of ceiling':28}{r['achieved_gflops'] / r['sgemm_gflops']:10.2f}",
        f"{'epoch / train step':28}{r['epoch_img_per_s'] / r['train_img_per_s']:10.2f}",
        f"{'eval / train step':28}{r['eval_img_per_s'] / r['train_img_per_s']:10.2f}",
        f"{'peak RSS MB':28}{r['peak_rss_mb']:10.0f}",
    ]
    return "\n".join(lines)
