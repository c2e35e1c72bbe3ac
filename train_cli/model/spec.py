"""The VGG family as data: the spec table, the activation and model names, width scaling.

No mxnet import here: config validation checks --model and --width through this module without
loading MXNet; vgg.py builds the networks from the same table.
"""
import difflib
import re

from train_cli.errors import UsageError

# depth -> (convs per stage, channels per stage), as gluon's model zoo; a max-pool ends each stage
VGG_SPEC = {
    11: ([1, 1, 2, 2, 2], [64, 128, 256, 512, 512]),
    13: ([2, 2, 2, 2, 2], [64, 128, 256, 512, 512]),
    16: ([2, 2, 3, 3, 3], [64, 128, 256, 512, 512]),
    19: ([2, 2, 4, 4, 4], [64, 128, 256, 512, 512]),
}
DENSE_UNITS = 4096  # each of the two hidden dense layers
IMAGE_SHAPE = (3, 32, 32)
NUM_CLASSES = 10
# activations.py maps each name to its block (a test checks the two lists agree)
ACTIVATIONS = ("relu", "swish", "swishbeta", "elu", "selu", "gelu")
FUSED_ACTIVATIONS = ("swish", "swishbeta")  # with operators of their own (model/swish_op.py)

MODEL_NAMES = [f"vgg{depth}{bn}{'' if act == 'relu' else '_' + act}"
               for depth in VGG_SPEC for bn in ("", "_bn") for act in ACTIVATIONS]
_NAME_RE = re.compile(r"^vgg(\d+)(_bn)?(?:_([a-z]+))?$")


def parse_name(name):
    """'vgg16_bn_swish' -> (16, True, 'swish'); unknown names raise UsageError listing them."""
    m = _NAME_RE.match(name)
    if name in MODEL_NAMES and m:
        return int(m.group(1)), bool(m.group(2)), m.group(3) or "relu"
    close = difflib.get_close_matches(name, MODEL_NAMES, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise UsageError(f"unknown model {name!r}{hint}; valid models: {', '.join(MODEL_NAMES)}")


def uses_fused_op(name):
    """True for the models whose activation is one of the fused operators."""
    return parse_name(name)[2] in FUSED_ACTIVATIONS


def scaled(units, width):
    """Channel/unit count after --width scaling (round half up)."""
    return int(units * width + 0.5)


MIN_WIDTH = 0.5 / min(VGG_SPEC[11][1])  # below this the first conv keeps no channel


def check_width(width):
    """Raise UsageError when a width leaves a layer without channels."""
    if scaled(min(VGG_SPEC[11][1]), width) < 1:
        raise UsageError(f"--width {width} leaves the first layer without channels "
                         f"({min(VGG_SPEC[11][1])} x {width} < 0.5); use at least {MIN_WIDTH}")
