"""A private one-node Slurm cluster for tests: its own munged, slurmctld and slurmd in a temporary
folder, on free ports, reached through SLURM_CONF. Debian's slurm-wlm 22.05 (`make test`)."""
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

# sbin is where Debian puts the daemons; it is not on every user's PATH
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "scontrol", "sinfo", "scancel")
PARTITION = "debug"
FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
            "DEADLINE", "OUT_OF_MEMORY"}
# A requeued job may start again only after its step credentials expire (Slurm's default: 120 s);
# 5 s keeps a requeue test short while leaving srun ample time to launch its steps here.
CRED_EXPIRE = 5


def missing():
    """Why this machine cannot run the cluster (a sentence), or None when it can."""
    absent = [name for name in DAEMONS + CLIENTS if not shutil.which(name, path=SEARCH_PATH)]
    if absent:
        return (f"Slurm is not installed ({', '.join(absent)} not found): `make test` installs "
                "Debian's slurmctld, slurmd, slurm-client and munge with apt-get")
    if os.geteuid() != 0:
        return "the private Slurm cluster runs its daemons as root (SlurmUser=root): run as root"
    return None


def free_ports(count):
    """count distinct TCP ports that are free on 127.0.0.1 now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def wait_for(predicate, timeout, what, details=lambda: ""):
    """Poll predicate() every 0.1 s until it is true; TimeoutError naming what otherwise."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout} s\n{details()}")
        time.sleep(0.1)


def alive(pid):
    """Whether process pid exists (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


class SlurmCluster:
    """One node named by `hostname -s` with every CPU, one partition, daemons started by start()."""

    def __init__(self, folder=None, real_memory=1000):
        """Configure (start nothing) in folder, by default a new one under the system's /tmp."""
        # munged wants every directory above its socket searchable by all, which pytest's
        # tmp_path (under a 0700 folder) is not; so a folder of its own, removed by stop()
        self.folder = Path(folder or tempfile.mkdtemp(prefix="swishtrain-slurm-"))
        self.owns_folder = folder is None
        self.node = socket.gethostname().split(".")[0]
        self.cpus = os.cpu_count()
        self.real_memory = real_memory
        self.partition = PARTITION
        self.conf_path = self.folder / "slurm.conf"
        self.munge_socket = self.folder / "munge" / "munge.socket"
        self.logs = self.folder / "log"
        self.processes = {}  # daemon name -> Popen, in start order
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_",
                                                                        "SALLOC_", "SRUN_"))}
        # an outer Slurm job's variables would make srun think it runs inside that allocation
        self.env = dict(env, SLURM_CONF=str(self.conf_path), PATH=SEARCH_PATH)

    @property
    def pids(self):
        """{daemon name: pid} of the daemons start() started."""
        return {name: p.pid for name, p in self.processes.items()}

    def _write_config(self):
        """The munge key and slurm.conf; every path inside the folder, every port free."""
        self.folder.chmod(0o755)
        for sub in ("munge", "state", "spool", "log", "run"):
            (self.folder / sub).mkdir(mode=0o755, exist_ok=True)
        key = self.folder / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)  # munged refuses a key others can read
        ctld_port, slurmd_port = free_ports(2)
        f = self.folder
        self.conf_path.write_text(f"""\
ClusterName=swishtrain-test
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
# bind to the node's own address (127.0.0.1), not to every interface
CommunicationParameters=NoInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket},cred_expire={CRED_EXPIRE}
StateSaveLocation={f}/state
SlurmdSpoolDir={f}/spool
SlurmctldPidFile={f}/run/slurmctld.pid
SlurmdPidFile={f}/run/slurmd.pid
SlurmctldLogFile={self.logs}/slurmctld.log
SlurmdLogFile={self.logs}/slurmd.log
# no cgroups: containers and CI runners rarely delegate them
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# schedule at once rather than Slurm's 3 s batch delay and 60 s main loop
SchedulerParameters=batch_sched_delay=0,sched_interval=1
ReturnToService=2
KillWait=5
MailProg=/bin/true
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.real_memory} \
State=UNKNOWN
PartitionName={self.partition} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
""")

    def _spawn(self, name, args):
        """Start one daemon in the foreground (so its pid is ours to stop), output to its log."""
        with open(self.logs / f"{name}.out", "ab") as out:
            self.processes[name] = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env, cwd=self.folder, start_new_session=True)

    def log_tail(self, lines=30):
        """The last lines of every daemon's log, for error messages."""
        parts = []
        for path in sorted(self.logs.glob("*")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(parts)

    def start(self, timeout=30):
        """Start munged, slurmctld and slurmd; return once sinfo shows the node idle."""
        self._write_config()
        m = self.folder / "munge"
        try:
            self._spawn("munged", ["munged", "--foreground", f"--key-file={m}/munge.key",
                                   f"--socket={self.munge_socket}", f"--pid-file={m}/munged.pid",
                                   f"--seed-file={m}/munged.seed", "--num-threads=4"])
            wait_for(self.munge_socket.exists, timeout, "munged's socket", self.log_tail)
            conf = str(self.conf_path)
            self._spawn("slurmctld", ["slurmctld", "-D", "-f", conf])
            self._spawn("slurmd", ["slurmd", "-D", "-N", self.node, "-f", conf])
            wait_for(lambda: self.node_state() == "idle", timeout,
                     f"node {self.node} idle in sinfo", self.log_tail)
        except BaseException:
            self.stop()
            raise
        return self

    def run(self, *args, check=True, timeout=30, **kwargs):
        """Run a command (e.g. "sbatch", ...) against this cluster; CompletedProcess, text."""
        done = subprocess.run([str(a) for a in args], env=kwargs.pop("env", self.env),
                              capture_output=True, text=True, timeout=timeout, **kwargs)
        if check and done.returncode:
            raise AssertionError(f"{' '.join(map(str, args))} exited {done.returncode}\n"
                                 f"{done.stdout}{done.stderr}\n{self.log_tail(10)}")
        return done

    def node_state(self):
        """The node's state as sinfo says it ('idle', 'mixed', 'down*', ...), '' if unreachable."""
        done = self.run("sinfo", "-h", "-n", self.node, "-o", "%T", check=False, timeout=10)
        return done.stdout.strip() if done.returncode == 0 else ""

    def sbatch(self, *args, **kwargs):
        """Submit with `sbatch --parsable ARGS`; the job id (an int)."""
        return int(self.run("sbatch", "--parsable", *args, **kwargs).stdout.split(";")[0])

    def jobs(self, job_id):
        """[{field: value}] of a job's records in `scontrol show job` (one per array task)."""
        done = self.run("scontrol", "-o", "show", "job", job_id, check=False)
        return [dict(re.findall(r"(\w[\w/:]*)=(\S*)", line)) for line in done.stdout.splitlines()]

    def wait_finished(self, job_id, timeout=30):
        """Wait until every task of job_id has finished; their records (as jobs())."""
        records = []

        def finished():
            records[:] = self.jobs(job_id)
            return bool(records) and all(r["JobState"] in FINISHED for r in records)
        wait_for(finished, timeout, f"job {job_id} finished",
                 lambda: f"{records}\n{self.log_tail(10)}")
        return records

    def _strays(self):
        """Pids of the cluster's processes: those holding a file or working directory inside the
        folder (the daemons, slurmstepd) and those whose environment names its slurm.conf (the
        jobs' processes, which slurmstepd gives SLURM_CONF, and clients the tests started)."""
        found = []
        folder = str(self.folder)
        marker = f"SLURM_CONF={self.conf_path}".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                links = [os.readlink(entry / "cwd")]
                links += [os.readlink(fd) for fd in (entry / "fd").iterdir()]
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:  # gone meanwhile, a zombie, or a kernel thread
                continue
            if marker in environ or any(link == folder or link.startswith(folder + "/")
                                        for link in links):
                found.append(int(entry.name))
        return found

    def stop(self, grace=10):
        """Cancel every job, stop the daemons by pid (TERM, then KILL after grace), remove the
        folder; AssertionError if any process of the cluster survives."""
        if self.processes.get("slurmctld") and self.processes["slurmctld"].poll() is None:
            jobs = self.run("squeue", "-h", "-o", "%i", check=False, timeout=10).stdout.split()
            if jobs:
                self.run("scancel", *jobs, check=False, timeout=10)
                try:
                    wait_for(lambda: not self.run("squeue", "-h", "-o", "%i", check=False,
                                                  timeout=10).stdout.strip(), grace, "jobs gone")
                except TimeoutError:
                    pass  # the daemons' and strays' kills below end them anyway
        for name in reversed(list(self.processes)):
            process = self.processes[name]
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        for pid in self._strays():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_for(lambda: not self._strays(), grace, "the cluster's stray processes gone")
        survivors = [pid for pid in self.pids.values() if alive(pid)]
        assert not survivors, f"Slurm daemons still running: pids {survivors}"
        if self.owns_folder:
            shutil.rmtree(self.folder, ignore_errors=True)
