"""`swishtrain launch`: run a parameter-server job (scheduler, servers, workers) to its end.

The launcher in parts, each read on its own:
    jobspec.py      the options, parsed once into a JobSpec (every rule applied before a start)
    placement.py    which process runs where, with what command and environment (pure)
    supervision.py  start, watch (output, CPU time, stalls) and stop every process of a job
    remote.py       the supervisor on another host (`python -m train_cli.cluster.remote`)
    launch.py       this: the restart loop. When a process is lost (killed, hung, cut off) and
                    --max-restarts allows, the whole job starts again from the run's last
                    completed epoch (the resume is exact), as torchrun does.
Locally every process runs in its own session on 127.0.0.1. With a hostfile, servers and workers
start on the listed hosts over ssh (round-robin) and the scheduler runs here, on --root-uri;
inside a Slurm allocation they start on its nodes as job steps (srun), not over ssh.
"""
import shlex
import signal
import time

from train_cli.cluster import placement
from train_cli.cluster.remote import check_hosts
from train_cli.cluster.supervision import Job, JobFailed, free_port
from train_cli.errors import Stopped
from train_cli.training.interrupt import EXIT_CODES


def run_job(spec, echo=print, dry_run=False):
    """Start, watch and always clean up the job of a JobSpec, restarting it up to
    spec.max_restarts times. Ctrl-C, SIGTERM or SIGUSR1 (a Slurm time-limit warning) stop the
    job (exit 130/143/138)."""
    if dry_run:
        for planned in placement.plan(spec, "PORT"):
            echo(planned.describe())
        return
    where = f" -s {spec.servers} --hostfile {shlex.quote(str(spec.hostfile or 'HOSTFILE'))} " \
        f"--root-uri {spec.root_uri}" if spec.hosts and spec.via == "ssh" else ""
    how = f"swishtrain launch -n {spec.workers}{where} -- --resume {shlex.quote(spec.run_dir)}"

    def interrupted(signum, frame):
        raise Stopped(f"{signal.Signals(signum).name}: stopped all processes of the job; resume "
                      f"from the last completed epoch with: {how}", exit_code=128 + signum)

    deadline = time.monotonic() + spec.timeout if spec.timeout else None
    restarts, job = 0, None
    previous = {s: signal.signal(s, interrupted) for s in EXIT_CODES}
    try:
        if spec.hosts:
            free_port(spec.root_uri)  # an address of this machine, before any host is asked
            if spec.via == "ssh":  # srun needs no preflight: the allocation's nodes run steps
                check_hosts(spec.hosts)
            echo(f"[launch] no authentication (ps-lite has none): the scheduler on "
                 f"{spec.root_uri} and every server and worker, on its host's address, accept "
                 "whoever reaches their ports; run on a trusted network only")
        while True:
            job = Job(spec, echo)
            try:
                job.start()
                job.wait(deadline, spec.stall_timeout, spec.timeout)
                return
            except JobFailed as failure:
                if not failure.restartable or restarts >= spec.max_restarts:
                    if restarts:
                        raise JobFailed(f"{failure} (after {restarts} restart(s))") from None
                    raise
                job.stop()
                restarts += 1
                spec = spec.restarted()
                done = spec.epochs_done()
                after = f"after epoch {done}" if done else "from the start"
                echo(f"[launch] restart {restarts} of {spec.max_restarts}: {failure}; starting "
                     f"the job again {after} with: {shlex.join(spec.train_args)}")
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if job is not None:
            job.stop()
