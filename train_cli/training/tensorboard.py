"""A run's curves as TensorBoard event files in RUN_DIR/tensorboard/, for `tensorboard --logdir`.

The recorder's view of metrics.csv: one scalar per curve column (runfolder.CURVES, tagged with
the column's name), step = the epoch, written after metrics.csv and flushed at once, so a live
TensorBoard shows each epoch as it ends.

Resumes. Every session (a start, or a resume) writes a file of its own; TensorBoard reads a
folder's files in name order (tensorboardX's names begin with the time; ours end with it in
nanoseconds) and merges them. A session's first write is a SessionLog START at step 1, then every
epoch the checkpoint holds, then its own epochs as they end. For a repeated step TensorBoard
shows the value written last (the START makes its Python reader drop what earlier files hold
from step 1 on; its Rust loader drops every record whose step is not below a newer record's),
so each epoch shows once, with the checkpoint's value, as in metrics.csv. An epoch whose event
was written but whose checkpoint was not would be recomputed and its later value shown (not
possible today: the events come after last.ckpt); one whose last.ckpt was written but whose event
was not (a kill between the two) is filled in by the next session.

Failures. These files are a view; last.ckpt and metrics.csv are the record. They are appended,
not written atomically, and an error writing them (disk full, say) is one warning, after which
this session writes no more events and training goes on; the next session's file holds the whole
history again. A kill in mid-write leaves a truncated last record, which TensorBoard's readers
skip.
"""
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from train_cli.errors import last_line
from train_cli.runfolder import CURVES, TENSORBOARD
from train_cli.training.progress import echo


class EventWriter:
    """Appends a run's curves to this session's event file; never raises."""

    def __init__(self, run_dir, warn=None):
        self.folder = Path(run_dir) / TENSORBOARD
        self.warn = warn or (lambda message: echo(message, err=True))
        self.file = None  # opened at the first epoch to record, not for a session that has none
        self.written = 0  # rows of metrics this session's file holds
        self.failed = False

    def record(self, metrics):
        """Append the rows of metrics (every epoch so far) that this session's file lacks, and
        flush them to disk."""
        if self.failed or self.written >= len(metrics):
            return
        # a view must not stop hours of training: any error (not only OSError: a broken
        # install, a protobuf mismatch) is said once, with its type, and events stop
        try:
            if self.file is None:
                self.file = _EventFile(self.folder)
            for row in metrics[self.written:]:
                self.file.scalars(row["epoch"], {k: row[k] for k in CURVES if k in row})
            self.file.flush()
            self.written = len(metrics)
        except Exception as e:
            self.failed = True
            self.warn(_warning(self.folder, e))
            self.close()

    def close(self):
        """Close this session's file (each epoch is on disk already); never raises."""
        file, self.file = self.file, None
        if file is not None:
            try:
                file.close()
            except Exception:  # each epoch is flushed already, or was warned about
                pass


class _EventFile:
    """One session's event file, written synchronously: tensorboardX's SummaryWriter hands
    events to a background thread, whose flush() does not wait for them and whose errors never
    reach the caller; its EventsWriter underneath writes and flushes (with fsync) in this one."""

    def __init__(self, folder):
        tbx = _tensorboardx()
        self.event, self.scalar = tbx.Event, tbx.scalar
        folder.mkdir(exist_ok=True)
        # the suffix orders two sessions that start within the same second
        self.writer = tbx.EventsWriter(str(folder / "events"), f".{time.time_ns()}")
        self.writer.write_event(tbx.Event(wall_time=time.time(), step=1, session_log=(
            tbx.SessionLog(status=tbx.SessionLog.START))))

    def scalars(self, step, values):
        """One event per value, at step."""
        for tag, value in values.items():
            self.writer.write_event(self.event(wall_time=time.time(), step=step,
                                               summary=self.scalar(tag, float(value))))

    def flush(self):
        """Everything written so far, on disk."""
        self.writer.flush()

    def close(self):
        """Flush and close."""
        self.writer.close()


def _tensorboardx():
    """The few parts of tensorboardX used here, imported without PyTorch."""
    # tensorboardX's package import tries `import torch` for helpers this never uses: seconds
    # of start-up, and PyTorch's OpenMP runtime beside MXNet's, wherever torch is installed
    # (`make test` installs it). A None in sys.modules makes that import fail at once.
    hide = "torch" not in sys.modules
    if hide:
        sys.modules["torch"] = None
    try:
        from tensorboardX import event_file_writer, summary
        from tensorboardX.proto import event_pb2
    finally:
        if hide and sys.modules.get("torch", False) is None:
            del sys.modules["torch"]
    return SimpleNamespace(EventsWriter=event_file_writer.EventsWriter, Event=event_pb2.Event,
                           SessionLog=event_pb2.SessionLog, scalar=summary.scalar)


def _warning(folder, error):
    if isinstance(error, ModuleNotFoundError) and error.name == "tensorboardX":
        return ("warning: tensorboardX is not installed, so this run writes no TensorBoard "
                "event files (`make install`, or pip install tensorboardX)")
    reason = error.strerror if isinstance(error, OSError) and error.strerror else \
        f"{type(error).__name__}: {last_line(error)}"
    return (f"warning: cannot write TensorBoard events in {folder} ({reason}); training goes "
            "on without them (metrics.csv has every epoch) and the next resume writes them anew")
