"""A run folder's layout and the one reader of its files.

    config.json   every resolved option, devices, data, versions; a session per start/resume
    metrics.csv   one row per completed epoch (METRIC_FIELDS)
    summary.json  best/final accuracies, written when the run ends
    best.params   weights of the best validation epoch (standard Gluon format)
    last.ckpt     everything needed to resume (training/checkpoint.py)
    tensorboard/  the curves of metrics.csv as TensorBoard event files, one file per session
                  (training/tensorboard.py): a view for `tensorboard --logdir`, not the record
    study.json    only in a study folder: its manifest (studies/manifest.py), a run per cell in
                  <model>/seed-<N>/ (seed-<N>/ in a study of one model, `train --seeds`)
    .sweep/       only in a study folder: each cell's state (<cell>.json), for --status; a
                  Slurm job array's script (slurm-<time>.sh), its tasks' output (*.log)
    .swishtrain   the marker written first into every folder swishtrain makes (its kind)
    .<file>.<pid>.tmp  an atomic write in progress (atomic.py); left behind only by a kill

training/recorder.py is the only writer; training (resume), analysis (compare, evaluate) and the
tests read through this module. No mxnet here.
"""
import csv
import datetime
import io
import json
import os
import re
from pathlib import Path

from train_cli.config import from_dict
from train_cli.errors import UserError
from train_cli.model.spec import MODEL_NAMES

CONFIG, METRICS, SUMMARY = "config.json", "metrics.csv", "summary.json"
STUDY = "study.json"
BEST_PARAMS, CHECKPOINT = "best.params", "last.ckpt"
MARKER = ".swishtrain"
TENSORBOARD = "tensorboard"  # a folder of a run's event files
EVENT_FILE = re.compile(r"events\.out\.tfevents\.")  # the names tensorboardX gives them
RUN_FILES = {MARKER, CONFIG, METRICS, SUMMARY, BEST_PARAMS, CHECKPOINT}
STUDY_FILES = {MARKER, STUDY}
SWEEP_STATE = ".sweep"
SEED_FOLDER = re.compile(r"seed-\d+$")
TMP_FILE = re.compile(r"\.(.+)\.(\d+)\.tmp$")  # atomic.atomic_write's temporary names
METRIC_FIELDS = ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc",
                 "epoch_seconds", "train_img_per_s", "skipped_steps"]
CURVES = METRIC_FIELDS[1:]  # the columns TensorBoard plots against the epoch
# summary.json's selected_on: the split the best epoch was selected on
SELECTED_ON_TEST, SELECTED_ON_HELD_OUT = "test split", "held-out validation split"


def selected_on(val_is_test):
    """The split a run's best epoch was selected on, as summary.json records it."""
    return SELECTED_ON_TEST if val_is_test else SELECTED_ON_HELD_OUT


RUN_STAMP_ENV = "SWISHTRAIN_RUN_STAMP"  # a launcher's stamp, given to every worker of its job


def run_stamp():
    """The timestamp a default run folder is named with: the launcher's (so that every worker
    of a job names the same folder), else now."""
    return os.environ.get(RUN_STAMP_ENV) or datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


def default_run_dir(model, stamp=None):
    """runs/<model>-<timestamp> (stamp: run_stamp() unless given)."""
    return f"runs/{model}-{stamp or run_stamp()}"


def best_row(rows):
    """The best epoch's row: the FIRST epoch that reached the highest validation accuracy.

    The one rule for "best epoch": training uses it to decide when best.params is written,
    compare uses it for runs that have no summary yet.
    """
    return max(rows, key=lambda r: r["val_acc"])  # max() keeps the first of equal rows


def format_metrics(rows):
    """metrics.csv text for a list of per-epoch dicts."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=METRIC_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        # rows of runs begun before a column existed leave it empty
        writer.writerow({k: f"{row[k]:.6g}" if isinstance(row.get(k), float) else row.get(k, "")
                         for k in METRIC_FIELDS})
    return out.getvalue()


def read_metrics(path):
    """Rows of a metrics.csv as dicts of numbers (epoch as int)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items() if v != ""}
            for row in rows]


def epochs_recorded(run_dir):
    """Completed epochs in a run folder (metrics.csv rows); None if it has none readable."""
    try:
        return len(read_metrics(Path(run_dir) / METRICS))
    except (OSError, ValueError):
        return None


def folder_kind(path):
    """"run" or "study" for a folder swishtrain made (its marker; for folders made before the
    marker existed, a config.json or study.json of swishtrain's own form), else None."""
    path = Path(path)
    marker = _json_object(path / MARKER)
    if marker.get("kind") in ("run", "study"):
        return marker["kind"]
    config, study = _json_object(path / CONFIG), _json_object(path / STUDY)
    if "swishtrain" in config and isinstance(config.get("config"), dict):
        return "run"
    if isinstance(study.get("seeds"), list) and isinstance(study.get("config"), dict):
        return "study"
    return None


def _json_object(path):
    """A regular file's JSON object, or {} (missing, unreadable, not JSON, not an object)."""
    try:
        if path.is_symlink() or not path.is_file():
            return {}
        value = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def own_entries(path):
    """Every entry of a run or study folder, deepest first, if swishtrain wrote them all;
    UserError naming the first one it did not write (or saying the folder is not one of its).

    What --overwrite may delete: nothing is followed through a symbolic link, and a folder
    holding anything else is refused whole.
    """
    path = Path(path)
    kind = folder_kind(path)
    if kind is None:
        raise UserError(f"--overwrite refused: {path} is not a folder swishtrain made (no "
                        f"{MARKER} marker, {CONFIG} or {STUDY} of its own), so nothing in it "
                        "was deleted; choose another --run-dir")
    entries = []
    for entry in sorted(path.iterdir()):
        if entry.is_symlink():
            foreign = True
        elif kind == "study" and entry.is_dir() and SEED_FOLDER.match(entry.name):
            foreign = False
            inner = list(entry.iterdir())
            if inner:  # a seed's run, begun or finished
                entries += own_entries(entry)
        elif kind == "study" and entry.is_dir() and entry.name in (SWEEP_STATE, *MODEL_NAMES):
            entries += _study_subfolder(entry)
            foreign = False
        elif kind == "run" and entry.name == TENSORBOARD and entry.is_dir():
            foreign = False
            for event_file in sorted(entry.iterdir()):  # event files only, none a link
                if event_file.is_symlink() or not event_file.is_file() or \
                        not EVENT_FILE.match(event_file.name):
                    _refuse(event_file, kind, path)
                entries.append(event_file)
        else:
            own = RUN_FILES if kind == "run" else STUDY_FILES
            foreign = not entry.is_file() or not (entry.name in own or TMP_FILE.match(entry.name))
        if foreign:
            _refuse(entry, kind, path)
        entries.append(entry)
    return entries


def _study_subfolder(path):
    """The entries of a study's .sweep/ (state files) or <model>/ (seed-<N>/ runs), deepest
    first; UserError (as own_entries) for anything else in them."""
    entries = []
    for entry in sorted(path.iterdir()):
        if path.name == SWEEP_STATE:
            ours = entry.is_file() and not entry.is_symlink() and \
                (entry.suffix in (".json", ".sh", ".log") or TMP_FILE.match(entry.name))
        else:
            ours = entry.is_dir() and not entry.is_symlink() and SEED_FOLDER.match(entry.name)
            if ours and any(entry.iterdir()):
                entries += own_entries(entry)
        if not ours:
            _refuse(entry, "study", path.parent)
        entries.append(entry)
    return entries


def _refuse(entry, kind, path):
    raise UserError(f"--overwrite refused: {entry} is not something swishtrain writes in a "
                    f"{kind} folder, so nothing in {path} was deleted; move it away, or choose "
                    "another --run-dir")


def is_study(path):
    """Whether path is a study folder (--seeds) rather than one run's folder."""
    return (Path(path) / STUDY).is_file()


class RunFolder:
    """Read access to a run (or study) folder; every read error is a one-line UserError."""

    def __init__(self, path):
        self.path = Path(path)

    def __str__(self):
        return str(self.path)

    def file(self, name):
        """Path of one of the folder's files."""
        return self.path / name

    def has(self, name):
        """Whether the folder holds that file."""
        return self.file(name).is_file()

    @classmethod
    def existing(cls, path, marker=CONFIG):
        """Open the folder of an earlier run (or, with marker=STUDY, of a study)."""
        path = Path(path)
        if not path.is_dir():
            raise UserError(f"run folder {path} does not exist; check the path")
        if not (path / marker).is_file():
            raise UserError(f"{path} is not a swishtrain run folder (no {marker})")
        return cls(path)

    def read_json(self, name):
        """A JSON file of the folder as a dict."""
        try:
            value = json.loads(self.file(name).read_text())
        except FileNotFoundError:
            raise UserError(f"{self.file(name)} is missing") from None
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{self.file(name)} is corrupt ({e})") from None
        if not isinstance(value, dict):
            raise UserError(f"{self.file(name)} is corrupt (not a JSON object)")
        return value

    def metrics(self):
        """The rows of metrics.csv (FileNotFoundError, ValueError, ... pass through)."""
        return read_metrics(self.file(METRICS))

    def config(self, saved=None):
        """The TrainConfig the run was trained with (from config.json, or saved: its content,
        read already)."""
        try:
            return from_dict((saved or self.read_json(CONFIG))["config"])
        except (KeyError, TypeError, UserError) as e:
            raise UserError(f"{self.file(CONFIG)} is not a valid swishtrain config ({e})") \
                from None

    def is_finished_quietly(self):
        """is_finished(), False for a folder that is missing or unreadable."""
        try:
            return self.has(CONFIG) and self.is_finished()
        except (UserError, KeyError, TypeError):
            return False

    def is_finished(self):
        """True when the run has its summary for all the epochs it was asked for."""
        if not self.has(SUMMARY):
            return False
        return self.read_json(SUMMARY).get("epochs") == self.read_json(CONFIG)["config"]["epochs"]
