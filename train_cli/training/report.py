"""What a run records about itself (config.json) and announces when it starts."""
import datetime
import platform
import shlex
import sys

import mxnet as mx
import numpy as np

from train_cli import __version__, threads
from train_cli.config import to_dict
from train_cli.model.vgg import count_params
from train_cli.training.progress import echo
from train_cli.training.recorder import CONFIG


def write_config(run, cfg, contexts, engine, cluster, data, resumed):
    """config.json: every resolved option, devices, data, versions; one entry per session."""
    previous = run.read_json(CONFIG) if resumed else {}
    sessions = previous.get("sessions", []) + [dict(
        started=datetime.datetime.now().isoformat(timespec="seconds"),
        command=" ".join(shlex.quote(a) for a in ["swishtrain", *sys.argv[1:]]),
        resumed=resumed, workers=cluster.num_workers)]
    run.write_json(CONFIG, dict(
        swishtrain=__version__, config=to_dict(cfg),
        devices=[str(c) for c in contexts], workers=cluster.num_workers,
        global_batch_size=engine.global_batch, parameters=count_params(cfg.model, cfg.width),
        data=dict(source=data.source, train_images=len(data.train), val_images=len(data.val),
                  val_is_test=data.val_is_test,
                  test_images=len(data.test) if data.test is not None else None),
        versions=dict(mxnet=mx.__version__, numpy=np.__version__,
                      python=platform.python_version()),
        threads=threads.current(), sessions=sessions))


def print_header(cfg, run, contexts, engine, cluster, data, state):
    """The lines a run starts with: model, devices, data, where results go."""
    val = "test split" if data.val_is_test else "held out from train"
    workers = f" x {cluster.num_workers} workers" if cluster.distributed else ""
    echo(f"swishtrain {__version__}: {cfg.model} (width {cfg.width:g}, "
         f"{count_params(cfg.model, cfg.width):,} parameters) on "
         f"{', '.join(map(str, contexts))}{workers}, batch {engine.global_batch}")
    echo(f"data: {len(data.train):,} train / {len(data.val):,} validation ({val}) images "
         f"from {data.source}")
    if state.epochs_done >= cfg.epochs:
        echo(f"all {cfg.epochs} epochs are done; pass --epochs N to train longer")
    elif state.epochs_done:
        echo(f"resuming after epoch {state.epochs_done} (best so far "
             f"{state.best_val_acc:.4f} at epoch {state.best_epoch})")
    echo(f"run folder: {run.path}")
