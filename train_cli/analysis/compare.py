"""Compare finished (or running) runs: group them by experiment, summarise each group over its
seeds, and measure whether the difference between groups is larger than seed-to-seed noise.

Pure: returns data (report.py puts it into words and JSON); no mxnet, no printing.

Runs form one group when they are the same experiment: equal configs once the options that do
not change what is trained are removed (seed, which sample is drawn; run_dir and data_dir, where
files live; gpus, which devices; eval_batch_size and hybridize, how fast the same numbers are
computed; kvstore, where the same gradients are summed), and equal in what the job around the
config decides: the number of GPUs and of workers, the global batch, and whether updates are
synchronous (experiment()).

The verdict uses one figure for the whole comparison (verdict_metric), never the best
validation accuracy: with --val-split 0 that epoch is chosen on the test split itself.
"""
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from train_cli.analysis import stats as st
from train_cli.analysis.runs import Unreadable, find_run_dirs, load_run
from train_cli.errors import UserError
from train_cli.runfolder import BEST_PARAMS
from train_cli.runspec.rules import update_kind

IGNORED = ("seed", "run_dir", "data_dir", "eval_batch_size", "hybridize", "gpus", "kvstore")
# what a group's label calls the keys the job adds to the config (group_key)
DERIVED_NAMES = {"num_gpus": "num-gpus", "workers": "workers", "global_batch_size": "global-batch",
                 "updates": "updates"}
DETECT = 0.005  # the difference (as a fraction: 0.5 points) whose seeds compare reports
# The figures a verdict may be drawn from (Run attributes): test acc at the best validation
# epoch, unbiased when that epoch was selected on a held-out split; else the last epoch's val acc.
TEST_ACC, FINAL_VAL_ACC = "test_acc", "final_val_acc"


@dataclass(frozen=True)
class Spread:
    """Mean and sample std of one figure over a group's runs (None: no runs / one run)."""
    mean: float | None
    std: float | None

    @classmethod
    def of(cls, values):
        """The Spread of an array of values."""
        return cls(float(values.mean()) if len(values) else None,
                   float(values.std(ddof=1)) if len(values) > 1 else None)


@dataclass(frozen=True)
class GroupStats:
    """Summary numbers of a group (accuracies as fractions).

    val_images / test_images: the count the runs share, a sorted list if they differ, None if
    unknown. test_runs: runs that have a test accuracy.
    """
    runs: int
    in_progress: int
    val_is_test: bool
    val_images: int | list | None
    test_images: int | list | None
    best_val_acc: Spread
    best_epoch_median: float
    final_val_acc: Spread
    test_acc: Spread
    test_runs: int
    seconds_per_epoch_mean: float


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
        """The group's GroupStats."""
        tests = np.array([r.test_acc for r in self.runs if r.test_acc is not None], dtype=float)
        return GroupStats(
            runs=len(self.runs), in_progress=sum(r.in_progress for r in self.runs),
            val_is_test=self.val_is_test,
            val_images=_one({r.val_images for r in self.runs}),
            test_images=_one({r.test_images for r in self.runs}),
            best_val_acc=Spread.of(self.best_accs()),
            best_epoch_median=float(np.median([r.best_epoch for r in self.runs])),
            final_val_acc=Spread.of(self.accs("final_val_acc")), test_acc=Spread.of(tests),
            test_runs=len(tests),
            seconds_per_epoch_mean=float(np.mean([r.seconds_per_epoch for r in self.runs])))


def _one(values):
    """The image count shared by a group's runs; a sorted list if they differ; None if unknown."""
    known = sorted(v for v in values if v is not None)
    return None if not known else known[0] if len(known) == 1 else known


@dataclass(frozen=True)
class Power:
    """What the observed seed-to-seed spread lets a comparison detect (fractions, like accs)."""
    n1: int
    n2: int
    pooled_std: float
    detectable_difference: float  # at stats.CONFIDENCE and stats.POWER with n1 and n2 runs
    detect: float
    seeds_per_arm: int | None  # None: more than stats.MAX_SEEDS


@dataclass(frozen=True)
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
    metric: str  # TEST_ACC or FINAL_VAL_ACC
    best_val_diff: float
    best_val_on_test: bool
    power: Power

    @property
    def significant(self):
        """Whether the interval excludes 0."""
        return not self.ci_low <= 0 <= self.ci_high


@dataclass(frozen=True)
class Skipped:
    """A run folder left out of the comparison, and why."""
    path: str
    reason: str


@dataclass
class Comparison:
    """Groups of runs, their pairwise differences on `metric`, and folders that were skipped."""
    groups: list
    differences: list
    skipped: list  # of Skipped
    metric: str  # TEST_ACC or FINAL_VAL_ACC


# -----------------------------------------------------------------------------
# Grouping
def experiment(run):
    """What defines the experiment a run belongs to: its config minus IGNORED, plus the job.

    gpus (device ids) gives way to their number; kvstore to whether updates are synchronous
    (device, local and the dist_*sync stores all apply the same summed-gradient step).
    """
    key = {k: v for k, v in run.config.items() if k not in IGNORED}
    key.update(num_gpus=run.num_gpus, workers=run.workers,
               global_batch_size=run.global_batch_size,
               updates=update_kind(run.config.get("kvstore")))
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


# -----------------------------------------------------------------------------
# Statistics
def verdict_metric(groups):
    """The figure the verdict uses: TEST_ACC when every run has one (held-out validation and a
    test split), otherwise FINAL_VAL_ACC.
    """
    runs = [r for g in groups for r in g.runs]
    if runs and all(r.test_acc is not None and not r.val_is_test for r in runs):
        return TEST_ACC
    return FINAL_VAL_ACC


def differences(groups, metric, detect=DETECT):
    """Every pair of groups with at least 2 runs each (needs 2 such groups), better one first.

    Compared on `metric` (a Run attribute); each pair also gets its power: what its seeds can
    detect, and how many seeds `detect` (a fraction) would need.
    """
    eligible = [g for g in groups if len(g.runs) >= 2]
    out = []
    for i, a in enumerate(eligible):
        for b in eligible[i + 1:]:
            diff, low, high = st.bootstrap_diff(a.accs(metric), b.accs(metric))
            worse, better = (a, b) if diff >= 0 else (b, a)
            if diff < 0:
                diff, low, high = -diff, -high, -low
            xw, xb = worse.accs(metric), better.accs(metric)
            std = st.pooled_std(xw, xb)
            power = Power(len(xb), len(xw), std, st.detectable_difference(std, len(xb), len(xw)),
                          detect, st.seeds_per_arm(detect, std))
            out.append(Difference(better.label, worse.label, diff, low, high, metric,
                                  float(better.best_accs().mean() - worse.best_accs().mean()),
                                  worse.val_is_test or better.val_is_test, power))
    return out


def compare(paths, detect=DETECT):
    """Find, load, group and compare the runs at or under `paths` (detect: a fraction)."""
    runs, skipped, seen = [], [], {}
    for folder in find_run_dirs(paths):
        try:
            run = load_run(folder)
        except Unreadable as e:
            skipped.append(Skipped(e.path, e.reason))
            continue
        key = identity(run)
        if key in seen:  # a copied folder is not another seed
            skipped.append(Skipped(run.path, f"the same run as {seen[key]} (options, seed and "
                                             "weights): counted once"))
        else:
            seen[key] = run.path
            runs.append(run)
    if not runs:
        first = skipped[0]
        more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
        raise UserError(f"no run under {', '.join(map(str, paths))} has results yet: "
                        f"{first.path}: {first.reason}{more}; wait for an epoch to finish")
    groups = group_runs(runs)
    metric = verdict_metric(groups)
    return Comparison(groups, differences(groups, metric, detect), skipped, metric)
