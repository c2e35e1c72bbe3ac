"""Supervision: start a job's processes, watch them, stop them all.

ps-lite has no failure handling: when any process dies, the others wait forever. So the
launcher owns every process, forwards their output with a role prefix, and on the first failure
(a process that exits, a job that stops making progress), a timeout or Ctrl-C ends them all and
says which one failed (JobFailed; launch.py decides whether to restart). Locally every process
runs in its own session; a remote one runs under its host's supervisor (remote.py).
"""
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field

from train_cli.cluster import placement
from train_cli.cluster.procfs import cpu_and_state, kill_group, wait_listening
from train_cli.cluster.remote import GRACE_SECONDS, HEARTBEAT_SECONDS, MARK
from train_cli.errors import UsageError, UserError

REMOTE_GRACE_SECONDS = GRACE_SECONDS + 5  # the remote supervisor's grace plus ssh's round trips
SERVER_EXIT_SECONDS = 15  # servers and scheduler finish on their own once workers are done
# CPU seconds per second below which a worker counts as idle: a worker blocked in ps-lite
# uses none; a training one uses close to a whole core
IDLE_CPU_FRACTION = 0.05


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


def describe_exit(code):
    """'was killed by SIGKILL' or 'exited with code 1'."""
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


class Job:
    """The running processes of one job (planned by placement.plan from its JobSpec)."""

    def __init__(self, spec, echo=print):
        self.spec = spec  # the JobSpec (jobspec.py)
        self.echo = echo
        self.processes = []
        self._lock = threading.Lock()
        self._stopped = False

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
            port = free_port(self.spec.root_uri)
            planned = placement.plan(self.spec, port)
            scheduler = self._start(planned[0])
            if wait_listening(scheduler.popen, self.spec.root_uri, port, timeout=60):
                break
            kill_group(scheduler.popen, signal.SIGKILL)
            scheduler.popen.wait()
            self.processes.remove(scheduler)
        else:
            raise UserError("the scheduler could not listen on a free port of "
                            f"{self.spec.root_uri} in 5 tries; see its output above")
        for p in planned[1:]:
            self._start(p)
        pids = {role: ", ".join(str(p.popen.pid) for p in self.processes if p.role == role)
                for role in ("scheduler", "server", "worker")}
        threads = f"{placement.local_threads(self.spec)} thread(s) each" if not self.spec.hosts \
            else \
            "threads: each host's cores shared by its workers"
        self.echo(f"[launch] scheduler {self.spec.root_uri}:{port} (pid {pids['scheduler']}); "
                  f"server pids {pids['server']}; worker pids {pids['worker']} ({threads})")
        if self.spec.hosts:
            self.echo(f"[launch] over {self.spec.via}: " + ", ".join(
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
                seconds, state = cpu_and_state(p.popen.pid)
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
                kill_group(p.popen, signal.SIGTERM)
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
            kill_group(p.popen, signal.SIGKILL)
            p.popen.wait()
        for p in self.processes:  # print what they wrote before they ended
            p.forwarder.join(timeout=2)
