"""`swishtrain sweep --status STUDY`: each cell's state, epoch, best accuracy and time left.

Read from the study's folders (so it works while a sweep runs, here or on a cluster): a cell is
done when its run is finished at the study's epochs; running, failed or stopped as its state
file says; queued when it has not begun. A state file's word is checked where it can be: a cell
running on this host, that its process lives (else it is stopped); a cell of a Slurm task, what
Slurm says of the task (squeue): running, queued while pending or requeued, and stopped once
Slurm no longer holds a task that was running (killed, cancelled, its node lost).

Time left: each cell's measured mean epoch time times its epochs left; a cell without one is
counted at the mean of its model's cells (else of all cells). That sum is cell-hours; while
cells run, the wall-clock estimate lets as many run at once as run now: the running ones
finish, and each queued or stopped cell starts, in the study's order, when one ends. Failed
cells are not counted (nothing runs them until their cause is fixed).
"""
import socket
import statistics

from train_cli.runfolder import METRICS, read_metrics
from train_cli.studies import manifest as manifests
from train_cli.studies.cells import finished, process_lives, read_state
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


def _slurm_task(saved):
    """'JOB_TASK' of the Slurm task a state record names, or None."""
    job, task = saved.get("job"), saved.get("task")
    ok = all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in (job, task))
    return f"{job}_{task}" if ok else None


def _slurm_tasks(saved):
    """What Slurm says of the tasks the unfinished cells' records name (None if none, or
    squeue cannot say)."""
    tasks = [_slurm_task(s) for s in saved if s.get("state") in ("running", "queued", "stopped")]
    jobs = [task.split("_")[0] for task in tasks if task]
    return task_states(jobs) if jobs else None


def _state(saved, slurm):
    """The state a cell's runner recorded, checked against its process or Slurm's word."""
    state, task = saved.get("state"), _slurm_task(saved)
    if state == "running" and saved.get("host") == socket.gethostname():
        return state if process_lives(saved) else "stopped"
    if slurm is None or task is None or state not in ("running", "queued", "stopped"):
        return state
    held = slurm.get(task)
    if held is None:  # Slurm no longer holds it: ended, cancelled, killed or its node lost
        return "stopped" if state == "running" else None if state == "queued" else state
    return "queued" if held in WAITING else "running"


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
    left, borrowed = {}, False  # cell: seconds of training left; any epoch time borrowed
    for r in rows:
        best = f"{r['best_val_acc']:.4f}" if r["best_val_acc"] is not None else "-"
        per = r["epoch_seconds"] or typical.get(r["model"], overall)
        shown = "-" if per is None else f"{per:.1f}" if r["epoch_seconds"] else f"~{per:.1f}"
        echo(f"{r['cell']:<28} {r['state']:<8} {r['epochs']:>4} / {epochs:<3} {best:>13} "
             f"{shown:>8}")
        if r["state"] not in ("done", "failed") and per:
            left[r["cell"]] = per * max(0, epochs - r["epochs"])
            borrowed = borrowed or shown.startswith("~")
    counts = {s: sum(r["state"] == s for r in rows) for s in
              ("done", "running", "queued", "stopped", "failed")}
    echo(", ".join(f"{n} {s}" for s, n in counts.items() if n) + f" of {len(rows)} cells")
    notes = ([f"{counts['failed']} failed cell(s) not counted"] if counts["failed"] else []) + \
        (["~: an epoch time taken from other cells"] if borrowed else [])
    note = f"; {'; '.join(notes)}" if notes else ""
    if counts["done"] == len(rows):
        echo("time left: none (every cell is done)")
    elif overall is None:
        echo("time left: unknown until a cell has finished an epoch")
    elif counts["running"]:
        running = [left[r["cell"]] for r in rows if r["state"] == "running"]
        waiting = [left[r["cell"]] for r in rows if r["state"] in ("queued", "stopped")]
        echo(f"time left: about {_hours(wall_seconds(running, waiting))} with "
             f"{len(running)} cell(s) at once ({sum(left.values()) / 3600:.1f} cell-hours of "
             f"training at the measured epoch times{note})")
    else:
        echo(f"time left: about {sum(left.values()) / 3600:.1f} cell-hours of training at the "
             f"measured epoch times (divide by the cells that will run at once{note})")


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
    if round(seconds) < 60:
        return f"{round(seconds)} s"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"
