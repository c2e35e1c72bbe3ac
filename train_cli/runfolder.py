"""A run folder's layout and the one reader of its files.

    config.json   every resolved option, devices, data, versions; a session per start/resume
    metrics.csv   one row per completed epoch (METRIC_FIELDS)
    summary.json  best/final accuracies, written when the run ends
    best.params   weights of the best validation epoch (standard Gluon format)
    last.ckpt     everything needed to resume (training/checkpoint.py)
    study.json    only in a study folder: its seeds and options (one seed-<N>/ run per seed)

training/recorder.py is the only writer; training (resume), analysis (compare, evaluate) and the
tests read through this module. No mxnet here.
"""
import csv
import datetime
import io
import json
import os
from pathlib import Path

from train_cli.config import from_dict
from train_cli.errors import UserError

CONFIG, METRICS, SUMMARY = "config.json", "metrics.csv", "summary.json"
STUDY = "study.json"
BEST_PARAMS, CHECKPOINT = "best.params", "last.ckpt"
METRIC_FIELDS = ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc",
                 "epoch_seconds", "train_img_per_s", "skipped_steps"]


def default_run_dir(model, stamp=None):
    """runs/<model>-<timestamp>; a launcher sets the stamp (SWISHTRAIN_RUN_STAMP) so that every
    worker of a job names the same folder."""
    stamp = stamp or os.environ.get("SWISHTRAIN_RUN_STAMP") or \
        datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"runs/{model}-{stamp}"


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

    def config(self):
        """The TrainConfig the run was trained with (from config.json)."""
        try:
            return from_dict(self.read_json(CONFIG)["config"])
        except (KeyError, TypeError, UserError) as e:
            raise UserError(f"{self.file(CONFIG)} is not a valid swishtrain config ({e})") \
                from None

    def is_finished(self):
        """True when the run has its summary for all the epochs it was asked for."""
        if not self.has(SUMMARY):
            return False
        return self.read_json(SUMMARY).get("epochs") == self.read_json(CONFIG)["config"]["epochs"]
