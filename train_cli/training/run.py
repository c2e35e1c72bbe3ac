"""One training run: a resolved RunSpec in, a finished run folder out.

    prepare   join the job, pick the devices, load the data
    build     network and optimiser, fresh or restored from last.ckpt
    epochs    train_epoch -> sync BatchNorm statistics -> evaluate -> record
    finish    test accuracy of the best epoch (held-out validation only), summary

Every epoch ends with a checkpoint, so a run resumes from its last completed epoch whatever
stops it. In a distributed job every worker runs this; the process group answers every question
about the job, and only the primary's recorder writes the run folder.
"""
import dataclasses
import resource
import time
from dataclasses import dataclass, field

from train_cli import runspec, streams
from train_cli.cluster.process_group import LocalGroup, join
from train_cli.data.cifar10 import default_data_dir, load_cifar10
from train_cli.data.identity import check_same_data
from train_cli.data.loader import Prefetcher, train_batches
from train_cli.errors import Stopped, UserError
from train_cli.model.vgg import shape_model
from train_cli.runfolder import BEST_PARAMS, CHECKPOINT, CONFIG, RunFolder, best_row, selected_on
from train_cli.runspec import rules
from train_cli.training import checkpoint, precision
from train_cli.training.devices import make_contexts, preflight_memory
from train_cli.training.engine import Engine
from train_cli.training.interrupt import StopRequests
from train_cli.training.progress import EpochProgress, echo, epoch_line, print_header, set_prefix
from train_cli.training.recorder import check_new, check_writable, recorder_for
from train_cli.training.schedule import ServerSchedule, lr_at


@dataclass
class RunState:
    """What the checkpoint remembers besides tensors."""
    epochs_done: int = 0
    best_val_acc: float = -1.0
    best_epoch: int = 0
    elapsed: float = 0.0
    metrics: list = field(default_factory=list)
    val_images: int = 0  # images the last validation actually evaluated (job-wide)
    loss_scale: dict = field(default_factory=dict)  # float16's dynamic loss scale

    @classmethod
    def from_meta(cls, meta):
        """The state a checkpoint's meta record holds."""
        return cls(**{k: meta[k] for k in cls.__dataclass_fields__ if k in meta})

    def meta(self, cfg):
        """The checkpoint's meta record for this state."""
        return dict(model=cfg.model, width=cfg.width, **dataclasses.asdict(self))


def train(spec, overwrite=False, progress_bar=None):
    """Train the new run spec describes (runspec.new_run); return its summary dict."""
    check_new(spec.run_dir, overwrite)  # fail before any slow work, and before anything is made
    precision.check(spec.config.dtype)  # this CPU can run it
    engine, data = _prepare(spec)
    recorder = recorder_for(spec, engine.group, overwrite=overwrite)
    return _epochs(spec, engine, data, recorder, RunState(), progress_bar)


def resume(path, overrides=None, progress_bar=None):
    """Continue a run from its last completed epoch (a study: studies.sweep.resume)."""
    folder = RunFolder.existing(path)
    check_writable(folder.path)  # a resume rewrites config.json: fail before any slow work
    saved = folder.read_json(CONFIG)
    spec = runspec.resumed_run(folder.path, folder.config(saved), overrides or {},
                               trained_workers=saved.get("workers", 1))
    cfg = spec.config
    precision.check(cfg.dtype)  # this CPU can run it: before the checkpoint is read
    ckpt = checkpoint.load(folder.file(CHECKPOINT))
    if ckpt.meta["model"] != cfg.model:
        raise UserError(f"{folder.file(CHECKPOINT)} holds a {ckpt.meta['model']!r} model but "
                        f"{folder.file(CONFIG)} says {cfg.model!r}; the folder is inconsistent")
    rules.check_resume(folder, cfg, saved, ckpt.meta["epochs_done"], streams.VERSION)
    engine, data = _prepare(spec)
    check_same_data(folder, saved, data,  # before anything is written
                    warn=lambda m: echo(m, err=True) if engine.group.is_primary else None)
    checkpoint.restore(ckpt, engine.net, engine.trainer, folder.file(CHECKPOINT))
    engine.loss_scale.load(ckpt.meta.get("loss_scale"))
    recorder = recorder_for(spec, engine.group)
    state = RunState.from_meta(ckpt.meta)
    return _epochs(spec, engine, data, recorder, state, progress_bar)


def preflight(spec):
    """Every check a run makes before it builds anything (devices, memory, data, the batch),
    for a study to make before it replaces an earlier one (--overwrite)."""
    precision.check(spec.config.dtype)
    _checked(spec, LocalGroup())


def _prepare(spec):
    """Join the job, pass the checks (loading the data), set the process up, build the engine."""
    group = join(spec.job)
    set_prefix(group.prefix)
    contexts, data = _checked(spec, group)
    precision.set_up(spec)  # process-wide (bfloat16), before anything is built
    cfg, schedule = spec.config, None
    if spec.job.updates_on_servers:  # the servers count updates: batches x workers per epoch
        schedule = ServerSchedule(cfg.lr, cfg.lr_steps, cfg.lr_factor, updates_per_epoch=len(
            data.train) // spec.global_batch * spec.job.workers)
    return Engine(spec, contexts, group, server_schedule=schedule), data


def _checked(spec, group):
    """(contexts, data) once the devices, memory, data and batch checks have passed."""
    cfg = spec.config
    contexts = make_contexts(cfg.gpus, cfg.cpu_devices, tf32=cfg.tf32)  # the GPU preflight
    preflight_memory(shape_model(cfg.model, cfg.width), cfg, contexts)  # before any allocation

    def load():
        return load_cifar10(cfg.data_dir or default_data_dir(), cfg.val_split, cfg.test_split,
                            warn=lambda m: echo(m, err=True) if group.is_primary else None)
    # the primary first: it may download and unpack the data set that the others then read
    data = load() if group.is_primary else None
    group.barrier()
    data = data or load()
    if len(data.train) < spec.global_batch:
        raise UserError(f"only {len(data.train)} training images, fewer than one batch of "
                        f"{spec.global_batch}; lower --batch-size or --val-split")
    return contexts, data


def _epochs(spec, engine, data, recorder, state, progress_bar):
    """The epoch loop, from the state's next epoch to the spec's epochs; then the summary."""
    cfg, group = spec.config, engine.group
    recorder.write_config(spec, engine.contexts, data)
    if not spec.resumed:  # epoch 0: a run stopped during epoch 1 can be resumed too
        recorder.save_checkpoint(engine, state.meta(cfg))
    print_header(spec, recorder.path, engine, data, state)
    batches_per_epoch = len(data.train) // spec.global_batch
    with StopRequests() as stop:
        for epoch in range(state.epochs_done, cfg.epochs):
            if stop.is_set():  # asked during the last evaluation or record: stop between epochs
                break
            lr = lr_at(epoch, cfg.lr, cfg.lr_steps, cfg.lr_factor)
            started = time.perf_counter()
            # train: every worker walks the same shuffled order and takes its slice of each batch
            bar = EpochProgress(epoch, cfg.epochs, batches_per_epoch, lr, progress_bar)
            with bar, Prefetcher(train_batches(data.train, engine.batch_size, cfg.seed, epoch,
                                               cfg.augment, *group.train_slice,
                                               cfg.shuffle, cfg.input_norm)) as batches:
                record = engine.train_epoch(batches, lr, cfg.seed, epoch, stop.is_set,
                                            bar.update)
            if record.stopped:
                break
            train_seconds = time.perf_counter() - started
            # sync BatchNorm statistics, so every replica evaluates (and saves) one network
            engine.sync_batchnorm_stats()
            # evaluate: every validation image exactly once, over the whole job
            val_loss, val_acc, state.val_images = engine.evaluate(data.val)
            engine.check_finite(epoch, val_loss)  # nothing diverged is ever saved
            # record
            row = dict(epoch=epoch + 1, lr=lr, train_loss=record.loss_sum / record.images,
                       train_acc=record.correct / record.images, val_loss=val_loss,
                       val_acc=val_acc, epoch_seconds=time.perf_counter() - started,
                       train_img_per_s=record.images / train_seconds,
                       skipped_steps=record.skipped_steps)  # float16 overflows
            state.metrics.append(row)
            state.epochs_done, state.elapsed = epoch + 1, state.elapsed + row["epoch_seconds"]
            state.loss_scale = engine.loss_scale.state()
            improved = best_row(state.metrics) is row
            if improved:
                state.best_val_acc, state.best_epoch = val_acc, epoch + 1
            recorder.record_epoch(engine, state.metrics, state.meta(cfg), improved)
            echo(epoch_line(row, cfg.epochs))
        if stop.is_set() and state.epochs_done < cfg.epochs:
            how = runspec.resume_command(recorder.path, spec.job.workers, spec.job.distributed)
            raise Stopped(f"stopped by {stop.name} during epoch {state.epochs_done + 1}; "
                          f"{recorder.path / CHECKPOINT} holds {state.epochs_done} completed "
                          "epoch(s), and the interrupted epoch restarts on resume.\n"
                          f"Resume with: {how}", exit_code=stop.exit_code)
        summary = _finish(spec, engine, data, recorder, state)
        if stop.is_set():  # asked during the last epoch's evaluation or the summary: honoured
            raise Stopped(f"stopped by {stop.name} as the run ended; {recorder.path} is "
                          "complete", exit_code=stop.exit_code)
    return summary


def _finish(spec, engine, data, recorder, state):
    """The summary: best and final accuracy, the best epoch's test accuracy where it is honest."""
    cfg = spec.config
    summary = dict(model=cfg.model, best_val_acc=state.best_val_acc, best_epoch=state.best_epoch,
                   final_val_acc=state.metrics[-1]["val_acc"],
                   val_images=state.val_images or len(data.val),
                   val_is_test=data.val_is_test, test_acc=None, test_images=None,
                   epochs=state.epochs_done, total_seconds=state.elapsed,
                   workers=spec.job.workers,
                   peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if not data.val_is_test:
        if data.test is None:
            echo(f"note: {data.source} has no test batch, so no test accuracy is reported")
        else:
            engine.group.barrier()  # the primary has written best.params
            engine.load_params(recorder.path / BEST_PARAMS)
            _, summary["test_acc"], summary["test_images"] = engine.evaluate(data.test)
            echo(f"Test accuracy of the best epoch ({state.best_epoch}): "
                 f"{summary['test_acc']:.4f} on {summary['test_images']} images")
    if spec.job.distributed:  # replicas must agree; a differing digest means drift
        summary["params_sha1"] = engine.params_digest()
        echo(f"parameters sha1: {summary['params_sha1']}")
    summary["selected_on"] = selected_on(data.val_is_test)
    recorder.finish(state.metrics, summary)
    echo(f"Run folder: {recorder.path}")
    if data.val_is_test:  # the mission's last line stays; the line before it says what it is
        echo(f"note: validation is the test split ({summary['val_images']:,} images), so the best "
             "epoch was selected on it and the accuracy below is an optimistic test figure; "
             "hold out a validation split (--val-split 5000) for an unbiased one")
    echo(f"Best validation accuracy: {state.best_val_acc:.4f} at epoch {state.best_epoch}")
    return summary
