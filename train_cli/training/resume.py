"""Reopen an earlier run: its saved options, the few that may change, and its checkpoint."""
import dataclasses

from train_cli.config import flag, from_dict, validate
from train_cli.errors import UsageError, UserError
from train_cli.training import checkpoint
from train_cli.training.recorder import CHECKPOINT, CONFIG, RunDir

# Options that may differ when a run is resumed: they change how long it runs or where it reads
# data from, never what an epoch computes.
RESUMABLE_OVERRIDES = ("epochs", "data_dir", "eval_batch_size")


def run_config(run):
    """The TrainConfig a run folder was trained with (from its config.json)."""
    saved = run.read_json(CONFIG)
    try:
        return from_dict(saved["config"])
    except (KeyError, TypeError, UserError) as e:
        raise UserError(f"{run.file(CONFIG)} is not a valid swishtrain config ({e})") from None


def load_for_resume(run_path, overrides):
    """(config, run dir, checkpoint) of an earlier run; overrides may only change some options."""
    run = RunDir.existing(run_path)
    cfg = run_config(run)
    changes = {}
    for name, value in overrides.items():
        if value is None or value == getattr(cfg, name):
            continue
        if name not in RESUMABLE_OVERRIDES:
            allowed = ", ".join(flag(n) for n in RESUMABLE_OVERRIDES)
            raise UsageError(f"{flag(name)} cannot change when resuming (the run used "
                             f"{getattr(cfg, name)!r}); only {allowed} may")
        changes[name] = value
    cfg = dataclasses.replace(cfg, **changes)
    validate(cfg)
    if cfg.kvstore == "dist_async":
        raise UserError("runs with --kvstore dist_async cannot be resumed: their optimiser "
                        "state lives on the servers, which are gone; start a new run")
    ckpt = checkpoint.load(run.file(CHECKPOINT))
    if ckpt.meta.get("epochs_done", 0) > cfg.epochs:
        raise UsageError(f"--epochs {cfg.epochs} is fewer than the {ckpt.meta['epochs_done']} "
                         "epochs this run has done; give a larger --epochs to extend it")
    if ckpt.meta.get("model") != cfg.model:
        raise UserError(f"{run.file(CHECKPOINT)} holds a {ckpt.meta.get('model')!r} model but "
                        f"{run.file(CONFIG)} says {cfg.model!r}; the folder is inconsistent")
    return cfg, run, ckpt
