"""VGG for CIFAR-10 (32x32 inputs) with a choice of activation.

Same architecture and initialisers as mxnet.gluon.model_zoo.vision.vgg*: conv3x3 [+ BN] + act
stacks with five max-pools, then Dense(4096) + act + Dropout(0.5) twice and Dense(classes). The
activation replaces ReLU everywhere, as in the 2018 blog experiment.
"""
import difflib
import re

import mxnet as mx
from mxnet.gluon import nn

from train_cli.errors import UsageError
from train_cli.model.activations import ACTIVATIONS, make_activation

# depth -> (convs per stage, channels per stage), as gluon's model zoo
VGG_SPEC = {
    11: ([1, 1, 2, 2, 2], [64, 128, 256, 512, 512]),
    13: ([2, 2, 2, 2, 2], [64, 128, 256, 512, 512]),
    16: ([2, 2, 3, 3, 3], [64, 128, 256, 512, 512]),
    19: ([2, 2, 4, 4, 4], [64, 128, 256, 512, 512]),
}
DENSE_UNITS = 4096
IMAGE_SHAPE = (3, 32, 32)
NUM_CLASSES = 10

MODEL_NAMES = [f"vgg{depth}{bn}{'' if act == 'relu' else '_' + act}"
               for depth in VGG_SPEC for bn in ("", "_bn") for act in ACTIVATIONS]
_NAME_RE = re.compile(r"^vgg(\d+)(_bn)?(?:_([a-z]+))?$")


# -----------------------------------------------------------------------------
# Names and widths (no network is built here)
def parse_name(name):
    """'vgg16_bn_swish' -> (16, True, 'swish'); unknown names raise UsageError listing them."""
    m = _NAME_RE.match(name)
    if name in MODEL_NAMES and m:
        return int(m.group(1)), bool(m.group(2)), m.group(3) or "relu"
    close = difflib.get_close_matches(name, MODEL_NAMES, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise UsageError(f"unknown model {name!r}{hint}; valid models: {', '.join(MODEL_NAMES)}")


def check_model_name(name):
    """Raise UsageError unless name is a registered model."""
    parse_name(name)


def scaled(units, width):
    """Channel/unit count after --width scaling (round half up)."""
    return int(units * width + 0.5)


MIN_WIDTH = 0.5 / min(VGG_SPEC[11][1])  # below this the first conv keeps no channel


def check_width(width):
    """Raise UsageError when a width leaves a layer without channels."""
    if scaled(min(VGG_SPEC[11][1]), width) < 1:
        raise UsageError(f"--width {width} leaves the first layer without channels "
                         f"({min(VGG_SPEC[11][1])} x {width} < 0.5); use at least {MIN_WIDTH}")


def layer_plan(name, width=1.0, classes=NUM_CLASSES):
    """The layers of a model as (kind, dict) tuples, from which params and FLOPs are counted.

    kinds: conv (cin, cout, hw), bn (c, hw), act (act, n: elements, dense: after a dense
    layer), pool (c, hw), dense (cin, cout).
    """
    depth, batch_norm, act = parse_name(name)
    check_width(width)
    layers, channels = VGG_SPEC[depth]
    plan, cin, hw = [], IMAGE_SHAPE[0], IMAGE_SHAPE[1]
    for count, cout in zip(layers, channels):
        cout = scaled(cout, width)
        for _ in range(count):
            plan.append(("conv", dict(cin=cin, cout=cout, hw=hw)))
            if batch_norm:
                plan.append(("bn", dict(c=cout, hw=hw)))
            plan.append(("act", dict(act=act, n=cout * hw * hw, dense=False)))
            cin = cout
        plan.append(("pool", dict(c=cout, hw=hw)))
        hw //= 2
    units = scaled(DENSE_UNITS, width)
    features = cin * hw * hw
    for _ in range(2):
        plan.append(("dense", dict(cin=features, cout=units)))
        plan.append(("act", dict(act=act, n=units, dense=True)))
        features = units
    plan.append(("dense", dict(cin=features, cout=classes)))
    return plan


def count_params(name, width=1.0, classes=NUM_CLASSES):
    """Trainable parameters, counted from the layer plan (BN running stats excluded)."""
    total = 0
    for kind, d in layer_plan(name, width, classes):
        if kind == "conv":
            total += 9 * d["cin"] * d["cout"] + d["cout"]
        elif kind == "bn":
            total += 2 * d["c"]
        elif kind == "dense":
            total += d["cin"] * d["cout"] + d["cout"]
        elif kind == "act" and d["act"] == "swishbeta":
            total += 1
    return total


# -----------------------------------------------------------------------------
# Networks
class VGG(nn.HybridBlock):
    """VGG with configurable activation; layout and initialisers as gluon's model zoo.

    Input sizes are given to every layer (the input is always 3x32x32), so parameters are
    created at initialize() rather than at the first forward pass: the weights are then plain
    arrays, not ones a oneDNN forward pass has re-laid out (which the distributed KVStore
    mishandles), and a checkpoint can be loaded before any data is seen.
    """

    def __init__(self, plan, classes, dropout=0.5, **kwargs):
        super().__init__(**kwargs)
        xavier = mx.init.Xavier(rnd_type="gaussian", factor_type="out", magnitude=2)
        with self.name_scope():
            self.features = nn.HybridSequential(prefix="")
            for kind, d in plan[:-1]:
                if kind == "conv":
                    self.features.add(nn.Conv2D(d["cout"], kernel_size=3, padding=1,
                                                in_channels=d["cin"], weight_initializer=xavier,
                                                bias_initializer="zeros"))
                elif kind == "bn":
                    self.features.add(nn.BatchNorm(in_channels=d["c"]))
                elif kind == "act":
                    self.features.add(make_activation(d["act"]))
                    if d["dense"]:
                        self.features.add(nn.Dropout(rate=dropout))
                elif kind == "pool":
                    self.features.add(nn.MaxPool2D(strides=2))
                else:  # dense
                    self.features.add(nn.Dense(d["cout"], in_units=d["cin"],
                                               weight_initializer="normal",
                                               bias_initializer="zeros"))
            last = plan[-1][1]
            self.output = nn.Dense(classes, in_units=last["cin"], weight_initializer="normal",
                                   bias_initializer="zeros")

    def hybrid_forward(self, F, x):
        return self.output(self.features(x))


def build_model(name, width=1.0, dropout=0.5, classes=NUM_CLASSES):
    """A fresh, uninitialised network for a registered name."""
    return VGG(layer_plan(name, width, classes), classes, dropout=dropout)


def trainable_param_count(net):
    """Trainable parameters of an initialised network (what the optimiser updates)."""
    return sum(p.data().size for p in net.collect_params().values() if p.grad_req != "null")
