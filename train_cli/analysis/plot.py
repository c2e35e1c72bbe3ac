"""Learning curves of a comparison as one PNG: validation accuracy and training loss per epoch.

Each group gets one colour: the mean over its runs, and a band from the lowest to the highest run
(with 2-5 seeds the range shows the spread honestly, where ±std would pretend to know its shape).
Dashed vertical lines mark the learning-rate steps. matplotlib is optional and imported only here,
with the Agg canvas (no display, no global pyplot state).
"""
from pathlib import Path

import numpy as np

from train_cli.atomic import atomic_write
from train_cli.errors import UserError

FIGSIZE = (12.0, 4.5)  # inches
DPI = 100  # so the PNG is 1200 x 450 pixels
PANELS = [("val_acc", "validation accuracy (%)", 100.0), ("train_loss", "training loss", 1.0)]


def _matplotlib():
    try:
        # `import matplotlib` first: when the package is absent (or blocked) this is what fails,
        # even if a submodule happens to be cached
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError("--plot needs matplotlib: pip install 'swishtrain[plot]'") from None
    return Figure, FigureCanvasAgg


def curves(group, key):
    """(epochs, mean, low, high) of metric `key` over a group's runs, per epoch.

    Runs still in progress are shorter; each epoch averages the runs that reached it.
    """
    by_epoch = {}
    for run in group.runs:
        for row in run.metrics:
            by_epoch.setdefault(row["epoch"], []).append(row[key])
    epochs = sorted(by_epoch)
    values = [np.asarray(by_epoch[e], dtype=float) for e in epochs]
    return (np.array(epochs), np.array([v.mean() for v in values]),
            np.array([v.min() for v in values]), np.array([v.max() for v in values]))


def legend_label(group):
    """A group's legend entry: label, number of runs and, if so, that validation is the test split.

    Its "validation accuracy" curve is then a test figure, and its best epoch chosen on it.
    """
    split = ", val = test split" if group.val_is_test else ""
    return f"{group.label} (n={len(group.runs)}{split})"


def lr_steps(group):
    """The epochs after which the group's learning rate drops."""
    return [int(s) for s in group.config.get("lr_steps") or []]


def plot_comparison(comparison, path):
    """Write the two-panel PNG of `comparison` (a compare.Comparison) to path, atomically."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise UserError(f"--plot writes a PNG image; give a file name ending in .png "
                        f"(got {path.name})")
    Figure, FigureCanvasAgg = _matplotlib()
    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    colours = [f"C{i % 10}" for i in range(len(comparison.groups))]
    shared_steps = len({tuple(lr_steps(g)) for g in comparison.groups}) == 1
    last_epoch = max((r["epoch"] for g in comparison.groups for run in g.runs
                      for r in run.metrics), default=1)
    for ax, (key, title, scale) in zip(axes, PANELS):
        for group, colour in zip(comparison.groups, colours):
            epochs, mean, low, high = curves(group, key)
            if not len(epochs):
                continue  # its runs have summary.json but no metrics.csv: nothing per epoch
            ax.plot(epochs, scale * mean, color=colour, label=legend_label(group))
            if len(group.runs) > 1:
                ax.fill_between(epochs, scale * low, scale * high, color=colour, alpha=0.2,
                                linewidth=0)
            if not shared_steps:  # each group's own steps, in its colour
                _steps(ax, lr_steps(group), last_epoch, colour)
        if shared_steps and comparison.groups:
            _steps(ax, lr_steps(comparison.groups[0]), last_epoch, "0.5")
        for line in ax.get_lines():
            if line.get_linestyle() == "--":  # one legend entry for all step lines
                line.set_label("lr step")
                break
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize="small",
                   title="mean; band: min-max over runs", title_fontsize="small")
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))


def _steps(ax, steps, last_epoch, colour):
    for step in steps:
        if step < last_epoch:  # a step at or after the last epoch never took effect
            # between epoch `step`, the last at the old rate, and the first at the new one
            ax.axvline(step + 0.5, color=colour, linestyle="--", linewidth=0.8, alpha=0.7)
