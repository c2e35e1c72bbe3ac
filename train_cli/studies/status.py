"""`swishtrain sweep --status STUDY`: each cell's state, epoch, best accuracy and time left.

Read from the study's folders only (so it works while a sweep runs, here or on a cluster): a
cell is done when its run is finished at the study's epochs; running, failed or stopped as its
state file says (a "running" cell whose process is gone on this host is shown as stopped);
queued when it has not begun. Time left: each cell's measured mean epoch time times its epochs
left; cells not yet begun are counted at the mean epoch time of those that have one.
"""
import os
import socket
import statistics

from train_cli.runfolder import METRICS, read_metrics
from train_cli.studies import manifest as manifests
from train_cli.studies.cells import finished, read_state


def cell_rows(study):
    """One dict per cell: name, state, epochs done, best val acc, seconds per epoch."""
    rows = []
    for cell in study.cells:
        folder = study.path / cell.dir
        try:
            metrics = read_metrics(folder / METRICS)
        except (OSError, ValueError):
            metrics = []
        state = _state(study, cell)
        if finished(study, cell):
            state = "done"
        elif state in (None, "done"):  # "done" at fewer epochs: the study was extended since
            state = "stopped" if metrics else "queued"
        best = max((r["val_acc"] for r in metrics), default=None)
        seconds = [r["epoch_seconds"] for r in metrics if "epoch_seconds" in r]
        rows.append(dict(cell=cell.name, state=state, epochs=len(metrics), best_val_acc=best,
                         epoch_seconds=statistics.mean(seconds) if seconds else None))
    return rows


def _state(study, cell):
    """The state a cell's runner recorded; a running one whose process is gone is stopped."""
    saved = read_state(study, cell)
    state = saved.get("state")
    if state == "running" and saved.get("host") == socket.gethostname():
        try:
            os.kill(int(saved["pid"]), 0)
        except (ProcessLookupError, ValueError, KeyError):
            return "stopped"
        except PermissionError:
            pass
    return state


def show(path, echo=print):
    """Print the status table of the study in path and the estimated time left."""
    study = manifests.load(path)
    rows = cell_rows(study)
    epochs = study.config.epochs
    known = [r["epoch_seconds"] for r in rows if r["epoch_seconds"]]
    typical = statistics.mean(known) if known else None
    echo(f"{'cell':<28} {'state':<8} {'epoch':>9} {'best val acc':>13} {'s/epoch':>8}")
    left = 0.0
    for r in rows:
        best = f"{r['best_val_acc']:.4f}" if r["best_val_acc"] is not None else "-"
        per = r["epoch_seconds"] or typical
        echo(f"{r['cell']:<28} {r['state']:<8} {r['epochs']:>4} / {epochs:<3} {best:>13} "
             f"{per or 0:>8.1f}")
        if r["state"] != "done" and per:
            left += per * (epochs - r["epochs"])
    counts = {s: sum(r["state"] == s for r in rows) for s in
              ("done", "running", "queued", "stopped", "failed")}
    echo(", ".join(f"{n} {s}" for s, n in counts.items() if n) + f" of {len(rows)} cells")
    if counts["done"] == len(rows):
        echo("time left: none (every cell is done)")
    elif typical is None:
        echo("time left: unknown until a cell has finished an epoch")
    else:
        echo(f"time left: about {left / 3600:.1f} cell-hours of training at the measured epoch "
             "times (divide by the cells that run at once)")
