"""The Slurm executor: one sbatch job array, one task per unfinished cell; no ssh.

Each task runs `python -m train_cli run-cell STUDY INDEX` in this checkout (the command the local
pool runs), with OpenMP threads = its --cpus-per-task. A task Slurm preempts, requeues or times
out gets SIGTERM (and, with the --signal warning below, SIGTERM ahead of the time limit): the run
stops at the next batch boundary with its last checkpoint intact (training/interrupt.py), and a
requeued task resumes it exactly, recomputing at most the interrupted epoch. Running the sweep
command again submits only the cells still unfinished.
"""
import os
import shlex
import shutil
import subprocess
import sys
import time

from train_cli.errors import UsageError, UserError
from train_cli.runfolder import SWEEP_STATE
from train_cli.studies.cells import finished
from train_cli.training.progress import echo
from train_cli.training.recorder import write_sweep_file

WARNING_SECONDS = 120  # SIGTERM this long before the time limit: time to finish a batch


def script(study, indices, jobs, overrides, options):
    """The batch script of the job array (its #SBATCH lines, then the task's command)."""
    logs = study.path.resolve() / SWEEP_STATE
    lines = ["#!/bin/bash",
             f"#SBATCH --job-name=swishtrain-{study.path.name}",
             f"#SBATCH --array={','.join(map(str, indices))}%{jobs}",
             f"#SBATCH --output={logs}/slurm-%A_%a.log",
             "#SBATCH --open-mode=append",  # a requeued task's log keeps what it said before
             "#SBATCH --requeue",  # a preempted or failed node's task runs again
             f"#SBATCH --signal=B:TERM@{WARNING_SECONDS}"]
    for flag, value in (("--partition", options.get("partition")),
                        ("--time", options.get("time")),
                        ("--cpus-per-task", options.get("cpus_per_task")),
                        ("--gres", options.get("gres"))):
        if value:
            lines.append(f"#SBATCH {flag}={value}")
    lines += [f"#SBATCH {arg}" for arg in options.get("extra", ())]
    command = [sys.executable, "-m", "train_cli", "run-cell", str(study.path.resolve()),
               "$SLURM_ARRAY_TASK_ID"]
    for name in ("epochs", "data_dir", "eval_batch_size"):
        if overrides.get(name) is not None:
            command += [f"--{name.replace('_', '-')}", str(overrides[name])]
    lines += ["# one OpenMP team as wide as the task's cores (all of a node's would oversubscribe)",
              "export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}",
              f"cd {shlex.quote(os.getcwd())}",
              # exec: the signals Slurm sends the batch shell reach the run itself
              "exec " + " ".join(a if a.startswith("$") else shlex.quote(a) for a in command)]
    return "\n".join(lines) + "\n"


def submit(study, overrides, jobs, options):
    """Submit the study's unfinished cells as one job array; return its job id."""
    if study.config.gpus and not options.get("gres"):
        raise UsageError("--gpus with --executor slurm: ask Slurm for the GPUs with --gres "
                         "gpu:N (Slurm decides which GPUs a task gets)")
    if not shutil.which("sbatch"):
        raise UserError("--executor slurm needs Slurm's sbatch on PATH (slurm-client); run on a "
                        "cluster's login node, or use --executor local")
    indices = [i for i, c in enumerate(study.cells) if not finished(study, c)]
    if not indices:
        echo(f"every cell of {study.path} is finished; nothing to submit")
        return None
    path = study.path / SWEEP_STATE / f"slurm-{time.strftime('%Y%m%d-%H%M%S')}.sh"
    write_sweep_file(path, script(study, indices, jobs, overrides, options))
    done = subprocess.run(["sbatch", "--parsable", str(path)], capture_output=True, text=True)
    if done.returncode:
        said = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"sbatch refused the job array ({said}); its script is {path}")
    job = done.stdout.strip().split(";")[0]
    echo(f"submitted job array {job}: {len(indices)} cell(s), at most {jobs} at once "
         f"(script {path}; each task's output in {path.parent}/slurm-{job}_<task>.log)")
    echo(f"watch it with: swishtrain sweep --status {study.path}; when it is done: "
         f"swishtrain compare {study.path}")
    return job
