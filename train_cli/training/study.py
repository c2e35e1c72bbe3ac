"""Several seeds of one configuration, run one after another into RUN_DIR/seed-<N>/.

One run is one sample: the 2018 comparison rested on a single run per activation. A study runs
the same options with several seeds so `swishtrain compare` can put an interval on the answer.
RUN_DIR/study.json records the seeds and options first, so an interrupted study resumes every
seed, including those that had not started.
"""
import dataclasses
import statistics
from pathlib import Path

from train_cli.config import from_dict
from train_cli.errors import UsageError, UserError
from train_cli.runfolder import CHECKPOINT, STUDY, SUMMARY, RunFolder, default_run_dir
from train_cli.training import run as single
from train_cli.training.progress import echo
from train_cli.training.recorder import check_new, create_study


def seed_dir(base, seed):
    return Path(base) / f"seed-{seed}"


def check_seeds(seeds, cfg):
    if not seeds:
        raise UsageError("--seeds needs at least one seed, e.g. --seeds 1,2,3")
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds must be distinct seeds of 0 or more (got "
                         f"{','.join(map(str, seeds))}), e.g. --seeds 1,2,3")
    if cfg.kvstore.startswith("dist"):
        raise UsageError("--seeds runs in one process, which can join one distributed job "
                         "only; launch one job per seed instead")


def train_seeds(cfg, seeds, overwrite=False, progress_bar=None):
    """Train cfg once per seed; return the summaries."""
    check_seeds(seeds, cfg)
    path = cfg.run_dir or default_run_dir(cfg.model)
    check_new(path, overwrite)  # at once, changing nothing
    # every check before an earlier study is replaced (--overwrite) or a folder is made
    single.preflight(dataclasses.replace(cfg, seed=seeds[0]))
    study = create_study(path, seeds, cfg, overwrite)
    return _run_seeds(study.path, cfg, seeds, {}, progress_bar)


def resume_study(folder, overrides, progress_bar=None):
    """Continue every seed of a study: resume those begun, start those that were not."""
    saved = RunFolder.existing(folder, marker=STUDY).read_json(STUDY)
    try:
        cfg, seeds = from_dict(saved["config"]), [int(s) for s in saved["seeds"]]
    except (KeyError, TypeError, ValueError, UserError) as e:
        raise UserError(f"{Path(folder) / STUDY} is corrupt ({e})") from None
    return _run_seeds(Path(folder), cfg, seeds, overrides, progress_bar)


def _run_seeds(base, cfg, seeds, overrides, progress_bar):
    summaries = []
    for i, seed in enumerate(seeds, 1):
        path = seed_dir(base, seed)
        folder = RunFolder(path)
        if folder.has(CHECKPOINT) and folder.is_finished() and overrides.get("epochs") is None:
            echo(f"=== seed {seed} ({i}/{len(seeds)}): finished, in {path}")
            summaries.append(folder.read_json(SUMMARY))
        elif folder.has(CHECKPOINT):
            echo(f"=== seed {seed} ({i}/{len(seeds)}): resuming {path}")
            summaries.append(single.resume(path, overrides, progress_bar=progress_bar))
        else:
            echo(f"=== seed {seed} ({i}/{len(seeds)}) -> {path}")
            seed_cfg = dataclasses.replace(cfg, seed=seed, run_dir=str(path),
                                           **{k: v for k, v in overrides.items() if v is not None})
            summaries.append(single.train(seed_cfg, overwrite=True, progress_bar=progress_bar))
    report(seeds, summaries, base)
    return summaries


def report(seeds, summaries, base):
    """Per-seed best accuracies and their mean; the last line states the study's result."""
    accs = [s["best_val_acc"] for s in summaries]
    for seed, s in zip(seeds, summaries):
        echo(f"seed {seed}: best validation accuracy {s['best_val_acc']:.4f} at epoch "
             f"{s['best_epoch']}")
    spread = f" ± {statistics.stdev(accs):.4f}" if len(accs) > 1 else ""
    echo(f"Study folder: {base}  (compare it with: swishtrain compare {base} ...)")
    echo(f"Best validation accuracy: mean {statistics.mean(accs):.4f}{spread} over "
         f"{len(accs)} seed(s)")
