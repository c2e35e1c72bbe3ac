"""Resumable training state in one file, loaded without executing any code.

last.ckpt is an MXNet NDArray file (mx.nd.save: a flat binary list of named arrays, no pickle):
    param:<name>        every parameter, BatchNorm running statistics included
    state:<name>:<k>    the optimiser's state for that parameter (SGD momentum)
    meta                JSON as uint8 bytes: format version, model, epoch, metrics, best so far

Parameter names are structural ("features.0.weight"), so they do not depend on how many networks
the process built before. Data order and dropout masks are derived from (seed, epoch), so no
random-generator state needs saving: resuming at an epoch boundary replays the same stream.
"""
import json
import math
from dataclasses import dataclass

import mxnet as mx
import numpy as np

from train_cli.atomic import atomic_write
from train_cli.errors import UserError
from train_cli.mxnet_private import (
    optimizer_state,
    set_optimizer_state,
    structural_params,
    trainer_params,
)
from train_cli.training.devices import on_host

FORMAT_VERSION = 1
REQUIRED_META = {"format_version", "model", "epochs_done", "best_val_acc", "best_epoch",
                 "elapsed", "metrics"}


def _count(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# what a hand-edited meta record must still be, or resume would fail later with a traceback
_META_TYPES = {
    "model": lambda v: isinstance(v, str),
    "epochs_done": _count,
    "best_epoch": _count,
    "best_val_acc": _number,
    "elapsed": lambda v: _number(v) and v >= 0,
    "metrics": lambda v: isinstance(v, list) and all(
        isinstance(r, dict) and _number(r.get("val_acc")) for r in v),
}


@dataclass
class Checkpoint:
    params: dict  # structural name -> NDArray
    states: dict  # structural name -> list of NDArrays
    meta: dict


def save(path, net, trainer, meta):
    """Atomically write parameters, optimiser states and meta to path: the first device's copy
    of each (a context-less data() means MXNet's default context, which on GPUs holds none), in
    host memory (devices.on_host)."""
    params = structural_params(net)
    arrays = {f"param:{name}": on_host(p.list_data()[0]) for name, p in params.items()}
    index = {p.name: name for name, p in params.items()}
    for i, param in enumerate(trainer_params(trainer)):
        for k, arr in enumerate(_flatten(optimizer_state(trainer, i))):
            arrays[f"state:{index[param.name]}:{k}"] = on_host(arr)
    meta = dict(meta, format_version=FORMAT_VERSION)
    arrays["meta"] = mx.nd.array(np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                                 dtype=np.uint8)
    atomic_write(path, lambda tmp: mx.nd.save(str(tmp), arrays))


def _flatten(state):
    if state is None:
        return []
    if isinstance(state, (tuple, list)):
        return [a for s in state for a in _flatten(s)]
    return [state]


def load(path):
    """Read a checkpoint file; a missing, corrupt or foreign file raises UserError."""
    try:
        arrays = mx.nd.load(str(path))
    except mx.base.MXNetError:
        if not path.exists():
            raise UserError(f"{path} is missing: the run has no checkpoint to resume from") \
                from None
        raise UserError(f"{path} is corrupt or not a swishtrain checkpoint; it cannot be resumed "
                        "(best.params may still be usable)") from None
    if not isinstance(arrays, dict) or "meta" not in arrays:
        raise UserError(f"{path} is not a swishtrain checkpoint (no meta record)")
    try:
        meta = json.loads(arrays.pop("meta").asnumpy().tobytes().decode())
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"{path} has a corrupt meta record; it cannot be resumed") from None
    if not isinstance(meta, dict) or not REQUIRED_META <= set(meta):
        raise UserError(f"{path} has an incomplete meta record; it cannot be resumed")
    wrong = [key for key, ok in _META_TYPES.items() if not ok(meta[key])]
    if wrong:
        raise UserError(f"{path} has a corrupt meta record ({wrong[0]} is "
                        f"{json.dumps(meta[wrong[0]])[:40]}); it cannot be resumed (best.params "
                        "may still be usable)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{path} has checkpoint format {meta.get('format_version')}, this "
                        f"swishtrain reads format {FORMAT_VERSION}")
    params, states = {}, {}
    for key, arr in arrays.items():
        kind, _, rest = key.partition(":")
        if kind == "param":
            params[rest] = arr
        elif kind == "state":
            name, _, k = rest.rpartition(":")
            states.setdefault(name, []).append((int(k), arr))
    states = {name: [a for _, a in sorted(items, key=lambda t: t[0])]
              for name, items in states.items()}
    return Checkpoint(params, states, meta)


def restore_params(ckpt, net, path="checkpoint"):
    """Copy a checkpoint's parameters into an initialised net (cast to the net's dtype)."""
    params = structural_params(net)
    if set(params) != set(ckpt.params):
        raise UserError(f"{path} was written for a different network (model "
                        f"{ckpt.meta.get('model')!r}); it does not fit this run's model")
    for name, p in params.items():
        if p.shape != ckpt.params[name].shape:
            raise UserError(f"{path} was written for a different network: {name} has shape "
                            f"{ckpt.params[name].shape}, this model expects {p.shape}")
        p.set_data(ckpt.params[name].astype(p.dtype, copy=False))
    return params


def restore(ckpt, net, trainer, path="checkpoint"):
    """Copy a checkpoint's parameters and optimiser states into an initialised net and trainer."""
    params = restore_params(ckpt, net, path)
    index = {p.name: name for name, p in params.items()}
    for i, param in enumerate(trainer_params(trainer)):
        saved = ckpt.states.get(index[param.name])
        if saved:
            set_optimizer_state(trainer, i, lambda optimizer, ctx, i=i, param=param, saved=saved:
                                _fill(optimizer.create_state_multi_precision(i, param.data(ctx)),
                                      iter(saved), ctx))


def _fill(template, saved, ctx):
    """Rebuild a (possibly nested) optimiser state like template from the flat saved arrays."""
    if template is None:
        return None
    if isinstance(template, (tuple, list)):
        return type(template)(_fill(t, saved, ctx) for t in template)
    return next(saved).copyto(ctx)
