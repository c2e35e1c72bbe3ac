"""Several seeds of one configuration, run one after another into RUN_DIR/seed-<N>/.

One run is one sample: the 2018 comparison rested on a single run per activation. A study runs
the same options with several seeds so `swishtrain compare` can put an interval on the answer.
RUN_DIR/study.json records the seeds and options first, so an interrupted study resumes every
seed, including those that had not started.
"""
import dataclasses
import re
import shlex
import statistics
from pathlib import Path

from train_cli import runspec
from train_cli.config import from_dict
from train_cli.errors import Stopped, UserError
from train_cli.runfolder import CHECKPOINT, STUDY, SUMMARY, RunFolder, is_study
from train_cli.training import run as single
from train_cli.training.interrupt import StopRequests
from train_cli.training.progress import echo
from train_cli.training.recorder import check_new, create_study, write_study


def seed_dir(base, seed):
    """A seed's run folder in a study folder."""
    return Path(base) / f"seed-{seed}"


def train_seeds(spec, overwrite=False, progress_bar=None):
    """Train a study's spec (runspec.new_run with seeds) once per seed; return the summaries."""
    cfg, seeds = spec.config, list(spec.seeds)
    check_new(spec.run_dir, overwrite)  # at once, changing nothing
    # every check before an earlier study is replaced (--overwrite) or a folder is made
    single.preflight(dataclasses.replace(spec, config=dataclasses.replace(cfg, seed=seeds[0])))
    study = create_study(spec.run_dir, seeds, cfg, overwrite)
    return _run_seeds(study.path, cfg, seeds, {}, progress_bar)


def resume_study(folder, overrides, progress_bar=None):
    """Continue every seed of a study: resume those begun, start those that were not."""
    saved = RunFolder.existing(folder, marker=STUDY).read_json(STUDY)
    try:
        cfg, seeds = from_dict(saved["config"]), [int(s) for s in saved["seeds"]]
    except (KeyError, TypeError, ValueError, UserError) as e:
        raise UserError(f"{Path(folder) / STUDY} is corrupt ({e})") from None
    epochs = overrides.get("epochs")
    if epochs is not None and epochs != cfg.epochs:
        # one experiment: every seed ends at the same epoch, even if this extension is stopped
        cfg = dataclasses.replace(cfg, epochs=epochs)
        write_study(folder, seeds, cfg)
    return _run_seeds(Path(folder), cfg, seeds, overrides, progress_bar)


def _run_seeds(base, cfg, seeds, overrides, progress_bar):
    summaries = []
    with StopRequests() as stop:  # a stop between two seeds' runs is honoured too
        for i, seed in enumerate(seeds, 1):
            if stop.is_set():
                raise _stopped(base, cfg, seeds, f"stopped by {stop.name}", stop.exit_code)
            try:
                summaries.append(_run_seed(base, cfg, seed, f"{i}/{len(seeds)}", overrides,
                                           progress_bar))
            except Stopped as e:  # the command that continues is the study's, not the seed's
                raise _stopped(base, cfg, seeds, str(e).splitlines()[0], e.exit_code) from None
        report(seeds, summaries, base)
        if stop.is_set():
            raise _stopped(base, cfg, seeds, f"stopped by {stop.name}", stop.exit_code)
    return summaries


def _stopped(base, cfg, seeds, why, exit_code):
    """The Stopped of a study: what stopped it, which seeds are unfinished, and the command
    that continues the whole study."""
    left = [s for s in seeds if not _finished(RunFolder(seed_dir(base, s)), cfg)]
    if not left:
        return Stopped(f"{why}; every seed of {base} is finished", exit_code=exit_code)
    return Stopped(f"{why}\nseeds {','.join(map(str, left))} of {base} are not finished.\n"
                   f"Resume the study with: swishtrain resume {shlex.quote(str(base))}",
                   exit_code=exit_code)


def _finished(folder, cfg):
    """Whether a seed's run is done at the study's number of epochs."""
    return folder.has(CHECKPOINT) and folder.is_finished_quietly() and \
        folder.read_json(SUMMARY).get("epochs") == cfg.epochs


def _run_seed(base, cfg, seed, place, overrides, progress_bar):
    """One seed's run: left alone when finished, resumed when begun, else started."""
    path = seed_dir(base, seed)
    folder = RunFolder(path)
    if _finished(folder, cfg):
        echo(f"=== seed {seed} ({place}): finished, in {path}")
        return folder.read_json(SUMMARY)
    if folder.has(CHECKPOINT):
        echo(f"=== seed {seed} ({place}): resuming {path}")
        return single.resume(path, dict(overrides, epochs=cfg.epochs), progress_bar=progress_bar)
    echo(f"=== seed {seed} ({place}) -> {path}")
    seed_cfg = dataclasses.replace(cfg, seed=seed, run_dir=str(path),
                                   **{k: v for k, v in overrides.items() if v is not None})
    return single.train(runspec.new_run(seed_cfg), overwrite=True, progress_bar=progress_bar)


def unfinished_seeds(run_path):
    """For a seed folder of a study: (study folder, the study's other seeds not yet finished),
    or None for a run of its own."""
    run_path = Path(run_path)
    study = run_path.parent
    if not (is_study(study) and re.fullmatch(r"seed-\d+", run_path.name)):
        return None
    try:
        seeds = [int(s) for s in RunFolder(study).read_json(STUDY)["seeds"]]
    except (KeyError, TypeError, ValueError, UserError):
        return None
    return study, [s for s in seeds if seed_dir(study, s) != run_path and
                   not RunFolder(seed_dir(study, s)).is_finished_quietly()]


def report(seeds, summaries, base):
    """Per-seed best accuracies and their mean; the last line states the study's result.

    A study is one experiment: seeds that ended with different epoch counts (an extension that
    was interrupted) are listed, not averaged."""
    accs = [s["best_val_acc"] for s in summaries]
    for seed, s in zip(seeds, summaries):
        echo(f"seed {seed}: best validation accuracy {s['best_val_acc']:.4f} at epoch "
             f"{s['best_epoch']} of {s.get('epochs', '?')}")
    echo(f"Study folder: {base}  (compare it with: swishtrain compare {base} ...)")
    epochs = sorted({s.get("epochs") for s in summaries}, key=str)
    if len(epochs) > 1:
        raise UserError(f"the seeds of {base} ended after different numbers of epochs "
                        f"({', '.join(map(str, epochs))}), so they are not averaged: resume the "
                        f"study with --epochs {max(e for e in epochs if e is not None)}")
    spread = f" ± {statistics.stdev(accs):.4f}" if len(accs) > 1 else ""
    echo(f"Best validation accuracy: mean {statistics.mean(accs):.4f}{spread} over "
         f"{len(accs)} seed(s)")
