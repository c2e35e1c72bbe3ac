"""The text form of a comparison (compare.py): an aligned table, the differences, notes."""

COLUMNS = ["group", "runs", "best val acc (%)", "best epoch", "final val acc (%)",
           "test acc (%)", "s/epoch"]
# With 2-4 runs a group's resampled means take only a handful of values, so a percentile
# interval comes out narrower than it should; say so rather than let it pass as exact.
FEW_RUNS = 5


def _pct(value):
    return "-" if value is None else f"{100 * value:.2f}"


def _row(group):
    s = group.stats()
    runs = str(s["runs"]) + (f" ({s['in_progress']} in progress)" if s["in_progress"] else "")
    std = "-" if s["best_val_acc_std"] is None else f"{100 * s['best_val_acc_std']:.2f}"
    return [group.label, runs, f"{_pct(s['best_val_acc_mean'])} ± {std}",
            f"{s['best_epoch_median']:g}", _pct(s["final_val_acc_mean"]),
            _pct(s["test_acc_mean"]), f"{s['seconds_per_epoch_mean']:.1f}"]


def _align(rows):
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                      for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
            for row in rows]


def format_table(comparison, resamples):
    """Aligned text for a Comparison: groups, differences (or why there are none), notes."""
    lines = _align([COLUMNS] + [_row(g) for g in comparison.groups])
    lines.append("best val acc: mean ± sample std over runs; best epoch: median")
    if comparison.differences:
        lines += ["", f"difference in mean best val acc (95% bootstrap CI, {resamples:,} "
                      "resamples of the runs):"]
        for d in comparison.differences:
            detail = "" if d.significant else (
                f"; {d.better} ahead by {100 * d.diff:.2f} points, CI "
                f"[{100 * d.ci_low:.2f}, {100 * d.ci_high:.2f}]")
            lines.append(f"  {d.better} vs {d.other}: {d.verdict()}{detail}")
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
