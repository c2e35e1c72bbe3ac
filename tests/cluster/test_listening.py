"""What a `swishtrain launch` job listens on. ps-lite has no authentication: whoever reaches a
port of the job can join it, push gradients or stop it. So a job on one machine listens on
127.0.0.1 only, whatever ps-lite variables the environment holds. All on 127.0.0.1,
time-bounded; every process the test starts is gone at its end."""
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
from listening_sockets import descendants, listening, role

from helpers import assert_all_gone, launched_pids, write_cifar

TRAIN = ["--model", "vgg11_bn", "--width", "0.125", "--batch-size", "10", "--lr", "0.05",
         "--eval-batch-size", "32", "--augment", "none"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_cifar(tmp_path_factory.mktemp("cifar"), per_batch=40, test=30)


def watch_job(env, data_dir, run_dir, timeout=90):
    """Launch a 2-worker job, record every socket its processes listen on until all four
    (scheduler, server, 2 workers) listen and training is under way, or a socket off 127.0.0.1
    shows up; then Ctrl-C it. Returns ({(role, pid): {(kind, address, port)}}, output)."""
    proc = subprocess.Popen([sys.executable, "-m", "train_cli", "launch", "-n", "2", "--timeout",
                             "100", "--", "--data-dir", str(data_dir), "--run-dir", str(run_dir),
                             "--epochs", "50", *TRAIN], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    seen, started = {}, set()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            for pid in descendants(proc.pid):
                started.add(pid)
                try:
                    sockets = listening(pid)
                except OSError:  # it ended meanwhile
                    continue
                if sockets:
                    seen.setdefault((role(pid), pid), set()).update(sockets)
            wide = [s for found in seen.values() for s in found if s[:2] != ("tcp", "127.0.0.1")]
            if wide or (len(seen) == 4 and (run_dir / "metrics.csv").exists()):
                break
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # Ctrl-C: the launcher ends every process
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
        out = "".join(lines)
        leftover = [pid for pid in started | set(launched_pids(out))
                    if os.path.exists(f"/proc/{pid}")]
        for pid in leftover:  # only if the launcher failed to end them; the test then fails
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for kind, path, _ in {s for found in seen.values() for s in found}:
            if kind == "unix" and re.fullmatch(r"/tmp/\d+", path):  # ps-lite's ipc files
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
    assert_all_gone(leftover)
    return seen, out


@pytest.mark.parametrize("variables", [
    {},
    # as a Kubernetes pod (the MXNet operator) or an earlier experiment may leave them set:
    # ps-lite's scheduler then listens on 0.0.0.0, every interface
    {"DMLC_USE_KUBERNETES": "1"},
    # and every process on an ipc:///tmp/PORT file, left in /tmp when a process is killed
    {"DMLC_LOCAL": "1"},
], ids=["plain", "DMLC_USE_KUBERNETES=1", "DMLC_LOCAL=1"])
def test_a_one_machine_job_listens_on_loopback_only(data_dir, tmp_path, variables):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **variables)
    seen, out = watch_job(env, data_dir, tmp_path / "run")
    table = "\n".join(f"{who} pid {pid}: {sorted(sockets)}"
                      for (who, pid), sockets in sorted(seen.items(), key=str))
    wide = {key: s for key, found in seen.items() for s in found if s[:2] != ("tcp", "127.0.0.1")}
    assert not wide, f"listening off 127.0.0.1:\n{table}\n{out[-2000:]}"
    # not vacuous: each of the four processes listens, on one TCP port of 127.0.0.1
    roles = sorted(who for who, _ in seen)
    assert roles == ["scheduler", "server", "worker", "worker"], f"{table}\n{out[-2000:]}"
    assert all(len(sockets) == 1 for sockets in seen.values()), table
    port = re.search(r"\[launch\] scheduler 127\.0\.0\.1:(\d+) ", out)
    [scheduler] = [sockets for (who, _), sockets in seen.items() if who == "scheduler"]
    assert port and scheduler == {("tcp", "127.0.0.1", int(port.group(1)))}, (table, out)


def dry_run_plan(run_cli, *args):
    result = run_cli("launch", "--dry-run", *args)
    assert result.exit_code == 0, result.output
    return dict(line.split(": ", 1) for line in result.stdout.splitlines())


def test_every_process_is_told_where_to_listen_whatever_the_environment(run_cli, monkeypatch):
    for name in ("DMLC_USE_KUBERNETES", "DMLC_LOCAL"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("DMLC_NODE_HOST", "0.0.0.0")
    plan = dry_run_plan(run_cli, "-n", "2", "--", "--epochs", "1")
    assert sorted(plan) == ["scheduler here", "server 0 here", "worker 0 here", "worker 1 here"]
    for name, command in plan.items():
        words = command.split()
        assert {"DMLC_LOCAL=0", "DMLC_USE_KUBERNETES=0", "DMLC_PS_ROOT_URI=127.0.0.1"} \
            <= set(words), (name, command)
        assert "DMLC_NODE_HOST=127.0.0.1" in words, (name, command)


@pytest.mark.parametrize("args, message", [
    (["--root-uri", "10.0.0.5"], "--root-uri 10.0.0.5 is for --hostfile jobs"),
    (["--root-uri", "0.0.0.0"], "would make the scheduler listen on every interface"),
    (["--hostfile", "HOSTS", "--root-uri", "0.0.0.0"],
     "would make the scheduler listen on every interface"),
])
def test_a_root_uri_wider_than_the_job_needs_is_refused(run_cli, tmp_path, args, message):
    (tmp_path / "hosts").write_text("10.0.0.6\n")
    args = [str(tmp_path / "hosts") if a == "HOSTS" else a for a in args]
    result = run_cli("launch", "-n", "2", *args, "--dry-run")
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
