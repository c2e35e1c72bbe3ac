"""Activation blocks, by name.

Swish is x * sigmoid(x) (Ramachandran et al. 2017); Swish-beta is x * sigmoid(beta * x) with a
trainable scalar beta per layer, initialised to 1. Both use the fused operators of swish_op.py
when they could be built, else the same formula in Gluon ops. The names are spec.ACTIVATIONS.
"""
import mxnet as mx
from mxnet.gluon import nn

from train_cli.model import swish_op


def fused_allowed(device_type, dtype):
    """The one decision of which Swish to build for a run's devices and dtype (for `fused`).

    The fused operators have CPU kernels only: csrc/swish_lib.cc registers its forward and
    backward for "cpu" (MXNet 1.9.1's MXLoadLib gives a custom operator a GPU FComputeEx only
    when a "gpu" forward is registered, so on a GPU context the op has no kernel at all), and
    its InferType accepts float32 alone; under `--dtype bfloat16` amp casts its input to
    float32 and runs it there (training/precision.py). So: None (fused if it loads) on the CPU
    in float32 or bfloat16, False (the Gluon form, which runs anywhere, in any dtype) otherwise.
    """
    return None if device_type == "cpu" and dtype in ("float32", "bfloat16") else False


def _fused(wanted):
    """Use the fused operator? None: if it can be loaded; True: it must be; False: never."""
    if wanted is None:
        return swish_op.load()
    if wanted and not swish_op.load():
        raise RuntimeError(f"the fused Swish operator is unavailable: {swish_op.status()}")
    return wanted


class Swish(nn.HybridBlock):
    """x * sigmoid(x)."""

    def __init__(self, fused=None, **kwargs):
        super().__init__(**kwargs)
        self.fused = _fused(fused)

    def hybrid_forward(self, F, x):
        if self.fused:
            return F.fused_swish(x)
        # exact, without nn.Swish's multiply by beta=1: oneDNN's sigmoid and a plain
        # elementwise product (0.88-0.93x ReLU against nn.Swish's 0.92x on a loaded AVX2 EPYC,
        # so not ranked; docs/PERFORMANCE.md "Swish variants re-measured")
        return F.elemwise_mul(F.Activation(x, act_type="sigmoid"), x)


class SwishBeta(nn.HybridBlock):
    """x * sigmoid(beta * x) with a trainable scalar beta (initialised to 1).

    beta stays float32 when the network is cast to float16: it is one number, and its gradient
    is a sum over every element of the layer's output (millions), which float16 cannot hold.
    """

    def __init__(self, fused=None, **kwargs):
        super().__init__(**kwargs)
        self.fused = _fused(fused)
        self.compute_dtype = "float32"
        with self.name_scope():
            self.beta = self.params.get("beta", shape=(1,), init=mx.init.One())

    def cast(self, dtype):
        """Cast the block's computation to dtype; beta itself stays float32."""
        super().cast(dtype)
        self.beta.cast("float32")
        self.compute_dtype = str(dtype if isinstance(dtype, str) else mx.base.dtype_np_to_mx(dtype))

    def hybrid_forward(self, F, x, beta):
        if self.fused:
            return F.fused_swish_beta(x, beta)
        if self.compute_dtype != "float32":
            # beta * x and the sigmoid in float32, so the beta gradient sums in float32
            gate = F.sigmoid(F.broadcast_mul(F.cast(x, dtype="float32"), beta))
            return x * F.cast(gate, dtype=self.compute_dtype)
        # broadcast_mul's backward (the beta gradient) is a slow reduction in MXNet: this
        # fallback trains ~10x slower than the fused operator
        return x * F.sigmoid(F.broadcast_mul(x, beta))


# name -> factory(fused); the keys are spec.ACTIVATIONS, in its order (a test checks it)
BLOCKS = {
    "relu": lambda fused: nn.Activation("relu"),
    "swish": lambda fused: Swish(fused=fused),
    "swishbeta": lambda fused: SwishBeta(fused=fused),
    "elu": lambda fused: nn.ELU(),
    "selu": lambda fused: nn.SELU(),
    "gelu": lambda fused: nn.GELU(),
}


def make_activation(name, fused=None):
    """A fresh block for one of spec.ACTIVATIONS; fused: for the Swishes (see _fused)."""
    if name not in BLOCKS:
        raise ValueError(f"unknown activation {name!r}")
    return BLOCKS[name](fused)
