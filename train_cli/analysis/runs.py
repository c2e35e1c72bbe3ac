"""Finding and reading the run folders `compare` is given: one Run per readable folder.

A run folder is a folder with config.json (read through runfolder.py). A folder that holds
nothing to compare raises Unreadable with the reason, which compare lists instead of stopping.
Pure: reads files, returns data; no mxnet, no printing.
"""
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from train_cli.config import from_dict, to_dict
from train_cli.errors import UserError
from train_cli.runfolder import CONFIG, METRICS, SUMMARY, RunFolder, best_row

NEEDED_COLUMNS = ("epoch", "train_loss", "val_acc", "epoch_seconds")


class Unreadable(Exception):
    """A run folder with nothing to compare: its path and why (compare skips it, never stops)."""

    def __init__(self, path, reason):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


@dataclass
class Run:
    """One run folder's results; `note` says what is missing or unusual about it.

    `job` is config.json apart from "config": workers, global_batch_size, data (may be absent
    in folders written before they were recorded).
    """
    path: str
    config: dict
    metrics: list
    summary: dict | None
    note: str = ""
    job: dict = field(default_factory=dict)

    @property
    def in_progress(self):
        """Whether the run has no summary.json yet."""
        return self.summary is None

    @property
    def epochs_done(self):
        """Completed epochs: the summary's count, or the rows of metrics.csv so far."""
        return len(self.metrics) if self.in_progress else self.summary["epochs"]

    @property
    def best_val_acc(self):
        """The highest validation accuracy so far."""
        return self.summary["best_val_acc"] if self.summary else self._best_row()["val_acc"]

    @property
    def best_epoch(self):
        """The epoch that reached best_val_acc first."""
        return self.summary["best_epoch"] if self.summary else self._best_row()["epoch"]

    @property
    def final_val_acc(self):
        """The validation accuracy of the last completed epoch."""
        return self.summary["final_val_acc"] if self.summary else self.metrics[-1]["val_acc"]

    @property
    def test_acc(self):
        """Test accuracy at the best validation epoch (None until the run ends, or no test)."""
        return (self.summary or {}).get("test_acc")

    @property
    def seconds_per_epoch(self):
        """Mean wall time of an epoch."""
        if self.metrics:
            return float(np.mean([r["epoch_seconds"] for r in self.metrics]))
        return self.summary["total_seconds"] / self.summary["epochs"]

    @property
    def num_gpus(self):
        """How many GPUs trained the run (0: CPU)."""
        return len(self.config.get("gpus") or [])

    @property
    def workers(self):
        """Worker processes of the job (1 unless launched with -n N)."""
        return self.job.get("workers") or (self.summary or {}).get("workers") or 1

    @property
    def global_batch_size(self):
        """Images per optimiser step of the whole job."""
        # older folders lack it: batch_size is per GPU (split over --cpu-devices), per worker
        return self.job.get("global_batch_size") or (
            self.config.get("batch_size", 0) * max(1, self.num_gpus) * self.workers)

    @property
    def val_is_test(self):
        """Whether the run validated on the test split (--val-split 0)."""
        for source in (self.summary or {}, self.job.get("data") or {}):
            if isinstance(source.get("val_is_test"), bool):
                return source["val_is_test"]
        return self.config.get("val_split", 0) == 0  # the rule training applies

    @property
    def val_images(self):
        """Images of the validation split (None if the folder does not say)."""
        return self._images("val_images")

    @property
    def test_images(self):
        """Images of the test split (None if there is none or the folder does not say)."""
        if self.val_is_test:
            return self.val_images  # one split: the final val acc is measured on the test split
        return self._images("test_images")

    def _images(self, key):
        # summary.json counts the images evaluated; config.json the split's size
        return (self.summary or {}).get(key) or (self.job.get("data") or {}).get(key)

    def _best_row(self):
        return best_row(self.metrics)  # the rule training uses to pick the best epoch


def find_run_dirs(paths):
    """Run folders at or under each path, in the order given (each folder once)."""
    found = []
    for given in paths:
        root = Path(given)
        if not root.exists():
            raise UserError(f"{root} does not exist; pass run folders or folders that hold them")
        if root.is_file():
            if root.name != CONFIG:
                raise UserError(f"{root} is a file; pass the run folder that holds it")
            root = root.parent
        under = sorted(Path(d) for d, _, files in os.walk(root) if CONFIG in files)
        if not under:
            raise UserError(f"no run folders (folders with {CONFIG}) found under {root}; "
                            "pass the --run-dir of a run, or a folder that holds runs")
        found += [d for d in under if d.resolve() not in {f.resolve() for f in found}]
    # A folder with config.json but no results that holds runs is a container (e.g. the parent
    # of seed-<N>/ folders), not a run of its own.
    return [d for d in found
            if _has_results(d) or not any(o != d and d in o.parents for o in found)]


def _has_results(folder):
    return (folder / METRICS).exists() or (folder / SUMMARY).exists()


def load_run(folder):
    """The Run in `folder`; Unreadable when the folder holds nothing to compare."""
    run = RunFolder(folder)
    config = _read_json(run, CONFIG)
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        raise Unreadable(str(folder), f"{CONFIG} is unreadable or not a swishtrain config; "
                                      "skipped")
    try:  # options added since the run was made take their defaults, as the run had them
        config["config"] = to_dict(from_dict(config["config"]))
    except (UserError, TypeError) as e:
        raise Unreadable(str(folder), f"{CONFIG} holds an invalid option ({e}); skipped") \
            from None
    summary = _read_json(run, SUMMARY) if run.has(SUMMARY) else None
    notes = []
    if run.has(SUMMARY) and not _valid_summary(summary):
        summary = None
        notes.append(f"{SUMMARY} is corrupt, so it is treated as in progress")
    metrics, problem = _read_metrics(run)
    if problem and summary is None:
        raise Unreadable(str(folder), f"{problem} and the run has no {SUMMARY}: no completed "
                                      "epoch; skipped")
    if problem:
        notes.append(f"{problem}: numbers from {SUMMARY}, no curves")
    if summary is None:
        target = config["config"].get("epochs", "?")
        notes.append(f"in progress: {len(metrics)} of {target} epochs done")
    job = {k: v for k, v in config.items() if k != "config"}
    return Run(str(folder), config["config"], metrics, summary, "; ".join(notes), job)


def _read_metrics(run):
    """(rows of metrics.csv, "") or ([], what is wrong with it)."""
    try:
        metrics = run.metrics()
    except FileNotFoundError:
        return [], f"{METRICS} is missing"
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, OSError) as e:
        return [], f"{METRICS} is corrupt ({e})"
    if not metrics:
        return [], f"{METRICS} has no epochs yet"
    if not all(k in metrics[0] for k in NEEDED_COLUMNS):
        return [], f"{METRICS} lacks some of the columns {', '.join(NEEDED_COLUMNS)}"
    return metrics, ""


def _read_json(run, name):
    """A JSON file of the run, or None when it is unreadable (compare skips, never stops)."""
    try:
        return run.read_json(name)
    except UserError:
        return None


def _valid_summary(summary):
    need = ("best_val_acc", "best_epoch", "final_val_acc", "epochs", "total_seconds")
    return isinstance(summary, dict) and all(isinstance(summary.get(k), (int, float))
                                             for k in need)
