"""Compare finished (or running) runs: group them by experiment, summarise each group over its
seeds, and say whether the difference between groups is larger than seed-to-seed noise.

Pure: reads run folders, returns data and strings; no mxnet, no printing.

A run folder is a folder with config.json (read through runfolder.py). Runs form one group when
they are the same experiment: equal configs once the options that do not change what is trained
are removed (seed, which sample is drawn; run_dir and data_dir, where files live; gpus, which
devices; eval_batch_size and hybridize, how fast the same numbers are computed; kvstore, where
the same gradients are summed), and equal in what the job around the config decides: the number
of GPUs and of workers, the global batch, and whether updates are synchronous (experiment()).

The verdict uses one figure for the whole comparison (VERDICT_METRICS), never the best
validation accuracy: with --val-split 0 that epoch is chosen on the test split itself.
"""
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from train_cli.analysis import stats as st
from train_cli.analysis.stats import CONFIDENCE, MAX_SEEDS, POWER, RESAMPLES, bootstrap_diff
from train_cli.analysis.table import SELECTED_ON_TEST
from train_cli.analysis.table import format_table as _format_table
from train_cli.config import from_dict, to_dict
from train_cli.errors import UserError
from train_cli.runfolder import BEST_PARAMS, CONFIG, METRICS, SUMMARY, RunFolder, best_row

IGNORED = ("seed", "run_dir", "data_dir", "eval_batch_size", "hybridize", "gpus", "kvstore")
# what a group's label calls the keys the job adds to the config (group_key)
DERIVED_NAMES = {"num_gpus": "num-gpus", "workers": "workers", "global_batch_size": "global-batch",
                 "updates": "updates"}
NEEDED_COLUMNS = ("epoch", "train_loss", "val_acc", "epoch_seconds")
DETECT = 0.005  # the difference (as a fraction: 0.5 points) whose seeds compare reports
TEST_SPLIT, HELD_OUT = "test split", "held-out validation split"  # summary.json's selected_on


@dataclass(frozen=True)
class Metric:
    """The figure a verdict is drawn from: a Run attribute, its short name and what it is."""
    key: str
    name: str
    description: str


VERDICT_METRICS = {
    "test_acc": Metric("test_acc", "test acc",
                       "test accuracy at the best validation epoch: the epoch is selected on the "
                       "held-out validation split and measured on the test split"),
    "final_val_acc": Metric("final_val_acc", "final val acc",
                            "validation accuracy of the last epoch: a fixed epoch, not selected, "
                            "so unbiased; measured on the validation split (the test split where "
                            "validation = test)"),
}


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
    def selected_on(self):
        """The split the best epoch was selected on."""
        return TEST_SPLIT if self.val_is_test else HELD_OUT

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


@dataclass
class Group:
    """Runs of one experiment (same group_key)."""
    label: str
    config: dict
    runs: list = field(default_factory=list)

    @property
    def val_is_test(self):
        """Whether the group validates on the test split."""
        return any(r.val_is_test for r in self.runs)

    def accs(self, key):
        """One accuracy (a Run attribute, e.g. final_val_acc) of every run, as an array."""
        return np.array([getattr(r, key) for r in self.runs], dtype=float)

    def best_accs(self):
        """Every run's best validation accuracy."""
        return self.accs("best_val_acc")

    def stats(self):
        """Summary numbers of the group (accuracies as fractions, std None for one run)."""
        tests = np.array([r.test_acc for r in self.runs if r.test_acc is not None], dtype=float)
        out = dict(runs=len(self.runs), in_progress=sum(r.in_progress for r in self.runs),
                   selected_on=TEST_SPLIT if self.val_is_test else HELD_OUT,
                   val_is_test=self.val_is_test,
                   val_images=_one({r.val_images for r in self.runs}),
                   test_images=_one({r.test_images for r in self.runs}))
        out.update(_mean_std("best_val_acc", self.best_accs()))
        out["best_val_acc_note"] = SELECTED_ON_TEST if self.val_is_test else None
        out["best_epoch_median"] = float(np.median([r.best_epoch for r in self.runs]))
        out.update(_mean_std("final_val_acc", self.accs("final_val_acc")))
        out.update(_mean_std("test_acc", tests))
        out["test_runs"] = len(tests)
        out["seconds_per_epoch_mean"] = float(np.mean([r.seconds_per_epoch for r in self.runs]))
        return out


def _mean_std(name, values):
    return {f"{name}_mean": float(values.mean()) if len(values) else None,
            f"{name}_std": float(values.std(ddof=1)) if len(values) > 1 else None}


def _one(values):
    """The image count shared by a group's runs; a sorted list if they differ; None if unknown."""
    known = sorted(v for v in values if v is not None)
    return None if not known else known[0] if len(known) == 1 else known


@dataclass
class Power:
    """What the observed seed-to-seed spread lets a comparison detect (fractions, like accs)."""
    n1: int
    n2: int
    pooled_std: float
    detectable_difference: float  # at CONFIDENCE and POWER with n1 and n2 runs
    detect: float
    seeds_per_arm: int | None  # None: more than MAX_SEEDS

    def line(self):
        """The plain-words statement, in accuracy points."""
        need = (f"{self.seeds_per_arm:,} seeds per arm" if self.seeds_per_arm is not None
                else f"more than {MAX_SEEDS:,} seeds per arm")
        flat = (" (no spread seen: with so few seeds that is luck, not precision)"
                if self.pooled_std == 0 else "")
        return (f"with {self.n1} and {self.n2} seeds (pooled seed-to-seed std "
                f"{100 * self.pooled_std:.2f} points{flat}) the smallest difference detectable "
                f"at {CONFIDENCE:.0%} confidence and {POWER:.0%} power is "
                f"{100 * self.detectable_difference:.1f} points; {100 * self.detect:g} points "
                f"would need {need}")

    def to_json(self):
        """A JSON-ready dict."""
        return dict(pooled_std=self.pooled_std, detectable_difference=self.detectable_difference,
                    detect=self.detect, seeds_per_arm=self.seeds_per_arm, max_seeds=MAX_SEEDS,
                    confidence=CONFIDENCE, power=POWER)


@dataclass
class Difference:
    """Mean `metric` of `better` minus that of `other`, with a bootstrap interval.

    best_val_diff is the same difference in best val acc, shown beside it; when either group
    validates on the test split it is selected on the test split (best_val_on_test).
    """
    better: str
    other: str
    diff: float
    ci_low: float
    ci_high: float
    metric: Metric = VERDICT_METRICS["final_val_acc"]
    best_val_diff: float | None = None
    best_val_on_test: bool = False
    power: Power | None = None

    @property
    def significant(self):
        return not self.ci_low <= 0 <= self.ci_high

    def verdict(self):
        """The plain-words conclusion, in accuracy points (percentage points)."""
        if not self.significant:
            return f"no significant difference in {self.metric.name} (95% CI spans 0)"
        return (f"{self.better} is better by {100 * self.diff:.2f} points of {self.metric.name} "
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
    try:  # options added since the run was made take their defaults, as the run had them
        config["config"] = to_dict(from_dict(config["config"]))
    except (UserError, TypeError) as e:
        return str(folder), f"{CONFIG} holds an invalid option ({e}); skipped"
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
    job = {k: v for k, v in config.items() if k != "config"}
    return Run(str(folder), config["config"], metrics, summary, "; ".join(notes), job)


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
def experiment(run):
    """What defines the experiment a run belongs to: its config minus IGNORED, plus the job.

    gpus (device ids) gives way to their number; kvstore to whether updates are synchronous
    (device, local and the dist_*sync stores all apply the same summed-gradient step).
    """
    key = {k: v for k, v in run.config.items() if k not in IGNORED}
    key.update(num_gpus=run.num_gpus, workers=run.workers,
               global_batch_size=run.global_batch_size,
               updates="async" if run.config.get("kvstore") == "dist_async" else "sync")
    return key


def identity(run):
    """What makes two run folders one observation: the same experiment and seed, and the same
    weights (best.params' bytes; for a run without them, the same metrics)."""
    params = Path(run.path) / BEST_PARAMS
    try:
        weights = hashlib.sha256(params.read_bytes()).hexdigest()
    except OSError:
        weights = json.dumps(run.metrics, sort_keys=True)
    return group_key(run), run.config.get("seed"), weights


def group_key(run):
    """experiment(run) as JSON text, so it can be hashed."""
    return json.dumps(experiment(run), sort_keys=True)


def group_runs(runs):
    """Groups in order of first appearance, each labelled by model + options that differ."""
    groups = {}
    for run in runs:
        key = group_key(run)
        if key not in groups:
            groups[key] = Group("", json.loads(key))
        groups[key].runs.append(run)
    groups = list(groups.values())
    keys = sorted({k for g in groups for k in g.config} - {"model"})
    differing = [k for k in keys if len({json.dumps(g.config.get(k)) for g in groups}) > 1]
    for g in groups:
        g.label = " ".join([str(g.config.get("model"))] + [
            f"{DERIVED_NAMES.get(k, k.replace('_', '-'))}={_show(g.config.get(k))}"
            for k in differing])
    return groups


def _show(value):
    if isinstance(value, list):
        return ",".join(map(_show, value)) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    return "-" if value is None else str(value)


def verdict_metric(groups):
    """The figure the verdict uses: test acc at the best validation epoch when every run has one
    (held-out validation and a test split), otherwise the final epoch's accuracy.
    """
    runs = [r for g in groups for r in g.runs]
    if runs and all(r.test_acc is not None and not r.val_is_test for r in runs):
        return VERDICT_METRICS["test_acc"]
    return VERDICT_METRICS["final_val_acc"]


def differences(groups, metric=None, detect=DETECT):
    """Every pair of groups with at least 2 runs each (needs 2 such groups), better one first.

    Compared on `metric` (default: verdict_metric(groups)); each pair also gets its power:
    what its seeds can detect, and how many seeds `detect` (a fraction) would need.
    """
    metric = metric or verdict_metric(groups)
    eligible = [g for g in groups if len(g.runs) >= 2]
    out = []
    for i, a in enumerate(eligible):
        for b in eligible[i + 1:]:
            diff, low, high = bootstrap_diff(a.accs(metric.key), b.accs(metric.key))
            worse, better = (a, b) if diff >= 0 else (b, a)
            if diff < 0:
                diff, low, high = -diff, -high, -low
            xw, xb = worse.accs(metric.key), better.accs(metric.key)
            std = st.pooled_std(xw, xb)
            power = Power(len(xb), len(xw), std, st.detectable_difference(std, len(xb), len(xw)),
                          detect, st.seeds_per_arm(detect, std))
            out.append(Difference(better.label, worse.label, diff, low, high, metric,
                                  float(better.best_accs().mean() - worse.best_accs().mean()),
                                  worse.val_is_test or better.val_is_test, power))
    return out


@dataclass
class Comparison:
    """Groups of runs, their pairwise differences, and run folders that were skipped."""
    groups: list
    differences: list
    skipped: list  # (folder, reason)
    metric: Metric = VERDICT_METRICS["final_val_acc"]

    def format_table(self):
        """Aligned text: one row per group, then the differences, then per-run notes."""
        return _format_table(self, RESAMPLES)

    def to_json(self):
        """A JSON-ready dict (accuracies and differences as fractions, as in summary.json)."""
        return dict(
            verdict_metric=dict(key=self.metric.key, name=self.metric.name,
                                description=self.metric.description),
            groups=[dict(label=g.label, config=g.config, **g.stats(),
                         runs_detail=[_run_json(r) for r in g.runs]) for g in self.groups],
            differences=[dict(better=d.better, other=d.other, metric=d.metric.key, diff=d.diff,
                              ci_low=d.ci_low, ci_high=d.ci_high, confidence=CONFIDENCE,
                              resamples=RESAMPLES, significant=d.significant,
                              verdict=d.verdict(), best_val_acc_diff=d.best_val_diff,
                              best_val_acc_selected_on_test=d.best_val_on_test,
                              power=d.power.to_json() if d.power else None)
                         for d in self.differences],
            skipped=[dict(path=p, reason=why) for p, why in self.skipped])


def _run_json(run):
    return dict(path=run.path, seed=run.config.get("seed"), in_progress=run.in_progress,
                epochs_done=len(run.metrics) if run.in_progress else run.summary["epochs"],
                best_val_acc=run.best_val_acc, best_epoch=run.best_epoch,
                selected_on=run.selected_on, val_images=run.val_images,
                final_val_acc=run.final_val_acc, test_acc=run.test_acc,
                test_images=run.test_images, seconds_per_epoch=run.seconds_per_epoch,
                note=run.note)


def compare(paths, detect=DETECT):
    """Find, load, group and compare the runs at or under `paths` (detect: a fraction)."""
    runs, skipped, seen = [], [], {}
    for folder in find_run_dirs(paths):
        loaded = load_run(folder)
        if not isinstance(loaded, Run):
            skipped.append(loaded)
            continue
        key = identity(loaded)
        if key in seen:  # a copied folder is not another seed
            skipped.append((loaded.path, f"the same run as {seen[key]} (options, seed and "
                                         "weights): counted once"))
        else:
            seen[key] = loaded.path
            runs.append(loaded)
    if not runs:
        folder, reason = skipped[0]
        more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
        raise UserError(f"no run under {', '.join(map(str, paths))} has results yet: {folder}: "
                        f"{reason}{more}; wait for an epoch to finish")
    groups = group_runs(runs)
    metric = verdict_metric(groups)
    return Comparison(groups, differences(groups, metric, detect), skipped, metric)
