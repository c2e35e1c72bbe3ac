"""Checks of the arithmetic: a GPU's results against the CPU's float32 from the same weights.

Each returns a one-line detail with the figure it compared, or raises AssertionError (or says
SKIP: ...). Tolerances: float32 on a GPU is float32 (TF32 is off unless --tf32) but sums in
another order; float16 keeps a 10-bit mantissa.
"""
import numpy as np

from train_cli.gpu_check.common import context, float16_skip, gpu_ids, probe

FLOAT32_TOLERANCE = 1e-4  # largest relative difference from the CPU, losses and weights
FLOAT16_TOLERANCE = 2e-2
REFERENCE_STEPS = 3


def check_preflight(work):
    """The GPU preflight accepts every GPU here, its cuDNN, cuBLAS and NVRTC included."""
    from train_cli.training.gpus import preflight_gpus
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

    from train_cli.training.gpus import preflight_gpus
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
    from train_cli.analysis.harness import build_engine
    from train_cli.config import TrainConfig
    return build_engine(TrainConfig(model=model, width=0.25, dropout=0.0, dtype=dtype,
                                    batch_size=batch, gpus=(0,) if dtype == "float16" else (),
                                    lr=0.05), contexts)



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
    from train_cli.analysis.harness import build_engine
    from train_cli.config import TrainConfig
    from train_cli.mxnet_private import structural_params
    if len(gpu_ids()) < 2:
        return "SKIP: one GPU here"
    rng = np.random.default_rng(1)
    images = rng.normal(0, 1, (32, 3, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 10, 32).astype(np.float32)
    params = []
    for gpus, per_gpu in (((0,), 32), ((0, 1), 16)):
        cfg = TrainConfig(model="vgg11", width=0.25, dropout=0.0, gpus=gpus, batch_size=per_gpu)
        engine = build_engine(cfg, [context(g) for g in gpus])
        engine.step(engine.load(images), engine.load(labels, cast=False))
        params.append({k: p.list_data()[0].asnumpy()
                       for k, p in structural_params(engine.net).items()})
    worst = max(float(np.abs(params[0][k] - params[1][k]).max()) for k in params[0])
    assert worst < 1e-4, f"largest parameter difference {worst:g}"
    return f"largest parameter difference {worst:.2g}"
