"""`swishtrain sweep --status STUDY`: each cell's state, epoch, best accuracy and time left.

Read from the study's folders only (so it works while a sweep runs, here or on a cluster): a
cell is done when its run is finished at the study's epochs; running, failed or stopped as its
state file says; queued when it has not begun. A "running" cell is checked: on this host, that
its process lives; as a Slurm task, that Slurm still runs it (squeue); if not, it is stopped.

Time left: each cell's measured mean epoch time times its epochs left; a cell without one is
counted at the mean of its model's cells (else of all cells). That sum is cell-hours; while
cells run, the wall-clock estimate lets as many run at once as run now: the running ones
finish, and each queued or stopped cell starts, in the study's order, when one ends.
"""
import os
import socket
import statistics

from train_cli.runfolder import METRICS, read_metrics
from train_cli.studies import manifest as manifests
from train_cli.studies.cells import finished, read_state
from train_cli.studies.slurm import WAITING, task_states


def cell_rows(study):
    """One dict per cell: name, model, state, epochs done, best val acc, seconds per epoch."""
    saved = {cell.name: read_state(study, cell) for cell in study.cells}
    slurm = _slurm_tasks(saved.values())
    rows = []
    for cell in study.cells:
        folder = study.path / cell.dir
        try:
            metrics = read_metrics(folder / METRICS)
        except (OSError, ValueError):
            metrics = []
        state = _state(saved[cell.name], slurm)
        if finished(study, cell):
            state = "done"
        elif state in (None, "done"):  # "done" at fewer epochs: the study was extended since
            state = "stopped" if metrics else "queued"
        best = max((r["val_acc"] for r in metrics), default=None)
        seconds = [r["epoch_seconds"] for r in metrics if "epoch_seconds" in r]
        rows.append(dict(cell=cell.name, model=cell.model, state=state, epochs=len(metrics),
                         best_val_acc=best,
                         epoch_seconds=statistics.mean(seconds) if seconds else None))
    return rows


def _slurm_tasks(saved):
    """Slurm's view of the tasks that recorded themselves running on another host (None if
    there are none, or squeue cannot say)."""
    jobs = [s["job"] for s in saved if s.get("state") == "running" and s.get("job")
            and s.get("task") is not None and s.get("host") != socket.gethostname()]
    return task_states(jobs) if jobs else None


def _state(saved, slurm):
    """The state a cell's runner recorded; a running one whose process is gone is stopped."""
    state = saved.get("state")
    if state != "running":
        return state
    if saved.get("host") == socket.gethostname():
        try:
            os.kill(int(saved["pid"]), 0)
        except (ProcessLookupError, ValueError, KeyError, TypeError):
            return "stopped"
        except PermissionError:
            pass
    elif slurm is not None and saved.get("job") and saved.get("task") is not None:
        task = slurm.get(f"{saved['job']}_{saved['task']}")
        if task is None:  # Slurm no longer holds it: killed, cancelled or its node lost
            return "stopped"
        if task in WAITING:  # requeued, waiting to resume
            return "queued"
    return state


def show(path, echo=print):
    """Print the status table of the study in path and the estimated time left."""
    study = manifests.load(path)
    rows = cell_rows(study)
    epochs = study.config.epochs
    measured = [r for r in rows if r["epoch_seconds"]]
    typical = {m: statistics.mean(r["epoch_seconds"] for r in measured if r["model"] == m)
               for m in {r["model"] for r in measured}}
    overall = statistics.mean(r["epoch_seconds"] for r in measured) if measured else None
    echo(f"{'cell':<28} {'state':<8} {'epoch':>9} {'best val acc':>13} {'s/epoch':>8}")
    left = {}  # cell: seconds of training left
    for r in rows:
        best = f"{r['best_val_acc']:.4f}" if r["best_val_acc"] is not None else "-"
        per = r["epoch_seconds"] or typical.get(r["model"], overall)
        shown = "-" if per is None else f"{per:.1f}" if r["epoch_seconds"] else f"~{per:.1f}"
        echo(f"{r['cell']:<28} {r['state']:<8} {r['epochs']:>4} / {epochs:<3} {best:>13} "
             f"{shown:>8}")
        if r["state"] != "done" and per:
            left[r["cell"]] = per * max(0, epochs - r["epochs"])
    counts = {s: sum(r["state"] == s for r in rows) for s in
              ("done", "running", "queued", "stopped", "failed")}
    echo(", ".join(f"{n} {s}" for s, n in counts.items() if n) + f" of {len(rows)} cells")
    if counts["done"] == len(rows):
        echo("time left: none (every cell is done)")
    elif overall is None:
        echo("time left: unknown until a cell has finished an epoch")
    elif counts["running"]:
        running = [left[r["cell"]] for r in rows if r["state"] == "running"]
        waiting = [left[r["cell"]] for r in rows if r["state"] not in ("done", "running")]
        echo(f"time left: about {_hours(wall_seconds(running, waiting))} with "
             f"{len(running)} cell(s) at once ({sum(left.values()) / 3600:.1f} cell-hours of "
             "training at the measured epoch times; ~ marks an epoch time taken from other "
             "cells)")
    else:
        echo(f"time left: about {sum(left.values()) / 3600:.1f} cell-hours of training at the "
             "measured epoch "
             "times (divide by the cells that will run at once; ~ marks an epoch time taken "
             "from other cells)")


def wall_seconds(running, waiting):
    """When the last cell ends if the running ones (their seconds left) go on and each waiting
    one starts, in order, in the first slot that frees up."""
    slots = sorted(running)
    for seconds in waiting:
        slots[0] += seconds
        slots.sort()
    return max(slots)


def _hours(seconds):
    """1 h 05 min, 12 min or 40 s."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"
