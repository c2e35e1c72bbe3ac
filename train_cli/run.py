"""One training run, from a validated config to a finished run directory.

Phases: (1) data into memory, (2) network and optimiser, fresh or restored from last.ckpt,
(3) epochs: train, evaluate, checkpoint, (4) summary. Every epoch ends with a checkpoint, so the
run can be resumed from the last completed epoch at any point.
"""
import dataclasses
import datetime
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field

import mxnet as mx
import numpy as np

from train_cli import __version__, checkpoint, threads
from train_cli.config import from_dict, to_dict, validate
from train_cli.data import default_data_dir, load_cifar10
from train_cli.engine import Engine, make_contexts
from train_cli.errors import Stopped, UserError
from train_cli.interrupt import StopRequests
from train_cli.loader import Prefetcher, train_batches
from train_cli.models import count_params
from train_cli.progress import EpochProgress, echo, epoch_line
from train_cli.rundir import BEST_PARAMS, CHECKPOINT, CONFIG, SUMMARY, RunDir
from train_cli.schedule import lr_at

# Options that may differ when a run is resumed: they change how long it runs or where it reads
# data from, never what an epoch computes.
RESUMABLE_OVERRIDES = ("epochs", "data_dir", "eval_batch_size")


@dataclass
class Progress:
    """What the checkpoint remembers besides tensors."""
    epochs_done: int = 0
    best_val_acc: float = -1.0
    best_epoch: int = 0
    elapsed: float = 0.0
    metrics: list = field(default_factory=list)


def default_run_dir(model):
    return f"runs/{model}-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def start(cfg, overwrite=False, progress_bar=None):
    """Train a new run; return its summary dict."""
    path = cfg.run_dir or default_run_dir(cfg.model)
    RunDir.check_new(path, overwrite)  # fail fast, and on devices or data before any
    contexts, data = _prepare(cfg)     # folder is made or replaced
    run = RunDir.create(path, overwrite=overwrite)
    return _train(cfg, run, contexts, data, restored=None, progress_bar=progress_bar)


def load_for_resume(run_path, overrides):
    """(config, run dir, checkpoint) of an earlier run; overrides may only change some options."""
    run = RunDir.existing(run_path)
    saved = run.read_json(CONFIG)
    try:
        cfg = from_dict(saved["config"])
    except (KeyError, TypeError, UserError) as e:
        raise UserError(f"{run.file(CONFIG)} is not a valid swishtrain config ({e})") from None
    changes = {}
    for name, value in overrides.items():
        if value is None or value == getattr(cfg, name):
            continue
        if name not in RESUMABLE_OVERRIDES:
            allowed = ", ".join("--" + n.replace("_", "-") for n in RESUMABLE_OVERRIDES)
            raise UserError(f"--{name.replace('_', '-')} cannot change when resuming (the run "
                            f"used {getattr(cfg, name)!r}); only {allowed} may", exit_code=2)
        changes[name] = value
    cfg = dataclasses.replace(cfg, **changes)
    validate(cfg)
    ckpt = checkpoint.load(run.file(CHECKPOINT))
    if ckpt.meta.get("epochs_done", 0) > cfg.epochs:
        raise UserError(f"--epochs {cfg.epochs} is fewer than the {ckpt.meta['epochs_done']} "
                        "epochs this run has done; give a larger --epochs to extend it",
                        exit_code=2)
    if ckpt.meta.get("model") != cfg.model:
        raise UserError(f"{run.file(CHECKPOINT)} holds a {ckpt.meta.get('model')!r} model but "
                        f"{run.file(CONFIG)} says {cfg.model!r}; the folder is inconsistent")
    return cfg, run, ckpt


def resume(cfg, run, ckpt, progress_bar=None):
    """Continue a run from its checkpoint; return its summary dict."""
    contexts, data = _prepare(cfg)
    return _train(cfg, run, contexts, data, restored=ckpt, progress_bar=progress_bar)


def _prepare(cfg):
    contexts = make_contexts(cfg.gpus, cfg.cpu_devices)
    data = load_cifar10(cfg.data_dir or default_data_dir(), cfg.val_split,
                        warn=lambda m: echo(m, err=True))
    return contexts, data


def _train(cfg, run, contexts, data, restored, progress_bar):
    # -- 1. data is in memory (_prepare); 2. network and optimiser ----------------------
    engine = Engine(cfg, contexts)
    if len(data.train) < engine.batch_size:
        raise UserError(f"only {len(data.train)} training images, fewer than one batch of "
                        f"{engine.batch_size}; lower --batch-size or --val-split")
    state = Progress()
    if restored is not None:
        checkpoint.restore(restored, engine.net, engine.trainer, run.file(CHECKPOINT))
        state = Progress(**{k: restored.meta[k] for k in Progress.__dataclass_fields__})
    _write_config(run, cfg, contexts, engine, data, resumed=restored is not None)
    _print_header(cfg, run, contexts, engine, data, state)
    if restored is None:
        _save_checkpoint(run, engine, cfg, state)  # epoch 0: a run stopped in epoch 1 resumes too

    # -- 3. epochs ----------------------------------------------------------------------
    batches_per_epoch = len(data.train) // engine.batch_size
    with StopRequests() as stop:
        for epoch in range(state.epochs_done, cfg.epochs):
            if stop.is_set():
                break
            lr = lr_at(epoch, cfg.lr, cfg.lr_steps, cfg.lr_factor)
            bar = EpochProgress(epoch, cfg.epochs, batches_per_epoch, lr, progress_bar)
            started = time.perf_counter()
            try:
                with Prefetcher(train_batches(data.train, engine.batch_size, cfg.seed, epoch,
                                              cfg.augment)) as batches:
                    results, stopped = engine.train_epoch(batches, lr, cfg.seed, epoch,
                                                          stop.is_set, bar.update)
            finally:
                bar.close()
            train_seconds = time.perf_counter() - started
            if stopped:
                break
            val_loss, val_acc, _ = engine.evaluate(data.val)
            seen = sum(r.count for r in results)
            row = dict(epoch=epoch + 1, lr=lr, train_loss=sum(r.loss_sum for r in results) / seen,
                       train_acc=sum(r.correct for r in results) / seen, val_loss=val_loss,
                       val_acc=val_acc, epoch_seconds=time.perf_counter() - started,
                       train_img_per_s=seen / train_seconds)
            state.metrics.append(row)
            state.epochs_done = epoch + 1
            state.elapsed += row["epoch_seconds"]
            if val_acc > state.best_val_acc:
                state.best_val_acc, state.best_epoch = val_acc, epoch + 1
                engine.save_params(run.file(BEST_PARAMS))
            _save_checkpoint(run, engine, cfg, state)
            run.write_metrics(state.metrics)
            echo(epoch_line(row, cfg.epochs))
    if stop.is_set():
        raise Stopped(f"stopped by {stop.name} during epoch {state.epochs_done + 1}; "
                      f"{run.file(CHECKPOINT)} holds "
                      f"{state.epochs_done} completed epoch(s), and that epoch restarts on "
                      f"resume.\nResume with: swishtrain resume {shlex.quote(str(run.path))}",
                      exit_code=stop.exit_code)

    # -- 4. summary ---------------------------------------------------------------------
    summary = dict(model=cfg.model, best_val_acc=state.best_val_acc, best_epoch=state.best_epoch,
                   final_val_acc=state.metrics[-1]["val_acc"], val_images=len(data.val),
                   val_is_test=data.val_is_test, test_acc=None, test_images=None,
                   epochs=state.epochs_done, total_seconds=state.elapsed)
    if not data.val_is_test:
        if data.test is None:
            echo(f"note: {data.source} has no test batch, so no test accuracy is reported")
        else:
            engine.load_params(run.file(BEST_PARAMS))
            _, summary["test_acc"], summary["test_images"] = engine.evaluate(data.test)
            echo(f"Test accuracy of the best epoch ({state.best_epoch}): "
                 f"{summary['test_acc']:.4f} on {summary['test_images']} images")
    run.write_json(SUMMARY, summary)
    echo(f"Run folder: {run.path}")
    echo(f"Best validation accuracy: {state.best_val_acc:.4f} at epoch {state.best_epoch}")
    return summary


def _save_checkpoint(run, engine, cfg, state):
    meta = dict(model=cfg.model, width=cfg.width, **state.__dict__)
    checkpoint.save(run.file(CHECKPOINT), engine.net, engine.trainer, meta)


def _write_config(run, cfg, contexts, engine, data, resumed):
    previous = run.read_json(CONFIG) if resumed else {}
    sessions = previous.get("sessions", []) + [dict(
        started=datetime.datetime.now().isoformat(timespec="seconds"),
        command=" ".join(shlex.quote(a) for a in ["swishtrain"] + sys.argv[1:]),
        resumed=resumed)]
    run.write_json(CONFIG, dict(
        swishtrain=__version__, config=to_dict(cfg),
        devices=[str(c) for c in contexts], global_batch_size=engine.batch_size,
        parameters=count_params(cfg.model, cfg.width),
        data=dict(source=data.source, train_images=len(data.train), val_images=len(data.val),
                  val_is_test=data.val_is_test,
                  test_images=len(data.test) if data.test is not None else None),
        versions=dict(mxnet=mx.__version__, numpy=np.__version__,
                      python=platform.python_version()),
        threads=threads.configure(), sessions=sessions))


def _print_header(cfg, run, contexts, engine, data, state):
    val = "test split" if data.val_is_test else "held out from train"
    echo(f"swishtrain {__version__}: {cfg.model} (width {cfg.width:g}, "
         f"{count_params(cfg.model, cfg.width):,} parameters) on "
         f"{', '.join(map(str, contexts))}, batch {engine.batch_size}")
    echo(f"data: {len(data.train):,} train / {len(data.val):,} validation ({val}) images "
         f"from {data.source}")
    if state.epochs_done >= cfg.epochs:
        echo(f"all {cfg.epochs} epochs are done; pass --epochs N to train longer")
    elif state.epochs_done:
        echo(f"resuming after epoch {state.epochs_done} (best so far "
             f"{state.best_val_acc:.4f} at epoch {state.best_epoch})")
    echo(f"run folder: {run.path}")
