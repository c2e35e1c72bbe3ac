"""The Slurm executor: one sbatch job array, one task per unfinished cell; no ssh.

Each task runs `python -m train_cli run-cell STUDY INDEX` in this checkout (the command the local
pool runs), with OpenMP threads = its --cpus-per-task. A task Slurm preempts or requeues gets
SIGTERM; ahead of its time limit it gets SIGUSR1 (the --signal warning below). Either way the run
stops at the next batch boundary with its last checkpoint intact (training/interrupt.py). At the
time-limit warning the task then requeues itself, so a cell longer than the time limit runs in
pieces; a requeued task resumes exactly, recomputing at most the interrupted epoch. Running the
sweep command again submits only the cells still unfinished.
"""
import os
import shlex
import shutil
import subprocess
import sys
import time

from train_cli.errors import UsageError, UserError
from train_cli.runfolder import METRICS, SWEEP_STATE, read_metrics
from train_cli.studies.cells import finished, read_state, record_state
from train_cli.training.progress import echo
from train_cli.training.recorder import write_sweep_file

WARNING_SECONDS = 120  # SIGUSR1 this long before the time limit: time to finish a batch
# the states in which Slurm still holds a task: waiting to (re)start, or started
WAITING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED"}
STARTED = {"RUNNING", "CONFIGURING", "COMPLETING", "SIGNALING", "STAGE_OUT", "RESIZING"}


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
            f"--signal=B:USR1@{WARNING_SECONDS}"]  # to the batch shell: the exec'd run-cell
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
    """{'JOB_TASK': Slurm's state} of every array task of `jobs` that Slurm still holds (WAITING
    or STARTED); None when squeue cannot say (no Slurm here, or no controller)."""
    if not shutil.which("squeue"):
        return None
    states = {}
    for job in sorted(set(jobs)):  # one at a time: a job Slurm has forgotten fails the query
        done = subprocess.run(["squeue", "-h", "--array", "-o", "%i %T", "-j", str(job)],
                              capture_output=True, text=True)
        if done.returncode and "Invalid job id" not in done.stderr:
            return None
        listed = (line.split() for line in done.stdout.splitlines() if line.strip())
        states.update((task, state) for task, state in listed if state in WAITING | STARTED)
    return states


def still_queued(study):
    """Job ids of this study's tasks that Slurm still holds (pending or running)."""
    jobs = {read_state(study, c).get("job") for c in study.cells if not finished(study, c)}
    tasks = task_states(j for j in jobs if j) or {}
    return sorted({task.split("_")[0] for task in tasks})


def this_task():
    """'JOB_TASK' of the Slurm array task this process runs in, or None."""
    job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{job}_{task}" if job and task else None


def requeue_at_time_limit(study, cell, epochs_before):
    """After this task stopped at its time-limit warning: put it back in the queue, to go on
    from the cell's checkpoint, if this stint finished an epoch (else it never would: it says
    so and stays stopped)."""
    task = this_task()
    epochs = epochs_recorded(study, cell)
    if epochs <= epochs_before:
        echo(f"no epoch of {cell.name} finished within task {task}'s time limit, so it is not "
             "requeued (it would start the same epoch again); give each task more time "
             "(--time) or more cores, then run the sweep command again")
        return False
    done = subprocess.run(["scontrol", "requeue", task], capture_output=True, text=True)
    if done.returncode:
        said = (done.stderr.strip().splitlines() or ["no message"])[-1]
        echo(f"could not requeue task {task} ({said}); run the sweep command again to go on")
        return False
    record_state(study, cell, "queued", message="requeued at its time limit")
    echo(f"time limit near: task {task} stopped after epoch {epochs} and is requeued; it "
         "resumes from that checkpoint")
    return True


def epochs_recorded(study, cell):
    """How many epochs of the cell's run are recorded (0 before its first)."""
    try:
        return len(read_metrics(study.path / cell.dir / METRICS))
    except (OSError, ValueError):
        return 0


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
    for index in indices:
        record_state(study, study.cells[index], "queued", job=job)
    limit = f"at most {jobs} at once" if jobs else "as many at once as Slurm allows"
    echo(f"submitted job array {job}: {len(indices)} cell(s), {limit} (script {path}; each "
         f"task's output in {path.parent}/slurm-{job}_<task>.log)")
    echo(f"watch it with: swishtrain sweep --status {study.path}; when it is done: "
         f"swishtrain compare {study.path}")
    return job
