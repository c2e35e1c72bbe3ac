"""`swishtrain launch --hostfile` across real hosts, made on this machine.

Three hosts are Linux network namespaces, each with an eth0 (a veth pair) on one bridge, which
lives in a fourth namespace: nothing is added to the machine's own network. Addresses come from
10.213.77.0/24, used only inside these namespaces. h0 runs the launcher and the scheduler; h1
and h2 each run Debian's sshd with a host key, a client key and a config file of the test's own
(sshd's /run/sshd is a tmpfs mounted inside the namespace's own mount namespace), so nothing of
the machine's ssh setup is touched. The namespaces share the filesystem, so every host has the
same checkout, venv, data and run folder, as the README asks of real hosts.

Needs root and network namespaces (skipped, with the reason, where the machine does not allow
them); installs openssh-server with apt-get when it is missing. Everything the test makes is
removed at the end, also when it fails.
"""
import json
import os
import pty
import re
import shlex
import shutil
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from listening_sockets import listening, role

from train_cli.runfolder import read_metrics

from helpers import REPO, write_cifar

SUBNET = "10.213.77"  # only ever inside the namespaces below
PREFIX = f"swt{os.getpid()}"
TRAIN = ["--batch-size", "10", "--eval-batch-size", "32", "--augment", "none"]


def run(*argv, timeout=30, check=True):
    """Run a setup command; its stderr in the error if it fails."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode:
        raise RuntimeError(f"{shlex.join(argv)}: {done.stderr.strip() or done.stdout.strip()}")
    return done


def why_not():
    """Why this machine cannot run the test, or None."""
    if sys.platform != "linux" or os.geteuid() != 0:
        return "needs root on Linux to make network namespaces (ip netns)"
    if not shutil.which("ip"):
        return "needs the ip command (iproute2)"
    probe = f"{PREFIX}-probe"
    done = run("ip", "netns", "add", probe, check=False)
    if done.returncode:
        return f"this machine does not allow network namespaces: {done.stderr.strip()}"
    run("ip", "netns", "del", probe, check=False)
    if not (os.path.exists("/usr/sbin/sshd") and shutil.which("ssh")):
        return install_openssh()
    return None


def install_openssh():
    """Install Debian's openssh-server (and client); None, or why it could not be."""
    if not shutil.which("apt-get"):
        return "openssh-server is missing and there is no apt-get to install it"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "--no-install-recommends", "openssh-server"]
    for step in ([install], [["apt-get", "update"], install]):  # update only if it must
        try:
            done = [subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
                    for cmd in step]
        except subprocess.TimeoutExpired:
            return "installing openssh-server took over 10 minutes"
        if all(d.returncode == 0 for d in done) and os.path.exists("/usr/sbin/sshd"):
            return None
    return f"could not install openssh-server: {done[-1].stderr.strip()[-300:]}"


class Hosts:
    """The namespaces h0, h1, h2 at SUBNET.1-3 (and the bridge's), with sshd on h1 and h2."""

    def __init__(self, folder):
        self.folder = folder
        self.namespaces = [f"{PREFIX}-h{i}" for i in range(3)]
        self.switch = f"{PREFIX}-sw"
        self.addresses = [f"{SUBNET}.{i + 1}" for i in range(3)]
        self.sshd = []
        key = folder / "client_key"
        # no ssh config of the machine's (-F none), its own known_hosts, learnt on first use
        self.env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
                        SWISHTRAIN_SSH=f"ssh -F none -i {key} -o IdentitiesOnly=yes "
                                       "-o StrictHostKeyChecking=accept-new "
                                       f"-o UserKnownHostsFile={folder / 'known_hosts'} "
                                       "-o LogLevel=ERROR")

    def make(self):
        run("ip", "netns", "add", self.switch)
        run("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.switch, "link", "set", "br0", "up")
        for i, (ns, address) in enumerate(zip(self.namespaces, self.addresses)):
            run("ip", "netns", "add", ns)
            run("ip", "-n", self.switch, "link", "add", f"p{i}", "type", "veth", "peer", "name",
                "eth0", "netns", ns)
            run("ip", "-n", self.switch, "link", "set", f"p{i}", "master", "br0", "up")
            run("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            run("ip", "-n", ns, "link", "set", "eth0", "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")
        for name in ("client_key", "host_key"):
            run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "swishtrain-test", "-f",
                str(self.folder / name))
        for ns, address in zip(self.namespaces[1:], self.addresses[1:]):
            config = self.folder / f"sshd_{address}.conf"
            config.write_text(f"ListenAddress {address}\nPort 22\n"
                              f"HostKey {self.folder / 'host_key'}\n"
                              f"AuthorizedKeysFile {self.folder / 'client_key.pub'}\n"
                              "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
                              "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
                              "PidFile none\nPrintMotd no\nSubsystem sftp none\n")
            # sshd insists on /run/sshd; a tmpfs in this namespace's private mounts gives it one
            start = (f"mount -t tmpfs -o size=1m,mode=755 swishtrain-test /run && "
                     f"mkdir -m 755 /run/sshd && exec /usr/sbin/sshd -D -e -f {config}")
            log = open(self.folder / f"sshd_{address}.log", "w")
            self.sshd.append(subprocess.Popen(["ip", "netns", "exec", ns, "sh", "-c", start],
                                              stdout=log, stderr=subprocess.STDOUT))
        for address in self.addresses[1:]:  # each answers over ssh, from h0
            for _ in range(100):
                if self.ssh(address, "true").returncode == 0:
                    break
                time.sleep(0.1)
            else:
                raise RuntimeError(f"sshd on {address} does not answer: "
                                   f"{(self.folder / f'sshd_{address}.log').read_text()}")

    def ssh(self, address, command):
        return subprocess.run(["ip", "netns", "exec", self.namespaces[0],
                               *shlex.split(self.env["SWISHTRAIN_SSH"]), "-o", "BatchMode=yes",
                               address, command], capture_output=True, text=True, timeout=30)

    def launcher(self, *args, **popen):
        """`swishtrain launch ARGS` on h0."""
        return subprocess.Popen(["ip", "netns", "exec", self.namespaces[0], sys.executable, "-m",
                                 "train_cli", "launch", *map(str, args)], cwd=REPO, env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                **popen)

    def processes(self):
        """[(host address, pid, command line)] of every process in the hosts but the sshds."""
        inodes = {}
        for ns, address in zip([*self.namespaces, self.switch], [*self.addresses, "switch"]):
            try:
                inodes[os.stat(f"/run/netns/{ns}").st_ino] = address
            except OSError:
                pass
        daemons = {p.pid for p in self.sshd}
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                where = inodes.get(os.stat(f"/proc/{pid}/ns/net").st_ino)
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if where and int(pid) not in daemons:
                found.append((where, int(pid), command.strip()))
        return found

    def find(self, address, role):
        """The pids of the swishtrain processes of a role on a host (not their supervisors)."""
        pids = []
        for where, pid, command in self.processes():
            if where == address and "cluster.remote" not in command:
                try:
                    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                except OSError:
                    continue
                if f"DMLC_ROLE={role}".encode() in environ:
                    pids.append(pid)
        return pids

    def assert_all_gone(self):
        """No job process is left on any host; sshd's own session ends within seconds."""
        assert not [p for p in self.processes() if "sshd" not in p[2]], self.processes()
        deadline = time.monotonic() + 10
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not self.processes(), self.processes()

    def remove(self):
        for _, pid, _ in self.processes():  # every process in them is the test's
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for sshd in self.sshd:
            sshd.kill()
            sshd.wait(timeout=10)
        for ns in [*self.namespaces, self.switch]:  # takes the veths and the bridge with it
            run("ip", "netns", "del", ns, check=False)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    reason = why_not()
    if reason:
        pytest.skip(reason)
    made = Hosts(tmp_path_factory.mktemp("hosts"))
    try:
        made.make()
        yield made
    finally:
        made.remove()
        left = run("ip", "netns", "list").stdout
        assert PREFIX not in left, left


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_cifar(tmp_path_factory.mktemp("cifar"), per_batch=100, test=50)


def readme_example():
    """The hostfile and the launch command of README "More than one machine"."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## More than one machine"):]
    section = section[:section.index("\n## ", 1)]
    block = section[section.index("    $ cat hosts.txt"):].split("\n\n", 1)[0]
    hostfile, command = block.split("    $ swishtrain launch")
    hostfile = "\n".join(line[4:] for line in hostfile.splitlines()[1:]) + "\n"
    command = "swishtrain launch" + command.replace("\\\n", " ")
    return hostfile, shlex.split(command)[2:]  # after `swishtrain launch`


def output_until(proc, pattern, timeout=90):
    """The launcher's output up to the first line matching pattern."""
    out, deadline = "", time.monotonic() + timeout
    for line in proc.stdout:
        out += line
        if re.search(pattern, line):
            return out
        assert time.monotonic() < deadline, out
    raise AssertionError(f"the launcher ended before {pattern!r}:\n{out}")


def wait_for_training(run_dir, proc, timeout=90):
    deadline = time.monotonic() + timeout
    while not (run_dir / "metrics.csv").exists():  # an epoch is done: training is under way
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)


def test_the_readme_example_trains_across_hosts(hosts, data_dir, tmp_path):
    hostfile, args = readme_example()
    h0, h1, h2 = hosts.addresses
    readme_addresses = {"10.0.0.5": h0, "10.0.0.6": h1, "10.0.0.7": h2}
    for old, new in readme_addresses.items():
        hostfile = hostfile.replace(old, new)
    (tmp_path / "hosts.txt").write_text(hostfile)
    run_dir = tmp_path / "runs" / "two-hosts"
    values = {"--hostfile": tmp_path / "hosts.txt", "--data-dir": data_dir, "--run-dir": run_dir,
              "--root-uri": readme_addresses[args[args.index("--root-uri") + 1]]}
    args = [values.get(option, value) for option, value in zip([None, *args], args)]
    terminal, user_side = pty.openpty()  # the user's terminal must stay as it is
    before = termios.tcgetattr(user_side)
    proc = hosts.launcher(*args, *TRAIN, stdin=user_side)
    try:
        out, _ = proc.communicate(timeout=110)
        assert termios.tcgetattr(user_side) == before  # ssh -tt made it raw: Ctrl-C was lost
    finally:
        os.close(terminal)
        os.close(user_side)
    assert proc.returncode == 0, out
    assert f"over ssh: server 0 on {h1}, worker 0 on {h2}, worker 1 on {h1}" in out
    assert f"scheduler {h0}:" in out
    digests = re.findall(r"\[rank (\d)\] parameters sha1: (\w+)", out)
    assert sorted(rank for rank, _ in digests) == ["0", "1"]
    assert len({digest for _, digest in digests}) == 1, digests  # the replicas agree
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["workers"] == 2 and summary["val_images"] == 50  # the whole split, once
    epochs = int(args[args.index("--epochs") + 1])
    assert [r["epoch"] for r in read_metrics(run_dir / "metrics.csv")] == list(range(1, epochs + 1))
    # written once, by rank 0: one folder, one session, its files and nothing half-written
    assert os.listdir(run_dir.parent) == ["two-hosts"]
    assert sorted(os.listdir(run_dir)) == [".swishtrain", "best.params", "config.json",
                                           "last.ckpt", "metrics.csv", "summary.json",
                                           "tensorboard"]
    assert len(os.listdir(run_dir / "tensorboard")) == 1  # rank 0's one session
    assert len(json.loads((run_dir / "config.json").read_text())["sessions"]) == 1
    hosts.assert_all_gone()


def launch_on_hosts(hosts, data_dir, run_dir, tmp_path, *options, epochs=100):
    (tmp_path / "hosts.txt").write_text("\n".join(hosts.addresses[1:]) + "\n")
    return hosts.launcher("-n", 2, "-s", 1, "--hostfile", tmp_path / "hosts.txt", "--root-uri",
                          hosts.addresses[0], "--timeout", 100, *options, "--", "--data-dir",
                          data_dir, "--run-dir", run_dir, "--epochs", epochs, "--model",
                          "vgg11_bn", "--width", "0.125", *TRAIN)


def test_a_killed_worker_ends_the_job_on_every_host(hosts, data_dir, tmp_path):
    run_dir = tmp_path / "run"
    proc = launch_on_hosts(hosts, data_dir, run_dir, tmp_path)
    try:
        wait_for_training(run_dir, proc)
        [worker] = hosts.find(hosts.addresses[2], "worker")
        os.kill(worker, signal.SIGKILL)
        started = time.monotonic()
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1, out
    assert time.monotonic() - started < 30
    assert re.search(rf"Error: worker 0 on {hosts.addresses[2]} \(pid {worker}, rank \d\) was "
                     "killed by SIGKILL; stopped the other processes of the job", out), out
    hosts.assert_all_gone()


def test_ctrl_c_on_the_launcher_ends_every_process_on_every_host(hosts, data_dir, tmp_path):
    run_dir = tmp_path / "run"
    proc = launch_on_hosts(hosts, data_dir, run_dir, tmp_path)
    try:
        wait_for_training(run_dir, proc)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, out
    assert f"--hostfile {tmp_path / 'hosts.txt'} --root-uri {hosts.addresses[0]} -- " \
           f"--resume {run_dir}" in out
    hosts.assert_all_gone()


def test_each_process_listens_on_its_own_host_address_only(hosts, data_dir, tmp_path):
    """ps-lite has no authentication, so nothing of the job listens on every interface: the
    scheduler on --root-uri, each server and worker on its host's hostfile address."""
    run_dir = tmp_path / "run"
    proc = launch_on_hosts(hosts, data_dir, run_dir, tmp_path)
    seen = {}
    try:
        wait_for_training(run_dir, proc)  # every process has joined
        for address, pid, _ in hosts.processes():
            who = role(pid)  # the job's processes (their supervisors listen on nothing)
            try:
                sockets = listening(pid) if who else []
            except OSError:  # it ended meanwhile
                continue
            if sockets:
                seen[address, who, pid] = sockets
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, out
    h0, h1, h2 = hosts.addresses
    assert sorted((address, who) for address, who, _ in seen) == \
        [(h0, "scheduler"), (h1, "server"), (h1, "worker"), (h2, "worker")], seen
    for (address, who, pid), sockets in seen.items():  # one TCP port, on the host's address
        assert [s[:2] for s in sockets] == [("tcp", address)], (who, pid, sockets)
    port = int(re.search(rf"\[launch\] scheduler {re.escape(h0)}:(\d+) ", out).group(1))
    assert [s for (_, who, _), s in seen.items() if who == "scheduler"] == [[("tcp", h0, port)]]
    assert "[launch] no authentication" in out
    hosts.assert_all_gone()


def test_a_hung_remote_worker_is_noticed_and_the_job_restarted(hosts, data_dir, tmp_path):
    run_dir = tmp_path / "run"
    proc = launch_on_hosts(hosts, data_dir, run_dir, tmp_path, "--stall-timeout", 4,
                           "--max-restarts", 1, epochs=5)
    try:
        wait_for_training(run_dir, proc)
        [worker] = hosts.find(hosts.addresses[1], "worker")
        os.kill(worker, signal.SIGSTOP)  # its supervisor reports it stopped, and no CPU used
        out, _ = proc.communicate(timeout=100)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert re.search(rf"restart 1 of 1: no worker used CPU or printed anything for 4s \(worker 1 "
                     rf"on {hosts.addresses[1]} \(pid {worker}, rank \d\) stopped by a signal\)",
                     out), out
    assert [r["epoch"] for r in read_metrics(run_dir / "metrics.csv")] == [1, 2, 3, 4, 5]
    digests = set(re.findall(r"\[rank \d\] parameters sha1: (\w+)", out))
    assert len(digests) == 1, out
    hosts.assert_all_gone()
