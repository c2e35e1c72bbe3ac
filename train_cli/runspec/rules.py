"""Every compatibility rule between options, devices, dtype, the job, resuming and launching.

Each rule is written once, here, with the error it raises; the rest of the package asks. An
option's own range (--lr > 0, --dropout < 1, a known model) is checked where the option is
declared (config.validate); what depends on two things at once is decided here:

    options   check_options    devices x dtype x kvstore x TF32 x batch
    job       check_job        --kvstore x being a worker of `swishtrain launch`
              launch_kvstore   the KVStore a launched job uses (dist_sync unless told)
              check_seeds      --seeds x the job (one process joins one job)
              check_restarts   --max-restarts x the KVStore
              trainer_kvstore  a run trained in a job, rebuilt in one process
    resume    resumed_config   which options a resume may change, and how
              check_resumable  the KVStores whose runs can be resumed
              check_workers    a resumed run's job: as many workers as trained it
              check_resume     the checkpoint and the random streams a resume needs
    analysis  update_kind      which KVStores make the same step (compare's groups)
              evaluation_dtype a run's dtype on the devices it is evaluated on
    advice    warnings         what is allowed but probably not meant (bfloat16 widths, steps)
No mxnet import: the command line asks these before anything slow.
"""
import dataclasses

from train_cli.config import flag
from train_cli.errors import UsageError, UserError

DIST_PREFIX = "dist"
ASYNC_KVSTORE = "dist_async"  # the servers run the optimiser: no exact resume, no loss scaling
LAUNCH_DEFAULT_KVSTORE = "dist_sync"
# Options that may differ when a run is resumed: they change how long it runs, where it reads
# data from or which GPUs (as many) it uses, never what an epoch computes.
RESUMABLE_OVERRIDES = ("epochs", "data_dir", "eval_batch_size", "gpus")


def is_distributed(kvstore):
    """Whether a KVStore needs the scheduler, servers and workers of a launched job."""
    return kvstore.startswith(DIST_PREFIX)


def updates_on_servers(kvstore):
    """Whether the servers, not the workers, apply the updates (and the schedule)."""
    return kvstore == ASYNC_KVSTORE


def update_kind(kvstore):
    """'async' or 'sync': device, local and the dist_*sync stores all apply one summed step."""
    return "async" if updates_on_servers(kvstore or "") else "sync"


def check_options(cfg):
    """Raise UsageError when two options of cfg cannot be combined."""
    def need(ok, option, msg):
        if not ok:
            raise UsageError(f"{flag(option)} {msg}")

    need(not (cfg.gpus and cfg.cpu_devices > 1), "cpu_devices",
         "cannot be combined with --gpus; use one or the other")
    for option in ("batch_size", "eval_batch_size"):
        need(getattr(cfg, option) >= cfg.cpu_devices, option,
             f"{getattr(cfg, option)} is smaller than --cpu-devices {cfg.cpu_devices}: every "
             "device needs at least one image per batch")
    need(cfg.dtype != "float16" or cfg.gpus, "dtype",
         "float16 needs --gpus: MXNet's CPU kernels have no float16 matrix multiply; on a CPU "
         "with AMX or AVX512_BF16 use --dtype bfloat16")
    need(cfg.dtype != "bfloat16" or not cfg.gpus, "dtype",
         "bfloat16 runs on the CPU only (MXNet 1.9.1's bfloat16 is oneDNN's); with --gpus use "
         "--dtype float16")
    need(not cfg.tf32 or cfg.gpus, "tf32",
         "needs --gpus: TF32 is an arithmetic of NVIDIA GPUs; drop --tf32 on the CPU")
    need(cfg.dtype != "float16" or not updates_on_servers(cfg.kvstore), "dtype",
         "float16 cannot be combined with --kvstore dist_async: loss scaling needs the updates "
         "on the workers; use dist_sync")


def check_job(kvstore, role):
    """Raise UsageError unless --kvstore fits the process: a distributed one exactly in a worker
    of `swishtrain launch` (role: its DMLC_ROLE, None outside a job)."""
    if not is_distributed(kvstore):
        if role == "worker":  # N local writers would race on one folder
            raise UsageError(f"--kvstore {kvstore} is not distributed, but this process is a "
                             "worker of `swishtrain launch`; use dist_sync (the default there)")
    elif role != "worker":
        raise UsageError(f"--kvstore {kvstore} needs the scheduler, servers and workers of a "
                         "distributed job; start it with `swishtrain launch -n 2 -- <train "
                         "options>`")


def launch_kvstore(given, resumed_kvstore=None):
    """The KVStore of a launched job: --kvstore as given (it must be distributed), a resumed
    run's own, else dist_sync."""
    if given is not None and not is_distributed(given):
        raise UsageError(f"--kvstore {given} is not distributed; launch needs dist_sync, "
                         "dist_device_sync or dist_async (default dist_sync)")
    return given or resumed_kvstore or LAUNCH_DEFAULT_KVSTORE


def check_seeds(seeds, kvstore):
    """Raise UsageError unless --seeds lists distinct seeds for a run of one process."""
    if not seeds:
        raise UsageError("--seeds needs at least one seed, e.g. --seeds 1,2,3")
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds must be distinct seeds of 0 or more (got "
                         f"{','.join(map(str, seeds))}), e.g. --seeds 1,2,3")
    if is_distributed(kvstore):
        raise UsageError("--seeds runs in one process, which can join one distributed job "
                         "only; launch one job per seed instead")


def check_restarts(max_restarts, kvstore):
    """Raise UsageError if a job that must restart could not be resumed (check_resumable)."""
    if max_restarts and updates_on_servers(kvstore):
        raise UsageError("--max-restarts needs a run that can be resumed, and dist_async runs "
                         "cannot be (their optimiser state lives on the servers); use dist_sync")


def trainer_kvstore(kvstore, in_job):
    """The KVStore a Trainer gets: a run trained in a job is rebuilt in one process (evaluate,
    bench) with the devices' own."""
    return kvstore if in_job or not is_distributed(kvstore) else "device"


def resumed_config(cfg, overrides):
    """The run's own cfg with the few changes a resume may make (overrides: {name: value or
    None}); UsageError for any other."""
    changes = {}
    for name, value in overrides.items():
        if value is None or value == getattr(cfg, name):
            continue
        if name not in RESUMABLE_OVERRIDES:
            allowed = ", ".join(flag(n) for n in RESUMABLE_OVERRIDES)
            raise UsageError(f"{flag(name)} cannot change when resuming (the run used "
                             f"{getattr(cfg, name)!r}); only {allowed} may")
        if name == "gpus" and len(value) != len(cfg.gpus):  # other GPUs, the same step
            raise UsageError(f"--gpus may name other GPUs when resuming, but as many as the run "
                             f"used ({len(cfg.gpus)}): the global batch would change")
        changes[name] = value
    return dataclasses.replace(cfg, **changes)


def check_resumable(kvstore):
    """Raise UserError for a run whose optimiser state was never in its checkpoint."""
    if updates_on_servers(kvstore):
        raise UserError("runs with --kvstore dist_async cannot be resumed: their optimiser "
                        "state lives on the servers, which are gone; start a new run")


def check_workers(folder, trained, workers, how, launched=False):
    """Raise UserError unless a run trained by `trained` workers (of `swishtrain launch`, if
    launched) resumes in a job of as many (workers: this job's, None outside a launched job);
    how: the command that would."""
    if trained > 1 and workers is None:
        raise UserError(f"{folder} was trained by {trained} workers; resume it the same way: "
                        f"{how}")
    if launched and workers is None:
        raise UserError(f"{folder} was trained by 1 worker of `swishtrain launch`; resume it "
                        f"the same way: {how}")
    if (workers or 1) != trained:  # the global batch, and so every step, would change
        raise UserError(f"{folder} was trained by {trained} worker(s), not {workers or 1}; "
                        f"resume it the same way: {how}")


def check_resume(folder, cfg, saved, epochs_done, streams_version):
    """Raise UserError unless the run in folder (saved: its config.json) can continue as cfg
    here: its random streams are this version's and --epochs covers what is done."""
    if epochs_done > cfg.epochs:
        raise UsageError(f"--epochs {cfg.epochs} is fewer than the {epochs_done} epochs this "
                         "run has done; give a larger --epochs to extend it")
    if saved.get("random_streams", 1) != streams_version:  # another shuffle, augmentation...
        raise UserError(f"{folder} was trained by swishtrain {saved.get('swishtrain', '?')}, "
                        "which drew its data order, augmentation and dropout differently: "
                        "resuming it here would not continue the same run; start a new run")


def evaluation_dtype(trained, gpus):
    """The dtype a run is evaluated in: float16 runs in float16 on GPUs; everything else in
    float32 (a bfloat16 run has float32 weights, and bfloat16 needs a CPU that has it)."""
    return "float16" if trained == "float16" and gpus else "float32"


# With BatchNorm and an activation that oneDNN runs (not the fused Swish, whose layout conversion
# avoids it), bfloat16 was 2x slower than float32 unless every convolution has a multiple of
# this many channels (vgg16_bn: width 0.5 and 1 faster, 0.25 and 0.75 slower; docs/PERFORMANCE.md)
BFLOAT16_CHANNEL_MULTIPLE = 32


def warnings(cfg):
    """What cfg allows but probably does not mean, in words (printed as warnings)."""
    found = []
    late = [s for s in cfg.lr_steps if s >= cfg.epochs]
    if late:
        found.append(f"--lr-steps {csv(late)} >= --epochs {cfg.epochs}: those steps never "
                     "happen")
    if cfg.dtype == "bfloat16":
        from train_cli.model.spec import FUSED_ACTIVATIONS, VGG_SPEC, parse_name, scaled
        depth, batch_norm, act = parse_name(cfg.model)
        odd = sorted({c for c in (scaled(c, cfg.width) for c in VGG_SPEC[depth][1])
                      if c % BFLOAT16_CHANNEL_MULTIPLE})
        if odd and batch_norm and act not in FUSED_ACTIVATIONS:
            found.append(f"--dtype bfloat16 at --width {cfg.width:g}: with BatchNorm and "
                         f"{act}, layers of {csv(odd)} channels (not multiples of "
                         f"{BFLOAT16_CHANNEL_MULTIPLE}) were measured to make bfloat16 about 2x "
                         "slower than float32 (oneDNN falls back to a slow BatchNorm); "
                         "`swishtrain bench --dtype bfloat16` shows it on this CPU")
    return found


def csv(values):
    """0,1,2: ids or epochs as a flag spells them."""
    return ",".join(str(v) for v in values)
