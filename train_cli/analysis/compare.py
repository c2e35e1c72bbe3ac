"""Compare finished (or running) runs: group them by configuration, summarise each group over its
seeds, and say whether the difference between groups is larger than seed-to-seed noise.

Pure: reads run folders, returns data and strings; no mxnet, no printing.

A run folder is a folder with config.json (read through runfolder.py). Runs whose configs are
equal once seed, run_dir, data_dir, eval_batch_size, hybridize and epochs are removed form one
group: those options change which sample is drawn, where files live, or how long a run went on,
not what is being measured.
"""
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from train_cli.analysis.table import format_table as _format_table
from train_cli.errors import UserError
from train_cli.runfolder import CONFIG, METRICS, SUMMARY, RunFolder, best_row

IGNORED = ("seed", "run_dir", "data_dir", "eval_batch_size", "hybridize", "epochs")
RESAMPLES = 10_000
CONFIDENCE = 0.95
NEEDED_COLUMNS = ("epoch", "train_loss", "val_acc", "epoch_seconds")


@dataclass
class Run:
    """One run folder's results; `note` says what is missing or unusual about it."""
    path: str
    config: dict
    metrics: list
    summary: dict | None
    note: str = ""

    @property
    def in_progress(self):
        return self.summary is None

    @property
    def best_val_acc(self):
        return self.summary["best_val_acc"] if self.summary else self._best_row()["val_acc"]

    @property
    def best_epoch(self):
        return self.summary["best_epoch"] if self.summary else self._best_row()["epoch"]

    @property
    def final_val_acc(self):
        return self.summary["final_val_acc"] if self.summary else self.metrics[-1]["val_acc"]

    @property
    def test_acc(self):
        return (self.summary or {}).get("test_acc")

    @property
    def seconds_per_epoch(self):
        if self.metrics:
            return float(np.mean([r["epoch_seconds"] for r in self.metrics]))
        return self.summary["total_seconds"] / self.summary["epochs"]

    def _best_row(self):
        return best_row(self.metrics)  # the rule training uses to pick the best epoch


@dataclass
class Group:
    """Runs that share a configuration (apart from the IGNORED options)."""
    label: str
    config: dict
    runs: list = field(default_factory=list)

    def best_accs(self):
        return np.array([r.best_val_acc for r in self.runs], dtype=float)

    def stats(self):
        """Summary numbers of the group (accuracies as fractions, std None for one run)."""
        best = self.best_accs()
        tests = [r.test_acc for r in self.runs if r.test_acc is not None]
        return dict(runs=len(self.runs), in_progress=sum(r.in_progress for r in self.runs),
                    best_val_acc_mean=float(best.mean()),
                    best_val_acc_std=float(best.std(ddof=1)) if len(best) > 1 else None,
                    best_epoch_median=float(np.median([r.best_epoch for r in self.runs])),
                    final_val_acc_mean=float(np.mean([r.final_val_acc for r in self.runs])),
                    test_acc_mean=float(np.mean(tests)) if tests else None, test_runs=len(tests),
                    seconds_per_epoch_mean=float(np.mean([r.seconds_per_epoch
                                                          for r in self.runs])))


@dataclass
class Difference:
    """Mean best val acc of `better` minus that of `other`, with a bootstrap interval."""
    better: str
    other: str
    diff: float
    ci_low: float
    ci_high: float

    @property
    def significant(self):
        return not self.ci_low <= 0 <= self.ci_high

    def verdict(self):
        """The plain-words conclusion, in accuracy points (percentage points)."""
        if not self.significant:
            return "no significant difference (95% CI spans 0)"
        return (f"{self.better} is better by {100 * self.diff:.2f} points "
                f"(95% CI [{100 * self.ci_low:.2f}, {100 * self.ci_high:.2f}])")


# -----------------------------------------------------------------------------
# Finding and reading run folders
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
    """A Run, or (folder, reason) when the folder holds nothing to compare."""
    run = RunFolder(folder)
    config = _read_json(run, CONFIG)
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        return str(folder), f"{CONFIG} is unreadable or not a swishtrain config; skipped"
    summary = _read_json(run, SUMMARY) if run.has(SUMMARY) else None
    notes = []
    if run.has(SUMMARY) and not _valid_summary(summary):
        summary = None
        notes.append(f"{SUMMARY} is corrupt, so it is treated as in progress")
    try:
        metrics = run.metrics()
    except FileNotFoundError:
        metrics, problem = [], f"{METRICS} is missing"
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, OSError) as e:
        metrics, problem = [], f"{METRICS} is corrupt ({e})"
    else:
        problem = "" if metrics else f"{METRICS} has no epochs yet"
    if metrics and not all(k in metrics[0] for k in NEEDED_COLUMNS):
        metrics, problem = [], f"{METRICS} lacks some of the columns {', '.join(NEEDED_COLUMNS)}"
    if problem and summary is None:
        return str(folder), f"{problem} and the run has no {SUMMARY}: no completed epoch; skipped"
    if problem:
        notes.append(f"{problem}: numbers from {SUMMARY}, no curves")
    if summary is None:
        target = config["config"].get("epochs", "?")
        notes.append(f"in progress: {len(metrics)} of {target} epochs done")
    return Run(str(folder), config["config"], metrics, summary, "; ".join(notes))


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


# -----------------------------------------------------------------------------
# Grouping and statistics
def group_key(config):
    """The part of a config that defines what is measured (JSON text, so it can be hashed)."""
    return json.dumps({k: v for k, v in config.items() if k not in IGNORED}, sort_keys=True)


def group_runs(runs):
    """Groups in order of first appearance, each labelled by model + options that differ."""
    groups = {}
    for run in runs:
        key = group_key(run.config)
        if key not in groups:
            groups[key] = Group("", json.loads(key))
        groups[key].runs.append(run)
    groups = list(groups.values())
    keys = sorted({k for g in groups for k in g.config} - {"model"})
    differing = [k for k in keys if len({json.dumps(g.config.get(k)) for g in groups}) > 1]
    for g in groups:
        g.label = " ".join([str(g.config.get("model"))] + [
            f"{k.replace('_', '-')}={_show(g.config.get(k))}" for k in differing])
    return groups


def _show(value):
    if isinstance(value, list):
        return ",".join(map(_show, value)) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    return "-" if value is None else str(value)


def bootstrap_diff(a, b, resamples=RESAMPLES, seed=0):
    """Percentile interval of mean(b) - mean(a), resampling the runs of each group on its own."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    means_a = a[rng.integers(0, len(a), size=(resamples, len(a)))].mean(axis=1)
    means_b = b[rng.integers(0, len(b), size=(resamples, len(b)))].mean(axis=1)
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(means_b - means_a, [tail, 100 - tail])
    return float(b.mean() - a.mean()), float(low), float(high)


def differences(groups):
    """Every pair of groups with at least 2 runs each (needs 2 such groups), better one first."""
    eligible = [g for g in groups if len(g.runs) >= 2]
    out = []
    for i, a in enumerate(eligible):
        for b in eligible[i + 1:]:
            diff, low, high = bootstrap_diff(a.best_accs(), b.best_accs())
            if diff >= 0:
                out.append(Difference(b.label, a.label, diff, low, high))
            else:
                out.append(Difference(a.label, b.label, -diff, -high, -low))
    return out


@dataclass
class Comparison:
    """Groups of runs, their pairwise differences, and run folders that were skipped."""
    groups: list
    differences: list
    skipped: list  # (folder, reason)

    def format_table(self):
        """Aligned text: one row per group, then the differences, then per-run notes."""
        return _format_table(self, RESAMPLES)

    def to_json(self):
        """A JSON-ready dict (accuracies as fractions, as in summary.json)."""
        return dict(
            groups=[dict(label=g.label, config=g.config, **g.stats(),
                         runs_detail=[_run_json(r) for r in g.runs]) for g in self.groups],
            differences=[dict(better=d.better, other=d.other, diff=d.diff, ci_low=d.ci_low,
                              ci_high=d.ci_high, confidence=CONFIDENCE, resamples=RESAMPLES,
                              significant=d.significant, verdict=d.verdict())
                         for d in self.differences],
            skipped=[dict(path=p, reason=why) for p, why in self.skipped])


def _run_json(run):
    return dict(path=run.path, seed=run.config.get("seed"), in_progress=run.in_progress,
                epochs_done=len(run.metrics) if run.in_progress else run.summary["epochs"],
                best_val_acc=run.best_val_acc, best_epoch=run.best_epoch,
                final_val_acc=run.final_val_acc, test_acc=run.test_acc,
                seconds_per_epoch=run.seconds_per_epoch, note=run.note)


def compare(paths):
    """Find, load, group and compare the runs at or under `paths`."""
    runs, skipped = [], []
    for folder in find_run_dirs(paths):
        loaded = load_run(folder)
        if isinstance(loaded, Run):
            runs.append(loaded)
        else:
            skipped.append(loaded)
    if not runs:
        folder, reason = skipped[0]
        more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
        raise UserError(f"no run under {', '.join(map(str, paths))} has results yet: {folder}: "
                        f"{reason}{more}; wait for an epoch to finish")
    groups = group_runs(runs)
    return Comparison(groups, differences(groups), skipped)
