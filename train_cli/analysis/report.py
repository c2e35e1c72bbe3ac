"""The words of a comparison (compare.py's data): the text table and the JSON dict.

Every sentence `swishtrain compare` prints is written here, and nothing is computed here: the
numbers come from compare.py, the confidence, power and resampling settings from stats.py.
"""
import textwrap

from train_cli.analysis.compare import FINAL_VAL_ACC, TEST_ACC
from train_cli.analysis.stats import CONFIDENCE, MAX_SEEDS, POWER, RESAMPLES
from train_cli.runfolder import selected_on

# what each verdict figure is called, and what it is
METRIC_WORDS = {
    TEST_ACC: ("test acc",
               "test accuracy at the best validation epoch: the epoch is selected on the "
               "held-out validation split and measured on the test split"),
    FINAL_VAL_ACC: ("final val acc",
                    "validation accuracy of the last epoch: a fixed epoch, not selected, so "
                    "unbiased; measured on the validation split (the test split where "
                    "validation = test)"),
}
COLUMNS = ["group", "runs", "val / test images", "best val acc (%)", "best epoch",
           "final val acc (%)", "test acc (%)", "s/epoch"]
# With 2-4 runs a group's resampled means take only a handful of values, so a percentile
# interval comes out narrower than it should; say so rather than let it pass as exact.
FEW_RUNS = 5
WIDTH = 100  # explanations wrap here; table rows are as wide as their cells
MARK = "*"  # after a best val acc selected on the test split
SELECTED_ON_TEST_NOTE = ("selected on the test split (validation = test): an optimistic test "
                         "figure, not the verdict's")


def percent(fraction):
    """A setting such as stats.CONFIDENCE in words: 0.95 -> "95%"."""
    return f"{fraction:.0%}"


def metric_name(metric):
    """The short name of a verdict figure (compare.TEST_ACC or FINAL_VAL_ACC)."""
    return METRIC_WORDS[metric][0]


# -----------------------------------------------------------------------------
# Sentences
def verdict(d):
    """A Difference's conclusion in plain words, in accuracy points (percentage points)."""
    if not d.significant:
        return (f"no significant difference in {metric_name(d.metric)} "
                f"({percent(CONFIDENCE)} CI spans 0)")
    return (f"{d.better} is better by {100 * d.diff:.2f} points of {metric_name(d.metric)} "
            f"({percent(CONFIDENCE)} CI [{100 * d.ci_low:.2f}, {100 * d.ci_high:.2f}])")


def power_line(p):
    """A Power in plain words, in accuracy points."""
    need = (f"{p.seeds_per_arm:,} seeds per arm" if p.seeds_per_arm is not None
            else f"more than {MAX_SEEDS:,} seeds per arm")
    flat = (" (no spread seen: with so few seeds that is luck, not precision)"
            if p.pooled_std == 0 else "")
    return (f"with {p.n1} and {p.n2} seeds (pooled seed-to-seed std "
            f"{100 * p.pooled_std:.2f} points{flat}) the smallest difference detectable "
            f"at {percent(CONFIDENCE)} confidence and {percent(POWER)} power is "
            f"{100 * p.detectable_difference:.1f} points; {100 * p.detect:g} points "
            f"would need {need}")


def _verdict_figure(comparison):
    """The line that names the figure the verdict uses and why."""
    name, description = METRIC_WORDS[comparison.metric]
    line = f"verdict figure: {name}, the {description}"
    if comparison.metric != TEST_ACC:
        line += ("; test acc at the best validation epoch would need --val-split N and a test "
                 "split on every run")
    if len({g.val_is_test for g in comparison.groups}) > 1:
        line += "; note: the groups validate on different splits, so it is measured on " \
                "different images"
    return line


# -----------------------------------------------------------------------------
# The text table
def _pct(value):
    return "-" if value is None else f"{100 * value:.2f}"


def _mean_std(spread):
    if spread.mean is None:
        return "-"
    return f"{_pct(spread.mean)} ± {_pct(spread.std)}"


def _images(value):
    if value is None:  # no test split (or a folder too old to say)
        return "-"
    if isinstance(value, list):  # the runs of the group differ
        return f"{value[0]:,}-{value[-1]:,}"
    return f"{value:,}"


def _row(group, any_marked):
    s = group.stats()
    runs = str(s.runs) + (f" ({s.in_progress} in progress)" if s.in_progress else "")
    images = (f"{_images(s.val_images)} = test" if s.val_is_test
              else f"{_images(s.val_images)} / {_images(s.test_images)}")
    # a blank where others have the mark keeps the digits of the column aligned
    mark = MARK if s.val_is_test else " " if any_marked else ""
    return [group.label, runs, images, _mean_std(s.best_val_acc) + mark,
            f"{s.best_epoch_median:g}", _mean_std(s.final_val_acc), _mean_std(s.test_acc),
            f"{s.seconds_per_epoch_mean:.1f}"]


def _align(rows):
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                      for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
            for row in rows]


def _wrap(text, indent):
    return textwrap.wrap(text, WIDTH, subsequent_indent=indent, break_on_hyphens=False)


def _difference_lines(d):
    detail = "" if d.significant else (
        f"; {d.better} ahead by {100 * d.diff:.2f} points, CI "
        f"[{100 * d.ci_low:.2f}, {100 * d.ci_high:.2f}]")
    how = (f"{MARK}: {d.better} {100 * d.best_val_diff:+.2f} points (selected on the "
           "test split: optimistic, not the verdict's)" if d.best_val_on_test else
           f": {d.better} {100 * d.best_val_diff:+.2f} points (selected on the held-out "
           "validation split)")
    return [f"  {d.better} vs {d.other}: {verdict(d)}{detail}", f"    best val acc{how}",
            f"    power: {power_line(d.power)}"]


def text(comparison):
    """Aligned text for a Comparison: groups, differences (or why there are none), notes."""
    marked = any(g.val_is_test for g in comparison.groups)
    lines = _align([COLUMNS] + [_row(g, marked) for g in comparison.groups])
    lines.append("accuracies: mean ± sample std over runs; best epoch: median")
    lines.append("val / test images: sizes of the validation and test splits (= test: validation "
                 "is the test split)")
    if marked:
        lines.append(f"{MARK} {SELECTED_ON_TEST_NOTE}")
    lines += _wrap(_verdict_figure(comparison), "  ")
    if comparison.differences:
        lines += ["", f"difference in mean {metric_name(comparison.metric)} "
                      f"({percent(CONFIDENCE)} bootstrap CI, {RESAMPLES:,} resamples of the "
                      "runs):"]
        for d in comparison.differences:
            lines += _difference_lines(d)
        if any(len(g.runs) < FEW_RUNS for g in comparison.groups if len(g.runs) >= 2):
            lines.append(f"  (with fewer than {FEW_RUNS} runs per group the interval is "
                         "optimistic; run more seeds to be sure)")
    elif len(comparison.groups) > 1:
        lines += ["", "no significance test: it needs 2 or more groups with 2 or more runs "
                      "(seeds) each"]
    notes = [(r.path, r.note) for g in comparison.groups for r in g.runs if r.note]
    notes += [(s.path, s.reason) for s in comparison.skipped]
    if notes:
        lines += ["", "notes:"] + [f"  {path}: {note}" for path, note in notes]
    return "\n".join(lines)


# -----------------------------------------------------------------------------
# The JSON dict
def as_json(comparison):
    """A JSON-ready dict (accuracies and differences as fractions, as in summary.json)."""
    name, description = METRIC_WORDS[comparison.metric]
    return dict(
        verdict_metric=dict(key=comparison.metric, name=name, description=description),
        groups=[_group_json(g) for g in comparison.groups],
        differences=[_difference_json(d) for d in comparison.differences],
        skipped=[dict(path=s.path, reason=s.reason) for s in comparison.skipped])


def _group_json(group):
    s = group.stats()
    return dict(label=group.label, config=group.config, runs=s.runs, in_progress=s.in_progress,
                selected_on=selected_on(s.val_is_test), val_is_test=s.val_is_test,
                val_images=s.val_images, test_images=s.test_images,
                best_val_acc_mean=s.best_val_acc.mean, best_val_acc_std=s.best_val_acc.std,
                best_val_acc_note=SELECTED_ON_TEST_NOTE if s.val_is_test else None,
                best_epoch_median=s.best_epoch_median,
                final_val_acc_mean=s.final_val_acc.mean, final_val_acc_std=s.final_val_acc.std,
                test_acc_mean=s.test_acc.mean, test_acc_std=s.test_acc.std,
                test_runs=s.test_runs, seconds_per_epoch_mean=s.seconds_per_epoch_mean,
                runs_detail=[_run_json(r) for r in group.runs])


def _run_json(run):
    return dict(path=run.path, seed=run.config.get("seed"), in_progress=run.in_progress,
                epochs_done=run.epochs_done, best_val_acc=run.best_val_acc,
                best_epoch=run.best_epoch, selected_on=selected_on(run.val_is_test),
                val_images=run.val_images, final_val_acc=run.final_val_acc,
                test_acc=run.test_acc, test_images=run.test_images,
                seconds_per_epoch=run.seconds_per_epoch, note=run.note)


def _difference_json(d):
    p = d.power
    return dict(better=d.better, other=d.other, metric=d.metric, diff=d.diff, ci_low=d.ci_low,
                ci_high=d.ci_high, confidence=CONFIDENCE, resamples=RESAMPLES,
                significant=d.significant, verdict=verdict(d), best_val_acc_diff=d.best_val_diff,
                best_val_acc_selected_on_test=d.best_val_on_test,
                power=dict(pooled_std=p.pooled_std, detectable_difference=p.detectable_difference,
                           detect=p.detect, seeds_per_arm=p.seeds_per_arm, max_seeds=MAX_SEEDS,
                           confidence=CONFIDENCE, power=POWER))
