"""One frozen, resolved description of a run, made once at the edge; every part is handed it.

    RunSpec     the options (TrainConfig), the devices, the job, the batches, the run folder
    Devices     --gpus or --cpu-devices: their kind, ids and how a batch spreads over them
    JobShape    the KVStore, the number of workers and servers, the whole job's --gpus

A spec is resolved where a run is decided (new_run by the train command and by a study for each
cell, resumed_run by resume, one_process by evaluate and bench, and by the launcher for rank 0's
view) and passed down: the engine, recorder and loop read it and never derive these facts again.
Only what the job itself says once joined (this worker's rank) comes from the process group.
Every rule that decides whether a combination is allowed is in rules.py. No mxnet import.
"""
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from train_cli.cluster import launched_job_gpus, launched_role, launched_size
from train_cli.runfolder import default_run_dir
from train_cli.runspec import rules


@dataclass(frozen=True)
class Devices:
    """The devices of one process: GPUs (--gpus; the stand-in's too) or CPU contexts."""
    kind: str  # "gpu" or "cpu"
    ids: tuple  # GPU ids as given, or 0..N-1 for --cpu-devices N

    @property
    def count(self):
        return len(self.ids)

    def process_batch(self, per_device):
        """Images per step in this process: per GPU (as the 2018 script); split over CPU
        contexts."""
        return per_device * self.count if self.kind == "gpu" else per_device


@dataclass(frozen=True)
class JobShape:
    """The job this process trains in: itself alone, or a worker of `swishtrain launch`."""
    kvstore: str  # the Trainer's KVStore
    workers: int = 1
    servers: int = 0
    gpus: tuple = ()  # the whole job's --gpus, which a launcher split over its workers

    @property
    def distributed(self):
        return rules.is_distributed(self.kvstore)

    @property
    def updates_on_servers(self):
        return rules.updates_on_servers(self.kvstore)


@dataclass(frozen=True)
class RunSpec:
    """Everything decided about a run before anything is built."""
    config: object  # the TrainConfig, validated and compatible (rules.check_options)
    run_dir: Path
    devices: Devices
    job: JobShape
    resumed: bool = False
    seeds: tuple | None = None  # a study (--seeds): one run per seed in run_dir/seed-<N>/

    @property
    def process_batch(self):
        """Images per optimiser step in this process (its share of the global batch)."""
        return self.devices.process_batch(self.config.batch_size)

    @property
    def global_batch(self):
        """Images per optimiser step of the whole job."""
        return self.process_batch * self.job.workers

    @property
    def eval_batch(self):
        """Images per evaluation batch in this process."""
        return self.devices.process_batch(self.config.eval_batch_size)


def devices_of(cfg):
    """The Devices cfg asks for."""
    if cfg.gpus:
        return Devices("gpu", tuple(cfg.gpus))
    return Devices("cpu", tuple(range(cfg.cpu_devices)))


def _job(cfg, environ):
    """The job this process is part of, from --kvstore and the launcher's environment."""
    role = launched_role(environ)
    rules.check_job(cfg.kvstore, role)
    if role != "worker":
        return JobShape(cfg.kvstore, gpus=tuple(cfg.gpus))
    workers, servers = launched_size(environ)
    return JobShape(cfg.kvstore, workers, servers,
                    gpus=launched_job_gpus(environ) or tuple(cfg.gpus))


def new_run(cfg, seeds=None, stamp=None, environ=os.environ):
    """The spec of a run (or, with seeds, a study) about to start; its folder is --run-dir or
    runs/<model>-<stamp>."""
    rules.check_options(cfg)
    if seeds is not None:
        rules.check_seeds(seeds, cfg.kvstore)
        seeds = tuple(seeds)
    run_dir = Path(cfg.run_dir or default_run_dir(cfg.model, stamp))
    return RunSpec(cfg, run_dir, devices_of(cfg), _job(cfg, environ), seeds=seeds)


def resumed_run(path, cfg, overrides, trained_workers=1, environ=os.environ):
    """The spec of the run in path, trained as cfg by trained_workers (its config.json), resumed
    with overrides."""
    from train_cli.config import validate
    cfg = rules.resumed_config(cfg, overrides)
    validate(cfg)
    rules.check_options(cfg)
    rules.check_resumable(cfg.kvstore)
    here = launched_size(environ)[0] if launched_role(environ) == "worker" else None
    distributed = rules.is_distributed(cfg.kvstore)
    rules.check_workers(path, trained_workers, here,
                        resume_command(path, trained_workers, distributed), distributed)
    return RunSpec(cfg, Path(path), devices_of(cfg), _job(cfg, environ), resumed=True)


def resume_command(path, workers, launched=False):
    """The command that continues a run of this many workers (of `swishtrain launch`, if
    launched: a job of one worker too)."""
    path = shlex.quote(str(path))
    return f"swishtrain launch -n {workers} -- --resume {path}" if workers > 1 or launched \
        else f"swishtrain resume {path}"


def one_process(cfg):
    """The spec of cfg's network rebuilt in this process alone (evaluate, bench), whatever job
    trained it."""
    rules.check_options(cfg)
    job = JobShape(rules.trainer_kvstore(cfg.kvstore, in_job=False), gpus=tuple(cfg.gpus))
    return RunSpec(cfg, Path(cfg.run_dir or "."), devices_of(cfg), job)
