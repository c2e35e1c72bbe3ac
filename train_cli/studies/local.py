"""The local executor: up to N cells at once on this machine, each in a process of its own.

Cells are independent runs, so they need nothing from each other: each process runs one cell
(`python -m train_cli run-cell STUDY INDEX`, the same command a Slurm task runs) with its own
share of the machine. On a CPU the cores are divided between the N slots: each cell gets its own
cores (CPU affinity) and an OpenMP team as wide (N cells on a team as wide as the machine would
fight over every core). With --gpus each slot gets its own GPUs. Output is forwarded with the
cell's name in front; a cell that fails is reported, the others go on.
"""
import os
import signal
import subprocess
import sys
import threading
import time

from train_cli.errors import UsageError, UserError
from train_cli.runfolder import SWEEP_STATE
from train_cli.studies.cells import describe, finished, stopped
from train_cli.training.interrupt import StopRequests
from train_cli.training.progress import echo

GRACE_SECONDS = 30  # for cells to stop at a batch boundary after Ctrl-C


def slots(jobs, gpus=(), cores=None):
    """Each slot's (CPU cores, GPUs): the machine's cores split evenly, and --gpus split evenly
    (UsageError if they do not divide)."""
    cores = sorted(os.sched_getaffinity(0)) if cores is None else list(cores)
    if jobs > len(cores) and not gpus:
        raise UsageError(f"--jobs {jobs} is more than the {len(cores)} cores this process may "
                         "use: each cell needs a core of its own")
    if gpus and len(gpus) % jobs:
        raise UsageError(f"--gpus {','.join(map(str, gpus))} does not split evenly over --jobs "
                         f"{jobs}; give a multiple of {jobs} GPUs")
    per_core, per_gpu = max(1, len(cores) // jobs), len(gpus) // jobs if gpus else 0
    return [(cores[i * per_core:(i + 1) * per_core] or cores,
             tuple(gpus[i * per_gpu:(i + 1) * per_gpu])) for i in range(jobs)]


def cell_command(manifest, index, slot, overrides):
    """The command that runs cell `index` of the study on a slot's cores (and GPUs)."""
    cores, gpus = slot
    cmd = [sys.executable, "-m", "train_cli", "run-cell", str(manifest.path), str(index),
           "--cpus", ",".join(map(str, cores))]
    for name in ("data_dir", "eval_batch_size"):
        if overrides.get(name) is not None:
            cmd += [f"--{name.replace('_', '-')}", str(overrides[name])]
    return cmd + (["--gpus", ",".join(map(str, gpus))] if gpus else [])


def log_file(manifest, cell):
    """Where a pool cell's output is kept (as well as shown)."""
    return manifest.path / SWEEP_STATE / (cell.dir.replace("/", "-") + ".log")


def run_pool(manifest, jobs, overrides):
    """Run every unfinished cell, `jobs` at a time; UserError naming the cells that failed."""
    todo = [i for i, c in enumerate(manifest.cells) if not finished(manifest, c)]
    free = slots(jobs, overrides.get("gpus") or manifest.config.gpus)
    echo(f"{len(manifest.cells) - len(todo)} of {len(manifest.cells)} cells finished; running "
         f"{len(todo)}, {jobs} at a time ({len(free[0][0])} core(s) each"
         + (f", GPUs {' | '.join(','.join(map(str, g)) for _, g in free)})" if free[0][1]
            else ")"))
    running, failed, lock = {}, [], threading.Lock()
    with StopRequests() as stop:
        while (todo and not stop.is_set()) or running:
            for index, (popen, slot, thread) in list(running.items()):
                if popen.poll() is not None:
                    thread.join()
                    free.append(slot)
                    del running[index]
                    if popen.returncode and not stop.is_set():
                        failed.append(manifest.cells[index])
            while todo and free and not stop.is_set():
                index, slot = todo.pop(0), free.pop(0)
                running[index] = _start(manifest, index, slot, overrides, lock)
            if stop.is_set():
                _stop_all(running)
            time.sleep(0.2)
    if stop.is_set():
        raise stopped(manifest, f"stopped by {stop.name}", stop.exit_code)
    if failed:
        raise UserError(f"{describe(manifest, failed)} of {manifest.path} failed (their output: "
                        f"{', '.join(str(log_file(manifest, c)) for c in failed)}); fix the "
                        "cause, then run the same command again: finished cells are left alone")


def _start(manifest, index, slot, overrides, lock):
    cell = manifest.cells[index]
    # one OpenMP team as wide as the slot's cores (the user's OMP_NUM_THREADS would be the
    # whole machine's, N times over)
    env = dict(os.environ, OMP_NUM_THREADS=str(len(slot[0])), PYTHONUNBUFFERED="1")
    # in this process group: a Ctrl-C at the terminal reaches every cell, which stops at its
    # next batch; a second one ends them all at once, as it does a run
    popen = subprocess.Popen(cell_command(manifest, index, slot, overrides), env=env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, bufsize=1)
    log = log_file(manifest, cell)
    log.parent.mkdir(exist_ok=True)

    def forward():
        with open(log, "a") as kept:
            for line in popen.stdout:
                kept.write(line)
                kept.flush()
                with lock:
                    echo(f"[{cell.name}] {line.rstrip()}")

    thread = threading.Thread(target=forward, daemon=True)
    thread.start()
    return popen, slot, thread


def _stop_all(running):
    """Ask every running cell to stop at its next batch (SIGTERM), then wait; SIGKILL after the
    grace period (the last checkpoint stays intact either way)."""
    for popen, _, _ in running.values():
        if popen.poll() is None:  # (after a Ctrl-C it has one already: a second is harmless)
            popen.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    for popen, _, thread in running.values():
        try:
            popen.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
        thread.join(timeout=2)

