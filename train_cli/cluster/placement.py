"""Placement: which process runs where, with what command and environment (pure functions).

From a JobSpec and the scheduler's port, plan() lists every process of the job: the scheduler
here, then servers, then workers, on the hostfile's hosts round-robin (or all here). Nothing is
started; supervision.py starts what this plans, and `launch --dry-run` prints it.
"""
import ipaddress
import os
import shlex
import socket
import sys
from dataclasses import dataclass

from train_cli.cluster import JOB_GPUS
from train_cli.errors import UsageError
from train_cli.runfolder import RUN_STAMP_ENV
from train_cli.threads import share, user_choice

SSH_ENV = "SWISHTRAIN_SSH"  # the ssh command, e.g. "ssh -i ~/.ssh/cluster -p 2222"
HOST_WORKERS_ENV = "SWISHTRAIN_WORKERS_ON_HOST"  # read by the supervisor to size its threads
# the launcher's own settings of these reach remote processes too, so that every host of a job
# runs alike (MXNET_KVSTORE_BIGARRAY_BOUND in particular must agree on workers and servers)
FORWARDED_PREFIXES = ("MXNET_", "PS_", "DMLC_", "OMP_", "SWISHTRAIN_")
# ps-lite settings that would change where a process listens, pinned for every process whatever
# the environment (or a host's) says (ps-lite src/zmq_van.h ZMQVan::Bind): DMLC_USE_KUBERNETES=1
# makes the scheduler listen on 0.0.0.0, every interface; DMLC_LOCAL=1 makes every process listen
# on ipc:///tmp/PORT, a file in the shared /tmp named by a number, left there when a process is
# killed. With both at 0, each process listens on TCP at one address: the scheduler on
# DMLC_PS_ROOT_URI, servers and workers on DMLC_NODE_HOST.
PINNED_ENV = {"DMLC_LOCAL": "0", "DMLC_USE_KUBERNETES": "0"}
# what runs a remote process: `python -m train_cli.cluster.remote CMD` (remote.py)
SUPERVISOR = [sys.executable, "-m", "train_cli.cluster.remote", "--"]
# the scheduler and servers: importing mxnet runs the role, after what every entry point does
# first (startup.py)
SERVER_CMD = [sys.executable, "-m", "train_cli.startup"]


def ssh_command():
    """The ssh client and its options: $SWISHTRAIN_SSH, else plain ssh."""
    return shlex.split(os.environ.get(SSH_ENV) or "ssh")


def allocation_hosts(nodelist):
    """The node names of a Slurm allocation (SLURM_JOB_NODELIST, e.g. node[01-03])."""
    import subprocess
    try:
        done = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True,
                              text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UsageError(f"cannot list the nodes of this Slurm allocation ({e}); give them with "
                         "--hostfile") from None
    if done.returncode or not done.stdout.split():
        raise UsageError(f"scontrol show hostnames {nodelist} failed "
                         f"({done.stderr.strip() or 'no nodes'}); give the hosts with --hostfile")
    return tuple(done.stdout.split())


def this_node():
    """This machine's short host name, as Slurm names nodes."""
    return socket.gethostname().split(".")[0]


def host_of(job, i):
    """The host of the i-th non-scheduler process (servers first, then workers); None: here."""
    return job.hosts[i % len(job.hosts)] if job.hosts else None


def worker_hosts(job):
    """The host of each worker (None: here), in worker order."""
    return [host_of(job, job.servers + i) for i in range(job.workers)]


def split_gpus(gpus, hosts, explicit=()):
    """Each worker's GPUs (None: leave --gpus alone), so that no two share one by accident.

    gpus (the workers' --gpus) is split evenly over the workers on each host, in order: with 2
    workers on a host, --gpus 0,1,2,3 gives the first 0,1 and the second 2,3. explicit gives
    every worker its own list instead (--worker-gpus, one per worker). hosts: each worker's.
    """
    def here(host):
        return host or "this machine"

    if explicit:
        if gpus:
            raise UsageError("give the GPUs either after -- (--gpus, split over the workers) or "
                             "per worker (--worker-gpus), not both")
        if len(explicit) != len(hosts):
            raise UsageError(f"--worker-gpus is given {len(explicit)} time(s) for "
                             f"{len(hosts)} workers; give it once per worker")
        owner = {}
        for worker, (host, ids) in enumerate(zip(hosts, explicit)):
            for gpu in ids:
                if (host, gpu) in owner:
                    raise UsageError(f"--worker-gpus gives GPU {gpu} on {here(host)} to worker "
                                     f"{owner[host, gpu]} and worker {worker}; give each its own")
                owner[host, gpu] = worker
        return [tuple(ids) for ids in explicit]
    if not gpus:
        return [None] * len(hosts)
    shares = []
    for worker, host in enumerate(hosts):
        on_host = [w for w, h in enumerate(hosts) if h == host]
        if len(gpus) % len(on_host):
            raise UsageError(f"--gpus {','.join(map(str, gpus))} does not split evenly over the "
                             f"{len(on_host)} workers on {here(host)}; give a multiple of "
                             f"{len(on_host)} GPUs, or each worker its own with --worker-gpus")
        size, slot = len(gpus) // len(on_host), on_host.index(worker)
        shares.append(tuple(gpus[slot * size:(slot + 1) * size]))
    return shares


def worker_command(job, share):
    """A worker's command: `swishtrain train` with the job's options and its GPUs (share; None
    leaves --gpus as given)."""
    args = job.worker_args()
    if share is not None:
        args = _without_option(args, "--gpus") + ["--gpus", ",".join(map(str, share))]
    return [sys.executable, "-m", "train_cli", "train", *args]


def _without_option(args, flag):
    """args without `flag VALUE` and `flag=VALUE`."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == flag:
            skip = True
        elif not a.startswith(flag + "="):
            out.append(a)
    return out


def node_address(host):
    """The IP address ps-lite binds to on host (a hostfile entry: [user@]name-or-address)."""
    name = host.rsplit("@", 1)[-1]
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        pass
    try:
        return socket.gethostbyname(name)
    except OSError:
        raise UsageError(f"hostfile host {host!r} does not resolve here; write its IP address "
                         "(ps-lite binds to it)") from None


def local_threads(job):
    """OpenMP threads of each local worker: the user's OMP_NUM_THREADS, else this machine's
    cores shared by the workers (the entry point's own default, all the cores, is no choice:
    N workers would each run a team as wide as the machine)."""
    return user_choice("OMP_NUM_THREADS") or str(share(job.workers))


def process_env(job, role, port, host=None, environ=os.environ):
    """The DMLC_* variables (and thread settings) of one process of the job."""
    env = {"DMLC_ROLE": role, "DMLC_PS_ROOT_URI": job.root_uri, **PINNED_ENV,
           "DMLC_PS_ROOT_PORT": str(port), "DMLC_NUM_SERVER": str(job.servers),
           "DMLC_NUM_WORKER": str(job.workers), "PYTHONUNBUFFERED": "1",
           RUN_STAMP_ENV: job.stamp, JOB_GPUS: ",".join(map(str, job.gpus)),  # split over them
           "MXNET_CPU_WORKER_NTHREADS": environ.get("MXNET_CPU_WORKER_NTHREADS", "1"),
           # idle OpenMP threads that spin steal the cores the other processes of the job
           # need: 2 workers on 2 cores ran 3x faster with passive waiting (210 -> 640 img/s)
           "OMP_WAIT_POLICY": environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    if host is None:  # local: every socket on 127.0.0.1 (the scheduler's on --root-uri)
        env["OMP_NUM_THREADS"] = local_threads(job)  # one OpenMP team each, sized to its share
        env.update(DMLC_NODE_HOST=job.root_uri if job.hosts else "127.0.0.1",
                   DMLC_INTERFACE="lo" if not job.hosts else "")
    else:
        forwarded = {k: v for k, v in environ.items() if k.startswith(FORWARDED_PREFIXES)
                     and k not in (SSH_ENV, "DMLC_RANK", "OMP_NUM_THREADS")}
        forwarded["OMP_NUM_THREADS"] = user_choice("OMP_NUM_THREADS") or ""  # "": supervisor
        on_host = sum(h == host for h in worker_hosts(job))
        # ps-lite binds to DMLC_NODE_HOST; the other hosts connect to it there. The
        # supervisor sizes OMP_NUM_THREADS to the host's own cores unless it is given.
        env = forwarded | env | {"DMLC_NODE_HOST": node_address(host),
                                 HOST_WORKERS_ENV: str(max(1, on_host))}
    return {k: v for k, v in env.items() if v}


@dataclass
class Planned:
    """One process of the job, before it starts."""
    role: str
    index: int
    host: str | None
    cmd: list  # what runs (on host)
    env: dict  # the variables the job sets for it
    via: str = "ssh"  # how a remote process is started: ssh or srun

    def argv(self):
        """What runs here: cmd itself, or ssh (or srun) to the host running cmd under the
        supervisor."""
        if self.host is None:
            return self.cmd
        if self.via == "srun":  # a step of the allocation on that node, in this folder
            return ["srun", "--overlap", "--nodes=1", "--ntasks=1", f"--nodelist={self.host}",
                    "--input=all", "env", *(f"{k}={v}" for k, v in self.env.items()),
                    *SUPERVISOR, *self.cmd]
        assign = [f"{k}={shlex.quote(v)}" for k, v in self.env.items()]
        remote = " ".join(["cd", shlex.quote(os.getcwd()), "&&", "exec", "env", *assign,
                           *map(shlex.quote, SUPERVISOR + self.cmd)])
        # -T: no terminal, so the user's terminal stays as it is (ssh -tt would switch it to
        # raw mode, and Ctrl-C would no longer reach the launcher) and the output stays plain.
        # BatchMode: fail rather than ask for a password nobody sees. ServerAlive: a host that
        # vanishes ends its ssh (exit 255) within a minute.
        return [*ssh_command(), "-T", "-o", "BatchMode=yes", "-o", "ServerAliveInterval=15",
                self.host, remote]

    def full_env(self):
        """The environment of the local process (ssh, for a remote one)."""
        if self.host is None:
            return {k: v for k, v in os.environ.items() if k != "DMLC_RANK"} | self.env
        return dict(os.environ)

    def describe(self):
        """One line for --dry-run."""
        where = f"on {self.host}" if self.host else "here"
        name = "scheduler" if self.role == "scheduler" else f"{self.role} {self.index}"
        if self.host is None:
            return f"{name} {where}: " + shlex.join(
                ["env", *(f"{k}={v}" for k, v in self.env.items()), *self.cmd])
        return f"{name} {where}: {shlex.join(self.argv())}"


def plan(job, port):
    """Every process of the job, scheduler first, then servers, then workers."""
    planned = [Planned("scheduler", 0, None, SERVER_CMD, process_env(job, "scheduler", port))]
    for i in range(job.servers):
        host = host_of(job, i)
        planned.append(Planned("server", i, host, SERVER_CMD,
                               process_env(job, "server", port, host), job.via))
    hosts = worker_hosts(job)
    for i, gpus in enumerate(split_gpus(job.gpus, hosts, job.worker_gpus)):
        planned.append(Planned("worker", i, hosts[i], worker_command(job, gpus),
                               process_env(job, "worker", port, hosts[i]), job.via))
    return planned
