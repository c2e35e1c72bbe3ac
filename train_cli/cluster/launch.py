"""`swishtrain launch`: start a parameter-server job (scheduler, servers, workers) and watch it.

ps-lite has no failure handling: when any process dies, the others wait forever. So the launcher
owns every process, forwards their output with a role prefix, and on the first failure (a process
that exits, a job that stops making progress), a timeout or Ctrl-C ends them all and says which
one failed. With --max-restarts it then starts the whole job again from the run's last completed
epoch (the resume is exact), as torchrun does.

Locally every process runs in its own session on 127.0.0.1. With a hostfile, servers and workers
start on the listed hosts over ssh (round-robin) and the scheduler runs here, on --root-uri. A
remote process runs under `supervise` (`python -m train_cli.cluster.launch CMD`), which relays its
output, reports its CPU time, and ends it when its standard input closes: the launcher closes it
to stop the job, and it also closes when the ssh connection or the launcher itself dies, so no
process outlives the job on any host. tests/cluster/test_multihost.py runs this path on network
namespaces with an sshd of their own.
"""
import datetime
import ipaddress
import os
import shlex
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from train_cli import threads
from train_cli.cluster import JOB_GPUS
from train_cli.errors import Stopped, UsageError, UserError
from train_cli.threads import available_cores

GRACE_SECONDS = 3  # between SIGTERM and SIGKILL when tearing down
REMOTE_GRACE_SECONDS = GRACE_SECONDS + 5  # the remote supervisor's grace plus ssh's round trips
SERVER_EXIT_SECONDS = 15  # servers and scheduler finish on their own once workers are done
HEARTBEAT_SECONDS = 1.0  # how often CPU time is sampled (here) or reported (by a supervisor)
# CPU seconds per second below which a worker counts as idle: a worker blocked in ps-lite
# uses none; a training one uses close to a whole core
IDLE_CPU_FRACTION = 0.05
STALL_SECONDS = 300  # default --stall-timeout
PREFLIGHT_SECONDS = 30  # for `ssh HOST python -c 'import train_cli'` to answer
SSH_ENV = "SWISHTRAIN_SSH"  # the ssh command, e.g. "ssh -i ~/.ssh/cluster -p 2222"
HOST_WORKERS_ENV = "SWISHTRAIN_WORKERS_ON_HOST"  # read by the supervisor to size its threads
# the launcher's own settings of these reach remote processes too, so that every host of a job
# runs alike (MXNET_KVSTORE_BIGARRAY_BOUND in particular must agree on workers and servers)
FORWARDED_PREFIXES = ("MXNET_", "PS_", "DMLC_", "OMP_", "SWISHTRAIN_")
MARK = "@@swishtrain-supervisor "  # starts the lines a supervisor adds to its child's output
# ps-lite settings that would change where a process listens, pinned for every process whatever
# the environment (or a host's) says (ps-lite src/zmq_van.h ZMQVan::Bind): DMLC_USE_KUBERNETES=1
# makes the scheduler listen on 0.0.0.0, every interface; DMLC_LOCAL=1 makes every process listen
# on ipc:///tmp/PORT, a file in the shared /tmp named by a number, left there when a process is
# killed. With both at 0, each process listens on TCP at one address: the scheduler on
# DMLC_PS_ROOT_URI, servers and workers on DMLC_NODE_HOST.
PINNED_ENV = {"DMLC_LOCAL": "0", "DMLC_USE_KUBERNETES": "0"}


class JobFailed(UserError):
    """A process of the job failed; with --max-restarts the job may start again."""

    def __init__(self, message, restartable=True):
        super().__init__(message)
        self.restartable = restartable


@dataclass
class Process:
    role: str  # scheduler | server | worker
    index: int
    popen: subprocess.Popen
    host: str | None = None  # None: this machine
    rank: int | None = None  # a worker's rank, learnt from its "[rank N]" output
    remote_pid: int | None = None  # reported by the supervisor
    remote_signal: int | None = None  # the signal that ended a remote process
    forwarder: threading.Thread | None = None
    cpu: float | None = None  # CPU seconds used so far, when last seen
    cpu_seen: float = 0.0  # when `cpu` was read
    progressed: float = field(default_factory=time.monotonic)  # last CPU use or output
    state: str | None = None  # its /proc state letter when `cpu` was read (T: stopped)

    @property
    def name(self):
        """How messages name it: 'worker 1 on HOST (pid 42, rank 0)'."""
        if self.role == "scheduler":
            return "scheduler"
        rank = f", rank {self.rank}" if self.rank is not None else ""
        if self.host is None:
            return f"{self.role} {self.index} (pid {self.popen.pid}{rank})"
        pid = f"pid {self.remote_pid}" if self.remote_pid else f"ssh pid {self.popen.pid}"
        return f"{self.role} {self.index} on {self.host} ({pid}{rank})"

    def exit_description(self):
        """How the process ended, in words."""
        code = self.popen.returncode
        if self.host is None:
            return describe_exit(code)
        if self.remote_signal:
            return describe_exit(-self.remote_signal)
        if code == 255:  # ssh's own failure: its message was forwarded above
            if self.remote_pid is None:
                return "could not be started over ssh (exit 255; see ssh's message above)"
            return "lost its ssh connection (exit 255)"
        return describe_exit(code)

    def lost(self):
        """Whether the process was lost rather than failed: killed by a signal (the OOM killer,
        a preempted host, a person), or cut off with its ssh connection. Only that is worth a
        restart: a worker that exited with an error (1: divergence, a preflight, the data; 2: a
        usage error) would fail again the same way, since a resumed run repeats the same steps.
        """
        code = self.popen.returncode
        if self.host is None:
            return code is not None and code < 0
        return bool(self.remote_signal) or (code == 255 and self.remote_pid is not None)

    def saw_cpu(self, seconds, now, state=None):
        """Record a CPU-time reading; a worker that used CPU since the last one progressed."""
        if self.cpu is not None and \
                seconds - self.cpu >= IDLE_CPU_FRACTION * max(now - self.cpu_seen, 0.1):
            self.progressed = now
        self.cpu, self.cpu_seen, self.state = seconds, now, state


def free_port(address="127.0.0.1"):
    """A TCP port on address that nothing listens on right now."""
    with socket.socket() as s:
        try:
            s.bind((address, 0))
        except OSError as e:
            raise UsageError(f"--root-uri {address} is not an address of this machine "
                             f"({e.strerror}); give one of its own addresses that the hosts "
                             "can reach") from None
        return s.getsockname()[1]


def read_hostfile(path):
    """The hosts of a hostfile: one per line as ssh reaches it; '#' starts a comment."""
    hosts = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            words = line.split("#", 1)[0].split()
            if len(words) > 1:
                raise UsageError(f"{path} line {number}: {line.strip()!r}: give one host per "
                                 "line and nothing else (list a host twice to give it two "
                                 "processes)")
            hosts += words
    if not hosts:
        raise UsageError(f"--hostfile {path} lists no hosts; write one host per line")
    return hosts


def check_root_uri(root_uri, with_hosts):
    """Refuse a --root-uri that would open the scheduler wider than the job needs.

    ps-lite has no authentication: whoever reaches the scheduler can join the job. Without a
    hostfile every process runs here, so the scheduler listens on loopback like the others; an
    unspecified address (0.0.0.0, ::) would make it listen on every interface.
    """
    try:
        address = ipaddress.ip_address(root_uri)
    except ValueError:
        address = None  # a name: free_port() resolves it (and refuses one not of this machine)
    if address is not None and address.is_unspecified:
        raise UsageError(f"--root-uri {root_uri} would make the scheduler listen on every "
                         "interface; give the one address of this machine that the hosts reach")
    if not with_hosts and not (address and address.is_loopback):
        raise UsageError(f"--root-uri {root_uri} is for --hostfile jobs: without a hostfile "
                         "every process runs here and listens on 127.0.0.1 only")


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


def worker_args(train_args, gpus=None):
    """The train command for a worker: dist_sync unless the user chose a dist KVStore.

    A resumed run keeps the KVStore it was started with (from its config.json). gpus, if given,
    replaces any --gpus of train_args with this worker's share.
    """
    args = list(train_args)
    kinds = [a.split("=", 1)[1] for a in args if a.startswith("--kvstore=")]
    kinds += [args[i + 1] if i + 1 < len(args) else "" for i, a in enumerate(args)
              if a == "--kvstore"]
    for kind in kinds:
        if not kind.startswith("dist"):
            raise UsageError(f"--kvstore {kind or '(missing)'} is not distributed; launch needs "
                             "dist_sync, dist_device_sync or dist_async (default dist_sync)")
    if not kinds and "--resume" not in args and not any(a.startswith("--resume=") for a in args):
        args += ["--kvstore", "dist_sync"]
    if gpus is not None:
        args = _without_option(args, "--gpus") + ["--gpus", ",".join(map(str, gpus))]
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


def split_gpus(gpus, worker_hosts, explicit=()):
    """Each worker's GPUs (None: leave --gpus alone), so that no two share one by accident.

    gpus (the workers' --gpus) is split evenly over the workers on each host, in order: with 2
    workers on a host, --gpus 0,1,2,3 gives the first 0,1 and the second 2,3. explicit gives
    every worker its own list instead (--worker-gpus, one per worker).
    """
    def here(host):
        return host or "this machine"

    if explicit:
        if gpus:
            raise UsageError("give the GPUs either after -- (--gpus, split over the workers) or "
                             "per worker (--worker-gpus), not both")
        if len(explicit) != len(worker_hosts):
            raise UsageError(f"--worker-gpus is given {len(explicit)} time(s) for "
                             f"{len(worker_hosts)} workers; give it once per worker")
        owner = {}
        for worker, (host, ids) in enumerate(zip(worker_hosts, explicit)):
            for gpu in ids:
                if (host, gpu) in owner:
                    raise UsageError(f"--worker-gpus gives GPU {gpu} on {here(host)} to worker "
                                     f"{owner[host, gpu]} and worker {worker}; give each its own")
                owner[host, gpu] = worker
        return [tuple(ids) for ids in explicit]
    if not gpus:
        return [None] * len(worker_hosts)
    shares = []
    for worker, host in enumerate(worker_hosts):
        on_host = [w for w, h in enumerate(worker_hosts) if h == host]
        if len(gpus) % len(on_host):
            raise UsageError(f"--gpus {','.join(map(str, gpus))} does not split evenly over the "
                             f"{len(on_host)} workers on {here(host)}; give a multiple of "
                             f"{len(on_host)} GPUs, or each worker its own with --worker-gpus")
        size, slot = len(gpus) // len(on_host), on_host.index(worker)
        shares.append(tuple(gpus[slot * size:(slot + 1) * size]))
    return shares


@dataclass(frozen=True)
class TrainOptions:
    """What the launcher must know of the workers' `swishtrain train` options."""
    args: tuple  # as given after --
    run_dir: str  # the run (or study) folder the job writes
    kvstore: str
    gpus: tuple  # the whole list, to split over the workers
    resumable: tuple = ()  # --epochs/--data-dir/--eval-batch-size as given, kept on a restart
    fresh_folder: bool = False  # run_dir was absent or empty at launch: what is in it is ours

    @classmethod
    def parse(cls, args, params, stamp):
        """From train_args and the `train` command's parsed params (cli/tools.py parses them)."""
        from train_cli.config import RESUMABLE_OVERRIDES, build_config, flag
        from train_cli.runfolder import CONFIG, STUDY, RunFolder, is_study
        values = {k: v for k, v in params.items()
                  if k not in ("config_file", "resume_dir", "overwrite", "seeds", "progress")}
        resumable = tuple(a for name in RESUMABLE_OVERRIDES if values.get(name) is not None
                          for a in (flag(name), _option_text(values[name])))
        if params.get("resume_dir"):
            run_dir = params["resume_dir"]
            # fail here, once, rather than in every worker of every restart
            folder = RunFolder.existing(run_dir, STUDY if is_study(run_dir) else CONFIG)
            cfg = folder.config() if folder.has(CONFIG) else None  # a study has no config.json
            # the job's whole GPU list (config.json's gpus are rank 0's share of it)
            job_gpus = folder.read_json(CONFIG).get("job_gpus") if cfg else None
            return cls(tuple(args), run_dir, cfg.kvstore if cfg else "dist_sync",
                       values.get("gpus") or tuple(job_gpus or (cfg.gpus if cfg else ())),
                       resumable)
        cfg = build_config(values, params.get("config_file"))  # fails early on a bad value
        from train_cli.runfolder import default_run_dir
        run_dir = cfg.run_dir or default_run_dir(cfg.model, stamp)  # the name workers give it
        path = Path(run_dir)
        fresh = not path.exists() or (path.is_dir() and not any(path.iterdir()))
        kvstore = cfg.kvstore if cfg.kvstore.startswith("dist") else "dist_sync"
        return cls(tuple(args), run_dir, kvstore, cfg.gpus, resumable, fresh)

    @classmethod
    def plain(cls, args):
        """Options known from the arguments alone (no folder read): nothing to split or resume."""
        return cls(tuple(args), "RUN_DIR", "dist_sync", ())

    def restart_args(self):
        """The train options that continue the job after a failure."""
        from train_cli.runfolder import CHECKPOINT, STUDY
        folder = Path(self.run_dir)
        if (folder / CHECKPOINT).is_file() or (folder / STUDY).is_file():
            return ["--resume", self.run_dir, *self.resumable]
        # it failed before its first checkpoint: start it again; what the folder holds was
        # written by this job only if the folder was new
        overwrite = ["--overwrite"] if self.fresh_folder and "--overwrite" not in self.args \
            else []
        return [*self.args, *overwrite]

    def epochs_done(self):
        """Completed epochs in the run folder (metrics.csv rows), or None if unknown."""
        from train_cli.runfolder import METRICS, read_metrics
        try:
            return len(read_metrics(Path(self.run_dir) / METRICS))
        except (OSError, ValueError):
            return None


def _option_text(value):
    """A parsed option as the command line spells it (a tuple of ids as 0,1,2,3)."""
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def run_stamp():
    """The job's timestamp, which the workers name a default run folder with."""
    return os.environ.get("SWISHTRAIN_RUN_STAMP") or \
        datetime.datetime.now().strftime("%Y%m%d-%H%M%S")  # runfolder.default_run_dir's form


def user_threads():
    """OMP_NUM_THREADS as the user chose it, else None.

    The entry point's threads.configure() has set it to all of this machine's cores before the
    launcher runs; that default is no choice to keep: N workers would each run a team as wide as
    the machine.
    """
    return threads.user_choice("OMP_NUM_THREADS")


def describe_exit(code):
    """'was killed by SIGKILL' or 'exited with code 1'."""
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def ssh_command():
    """The ssh client and its options: $SWISHTRAIN_SSH, else plain ssh."""
    return shlex.split(os.environ.get(SSH_ENV) or "ssh")


@dataclass
class Planned:
    """One process of the job, before it starts."""
    role: str
    index: int
    host: str | None
    cmd: list  # what runs (on host)
    env: dict  # the variables the job sets for it

    def argv(self):
        """What runs here: cmd itself, or ssh to the host running cmd under the supervisor."""
        if self.host is None:
            return self.cmd
        assign = [f"{k}={shlex.quote(v)}" for k, v in self.env.items()]
        supervisor = [sys.executable, "-m", "train_cli.cluster.launch", "--"]
        remote = " ".join(["cd", shlex.quote(os.getcwd()), "&&", "exec", "env", *assign,
                           *map(shlex.quote, supervisor + self.cmd)])
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


class Job:
    """The processes of one distributed run: here on 127.0.0.1, or over ssh on hosts."""

    def __init__(self, num_workers, num_servers, train_args, hosts=(), root_uri="127.0.0.1",
                 threads=None, echo=print, worker_gpus=None, stamp=None, job_gpus=()):
        if num_workers < 1 or num_servers < 1:
            raise UsageError("launch needs at least one worker (-n) and one server (-s)")
        if hosts and root_uri.startswith("127."):
            raise UsageError("--hostfile needs --root-uri: an address of this machine that the "
                             "listed hosts can reach")
        check_root_uri(root_uri, bool(hosts))
        self.num_workers, self.num_servers = num_workers, num_servers
        self.hosts, self.root_uri = list(hosts), root_uri
        gpus = worker_gpus or [None] * num_workers
        self.worker_cmds = [worker_args(train_args, share) for share in gpus]
        self.threads = threads or max(1, available_cores() // num_workers)
        self.job_gpus = ",".join(map(str, job_gpus)) if worker_gpus and job_gpus else ""
        self.stamp = stamp or run_stamp()
        self.echo = echo
        self.processes = []
        self._lock = threading.Lock()
        self._stopped = False

    def env(self, role, port, host=None):
        """The DMLC_* variables (and thread settings) for one process."""
        env = {"DMLC_ROLE": role, "DMLC_PS_ROOT_URI": self.root_uri, **PINNED_ENV,
               "DMLC_PS_ROOT_PORT": str(port), "DMLC_NUM_SERVER": str(self.num_servers),
               "DMLC_NUM_WORKER": str(self.num_workers), "PYTHONUNBUFFERED": "1",
               "SWISHTRAIN_RUN_STAMP": self.stamp, JOB_GPUS: self.job_gpus,
               "MXNET_CPU_WORKER_NTHREADS": os.environ.get("MXNET_CPU_WORKER_NTHREADS", "1"),
               # idle OpenMP threads that spin steal the cores the other processes of the job
               # need: 2 workers on 2 cores ran 3x faster with passive waiting (210 -> 640 img/s)
               "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
        if host is None:  # local: every socket on 127.0.0.1 (the scheduler's on --root-uri)
            # the workers share the cores: one OpenMP team each, sized to its share
            env["OMP_NUM_THREADS"] = user_threads() or str(self.threads)
            env.update(DMLC_NODE_HOST=self.root_uri if self.hosts else "127.0.0.1",
                       DMLC_INTERFACE="lo" if not self.hosts else "")
        else:
            forwarded = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_PREFIXES)
                         and k not in (SSH_ENV, "DMLC_RANK", "OMP_NUM_THREADS")}
            forwarded["OMP_NUM_THREADS"] = user_threads() or ""  # "": the supervisor decides
            on_host = sum(self._host(self.num_servers + i) == host
                          for i in range(self.num_workers))
            # ps-lite binds to DMLC_NODE_HOST; the other hosts connect to it there. The
            # supervisor sizes OMP_NUM_THREADS to the host's own cores unless it is given.
            env = forwarded | env | {"DMLC_NODE_HOST": node_address(host),
                                     HOST_WORKERS_ENV: str(max(1, on_host))}
        return {k: v for k, v in env.items() if v}

    def _host(self, i):
        return self.hosts[i % len(self.hosts)] if self.hosts else None

    def worker_hosts(self):
        """The host of each worker (None: here), in worker order."""
        return [self._host(self.num_servers + i) for i in range(self.num_workers)]

    def plan(self, port):
        """Every process of the job, scheduler first, then servers, then workers."""
        # importing mxnet runs the role, after what every entry point does first (startup.py)
        server_cmd = [sys.executable, "-m", "train_cli.startup"]
        planned = [Planned("scheduler", 0, None, server_cmd, self.env("scheduler", port))]
        for i in range(self.num_servers):
            host = self._host(i)
            planned.append(Planned("server", i, host, server_cmd, self.env("server", port, host)))
        for i, host in enumerate(self.worker_hosts()):
            planned.append(Planned("worker", i, host, self.worker_cmds[i],
                                   self.env("worker", port, host)))
        return planned

    def _start(self, planned):
        popen = subprocess.Popen(planned.argv(), env=planned.full_env(), start_new_session=True,
                                 stdin=subprocess.PIPE if planned.host else subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 bufsize=1)
        process = Process(planned.role, planned.index, popen, planned.host)
        self.processes.append(process)
        process.forwarder = threading.Thread(target=self._forward, args=(process,), daemon=True)
        process.forwarder.start()
        return process

    def _forward(self, process):
        prefix = f"[{process.role} {process.index}] "
        if process.role == "scheduler":
            prefix = "[scheduler] "
        for line in process.popen.stdout:
            line = line.rstrip("\n")
            if line.startswith(MARK):  # the supervisor's report, not output
                what, _, value = line[len(MARK):].partition(" ")
                if what == "cpu":
                    seconds, _, state = value.partition(" ")
                    process.saw_cpu(float(seconds), time.monotonic(), state)
                elif what == "pid":
                    process.remote_pid = int(value)
                elif what == "signal":
                    process.remote_signal = int(value)
                continue
            process.progressed = time.monotonic()
            if process.role == "worker" and line.startswith("[rank "):
                process.rank = int(line[6:line.index("]")])
                out = line  # workers name themselves once they know their rank
            else:
                out = prefix + line
            with self._lock:
                self.echo(out)

    def start(self):
        """Scheduler first (retrying on a port someone else took), then servers, then workers."""
        for _ in range(5):
            port = free_port(self.root_uri)
            planned = self.plan(port)
            scheduler = self._start(planned[0])
            if _wait_listening(scheduler.popen, self.root_uri, port, timeout=60):
                break
            _kill_group(scheduler.popen, signal.SIGKILL)
            scheduler.popen.wait()
            self.processes.remove(scheduler)
        else:
            raise UserError(f"the scheduler could not listen on a free port of {self.root_uri} "
                            "in 5 tries; see its output above")
        for p in planned[1:]:
            self._start(p)
        pids = {role: ", ".join(str(p.popen.pid) for p in self.processes if p.role == role)
                for role in ("scheduler", "server", "worker")}
        threads = f"{self.threads} thread(s) each" if not self.hosts else \
            "threads: each host's cores shared by its workers"
        self.echo(f"[launch] scheduler {self.root_uri}:{port} (pid {pids['scheduler']}); "
                  f"server pids {pids['server']}; worker pids {pids['worker']} ({threads})")
        if self.hosts:
            self.echo("[launch] over ssh: " + ", ".join(
                f"{p.role} {p.index} on {p.host}" for p in self.processes if p.host))

    @property
    def workers(self):
        """The worker processes, in order."""
        return [p for p in self.processes if p.role == "worker"]

    def wait(self, deadline=None, stall_timeout=None, timeout=None):
        """Return when the job ends; raise JobFailed naming the first process that failed.

        A job whose running workers all neither used CPU nor printed for stall_timeout seconds
        is hung (a stopped or deadlocked process, an unreachable host): it fails too. Past the
        deadline (time.monotonic) it fails for good.
        """
        workers_done, next_sample = None, 0.0
        while True:
            failed = [p for p in self.processes if p.popen.poll() not in (None, 0)]
            if failed:
                first = failed[0]
                first.forwarder.join(timeout=2)  # its last words say how it ended
                raise JobFailed(f"{first.name} {first.exit_description()}; stopped the other "
                                "processes of the job", restartable=first.lost())
            if all(p.popen.poll() == 0 for p in self.workers):
                workers_done = workers_done or time.monotonic()
                if all(p.popen.poll() == 0 for p in self.processes) or \
                        time.monotonic() - workers_done > SERVER_EXIT_SECONDS:
                    return
            now = time.monotonic()
            if deadline and now > deadline:
                raise JobFailed(f"the job ran past --timeout {timeout or 0:g}s; stopped all "
                                "processes", restartable=False)
            if now >= next_sample:
                self._sample_cpu(now)
                next_sample = now + HEARTBEAT_SECONDS
            running = [p for p in self.workers if p.popen.poll() is None]
            if stall_timeout and running and \
                    all(now - p.progressed > stall_timeout for p in running):
                stopped = [p.name for p in running if p.state in ("T", "t")]
                which = f" ({', '.join(stopped)} stopped by a signal)" if stopped else ""
                raise JobFailed(f"no worker used CPU or printed anything for {stall_timeout:g}s"
                                f"{which}: the job is hung (a stopped or deadlocked process, or "
                                "an unreachable host); stopped all processes. If a step can "
                                "really take that long, raise --stall-timeout")
            time.sleep(0.1)

    def _sample_cpu(self, now):
        for p in self.workers:  # remote ones are reported by their supervisor
            if p.host is None and p.popen.poll() is None:
                seconds, state = _cpu_and_state(p.popen.pid)
                if seconds is not None:
                    p.saw_cpu(seconds, now, state)

    def stop(self):
        """End every process still running: SIGTERM, then SIGKILL after a grace period.

        A remote process is ended by closing its standard input (its supervisor then ends it
        and exits, and so does its ssh). Ctrl-C is ignored meanwhile: interrupting the clean-up
        would orphan the processes, which run in sessions of their own.
        """
        if self._stopped:
            return
        previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._stop()
        finally:
            self._stopped = True
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _stop(self):
        for p in self.processes:
            if p.host is None:
                _kill_group(p.popen, signal.SIGTERM)
            elif p.popen.stdin:
                try:
                    p.popen.stdin.close()
                except OSError:  # the pipe is already broken: ssh is gone
                    pass
        now = time.monotonic()
        for p in self.processes:
            grace = REMOTE_GRACE_SECONDS if p.host else GRACE_SECONDS
            try:
                p.popen.wait(max(0.1, now + grace - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in self.processes:
            _kill_group(p.popen, signal.SIGKILL)
            p.popen.wait()
        for p in self.processes:  # print what they wrote before they ended
            p.forwarder.join(timeout=2)


def check_hosts(hosts, timeout=PREFLIGHT_SECONDS):
    """Fail early, naming the host, if one cannot run this checkout's Python over ssh."""
    probe = f"cd {shlex.quote(os.getcwd())} && {shlex.quote(sys.executable)} -c 'import train_cli'"
    probes = {host: subprocess.Popen([*ssh_command(), "-T", "-o", "BatchMode=yes", host, probe],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
              for host in dict.fromkeys(hosts)}
    deadline = time.monotonic() + timeout
    try:
        for host, popen in probes.items():
            try:
                out, _ = popen.communicate(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise UserError(f"ssh {host} did not answer in {timeout}s; check that this "
                                f"machine reaches it: ssh {host} true") from None
            if popen.returncode:
                said = (out.strip().splitlines() or ["no message"])[-1]
                raise UserError(f"cannot run {sys.executable} in {os.getcwd()} on {host} over "
                                f"ssh ({said}); every host needs password-less ssh from here, "
                                "this checkout at the same path and its venv (make install): "
                                f"try ssh {host} {sys.executable} -c 'import train_cli'")
    finally:
        for popen in probes.values():
            if popen.poll() is None:
                _kill_group(popen, signal.SIGKILL)
                popen.wait()


def run_job(num_workers, num_servers, train_args, hosts=(), root_uri="127.0.0.1", timeout=None,
            echo=print, max_restarts=0, stall_timeout=STALL_SECONDS, worker_gpus=(),
            train=None, dry_run=False, stamp=None, hostfile=None):
    """Start, watch and always clean up a job, restarting it up to max_restarts times.

    train (TrainOptions) says where the run folder is and which GPUs to split; without it the
    arguments are passed on as they are. Ctrl-C/SIGTERM stop the job (exit 130/143).
    """
    stamp = stamp or run_stamp()
    train = train or TrainOptions.plain(train_args)
    if max_restarts and train.kvstore == "dist_async":
        raise UsageError("--max-restarts needs a run that can be resumed, and dist_async runs "
                         "cannot be (their optimiser state lives on the servers); use dist_sync")
    probe = Job(num_workers, num_servers, train_args, hosts, root_uri, echo=echo, stamp=stamp)
    shares = split_gpus(train.gpus, probe.worker_hosts(), worker_gpus)

    def make_job(args):
        return Job(num_workers, num_servers, args, hosts, root_uri, echo=echo,
                   worker_gpus=shares, stamp=stamp, job_gpus=train.gpus)

    if dry_run:
        for planned in make_job(train_args).plan("PORT"):
            echo(planned.describe())
        return
    where = f" -s {num_servers} --hostfile {shlex.quote(str(hostfile or 'HOSTFILE'))} " \
        f"--root-uri {root_uri}" if hosts else ""
    how = f"swishtrain launch -n {num_workers}{where} -- --resume {shlex.quote(train.run_dir)}"

    def interrupted(signum, frame):
        raise Stopped(f"{signal.Signals(signum).name}: stopped all processes of the job; resume "
                      f"from the last completed epoch with: {how}", exit_code=128 + signum)

    deadline = time.monotonic() + timeout if timeout else None
    args, restarts, job = list(train_args), 0, None
    previous = {s: signal.signal(s, interrupted) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if hosts:
            free_port(root_uri)  # an address of this machine, before any host is asked
            check_hosts(hosts)
            echo(f"[launch] no authentication (ps-lite has none): the scheduler on {root_uri} "
                 "and every server and worker, on its host's address, accept whoever reaches "
                 "their ports; run on a trusted network only")
        while True:
            job = make_job(args)
            try:
                job.start()
                job.wait(deadline, stall_timeout, timeout)
                return
            except JobFailed as failure:
                if not failure.restartable or restarts >= max_restarts:
                    if restarts:
                        raise JobFailed(f"{failure} (after {restarts} restart(s))") from None
                    raise
                job.stop()
                restarts += 1
                args = train.restart_args()
                done = train.epochs_done()
                after = f"after epoch {done}" if done else "from the start"
                echo(f"[launch] restart {restarts} of {max_restarts}: {failure}; starting the "
                     f"job again {after} with: {shlex.join(args)}")
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if job is not None:
            job.stop()


def _kill_group(popen, signum):
    try:
        os.killpg(popen.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _cpu_and_state(pid):
    """(CPU seconds used, state letter) of a live process, from /proc; (None, None) if unreadable.

    The state is T for a process stopped by a signal (SIGSTOP, Ctrl-Z), t under a debugger.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), fields[0]
    except (OSError, IndexError, ValueError):
        return None, None


def _wait_listening(popen, address, port, timeout):
    """True once popen itself holds a listening socket on address:port (Linux /proc)."""
    deadline = time.monotonic() + timeout
    ip = struct.unpack("<I", socket.inet_aton(socket.gethostbyname(address)))[0]
    want = f"{ip:08X}:{port:04X}"
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            return False  # "bind failed": someone else has the port
        try:
            with open("/proc/net/tcp") as f:
                inodes = {parts[9] for parts in (line.split() for line in f.readlines()[1:])
                          if parts[1] == want and parts[3] == "0A"}
            fd_dir = f"/proc/{popen.pid}/fd"
            links = {os.readlink(os.path.join(fd_dir, fd)) for fd in os.listdir(fd_dir)}
        except OSError:
            inodes, links = set(), set()
        if any(f"socket:[{inode}]" in links for inode in inodes):
            return True
        time.sleep(0.05)
    return False


def supervise(cmd):
    """Run cmd for the launcher on a remote host; return its exit code (128+N if signal N).

    cmd runs in its own process group with its output relayed, and a line reporting its CPU
    time every second (the launcher's sign of progress). When this process's standard input
    closes (the launcher stopping the job, or the ssh connection or the launcher gone) or it
    gets SIGTERM/SIGHUP, cmd's group gets SIGTERM, then SIGKILL after a grace period.
    """
    env = dict(os.environ)
    on_host = int(env.pop(HOST_WORKERS_ENV, "1") or 1)
    env.setdefault("OMP_NUM_THREADS", str(max(1, available_cores() // max(1, on_host))))
    lock, ended = threading.Lock(), threading.Event()
    out = sys.stdout.buffer

    def say(data):
        with lock:  # whole lines only: the launcher reads line by line
            try:
                out.write(data)
                out.flush()
            except OSError:  # nobody reads any more: the launcher or its ssh is gone
                ended.set()

    def stdin_closed():
        try:
            while sys.stdin.buffer.read1(65536):
                pass
        except OSError:
            pass
        ended.set()

    requested = []
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(s, lambda signum, frame: requested.append(signum))
    child = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, start_new_session=True)
    say(f"{MARK}pid {child.pid}\n".encode())
    relay = threading.Thread(target=lambda: [say(line) for line in child.stdout], daemon=True)
    relay.start()
    threading.Thread(target=stdin_closed, daemon=True).start()
    next_report = time.monotonic()
    while child.poll() is None:
        if ended.is_set() or requested:
            _end_group(child)
            break
        if time.monotonic() >= next_report:
            seconds, state = _cpu_and_state(child.pid)
            if seconds is not None:
                say(f"{MARK}cpu {seconds:.2f} {state}\n".encode())
            next_report += HEARTBEAT_SECONDS
        time.sleep(0.1)
    child.wait()
    relay.join(timeout=2)
    if child.returncode < 0:
        say(f"{MARK}signal {-child.returncode}\n".encode())
        return 128 - child.returncode
    return child.returncode


def _end_group(child):
    """SIGTERM child's process group, SIGKILL after the grace period."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(child.pid, signum)
        except (ProcessLookupError, PermissionError):
            return
        try:
            child.wait(GRACE_SECONDS)
            return
        except subprocess.TimeoutExpired:
            pass


if __name__ == "__main__":  # the supervisor: python -m train_cli.cluster.launch -- CMD ...
    argv = sys.argv[1:]
    code = supervise(argv[1:] if argv[:1] == ["--"] else argv)
    sys.stdout.flush()
    os._exit(code)  # a thread still blocks on stdin; a normal exit would wait for it
