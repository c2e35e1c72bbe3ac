"""Options -> one frozen, validated TrainConfig.

Precedence, lowest first: the defaults below, a TOML file (--config), command-line flags. The same
parsers read flags and TOML values, so a value means the same thing wherever it is written.
"""
import dataclasses
import difflib
import tomllib
from dataclasses import dataclass

from train_cli.errors import UsageError


# -----------------------------------------------------------------------------
# Defaults: the 2018 blog experiment (VGG16-BN, SGD, lr 0.1 stepped at 10/20/30 over 40 epochs).
@dataclass(frozen=True)
class TrainConfig:
    model: str = "vgg16_bn"  # see `swishtrain models`
    epochs: int = 40
    batch_size: int = 128  # per GPU, as the original script; split over --cpu-devices
    eval_batch_size: int = 500  # evaluation needs no gradients, so bigger batches are cheap
    lr: float = 0.1
    momentum: float = 0.9
    wd: float = 1e-4
    lr_steps: tuple = (10, 20, 30)  # multiply lr by lr_factor once this many epochs are done
    lr_factor: float = 0.1
    gpus: tuple = ()  # empty: train on the CPU
    cpu_devices: int = 1  # >1 splits each batch over several CPU contexts (multi-device path)
    kvstore: str = "device"  # how gradients from several devices (or machines) are summed
    dtype: str = "float32"
    augment: str = "crop-flip"  # crop-flip | flip (what the blog script effectively did) | none
    val_split: int = 0  # 0: validate on the test split; N: hold out N training images
    width: float = 1.0  # scales every channel and dense width, for CPU-sized studies
    dropout: float = 0.5  # after each of the two dense layers, as VGG
    seed: int = 0
    data_dir: str = ""  # "": $SWISHTRAIN_DATA or ~/.swishtrain/datasets/cifar10
    run_dir: str = ""  # "": runs/<model>-<timestamp>
    hybridize: bool = True


AUGMENTS = ("crop-flip", "flip", "none")
DTYPES = ("float32", "float16")
KVSTORES = ("device", "local", "dist_sync", "dist_device_sync", "dist_async")

HELP = {
    "model": "Network to train, e.g. vgg16_bn or vgg16_bn_swish (list: `swishtrain models`).",
    "epochs": "Number of epochs to train.",
    "batch_size": "Images per batch per GPU (the global batch is this times the number of GPUs); "
                  "with --cpu-devices N each batch is split over the N contexts.",
    "eval_batch_size": "Images per evaluation batch (per GPU); every image is evaluated once.",
    "lr": "Initial learning rate of SGD.",
    "momentum": "SGD momentum.",
    "wd": "Weight decay (L2) applied by SGD.",
    "lr_steps": "Comma-separated epoch counts: after that many epochs have COMPLETED the rate is "
                "multiplied by --lr-factor (10 means epochs 11.. use the lower rate).",
    "lr_factor": "Factor applied to the learning rate at each of --lr-steps.",
    "gpus": "Comma-separated GPU ids, e.g. 0,1 (needs an MXNet build with CUDA); empty = CPU.",
    "cpu_devices": "Split each batch over N CPU contexts (runs the multi-device code path "
                   "without GPUs).",
    "kvstore": "MXNet KVStore that sums gradients: " + ", ".join(KVSTORES) + ".",
    "dtype": "Training precision: float32, or float16 (with float32 master weights; GPU).",
    "augment": "Training augmentation: crop-flip (pad 4, random 32x32 crop, horizontal flip), "
               "flip (horizontal flip only, as the blog script), none.",
    "val_split": "Hold out N training images for validation instead of using the test split; "
                 "the test accuracy of the best epoch is then reported too.",
    "width": "Scale every channel and dense width by F (1.0 = standard VGG).",
    "dropout": "Dropout rate after each of the two hidden dense layers (VGG uses 0.5).",
    "seed": "Random seed for initialisation, shuffling, augmentation and dropout.",
    "data_dir": "Folder holding CIFAR-10 (or where to download it); default $SWISHTRAIN_DATA or "
                "~/.swishtrain/datasets/cifar10.",
    "run_dir": "Where to write results; default runs/<model>-<timestamp>.",
    "hybridize": "Compile the network with hybridize() (faster); --no-hybridize for debugging.",
}

FIELD_NAMES = [f.name for f in dataclasses.fields(TrainConfig)]


def flag(name):
    """The command-line spelling of a config field: batch_size -> --batch-size."""
    return "--" + name.replace("_", "-")


# -----------------------------------------------------------------------------
# Parsers: one per field type. Each takes a string (command line) or a TOML value and raises
# ValueError with a message that says what was expected.
def _int(value):
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ValueError(f"expected an integer, got {value!r}")


def _float(value):
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise ValueError(f"expected a number, got {value!r}")


def _int_list(value):
    if isinstance(value, str):
        items = [s.strip() for s in value.split(",") if s.strip()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ValueError(f"expected comma-separated integers like 10,20,30, got {value!r}")
    out = []
    for item in items:
        try:
            out.append(_int(item))
        except ValueError:
            raise ValueError(f"{item!r} is not an integer (expected integers separated by "
                             "commas)") from None
    return tuple(out)


def _str(value):
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def _bool(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    raise ValueError(f"expected true or false, got {value!r}")


def _choice(choices):
    def parse(value):
        value = _str(value)
        if value not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return value
    return parse


PARSERS = {
    "model": _str, "epochs": _int, "batch_size": _int, "eval_batch_size": _int, "lr": _float,
    "momentum": _float, "wd": _float, "lr_steps": _int_list, "lr_factor": _float,
    "gpus": _int_list, "cpu_devices": _int, "kvstore": _choice(KVSTORES),
    "dtype": _choice(DTYPES), "augment": _choice(AUGMENTS), "val_split": _int, "width": _float,
    "dropout": _float, "seed": _int, "data_dir": _str, "run_dir": _str, "hybridize": _bool,
}


def parse_value(name, value):
    """Parse one field's value; a bad one raises UsageError naming the option."""
    try:
        return PARSERS[name](value)
    except ValueError as e:
        raise UsageError(f"invalid value for {flag(name)}: {e}") from None


# -----------------------------------------------------------------------------
# Config files
def load_toml(path):
    """Read a TOML experiment file into {field: parsed value}; unknown keys are errors."""
    try:
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
        if name not in PARSERS:
            hint = difflib.get_close_matches(name, FIELD_NAMES, n=1)
            did = f" (did you mean {hint[0].replace('_', '-')!r}?)" if hint else ""
            raise UsageError(f"config file {path}: unknown key {key!r}{did}; valid keys: "
                             + ", ".join(n.replace("_", "-") for n in FIELD_NAMES))
        try:
            values[name] = PARSERS[name](value)
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
    """Raise UsageError for values that parse but make no sense (see warnings() for the rest)."""
    def need(ok, option, msg):
        if not ok:
            raise UsageError(f"{flag(option)} {msg}")

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
    need(not (cfg.gpus and cfg.cpu_devices > 1), "cpu_devices",
         "cannot be combined with --gpus; use one or the other")
    for option in ("batch_size", "eval_batch_size"):
        need(getattr(cfg, option) >= cfg.cpu_devices, option,
             f"{getattr(cfg, option)} is smaller than --cpu-devices {cfg.cpu_devices}: every "
             "device needs at least one image per batch")
    need(cfg.width > 0, "width", f"must be positive (got {cfg.width})")
    need(0 <= cfg.dropout < 1, "dropout", f"must be in [0, 1) (got {cfg.dropout})")
    need(cfg.val_split >= 0, "val_split", f"must be 0 or more (got {cfg.val_split})")
    need(cfg.seed >= 0, "seed", f"must be 0 or more (got {cfg.seed})")
    need(cfg.dtype == "float32" or cfg.gpus, "dtype",
         "float16 needs --gpus: MXNet's CPU kernels have no fast float16 path")
    from train_cli.model.vgg import check_model_name, check_width  # no mxnet import
    check_model_name(cfg.model)
    check_width(cfg.width)


def warnings(cfg):
    """Things that are allowed but probably not meant."""
    late = [s for s in cfg.lr_steps if s >= cfg.epochs]
    if late:
        return [f"--lr-steps {_csv(late)} >= --epochs {cfg.epochs}: those steps never happen"]
    return []


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
    known = {k: parse_value(k, v) for k, v in values.items() if k in PARSERS}
    return TrainConfig(**known)
