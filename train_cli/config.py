"""Options -> one frozen, validated TrainConfig.

Each option is declared once, as a field of TrainConfig below: its default, its type (which picks
the parser), its --help text and, for a string, the values allowed. Its flag (--batch-size) and
config-file key (batch-size, or batch_size) follow from the field's name; cli/options.py makes
the click options from the same fields.

Precedence, lowest first: the defaults below, a TOML file (--config), command-line flags. The same
parsers read flags and TOML values, so a value means the same thing wherever it is written.
"""
import dataclasses
import difflib
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

from train_cli.errors import UsageError
from train_cli.parsing import PARSE_BY_TYPE, parse_choice

AUGMENTS = ("crop-flip", "flip", "none")
INPUT_NORMS = ("mean-std", "none")  # data.augment.INPUTS implements them
DTYPES = ("float32", "float16", "bfloat16")
FLOAT32_MAX = 3.4028234663852886e38
KVSTORES = ("device", "local", "dist_sync", "dist_device_sync", "dist_async")


def option(default, help, choices=None):
    """A TrainConfig field: its default, its --help text and, for a string, the values allowed.

    The field's type picks the parser (PARSE_BY_TYPE); a bool becomes an on/off flag pair.
    """
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


# -----------------------------------------------------------------------------
# The options. Defaults: the 2018 blog experiment (VGG16-BN, SGD, lr 0.1 stepped at 10/20/30 over
# 40 epochs); a comment says why where the default is not just the blog's value.
@dataclass(frozen=True)
class TrainConfig:
    model: str = option("vgg16_bn",  # the blog's ReLU arm; its Swish arm is vgg16_bn_swish
        "Network to train, e.g. vgg16_bn or vgg16_bn_swish (list: `swishtrain models`).")
    epochs: int = option(40,
        "Number of epochs to train in total (when resuming: more extends a finished run).")
    batch_size: int = option(128,  # per GPU, as the original script; split over --cpu-devices
        "Images per batch per GPU (the global batch is this times the number of GPUs); "
        "with --cpu-devices N each batch is split over the N contexts.")
    eval_batch_size: int = option(500,  # evaluation needs no gradients, so bigger batches are cheap
        "Images per evaluation batch (per GPU); every image is evaluated once.")
    lr: float = option(0.1,
        "Initial learning rate of SGD.")
    momentum: float = option(0.9,
        "SGD momentum.")
    wd: float = option(1e-4,
        "Weight decay (L2) applied by SGD.")
    # The blog's steps, counted in COMPLETED epochs: the 2018 script applied each one epoch late.
    lr_steps: tuple[int, ...] = option((10, 20, 30),
        "Comma-separated epoch counts: after that many epochs have COMPLETED the rate is "
        "multiplied by --lr-factor (10 means epochs 11.. use the lower rate).")
    lr_factor: float = option(0.1,
        "Factor applied to the learning rate at each of --lr-steps.")
    gpus: tuple[int, ...] = option((),  # empty: train on the CPU, which every machine has
        "Comma-separated GPU ids, e.g. 0,1 (needs an MXNet build with CUDA); empty = CPU.")
    cpu_devices: int = option(1,  # >1 runs the multi-device code path on a machine without GPUs
        "Split each batch over N CPU contexts (runs the multi-device code path without GPUs); "
        "BatchNorm then normalises each slice on its own, so results differ slightly from one "
        "device.")
    kvstore: str = option("device",  # sum on the devices; `swishtrain launch` makes it dist_sync
        "MXNet KVStore that sums gradients: " + ", ".join(KVSTORES) + ".", choices=KVSTORES)
    dtype: str = option("float32",  # the low-precision kinds each need their own hardware
        "Training precision: float32; float16 (GPU only: float32 master weights and dynamic "
        "loss scaling; steps whose gradients overflow are skipped and counted); bfloat16 (CPU "
        "only, needs AMX or AVX512_BF16: convolutions and dense layers in bfloat16 on float32 "
        "weights; ~1.5x float32 at full width with AMX; slower without AMX and, with "
        "BatchNorm, at some widths, which it warns about).",
        choices=DTYPES)
    tf32: bool = option(False,  # float32 means float32; MXNet alone lets Ampere+ GPUs use TF32
        "With --gpus on GPUs of compute capability 8.0 and newer (A100, L4, RTX 30xx/40xx): let "
        "cuDNN and cuBLAS compute float32 convolutions and matrix products in TF32 (faster, "
        "10-bit mantissa, so results differ from float32 beyond rounding). Off by default: "
        "NVIDIA_TF32_OVERRIDE=0 keeps float32 math in float32. Recorded in config.json.")
    augment: str = option("crop-flip",  # the standard recipe; flip is what the blog script did
        "Training augmentation: crop-flip (pad 4, random 32x32 crop, horizontal flip), "
        "flip (horizontal flip only, as the blog script), none.", choices=AUGMENTS)
    shuffle: bool = option(True,  # the 2018 script's record iterator kept the file's order
        "Shuffle the training images every epoch (seeded); --no-shuffle keeps the order of the "
        "files, as the 2018 script did.")
    input_norm: str = option("mean-std",  # the 2018 script fed raw 0-255 pixels (no mean/std)
        "Input scaling: mean-std (per-channel CIFAR-10 mean and std) or none (raw 0-255 pixels, "
        "as the 2018 script).", choices=INPUT_NORMS)
    val_split: int = option(0,  # 0: validate on the test split; N: hold out N training images
        "Hold out N training images for validation instead of using the test split; "
        "the test accuracy of the best epoch is then reported too.")
    test_split: int = option(0,  # a test split never seen in training, for copies without one
        "Hold out N training images as the test split (disjoint from --val-split), in place of "
        "the test batch: for a CIFAR-10 copy without one, or a test split no run has seen.")
    width: float = option(1.0,  # <1 shrinks the network for CPU-sized studies
        "Scale every channel and dense width by F (1.0 = standard VGG).")
    dropout: float = option(0.5,  # after each of the two dense layers, as VGG
        "Dropout rate after each of the two hidden dense layers (VGG uses 0.5).")
    seed: int = option(0,
        "Random seed for initialisation, shuffling, augmentation and dropout.")
    data_dir: str = option("",  # "": $SWISHTRAIN_DATA or ~/.swishtrain/datasets/cifar10
        "Folder holding CIFAR-10 (or where to download it); default $SWISHTRAIN_DATA or "
        "~/.swishtrain/datasets/cifar10.")
    run_dir: str = option("",  # "": runs/<model>-<timestamp>
        "Where to write results; default runs/<model>-<timestamp>.")
    hybridize: bool = option(True,  # a bool is an on/off flag pair: --hybridize/--no-hybridize
        "Compile the network with hybridize() (faster); --no-hybridize for debugging.")


# -----------------------------------------------------------------------------
# Everything else about an option, derived from its TrainConfig field
def flag(name):
    """The command-line spelling of a config field: batch_size -> --batch-size."""
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class Option:
    """One TrainConfig field as flags and config files see it."""

    name: str  # lr_steps
    type: object  # the annotation: int, float, str, bool or tuple[int, ...]
    default: object
    help: str
    choices: tuple | None  # the values a str option allows (None: any)
    parse: object  # a flag's string or a TOML value -> the value; ValueError if it is wrong

    @property
    def flag(self):  # --lr-steps
        return flag(self.name)

    @property
    def key(self):  # lr-steps in a TOML file (lr_steps is accepted too)
        return self.name.replace("_", "-")

    @classmethod
    def of(cls, field):
        if "help" not in field.metadata:
            raise TypeError(f"TrainConfig.{field.name}: declare it with option(default, help)")
        choices = field.metadata["choices"]
        parse = parse_choice(choices) if choices else PARSE_BY_TYPE.get(field.type)
        if parse is None:
            raise TypeError(f"TrainConfig.{field.name}: no parser for {field.type!r}; use one of "
                            f"{', '.join(map(repr, PARSE_BY_TYPE))}")
        return cls(field.name, field.type, field.default, field.metadata["help"], choices, parse)


OPTIONS = {f.name: Option.of(f) for f in dataclasses.fields(TrainConfig)}
FIELD_NAMES = list(OPTIONS)


def parse_value(name, value):
    """Parse one field's value; a bad one raises UsageError naming the option."""
    try:
        return OPTIONS[name].parse(value)
    except ValueError as e:
        raise UsageError(f"invalid value for {flag(name)}: {e}") from None


# -----------------------------------------------------------------------------
# Config files
def load_toml(path):
    """Read a TOML experiment file into {field: parsed value}; unknown keys are errors."""
    try:
        if Path(path).exists() and not Path(path).is_dir() and not Path(path).is_file():
            raise UsageError(f"config file {path} is not a regular file (a device, a pipe, ...), "
                             "which could be read without end; pass a .toml file to --config")
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        problem = "does not exist; check the path given to --config"
    except IsADirectoryError:
        problem = "is a directory; pass a .toml file to --config"
    except tomllib.TOMLDecodeError as e:
        problem = f"is not valid TOML ({e}); see configs/ for examples"
    else:
        problem = None
    if problem:
        raise UsageError(f"config file {path} {problem}")
    values = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in OPTIONS:
            hint = difflib.get_close_matches(name, FIELD_NAMES, n=1)
            did = f" (did you mean {OPTIONS[hint[0]].key!r}?)" if hint else ""
            raise UsageError(f"config file {path}: unknown key {key!r}{did}; valid keys: "
                             + ", ".join(o.key for o in OPTIONS.values()))
        try:
            values[name] = OPTIONS[name].parse(value)
        except ValueError as e:
            raise UsageError(f"config file {path}: key {key!r}: {e}") from None
    return values


def build_config(cli_values, config_file=None):
    """Merge defaults < config file < command line, validate, and return a TrainConfig.

    cli_values holds only options the user gave (None means "not given").
    """
    values = load_toml(config_file) if config_file else {}
    values.update({k: v for k, v in cli_values.items() if v is not None})
    cfg = TrainConfig(**values)
    validate(cfg)
    return cfg


def validate(cfg):
    """Raise UsageError for an option whose value parses but makes no sense on its own (what
    two options cannot do together, and what is allowed but unlikely: runspec/rules.py)."""
    def need(ok, option, msg):
        if not ok:
            raise UsageError(f"{flag(option)} {msg}")

    for name, spec in OPTIONS.items():  # inf, nan and 1e39 parse, but MXNet computes in float32
        value = getattr(cfg, name)
        if spec.type is float:
            need(math.isfinite(value) and abs(value) <= FLOAT32_MAX, name,
                 f"must be a finite number float32 can hold, at most {FLOAT32_MAX:.4g} "
                 f"(got {value})")

    need(cfg.epochs >= 1, "epochs", f"must be at least 1 (got {cfg.epochs})")
    need(cfg.batch_size >= 1, "batch_size", f"must be at least 1 (got {cfg.batch_size})")
    need(cfg.eval_batch_size >= 1, "eval_batch_size",
         f"must be at least 1 (got {cfg.eval_batch_size})")
    need(cfg.lr > 0, "lr", f"must be positive (got {cfg.lr})")
    need(0 <= cfg.momentum < 1, "momentum", f"must be in [0, 1) (got {cfg.momentum})")
    need(cfg.wd >= 0, "wd", f"must be zero or positive (got {cfg.wd})")
    need(cfg.lr_factor > 0, "lr_factor", f"must be positive (got {cfg.lr_factor})")
    need(all(s >= 1 for s in cfg.lr_steps), "lr_steps",
         f"values must be at least 1 (got {_csv(cfg.lr_steps)}); a step of N lowers the rate "
         "after N epochs")
    need(all(a < b for a, b in zip(cfg.lr_steps, cfg.lr_steps[1:])), "lr_steps",
         f"must be strictly increasing (got {_csv(cfg.lr_steps)}), e.g. 10,20,30")
    need(all(g >= 0 for g in cfg.gpus), "gpus", f"ids must be 0 or more (got {_csv(cfg.gpus)})")
    need(len(set(cfg.gpus)) == len(cfg.gpus), "gpus",
         f"lists a GPU twice (got {_csv(cfg.gpus)}); give each id once, e.g. 0,1")
    need(cfg.cpu_devices >= 1, "cpu_devices", f"must be at least 1 (got {cfg.cpu_devices})")
    need(cfg.width > 0, "width", f"must be positive (got {cfg.width})")
    need(0 <= cfg.dropout < 1, "dropout", f"must be in [0, 1) (got {cfg.dropout})")
    need(cfg.val_split >= 0, "val_split", f"must be 0 or more (got {cfg.val_split})")
    need(cfg.test_split >= 0, "test_split", f"must be 0 or more (got {cfg.test_split})")
    need(cfg.seed >= 0, "seed", f"must be 0 or more (got {cfg.seed})")
    from train_cli.model.spec import check_width, parse_name  # no mxnet import
    parse_name(cfg.model)  # a registered model, or UsageError listing them
    check_width(cfg.width)


def _csv(values):
    return ",".join(str(v) for v in values)


def to_dict(cfg):
    """JSON-ready dict of every field (tuples become lists)."""
    out = {}
    for name in FIELD_NAMES:
        value = getattr(cfg, name)
        out[name] = list(value) if isinstance(value, tuple) else value
    return out


def from_dict(values):
    """Inverse of to_dict (used to reload a run's config.json on resume)."""
    known = {k: parse_value(k, v) for k, v in values.items() if k in OPTIONS}
    return TrainConfig(**known)
