"""Running a study's cells: one cell in this process, or every cell one after another.

A cell is left alone when it is finished at the study's epochs, resumed when it has a
checkpoint, else started: so running a study again continues it, whatever stopped it. Each cell
records what it is doing in STUDY/.sweep/<cell>.json (running, done, failed or stopped, with its
process and host), which `swishtrain sweep --status` reads.
"""
import json
import os
import shlex
import socket
import time
from dataclasses import replace
from pathlib import Path

from train_cli import runspec
from train_cli.errors import Stopped, UserError
from train_cli.runfolder import CHECKPOINT, SUMMARY, SWEEP_STATE, RunFolder
from train_cli.training import run as single
from train_cli.training.interrupt import StopRequests
from train_cli.training.progress import echo
from train_cli.training.recorder import write_sweep_file


def state_file(manifest, cell):
    """Where a cell's state is recorded."""
    return manifest.path / SWEEP_STATE / (cell.dir.replace("/", "-") + ".json")


def slurm_task(environ=os.environ):
    """(job, task) of the Slurm array task this process runs in, or None."""
    job, task = environ.get("SLURM_ARRAY_JOB_ID"), environ.get("SLURM_ARRAY_TASK_ID")
    return (job, task) if job and task else None


def record_state(manifest, cell, state, **details):
    """Record a cell's state (with this process and host, and its Slurm task) for --status."""
    task = slurm_task()
    record = dict(state=state, pid=os.getpid(), host=socket.gethostname(), time=time.time(),
                  **(dict(zip(("job", "task"), task)) if task else {}))
    write_sweep_file(state_file(manifest, cell), record | details)


def read_state(manifest, cell):
    """A cell's recorded state (a dict; {} if none)."""
    try:
        saved = json.loads(state_file(manifest, cell).read_text())
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


def process_lives(saved):
    """Whether the process a state record names (on this host) is alive."""
    try:
        os.kill(int(saved["pid"]), 0)
    except (ProcessLookupError, ValueError, KeyError, TypeError, OverflowError):
        return False
    except PermissionError:
        pass
    return True


def running_elsewhere(manifest, cell):
    """'pid N on HOST' if another live process of this host runs the cell, else None."""
    saved = read_state(manifest, cell)
    if saved.get("state") != "running" or saved.get("host") != socket.gethostname() or \
            saved.get("pid") == os.getpid() or not process_lives(saved):
        return None
    return f"pid {saved['pid']} on {saved['host']}"


def finished(manifest, cell):
    """Whether a cell's run is done at the study's number of epochs."""
    folder = RunFolder(manifest.path / cell.dir)
    return folder.has(CHECKPOINT) and folder.is_finished_quietly() and \
        folder.read_json(SUMMARY).get("epochs") == manifest.config.epochs


def label(manifest, cell):
    """'seed 3' in a study of one model (as before sweeps), else 'vgg16_bn seed 3'."""
    return f"seed {cell.seed}" if len(manifest.models) == 1 else cell.name


def run_cell(manifest, cell, overrides, place="", progress_bar=None):
    """One cell's run in this process: left alone when finished, resumed when begun, else
    started; returns its summary."""
    path = manifest.path / cell.dir
    name = f"{label(manifest, cell)}{f' ({place})' if place else ''}"
    if finished(manifest, cell):
        echo(f"=== {name}: finished, in {path}")
        return RunFolder(path).read_json(SUMMARY)
    other = running_elsewhere(manifest, cell)
    if other:  # two processes would write one run folder
        raise UserError(f"{cell.name} of {manifest.path} is running already ({other}); let it "
                        "finish, or stop it first")
    record_state(manifest, cell, "running")
    try:
        if RunFolder(path).has(CHECKPOINT):
            echo(f"=== {name}: resuming {path}")
            summary = single.resume(path, dict(overrides, epochs=manifest.config.epochs),
                                    progress_bar=progress_bar)
        else:
            echo(f"=== {name} -> {path}")
            changed = {k: v for k, v in overrides.items() if v is not None}
            spec = runspec.new_run(replace(manifest.cell_config(cell), **changed))
            summary = single.train(spec, overwrite=True, progress_bar=progress_bar)
    except Stopped as e:
        record_state(manifest, cell, "stopped", message=str(e).splitlines()[0])
        raise
    except BaseException as e:
        record_state(manifest, cell, "failed", message=str(e).splitlines()[0] if str(e) else
                     type(e).__name__)
        raise
    record_state(manifest, cell, "done")
    return summary


def run_in_order(manifest, overrides, progress_bar=None):
    """Every cell of the study, one after another in this process; the summaries. A cell that
    fails is reported and the others go on; UserError at the end names the failed ones."""
    summaries, failed, cells = [], [], manifest.cells
    with StopRequests() as stop:  # a stop between two cells' runs is honoured too
        for i, cell in enumerate(cells, 1):
            if stop.is_set():
                raise stopped(manifest, f"stopped by {stop.name}", stop.exit_code)
            try:
                summaries.append(run_cell(manifest, cell, overrides, f"{i}/{len(cells)}",
                                          progress_bar))
            except Stopped as e:  # the command that continues is the study's, not the cell's
                raise stopped(manifest, str(e).splitlines()[0], e.exit_code) from None
            except UserError as e:
                echo(f"{e.prefix}{e}", err=True)
                failed.append(cell)
        if failed:
            raise UserError(f"{describe(manifest, failed)} of {manifest.path} failed (said "
                            "above); fix the cause, then run the same command again (or "
                            f"swishtrain resume {manifest.path}): finished cells are left alone")
        report(manifest, summaries)
        if stop.is_set():
            raise stopped(manifest, f"stopped by {stop.name}", stop.exit_code)
    return summaries


def unfinished(manifest):
    """The cells not finished at the study's epochs."""
    return [c for c in manifest.cells if not finished(manifest, c)]


def stopped(manifest, why, exit_code):
    """The Stopped of a study: what stopped it, which cells are unfinished, and the command
    that continues the whole study."""
    left = unfinished(manifest)
    if not left:
        return Stopped(f"{why}; every {'seed' if len(manifest.models) == 1 else 'cell'} of "
                       f"{manifest.path} is finished", exit_code=exit_code)
    return Stopped(f"{why}\n{describe(manifest, left)} of {manifest.path} are not finished.\n"
                   f"Resume the study with: swishtrain resume {shlex.quote(str(manifest.path))}",
                   exit_code=exit_code)


def describe(manifest, cells):
    """Cells in words: 'seeds 2,3' in a study of one model, else 'vgg16_bn seed 2, ...'."""
    if not cells:
        return ""
    if len(manifest.models) == 1:
        return f"seeds {','.join(str(c.seed) for c in cells)}"
    return ", ".join(c.name for c in cells)


def report(manifest, summaries):
    """Per-cell best accuracies and each model's mean; the last line states the study's result.

    A study is one experiment: cells that ended with different epoch counts (an extension that
    was interrupted) are listed, not averaged."""
    import statistics
    by_model = {}
    for cell, s in zip(manifest.cells, summaries):
        echo(f"{label(manifest, cell)}: best validation accuracy {s['best_val_acc']:.4f} at "
             f"epoch {s['best_epoch']} of {s.get('epochs', '?')}")
        by_model.setdefault(cell.model, []).append(s)
    base = manifest.path
    echo(f"Study folder: {base}  (compare it with: swishtrain compare {base} ...)")
    epochs = sorted({s.get("epochs") for s in summaries}, key=str)
    if len(epochs) > 1:
        raise UserError(f"the seeds of {base} ended after different numbers of epochs "
                        f"({', '.join(map(str, epochs))}), so they are not averaged: resume the "
                        f"study with --epochs {max(e for e in epochs if e is not None)}")
    for model, runs in by_model.items():
        accs = [s["best_val_acc"] for s in runs]
        spread = f" ± {statistics.stdev(accs):.4f}" if len(accs) > 1 else ""
        of = "" if len(by_model) == 1 else f" of {model}"
        echo(f"Best validation accuracy{of}: mean {statistics.mean(accs):.4f}{spread} over "
             f"{len(accs)} seed(s)")


def unfinished_seeds(run_path):
    """For a cell folder of a study: (study folder, its other cells not yet finished, in words:
    'seeds 2,3' or 'vgg16_bn seed 2, ...'; '' if none), or None for a run of its own."""
    from train_cli.studies import manifest as manifests
    run_path = Path(run_path).resolve()
    for study in run_path.parents[:2]:
        try:
            found = manifests.load(study)
        except UserError:
            continue
        mine = [c for c in found.cells if (study / c.dir).resolve() == run_path]
        if mine:
            return study, describe(found, [c for c in unfinished(found) if c not in mine])
    return None
