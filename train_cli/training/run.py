"""One training run, from a validated config to a finished run directory.

Phases: (1) join the cluster and load the data, (2) network and optimiser, fresh or restored
from last.ckpt, (3) epochs: train, evaluate, checkpoint, (4) summary. Every epoch ends with a
checkpoint, so a run can be resumed from its last completed epoch whatever stops it.
In a distributed job every worker runs this; only rank 0 writes the run folder.
"""
import datetime
import hashlib
import os
import resource
import shlex
import time
from dataclasses import dataclass, field

from train_cli.cluster.process_group import async_scheduler, connect
from train_cli.data.cifar10 import Split, default_data_dir, load_cifar10
from train_cli.data.loader import Prefetcher, train_batches
from train_cli.errors import Stopped, UserError
from train_cli.training import checkpoint
from train_cli.training.engine import Engine, make_contexts, process_batch_size
from train_cli.training.interrupt import StopRequests
from train_cli.training.progress import EpochProgress, echo, epoch_line, set_prefix
from train_cli.training.recorder import BEST_PARAMS, CHECKPOINT, CONFIG, SUMMARY, RunDir
from train_cli.training.report import print_header, write_config
from train_cli.training.schedule import lr_at


@dataclass
class RunState:
    """What the checkpoint remembers besides tensors."""
    epochs_done: int = 0
    best_val_acc: float = -1.0
    best_epoch: int = 0
    elapsed: float = 0.0
    metrics: list = field(default_factory=list)
    val_images: int = 0  # images the last validation actually evaluated (job-wide)


def default_run_dir(model):
    # a launcher sets the stamp so that every worker of a job names the same folder
    stamp = os.environ.get("SWISHTRAIN_RUN_STAMP") or \
        datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"runs/{model}-{stamp}"


def start(cfg, overwrite=False, progress_bar=None):
    """Train a new run; return its summary dict."""
    path = cfg.run_dir or default_run_dir(cfg.model)
    RunDir.check_new(path, overwrite)  # fail before any slow work, and before anything is
    cluster, contexts, data = _prepare(cfg)  # made or replaced
    run = RunDir.create(path, overwrite=overwrite) if cluster.writer else RunDir(path)
    return _train(cfg, run, cluster, contexts, data, None, progress_bar)


def resume(cfg, run, ckpt, progress_bar=None):
    """Continue a run from its checkpoint; return its summary dict."""
    workers = run.read_json(CONFIG).get("workers", 1)
    if workers > 1 and os.environ.get("DMLC_ROLE") != "worker":
        raise UserError(f"{run.path} was trained by {workers} workers; resume it the same way: "
                        f"swishtrain launch -n {workers} -- --resume {run.path}")
    cluster, contexts, data = _prepare(cfg)
    if workers != cluster.num_workers:  # the global batch, and so every step, would change
        how = f"swishtrain launch -n {workers} -- --resume {run.path}" if workers > 1 \
            else f"swishtrain resume {run.path}"
        raise UserError(f"{run.path} was trained by {workers} worker(s), not "
                        f"{cluster.num_workers}; resume it the same way: {how}")
    return _train(cfg, run, cluster, contexts, data, ckpt, progress_bar)


def _prepare(cfg):
    """Join the cluster, pick the devices and load the data; check a batch fits the data."""
    cluster = connect(cfg.kvstore)
    set_prefix(cluster.prefix())
    contexts = make_contexts(cfg.gpus, cfg.cpu_devices)

    def load():
        return load_cifar10(cfg.data_dir or default_data_dir(), cfg.val_split,
                            warn=lambda m: echo(m, err=True) if cluster.writer else None)
    # rank 0 first: it may download and unpack the data set that the other workers then read
    data = load() if cluster.writer else None
    cluster.barrier()
    data = data or load()
    global_batch = process_batch_size(cfg.batch_size, contexts) * cluster.num_workers
    if len(data.train) < global_batch:
        raise UserError(f"only {len(data.train)} training images, fewer than one batch of "
                        f"{global_batch}; lower --batch-size or --val-split")
    return cluster, contexts, data


def _train(cfg, run, cluster, contexts, data, restored, progress_bar):
    # -- 2. network and optimiser -------------------------------------------------------
    state = RunState()
    if restored is not None:
        state = RunState(**{k: restored.meta[k] for k in RunState.__dataclass_fields__
                            if k in restored.meta})
    global_batch = process_batch_size(cfg.batch_size, contexts) * cluster.num_workers
    batches_per_epoch = len(data.train) // global_batch
    scheduler = None
    if not cluster.sync:  # dist_async: the servers run the optimiser, and its schedule
        scheduler = async_scheduler(cfg, pushes_per_epoch=batches_per_epoch * cluster.num_workers)
    engine = Engine(cfg, contexts, cluster, lr_scheduler=scheduler)
    if restored is not None:
        checkpoint.restore(restored, engine.net, engine.trainer, run.file(CHECKPOINT))
    if cluster.writer:
        write_config(run, cfg, contexts, engine, cluster, data, resumed=restored is not None)
        if restored is None:  # epoch 0: a run stopped during epoch 1 can be resumed too
            _save_checkpoint(run, engine, cfg, state)
    print_header(cfg, run, contexts, engine, cluster, data, state)

    # -- 3. epochs ----------------------------------------------------------------------
    with StopRequests() as stop:
        for epoch in range(state.epochs_done, cfg.epochs):
            if stop.is_set():
                break
            lr = lr_at(epoch, cfg.lr, cfg.lr_steps, cfg.lr_factor)
            bar = EpochProgress(epoch, cfg.epochs, batches_per_epoch, lr, progress_bar)
            started = time.perf_counter()
            try:
                with Prefetcher(train_batches(data.train, engine.batch_size, cfg.seed, epoch,
                                              cfg.augment, cluster.rank,
                                              cluster.num_workers)) as batches:
                    results, stopped = engine.train_epoch(batches, lr, cfg.seed, epoch,
                                                          stop.is_set, bar.update)
            finally:
                bar.close()
            train_seconds = time.perf_counter() - started
            if stopped:
                break
            engine.average_running_stats(cluster)
            val_loss, val_acc, evaluated = _evaluate(engine, cluster, data.val)
            loss_sum, correct, seen = _job_totals(cluster, results)
            row = dict(epoch=epoch + 1, lr=lr, train_loss=loss_sum / seen, train_acc=correct / seen,
                       val_loss=val_loss, val_acc=val_acc,
                       epoch_seconds=time.perf_counter() - started,
                       train_img_per_s=seen / train_seconds)
            state.metrics.append(row)
            state.epochs_done = epoch + 1
            state.elapsed += row["epoch_seconds"]
            state.val_images = evaluated
            improved = val_acc > state.best_val_acc
            if improved:
                state.best_val_acc, state.best_epoch = val_acc, epoch + 1
            if cluster.writer:
                if improved:
                    engine.save_params(run.file(BEST_PARAMS))
                _save_checkpoint(run, engine, cfg, state)
                run.write_metrics(state.metrics)
            echo(epoch_line(row, cfg.epochs))
    if stop.is_set() and state.epochs_done < cfg.epochs:
        raise Stopped(f"stopped by {stop.name} during epoch {state.epochs_done + 1}; "
                      f"{run.file(CHECKPOINT)} holds {state.epochs_done} completed epoch(s), "
                      "and the interrupted epoch restarts on resume.\n"
                      f"Resume with: swishtrain resume {shlex.quote(str(run.path))}",
                      exit_code=stop.exit_code)
    return _finish(cfg, run, cluster, engine, data, state)


def _finish(cfg, run, cluster, engine, data, state):
    # -- 4. summary ---------------------------------------------------------------------
    summary = dict(model=cfg.model, best_val_acc=state.best_val_acc, best_epoch=state.best_epoch,
                   final_val_acc=state.metrics[-1]["val_acc"],
                   val_images=state.val_images or len(data.val),
                   val_is_test=data.val_is_test, test_acc=None, test_images=None,
                   epochs=state.epochs_done, total_seconds=state.elapsed,
                   workers=cluster.num_workers,
                   peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if not data.val_is_test:
        if data.test is None:
            echo(f"note: {data.source} has no test batch, so no test accuracy is reported")
        else:
            cluster.barrier()  # rank 0 has written best.params
            engine.load_params(run.file(BEST_PARAMS))
            _, summary["test_acc"], summary["test_images"] = _evaluate(engine, cluster, data.test)
            echo(f"Test accuracy of the best epoch ({state.best_epoch}): "
                 f"{summary['test_acc']:.4f} on {summary['test_images']} images")
    if cluster.distributed:  # replicas must agree; a differing digest means they drifted
        summary["params_sha1"] = params_digest(engine.net)
        echo(f"parameters sha1: {summary['params_sha1']}")
    if cluster.writer:
        run.write_metrics(state.metrics)  # again: a crash may have come between it and last.ckpt
        run.write_json(SUMMARY, summary)
    echo(f"Run folder: {run.path}")
    echo(f"Best validation accuracy: {state.best_val_acc:.4f} at epoch {state.best_epoch}")
    return summary


def _job_totals(cluster, results):
    """Training (loss sum, correct, images) of the epoch over all workers."""
    totals = [sum(r.loss_sum for r in results), sum(r.correct for r in results),
              sum(r.count for r in results)]
    if cluster.distributed and cluster.sync:
        return tuple(cluster.sum(totals))
    # locally num_workers is 1; dist_async has no collectives: this worker's figures, with the
    # image count scaled to the job so img/s is the job's
    return tuple(v * cluster.num_workers for v in totals)


def _evaluate(engine, cluster, split):
    """(mean loss, accuracy, images) over every image of split exactly once, job-wide."""
    if not (cluster.distributed and cluster.sync):
        # locally, and in dist_async where replicas differ: each process evaluates its own
        # network on the whole split (rank 0's figures are the ones recorded)
        return engine.evaluate(split)
    shard = Split(split.images[cluster.rank::cluster.num_workers],
                  split.labels[cluster.rank::cluster.num_workers])
    loss_sum, correct, n = cluster.sum(engine.evaluate_sums(shard))
    return loss_sum / n, correct / n, int(round(n))


def params_digest(net):
    """SHA-1 over every parameter's bytes, in name order."""
    h = hashlib.sha1()
    for name, p in sorted(net._collect_params_with_prefix().items()):
        h.update(name.encode())
        h.update(p.data().asnumpy().tobytes())
    return h.hexdigest()


def _save_checkpoint(run, engine, cfg, state):
    meta = dict(model=cfg.model, width=cfg.width, **state.__dict__)
    checkpoint.save(run.file(CHECKPOINT), engine.net, engine.trainer, meta)
