"""Activation blocks, by name.

Swish is x * sigmoid(x) (Ramachandran et al. 2017); Swish-beta is x * sigmoid(beta * x) with a
trainable scalar beta per layer, initialised to 1.
"""
import mxnet as mx
from mxnet.gluon import nn

ACTIVATIONS = ("relu", "swish", "swishbeta", "elu", "selu", "gelu")
_GLUON = {"elu": nn.ELU, "selu": nn.SELU, "gelu": nn.GELU}


class Swish(nn.HybridBlock):
    """x * sigmoid(x); skips nn.Swish's multiply by a constant beta of 1 (one pass fewer)."""

    def hybrid_forward(self, F, x):
        return x * F.sigmoid(x)


class SwishBeta(nn.HybridBlock):
    """x * sigmoid(beta * x) with a trainable scalar beta (initialised to 1)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.beta = self.params.get("beta", shape=(1,), init=mx.init.One())

    def hybrid_forward(self, F, x, beta):
        return x * F.sigmoid(F.broadcast_mul(x, beta))


def make_activation(name):
    """A fresh activation block for one of ACTIVATIONS."""
    if name == "relu":
        return nn.Activation("relu")
    if name == "swish":
        return Swish()
    if name == "swishbeta":
        return SwishBeta()
    if name in _GLUON:
        return _GLUON[name]()
    raise ValueError(f"unknown activation {name!r}")
