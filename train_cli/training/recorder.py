"""The run directory: what a run leaves behind, written atomically.

    config.json   every resolved option, library versions, devices
    metrics.csv   one row per completed epoch
    summary.json  best/final accuracies, written when the run ends
    best.params   weights of the best validation epoch (standard Gluon format)
    last.ckpt     everything needed to resume (see checkpoint.py)

Every write goes to a temporary file in the same folder, is fsynced, then os.replace()d over the
target, so a crash at any instant leaves either the old or the new file, never half of one.
"""
import csv
import errno
import io
import json
import os
import shutil
from pathlib import Path

from train_cli.errors import UserError

CONFIG, METRICS, SUMMARY = "config.json", "metrics.csv", "summary.json"
STUDY = "study.json"  # a study folder (one seed-<N>/ run folder per seed), see study.py
BEST_PARAMS, CHECKPOINT = "best.params", "last.ckpt"
METRIC_FIELDS = ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc",
                 "epoch_seconds", "train_img_per_s"]


def atomic_write(path, write):
    """Create `path` via write(tmp_path): tmp file, fsync, os.replace. Errors become UserError."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except Exception as e:
        tmp.unlink(missing_ok=True)
        # mx.nd.save reports a failed write as MXNetError; anything else is a bug, not I/O
        if not isinstance(e, OSError) and type(e).__name__ != "MXNetError":
            raise
        if isinstance(e, OSError) and e.errno == errno.ENOSPC or _disk_full(path.parent):
            raise UserError(f"no space left on the device while writing {path}; earlier files "
                            "there are intact: free some space, then resume the run") from None
        raise UserError(f"cannot write {path} ({_reason(e)}); earlier files there are "
                        "intact") from None


def _reason(error):
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    lines = str(error).strip().splitlines()
    return lines[-1] if lines else type(error).__name__


def atomic_write_bytes(path, data):
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_json(path, obj):
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def _fsync_dir(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _disk_full(folder):
    try:
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False


def format_metrics(rows):
    """metrics.csv text for a list of per-epoch dicts."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=METRIC_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row[k]) for k in METRIC_FIELDS})
    return out.getvalue()


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def read_metrics(path):
    """Rows of a metrics.csv as dicts of numbers (epoch as int)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()} for row in rows]


class RunDir:
    """A run's folder and the files in it."""

    def __init__(self, path):
        self.path = Path(path)

    def file(self, name):
        return self.path / name

    @staticmethod
    def check_new(path, overwrite=False):
        """Raise UserError unless path can become a fresh run folder (changes nothing)."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise UserError(f"--run-dir {path} is a file; choose a folder")
        if path.is_dir() and any(path.iterdir()):
            if not overwrite:
                raise UserError(f"run folder {path} is not empty; choose another --run-dir, "
                                f"continue it with `swishtrain resume {path}`, or replace it "
                                "with --overwrite")
            if not ((path / CONFIG).is_file() or (path / STUDY).is_file()):
                raise UserError(f"--overwrite refused: {path} does not look like a run folder "
                                f"(no {CONFIG} or {STUDY}), so nothing in it was deleted")

    @classmethod
    def create(cls, path, overwrite=False):
        """Make a fresh run folder; a non-empty one is refused unless overwrite is explicit."""
        path = Path(path)
        cls.check_new(path, overwrite)
        if path.is_dir() and any(path.iterdir()):
            shutil.rmtree(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create run folder {path}: {e.strerror}") from None
        return cls(path)

    @classmethod
    def existing(cls, path, marker=CONFIG):
        """Open the folder of an earlier run (or, with marker=STUDY, of a study)."""
        path = Path(path)
        if not path.is_dir():
            raise UserError(f"run folder {path} does not exist; check the path")
        if not (path / marker).is_file():
            raise UserError(f"{path} is not a swishtrain run folder (no {marker})")
        return cls(path)

    def write_json(self, name, obj):
        atomic_write_json(self.file(name), obj)

    def read_json(self, name):
        try:
            return json.loads(self.file(name).read_text())
        except FileNotFoundError:
            raise UserError(f"{self.file(name)} is missing") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{self.file(name)} is corrupt ({e})") from None

    def write_metrics(self, rows):
        atomic_write_bytes(self.file(METRICS), format_metrics(rows).encode())
