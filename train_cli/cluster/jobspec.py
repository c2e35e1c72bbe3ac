"""The job spec: `swishtrain launch`'s options and the workers' train options, parsed once.

The launch command hands `parse` its own options and the workers' options as `swishtrain train`
parsed them; parse resolves the RunSpec that rank 0 will (runspec, with every rule of
runspec/rules.py that can be decided before the job exists), so a bad option fails here, before
any process starts. Placement, supervision and the restart loop only read the result.
"""
import ipaddress
import os
from dataclasses import dataclass, replace
from pathlib import Path

from train_cli import runspec
from train_cli.cluster import placement
from train_cli.config import build_config, flag
from train_cli.errors import UsageError
from train_cli.runfolder import (
    CHECKPOINT,
    CONFIG,
    STUDY,
    RunFolder,
    epochs_recorded,
    is_study,
)
from train_cli.runspec import rules

STALL_SECONDS = 300  # default --stall-timeout
# parameters of the train command that are not TrainConfig options
TRAIN_ONLY = ("config_file", "resume_dir", "overwrite", "seeds", "progress")


@dataclass(frozen=True)
class JobSpec:
    """Everything the launcher decides before it starts a process."""
    workers: int
    servers: int
    train_args: tuple  # the workers' options as given after --
    run_dir: str  # the run folder the job writes (every worker names the same one)
    kvstore: str  # the job's KVStore (rules.launch_kvstore)
    kvstore_given: bool = False  # --kvstore is in train_args (else the launcher adds it)
    resuming: bool = False  # train_args continue a run (--resume)
    gpus: tuple = ()  # the whole job's --gpus, to split over the workers
    worker_gpus: tuple = ()  # --worker-gpus: each worker's own list instead
    hosts: tuple = ()  # from --hostfile (servers, then workers, round-robin); () = here
    via: str = "ssh"  # how a process reaches its host: ssh, or srun inside a Slurm allocation
    hostfile: str | None = None
    root_uri: str = "127.0.0.1"
    max_restarts: int = 0
    stall_timeout: float = STALL_SECONDS
    timeout: float | None = None
    resumable: tuple = ()  # --epochs/--data-dir/--eval-batch-size as given, kept on a restart
    fresh_folder: bool = False  # run_dir was absent or empty at launch: what is in it is ours
    stamp: str = ""  # the run stamp the workers name a default folder with

    def worker_args(self):
        """The train options every worker gets (before its share of the GPUs)."""
        kvstore = [] if self.kvstore_given or self.resuming else ["--kvstore", self.kvstore]
        return [*self.train_args, *kvstore]

    def restart_args(self):
        """The train options that continue the job after a failure."""
        if (Path(self.run_dir) / CHECKPOINT).is_file():
            return ["--resume", self.run_dir, *self.resumable]
        # it failed before its first checkpoint: start it again; what the folder holds was
        # written by this job only if the folder was new
        overwrite = ["--overwrite"] if self.fresh_folder and "--overwrite" not in self.train_args \
            else []
        return [*self.train_args, *overwrite]

    def restarted(self):
        """This spec for the job that continues after a failure."""
        args = self.restart_args()
        return replace(self, train_args=tuple(args), resuming=args[:1] == ["--resume"])

    def epochs_done(self):
        """Completed epochs in the run folder (metrics.csv rows), or None if unknown."""
        return epochs_recorded(self.run_dir)

    def worker_environ(self):
        """What a worker's runspec sees of the launcher's environment."""
        return {"DMLC_ROLE": "worker", "DMLC_NUM_WORKER": str(self.workers),
                "DMLC_NUM_SERVER": str(self.servers)}


def parse(workers, servers, train_args, params, stamp, hosts=(), environ=os.environ, **launch):
    """The JobSpec of a launch: its options (launch: hostfile, root_uri, max_restarts, ...), the
    workers' train_args and the train command's parsed params (cli/tools.py parses them).
    Without a hostfile inside a Slurm allocation (SLURM_JOB_NODELIST), the hosts are the
    allocation's nodes, reached with srun, and the scheduler listens on this node's address."""
    if workers < 1 or servers < 1:
        raise UsageError("launch needs at least one worker (-n) and one server (-s)")
    root_uri = launch.get("root_uri", "127.0.0.1")
    if not hosts and environ.get("SLURM_JOB_NODELIST"):
        hosts = placement.allocation_hosts(environ["SLURM_JOB_NODELIST"])
        if root_uri == "127.0.0.1":
            root_uri = placement.node_address(placement.this_node())
        launch = dict(launch, root_uri=root_uri, via="srun")
    elif hosts and root_uri.startswith("127."):
        raise UsageError("--hostfile needs --root-uri: an address of this machine that the "
                         "listed hosts can reach")
    check_root_uri(root_uri, bool(hosts))
    values = {k: v for k, v in params.items() if k not in TRAIN_ONLY}
    resumable = tuple(a for name in rules.RESUMABLE_OVERRIDES if values.get(name) is not None
                      for a in (flag(name), _option_text(values[name])))
    spec = JobSpec(workers, servers, tuple(train_args), "", "", hosts=tuple(hosts),
                   resumable=resumable, stamp=stamp, **launch)
    environ = spec.worker_environ()
    given = values.get("kvstore")
    if params.get("resume_dir"):
        run_dir = params["resume_dir"]
        # fail here, once, rather than in every worker of every restart
        folder = RunFolder.existing(run_dir, STUDY if is_study(run_dir) else CONFIG)
        if not folder.has(CONFIG):
            raise UsageError(f"{run_dir} is a study, whose cells are runs of one process each; "
                             f"continue it with: swishtrain resume {run_dir} (or its sweep "
                             "command)")
        saved_json = folder.read_json(CONFIG)
        saved = folder.config(saved_json)
        kvstore = rules.launch_kvstore(None, saved.kvstore)
        # the job's whole GPU list (config.json's gpus are rank 0's share of it): other GPUs,
        # as many as the job had; each worker then checks its share against its own
        job_gpus = tuple(saved_json.get("job_gpus") or saved.gpus)
        rules.resumed_config(replace(saved, gpus=job_gpus), {"gpus": values.get("gpus")})
        run = runspec.resumed_run(run_dir, saved, dict(values, gpus=None),
                                  saved_json.get("workers", 1), environ)
        spec = replace(spec, resuming=True, gpus=values.get("gpus") or job_gpus)
    else:
        cfg = build_config(values, params.get("config_file"))
        # a config file's distributed KVStore counts as given; its others are replaced
        kvstore = rules.launch_kvstore(given or (cfg.kvstore if rules.is_distributed(cfg.kvstore)
                                                 else None))
        run = runspec.new_run(replace(cfg, kvstore=kvstore), params.get("seeds"), stamp=stamp,
                              environ=environ)  # --seeds: refused, one process per job
        path = run.run_dir
        fresh = not path.exists() or (path.is_dir() and not any(path.iterdir()))
        spec = replace(spec, gpus=cfg.gpus, fresh_folder=fresh)
    rules.check_restarts(spec.max_restarts, kvstore)
    spec = replace(spec, run_dir=str(run.run_dir), kvstore=kvstore, kvstore_given=bool(given))
    placement.split_gpus(spec.gpus, placement.worker_hosts(spec), spec.worker_gpus)  # or fail now
    return spec


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


def _option_text(value):
    """A parsed option as the command line spells it (a tuple of ids as 0,1,2,3)."""
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
