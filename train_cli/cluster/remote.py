"""The remote side of a launch: `python -m train_cli.cluster.remote CMD` on each host.

A remote process runs under supervise(), which relays its output, reports its CPU time, and ends
it when its standard input closes: the launcher closes it to stop the job, and it also closes
when the ssh connection or the launcher itself dies, so no process outlives the job on any host.
check_hosts() asks every host, before the job starts, whether it can run this checkout.
tests/cluster/test_multihost.py runs this path on network namespaces with an sshd of their own.
"""
import os
import shlex
import signal
import subprocess
import sys
import threading
import time

from train_cli.cluster.placement import HOST_WORKERS_ENV, ssh_command
from train_cli.cluster.procfs import cpu_and_state, kill_group
from train_cli.errors import UserError
from train_cli.threads import share

GRACE_SECONDS = 3  # between SIGTERM and SIGKILL when tearing down
HEARTBEAT_SECONDS = 1.0  # how often CPU time is sampled (launcher) or reported (supervisor)
PREFLIGHT_SECONDS = 30  # for `ssh HOST python -c 'import train_cli'` to answer
MARK = "@@swishtrain-supervisor "  # starts the lines a supervisor adds to its child's output


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
                kill_group(popen, signal.SIGKILL)
                popen.wait()


def supervise(cmd):
    """Run cmd for the launcher on a remote host; return its exit code (128+N if signal N).

    cmd runs in its own process group with its output relayed, and a line reporting its CPU
    time every second (the launcher's sign of progress). When this process's standard input
    closes (the launcher stopping the job, or the ssh connection or the launcher gone) or it
    gets SIGTERM/SIGHUP, cmd's group gets SIGTERM, then SIGKILL after a grace period.
    """
    env = dict(os.environ)
    on_host = int(env.pop(HOST_WORKERS_ENV, "1") or 1)
    env.setdefault("OMP_NUM_THREADS", str(share(on_host)))
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
            seconds, state = cpu_and_state(child.pid)
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


if __name__ == "__main__":  # the supervisor: python -m train_cli.cluster.remote -- CMD ...
    argv = sys.argv[1:]
    code = supervise(argv[1:] if argv[:1] == ["--"] else argv)
    sys.stdout.flush()
    os._exit(code)  # a thread still blocks on stdin; a normal exit would wait for it
