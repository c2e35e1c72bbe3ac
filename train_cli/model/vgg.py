"""VGG for CIFAR-10 (32x32 inputs) with a choice of activation, built from spec.VGG_SPEC.

Same architecture and initialisers as mxnet.gluon.model_zoo.vision.vgg*: conv3x3 [+ BN] + act
stacks with five max-pools, then Dense(4096) + act + Dropout(0.5) twice and Dense(classes). The
activation replaces ReLU everywhere, as in the 2018 blog experiment. Parameter counts and FLOPs
are read off a built network's layers.
"""
import math

import mxnet as mx
from mxnet.gluon import nn

from train_cli.model.activations import make_activation
from train_cli.model.spec import (
    DENSE_UNITS,
    IMAGE_SHAPE,
    NUM_CLASSES,
    VGG_SPEC,
    check_width,
    parse_name,
    scaled,
)


class SeededDropout(nn.Dropout):
    """Dropout whose masks come from MXNet's own generator on every device, so they depend on
    mx.random.seed, i.e. on (seed, epoch), and replay on resume.

    Gluon's Dropout passes cudnn_off=False (gluon/nn/basic_layers.py:271 at 1.9.1): on a GPU it
    then takes cuDNN's dropout, whose generator is seeded once per device from C's rand()
    (src/operator/nn/dropout-inl.h:494) and never by mx.random.seed. cudnn_off=True takes the
    parallel generator that mx.random.seed seeds (dropout-inl.h:368-375); the CPU ignores it.
    """

    def hybrid_forward(self, F, x):
        if self._rate > 0:
            return F.Dropout(x, p=self._rate, axes=self._axes, name="fwd", cudnn_off=True)
        return F.identity(x)


class VGG(nn.HybridBlock):
    """VGG with configurable activation; layout and initialisers as gluon's model zoo.

    Input sizes are given to every layer (the input is always 3x32x32), so parameters are
    created at initialize() rather than at the first forward pass: the weights are then plain
    arrays, not ones a oneDNN forward pass has re-laid out (which the distributed KVStore
    mishandles), and a checkpoint can be loaded before any data is seen.
    """

    def __init__(self, layers, channels, act, batch_norm=False, dense_units=DENSE_UNITS,
                 classes=NUM_CLASSES, dropout=0.5, fused=None, **kwargs):
        super().__init__(**kwargs)

        def activation():
            return make_activation(act, fused)

        # every layer is created in this one scope, as in the zoo, so they are named alike
        with self.name_scope():
            self.features = self._make_features(layers, channels, batch_norm, activation)
            side = IMAGE_SHAPE[1] >> len(layers), IMAGE_SHAPE[2] >> len(layers)  # pools halve it
            in_units = channels[-1] * side[0] * side[1]
            for _ in range(2):
                self.features.add(nn.Dense(dense_units, in_units=in_units,
                                           weight_initializer="normal", bias_initializer="zeros"),
                                  activation(), SeededDropout(rate=dropout))
                in_units = dense_units
            self.output = nn.Dense(classes, in_units=in_units, weight_initializer="normal",
                                   bias_initializer="zeros")

    @staticmethod
    def _make_features(layers, channels, batch_norm, activation):
        """The convolutional stages, one per (count, channels) of the spec, in one Sequential."""
        features = nn.HybridSequential(prefix="")
        xavier = mx.init.Xavier(rnd_type="gaussian", factor_type="out", magnitude=2)
        in_channels = IMAGE_SHAPE[0]
        for count, out_channels in zip(layers, channels):
            features.add(*VGG._make_stage(count, in_channels, out_channels, batch_norm,
                                          activation, xavier))
            in_channels = out_channels
        return features

    @staticmethod
    def _make_stage(count, in_channels, out_channels, batch_norm, activation, xavier):
        """count x (conv3x3 [+ BN] + act), then a 2x2 max-pool halving the side."""
        blocks = []
        for _ in range(count):
            blocks.append(nn.Conv2D(out_channels, kernel_size=3, padding=1,
                                    in_channels=in_channels, weight_initializer=xavier,
                                    bias_initializer="zeros"))
            if batch_norm:
                blocks.append(nn.BatchNorm(in_channels=out_channels))
            blocks.append(activation())
            in_channels = out_channels
        return blocks + [nn.MaxPool2D(strides=2)]

    def hybrid_forward(self, F, x):
        return self.output(self.features(x))

    def forward_flops(self):
        """FLOPs of one forward pass per image: 2 per multiply-add of the convs and dense layers.

        BatchNorm, activations and pooling are memory-bound and left out; the shape of the
        feature maps is followed through the convs and pools by MXNet's shape inference.
        """
        flops, shape = 0, (1, *IMAGE_SHAPE)
        for layer in [*self.features, self.output]:
            if isinstance(layer, (nn.Conv2D, nn.MaxPool2D)):
                _, (shape,), _ = layer(mx.sym.var("x")).infer_shape(x=shape)
            # weight (out, in, kh, kw): one multiply-add each per output pixel; (out, in): once
            if isinstance(layer, nn.Conv2D):
                flops += 2 * math.prod(layer.weight.shape) * math.prod(shape[2:])
            elif isinstance(layer, nn.Dense):
                flops += 2 * math.prod(layer.weight.shape)
        return flops


    def _output_shapes(self):
        """Shapes of every operator output of a forward pass on one image (shape inference only:
        nothing is allocated, so this works for networks far too large to build)."""
        internals = self(mx.sym.var("data")).get_internals()
        _, shapes, _ = internals.infer_shape(data=(1, *IMAGE_SHAPE))
        names = internals.list_outputs()
        return [shape for name, shape in zip(names, shapes)
                if name.endswith("_output") and not name.startswith("data")]

    def activation_elements(self):
        """Elements of every layer output for one image: what a forward pass keeps for backward."""
        return sum(math.prod(shape) for shape in self._output_shapes())

    def largest_output_elements(self):
        """Elements of the largest layer output for one image."""
        return max(math.prod(shape) for shape in self._output_shapes())

    def parameter_elements(self):
        """Elements of every parameter (trainable ones and BatchNorm's running statistics)."""
        return sum(math.prod(p.shape) for p in self.collect_params().values())

    def largest_tensor(self, batch):
        """(shape, elements) of the largest parameter or layer output at this batch size."""
        shapes = [p.shape for p in self.collect_params().values()]
        shapes += [(batch, *shape[1:]) for shape in self._output_shapes()]
        shape = max(shapes, key=math.prod)
        return shape, math.prod(shape)


def build_model(name, width=1.0, dropout=0.5, classes=NUM_CLASSES, fused=None):
    """A fresh, uninitialised network for a registered name (fused: see activations._fused)."""
    depth, batch_norm, act = parse_name(name)
    check_width(width)
    layers, channels = VGG_SPEC[depth]
    return VGG(layers, [scaled(c, width) for c in channels], act, batch_norm,
               scaled(DENSE_UNITS, width), classes, dropout, fused)


def trainable_param_count(net):
    """Trainable parameters (what the optimiser updates) of a network whose shapes are known."""
    shapes = [p.shape for p in net.collect_params().values() if p.grad_req != "null"]
    if any(shape is None or 0 in shape for shape in shapes):
        raise ValueError("parameter shapes are unknown until the network's first forward pass")
    return sum(math.prod(shape) for shape in shapes)


def shape_model(name, width=1.0, classes=NUM_CLASSES):
    """A network to read shapes, counts and FLOPs from, never to train.

    fused=False: it never compiles or loads the Swish library (same parameters); a fresh name
    counter: it does not shift the names (vgg0_...) of the network a run builds.
    """
    with mx.name.NameManager():
        return build_model(name, width, classes=classes, fused=False)


def count_params(name, width=1.0, classes=NUM_CLASSES):
    """Trainable parameters of a model, from the shapes of a built, uninitialised network."""
    return trainable_param_count(shape_model(name, width, classes))
