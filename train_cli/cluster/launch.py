"""`swishtrain launch`: start a parameter-server job (scheduler, servers, workers) and watch it.

ps-lite has no failure handling: when any process dies, the others wait forever. So the launcher
owns every process (each in its own process group), forwards their output with a role prefix,
and on the first failure, a timeout or Ctrl-C ends them all and says which one failed.

Locally everything binds to 127.0.0.1. With a hostfile, servers and workers are started on the
listed hosts over ssh (round-robin) and the scheduler runs here, on --root-uri; that path needs
real machines and is not exercised by the test suite.
"""
import datetime
import os
import shlex
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from train_cli.errors import Stopped, UsageError, UserError
from train_cli.threads import available_cores

GRACE_SECONDS = 3  # between SIGTERM and SIGKILL when tearing down
SERVER_EXIT_SECONDS = 15  # servers and scheduler finish on their own once workers are done


@dataclass
class Process:
    role: str  # scheduler | server | worker
    index: int
    popen: subprocess.Popen
    rank: int | None = None  # a worker's rank, learnt from its "[rank N]" output
    forwarder: threading.Thread | None = None

    @property
    def name(self):
        if self.role == "scheduler":
            return "scheduler"
        rank = f", rank {self.rank}" if self.rank is not None else ""
        return f"{self.role} {self.index} (pid {self.popen.pid}{rank})"


def free_port(address="127.0.0.1"):
    """A TCP port on address that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def worker_args(train_args):
    """The train command for each worker: dist_sync unless the user chose a dist KVStore.

    A resumed run keeps the KVStore it was started with (from its config.json).
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
    return [sys.executable, "-m", "train_cli", "train", *args]


def describe_exit(code):
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


class Job:
    """The processes of one distributed run on this machine (127.0.0.1)."""

    def __init__(self, num_workers, num_servers, train_args, hosts=(), root_uri="127.0.0.1",
                 threads=None, echo=print):
        if num_workers < 1 or num_servers < 1:
            raise UsageError("launch needs at least one worker (-n) and one server (-s)")
        if hosts and root_uri.startswith("127."):
            raise UsageError("--hostfile needs --root-uri: an address of this machine that the "
                             "listed hosts can reach")
        self.num_workers, self.num_servers = num_workers, num_servers
        self.worker_cmd = worker_args(train_args)
        self.hosts, self.root_uri = list(hosts), root_uri
        self.threads = threads or max(1, available_cores() // num_workers)
        self.stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.echo = echo
        self.processes = []
        self._lock = threading.Lock()

    def env(self, role, port, host=None):
        """The DMLC_* variables (and thread settings) for one process."""
        env = {"DMLC_ROLE": role, "DMLC_PS_ROOT_URI": self.root_uri,
               "DMLC_PS_ROOT_PORT": str(port), "DMLC_NUM_SERVER": str(self.num_servers),
               "DMLC_NUM_WORKER": str(self.num_workers), "PYTHONUNBUFFERED": "1",
               "SWISHTRAIN_RUN_STAMP": os.environ.get("SWISHTRAIN_RUN_STAMP", self.stamp),
               # the workers share the cores: one OpenMP team each, sized to its share
               "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(self.threads)),
               "MXNET_CPU_WORKER_NTHREADS": os.environ.get("MXNET_CPU_WORKER_NTHREADS", "1"),
               # idle OpenMP threads that spin steal the cores the other processes of the job
               # need: 2 workers on 2 cores ran 3x faster with passive waiting (210 -> 640 img/s)
               "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
        if host is None:  # local: every socket on loopback
            env.update(DMLC_NODE_HOST=self.root_uri if self.hosts else "127.0.0.1",
                       DMLC_INTERFACE="lo" if not self.hosts else "")
        else:
            env["DMLC_NODE_HOST"] = host
        return {k: v for k, v in env.items() if v}

    def _command(self, cmd, env, host):
        """The argv that runs cmd with env, here or (with a host) over ssh."""
        if host is None:
            return cmd, {k: v for k, v in os.environ.items() if k != "DMLC_RANK"} | env
        remote = " ".join(["cd", shlex.quote(os.getcwd()), "&&", "env",
                           *(f"{k}={shlex.quote(v)}" for k, v in env.items()),
                           *map(shlex.quote, cmd)])
        # -tt: the remote command gets SIGHUP when this ssh ends, so stop() reaches it too
        return ["ssh", "-tt", "-o", "BatchMode=yes", host, remote], dict(os.environ)

    def _host(self, i):
        return self.hosts[i % len(self.hosts)] if self.hosts else None

    def _start(self, role, index, cmd, env, host=None):
        argv, full_env = self._command(cmd, env, host)
        popen = subprocess.Popen(argv, env=full_env, start_new_session=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 bufsize=1)
        process = Process(role, index, popen)
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
            if process.role == "worker" and line.startswith("[rank "):
                process.rank = int(line[6:line.index("]")])
                out = line  # workers name themselves once they know their rank
            else:
                out = prefix + line
            with self._lock:
                self.echo(out)

    def start(self):
        """Scheduler first (retrying on a port someone else took), then servers, then workers."""
        server_cmd = [sys.executable, "-c", "import mxnet"]  # importing mxnet runs the role
        for _ in range(5):
            port = free_port(self.root_uri)
            scheduler = self._start("scheduler", 0, server_cmd, self.env("scheduler", port))
            if _wait_listening(scheduler.popen, self.root_uri, port, timeout=60):
                break
            _kill_group(scheduler.popen, signal.SIGKILL)
            scheduler.popen.wait()
            self.processes.remove(scheduler)
        else:
            raise UserError("the scheduler could not listen on a free port of 127.0.0.1 in 5 "
                            "tries; see its output above")
        for i in range(self.num_servers):
            host = self._host(i)
            self._start("server", i, server_cmd, self.env("server", port, host), host)
        for i in range(self.num_workers):
            host = self._host(self.num_servers + i)
            self._start("worker", i, self.worker_cmd, self.env("worker", port, host), host)
        pids = {role: ", ".join(str(p.popen.pid) for p in self.processes if p.role == role)
                for role in ("scheduler", "server", "worker")}
        self.echo(f"[launch] scheduler {self.root_uri}:{port} (pid {pids['scheduler']}); "
                  f"server pids {pids['server']}; worker pids {pids['worker']} "
                  f"({self.threads} thread(s) each)")

    @property
    def workers(self):
        return [p for p in self.processes if p.role == "worker"]

    def wait(self, timeout=None):
        """Return when the job ends; raise UserError naming the first process that failed."""
        started, workers_done = time.monotonic(), None
        while True:
            failed = [p for p in self.processes if p.popen.poll() not in (None, 0)]
            if failed:
                first = failed[0]
                raise UserError(f"{first.name} {describe_exit(first.popen.returncode)}; stopped "
                                f"the other processes of the job")
            if all(p.popen.poll() == 0 for p in self.workers):
                workers_done = workers_done or time.monotonic()
                if all(p.popen.poll() == 0 for p in self.processes) or \
                        time.monotonic() - workers_done > SERVER_EXIT_SECONDS:
                    return
            if timeout and time.monotonic() - started > timeout:
                raise UserError(f"the job ran past --timeout {timeout:g}s; stopped all processes")
            time.sleep(0.1)

    def stop(self):
        """End every process still running: SIGTERM, then SIGKILL after a grace period.

        Ctrl-C is ignored meanwhile: interrupting the clean-up would orphan the processes,
        which run in sessions of their own.
        """
        previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._stop()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _stop(self):
        for p in self.processes:
            _kill_group(p.popen, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS
        for p in self.processes:
            try:
                p.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in self.processes:
            _kill_group(p.popen, signal.SIGKILL)
            p.popen.wait()
        for p in self.processes:  # print what they wrote before they ended
            p.forwarder.join(timeout=2)


def run_job(num_workers, num_servers, train_args, hosts=(), root_uri="127.0.0.1", timeout=None,
            echo=print):
    """Start, watch and always clean up a job; Ctrl-C/SIGTERM stop it (exit 130/143)."""
    job = Job(num_workers, num_servers, train_args, hosts, root_uri, echo=echo)

    def interrupted(signum, frame):
        raise Stopped(f"{signal.Signals(signum).name}: stopped all processes of the job; resume "
                      "from the last completed epoch with: swishtrain launch -n "
                      f"{num_workers} -- --resume RUN_DIR",
                      exit_code=128 + signum)

    previous = {s: signal.signal(s, interrupted) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        job.start()
        job.wait(timeout)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        job.stop()


def _kill_group(popen, signum):
    try:
        os.killpg(popen.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


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
