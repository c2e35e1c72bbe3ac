"""The Slurm executor: one sbatch job array, one task per unfinished cell; no ssh.

Each task runs `python -m train_cli run-cell STUDY INDEX` in this checkout (the command the local
pool runs), with OpenMP threads = its --cpus-per-task. A task Slurm preempts or requeues gets
SIGTERM; ahead of its time limit it gets SIGUSR1 (the --signal warning below). Either way the run
stops at the next batch boundary with its last checkpoint intact (training/interrupt.py). At the
time-limit warning the task then requeues itself, so a cell longer than the time limit runs in
pieces; a requeued task resumes exactly, recomputing at most the interrupted epoch. Running the
sweep command again submits only the cells still unfinished.

Submission is sbatch itself, not submitit: submitit pickles a Python callable per task into a
folder of its own, while a task here is a plain command whose whole state is in the study
folder, so a batch script a person can read (kept in STUDY/.sweep/) is all it takes. What
submitit adds beyond sbatch (requeue at the time-limit warning) is done here, above.
"""
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

from train_cli.errors import Stopped, UsageError, UserError
from train_cli.runfolder import SWEEP_STATE, epochs_recorded
from train_cli.studies.cells import finished, read_state, record_state, slurm_task
from train_cli.training.interrupt import TIME_LIMIT
from train_cli.training.progress import echo
from train_cli.training.recorder import write_sweep_file

WARNING_SECONDS = 120  # the time-limit warning this long ahead: time to finish a batch
SQUEUE_SECONDS = 30  # a controller that does not answer in this time does not answer
# a task in an end state is no longer Slurm's; in any other it is held, waiting in these
ENDED = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
         "DEADLINE", "OUT_OF_MEMORY", "REVOKED"}
WAITING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SPECIAL_EXIT"}


def ranges(indices):
    """0,1,2,5 -> '0-2,5' (Slurm's --array form; short for any number of cells)."""
    parts, start = [], None
    for i, index in enumerate(indices):
        if start is None:
            start = index
        if i + 1 == len(indices) or indices[i + 1] != index + 1:
            parts.append(f"{start}-{index}" if index > start else str(start))
            start = None
    return ",".join(parts)


def sbatch_args(study, indices, jobs, options):
    """sbatch's arguments (as argv: no shell quoting of paths or names)."""
    logs = study.path.resolve() / SWEEP_STATE
    args = [f"--job-name=swishtrain-{study.path.name}",
            f"--array={ranges(indices)}" + (f"%{jobs}" if jobs else ""),
            f"--output={logs}/slurm-%A_%a.log",
            "--open-mode=append",  # a requeued task's log keeps what it said before
            "--requeue",  # a preempted or failed node's task runs again
            # to the batch shell, which is the exec'd run-cell
            f"--signal=B:{TIME_LIMIT.name.removeprefix('SIG')}@{WARNING_SECONDS}"]
    for flag, value in (("--partition", options.get("partition")),
                        ("--time", options.get("time")),
                        ("--cpus-per-task", options.get("cpus_per_task")),
                        ("--gres", options.get("gres"))):
        if value:
            args.append(f"{flag}={value}")
    return args + list(options.get("extra", ()))


def script(study, overrides):
    """The batch script of every task: run its cell in this checkout."""
    command = [sys.executable, "-m", "train_cli", "run-cell", str(study.path.resolve())]
    for name in ("data_dir", "eval_batch_size"):
        if overrides.get(name) is not None:
            command += [f"--{name.replace('_', '-')}", str(overrides[name])]
    return "\n".join([
        "#!/bin/bash",
        "# one OpenMP team as wide as the task's cores (all of a node's would oversubscribe)",
        "export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}",
        f"cd {shlex.quote(os.getcwd())}",
        # exec: the signals Slurm sends the batch shell reach the run itself
        "exec " + " ".join(map(shlex.quote, command)) + ' "$SLURM_ARRAY_TASK_ID"']) + "\n"


def task_states(jobs):
    """{'JOB_TASK': Slurm's state} of every array task of `jobs` that Slurm still holds (any
    state but an end state); None when squeue cannot say (no Slurm here, or no controller)."""
    # the user's SQUEUE_STATES, SQUEUE_USERS, ... filter even an explicit -j: not here
    env = {k: v for k, v in os.environ.items() if not k.startswith("SQUEUE_")}
    states = {}
    for job in sorted({str(j) for j in jobs if isinstance(j, (str, int))}):
        try:  # one job at a time: a job Slurm has forgotten fails the whole query
            done = subprocess.run(["squeue", "-h", "--array", "--states=all", "-o", "%i %T",
                                   "-j", job], capture_output=True, text=True, env=env,
                                  timeout=SQUEUE_SECONDS)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if done.returncode and "Invalid job id" not in done.stderr:
            return None
        listed = (line.split() for line in done.stdout.splitlines() if len(line.split()) == 2)
        states.update((task, state) for task, state in listed if state not in ENDED)
    return states


def still_queued(study):
    """Job ids of this study's tasks that Slurm still holds (pending, running, held)."""
    jobs = [read_state(study, c).get("job") for c in study.cells if not finished(study, c)]
    tasks = task_states(j for j in jobs if j) or {}
    return sorted({task.split("_")[0] for task in tasks})


def after_time_limit(study, cell, epochs_before, stopped):
    """The Stopped to end this task with after it stopped at its time-limit warning: requeued
    (`scontrol requeue`, to go on from the cell's checkpoint) if the run is unfinished and this
    stint finished an epoch; else `stopped`, saying why it was not requeued."""
    task = "_".join(slurm_task())
    epochs = epochs_recorded(study.path / cell.dir) or 0
    if finished(study, cell):
        return stopped
    if epochs <= epochs_before:
        return Stopped(f"{stopped}\nNo epoch of {cell.name} finished within task {task}'s time "
                       "limit, so it is not requeued (it would start the same epoch again): give "
                       "each task more --time or more cores, then run the sweep command again",
                       exit_code=stopped.exit_code)
    # `scontrol requeue` ends this task with SIGTERM: nothing is left to stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        done = subprocess.run(["scontrol", "requeue", task], capture_output=True, text=True,
                              timeout=SQUEUE_SECONDS)
        said = (done.stderr.strip().splitlines() or ["no message"])[-1] if done.returncode \
            else None
    except (OSError, subprocess.TimeoutExpired) as e:
        said = str(e)
    if said:
        return Stopped(f"{stopped}\nTask {task} could not requeue itself ({said}); run the "
                       "sweep command again to go on", exit_code=stopped.exit_code)
    record_state(study, cell, "queued", message="requeued at its time limit")
    return Stopped(f"time limit near: task {task} stopped {cell.name} after epoch {epochs} and "
                   "requeued itself; it resumes from that checkpoint when Slurm starts it "
                   "again (nothing to do)", exit_code=stopped.exit_code)


def submit(study, overrides, jobs, options):
    """Submit the study's unfinished cells as one job array; return its job id."""
    gpus = overrides.get("gpus") or study.config.gpus
    if gpus and not options.get("gres"):
        raise UsageError("--gpus with --executor slurm: ask Slurm for the GPUs with --gres "
                         "gpu:N (Slurm decides which GPUs a task gets)")
    if not shutil.which("sbatch"):
        raise UserError("--executor slurm needs Slurm's sbatch on PATH (slurm-client); run on a "
                        "cluster's login node, or use --executor local")
    queued = still_queued(study)
    if queued:  # two tasks would write one run folder
        raise UserError(f"job(s) {', '.join(queued)} of {study.path} are still queued or "
                        "running; let them finish (swishtrain sweep --status shows them) or "
                        "scancel them, then run this again")
    indices = [i for i, c in enumerate(study.cells) if not finished(study, c)]
    if not indices:
        echo(f"every cell of {study.path} is finished; nothing to submit")
        return None
    path = study.path / SWEEP_STATE / f"slurm-{time.strftime('%Y%m%d-%H%M%S')}.sh"
    write_sweep_file(path, script(study, overrides))
    done = subprocess.run(["sbatch", "--parsable", *sbatch_args(study, indices, jobs, options),
                           str(path)], capture_output=True, text=True)
    if done.returncode:
        said = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"sbatch refused the job array ({said}); its script is {path}")
    job = done.stdout.strip().split(";")[0]
    for index in indices:  # the array's task ids are the cells' indices
        record_state(study, study.cells[index], "queued", job=job, task=str(index))
    limit = f"at most {jobs} at once" if jobs else "as many at once as Slurm allows"
    echo(f"submitted job array {job}: {len(indices)} cell(s), {limit} (script {path}; each "
         f"task's output in {path.parent}/slurm-{job}_<task>.log)")
    echo(f"watch it with: swishtrain sweep --status {study.path}; when it is done: "
         f"swishtrain compare {study.path}")
    return job
