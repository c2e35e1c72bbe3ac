"""The text form of a comparison (compare.py): an aligned table, the differences, notes."""
import textwrap

COLUMNS = ["group", "runs", "val / test images", "best val acc (%)", "best epoch",
           "final val acc (%)", "test acc (%)", "s/epoch"]
# With 2-4 runs a group's resampled means take only a handful of values, so a percentile
# interval comes out narrower than it should; say so rather than let it pass as exact.
FEW_RUNS = 5
WIDTH = 100  # explanations wrap here; table rows are as wide as their cells
MARK = "*"  # after a best val acc selected on the test split
SELECTED_ON_TEST = ("selected on the test split (validation = test): an optimistic test figure, "
                    "not the verdict's")


def _pct(value):
    return "-" if value is None else f"{100 * value:.2f}"


def _mean_std(s, name):
    if s[f"{name}_mean"] is None:
        return "-"
    return f"{_pct(s[f'{name}_mean'])} ± {_pct(s[f'{name}_std'])}"


def _images(value):
    if value is None:  # no test split (or a folder too old to say)
        return "-"
    if isinstance(value, list):  # the runs of the group differ
        return f"{value[0]:,}-{value[-1]:,}"
    return f"{value:,}"


def _row(group, any_marked):
    s = group.stats()
    runs = str(s["runs"]) + (f" ({s['in_progress']} in progress)" if s["in_progress"] else "")
    images = (f"{_images(s['val_images'])} = test" if s["val_is_test"]
              else f"{_images(s['val_images'])} / {_images(s['test_images'])}")
    # a blank where others have the mark keeps the digits of the column aligned
    mark = MARK if s["val_is_test"] else " " if any_marked else ""
    return [group.label, runs, images, _mean_std(s, "best_val_acc") + mark,
            f"{s['best_epoch_median']:g}", _mean_std(s, "final_val_acc"),
            _mean_std(s, "test_acc"), f"{s['seconds_per_epoch_mean']:.1f}"]


def _align(rows):
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                      for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
            for row in rows]


def _verdict_figure(comparison):
    """The line that names the figure the verdict uses and why."""
    metric = comparison.metric
    line = f"verdict figure: {metric.name}, the {metric.description}"
    if metric.key != "test_acc":
        line += ("; test acc at the best validation epoch would need --val-split N and a test "
                 "split on every run")
    if len({g.val_is_test for g in comparison.groups}) > 1:
        line += "; note: the groups validate on different splits, so it is measured on " \
                "different images"
    return line


def _wrap(text, indent):
    return textwrap.wrap(text, WIDTH, subsequent_indent=indent, break_on_hyphens=False)


def format_table(comparison, resamples):
    """Aligned text for a Comparison: groups, differences (or why there are none), notes."""
    marked = any(g.val_is_test for g in comparison.groups)
    lines = _align([COLUMNS] + [_row(g, marked) for g in comparison.groups])
    lines.append("accuracies: mean ± sample std over runs; best epoch: median")
    lines.append("val / test images: sizes of the validation and test splits (= test: validation "
                 "is the test split)")
    if marked:
        lines.append(f"{MARK} {SELECTED_ON_TEST}")
    lines += _wrap(_verdict_figure(comparison), "  ")
    name = comparison.metric.name
    if comparison.differences:
        lines += ["", f"difference in mean {name} (95% bootstrap CI, {resamples:,} "
                      "resamples of the runs):"]
        for d in comparison.differences:
            detail = "" if d.significant else (
                f"; {d.better} ahead by {100 * d.diff:.2f} points, CI "
                f"[{100 * d.ci_low:.2f}, {100 * d.ci_high:.2f}]")
            lines.append(f"  {d.better} vs {d.other}: {d.verdict()}{detail}")
            how = (f"{MARK}: {d.better} {100 * d.best_val_diff:+.2f} points (selected on the "
                   "test split: optimistic, not the verdict's)" if d.best_val_on_test else
                   f": {d.better} {100 * d.best_val_diff:+.2f} points (selected on the held-out "
                   "validation split)")
            lines.append(f"    best val acc{how}")
            if d.power:
                lines.append(f"    power: {d.power.line()}")
        if any(len(g.runs) < FEW_RUNS for g in comparison.groups if len(g.runs) >= 2):
            lines.append(f"  (with fewer than {FEW_RUNS} runs per group the interval is "
                         "optimistic; run more seeds to be sure)")
    elif len(comparison.groups) > 1:
        lines += ["", "no significance test: it needs 2 or more groups with 2 or more runs "
                      "(seeds) each"]
    notes = [(r.path, r.note) for g in comparison.groups for r in g.runs if r.note]
    notes += [(path, reason) for path, reason in comparison.skipped]
    if notes:
        lines += ["", "notes:"] + [f"  {path}: {note}" for path, note in notes]
    return "\n".join(lines)
