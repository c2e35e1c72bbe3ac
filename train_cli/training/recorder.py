"""The run folder's only writer, on the primary process only (as timm's CheckpointSaver).

RunRecorder writes config.json, metrics.csv, best.params, last.ckpt and summary.json (layout in
runfolder.py), each through the package's one atomic write, so a crash at any instant leaves
every file either as it was or complete; and, as a view of metrics.csv, TensorBoard event files
(tensorboard.py: appended, and never a reason to stop). In a distributed job the other workers
get a NoRecorder: they hold no folder and write nothing, and the loop never asks which one it has.
"""
import datetime
import os
import platform
import shlex
import sys
from pathlib import Path

import mxnet as mx
import numpy as np

from train_cli import __version__, streams, threads
from train_cli.atomic import atomic_write, atomic_write_bytes, atomic_write_json
from train_cli.config import to_dict
from train_cli.errors import UserError
from train_cli.model.vgg import count_params
from train_cli.runfolder import (
    BEST_PARAMS,
    CHECKPOINT,
    CONFIG,
    MARKER,
    METRICS,
    STUDY,
    SUMMARY,
    TMP_FILE,
    RunFolder,
    format_metrics,
    own_entries,
)
from train_cli.training import checkpoint
from train_cli.training.tensorboard import EventWriter


def check_new(path, overwrite=False):
    """What making path a fresh run folder would delete (only entries swishtrain wrote, see
    runfolder.own_entries); UserError if it cannot be made. Changes nothing."""
    path = Path(path)
    try:
        if path.is_symlink() and not path.exists():
            raise UserError(f"--run-dir {path} is a symbolic link to nothing; remove it or "
                            "choose another --run-dir")
        if path.exists() and not path.is_dir():
            raise UserError(f"--run-dir {path} is a file; choose a folder")
        if not (path.is_dir() and any(path.iterdir())):
            check_writable(path)
            return []
    except OSError as e:  # a name too long, a folder that cannot be read, ...
        raise UserError(f"--run-dir {path} cannot be used ({e.strerror}); choose another "
                        "--run-dir") from None
    if not overwrite:
        raise UserError(f"run folder {path} is not empty; choose another --run-dir, "
                        f"continue it with `swishtrain resume {path}`, or replace it "
                        "with --overwrite")
    if path.is_symlink():  # never delete through a link, whatever it points to
        raise UserError(f"--overwrite refused: --run-dir {path} is a symbolic link, so "
                        "nothing was deleted; give the folder itself")
    entries = own_entries(path)
    check_writable(path)
    return entries


def check_writable(path):
    """UserError, before any slow work, when path (or the folder it would be made in) cannot
    be written: a read-only file system, or no permission."""
    path = Path(path).absolute()
    where = next(p for p in [path, *path.parents] if p.exists())
    if not where.is_dir():
        raise UserError(f"--run-dir {path} is inside {where}, which is a file; choose a folder")
    if not os.access(where, os.W_OK | os.X_OK):
        raise UserError(f"cannot write in {where} (a read-only file system, or no permission); "
                        "earlier files there are intact: choose another --run-dir, or make it "
                        "writable")


def make_folder(path, overwrite=False, kind="run"):
    """Make a fresh, empty folder for a run or a study, marked as swishtrain's; a non-empty one
    needs overwrite, and is emptied only of what swishtrain wrote there."""
    path = Path(path)
    try:
        for entry in check_new(path, overwrite):
            entry.rmdir() if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create run folder {path}: {e.strerror}") from None
    atomic_write_json(path / MARKER, {"kind": kind, "swishtrain": __version__})
    return RunFolder(path)


def create_study(path, manifest, overwrite=False):
    """A study folder with its study.json (the manifest of every cell first, so an interrupted
    study resumes all)."""
    folder = make_folder(path, overwrite, kind="study")
    write_study(folder.path, manifest)
    return folder


def write_study(path, manifest):
    """study.json: the study's manifest (studies/manifest.py: its grid, every cell's options)."""
    atomic_write_json(Path(path) / STUDY, manifest)


def write_sweep_file(path, content):
    """A file of a study's .sweep/ folder: a cell's state (a dict, as JSON: running, done,
    failed, stopped) or an executor's script (text)."""
    Path(path).parent.mkdir(exist_ok=True)
    if isinstance(content, dict):
        atomic_write_json(path, content)
    else:
        atomic_write_bytes(path, content.encode())


def recorder_for(spec, group, overwrite=False):
    """The primary process's RunRecorder of spec's folder (making it for a new run); others get a
    NoRecorder."""
    if not group.is_primary:
        return NoRecorder(spec.run_dir)
    if not spec.resumed:
        return RunRecorder(make_folder(spec.run_dir, overwrite))
    folder = RunFolder.existing(spec.run_dir)
    remove_leftovers(folder.path)
    return RunRecorder(folder)


def remove_leftovers(path):
    """Delete the temporary files of writes that a kill interrupted (atomic.py names them
    .<file>.<pid>.tmp); a process that is still running keeps its own."""
    for entry in Path(path).iterdir():
        match = TMP_FILE.match(entry.name)
        if match and entry.is_file() and not entry.is_symlink() and \
                not _running(int(match.group(2))):
            entry.unlink(missing_ok=True)


def _running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class RunRecorder:
    """Writes one run folder: its configuration, each epoch, and the end of the run."""

    def __init__(self, folder):
        self.folder = folder
        self.path = folder.path
        self.events = EventWriter(folder.path)

    def write_config(self, spec, contexts, data):
        """config.json: every resolved option, devices, the job, data (with each split's size and
        digest), versions; one entry per session."""
        cfg, resumed, workers = spec.config, spec.resumed, spec.job.workers
        previous = self.folder.read_json(CONFIG) if resumed else {}
        sessions = previous.get("sessions", []) + [dict(
            started=datetime.datetime.now().isoformat(timespec="seconds"),
            command=" ".join(shlex.quote(a) for a in ["swishtrain", *sys.argv[1:]]),
            resumed=resumed, workers=workers)]
        atomic_write_json(self.folder.file(CONFIG), dict(
            swishtrain=__version__, random_streams=streams.VERSION, config=to_dict(cfg),
            devices=[str(c) for c in contexts], workers=workers, job_gpus=list(spec.job.gpus),
            global_batch_size=spec.global_batch, parameters=count_params(cfg.model, cfg.width),
            data=dict(source=data.source, train_images=len(data.train),
                      val_images=len(data.val), val_is_test=data.val_is_test,
                      test_images=len(data.test) if data.test is not None else None,
                      splits=data.fingerprint),  # sizes and sha256: resume checks them
            versions=dict(mxnet=mx.__version__, numpy=np.__version__,
                          python=platform.python_version()),
            threads=threads.current(), sessions=sessions))

    def save_checkpoint(self, engine, meta):
        """last.ckpt: parameters, optimiser state and meta, to resume after this epoch."""
        checkpoint.save(self.folder.file(CHECKPOINT), engine.net, engine.trainer, meta)

    def record_epoch(self, engine, metrics, meta, improved):
        """After an epoch: best.params if it improved, then last.ckpt, then metrics.csv, then
        the TensorBoard events (after last.ckpt: never an epoch the checkpoint lacks)."""
        if improved:
            atomic_write(self.folder.file(BEST_PARAMS), engine.save_params)
        self.save_checkpoint(engine, meta)
        self.write_metrics(metrics)
        self.events.record(metrics)

    def write_metrics(self, metrics):
        """metrics.csv: one row per completed epoch."""
        atomic_write_bytes(self.folder.file(METRICS), format_metrics(metrics).encode())

    def finish(self, metrics, summary):
        """The end of the run: metrics.csv and the events again (a crash may have come between
        them and last.ckpt; a session that recorded every epoch writes no event twice), then
        summary.json."""
        self.write_metrics(metrics)
        self.events.record(metrics)
        self.events.close()
        atomic_write_json(self.folder.file(SUMMARY), summary)


class NoRecorder:
    """What a non-primary worker holds instead of a RunRecorder: it writes nothing."""

    def __init__(self, path):
        self.path = Path(path)

    def write_config(self, *args, **kwargs):
        """Nothing: rank 0 writes config.json."""

    save_checkpoint = record_epoch = write_metrics = finish = write_config
